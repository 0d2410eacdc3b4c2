//! Evacuation (SIGTERM or `POST /evacuate`): the presence says
//! `evacuating` at once (the auction skips the cell, `/work` refuses), every
//! running LRP instance is reported `Evacuating` (with its net info) and
//! keeps running. The controller starts a replacement elsewhere and, once
//! that one is RUNNING, retires the evacuating instance by calling the
//! rep's stop route; a stopped instance is reported `Removed` and deleted.
//! Tasks run to their end. When no LRP or Task container is left, or after
//! `evacuation_timeout`, the agent stops what remains and exits 0.

use std::time::Duration;

use diego::rep::{LrpEvent, TaskCompleted};

use super::events::{lrp_keys, task_guid};
use super::outbox::Report;
use super::{sd_notify, Rep, Shutdown};
use crate::executor::ContainerState;

const POLL: Duration = Duration::from_millis(200);

/// Evacuates; returns how it ended.
pub(crate) async fn evacuate(rep: &Rep) -> Shutdown {
    rep.evacuating
        .store(true, std::sync::atomic::Ordering::SeqCst);
    rep.evacuate.cancel();
    sd_notify::notify("STOPPING=1");
    rep.presence_now.notify_one();
    let mut announced = 0;
    for container in rep.executor.list() {
        if container.state != ContainerState::Running {
            continue;
        }
        if let Some((key, instance)) = lrp_keys(&container, &rep.config.cell_id) {
            let net_info = rep.net_info(&container).await;
            rep.outbox.push(Report::Lrp(LrpEvent::Evacuating {
                key,
                instance,
                net_info,
            }));
            announced += 1;
        }
    }
    tracing::info!(instances = announced, timeout = ?rep.config.evacuation_timeout, "evacuating");
    let deadline = tokio::time::Instant::now() + rep.config.evacuation_timeout;
    loop {
        let left = rep.executor.list().len();
        if left == 0 {
            tracing::info!("evacuation complete");
            return Shutdown::Evacuated;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                containers = left,
                "evacuation timed out; stopping what is left"
            );
            stop_all(rep).await;
            return Shutdown::EvacuationTimedOut;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Stops and deletes every container (their `Removed` / completion
/// reports are queued by the event forwarder).
async fn stop_all(rep: &Rep) {
    for container in rep.executor.list() {
        if let Some(guid) = task_guid(&container) {
            rep.outbox.push(Report::TaskCompleted(
                guid.to_owned(),
                TaskCompleted {
                    cell_id: rep.config.cell_id.clone(),
                    failed: true,
                    failure_reason: "the cell evacuated before the task ended".into(),
                    result: String::new(),
                },
            ));
        }
        if let Err(error) = rep.executor.delete(&container.guid).await {
            tracing::warn!(guid = %container.guid, %error, "could not stop a container");
        }
    }
}
