//! Diego's crash restart policy, as pure functions over an injected `now`.
//!
//! | crash count | restart                                 |
//! |-------------|-----------------------------------------|
//! | 1, 2        | at once                                 |
//! | 3 ..= 8     | after 30 s × 2^(n−3): 30 s … 16 min     |
//! | 9 ..= 200   | after 16 min                            |
//! | > 200       | never                                   |
//!
//! The count goes back to 1 when the crashing instance had been running for
//! more than 5 minutes.

use std::time::Duration;

use crate::models::record::Timestamp;

/// An instance that ran longer than this before crashing starts over at
/// crash count 1.
pub const CRASH_RESET_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Crash counts below this restart at once (crashes 1 and 2).
pub const IMMEDIATE_RESTARTS: u32 = 3;
/// The wait after crash 3; doubles with each crash after it.
pub const MIN_BACKOFF: Duration = Duration::from_secs(30);
/// The longest wait (reached at crash 8).
pub const MAX_BACKOFF: Duration = Duration::from_secs(16 * 60);
/// Crash counts above this are never restarted.
pub const MAX_RESTARTS: u32 = 200;

/// The crash count after a crash at `now` of an instance that had
/// `previous` crashes and, if it was RUNNING, had run since `running_since`.
pub fn next_crash_count(previous: u32, running_since: Option<Timestamp>, now: Timestamp) -> u32 {
    match running_since {
        Some(since) if now.since(since) > CRASH_RESET_TIMEOUT => 1,
        _ => previous.saturating_add(1),
    }
}

/// How long after its crash an instance with `crash_count` crashes waits
/// before it restarts: zero for an immediate restart, `None` for never.
pub fn restart_delay(crash_count: u32) -> Option<Duration> {
    if crash_count > MAX_RESTARTS {
        return None;
    }
    if crash_count < IMMEDIATE_RESTARTS {
        return Some(Duration::ZERO);
    }
    let doublings = (crash_count - IMMEDIATE_RESTARTS).min(5);
    Some((MIN_BACKOFF * (1 << doublings)).min(MAX_BACKOFF))
}

/// Whether a crash that brought the count to `crash_count` is restarted at
/// once (the record goes straight back to UNCLAIMED).
pub fn restarts_immediately(crash_count: u32) -> bool {
    restart_delay(crash_count) == Some(Duration::ZERO)
}

/// When an instance that crashed at `crashed_at` with `crash_count` crashes
/// may restart; `None` for never.
pub fn restart_at(crashed_at: Timestamp, crash_count: u32) -> Option<Timestamp> {
    restart_delay(crash_count).map(|delay| crashed_at + delay)
}

/// Whether a CRASHED instance may restart at `now`.
pub fn should_restart(now: Timestamp, crashed_at: Timestamp, crash_count: u32) -> bool {
    restart_at(crashed_at, crash_count).is_some_and(|at| now >= at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;

    #[test]
    fn restart_delay_table() {
        let secs = |n| restart_delay(n).map(|d| d.as_secs());
        let table = [
            (1, Some(0)),
            (2, Some(0)),
            (3, Some(30)),
            (4, Some(60)),
            (5, Some(120)),
            (6, Some(240)),
            (7, Some(480)),
            (8, Some(16 * MIN)),
            (9, Some(16 * MIN)),
            (10, Some(16 * MIN)),
            (199, Some(16 * MIN)),
            (200, Some(16 * MIN)),
            (201, None),
            (u32::MAX, None),
        ];
        for (count, want) in table {
            assert_eq!(secs(count), want, "crash count {count}");
        }
        assert!(restarts_immediately(1));
        assert!(restarts_immediately(2));
        assert!(!restarts_immediately(3));
        assert!(!restarts_immediately(201));
    }

    #[test]
    fn should_restart_waits_for_the_back_off() {
        let crashed = Timestamp::from_unix_secs(1_000);
        assert!(should_restart(crashed, crashed, 1));
        assert!(!should_restart(
            crashed + Duration::from_secs(29),
            crashed,
            3
        ));
        assert!(should_restart(
            crashed + Duration::from_secs(30),
            crashed,
            3
        ));
        assert!(!should_restart(
            crashed + Duration::from_secs(959),
            crashed,
            8
        ));
        assert!(should_restart(
            crashed + Duration::from_secs(960),
            crashed,
            8
        ));
        assert!(should_restart(
            crashed + Duration::from_secs(960),
            crashed,
            200
        ));
        assert!(!should_restart(
            crashed + Duration::from_secs(86_400 * 365),
            crashed,
            201
        ));
        assert_eq!(
            restart_at(crashed, 4),
            Some(crashed + Duration::from_secs(60))
        );
    }

    #[test]
    fn crash_count_resets_after_five_minutes_running() {
        let start = Timestamp::from_unix_secs(0);
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(next_crash_count(0, Some(start), at(1)), 1);
        assert_eq!(
            next_crash_count(7, Some(start), at(300)),
            8,
            "exactly 5 min: no reset"
        );
        assert_eq!(next_crash_count(7, Some(start), at(301)), 1);
        assert_eq!(
            next_crash_count(7, None, at(10_000)),
            8,
            "not running: no reset"
        );
        assert_eq!(next_crash_count(u32::MAX, None, at(1)), u32::MAX);
    }
}
