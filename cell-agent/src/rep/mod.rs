//! The rep: the cell's side of `diego::rep`. It announces the cell to the
//! controller (presence), answers the auction (`GET /state`, `POST /work`),
//! drives the executor, forwards what happens to containers (LRP events,
//! task start and completion, metrics, logs), evacuates on SIGTERM or
//! `/evacuate`, and serves the loopback-only admin routes the `diag` CLI
//! reads. See `docs/cell-agent.md`.
//!
//! Components start in order (executor, reconcile, outboxes, rep server,
//! presence) and stop in reverse, all under one cancellation token.

mod admin;
pub mod controller;
mod evacuation;
mod events;
mod logs;
mod outbox;
mod presence;
mod reconcile;
pub mod sd_notify;
mod server;
mod work;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use admin::{ContainerDetail, ContainerSummary, CrashRecord, PresenceStatus, Summary};
pub use controller::{ControllerClient, ControllerError, LogEnvelope};
pub use server::{router, ApiError, ContainerList};

use crate::config::{CellConfig, ConfigError};
use crate::executor::{ChannelLogSink, Executor, ExecutorError};
use outbox::Outbox;

/// Why the rep could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum RepError {
    /// The configuration or the cell key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The controller client.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// The executor could not start or reconcile.
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    /// gardend did not answer.
    #[error("gardend at {socket} did not answer within {waited:?}: {reason}")]
    GardenDown {
        /// Its socket.
        socket: String,
        /// How long we tried.
        waited: Duration,
        /// The last error.
        reason: String,
    },
    /// The rep's listener.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No randomness for the rep key.
    #[error("no entropy for the rep key: {0}")]
    Entropy(String),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

/// How many recent crashes and log lines per container the rep keeps for
/// `diag`.
const RECENT_CRASHES: usize = 50;
const RECENT_LOG_LINES: usize = 50;

/// How the agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shutdown {
    /// Evacuated: every instance was replaced elsewhere (or stopped).
    Evacuated,
    /// Evacuation timed out; the remaining containers were stopped.
    EvacuationTimedOut,
    /// Stopped without evacuating (SIGINT): containers left running for
    /// the next start to reconcile.
    Interrupted,
}

/// Everything the rep's components share.
pub struct Rep {
    config: CellConfig,
    executor: Executor,
    controller: ControllerClient,
    rep_key: String,
    evacuating: AtomicBool,
    /// Cancelled to start evacuating (`/evacuate`, SIGTERM).
    evacuate: CancellationToken,
    /// Wakes the presence loop at once (evacuation started).
    presence_now: Notify,
    presence: Mutex<PresenceStatus>,
    outbox: Outbox,
    crashes: Mutex<VecDeque<CrashRecord>>,
    /// Containers whose end went out (not reported twice after a sweep).
    ends_reported: Mutex<events::EndsReported>,
    /// Container guid → `log guid/instance` of its log lines.
    log_keys: Mutex<BTreeMap<String, String>>,
    /// `log guid/instance` → its last lines.
    recent_logs: Mutex<BTreeMap<String, VecDeque<String>>>,
    /// The executor's log sink (how many lines it has taken).
    log_sink: Arc<ChannelLogSink>,
    /// Lines of the sink the log forwarder is done with (sent or dropped).
    logs_done: tokio::sync::watch::Sender<u64>,
    started_at: SystemTime,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A random key of 32 bytes, hex.
fn random_key() -> Result<String, RepError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| RepError::Entropy(e.to_string()))?;
    Ok(hex::encode(bytes))
}

impl Rep {
    /// The configuration it runs with.
    pub fn config(&self) -> &CellConfig {
        &self.config
    }

    /// The executor it drives.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The key the controller must present.
    pub fn rep_key(&self) -> &str {
        &self.rep_key
    }

    /// Whether the cell is draining.
    pub fn is_evacuating(&self) -> bool {
        self.evacuating.load(Ordering::SeqCst)
    }

    /// Starts evacuating (idempotent).
    pub fn request_evacuation(&self) {
        self.evacuate.cancel();
    }

    fn record_crash(&self, crash: CrashRecord) {
        let mut crashes = lock(&self.crashes);
        if crashes.len() >= RECENT_CRASHES {
            crashes.pop_front();
        }
        crashes.push_back(crash);
    }

    fn remember_log_key(&self, container: &str, log_guid: &str, instance: &str) {
        if !log_guid.is_empty() {
            lock(&self.log_keys).insert(container.into(), format!("{log_guid}/{instance}"));
        }
    }

    fn recent_lines(&self, container: &str) -> Vec<String> {
        let Some(key) = lock(&self.log_keys).get(container).cloned() else {
            return Vec::new();
        };
        lock(&self.recent_logs)
            .get(&key)
            .map(|lines| lines.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Starts gardend's client, the executor and every component, and runs
/// until evacuated or interrupted.
pub async fn run(mut config: CellConfig) -> Result<Shutdown, RepError> {
    let signals = Signals::install()?;
    let key = config.read_cell_key()?;
    let ca = config.read_controller_ca()?;
    let controller = ControllerClient::new(
        &config.controller_url,
        &key,
        ca.as_deref(),
        Duration::from_secs(10),
    )?;
    let garden = garden_api::client::Client::unix(&config.garden_socket);
    wait_for_garden(&garden, &config).await?;
    let (sink, log_lines) = ChannelLogSink::new(10_000);
    let log_sink = Arc::new(sink);
    let executor = Executor::new(config.executor_config(), garden, log_sink.clone())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| RepError::Listen {
            addr: config.listen,
            source,
        })?;
    // `listen = "...:0"`: announce the port actually bound.
    if let Ok(bound) = listener.local_addr() {
        config.listen = bound;
    }
    tracing::info!(listen = %config.listen, rep_url = %config.rep_url(), "rep listening");
    let rep = Arc::new(Rep {
        executor,
        controller,
        rep_key: random_key()?,
        evacuating: AtomicBool::new(false),
        evacuate: CancellationToken::new(),
        presence_now: Notify::new(),
        presence: Mutex::new(PresenceStatus::default()),
        outbox: Outbox::new(10_000),
        crashes: Mutex::new(VecDeque::new()),
        ends_reported: Mutex::new(events::EndsReported::default()),
        log_keys: Mutex::new(BTreeMap::new()),
        recent_logs: Mutex::new(BTreeMap::new()),
        log_sink,
        logs_done: tokio::sync::watch::Sender::new(0),
        started_at: SystemTime::now(),
        config,
    });
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    // Events first, so nothing the reconcile reports is missed.
    tasks.spawn(events::forward(
        rep.clone(),
        rep.executor.subscribe(),
        stop.clone(),
    ));
    tasks.spawn(outbox::deliver(rep.clone(), stop.clone()));
    tasks.spawn(logs::forward(rep.clone(), log_lines, stop.clone()));
    let report = reconcile::reconcile(&rep).await?;
    tracing::info!(
        adopted = report.adopted.len(),
        destroyed = report.destroyed.len(),
        failed = report.failed.len(),
        "reconciled garden containers"
    );
    tasks.spawn({
        let (executor, stop) = (rep.executor.clone(), stop.clone());
        async move { executor.run_metrics(stop).await }
    });
    tasks.spawn(events::send_metrics(rep.clone(), stop.clone()));
    tasks.spawn(server::serve(rep.clone(), listener, stop.clone()));
    tasks.spawn(presence::keep(rep.clone(), stop.clone()));
    let outcome = wait_for_end(&rep, signals).await?;
    finish(&rep, &outcome).await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(outcome)
}

/// SIGTERM and SIGINT, caught from the start (a stop during start-up
/// evacuates too, once the agent is up).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, RepError> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(RepError::Signals)?,
            int: signal(SignalKind::interrupt()).map_err(RepError::Signals)?,
        })
    }
}

/// Waits for SIGTERM or `/evacuate` (evacuates) or SIGINT (does not).
async fn wait_for_end(rep: &Arc<Rep>, signals: Signals) -> Result<Shutdown, RepError> {
    let Signals { mut term, mut int } = signals;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: evacuating"),
        () = rep.evacuate.cancelled() => tracing::info!("evacuation requested"),
        _ = int.recv() => {
            tracing::info!("SIGINT: stopping without evacuating");
            return Ok(Shutdown::Interrupted);
        }
    }
    Ok(evacuation::evacuate(rep).await)
}

/// After evacuation: the presence goes, queued reports are flushed.
async fn finish(rep: &Arc<Rep>, outcome: &Shutdown) {
    if *outcome != Shutdown::Interrupted {
        if let Err(error) = rep.controller.delete_presence(&rep.config.cell_id).await {
            tracing::warn!(%error, "could not remove the presence");
        }
    }
    if !rep.outbox.flush(Duration::from_secs(10)).await {
        tracing::warn!(
            pending = rep.outbox.pending(),
            "reports still queued at exit"
        );
    }
}

async fn wait_for_garden(
    garden: &garden_api::client::Client,
    config: &CellConfig,
) -> Result<(), RepError> {
    let waited = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + waited;
    loop {
        match garden.ping().await {
            Ok(()) => return Ok(()),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(RepError::GardenDown {
                    socket: config.garden_socket.display().to_string(),
                    waited,
                    reason: error.to_string(),
                })
            }
            Err(error) => {
                tracing::info!(%error, "waiting for gardend");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
