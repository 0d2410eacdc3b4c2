//! The routes answered with JSON (or a tar stream): one backend call each.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::connection::{HandlerError, Reply, Request};
use crate::backend::{ByteStream, StreamInSpec, StreamOutSpec};
use crate::error::Error;
use crate::http1::HttpError;
use crate::routes::Route;
use crate::types::{
    ContainerInfoEntry, ContainerMetricsEntry, ContainerSpec, NetInRequest, NetInResponse,
    NetOutRule, Properties,
};

/// How many containers BulkInfo and BulkMetrics ask about at once.
const BULK_CONCURRENCY: usize = 32;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateResponse {
    handle: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListResponse {
    handles: Vec<String>,
}

#[derive(Deserialize)]
struct StopRequest {
    #[serde(default)]
    kill: bool,
}

#[derive(Serialize, Deserialize)]
struct PropertyValue {
    #[serde(default)]
    value: String,
}

/// Answers one ordinary route. Routes naming a container hold its grace
/// timer while they run.
pub(super) async fn handle(req: &mut Request<'_>) -> Result<Reply, HandlerError> {
    let state = req.state;
    let backend = Arc::clone(&state.backend);
    let handle = req.params.handle.clone();
    let _hold =
        (req.route.has_handle() && req.route != Route::Destroy).then(|| state.reaper.hold(&handle));
    match req.route {
        Route::Ping => backend
            .ping()
            .await
            .map(|()| Reply::empty())
            .map_err(Into::into),
        Route::Capacity => Reply::json(&backend.capacity().await?),
        Route::Create => create(req).await,
        Route::List => {
            let mut filter = Properties::new();
            for (key, value) in req.query() {
                filter.entry(key).or_insert(value);
            }
            Reply::json(&ListResponse {
                handles: backend.containers(&filter).await?,
            })
        }
        Route::Destroy => destroy(req).await,
        Route::Info => Reply::json(&backend.info(&handle).await?),
        Route::Metrics => Reply::json(&backend.metrics(&handle).await?),
        Route::BulkInfo | Route::BulkMetrics => bulk(req).await,
        Route::Stop => {
            let request: StopRequest = req.json().await?;
            backend.stop(&handle, request.kill).await?;
            Ok(Reply::empty())
        }
        Route::StreamIn => stream_in(req).await,
        Route::StreamOut => {
            let spec = StreamOutSpec {
                path: req.query_value("source"),
                user: req.query_value("user"),
            };
            Ok(Reply::Stream(backend.stream_out(&handle, spec).await?))
        }
        Route::CurrentBandwidthLimits => Reply::json(&backend.limits(&handle).await?.bandwidth),
        Route::CurrentCpuLimits => Reply::json(&backend.limits(&handle).await?.cpu),
        Route::CurrentDiskLimits => Reply::json(&backend.limits(&handle).await?.disk),
        Route::CurrentMemoryLimits => Reply::json(&backend.limits(&handle).await?.memory),
        Route::NetIn | Route::NetOut | Route::BulkNetOut => net(req).await,
        Route::SetGraceTime => set_grace_time(req).await,
        Route::Properties => Reply::json(&backend.properties(&handle).await?),
        Route::Property => Reply::json(&PropertyValue {
            value: backend.property(&handle, &req.params.key).await?,
        }),
        Route::SetProperty => {
            let request: PropertyValue = req.json().await?;
            backend
                .set_property(&handle, &req.params.key, &request.value)
                .await?;
            Ok(Reply::empty())
        }
        Route::RemoveProperty => {
            backend.remove_property(&handle, &req.params.key).await?;
            Ok(Reply::empty())
        }
        Route::Run | Route::Attach | Route::Stdout | Route::Stderr => {
            Err(Error::internal(format!("{} is not an ordinary route", req.route.name())).into())
        }
    }
}

async fn net(req: &mut Request<'_>) -> Result<Reply, HandlerError> {
    let backend = &req.state.backend;
    let handle = req.params.handle.clone();
    match req.route {
        Route::NetIn => {
            let request: NetInRequest = req.json().await?;
            let (host_port, container_port) = backend
                .net_in(&handle, request.host_port, request.container_port)
                .await?;
            Reply::json(&NetInResponse {
                host_port,
                container_port,
            })
        }
        Route::NetOut => {
            let rule: NetOutRule = req.json().await?;
            backend.net_out(&handle, vec![rule]).await?;
            Ok(Reply::empty())
        }
        _ => {
            let rules: Option<Vec<NetOutRule>> = req.json().await?;
            backend.net_out(&handle, rules.unwrap_or_default()).await?;
            Ok(Reply::empty())
        }
    }
}

async fn create(req: &mut Request<'_>) -> Result<Reply, HandlerError> {
    let state = req.state;
    let mut spec: ContainerSpec = req.json().await?;
    if spec.grace_time.is_none() {
        spec.grace_time = state.default_grace_time;
    }
    let grace = spec.grace_time;
    tracing::debug!(
        handle = spec.handle,
        image = spec.image.uri,
        privileged = spec.privileged,
        "creating"
    );
    let handle = state.backend.create(spec).await?;
    tracing::info!(handle, "created");
    state.reaper.arm(&handle, grace);
    Reply::json(&CreateResponse { handle })
}

async fn destroy(req: &mut Request<'_>) -> Result<Reply, HandlerError> {
    let state = req.state;
    let handle = &req.params.handle;
    let Some(_guard) = state.begin_destroy(handle) else {
        return Err(Error::internal("container already being destroyed")
            .with_handle(handle)
            .into());
    };
    state.backend.destroy(handle).await?;
    state.reaper.disarm(handle);
    tracing::info!(handle, "destroyed");
    Ok(Reply::empty())
}

async fn set_grace_time(req: &mut Request<'_>) -> Result<Reply, HandlerError> {
    let nanos: i64 = req.json().await?;
    let nanos = u64::try_from(nanos)
        .map_err(|_| Error::bad_request(format!("negative grace time: {nanos} ns")))?;
    let grace = Duration::from_nanos(nanos);
    let handle = &req.params.handle;
    req.state.backend.set_grace_time(handle, grace).await?;
    req.state.reaper.rearm(handle, grace);
    Ok(Reply::empty())
}

/// BulkInfo and BulkMetrics: one backend call per handle, concurrently; an
/// error for one handle is that handle's `Err`.
async fn bulk(req: &mut Request<'_>) -> Result<Reply, HandlerError> {
    let joined = req.query_value("handles");
    let handles: Vec<String> = if joined.is_empty() {
        Vec::new()
    } else {
        joined.split(',').map(str::to_owned).collect()
    };
    let backend = &req.state.backend;
    if req.route == Route::BulkInfo {
        let entries: BTreeMap<String, ContainerInfoEntry> = futures_util::stream::iter(handles)
            .map(|handle| async move {
                let entry = match backend.info(&handle).await {
                    Ok(info) => ContainerInfoEntry { info, err: None },
                    Err(error) => ContainerInfoEntry {
                        info: Default::default(),
                        err: Some(error),
                    },
                };
                (handle, entry)
            })
            .buffer_unordered(BULK_CONCURRENCY)
            .collect()
            .await;
        return Reply::json(&entries);
    }
    let entries: BTreeMap<String, ContainerMetricsEntry> = futures_util::stream::iter(handles)
        .map(|handle| async move {
            let entry = match backend.metrics(&handle).await {
                Ok(metrics) => ContainerMetricsEntry { metrics, err: None },
                Err(error) => ContainerMetricsEntry {
                    metrics: Default::default(),
                    err: Some(error),
                },
            };
            (handle, entry)
        })
        .buffer_unordered(BULK_CONCURRENCY)
        .collect()
        .await;
    Reply::json(&entries)
}

/// StreamIn: the request body goes to the backend as it arrives. When the
/// backend returns before the body ended, the rest is not read (and the
/// connection is closed after the answer).
async fn stream_in(req: &mut Request<'_>) -> Result<Reply, HandlerError> {
    let spec = StreamInSpec {
        path: req.query_value("destination"),
        user: req.query_value("user"),
    };
    let (sender, receiver) = mpsc::channel::<std::io::Result<Bytes>>(8);
    let tar: ByteStream = Box::pin(futures_util::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
    ));
    let backend = Arc::clone(&req.state.backend);
    let handle = req.params.handle.clone();
    let call = backend.stream_in(&handle, spec, tar);
    let pump = pump_body(req, sender);
    tokio::pin!(call, pump);
    let (result, pumped) = tokio::select! {
        result = &mut call => (result, Ok(())),
        pumped = &mut pump => (call.await, pumped),
    };
    match (result, pumped) {
        (Ok(()), _) => Ok(Reply::empty()),
        (Err(_), Err(http)) => Err(http.into()),
        (Err(error), Ok(())) => Err(error.into()),
    }
}

async fn pump_body(
    req: &mut Request<'_>,
    sender: mpsc::Sender<std::io::Result<Bytes>>,
) -> Result<(), HttpError> {
    loop {
        match req.body_chunk().await {
            Ok(Some(chunk)) => {
                if sender.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
            }
            Ok(None) => return Ok(()),
            Err(error) => {
                let _ = sender
                    .send(Err(std::io::Error::other(error.to_string())))
                    .await;
                return Err(error);
            }
        }
    }
}
