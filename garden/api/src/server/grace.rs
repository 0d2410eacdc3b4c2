//! Grace timers (Garden's "bomberman"): a container unreferenced for its
//! grace time is destroyed. Every request naming the container holds its
//! timer; the timer starts again when the last request ends.
//!
//! ```text
//!   arm(grace) ──► ticking ──(deadline)──► expired: on_expire(handle)
//!                   │   ▲
//!          hold()   ▼   │ last hold dropped: deadline = now + grace
//!                  held
//!   disarm / arm(None) ──► no timer
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct Timer {
    grace: Duration,
    holds: usize,
    /// `None` while held.
    deadline: Option<Instant>,
}

/// The grace timers of all containers.
#[derive(Debug, Default)]
pub(crate) struct Reaper {
    timers: Mutex<HashMap<String, Timer>>,
    changed: Notify,
}

/// Holds a container's timer until dropped.
pub(crate) struct Hold {
    reaper: Arc<Reaper>,
    handle: String,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut timers = self.reaper.timers();
        if let Some(timer) = timers.get_mut(&self.handle) {
            timer.holds = timer.holds.saturating_sub(1);
            if timer.holds == 0 {
                timer.deadline = Some(Instant::now() + timer.grace);
                drop(timers);
                self.reaper.changed.notify_one();
            }
        }
    }
}

impl Reaper {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn timers(&self) -> MutexGuard<'_, HashMap<String, Timer>> {
        self.timers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Starts (or replaces) a container's timer; `None` or zero: no timer.
    pub(crate) fn arm(&self, handle: &str, grace: Option<Duration>) {
        let mut timers = self.timers();
        match grace.filter(|grace| !grace.is_zero()) {
            Some(grace) => {
                let holds = timers.get(handle).map_or(0, |timer| timer.holds);
                let deadline = (holds == 0).then(|| Instant::now() + grace);
                timers.insert(
                    handle.to_owned(),
                    Timer {
                        grace,
                        holds,
                        deadline,
                    },
                );
            }
            None => {
                timers.remove(handle);
            }
        }
        drop(timers);
        self.changed.notify_one();
    }

    /// A new grace time from SetGraceTime (zero: never reaped).
    pub(crate) fn rearm(&self, handle: &str, grace: Duration) {
        self.arm(handle, Some(grace));
    }

    /// Forgets a destroyed container.
    pub(crate) fn disarm(&self, handle: &str) {
        self.timers().remove(handle);
    }

    /// Holds the timer of `handle` (if it has one) until the guard drops.
    pub(crate) fn hold(self: &Arc<Self>, handle: &str) -> Hold {
        if let Some(timer) = self.timers().get_mut(handle) {
            timer.holds += 1;
            timer.deadline = None;
        }
        Hold {
            reaper: Arc::clone(self),
            handle: handle.to_owned(),
        }
    }

    /// Takes the timers whose deadline passed; returns them and the next deadline.
    fn expired(&self, now: Instant) -> (Vec<String>, Option<Instant>) {
        let mut timers = self.timers();
        let due: Vec<String> = timers
            .iter()
            .filter(|(_, timer)| timer.deadline.is_some_and(|deadline| deadline <= now))
            .map(|(handle, _)| handle.clone())
            .collect();
        for handle in &due {
            timers.remove(handle);
        }
        let next = timers.values().filter_map(|timer| timer.deadline).min();
        (due, next)
    }

    /// Calls `on_expire` for each container whose time is up, until `stop`.
    pub(crate) async fn run(&self, stop: CancellationToken, mut on_expire: impl FnMut(String)) {
        loop {
            let changed = self.changed.notified();
            let (due, next) = self.expired(Instant::now());
            for handle in due {
                on_expire(handle);
            }
            let sleep = async {
                match next {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => {}
                () = changed => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn reaped_within(reaper: &Arc<Reaper>, wait: Duration) -> Vec<String> {
        let stop = CancellationToken::new();
        let reaped = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (reaper, stop, reaped) = (Arc::clone(reaper), stop.clone(), Arc::clone(&reaped));
            tokio::spawn(async move {
                reaper
                    .run(stop, |handle| {
                        reaped.lock().expect("not poisoned").push(handle)
                    })
                    .await;
            })
        };
        tokio::time::sleep(wait).await;
        stop.cancel();
        task.await.expect("the reaper ends");
        let reaped = reaped.lock().expect("not poisoned").clone();
        reaped
    }

    #[tokio::test(start_paused = true)]
    async fn unreferenced_containers_are_reaped_after_their_grace_time() {
        let reaper = Arc::new(Reaper::new());
        reaper.arm("short", Some(Duration::from_secs(5)));
        reaper.arm("long", Some(Duration::from_secs(60)));
        reaper.arm("never", None);
        assert_eq!(
            reaped_within(&reaper, Duration::from_secs(10)).await,
            ["short"]
        );
        assert_eq!(
            reaped_within(&reaper, Duration::from_secs(60)).await,
            ["long"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_pauses_the_timer_and_its_end_restarts_it() {
        let reaper = Arc::new(Reaper::new());
        reaper.arm("h", Some(Duration::from_secs(5)));
        let hold = reaper.hold("h");
        assert!(reaped_within(&reaper, Duration::from_secs(30))
            .await
            .is_empty());
        drop(hold);
        assert!(reaped_within(&reaper, Duration::from_secs(4))
            .await
            .is_empty());
        assert_eq!(reaped_within(&reaper, Duration::from_secs(2)).await, ["h"]);
    }

    #[tokio::test(start_paused = true)]
    async fn rearming_and_disarming() {
        let reaper = Arc::new(Reaper::new());
        reaper.arm("a", Some(Duration::from_secs(5)));
        reaper.rearm("a", Duration::ZERO);
        reaper.arm("b", Some(Duration::from_secs(5)));
        reaper.disarm("b");
        reaper.arm("c", Some(Duration::from_secs(100)));
        reaper.rearm("c", Duration::from_secs(1));
        assert_eq!(reaped_within(&reaper, Duration::from_secs(10)).await, ["c"]);
    }
}
