//! Ctrl-C: the first SIGINT/SIGTERM/SIGHUP asks the bench to stop after the
//! current iteration and clean up; a second one exits at once. Shared by
//! garden-bench and gardend-bench.
//!
//! The signals are blocked and taken by a thread with `sigwait`, so no
//! signal handler (and no unsafe) is needed. Children start with an empty
//! signal mask (std's `Command` resets it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};

/// Set once the bench should stop: an interrupt, or a failed worker.
#[derive(Clone)]
pub struct Interrupted(Arc<AtomicBool>);

impl Interrupted {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Stops the other workers (one of them failed).
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Starts watching. Call before starting any other thread (an async
/// runtime's included), so they all inherit the blocked mask.
pub fn watch() -> Result<Interrupted> {
    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(sig);
    }
    set.thread_block()
        .context("blocking SIGINT/SIGTERM/SIGHUP")?;
    let flag = Interrupted(Arc::new(AtomicBool::new(false)));
    let seen = flag.clone();
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            // A worker's failure also sets the flag: only a second signal
            // exits at once.
            let mut signalled = false;
            let me = env!("CARGO_BIN_NAME");
            while let Ok(sig) = set.wait() {
                if signalled {
                    eprintln!("{me}: {sig} again, exiting without cleaning up");
                    std::process::exit(130);
                }
                signalled = true;
                seen.set();
                eprintln!("{me}: {sig}, stopping and cleaning up (again to exit at once)");
            }
        })
        .context("starting the interrupt thread")?;
    Ok(flag)
}
