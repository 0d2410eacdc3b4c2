//! Which cells may take a piece of work at all: the stack of its rootfs and
//! its placement tags. Computed once per distinct constraint in a batch.

use std::collections::HashMap;

use super::cells::Cells;
use super::{PlacementError, Work};
use crate::models::resource::{required_stack, tags_match, PlacementConstraint};

/// The compatible cells of one zone.
pub(super) struct ZoneCells {
    /// Zone index (zones sorted by name).
    pub zone: usize,
    /// Cell indices, ascending (cells sorted by id).
    pub cells: Vec<usize>,
}

/// The cells that pass the filters for one constraint.
pub(super) struct CompatSet {
    /// Zones with at least one compatible cell, ascending.
    pub zones: Vec<ZoneCells>,
    /// Every compatible cell, ascending.
    pub all: Vec<usize>,
    /// Why nothing passed (meaningful when `all` is empty).
    pub error: PlacementError,
}

impl CompatSet {
    fn of(cells: &Cells<'_>, constraint: &PlacementConstraint) -> Self {
        let stack = required_stack(&constraint.rootfs);
        let tags = &constraint.placement_tags;
        let mut any_stack = false;
        let mut by_zone: Vec<Vec<usize>> = vec![Vec::new(); cells.zone_count()];
        let mut all = Vec::new();
        for c in 0..cells.len() {
            let state = cells.state(c);
            if !state.stacks.iter().any(|s| s == stack) {
                continue;
            }
            any_stack = true;
            if tags_match(&state.placement_tags, &state.optional_placement_tags, tags) {
                by_zone[cells.zone_of(c)].push(c);
                all.push(c);
            }
        }
        let error = if any_stack {
            PlacementError::PlacementTagMismatch { tags: tags.clone() }
        } else {
            PlacementError::NoCompatibleCell {
                stack: stack.to_owned(),
            }
        };
        let zones = (by_zone.into_iter().enumerate())
            .filter(|(_, cells)| !cells.is_empty())
            .map(|(zone, cells)| ZoneCells { zone, cells })
            .collect();
        Self { zones, all, error }
    }
}

/// The compatible cells of every request in a batch.
pub(super) struct Compatibility {
    sets: Vec<CompatSet>,
    lrp: Vec<usize>,
    task: Vec<usize>,
}

impl Compatibility {
    /// Filters the cells once per distinct constraint of `batch`.
    pub fn of_batch(cells: &Cells<'_>, batch: &Work) -> Self {
        let mut ids: HashMap<&PlacementConstraint, usize> = HashMap::new();
        let mut sets = Vec::new();
        let mut lookup = |constraint| {
            *ids.entry(constraint).or_insert_with(|| {
                sets.push(CompatSet::of(cells, constraint));
                sets.len() - 1
            })
        };
        let lrp = batch.lrps.iter().map(|l| lookup(&l.constraint)).collect();
        let task = batch.tasks.iter().map(|t| lookup(&t.constraint)).collect();
        Self { sets, lrp, task }
    }

    /// The compatible cells of the `i`th LRP of the batch.
    pub fn of_lrp(&self, i: usize) -> &CompatSet {
        &self.sets[self.lrp[i]]
    }

    /// The compatible cells of the `i`th Task of the batch.
    pub fn of_task(&self, i: usize) -> &CompatSet {
        &self.sets[self.task[i]]
    }
}
