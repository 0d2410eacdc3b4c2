//! The container store: every container of this cell, its state and what it
//! takes, with the cell's capacity. Pure bookkeeping, no I/O: the executor
//! holds it under a lock and acts on garden around it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::container::{Container, Resources, RunResult};
use super::state::ContainerState;

/// Why the store refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The guid is taken.
    #[error("container {guid} already exists")]
    Exists {
        /// The container.
        guid: String,
    },
    /// No such container.
    #[error("container {guid} not found")]
    NotFound {
        /// The container.
        guid: String,
    },
    /// The cell cannot take it; names everything that is short.
    #[error("insufficient resources for {guid}: {}", .lacking.join(", "))]
    InsufficientResources {
        /// The container.
        guid: String,
        /// `memory`, `disk`, `containers`.
        lacking: Vec<&'static str>,
    },
    /// A transition the lifecycle does not allow.
    #[error("container {guid}: cannot go from {from} to {to}")]
    InvalidTransition {
        /// The container.
        guid: String,
        /// Its state.
        from: ContainerState,
        /// The refused state.
        to: ContainerState,
    },
}

/// What a cell has (or has left) for containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Memory in MB.
    pub memory_mb: u64,
    /// Disk in MB.
    pub disk_mb: u64,
    /// Container slots.
    pub containers: u64,
}

/// One container and the handle that stops its work.
pub(crate) struct Entry {
    pub(crate) container: Container,
    pub(crate) cancel: CancellationToken,
}

/// The cell's containers.
pub(crate) struct Store {
    total: Capacity,
    entries: BTreeMap<String, Entry>,
}

impl Store {
    pub(crate) fn new(total: Capacity) -> Self {
        Self {
            total,
            entries: BTreeMap::new(),
        }
    }

    pub(crate) fn total(&self) -> Capacity {
        self.total
    }

    /// What is left: every container counts until it is deleted.
    pub(crate) fn remaining(&self) -> Capacity {
        let mut left = self.total;
        for entry in self.entries.values() {
            let r = entry.container.resources;
            left.memory_mb = left.memory_mb.saturating_sub(r.memory_mb);
            left.disk_mb = left.disk_mb.saturating_sub(r.disk_mb);
            left.containers = left.containers.saturating_sub(1);
        }
        left
    }

    /// Sets resources aside for a new container in state `Reserved`.
    pub(crate) fn reserve(
        &mut self,
        guid: &str,
        resources: Resources,
        tags: BTreeMap<String, String>,
        now: SystemTime,
    ) -> Result<Container, StoreError> {
        if self.entries.contains_key(guid) {
            return Err(StoreError::Exists { guid: guid.into() });
        }
        let left = self.remaining();
        let mut lacking = Vec::new();
        if resources.memory_mb > left.memory_mb {
            lacking.push("memory");
        }
        if resources.disk_mb > left.disk_mb {
            lacking.push("disk");
        }
        if left.containers == 0 {
            lacking.push("containers");
        }
        if !lacking.is_empty() {
            return Err(StoreError::InsufficientResources {
                guid: guid.into(),
                lacking,
            });
        }
        let container = Container {
            guid: guid.to_owned(),
            state: ContainerState::Reserved,
            resources,
            tags,
            kind: None,
            ports: Vec::new(),
            allocated_at: now,
            state_changed_at: now,
            health: None,
            result: None,
            adopted: false,
        };
        self.insert(container.clone());
        Ok(container)
    }

    /// Adds a container found elsewhere (garden, at reconcile), whatever
    /// the capacity says: it exists already.
    pub(crate) fn insert(&mut self, container: Container) -> CancellationToken {
        let cancel = CancellationToken::new();
        self.entries.insert(
            container.guid.clone(),
            Entry {
                container,
                cancel: cancel.clone(),
            },
        );
        cancel
    }

    pub(crate) fn get(&self, guid: &str) -> Result<&Entry, StoreError> {
        self.entries
            .get(guid)
            .ok_or_else(|| StoreError::NotFound { guid: guid.into() })
    }

    pub(crate) fn get_mut(&mut self, guid: &str) -> Result<&mut Entry, StoreError> {
        self.entries
            .get_mut(guid)
            .ok_or_else(|| StoreError::NotFound { guid: guid.into() })
    }

    pub(crate) fn list(&self) -> Vec<Container> {
        self.entries.values().map(|e| e.container.clone()).collect()
    }

    /// Moves a container to `to`, if its lifecycle allows.
    pub(crate) fn transition(
        &mut self,
        guid: &str,
        to: ContainerState,
        now: SystemTime,
    ) -> Result<Container, StoreError> {
        let entry = self.get_mut(guid)?;
        let from = entry.container.state;
        if !from.can_transition_to(to) {
            return Err(StoreError::InvalidTransition {
                guid: guid.into(),
                from,
                to,
            });
        }
        entry.container.state = to;
        entry.container.state_changed_at = now;
        Ok(entry.container.clone())
    }

    /// Moves a container to `Completed` with its result.
    pub(crate) fn complete(
        &mut self,
        guid: &str,
        result: RunResult,
        now: SystemTime,
    ) -> Result<Container, StoreError> {
        self.transition(guid, ContainerState::Completed, now)?;
        let entry = self.get_mut(guid)?;
        entry.container.result = Some(result);
        Ok(entry.container.clone())
    }

    pub(crate) fn remove(&mut self, guid: &str) -> Result<Entry, StoreError> {
        self.entries
            .remove(guid)
            .ok_or_else(|| StoreError::NotFound { guid: guid.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(Capacity {
            memory_mb: 1024,
            disk_mb: 2048,
            containers: 2,
        })
    }

    fn res(memory_mb: u64, disk_mb: u64) -> Resources {
        Resources {
            memory_mb,
            disk_mb,
            max_pids: 0,
        }
    }

    #[test]
    fn reserve_counts_until_delete_and_names_what_is_short() {
        let mut s = store();
        let now = SystemTime::now();
        s.reserve("a", res(1000, 100), BTreeMap::new(), now)
            .expect("fits");
        assert_eq!(
            s.remaining(),
            Capacity {
                memory_mb: 24,
                disk_mb: 1948,
                containers: 1
            }
        );
        let err = s
            .reserve("b", res(100, 4096), BTreeMap::new(), now)
            .expect_err("too big");
        assert_eq!(
            err.to_string(),
            "insufficient resources for b: memory, disk"
        );
        assert_eq!(
            s.reserve("a", res(1, 1), BTreeMap::new(), now),
            Err(StoreError::Exists { guid: "a".into() })
        );
        s.reserve("c", res(0, 0), BTreeMap::new(), now)
            .expect("fits");
        let err = s
            .reserve("d", res(0, 0), BTreeMap::new(), now)
            .expect_err("no slot");
        assert_eq!(err.to_string(), "insufficient resources for d: containers");
        // Completed containers still count; deleted ones do not.
        s.complete("a", RunResult::default(), now)
            .expect("complete");
        assert_eq!(s.remaining().memory_mb, 24);
        s.remove("a").expect("remove");
        assert_eq!(s.remaining().memory_mb, 1024);
    }

    #[test]
    fn transitions_are_checked() {
        let mut s = store();
        let now = SystemTime::now();
        s.reserve("a", res(1, 1), BTreeMap::new(), now)
            .expect("fits");
        let err = s
            .transition("a", ContainerState::Running, now)
            .expect_err("skips states");
        assert_eq!(
            err.to_string(),
            "container a: cannot go from reserved to running"
        );
        for to in [
            ContainerState::Initializing,
            ContainerState::Created,
            ContainerState::Running,
        ] {
            assert_eq!(s.transition("a", to, now).expect("forward").state, to);
        }
        let done = s
            .complete(
                "a",
                RunResult {
                    failed: true,
                    failure_reason: "Exited with status 1".into(),
                    ..RunResult::default()
                },
                now,
            )
            .expect("complete");
        assert_eq!(
            done.result.expect("result").failure_reason,
            "Exited with status 1"
        );
        assert!(s.complete("a", RunResult::default(), now).is_err());
        assert_eq!(
            s.transition("nope", ContainerState::Created, now),
            Err(StoreError::NotFound {
                guid: "nope".into()
            })
        );
    }
}
