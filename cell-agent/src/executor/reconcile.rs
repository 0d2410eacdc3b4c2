//! After a restart: the garden containers this executor's owner created,
//! adopted into the store when the caller still wants them, destroyed
//! otherwise.

use std::time::SystemTime;

use garden_api::types::Properties;
use serde::{Deserialize, Serialize};

use super::container::Container;
use super::garden_spec::{describe, OWNER};
use super::state::ContainerState;
use super::{lock, Executor, ExecutorError};

/// What `reconcile` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// Guids now in the store as `Running` (adopted).
    pub adopted: Vec<String>,
    /// Guids whose garden containers were destroyed.
    pub destroyed: Vec<String>,
    /// Guids that could not be handled, with why.
    pub failed: Vec<(String, String)>,
}

impl Executor {
    /// Looks at every garden container owned by this executor's owner that
    /// the store does not know: `keep(guid)` true adopts it (state
    /// `Running`, resources and tags from its properties; its processes
    /// keep running but are not watched: no health checks, no exit
    /// status), false destroys it.
    pub async fn reconcile(
        &self,
        keep: impl Fn(&str) -> bool,
    ) -> Result<ReconcileReport, ExecutorError> {
        let garden = &self.inner.garden;
        let filter = Properties::from([(OWNER.to_owned(), self.inner.config.owner.clone())]);
        let handles = garden
            .list(&filter)
            .await
            .map_err(|source| ExecutorError::Garden {
                op: "list",
                guid: String::new(),
                source: Box::new(source),
            })?;
        let mut report = ReconcileReport::default();
        for handle in handles {
            let properties = match garden.properties(&handle).await {
                Ok(p) => p,
                Err(e) => {
                    report.failed.push((handle, e.to_string()));
                    continue;
                }
            };
            let described = describe(&handle, &properties);
            if lock(&self.inner.store).get(&described.guid).is_ok() {
                continue;
            }
            if keep(&described.guid) {
                let now = SystemTime::now();
                lock(&self.inner.store).insert(Container {
                    guid: described.guid.clone(),
                    state: ContainerState::Running,
                    resources: described.resources,
                    tags: described.tags,
                    kind: described.kind,
                    ports: Vec::new(),
                    allocated_at: now,
                    state_changed_at: now,
                    health: None,
                    result: None,
                    adopted: true,
                });
                tracing::info!(guid = %described.guid, "adopted garden container");
                report.adopted.push(described.guid);
            } else {
                match garden.destroy(&handle).await {
                    Ok(()) => {
                        tracing::info!(guid = %described.guid, "destroyed unwanted garden container");
                        report.destroyed.push(described.guid);
                    }
                    Err(e) => report.failed.push((described.guid, e.to_string())),
                }
            }
        }
        Ok(report)
    }
}
