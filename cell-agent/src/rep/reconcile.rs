//! After a restart: garden containers this agent's owner created are
//! reconciled before the presence is announced. The controller offers no
//! endpoint listing what it expects of a cell, so the rule is:
//!
//! - an LRP container is adopted (kept running, watched again) and
//!   reported `Running`: the controller adopts it, or stops it through the
//!   rep's stop route when the slot is already filled elsewhere;
//! - a Task container is destroyed and the task reported completed with
//!   `failed` (its process was not watched while the agent was away, so
//!   its result is lost);
//! - anything else with this owner (no lifecycle tag) is destroyed.

use std::collections::BTreeSet;

use diego::rep::{LrpEvent, TaskCompleted};
use garden_api::types::Properties;

use super::events::lrp_keys;
use super::outbox::Report;
use super::{Rep, RepError};
use crate::executor::{tags, ReconcileReport, OWNER, TAG_PREFIX};

/// The failure reason of a task found after a restart.
pub(crate) const TASK_LOST: &str = "the cell agent restarted while the task ran";

/// Adopts LRP containers and destroys the rest (see the module docs).
pub(crate) async fn reconcile(rep: &Rep) -> Result<ReconcileReport, RepError> {
    let garden = rep.executor.garden();
    let filter = Properties::from([(OWNER.to_owned(), rep.config.owner.clone())]);
    let handles = garden.list(&filter).await.unwrap_or_default();
    let lifecycle_key = format!("{TAG_PREFIX}{}", tags::LIFECYCLE);
    let task_key = format!("{TAG_PREFIX}{}", tags::TASK_GUID);
    let mut lrps = BTreeSet::new();
    let mut tasks = Vec::new();
    for handle in handles {
        let Ok(properties) = garden.properties(&handle).await else {
            continue;
        };
        match properties.get(&lifecycle_key).map(String::as_str) {
            Some("lrp") => {
                lrps.insert(handle);
            }
            Some("task") => tasks.push(properties.get(&task_key).cloned().unwrap_or(handle)),
            _ => {}
        }
    }
    let report = rep.executor.reconcile(|guid| lrps.contains(guid)).await?;
    for guid in &report.adopted {
        let Ok(container) = rep.executor.get(guid) else {
            continue;
        };
        if let Some((key, instance)) = lrp_keys(&container, &rep.config.cell_id) {
            let net_info = rep.net_info(&container).await;
            rep.outbox.push(Report::Lrp(LrpEvent::Running {
                key,
                instance,
                net_info,
            }));
        }
    }
    for task_guid in tasks {
        rep.outbox.push(Report::TaskCompleted(
            task_guid,
            TaskCompleted {
                cell_id: rep.config.cell_id.clone(),
                failed: true,
                failure_reason: TASK_LOST.into(),
                result: String::new(),
            },
        ));
    }
    Ok(report)
}
