//! Convergence: a pure planner comparing desired and actual state and
//! returning the changes Diego's BBS makes every 30 s (REFERENCE §2
//! "Convergence"). The caller applies the [`Plan`] to its database in this
//! order: `retire`, `unsuspect`, `suspect`, `unclaim`, `restart_crashed`,
//! `create_unclaimed`; then it auctions `starts` and applies the task plan.
//! Every item names the record as convergence saw it (key, presence,
//! instance), so the caller can skip one that changed meanwhile.
//!
//! LRPs, per instance slot `(process_guid, index)`:
//! - no desired LRP (orphan) or `index ≥ instances` (extra): retire;
//! - no ORDINARY record: create one UNCLAIMED and start it, unless a SUSPECT
//!   one's cell is back (then it becomes ORDINARY again);
//! - UNCLAIMED for more than 30 s (`since`): auction it again;
//! - CLAIMED on a missing cell: unclaim and start; RUNNING on a missing
//!   cell: SUSPECT, and start a replacement;
//! - CRASHED and the back-off allows: restart;
//! - SUSPECT whose replacement is RUNNING: retire; whose cell is back
//!   before that: retire the replacement, back to ORDINARY;
//! - EVACUATING whose replacement is RUNNING, or whose cell is missing:
//!   retire.
//!
//! Tasks: PENDING for more than 30 min or rejected 3 times: fail; PENDING
//! untouched for 30 s: auction again; RUNNING on a missing cell: fail "cell
//! disappeared before completion"; COMPLETED or RESOLVING for more than
//! 2 min: delete; COMPLETED untouched for 30 s with a callback: send it
//! again; RESOLVING untouched for 30 s: back to COMPLETED.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auction::{LrpStart, TaskStart};
use crate::models::actual_lrp::{
    ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, Presence,
};
use crate::models::desired_lrp::DesiredLrp;
use crate::models::record::Timestamp;
use crate::models::task::{self, Task, TaskState};

/// Convergence timings and limits, Diego's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConvergenceConfig {
    /// How often the caller runs a pass (30 s); lost cells should also
    /// trigger one at once.
    pub interval: Duration,
    /// An UNCLAIMED instance older than this is auctioned again (30 s).
    pub stale_unclaimed: Duration,
    /// A PENDING task older than this fails (30 min).
    pub pending_task_expiry: Duration,
    /// A COMPLETED task older than this is deleted (2 min).
    pub completed_task_expiry: Duration,
    /// A task untouched this long is kicked: re-auctioned, its callback
    /// re-sent, or its resolution retried (30 s).
    pub task_kick: Duration,
    /// Rejections after which a task fails (3).
    pub max_task_rejections: u32,
}

impl Default for ConvergenceConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            stale_unclaimed: Duration::from_secs(30),
            pending_task_expiry: Duration::from_secs(30 * 60),
            completed_task_expiry: Duration::from_secs(2 * 60),
            task_kick: Duration::from_secs(30),
            max_task_rejections: task::DEFAULT_MAX_REJECTIONS,
        }
    }
}

/// One actual LRP record as convergence saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    /// The slot.
    pub key: ActualLrpKey,
    /// Which of the slot's records.
    pub presence: Presence,
    /// Its instance, if claimed or running.
    pub instance_key: Option<ActualLrpInstanceKey>,
}

impl RecordRef {
    fn of(lrp: &ActualLrp) -> Self {
        Self {
            key: lrp.key.clone(),
            presence: lrp.presence,
            instance_key: lrp.instance_key.clone(),
        }
    }
}

/// Why an instance is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartReason {
    /// No record for the index.
    MissingInstance,
    /// UNCLAIMED for too long (its auction failed or was lost).
    StaleUnclaimed,
    /// Its cell is missing.
    CellLost,
    /// CRASHED, and the back-off allows a restart.
    CrashedRestart,
}

/// An instance to auction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStart {
    /// The auction request.
    pub start: LrpStart,
    /// Why.
    pub reason: StartReason,
}

/// Why a record is retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetireReason {
    /// Its LRP is no longer desired.
    Orphan,
    /// Its index is at or above the desired instance count.
    Extra,
    /// An EVACUATING or SUSPECT record whose replacement runs.
    Replaced,
    /// An EVACUATING record whose cell is missing.
    CellLost,
    /// The replacement of a SUSPECT record whose cell came back.
    SuspectReturned,
}

/// A record to remove, stopping its container first if it has one on a
/// present cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    /// The record.
    pub record: RecordRef,
    /// The cell to ask to stop the instance (present cells only).
    pub stop_on_cell: Option<String>,
    /// Why.
    pub reason: RetireReason,
}

/// A task to fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// The task.
    pub task_guid: String,
    /// Its failure reason.
    pub reason: String,
}

/// What to do with tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPlan {
    /// Fail ([`Task::fail`]).
    pub fail: Vec<TaskFailure>,
    /// Auction again (still PENDING).
    pub auction: Vec<TaskStart>,
    /// Send the completion callback again (COMPLETED).
    pub resend_callbacks: Vec<String>,
    /// Back to COMPLETED ([`Task::demote`]), then send the callback.
    pub demote: Vec<String>,
    /// Delete the record.
    pub delete: Vec<String>,
}

/// Everything one convergence pass wants changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Records to remove (stopping their containers).
    pub retire: Vec<Retirement>,
    /// SUSPECT records back to ORDINARY ([`ActualLrp::unsuspect`]).
    pub unsuspect: Vec<RecordRef>,
    /// RUNNING records on missing cells to make SUSPECT
    /// ([`ActualLrp::suspect`]; insert the replacement it returns).
    pub suspect: Vec<RecordRef>,
    /// Records on missing cells to unclaim ([`ActualLrp::unclaim`]).
    pub unclaim: Vec<RecordRef>,
    /// CRASHED records to restart ([`ActualLrp::restart`]).
    pub restart_crashed: Vec<RecordRef>,
    /// UNCLAIMED records to create for missing indices.
    pub create_unclaimed: Vec<ActualLrpKey>,
    /// Instances to auction, after the changes above.
    pub starts: Vec<PlannedStart>,
    /// Tasks.
    pub tasks: TaskPlan,
}

impl Plan {
    /// Whether the pass found nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Plan::default()
    }
}

/// One convergence pass at `now`. `cells_present` holds the ids of cells
/// whose presence has not expired.
pub fn converge(
    now: Timestamp,
    desired: &[DesiredLrp],
    actual: &[ActualLrp],
    tasks: &[Task],
    cells_present: &HashSet<String>,
    config: &ConvergenceConfig,
) -> Plan {
    let mut pass = Pass {
        now,
        cells: cells_present,
        config,
        plan: Plan::default(),
    };
    let by_guid: HashMap<&str, &DesiredLrp> = desired
        .iter()
        .map(|d| (d.process_guid.as_str(), d))
        .collect();
    let mut groups: HashMap<&str, Vec<&ActualLrp>> = HashMap::new();
    for lrp in actual {
        let guid = lrp.key.process_guid.as_str();
        if by_guid.contains_key(guid) {
            groups.entry(guid).or_default().push(lrp);
        } else {
            pass.retire(lrp, RetireReason::Orphan);
        }
    }
    for d in desired {
        let records = groups
            .get(d.process_guid.as_str())
            .map_or(&[][..], Vec::as_slice);
        pass.lrp(d, records);
    }
    for t in tasks {
        pass.task(t);
    }
    pass.plan
}

/// The records of one slot, by presence.
#[derive(Clone, Copy, Default)]
struct Slot<'a> {
    ordinary: Option<&'a ActualLrp>,
    suspect: Option<&'a ActualLrp>,
    evacuating: Option<&'a ActualLrp>,
}

struct Pass<'a> {
    now: Timestamp,
    cells: &'a HashSet<String>,
    config: &'a ConvergenceConfig,
    plan: Plan,
}

impl Pass<'_> {
    /// On a cell that is missing.
    fn lost(&self, lrp: &ActualLrp) -> bool {
        lrp.cell_id().is_some_and(|c| !self.cells.contains(c))
    }

    /// RUNNING on a present cell.
    fn running_here(&self, lrp: &ActualLrp) -> bool {
        lrp.state == ActualLrpState::Running && !self.lost(lrp)
    }

    fn retire(&mut self, lrp: &ActualLrp, reason: RetireReason) {
        let stop_on_cell = (lrp.cell_id())
            .filter(|c| self.cells.contains(*c))
            .map(str::to_owned);
        self.plan.retire.push(Retirement {
            record: RecordRef::of(lrp),
            stop_on_cell,
            reason,
        });
    }

    fn start(&mut self, desired: &DesiredLrp, index: u32, reason: StartReason) {
        self.plan.starts.push(PlannedStart {
            start: LrpStart {
                key: ActualLrpKey::new(&desired.process_guid, index, &desired.domain),
                resource: desired.resource(),
                constraint: desired.placement_constraint(),
            },
            reason,
        });
    }

    fn lrp(&mut self, desired: &DesiredLrp, records: &[&ActualLrp]) {
        // Sparse: the instance count is the controller's input, the
        // records are what exists.
        let mut slots: HashMap<u32, Slot<'_>> = HashMap::with_capacity(records.len());
        for &lrp in records {
            if lrp.key.index >= desired.instances {
                self.retire(lrp, RetireReason::Extra);
                continue;
            }
            let slot = slots.entry(lrp.key.index).or_default();
            let place = match lrp.presence {
                Presence::Ordinary => &mut slot.ordinary,
                Presence::Suspect => &mut slot.suspect,
                Presence::Evacuating => &mut slot.evacuating,
            };
            place.get_or_insert(lrp);
        }
        for index in 0..desired.instances {
            let slot = slots.get(&index).copied().unwrap_or_default();
            self.slot(desired, index, slot);
        }
    }

    fn slot(&mut self, desired: &DesiredLrp, index: u32, slot: Slot<'_>) {
        if let Some(evacuating) = slot.evacuating {
            if self.lost(evacuating) {
                self.retire(evacuating, RetireReason::CellLost);
            } else if slot.ordinary.is_some_and(|o| self.running_here(o)) {
                self.retire(evacuating, RetireReason::Replaced);
            }
        }
        match (slot.ordinary, slot.suspect) {
            (None, Some(suspect)) if !self.lost(suspect) => {
                self.plan.unsuspect.push(RecordRef::of(suspect));
            }
            (None, _) => {
                self.plan.create_unclaimed.push(ActualLrpKey::new(
                    &desired.process_guid,
                    index,
                    &desired.domain,
                ));
                self.start(desired, index, StartReason::MissingInstance);
            }
            (Some(ordinary), Some(suspect)) if self.running_here(ordinary) => {
                self.retire(suspect, RetireReason::Replaced);
            }
            (Some(ordinary), Some(suspect)) if !self.lost(suspect) => {
                self.retire(ordinary, RetireReason::SuspectReturned);
                self.plan.unsuspect.push(RecordRef::of(suspect));
            }
            (Some(ordinary), suspect) => self.ordinary(desired, ordinary, suspect.is_some()),
        }
    }

    fn ordinary(&mut self, desired: &DesiredLrp, lrp: &ActualLrp, has_suspect: bool) {
        let index = lrp.key.index;
        match lrp.state {
            ActualLrpState::Unclaimed
                if self.now.since(lrp.since) > self.config.stale_unclaimed =>
            {
                self.start(desired, index, StartReason::StaleUnclaimed);
            }
            ActualLrpState::Claimed if self.lost(lrp) => {
                self.plan.unclaim.push(RecordRef::of(lrp));
                self.start(desired, index, StartReason::CellLost);
            }
            ActualLrpState::Running if self.lost(lrp) => {
                // One SUSPECT per slot: a second loss just unclaims.
                let list = if has_suspect {
                    &mut self.plan.unclaim
                } else {
                    &mut self.plan.suspect
                };
                list.push(RecordRef::of(lrp));
                self.start(desired, index, StartReason::CellLost);
            }
            ActualLrpState::Crashed if lrp.may_restart(self.now) => {
                self.plan.restart_crashed.push(RecordRef::of(lrp));
                self.start(desired, index, StartReason::CrashedRestart);
            }
            _ => {}
        }
    }

    fn task(&mut self, t: &Task) {
        let config = self.config;
        let older = |at: Timestamp, limit: Duration| self.now.since(at) > limit;
        let fail = |reason: String| TaskFailure {
            task_guid: t.task_guid.clone(),
            reason,
        };
        let tasks = &mut self.plan.tasks;
        match t.state {
            TaskState::Pending => {
                if older(t.created_at, config.pending_task_expiry) {
                    tasks.fail.push(fail(task::NOT_STARTED_IN_TIME.to_owned()));
                } else if t.rejection_count >= config.max_task_rejections {
                    let why = format!(
                        "task was rejected {} times: {}",
                        t.rejection_count, t.rejection_reason
                    );
                    tasks.fail.push(fail(why));
                } else if older(t.updated_at, config.task_kick) {
                    tasks.auction.push(TaskStart::for_task(t));
                }
            }
            TaskState::Running => {
                if !self.cells.contains(&t.cell_id) {
                    tasks.fail.push(fail(task::CELL_DISAPPEARED.to_owned()));
                }
            }
            TaskState::Completed | TaskState::Resolving => {
                let completed = t.first_completed_at.unwrap_or(t.updated_at);
                if older(completed, config.completed_task_expiry) {
                    tasks.delete.push(t.task_guid.clone());
                } else if older(t.updated_at, config.task_kick) {
                    if t.state == TaskState::Resolving {
                        tasks.demote.push(t.task_guid.clone());
                    } else if !t.definition.completion_callback_url.is_empty() {
                        tasks.resend_callbacks.push(t.task_guid.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "convergence_tests.rs"]
mod tests;
