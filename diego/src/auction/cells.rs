//! The auction's in-memory copy of the cells: what each has left, how many
//! containers it is starting, and how many instances of each process it
//! holds, updated after every placement. Scoring reads precomputed per-cell
//! figures only, so one placement costs one pass over the compatible cells.

use std::borrow::Cow;
use std::collections::HashMap;

use super::filter::CompatSet;
use super::{AuctionConfig, CellState, Lacking, PlacementError, LOCALITY_OFFSET};
use crate::models::resource::Resource;

/// The figures scoring needs, per cell.
#[derive(Debug, Clone, Copy)]
struct Hot {
    avail_mem: u64,
    avail_disk: u64,
    used_mem: u64,
    used_disk: u64,
    inv_mem: f64,
    inv_disk: f64,
    inv_containers: f64,
    avail_containers: u32,
    used_containers: u32,
    starting: u32,
    tasks: u32,
}

fn inverse(total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        1.0 / total as f64
    }
}

impl Hot {
    fn of(state: &CellState) -> Self {
        let (total, avail) = (&state.total, &state.available);
        Self {
            avail_mem: avail.memory_mb,
            avail_disk: avail.disk_mb,
            used_mem: total.memory_mb.saturating_sub(avail.memory_mb),
            used_disk: total.disk_mb.saturating_sub(avail.disk_mb),
            inv_mem: inverse(total.memory_mb),
            inv_disk: inverse(total.disk_mb),
            inv_containers: inverse(u64::from(total.containers)),
            avail_containers: avail.containers,
            used_containers: total.containers.saturating_sub(avail.containers),
            starting: state.starting_containers,
            tasks: u32::try_from(state.tasks.len()).unwrap_or(u32::MAX),
        }
    }

    /// Whether `res` fits.
    fn fits(&self, res: &Resource) -> bool {
        self.avail_mem >= res.memory_mb
            && self.avail_disk >= res.disk_mb
            && self.avail_containers > 0
    }

    /// What the cell lacks for `res`: memory, disk, a container slot.
    fn lacks(&self, res: &Resource) -> [bool; 3] {
        [
            self.avail_mem < res.memory_mb,
            self.avail_disk < res.disk_mb,
            self.avail_containers == 0,
        ]
    }

    /// Mean used fraction after placing `res` + the starting-container term.
    fn score(&self, res: &Resource, starting_weight: f64) -> f64 {
        let mem = (self.used_mem + res.memory_mb) as f64 * self.inv_mem;
        let disk = (self.used_disk + res.disk_mb) as f64 * self.inv_disk;
        let containers = f64::from(self.used_containers + 1) * self.inv_containers;
        (mem + disk + containers) / 3.0 + starting_weight * f64::from(self.starting)
    }

    fn take(&mut self, res: &Resource) {
        self.avail_mem -= res.memory_mb;
        self.avail_disk -= res.disk_mb;
        self.used_mem += res.memory_mb;
        self.used_disk += res.disk_mb;
        self.avail_containers -= 1;
        self.used_containers += 1;
        self.starting = self.starting.saturating_add(1);
    }
}

/// Instances of one process: per cell (sparse) and per zone.
#[derive(Debug, Default)]
struct ProcessCounts {
    per_cell: Vec<(usize, u32)>,
    per_zone: Vec<u32>,
}

/// What every compatible cell lacked, for the error.
struct LackTracker {
    every: [bool; 3],
    some: [bool; 3],
}

impl LackTracker {
    fn new() -> Self {
        Self {
            every: [true; 3],
            some: [false; 3],
        }
    }

    fn record(&mut self, lacks: [bool; 3]) {
        for ((every, some), lacked) in self.every.iter_mut().zip(&mut self.some).zip(lacks) {
            *every &= lacked;
            *some |= lacked;
        }
    }

    fn error(&self) -> PlacementError {
        let [memory, disk, containers] = self.every;
        let any_every = memory || disk || containers;
        PlacementError::InsufficientResources(Lacking {
            memory,
            disk,
            containers,
            some: if any_every { [false; 3] } else { self.some },
        })
    }
}

/// The best cell so far: lowest score, then lowest cell index.
#[derive(Default)]
struct Best(Option<(f64, usize)>);

impl Best {
    fn offer(&mut self, score: f64, cell: usize) {
        let better = match self.0 {
            None => true,
            Some((s, c)) => score < s || (score == s && cell < c),
        };
        if better {
            self.0 = Some((score, cell));
        }
    }
}

/// The cells taking part (evacuating ones never do), sorted by id.
pub(super) struct Cells<'a> {
    states: Vec<&'a CellState>,
    zone_of: Vec<usize>,
    zone_count: usize,
    hot: Vec<Hot>,
    /// Keyed by process guid, borrowed from the cells' states where possible.
    processes: HashMap<Cow<'a, str>, ProcessCounts>,
    /// Scratch: same-process instances per cell for the request at hand.
    same: Vec<u32>,
    /// Scratch: (instances in zone, position in the compat set's zones).
    zone_order: Vec<(u32, usize)>,
    starting_weight: f64,
}

impl<'a> Cells<'a> {
    pub fn new(cells: &'a [CellState], config: &AuctionConfig) -> Self {
        let mut states: Vec<&CellState> = cells.iter().filter(|c| !c.evacuating).collect();
        states.sort_by(|a, b| a.cell_id.cmp(&b.cell_id));
        let mut zones: Vec<&str> = states.iter().map(|c| c.zone.as_str()).collect();
        zones.sort_unstable();
        zones.dedup();
        let zone_of: Vec<usize> = (states.iter())
            .map(|c| zones.binary_search(&c.zone.as_str()).unwrap_or(0))
            .collect();
        let mut processes: HashMap<Cow<'a, str>, ProcessCounts> = HashMap::new();
        for (cell, state) in states.iter().enumerate() {
            for lrp in &state.lrps {
                let guid = Cow::Borrowed(lrp.process_guid.as_str());
                let counts = processes.entry(guid).or_default();
                counts.per_zone.resize(zones.len(), 0);
                count_one(counts, cell, zone_of[cell]);
            }
        }
        Self {
            hot: states.iter().map(|s| Hot::of(s)).collect(),
            same: vec![0; states.len()],
            zone_count: zones.len(),
            zone_order: Vec::new(),
            starting_weight: config.starting_container_weight,
            states,
            zone_of,
            processes,
        }
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn zone_count(&self) -> usize {
        self.zone_count
    }

    pub fn state(&self, cell: usize) -> &'a CellState {
        self.states[cell]
    }

    pub fn id(&self, cell: usize) -> &'a str {
        &self.states[cell].cell_id
    }

    pub fn zone_of(&self, cell: usize) -> usize {
        self.zone_of[cell]
    }

    /// Picks the cell for one instance of `process_guid` and books it.
    pub fn place_lrp(
        &mut self,
        process_guid: &str,
        res: &Resource,
        set: &CompatSet,
    ) -> Result<usize, PlacementError> {
        if set.all.is_empty() {
            return Err(set.error.clone());
        }
        let counts = self.processes.get(process_guid);
        self.zone_order.clear();
        for (i, zone) in set.zones.iter().enumerate() {
            let n = counts.map_or(0, |c| c.per_zone[zone.zone]);
            self.zone_order.push((n, i));
        }
        self.zone_order.sort_unstable();
        for &(cell, n) in counts.map_or(&[][..], |c| &c.per_cell) {
            self.same[cell] = n;
        }
        let mut best = Best::default();
        let mut lack = LackTracker::new();
        let mut i = 0;
        while i < self.zone_order.len() && best.0.is_none() {
            let group = self.zone_order[i].0;
            while i < self.zone_order.len() && self.zone_order[i].0 == group {
                let zone = &set.zones[self.zone_order[i].1];
                for &cell in &zone.cells {
                    let h = &self.hot[cell];
                    if !h.fits(res) {
                        lack.record(h.lacks(res));
                        continue;
                    }
                    let locality = LOCALITY_OFFSET * f64::from(self.same[cell]);
                    best.offer(h.score(res, self.starting_weight) + locality, cell);
                }
                i += 1;
            }
        }
        for &(cell, _) in counts.map_or(&[][..], |c| &c.per_cell) {
            self.same[cell] = 0;
        }
        let (_, cell) = best.0.ok_or_else(|| lack.error())?;
        self.hot[cell].take(res);
        let zones = self.zone_count;
        let counts = match self.processes.get_mut(process_guid) {
            Some(counts) => counts,
            None => (self.processes)
                .entry(Cow::Owned(process_guid.to_owned()))
                .or_default(),
        };
        counts.per_zone.resize(zones, 0);
        count_one(counts, cell, self.zone_of[cell]);
        Ok(cell)
    }

    /// Picks the cell for one Task and books it.
    pub fn place_task(&mut self, res: &Resource, set: &CompatSet) -> Result<usize, PlacementError> {
        if set.all.is_empty() {
            return Err(set.error.clone());
        }
        let mut best = Best::default();
        let mut lack = LackTracker::new();
        for &cell in &set.all {
            let h = &self.hot[cell];
            if !h.fits(res) {
                lack.record(h.lacks(res));
                continue;
            }
            let locality = LOCALITY_OFFSET * f64::from(h.tasks);
            best.offer(h.score(res, self.starting_weight) + locality, cell);
        }
        let (_, cell) = best.0.ok_or_else(|| lack.error())?;
        self.hot[cell].take(res);
        self.hot[cell].tasks = self.hot[cell].tasks.saturating_add(1);
        Ok(cell)
    }
}

fn count_one(counts: &mut ProcessCounts, cell: usize, zone: usize) {
    match counts.per_cell.iter_mut().find(|(c, _)| *c == cell) {
        Some((_, n)) => *n += 1,
        None => counts.per_cell.push((cell, 1)),
    }
    counts.per_zone[zone] += 1;
}
