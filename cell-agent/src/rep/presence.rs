//! The presence: `PUT /internal/v1/cells/{id}/presence` every refresh
//! interval with the cell's capacity and this run's `rep_key`. Failures
//! are logged and retried at the next tick; the first success tells
//! systemd the agent is ready (`READY=1`).

use std::sync::Arc;
use std::time::SystemTime;

use diego::rep::CellPresence;
use tokio_util::sync::CancellationToken;

use super::{lock, sd_notify, Rep};

impl Rep {
    /// What the cell announces now.
    pub(crate) fn presence_body(&self) -> CellPresence {
        CellPresence {
            cell_id: self.config.cell_id.clone(),
            rep_url: self.config.rep_url(),
            rep_key: self.rep_key.clone(),
            zone: self.config.zone.clone(),
            stacks: self.config.stack_names(),
            placement_tags: self.config.placement_tags.clone(),
            optional_placement_tags: self.config.optional_placement_tags.clone(),
            capacity: self.config.capacity(),
            evacuating: self.is_evacuating(),
        }
    }

    /// One presence call; records how it went.
    pub(crate) async fn announce(&self) -> bool {
        let body = self.presence_body();
        let result = self.controller.put_presence(&body).await;
        let mut status = lock(&self.presence);
        status.evacuating = body.evacuating;
        match result {
            Ok(ack) => {
                if !status.established {
                    tracing::info!(cell_id = %body.cell_id, ttl_secs = ack.ttl_secs, "presence established");
                }
                status.established = true;
                status.last_ok = Some(SystemTime::now());
                status.ttl_secs = ack.ttl_secs;
                status.last_error = None;
                true
            }
            Err(error) => {
                tracing::warn!(%error, "presence refresh failed; retrying");
                status.failures += 1;
                status.last_error = Some(error.to_string());
                false
            }
        }
    }
}

/// Refreshes the presence until `stop`, at once when evacuation starts.
pub(crate) async fn keep(rep: Arc<Rep>, stop: CancellationToken) {
    let mut ready = false;
    loop {
        if rep.announce().await && !ready {
            ready = true;
            sd_notify::notify("READY=1");
        }
        tokio::select! {
            () = tokio::time::sleep(rep.config.presence_refresh) => {}
            () = rep.presence_now.notified() => {}
            () = stop.cancelled() => return,
        }
    }
}
