//! Diego's BBS, auctioneer and convergence inside the controller (issue 7).
//!
//! - [`records`]: the SQLite tables (desired generations, actual records,
//!   tasks, cell presences, leases);
//! - [`DiegoScheduler`] (`scheduler.rs`): the controller's [`crate::scheduler::Scheduler`]
//!   hand-off on top of them, with rolling restarts (`rollout.rs`);
//! - `events.rs`: what cells report (presence, LRP events, task start and
//!   completion, metrics), applied with diego's checked transitions;
//! - `auctioneer.rs`: batches start requests, asks every present cell for
//!   its state, runs [`diego::auction::auction`] and sends each cell one
//!   `POST /work` (`cell_client.rs`);
//! - `convergence.rs`: the periodic [`diego::convergence::converge`] pass,
//!   the presence-expiry timer, and the lease that keeps one active
//!   auctioneer per database;
//! - `routing.rs`: the routing table ([`RouteEndpoint`]s of RUNNING
//!   instances);
//! - [`http`]: the cell-facing routes.
//!
//! Components talk through one command channel: scheduler calls and events
//! write the database first, then queue the starts, stops and cancels their
//! change implies; the auctioneer task carries them out.

mod auctioneer;
mod cell_client;
mod convergence;
mod events;
mod gauges;
pub mod http;
pub mod records;
mod rollout;
mod routing;
mod scheduler;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use diego::convergence::ConvergenceConfig;
use diego::models::{ActualLrpError, ActualLrpKey, DesiredLrpError, TaskError, Timestamp};
use diego::rep::ContainerMetrics;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::SchedulerConfig;
use crate::db::{Db, DbError};
use crate::recipes::RecipeError;
use crate::staging::Staging;

pub use cell_client::CellClient;
pub use convergence::PassReport;
pub use routing::RouteEndpoint;
pub use scheduler::DiegoScheduler;

/// Domain of app LRPs.
pub const LRP_DOMAIN: &str = "cf-apps";
/// Name of the auctioneer's lease in `bbs_locks`.
pub const AUCTIONEER_LOCK: &str = "auctioneer";

/// Errors of the BBS.
#[derive(Debug, thiserror::Error)]
pub enum BbsError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Diego refused an actual LRP transition.
    #[error(transparent)]
    Lrp(#[from] ActualLrpError),
    /// Diego refused a task transition.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// A desired LRP is invalid.
    #[error(transparent)]
    Desired(#[from] DesiredLrpError),
    /// The controller's definition could not become a recipe.
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    /// A cell's key was used for another cell's records.
    #[error("{caller} may not act for cell {cell_id:?}")]
    WrongCell {
        /// Who called.
        caller: String,
        /// The cell named in the request.
        cell_id: String,
    },
    /// No such task in the BBS.
    #[error("the BBS has no task {0}")]
    UnknownTask(String),
    /// No ORDINARY record for the slot (not desired, or already removed).
    #[error("the BBS has no instance {0} (not desired)")]
    UnknownInstance(ActualLrpKey),
    /// A cell could not be reached or refused a call.
    #[error("cell {cell_id}: {what}")]
    Cell {
        /// The cell.
        cell_id: String,
        /// What failed.
        what: String,
    },
}

/// Where the BBS reads the time (tests inject their own).
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Timings of the BBS (from `[scheduler]`).
#[derive(Debug, Clone)]
pub struct BbsSettings {
    /// Between periodic convergence passes.
    pub convergence_interval: Duration,
    /// A presence's life without refresh.
    pub presence_ttl: Duration,
    /// How long start requests are gathered into one auction.
    pub batch_window: Duration,
    /// Timeout of each call to a cell.
    pub fetch_timeout: Duration,
    /// The auctioneer lease.
    pub lock_ttl: Duration,
    /// This process's lease owner id.
    pub owner: String,
    /// Convergence thresholds.
    pub convergence: ConvergenceConfig,
}

impl BbsSettings {
    /// Settings from the configuration, with a fresh owner id.
    pub fn from_config(c: &SchedulerConfig) -> Self {
        let interval = Duration::from_secs(c.convergence_interval_secs);
        Self {
            convergence_interval: interval,
            presence_ttl: Duration::from_secs(c.presence_ttl_secs),
            batch_window: Duration::from_millis(c.auction_batch_window_ms),
            fetch_timeout: Duration::from_millis(c.cell_fetch_timeout_ms),
            lock_ttl: Duration::from_secs(c.lock_ttl_secs),
            owner: crate::db::new_guid(),
            convergence: ConvergenceConfig {
                interval,
                ..ConvergenceConfig::default()
            },
        }
    }
}

/// An instance to stop on a cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// The cell holding it.
    pub cell_id: String,
    /// The slot.
    pub key: ActualLrpKey,
    /// The instance.
    pub instance_guid: String,
}

/// What a database change asks of the cells, carried out after commit.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub lrp_starts: Vec<ActualLrpKey>,
    pub task_starts: Vec<String>,
    pub stops: Vec<Stop>,
    /// `(cell_id, task_guid)`.
    pub cancels: Vec<(String, String)>,
}

impl Effects {
    fn merge(&mut self, other: Effects) {
        self.lrp_starts.extend(other.lrp_starts);
        self.task_starts.extend(other.task_starts);
        self.stops.extend(other.stops);
        self.cancels.extend(other.cancels);
    }
}

pub(crate) enum Command {
    Starts {
        lrps: Vec<ActualLrpKey>,
        tasks: Vec<String>,
    },
    Stop(Stop),
    CancelTask {
        cell_id: String,
        task_guid: String,
    },
}

/// The BBS: records in the database, the command queue to the auctioneer,
/// container metrics in memory.
pub struct Bbs {
    db: Db,
    clock: Arc<dyn Clock>,
    settings: BbsSettings,
    commands: UnboundedSender<Command>,
    queue: Mutex<Option<UnboundedReceiver<Command>>>,
    /// Instance guid → (reporting cell, its latest metrics).
    metrics: Mutex<HashMap<String, (String, ContainerMetrics)>>,
    staging: OnceLock<Arc<Staging>>,
    presence_changed: Notify,
    leader: AtomicBool,
    client: CellClient,
}

impl Bbs {
    /// A BBS on `db`; its tasks run after [`Bbs::start`].
    pub fn new(db: Db, settings: BbsSettings, clock: Arc<dyn Clock>) -> Arc<Self> {
        let (commands, queue) = unbounded_channel();
        let client = CellClient::new(settings.fetch_timeout);
        Arc::new(Self {
            db,
            clock,
            settings,
            commands,
            queue: Mutex::new(Some(queue)),
            metrics: Mutex::new(HashMap::new()),
            staging: OnceLock::new(),
            presence_changed: Notify::new(),
            leader: AtomicBool::new(false),
            client,
        })
    }

    /// Connects the completion path of tasks (staging builds, app tasks).
    pub fn set_staging(&self, staging: Arc<Staging>) {
        let _ = self.staging.set(staging);
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The settings.
    pub fn settings(&self) -> &BbsSettings {
        &self.settings
    }

    /// Now, by the injected clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Whether this process holds the auctioneer lease (as of its last renewal).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// Takes or renews the auctioneer lease; true while this process holds it.
    /// Blocking.
    pub fn renew_lease(&self) -> Result<bool, BbsError> {
        let now = self.now();
        let until = now + self.settings.lock_ttl;
        let owner = self.settings.owner.clone();
        let held = self
            .db
            .write_blocking(|tx| records::take_lease(tx, AUCTIONEER_LOCK, &owner, now, until))?;
        let was = self.leader.swap(held, Ordering::SeqCst);
        if held != was {
            tracing::info!(owner = %self.settings.owner, leader = held, "auctioneer lease changed");
        }
        Ok(held)
    }

    /// Queues what a committed change asks of the cells.
    pub(crate) fn dispatch(&self, effects: Effects) {
        for stop in effects.stops {
            let _ = self.commands.send(Command::Stop(stop));
        }
        for (cell_id, task_guid) in effects.cancels {
            let _ = self
                .commands
                .send(Command::CancelTask { cell_id, task_guid });
        }
        if !effects.lrp_starts.is_empty() || !effects.task_starts.is_empty() {
            let _ = self.commands.send(Command::Starts {
                lrps: effects.lrp_starts,
                tasks: effects.task_starts,
            });
        }
    }

    /// Latest metrics of an instance.
    pub fn metrics_of(&self, instance_guid: &str) -> Option<ContainerMetrics> {
        self.metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance_guid)
            .map(|(_, m)| m.clone())
    }

    /// Every instance's latest metrics with the cell that reported them.
    pub fn all_metrics(&self) -> Vec<(String, ContainerMetrics)> {
        self.metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Starts the auctioneer, the convergence loop, the presence-expiry
    /// timer and the lease keeper (call once; later calls start nothing).
    pub fn start(self: &Arc<Self>, cancel: CancellationToken) -> Vec<JoinHandle<()>> {
        let Some(queue) = self.queue.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Vec::new();
        };
        vec![
            tokio::spawn(convergence::keep_lease(self.clone(), cancel.clone())),
            tokio::spawn(auctioneer::run(self.clone(), queue, cancel.clone())),
            tokio::spawn(convergence::periodic(self.clone(), cancel.clone())),
            tokio::spawn(convergence::expiry_timer(self.clone(), cancel)),
        ]
    }

    /// Gives the lease up (on shutdown). Blocking.
    pub fn release_lease(&self) -> Result<(), BbsError> {
        let owner = self.settings.owner.clone();
        self.db
            .write_blocking(|tx| records::release_lease(tx, AUCTIONEER_LOCK, &owner))?;
        self.leader.store(false, Ordering::SeqCst);
        Ok(())
    }
}
