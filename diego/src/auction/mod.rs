//! The auction: a pure function from a snapshot of the cells and a batch of
//! work to a placement plan (Diego's auctioneer, REFERENCE §2 "Auction").
//!
//! 1. Order: index-0 LRP instances, then Tasks, then the other LRP
//!    instances; bigger memory first within each group, then batch order.
//! 2. Filter (`filter.rs`): not evacuating, runs the rootfs's stack,
//!    placement tags match (`required ⊆ desired ⊆ required ∪ optional`).
//! 3. LRPs pick a zone first: the zones with the fewest instances of the
//!    process that have a cell that fits, ties considered together.
//! 4. Score (`cells.rs`; lowest wins, ties to the lower cell id): mean used
//!    fraction of memory, disk and containers after the placement, plus
//!    0.25 × starting containers, plus 1000 × instances of the same process
//!    (Tasks: 1000 × tasks) on the cell.
//!
//! Each placement updates the in-memory copy of its cell (resources,
//! starting count, instance counts) before the next one is scored.

mod cells;
mod filter;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::models::actual_lrp::ActualLrpKey;
use crate::models::desired_lrp::DesiredLrp;
use crate::models::resource::{PlacementConstraint, Resource};
use crate::models::task::Task;

use cells::Cells;
use filter::Compatibility;

/// Weight of each container a cell is still starting (Diego's default).
pub const STARTING_CONTAINER_WEIGHT: f64 = 0.25;
/// Added per instance of the same process already on a cell (per task on
/// the cell for Tasks), so spreading beats packing.
pub const LOCALITY_OFFSET: f64 = 1000.0;

/// Why a piece of work found no cell. The text becomes an actual LRP's
/// `placement_error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PlacementError {
    /// No (non-evacuating) cell runs the stack.
    #[error("found no compatible cell for stack {stack:?}")]
    NoCompatibleCell {
        /// The stack needed.
        stack: String,
    },
    /// Cells run the stack, but none matches the placement tags.
    #[error("found no compatible cell with placement tags {tags:?}")]
    PlacementTagMismatch {
        /// The work's tags.
        tags: Vec<String>,
    },
    /// Compatible cells exist, but none has room.
    #[error("insufficient resources: {0}")]
    InsufficientResources(Lacking),
}

/// What the compatible cells lacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lacking {
    /// Every cell lacked memory.
    pub memory: bool,
    /// Every cell lacked disk.
    pub disk: bool,
    /// Every cell lacked a container slot.
    pub containers: bool,
    /// When no resource was short on every cell: the union of what each
    /// cell lacked (memory, disk, containers).
    pub some: [bool; 3],
}

impl Lacking {
    fn names(flags: [bool; 3]) -> impl Iterator<Item = &'static str> {
        ["memory", "disk", "containers"]
            .into_iter()
            .zip(flags)
            .filter_map(|(name, lacked)| lacked.then_some(name))
    }
}

impl fmt::Display for Lacking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let every = [self.memory, self.disk, self.containers];
        if every.iter().any(|&b| b) {
            let names: Vec<_> = Self::names(every).collect();
            return f.write_str(&names.join(", "));
        }
        let names: Vec<_> = Self::names(self.some).collect();
        write!(f, "each cell lacked one of {}", names.join(", "))
    }
}

/// An LRP instance on a cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LrpInstance {
    /// Its process.
    pub process_guid: String,
    /// Its index.
    pub index: u32,
}

/// Memory, disk and container slots of a cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Memory in MB.
    pub memory_mb: u64,
    /// Disk in MB.
    pub disk_mb: u64,
    /// Container slots.
    pub containers: u32,
}

/// A cell as its `GET /state` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CellState {
    /// Unique cell id.
    pub cell_id: String,
    /// Availability zone.
    pub zone: String,
    /// Stacks it runs (`cflinuxfs4`, and `docker` for docker images).
    pub stacks: Vec<String>,
    /// Tags work must desire to run here.
    pub placement_tags: Vec<String>,
    /// Tags work may desire to run here.
    pub optional_placement_tags: Vec<String>,
    /// Its whole capacity.
    pub total: Capacity,
    /// What is free.
    pub available: Capacity,
    /// LRP instances it holds.
    pub lrps: Vec<LrpInstance>,
    /// Task guids it holds.
    pub tasks: Vec<String>,
    /// Containers being created.
    pub starting_containers: u32,
    /// Draining: takes no work.
    pub evacuating: bool,
}

/// One LRP instance to place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LrpStart {
    /// The slot.
    pub key: ActualLrpKey,
    /// What it takes.
    pub resource: Resource,
    /// Where it may run.
    pub constraint: PlacementConstraint,
}

impl LrpStart {
    /// Start requests for `indices` of `desired`.
    pub fn for_indices(desired: &DesiredLrp, indices: impl IntoIterator<Item = u32>) -> Vec<Self> {
        let resource = desired.resource();
        let constraint = desired.placement_constraint();
        indices
            .into_iter()
            .map(|index| LrpStart {
                key: ActualLrpKey::new(&desired.process_guid, index, &desired.domain),
                resource,
                constraint: constraint.clone(),
            })
            .collect()
    }
}

/// One Task to place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStart {
    /// The task.
    pub task_guid: String,
    /// Its domain.
    pub domain: String,
    /// What it takes.
    pub resource: Resource,
    /// Where it may run.
    pub constraint: PlacementConstraint,
}

impl TaskStart {
    /// The start request of `task`.
    pub fn for_task(task: &Task) -> Self {
        Self {
            task_guid: task.task_guid.clone(),
            domain: task.domain.clone(),
            resource: task.definition.resource(),
            constraint: task.definition.placement_constraint(),
        }
    }
}

/// LRP instances and Tasks: a batch to auction, or one cell's share of it
/// (the body of its `POST /work`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Work {
    /// LRP instances.
    pub lrps: Vec<LrpStart>,
    /// Tasks.
    pub tasks: Vec<TaskStart>,
}

impl Work {
    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.lrps.is_empty() && self.tasks.is_empty()
    }
}

/// An LRP instance that found no cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedLrp {
    /// The request.
    pub lrp: LrpStart,
    /// Why.
    pub error: PlacementError,
}

/// A Task that found no cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedTask {
    /// The request.
    pub task: TaskStart,
    /// Why.
    pub error: PlacementError,
}

/// The auction's plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionResults {
    /// Work per cell id, in placement order; cells without work are absent.
    pub placed: BTreeMap<String, Work>,
    /// LRP instances that fit nowhere (they stay UNCLAIMED).
    pub failed_lrps: Vec<FailedLrp>,
    /// Tasks that fit nowhere (they stay PENDING).
    pub failed_tasks: Vec<FailedTask>,
}

impl AuctionResults {
    /// LRP instances and Tasks placed.
    pub fn placed_count(&self) -> usize {
        self.placed
            .values()
            .map(|w| w.lrps.len() + w.tasks.len())
            .sum()
    }
}

/// Scoring weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuctionConfig {
    /// Weight of each starting container ([`STARTING_CONTAINER_WEIGHT`]).
    pub starting_container_weight: f64,
}

impl Default for AuctionConfig {
    fn default() -> Self {
        Self {
            starting_container_weight: STARTING_CONTAINER_WEIGHT,
        }
    }
}

/// Places `batch` on `cells` with Diego's default weights.
pub fn auction(cells: &[CellState], batch: Work) -> AuctionResults {
    auction_with(cells, batch, &AuctionConfig::default())
}

#[derive(Debug, Clone, Copy)]
enum Item {
    Lrp(usize),
    Task(usize),
}

/// Diego's order: index-0 instances, Tasks, other instances; bigger memory
/// first within each group; batch order breaks ties (the sort is stable).
fn order(batch: &Work) -> Vec<Item> {
    let lrps = batch.lrps.iter().enumerate().map(|(i, lrp)| {
        let group = if lrp.key.index == 0 { 0 } else { 2 };
        (group, lrp.resource.memory_mb, Item::Lrp(i))
    });
    let tasks = (batch.tasks.iter().enumerate())
        .map(|(i, task)| (1, task.resource.memory_mb, Item::Task(i)));
    let mut items: Vec<_> = lrps.chain(tasks).collect();
    items.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    items.into_iter().map(|(_, _, item)| item).collect()
}

/// Places `batch` on `cells` with the given weights. Deterministic: the
/// same input gives the same plan.
pub fn auction_with(cells: &[CellState], batch: Work, config: &AuctionConfig) -> AuctionResults {
    let mut sim = Cells::new(cells, config);
    let compat = Compatibility::of_batch(&sim, &batch);
    let order = order(&batch);
    let mut lrps: Vec<Option<LrpStart>> = batch.lrps.into_iter().map(Some).collect();
    let mut tasks: Vec<Option<TaskStart>> = batch.tasks.into_iter().map(Some).collect();
    let mut work = vec![Work::default(); sim.len()];
    let mut results = AuctionResults::default();
    for item in order {
        match item {
            Item::Lrp(i) => {
                let Some(lrp) = lrps[i].take() else { continue };
                let set = compat.of_lrp(i);
                match sim.place_lrp(&lrp.key.process_guid, &lrp.resource, set) {
                    Ok(cell) => work[cell].lrps.push(lrp),
                    Err(error) => results.failed_lrps.push(FailedLrp { lrp, error }),
                }
            }
            Item::Task(i) => {
                let Some(task) = tasks[i].take() else {
                    continue;
                };
                match sim.place_task(&task.resource, compat.of_task(i)) {
                    Ok(cell) => work[cell].tasks.push(task),
                    Err(error) => results.failed_tasks.push(FailedTask { task, error }),
                }
            }
        }
    }
    for (cell, w) in work.into_iter().enumerate() {
        if !w.is_empty() {
            results.placed.insert(sim.id(cell).to_owned(), w);
        }
    }
    results
}

#[cfg(test)]
mod tests;
