//! What every record carries: timestamps (an injected clock's readings) and
//! Diego's modification tags.

use std::ops::{Add, Sub};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch. Every function that needs the time
/// takes one of these as `now`, so tests drive the clock.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch itself.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From milliseconds since the epoch.
    pub const fn from_unix_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// From whole seconds since the epoch (the controller's columns).
    pub const fn from_unix_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded down).
    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// The system clock, for callers outside tests.
    pub fn now() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(millis)
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        let millis = self.0.saturating_sub(earlier.0);
        Duration::from_millis(u64::try_from(millis).unwrap_or(0))
    }
}

fn millis_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(millis_of(d)))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;

    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(millis_of(d)))
    }
}

/// Diego's optimistic-concurrency tag: `epoch` names one incarnation of a
/// record (set by whoever creates it, e.g. a fresh guid), `index` counts its
/// changes. Every checked transition that changes a record increments it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct ModificationTag {
    /// Identity of this incarnation of the record.
    pub epoch: String,
    /// Number of changes since creation.
    pub index: u32,
}

impl ModificationTag {
    /// A tag for a new record.
    pub fn new(epoch: impl Into<String>) -> Self {
        Self {
            epoch: epoch.into(),
            index: 0,
        }
    }

    /// Counts one change.
    pub fn increment(&mut self) {
        self.index = self.index.saturating_add(1);
    }

    /// Whether `self` is a later version of the same incarnation as `other`.
    pub fn succeeds(&self, other: &ModificationTag) -> bool {
        self.epoch == other.epoch && self.index > other.index
    }
}

/// Whether a checked transition changed the record (`Unchanged` for an
/// idempotent repeat, e.g. a cell claiming what it already claimed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The record changed and should be written (and an event emitted).
    Changed,
    /// Nothing to write.
    Unchanged,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_arithmetic_saturates() {
        let t = Timestamp::from_unix_secs(100);
        assert_eq!(t.unix_millis(), 100_000);
        assert_eq!((t + Duration::from_millis(1500)).unix_secs(), 101);
        assert_eq!((t - Duration::from_secs(1)).unix_secs(), 99);
        assert_eq!(t.since(t + Duration::from_secs(5)), Duration::ZERO);
        assert_eq!(
            (t + Duration::from_secs(5)).since(t),
            Duration::from_secs(5)
        );
        assert_eq!(Timestamp::from_unix_millis(-1).unix_secs(), -1);
        assert_eq!(serde_json::to_string(&t).expect("json"), "100000");
    }

    #[test]
    fn modification_tags_count_changes() {
        let mut tag = ModificationTag::new("e1");
        let old = tag.clone();
        tag.increment();
        assert!(tag.succeeds(&old));
        assert!(!old.succeeds(&tag));
        assert!(!ModificationTag::new("e2").succeeds(&old));
    }
}
