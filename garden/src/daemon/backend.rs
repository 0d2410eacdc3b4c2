//! `garden_api::Backend` for [`Garden`]: each route's call, with the
//! container's gate held so destroy never races an operation.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use garden_api::types::{
    Capacity, ContainerInfo, ContainerSpec, Limits, Metrics, NetOutRule, ProcessSpec, Properties,
};
use garden_api::{
    Backend, ByteStream, Error as ApiError, Process, ProcessIo, StreamInSpec, StreamOutSpec,
};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::container::Container;
use super::create::blocking;
use super::files::{self, IdMap};
use super::{lock, DaemonError, Garden};

type ApiResult<T> = Result<T, ApiError>;

impl Garden {
    /// The container, with its gate held shared for the operation.
    async fn live(
        &self,
        handle: &str,
    ) -> Result<(Arc<Container>, tokio::sync::OwnedRwLockReadGuard<bool>), DaemonError> {
        let c = self.container(handle)?;
        let guard = c.gate.clone().read_owned().await;
        if !*guard {
            return Err(DaemonError::NotFound(handle.to_string()));
        }
        Ok((c, guard))
    }

    fn id_map(&self, c: &Container) -> IdMap {
        let r = c.record();
        if r.spec.privileged {
            IdMap::identity()
        } else {
            IdMap::maximus(r.root_host_id)
        }
    }

    fn update_record(
        &self,
        c: &Container,
        f: impl FnOnce(&mut super::depot::Record),
    ) -> Result<(), DaemonError> {
        let mut r = lock(&c.record);
        let mut next = r.clone();
        f(&mut next);
        self.inner.depot.save(&next)?;
        *r = next;
        Ok(())
    }
}

fn api<T>(r: Result<T, DaemonError>) -> ApiResult<T> {
    r.map_err(ApiError::from)
}

#[async_trait]
impl Backend for Garden {
    async fn ping(&self) -> ApiResult<()> {
        Ok(())
    }

    async fn capacity(&self) -> ApiResult<Capacity> {
        Ok(self.inner.capacity)
    }

    async fn create(&self, spec: ContainerSpec) -> ApiResult<String> {
        api(self.create_container(spec).await)
    }

    async fn destroy(&self, handle: &str) -> ApiResult<()> {
        api(self.destroy_container(handle).await)
    }

    async fn containers(&self, filter: &Properties) -> ApiResult<Vec<String>> {
        let all: Vec<Arc<Container>> = lock(&self.inner.containers).values().cloned().collect();
        let mut out: Vec<String> = all
            .into_iter()
            .filter(|c| {
                let r = lock(&c.record);
                filter
                    .iter()
                    .all(|(k, v)| r.properties.get(k).is_some_and(|p| p == v))
            })
            .map(|c| c.handle.clone())
            .collect();
        out.sort();
        Ok(out)
    }

    async fn info(&self, handle: &str) -> ApiResult<ContainerInfo> {
        let (c, _g) = api(self.live(handle).await)?;
        api(self.container_info(&c).await)
    }

    async fn metrics(&self, handle: &str) -> ApiResult<Metrics> {
        let (c, _g) = api(self.live(handle).await)?;
        api(self.container_metrics(&c).await)
    }

    async fn stop(&self, handle: &str, kill: bool) -> ApiResult<()> {
        api(self.stop_container(handle, kill).await)
    }

    async fn stream_in(&self, handle: &str, spec: StreamInSpec, tar: ByteStream) -> ApiResult<()> {
        let (c, _g) = api(self.live(handle).await)?;
        let root = c.root_path();
        let map = self.id_map(&c);
        let reader = SyncIoBridge::new(StreamReader::new(tar));
        let r = blocking(move || {
            let owner = files::lookup_user(&root, &spec.user)?;
            files::stream_in(&root, &spec.path, &owner, &map, reader)
        })
        .await;
        api(r.and_then(|r| r.map_err(DaemonError::from)))
    }

    async fn stream_out(&self, handle: &str, spec: StreamOutSpec) -> ApiResult<ByteStream> {
        let (c, _g) = api(self.live(handle).await)?;
        let root = c.root_path();
        let map = self.id_map(&c);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
        let task = tokio::task::spawn_blocking(move || {
            let r = files::stream_out(&root, &spec.path, &map, ChannelWriter(tx.clone()));
            if let Err(e) = &r {
                // Ends the stream with an error: the client sees a cut tar.
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
            r
        });
        // A missing source fails before the first byte: answer with the error.
        let first = match rx.recv().await {
            Some(Ok(first)) => first,
            _ => {
                return match task.await {
                    Ok(Ok(())) => Ok(futures_util::stream::empty().boxed()),
                    Ok(Err(e)) => Err(DaemonError::from(e).into()),
                    Err(e) => Err(DaemonError::Task(e).into()),
                }
            }
        };
        let rest = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(futures_util::stream::once(async move { Ok(first) })
            .chain(rest)
            .boxed())
    }

    async fn limits(&self, handle: &str) -> ApiResult<Limits> {
        let (c, _g) = api(self.live(handle).await)?;
        api(self.container_limits(&c).await)
    }

    async fn net_in(&self, handle: &str, host: u32, container: u32) -> ApiResult<(u32, u32)> {
        let (_c, _g) = api(self.live(handle).await)?;
        let m = self
            .inner
            .network
            .net_in(handle, host, container)
            .await
            .map_err(|e| ApiError::from(DaemonError::from(e)).with_handle(handle))?;
        Ok((m.host_port, m.container_port))
    }

    async fn net_out(&self, handle: &str, rules: Vec<NetOutRule>) -> ApiResult<()> {
        let (_c, _g) = api(self.live(handle).await)?;
        self.inner
            .network
            .net_out(handle, &rules)
            .await
            .map_err(|e| ApiError::from(DaemonError::from(e)).with_handle(handle))
    }

    async fn run(
        &self,
        handle: &str,
        spec: ProcessSpec,
        io: ProcessIo,
    ) -> ApiResult<Box<dyn Process>> {
        let (c, _g) = api(self.live(handle).await)?;
        let p = api(self.run_process(&c, spec, io).await)?;
        Ok(Box::new(p))
    }

    async fn attach(
        &self,
        handle: &str,
        process_id: &str,
        io: ProcessIo,
    ) -> ApiResult<Box<dyn Process>> {
        let (c, _g) = api(self.live(handle).await)?;
        let p = api(self.attach_process(&c, process_id, io).await)
            .map_err(|e| e.with_handle(handle))?;
        Ok(Box::new(p))
    }

    async fn set_grace_time(&self, handle: &str, grace: Duration) -> ApiResult<()> {
        let (c, _g) = api(self.live(handle).await)?;
        api(self.update_record(&c, |r| r.spec.grace_time = Some(grace)))
    }

    async fn grace_time(&self, handle: &str) -> ApiResult<Option<Duration>> {
        let c = api(self.container(handle))?;
        Ok(c.record().spec.grace_time)
    }

    async fn properties(&self, handle: &str) -> ApiResult<Properties> {
        let (c, _g) = api(self.live(handle).await)?;
        Ok(c.record().properties)
    }

    async fn property(&self, handle: &str, key: &str) -> ApiResult<String> {
        let (c, _g) = api(self.live(handle).await)?;
        c.record().properties.get(key).cloned().ok_or_else(|| {
            ApiError::internal(format!("property does not exist: {key}")).with_handle(handle)
        })
    }

    async fn set_property(&self, handle: &str, key: &str, value: &str) -> ApiResult<()> {
        let (c, _g) = api(self.live(handle).await)?;
        api(self.update_record(&c, |r| {
            r.properties.insert(key.to_string(), value.to_string());
        }))
    }

    async fn remove_property(&self, handle: &str, key: &str) -> ApiResult<()> {
        let (c, _g) = api(self.live(handle).await)?;
        if !c.record().properties.contains_key(key) {
            return Err(
                ApiError::internal(format!("property does not exist: {key}")).with_handle(handle),
            );
        }
        api(self.update_record(&c, |r| {
            r.properties.remove(key);
        }))
    }
}

/// A blocking writer that hands chunks to the async side.
struct ChannelWriter(tokio::sync::mpsc::Sender<std::io::Result<Bytes>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
