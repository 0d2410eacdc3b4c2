//! One container as the daemon holds it in memory.

use std::path::PathBuf;
use std::sync::Mutex;

use super::depot::Record;

/// A live container. `gate` orders operations against destroy: every
/// operation holds it shared and checks `alive`; destroy holds it
/// exclusively and clears `alive`, so nothing starts in a container
/// being torn down.
#[derive(Debug)]
pub struct Container {
    pub handle: String,
    pub record: Mutex<Record>,
    pub gate: std::sync::Arc<tokio::sync::RwLock<bool>>,
    /// The runtime's cgroup path of the container.
    pub cgroup_path: String,
    /// init's host pid (its `/proc/<pid>/root` is the container's root).
    pub init_pid: i32,
    pub dir: PathBuf,
}

impl Container {
    pub fn record(&self) -> Record {
        super::lock(&self.record).clone()
    }

    pub fn root_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.init_pid))
    }
}
