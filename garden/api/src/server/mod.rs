//! The Garden HTTP server: serves an `Arc<dyn Backend>` on a unix socket
//! and, optionally, TCP.
//!
//! ```text
//! listeners ─► connection (one task each: keep-alive request loop)
//!                ├─ ordinary routes ─► handlers ─► Backend
//!                ├─ Run / Attach ────► process (201/200, then the stream protocol)
//!                └─ stdout/stderr ───► streams (a pump per output stream)
//! reaper: destroys containers left unreferenced for their grace time
//! ```
//!
//! Every task runs on one `TaskTracker`; [`Server::serve`] returns only
//! when all of them ended.

mod connection;
mod grace;
mod handlers;
mod listen;
mod metrics;
mod process;
mod streams;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::Backend;
use crate::types::Properties;
use grace::Reaper;
use listen::Listener;
use metrics::RequestMetrics;
use streams::Streams;

/// Where and how the server listens.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The unix socket (created mode 0600, parent directories created, a
    /// stale socket replaced). Garden's default is `/tmp/garden.sock`.
    pub unix_socket: Option<PathBuf>,
    /// A TCP address, e.g. `127.0.0.1:7777` (port 0 picks one).
    pub tcp: Option<SocketAddr>,
    /// Grace time for containers created without one (`None`: never reaped).
    pub default_grace_time: Option<Duration>,
    /// Protocol limits and timeouts.
    pub limits: HttpLimits,
}

impl ServerConfig {
    /// Listens on a unix socket only, with the default limits.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Self {
            unix_socket: Some(path.into()),
            tcp: None,
            default_grace_time: None,
            limits: HttpLimits::default(),
        }
    }
}

/// Limits and timeouts that keep bad or slow clients from holding resources.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Longest request head (request line and headers).
    pub max_head_bytes: usize,
    /// Longest JSON request body.
    pub max_json_bytes: usize,
    /// Longest message on a process stream.
    pub max_stream_message_bytes: usize,
    /// How long an idle keep-alive connection stays open.
    pub idle_timeout: Duration,
    /// How long a started request head may take to arrive.
    pub head_timeout: Duration,
    /// How long a request body may pause between reads.
    pub body_timeout: Duration,
    /// How long the output of a finished process waits for its late
    /// stdout/stderr connection (Garden: one minute).
    pub stream_linger: Duration,
    /// Output kept per stream while no client is attached; beyond it,
    /// output is dropped (Garden keeps 4000 writes).
    pub stream_buffer_bytes: usize,
    /// How long a write to a stdout/stderr client may stall before that
    /// client is dropped.
    pub stream_write_timeout: Duration,
    /// How long in-flight requests may finish at shutdown.
    pub shutdown_grace: Duration,
    /// Most connections served at once; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 64 * 1024,
            max_json_bytes: 16 * 1024 * 1024,
            max_stream_message_bytes: 4 * 1024 * 1024,
            idle_timeout: Duration::from_secs(120),
            head_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(120),
            stream_linger: Duration::from_secs(60),
            stream_buffer_bytes: 1024 * 1024,
            stream_write_timeout: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(10),
            max_connections: 8192,
        }
    }
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Neither a unix socket nor TCP was configured.
    #[error("nothing to listen on: configure a unix socket or a TCP address")]
    NoListener,
    /// The socket's directory cannot be created.
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Something that is not a socket is in the way.
    #[error("{path} exists and is not a socket")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Another server answers on the socket.
    #[error("another server is listening on {path}")]
    SocketInUse {
        /// The path.
        path: PathBuf,
    },
    /// Binding or preparing the socket failed.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The socket path or TCP address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// What every connection shares.
pub(crate) struct State {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) limits: HttpLimits,
    pub(crate) default_grace_time: Option<Duration>,
    pub(crate) reaper: Arc<Reaper>,
    pub(crate) streams: Streams,
    pub(crate) metrics: RequestMetrics,
    destroying: Mutex<HashSet<String>>,
    pub(crate) tracker: TaskTracker,
    /// Stop accepting, close idle connections, detach process streams.
    pub(crate) shutdown: CancellationToken,
    /// Drop in-flight requests (after `shutdown_grace`).
    pub(crate) abort: CancellationToken,
}

/// Marks a handle as being destroyed while alive.
pub(crate) struct DestroyGuard<'a> {
    state: &'a State,
    handle: String,
}

impl Drop for DestroyGuard<'_> {
    fn drop(&mut self) {
        self.state
            .destroying
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(&self.handle);
    }
}

impl State {
    /// Claims `handle` for destruction; `None` when a destroy is running.
    pub(crate) fn begin_destroy(&self, handle: &str) -> Option<DestroyGuard<'_>> {
        let mut destroying = self
            .destroying
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        destroying.insert(handle.to_owned()).then(|| DestroyGuard {
            state: self,
            handle: handle.to_owned(),
        })
    }

    /// Destroys a container whose grace time ran out.
    async fn reap(&self, handle: String) {
        let Some(_guard) = self.begin_destroy(&handle) else {
            tracing::info!(handle, "grace time over, but a destroy is already running");
            return;
        };
        tracing::info!(handle, "grace time over: destroying");
        match self.backend.destroy(&handle).await {
            Ok(()) => tracing::info!(handle, "reaped"),
            Err(error) => tracing::warn!(handle, %error, "reaping failed"),
        }
    }
}

/// A bound server, ready to serve.
pub struct Server {
    state: Arc<State>,
    listeners: Vec<Listener>,
    tcp_addr: Option<SocketAddr>,
    socket_path: Option<PathBuf>,
}

impl Server {
    /// Binds the configured listeners and arms the grace timers of the
    /// containers the backend already has.
    pub async fn bind(
        config: ServerConfig,
        backend: Arc<dyn Backend>,
    ) -> Result<Self, ServerError> {
        if config.unix_socket.is_none() && config.tcp.is_none() {
            return Err(ServerError::NoListener);
        }
        let mut listeners = Vec::new();
        if let Some(path) = &config.unix_socket {
            listeners.push(listen::bind_unix(path)?);
        }
        let mut tcp_addr = None;
        if let Some(address) = config.tcp {
            let (listener, bound) = listen::bind_tcp(address).await?;
            listeners.push(listener);
            tcp_addr = Some(bound);
        }
        let shutdown = CancellationToken::new();
        let state = Arc::new(State {
            backend,
            streams: Streams::new(config.limits.clone(), shutdown.clone()),
            limits: config.limits,
            default_grace_time: config.default_grace_time,
            reaper: Arc::new(Reaper::new()),
            metrics: RequestMetrics::default(),
            destroying: Mutex::new(HashSet::new()),
            tracker: TaskTracker::new(),
            shutdown,
            abort: CancellationToken::new(),
        });
        arm_existing_timers(&state).await;
        Ok(Self {
            state,
            listeners,
            tcp_addr,
            socket_path: config.unix_socket,
        })
    }

    /// The bound TCP address (useful with port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The unix socket path.
    pub fn socket_path(&self) -> Option<&Path> {
        self.socket_path.as_deref()
    }

    /// Cancelling this token stops the server.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// Request counters in Prometheus text format (also at `GET /metrics`).
    pub fn metrics_text(&self) -> String {
        self.state.metrics.render()
    }

    /// Serves until the shutdown token is cancelled, then stops accepting,
    /// detaches process streams, lets in-flight requests finish for
    /// `shutdown_grace`, and returns when every task has ended.
    pub async fn serve(self) -> Result<(), ServerError> {
        let state = self.state;
        let reaper_state = Arc::clone(&state);
        state.tracker.spawn(async move {
            let reaper = Arc::clone(&reaper_state.reaper);
            let tracker = reaper_state.tracker.clone();
            reaper
                .run(reaper_state.shutdown.clone(), |handle| {
                    let state = Arc::clone(&reaper_state);
                    tracker.spawn(async move { state.reap(handle).await });
                })
                .await;
        });
        let permits = Arc::new(tokio::sync::Semaphore::new(state.limits.max_connections));
        for listener in self.listeners {
            let state = Arc::clone(&state);
            let permits = Arc::clone(&permits);
            state
                .tracker
                .clone()
                .spawn(listen::accept_loop(listener, state, permits));
        }
        state.shutdown.cancelled().await;
        tracing::info!("shutting down: waiting for in-flight requests");
        state.tracker.close();
        if tokio::time::timeout(state.limits.shutdown_grace, state.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("in-flight requests did not finish in time: dropping them");
            state.abort.cancel();
            state.tracker.wait().await;
        }
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn arm_existing_timers(state: &State) {
    let handles = match state.backend.containers(&Properties::new()).await {
        Ok(handles) => handles,
        Err(error) => {
            tracing::warn!(%error, "cannot list containers to arm their grace timers");
            return;
        }
    };
    for handle in handles {
        match state.backend.grace_time(&handle).await {
            Ok(grace) => state.reaper.arm(&handle, grace),
            Err(error) => tracing::warn!(handle, %error, "cannot read grace time"),
        }
    }
}
