//! An async client for the Garden API, for this server or a real Garden.
//!
//! One connection per request (as Garden's Go client does); Run and Attach
//! keep theirs for the process stream, plus one each for stdout and stderr.

mod process;
mod request;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use process::{OutputStream, OutputStreams, RemoteProcess, StdinWriter};
use request::Body;

use crate::backend::{ByteStream, StreamInSpec, StreamOutSpec};
use crate::error::{Error, ErrorKind};
use crate::routes::{Params, Route};
use crate::types::{
    BandwidthLimits, Capacity, ContainerInfo, ContainerInfoEntry, ContainerMetricsEntry,
    ContainerSpec, CpuLimits, DiskLimits, MemoryLimits, Metrics, NetInRequest, NetInResponse,
    NetOutRule, ProcessSpec, Properties,
};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server cannot be reached.
    #[error("cannot connect to garden at {target}: {source}")]
    Connect {
        /// The socket path or address.
        target: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The server answered with an error.
    #[error("{0}")]
    Garden(#[from] Error),
    /// The connection failed or the answer is not HTTP.
    #[error("talking to garden: {0}")]
    Http(#[from] crate::http1::HttpError),
    /// Reading the data to send failed (the request was abandoned).
    #[error("reading the data to send: {0}")]
    Source(std::io::Error),
    /// The server answered something this client does not understand.
    #[error("unexpected answer from garden: {0}")]
    Protocol(String),
    /// Waiting for the process failed on the server.
    #[error("process error: {0}")]
    Process(String),
    /// The process stream ended without an exit status.
    #[error("process stream ended without an exit status: {0}")]
    Disconnected(String),
}

impl ClientError {
    /// The Garden error kind, when the server answered with an error.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Garden(error) => Some(error.kind),
            _ => None,
        }
    }
}

/// Where the server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP `host:port`.
    Tcp(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "{}", path.display()),
            Self::Tcp(address) => f.write_str(address),
        }
    }
}

/// A Garden API client.
#[derive(Clone, Debug)]
pub struct Client {
    target: Target,
    connect_timeout: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateResponse {
    #[serde(alias = "handle")]
    handle: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListResponse {
    #[serde(default, deserialize_with = "crate::types::serde_util::nullable")]
    handles: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct PropertyValue {
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct Empty {}

fn at(handle: &str) -> Params {
    Params {
        handle: handle.to_owned(),
        ..Params::default()
    }
}

fn property(handle: &str, key: &str) -> Params {
    Params {
        handle: handle.to_owned(),
        key: key.to_owned(),
        ..Params::default()
    }
}

impl Client {
    /// A client of the server on a unix socket.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Self::new(Target::Unix(path.into()))
    }

    /// A client of the server at TCP `host:port`.
    pub fn tcp(address: impl Into<String>) -> Self {
        Self::new(Target::Tcp(address.into()))
    }

    /// A client of `target`.
    pub fn new(target: Target) -> Self {
        Self {
            target,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Where this client connects.
    pub fn target(&self) -> &Target {
        &self.target
    }

    async fn call<T: DeserializeOwned>(
        &self,
        route: Route,
        params: &Params,
        query: &[(&str, &str)],
        body: Body,
    ) -> Result<T, ClientError> {
        let bytes = self.send(route, params, query, body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|error| ClientError::Protocol(format!("{} answer: {error}", route.name())))
    }

    async fn call_empty(
        &self,
        route: Route,
        params: &Params,
        body: Body,
    ) -> Result<(), ClientError> {
        self.call::<Empty>(route, params, &[], body)
            .await
            .map(|_| ())
    }

    /// Checks that the server is healthy.
    pub async fn ping(&self) -> Result<(), ClientError> {
        self.call_empty(Route::Ping, &Params::default(), Body::Empty)
            .await
    }

    /// The server's capacity.
    pub async fn capacity(&self) -> Result<Capacity, ClientError> {
        self.call(Route::Capacity, &Params::default(), &[], Body::Empty)
            .await
    }

    /// Creates a container; returns its handle.
    pub async fn create(&self, spec: &ContainerSpec) -> Result<String, ClientError> {
        let created: CreateResponse = self
            .call(Route::Create, &Params::default(), &[], Body::json(spec)?)
            .await?;
        Ok(created.handle)
    }

    /// Destroys a container.
    pub async fn destroy(&self, handle: &str) -> Result<(), ClientError> {
        self.call_empty(Route::Destroy, &at(handle), Body::Empty)
            .await
    }

    /// Handles of the containers having all of `filter`'s properties.
    pub async fn list(&self, filter: &Properties) -> Result<Vec<String>, ClientError> {
        let query: Vec<(&str, &str)> = filter
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let list: ListResponse = self
            .call(Route::List, &Params::default(), &query, Body::Empty)
            .await?;
        Ok(list.handles)
    }

    /// A container's info.
    pub async fn info(&self, handle: &str) -> Result<ContainerInfo, ClientError> {
        self.call(Route::Info, &at(handle), &[], Body::Empty).await
    }

    /// Info of several containers; unknown ones carry an error.
    pub async fn bulk_info(
        &self,
        handles: &[String],
    ) -> Result<BTreeMap<String, ContainerInfoEntry>, ClientError> {
        let joined = handles.join(",");
        self.call(
            Route::BulkInfo,
            &Params::default(),
            &[("handles", &joined)],
            Body::Empty,
        )
        .await
    }

    /// Metrics of several containers; unknown ones carry an error.
    pub async fn bulk_metrics(
        &self,
        handles: &[String],
    ) -> Result<BTreeMap<String, ContainerMetricsEntry>, ClientError> {
        let joined = handles.join(",");
        self.call(
            Route::BulkMetrics,
            &Params::default(),
            &[("handles", &joined)],
            Body::Empty,
        )
        .await
    }

    /// A container's metrics.
    pub async fn metrics(&self, handle: &str) -> Result<Metrics, ClientError> {
        self.call(Route::Metrics, &at(handle), &[], Body::Empty)
            .await
    }

    /// Stops a container's processes (KILL at once when `kill`).
    pub async fn stop(&self, handle: &str, kill: bool) -> Result<(), ClientError> {
        let body = Body::json(&BTreeMap::from([("kill", kill)]))?;
        self.call_empty(Route::Stop, &at(handle), body).await
    }

    /// Streams a tar archive into the container (sent chunked).
    pub async fn stream_in(
        &self,
        handle: &str,
        spec: &StreamInSpec,
        tar: ByteStream,
    ) -> Result<(), ClientError> {
        let query = [
            ("user", spec.user.as_str()),
            ("destination", spec.path.as_str()),
        ];
        self.send(Route::StreamIn, &at(handle), &query, Body::Stream(tar))
            .await
            .map(|_| ())
    }

    /// Streams a tar archive of a path out of the container.
    pub async fn stream_out(
        &self,
        handle: &str,
        spec: &StreamOutSpec,
    ) -> Result<ByteStream, ClientError> {
        let query = [("user", spec.user.as_str()), ("source", spec.path.as_str())];
        self.send_streaming(Route::StreamOut, &at(handle), &query)
            .await
    }

    /// Current bandwidth limits.
    pub async fn current_bandwidth_limits(
        &self,
        handle: &str,
    ) -> Result<BandwidthLimits, ClientError> {
        self.call(Route::CurrentBandwidthLimits, &at(handle), &[], Body::Empty)
            .await
    }

    /// Current CPU limits.
    pub async fn current_cpu_limits(&self, handle: &str) -> Result<CpuLimits, ClientError> {
        self.call(Route::CurrentCpuLimits, &at(handle), &[], Body::Empty)
            .await
    }

    /// Current disk limits.
    pub async fn current_disk_limits(&self, handle: &str) -> Result<DiskLimits, ClientError> {
        self.call(Route::CurrentDiskLimits, &at(handle), &[], Body::Empty)
            .await
    }

    /// Current memory limits.
    pub async fn current_memory_limits(&self, handle: &str) -> Result<MemoryLimits, ClientError> {
        self.call(Route::CurrentMemoryLimits, &at(handle), &[], Body::Empty)
            .await
    }

    /// Maps a host port (0: allocated) to a container port; returns both.
    pub async fn net_in(
        &self,
        handle: &str,
        host_port: u32,
        container_port: u32,
    ) -> Result<(u32, u32), ClientError> {
        let request = NetInRequest {
            handle: handle.to_owned(),
            host_port,
            container_port,
        };
        let mapped: NetInResponse = self
            .call(Route::NetIn, &at(handle), &[], Body::json(&request)?)
            .await?;
        Ok((mapped.host_port, mapped.container_port))
    }

    /// Allows outbound traffic.
    pub async fn net_out(&self, handle: &str, rule: &NetOutRule) -> Result<(), ClientError> {
        self.call_empty(Route::NetOut, &at(handle), Body::json(rule)?)
            .await
    }

    /// Allows several outbound flows at once.
    pub async fn bulk_net_out(
        &self,
        handle: &str,
        rules: &[NetOutRule],
    ) -> Result<(), ClientError> {
        self.call_empty(Route::BulkNetOut, &at(handle), Body::json(&rules)?)
            .await
    }

    /// Sets the grace time.
    pub async fn set_grace_time(&self, handle: &str, grace: Duration) -> Result<(), ClientError> {
        let nanos = i64::try_from(grace.as_nanos()).unwrap_or(i64::MAX);
        self.call_empty(Route::SetGraceTime, &at(handle), Body::json(&nanos)?)
            .await
    }

    /// All properties.
    pub async fn properties(&self, handle: &str) -> Result<Properties, ClientError> {
        let properties: Option<Properties> = self
            .call(Route::Properties, &at(handle), &[], Body::Empty)
            .await?;
        Ok(properties.unwrap_or_default())
    }

    /// One property.
    pub async fn property(&self, handle: &str, key: &str) -> Result<String, ClientError> {
        let value: PropertyValue = self
            .call(Route::Property, &property(handle, key), &[], Body::Empty)
            .await?;
        Ok(value.value)
    }

    /// Sets a property.
    pub async fn set_property(
        &self,
        handle: &str,
        key: &str,
        value: &str,
    ) -> Result<(), ClientError> {
        let body = Body::json(&PropertyValue {
            value: value.to_owned(),
        })?;
        self.call_empty(Route::SetProperty, &property(handle, key), body)
            .await
    }

    /// Removes a property.
    pub async fn remove_property(&self, handle: &str, key: &str) -> Result<(), ClientError> {
        self.call_empty(Route::RemoveProperty, &property(handle, key), Body::Empty)
            .await
    }

    /// Runs a process, attaching the chosen output streams.
    pub async fn run(
        &self,
        handle: &str,
        spec: &ProcessSpec,
        outputs: OutputStreams,
    ) -> Result<RemoteProcess, ClientError> {
        process::open(self, Route::Run, &at(handle), Body::json(spec)?, outputs).await
    }

    /// Attaches to a running process.
    pub async fn attach(
        &self,
        handle: &str,
        process_id: &str,
        outputs: OutputStreams,
    ) -> Result<RemoteProcess, ClientError> {
        let params = Params {
            handle: handle.to_owned(),
            process_id: process_id.to_owned(),
            ..Params::default()
        };
        process::open(self, Route::Attach, &params, Body::Empty, outputs).await
    }
}
