//! The contract between the HTTP server and whatever runs the containers.
//!
//! The server serves an `Arc<dyn Backend>`: every route calls one method,
//! BulkInfo and BulkMetrics call [`Backend::info`] and [`Backend::metrics`]
//! once per handle, concurrently. Errors carry an [`ErrorKind`](crate::ErrorKind)
//! that the server turns into Garden's status code and error JSON.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use crate::error::Error;
use crate::types::{
    Capacity, ContainerInfo, ContainerSpec, Limits, Metrics, NetOutRule, ProcessSpec, Properties,
    Signal, TtySpec,
};

/// A stream of bytes: a tar archive in or out of a container.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Where StreamIn unpacks its tar archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamInSpec {
    /// The destination directory in the container.
    pub path: String,
    /// The user that owns what is written (empty: the container's root).
    pub user: String,
}

/// What StreamOut archives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamOutSpec {
    /// The file or directory in the container.
    pub path: String,
    /// The user that reads it (empty: the container's root).
    pub user: String,
}

/// A process's standard streams, as channels of byte chunks.
///
/// - `stdin`: chunks from the client; the sender is dropped at the client's
///   EOF and when the client goes away.
/// - `stdout`, `stderr`: the backend sends output chunks and drops the
///   sender when the stream ends. A failed send means nobody listens any
///   more (the client detached): stop sending to that channel, never stop
///   the process for it. Sends wait while the client reads slowly, the way
///   a pipe would.
#[derive(Debug, Default)]
pub struct ProcessIo {
    /// Input for the process, if the caller streams any.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    /// Where standard output goes.
    pub stdout: Option<mpsc::Sender<Bytes>>,
    /// Where standard error goes.
    pub stderr: Option<mpsc::Sender<Bytes>>,
}

/// A process started by [`Backend::run`] or found by [`Backend::attach`].
#[async_trait]
pub trait Process: Send + Sync {
    /// The process id (the one in the spec, or generated).
    fn id(&self) -> String;

    /// Waits for the exit status. Returns only after all output was sent
    /// into the io channels. Must be cancel-safe: the server drops this
    /// future when the client detaches, and the process must go on.
    async fn wait(&self) -> Result<i32, Error>;

    /// Resizes the process's terminal.
    async fn set_tty(&self, tty: TtySpec) -> Result<(), Error>;

    /// Sends SIGTERM or SIGKILL.
    async fn signal(&self, signal: Signal) -> Result<(), Error>;
}

/// Everything the Garden API does to containers.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Healthy or not.
    async fn ping(&self) -> Result<(), Error>;

    /// What the host offers.
    async fn capacity(&self) -> Result<Capacity, Error>;

    /// Creates a container and returns its handle. `spec.grace_time` is
    /// already filled with the server's default when the client gave none.
    async fn create(&self, spec: ContainerSpec) -> Result<String, Error>;

    /// Destroys a container.
    async fn destroy(&self, handle: &str) -> Result<(), Error>;

    /// Handles of the containers having all of `filter`'s properties.
    async fn containers(&self, filter: &Properties) -> Result<Vec<String>, Error>;

    /// A container's state and addresses.
    async fn info(&self, handle: &str) -> Result<ContainerInfo, Error>;

    /// A container's resource usage.
    async fn metrics(&self, handle: &str) -> Result<Metrics, Error>;

    /// Stops every process: TERM, then KILL after 10 s; KILL at once when `kill`.
    async fn stop(&self, handle: &str, kill: bool) -> Result<(), Error>;

    /// Unpacks a tar archive into the container.
    async fn stream_in(
        &self,
        handle: &str,
        spec: StreamInSpec,
        tar: ByteStream,
    ) -> Result<(), Error>;

    /// Archives a path of the container as tar.
    async fn stream_out(&self, handle: &str, spec: StreamOutSpec) -> Result<ByteStream, Error>;

    /// The container's current limits (the server answers one part per route).
    async fn limits(&self, handle: &str) -> Result<Limits, Error>;

    /// Maps a host port to a container port; returns both as mapped.
    async fn net_in(
        &self,
        handle: &str,
        host_port: u32,
        container_port: u32,
    ) -> Result<(u32, u32), Error>;

    /// Allows outbound traffic (one rule for NetOut, several for BulkNetOut).
    async fn net_out(&self, handle: &str, rules: Vec<NetOutRule>) -> Result<(), Error>;

    /// Starts a process.
    async fn run(
        &self,
        handle: &str,
        spec: ProcessSpec,
        io: ProcessIo,
    ) -> Result<Box<dyn Process>, Error>;

    /// Attaches new io to a running (or exited, not yet reaped) process.
    async fn attach(
        &self,
        handle: &str,
        process_id: &str,
        io: ProcessIo,
    ) -> Result<Box<dyn Process>, Error>;

    /// Remembers a new grace time (the server's timer uses it at once).
    async fn set_grace_time(&self, handle: &str, grace: Duration) -> Result<(), Error>;

    /// The container's grace time, `None` when it has none. The server asks
    /// at start-up for every container, to reap the ones left unreferenced
    /// across a restart. The default answers `None`: such containers are
    /// then only reaped after a new SetGraceTime.
    async fn grace_time(&self, handle: &str) -> Result<Option<Duration>, Error> {
        let _ = handle;
        Ok(None)
    }

    /// All properties.
    async fn properties(&self, handle: &str) -> Result<Properties, Error>;

    /// One property.
    async fn property(&self, handle: &str, key: &str) -> Result<String, Error>;

    /// Sets a property.
    async fn set_property(&self, handle: &str, key: &str, value: &str) -> Result<(), Error>;

    /// Removes a property.
    async fn remove_property(&self, handle: &str, key: &str) -> Result<(), Error>;
}
