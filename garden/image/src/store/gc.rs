//! Garbage collection: unreferenced layers go, least recently used first,
//! until the store fits its size cap. Referenced layers, layers used within
//! the grace period, and layers being made right now are never touched.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use super::layers::Layers;
use super::ImageError;

/// What one collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Keys of the layers removed, in removal order.
    pub removed: Vec<String>,
    pub freed_bytes: u64,
    /// The store's apparent size before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Layers kept because an owner holds them.
    pub referenced: usize,
}

pub fn collect(
    layers: &Layers,
    held: &HashSet<String>,
    max_size: u64,
    grace: Duration,
) -> Result<GcReport, ImageError> {
    let mut listed = layers.list()?;
    let total: u64 = listed.iter().map(|l| l.meta.stats.bytes).sum();
    let mut report = GcReport {
        bytes_before: total,
        bytes_after: total,
        referenced: listed.iter().filter(|l| held.contains(&l.key)).count(),
        ..GcReport::default()
    };
    if total <= max_size {
        return Ok(report);
    }
    listed.sort_by_key(|l| l.last_used);
    let now = SystemTime::now();
    for l in listed {
        if report.bytes_after <= max_size {
            break;
        }
        let recent = now.duration_since(l.last_used).unwrap_or_default() < grace;
        if held.contains(&l.key) || recent {
            continue;
        }
        // A pull using this key holds its lock: leave the layer to it.
        let lock = layers.lock(&l.key);
        let Ok(_guard) = lock.try_lock() else {
            continue;
        };
        layers.remove(&l.key)?;
        tracing::info!(layer = %l.key, bytes = l.meta.stats.bytes, "layer collected");
        report.bytes_after -= l.meta.stats.bytes;
        report.freed_bytes += l.meta.stats.bytes;
        report.removed.push(l.key);
    }
    Ok(report)
}
