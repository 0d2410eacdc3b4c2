//! The executor: a cell's containers, from reservation to deletion, driven
//! through garden (Diego's executor).
//!
//! The rep calls [`Executor::reserve`] when it wins work, [`Executor::run`]
//! with the recipe, and [`Executor::delete`] once it reported the result;
//! it listens to [`Executor::subscribe`] for `Running` and `Completed`.
//! Each run is a tokio task: create the garden container (limits from the
//! reservation), run the setup, then the action: a Task on its own (its
//! result file read back), an LRP codependent with its health monitor.
//! See `docs/executor.md`.

mod config;
mod container;
mod garden_spec;
mod health;
pub mod healthcheck;
mod lifecycle;
mod log;
mod metrics;
mod process;
mod reconcile;
mod state;
mod steps;
mod store;
mod work;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use garden_api::client::{Client, ClientError};
use garden_api::ErrorKind;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{ExecutorConfig, HEALTHCHECK_PATH, MAX_START_TIMEOUT};
pub use container::{
    BindMount, Container, ContainerKind, HealthStatus, LogConfig, PortMapping, Resources,
    RunRequest, RunResult,
};
pub use garden_spec::{
    net_out_rules, GardenSpecError, DISK_MB, GUID, KIND, MAX_PIDS, MEMORY_MB, OWNER, TAG_PREFIX,
};
pub use log::{ChannelLogSink, LogLine, LogSink, LogStream, NullLogSink, MAX_LINE_BYTES};
pub use metrics::ContainerMetrics;
pub use reconcile::ReconcileReport;
pub use state::ContainerState;
pub use steps::{DownloadError, StepError, UploadError};
pub use store::{Capacity, StoreError};
pub use work::{lrp_tags, tags, task_tags};

use steps::Downloader;
use store::Store;

/// Why an executor call failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The store refused (unknown guid, no room, a wrong state).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `preloaded:<stack>` names a stack this cell does not have.
    #[error("container {guid}: this cell has no stack {rootfs:?}")]
    UnknownStack {
        /// The container.
        guid: String,
        /// The requested rootfs.
        rootfs: String,
    },
    /// A garden call failed.
    #[error("garden {op} of {guid}: {source}")]
    Garden {
        /// The call.
        op: &'static str,
        /// The container.
        guid: String,
        /// The garden error.
        source: Box<ClientError>,
    },
    /// Setting up the download cache or scratch space failed.
    #[error("download set-up: {0}")]
    Downloads(#[from] DownloadError),
    /// The thread that follows garden processes could not start.
    #[error("starting the garden process thread: {0}")]
    ProcessThread(std::io::Error),
    /// The health-check binary could not be found.
    #[error("finding the health-check binary: {0}")]
    HealthcheckBinary(std::io::Error),
}

/// Something that happened to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Resources were set aside.
    Reserved(Container),
    /// A Task's action started, or an LRP became healthy.
    Running(Container),
    /// It ended; `container.result` says how.
    Completed(Container),
    /// An LRP's health changed (healthy once started, unhealthy on failure).
    Health {
        /// The container.
        guid: String,
        /// The check passed.
        healthy: bool,
        /// Why not.
        message: String,
    },
    /// It was deleted (resources are free again).
    Deleted {
        /// The container.
        guid: String,
    },
}

/// A cell's executor. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: ExecutorConfig,
    garden: Client,
    store: Mutex<Store>,
    tasks: Mutex<BTreeMap<String, JoinHandle<()>>>,
    events: broadcast::Sender<Event>,
    logs: Arc<dyn LogSink>,
    downloads: Arc<Downloader>,
    processes: process::Processes,
    metrics: Mutex<BTreeMap<String, ContainerMetrics>>,
    healthcheck_binary: PathBuf,
}

/// Locks a mutex, also after a panic elsewhere (the data stays usable:
/// every update is a single assignment).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Executor {
    /// An executor on `garden`, sending container output to `logs`.
    /// Creates the cache and scratch directories; starts nothing.
    pub fn new(
        config: ExecutorConfig,
        garden: Client,
        logs: Arc<dyn LogSink>,
    ) -> Result<Self, ExecutorError> {
        let healthcheck_binary = match &config.healthcheck_binary {
            Some(path) => path.clone(),
            None => std::env::current_exe().map_err(ExecutorError::HealthcheckBinary)?,
        };
        if !healthcheck_binary.is_file() {
            return Err(ExecutorError::HealthcheckBinary(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is not a file", healthcheck_binary.display()),
            )));
        }
        let downloads = Arc::new(Downloader::new(&config)?);
        let processes = process::Processes::start().map_err(ExecutorError::ProcessThread)?;
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            inner: Arc::new(Inner {
                store: Mutex::new(Store::new(config.capacity)),
                config,
                garden,
                tasks: Mutex::new(BTreeMap::new()),
                events,
                logs,
                downloads,
                processes,
                metrics: Mutex::new(BTreeMap::new()),
                healthcheck_binary,
            }),
        })
    }

    /// The settings it runs with.
    pub fn config(&self) -> &ExecutorConfig {
        &self.inner.config
    }

    /// The garden client it drives.
    pub fn garden(&self) -> &Client {
        &self.inner.garden
    }

    /// Events from now on. A receiver that falls more than 1024 events
    /// behind gets `Lagged` and should re-read [`Self::list`].
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Sets resources aside for `guid` (state `Reserved`); refuses, naming
    /// what is short, when the cell cannot take it.
    pub fn reserve(
        &self,
        guid: &str,
        resources: Resources,
        tags: BTreeMap<String, String>,
    ) -> Result<Container, ExecutorError> {
        let container =
            lock(&self.inner.store).reserve(guid, resources, tags, SystemTime::now())?;
        tracing::info!(
            guid,
            memory_mb = resources.memory_mb,
            disk_mb = resources.disk_mb,
            "container reserved"
        );
        self.inner.emit(Event::Reserved(container.clone()));
        Ok(container)
    }

    /// Starts a reserved container: garden create, setup, action (and
    /// health checks). Returns once it is `Initializing`; the rest comes as
    /// events.
    pub fn run(&self, guid: &str, request: RunRequest) -> Result<(), ExecutorError> {
        let image = self
            .inner
            .config
            .image_uri(&request.rootfs)
            .ok_or_else(|| ExecutorError::UnknownStack {
                guid: guid.into(),
                rootfs: request.rootfs.clone(),
            })?;
        let cancel = {
            let mut store = lock(&self.inner.store);
            store.transition(guid, ContainerState::Initializing, SystemTime::now())?;
            let entry = store.get_mut(guid)?;
            entry.container.kind = Some(request.kind());
            entry.cancel.clone()
        };
        let inner = self.inner.clone();
        let owned = guid.to_owned();
        let task = tokio::spawn(async move {
            lifecycle::run(inner, owned, request, image, cancel).await;
        });
        lock(&self.inner.tasks).insert(guid.to_owned(), task);
        Ok(())
    }

    /// Stops a container's work: processes get SIGTERM, then SIGKILL after
    /// the grace time. Returns at once; `Completed` (with `stopped`) follows.
    pub async fn stop(&self, guid: &str) -> Result<(), ExecutorError> {
        let (state, cancel) = {
            let store = lock(&self.inner.store);
            let entry = store.get(guid)?;
            (entry.container.state, entry.cancel.clone())
        };
        match state {
            ContainerState::Completed => {}
            ContainerState::Reserved => self.inner.finish(guid, lifecycle::stopped(None)),
            _ => {
                tracing::info!(guid, "stopping container");
                cancel.cancel();
            }
        }
        Ok(())
    }

    /// Stops the container if needed, waits for its work to end, destroys
    /// the garden container and frees its resources.
    pub async fn delete(&self, guid: &str) -> Result<(), ExecutorError> {
        let container = self.get(guid)?;
        let in_garden = container.kind.is_some() || container.adopted;
        self.stop(guid).await?;
        let task = lock(&self.inner.tasks).remove(guid);
        if let Some(task) = task {
            let abort = task.abort_handle();
            let limit = self.inner.config.stop_grace + Duration::from_secs(30);
            if tokio::time::timeout(limit, task).await.is_err() {
                tracing::warn!(guid, "container work did not end in time; abandoning it");
                abort.abort();
            }
        }
        let destroyed = if in_garden {
            self.inner.garden.destroy(guid).await
        } else {
            Ok(())
        };
        match destroyed {
            Ok(()) => {}
            Err(e) if e.kind() == Some(ErrorKind::ContainerNotFound) => {}
            Err(source) => {
                return Err(ExecutorError::Garden {
                    op: "destroy",
                    guid: guid.into(),
                    source: Box::new(source),
                })
            }
        }
        lock(&self.inner.store).remove(guid)?;
        lock(&self.inner.metrics).remove(guid);
        tracing::info!(guid, "container deleted");
        self.inner.emit(Event::Deleted { guid: guid.into() });
        Ok(())
    }

    /// One container.
    pub fn get(&self, guid: &str) -> Result<Container, ExecutorError> {
        Ok(lock(&self.inner.store).get(guid)?.container.clone())
    }

    /// Every container, by guid.
    pub fn list(&self) -> Vec<Container> {
        lock(&self.inner.store).list()
    }

    /// What the cell offers in all.
    pub fn total_resources(&self) -> Capacity {
        lock(&self.inner.store).total()
    }

    /// What is left (every container counts until deleted).
    pub fn remaining_resources(&self) -> Capacity {
        lock(&self.inner.store).remaining()
    }

    /// The last metrics sample of every container that has one.
    pub fn metrics(&self) -> BTreeMap<String, ContainerMetrics> {
        lock(&self.inner.metrics).clone()
    }

    /// The download cache's keys, least recently used first.
    pub fn cached_downloads(&self) -> Vec<String> {
        self.inner.downloads.cached_keys()
    }

    /// Bytes the download cache holds.
    pub fn download_cache_bytes(&self) -> u64 {
        self.inner.downloads.cached_bytes()
    }

    /// Samples garden's metrics every `metrics_interval` until `cancel`.
    pub async fn run_metrics(&self, cancel: CancellationToken) {
        let mut sampler = metrics::Sampler::default();
        loop {
            self.sample_metrics(&mut sampler).await;
            tokio::select! {
                () = tokio::time::sleep(self.inner.config.metrics_interval) => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    async fn sample_metrics(&self, sampler: &mut metrics::Sampler) {
        let handles: Vec<String> = self
            .list()
            .into_iter()
            .filter(|c| {
                matches!(
                    c.state,
                    ContainerState::Created | ContainerState::Running | ContainerState::Completed
                )
            })
            .map(|c| c.guid)
            .collect();
        if handles.is_empty() {
            lock(&self.inner.metrics).clear();
            return;
        }
        match self.inner.garden.bulk_metrics(&handles).await {
            Ok(entries) => {
                let all = entries
                    .into_iter()
                    .filter(|(_, e)| e.err.is_none())
                    .map(|(h, e)| (h, e.metrics))
                    .collect();
                let mut sampled = sampler.sample(&all, Instant::now());
                let store = lock(&self.inner.store);
                for (guid, m) in &mut sampled {
                    if let Ok(entry) = store.get(guid) {
                        m.memory_limit_bytes = entry.container.resources.memory_mb << 20;
                        m.disk_limit_bytes = entry.container.resources.disk_mb << 20;
                    }
                }
                drop(store);
                *lock(&self.inner.metrics) = sampled;
            }
            Err(error) => tracing::warn!(%error, "garden metrics unavailable"),
        }
    }
}

impl Inner {
    fn emit(&self, event: Event) {
        // No receiver is fine: the rep may not listen yet.
        let _ = self.events.send(event);
    }

    /// Moves `guid` to `state`; emits `Running` on reaching it.
    fn transition(&self, guid: &str, state: ContainerState) -> Result<Container, StoreError> {
        let container = lock(&self.store).transition(guid, state, SystemTime::now())?;
        tracing::info!(guid, state = %state, "container state");
        if state == ContainerState::Running {
            self.emit(Event::Running(container.clone()));
        }
        Ok(container)
    }

    /// Completes `guid` with `result` (unless it already completed).
    fn finish(&self, guid: &str, result: RunResult) {
        let completed = lock(&self.store).complete(guid, result.clone(), SystemTime::now());
        match completed {
            Ok(container) => {
                tracing::info!(
                    guid,
                    failed = result.failed,
                    reason = %result.failure_reason,
                    exit_status = ?result.exit_status,
                    stopped = result.stopped,
                    "container completed"
                );
                self.emit(Event::Completed(container));
            }
            Err(error) => tracing::debug!(guid, %error, "not completing"),
        }
    }
}
