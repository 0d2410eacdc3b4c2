//! What cells report, applied with diego's checked transitions: presence,
//! LRP events, task start and completion, container metrics. A cell's own
//! key acts only for that cell; the shared key acts for any.

use diego::models::{ActualLrp, Presence, TaskState, Timestamp};
use diego::rep::{
    CellPresence, ContainerMetrics, ContainerMetricsBatch, LrpEvent, LrpEvents, PresenceAck,
};
use rusqlite::Connection;

use super::records;
use super::rollout;
use super::{Bbs, BbsError, Effects, Stop};
use crate::cells::CellIdentity;

/// Refuses a cell's key used for another cell.
pub fn authorize(caller: &CellIdentity, cell_id: &str) -> Result<(), BbsError> {
    match caller {
        CellIdentity::Shared => Ok(()),
        CellIdentity::Cell(own) if own == cell_id => Ok(()),
        other => Err(BbsError::WrongCell {
            caller: other.to_string(),
            cell_id: cell_id.to_owned(),
        }),
    }
}

/// Queues starts for everything waiting for a cell (a new cell joined).
fn waiting_work(conn: &Connection) -> Result<Effects, BbsError> {
    let mut fx = Effects::default();
    let keys = records::unclaimed_keys(conn)?;
    fx.lrp_starts = keys;
    fx.task_starts = records::tasks_in(conn, TaskState::Pending)?
        .into_iter()
        .map(|t| t.task_guid)
        .collect();
    Ok(fx)
}

fn stop_instance(
    key: &diego::models::ActualLrpKey,
    i: &diego::models::ActualLrpInstanceKey,
) -> Stop {
    Stop {
        cell_id: i.cell_id.clone(),
        key: key.clone(),
        instance_guid: i.instance_guid.clone(),
    }
}

impl Bbs {
    /// `PUT /internal/v1/cells/{cell_id}/presence`. Blocking.
    pub fn put_presence(
        &self,
        caller: &CellIdentity,
        cell_id: &str,
        presence: &CellPresence,
    ) -> Result<PresenceAck, BbsError> {
        authorize(caller, cell_id)?;
        if presence.cell_id != cell_id {
            return Err(BbsError::WrongCell {
                caller: format!("a presence for {:?}", presence.cell_id),
                cell_id: cell_id.to_owned(),
            });
        }
        let now = self.now();
        let expires = now + self.settings.presence_ttl;
        let (joined, fx) = self.db.write_blocking_with(|tx| {
            let known = records::cell_present(tx, cell_id, now)?;
            records::put_cell(tx, presence, expires)?;
            if known || presence.evacuating {
                Ok::<_, BbsError>((!known, Effects::default()))
            } else {
                tracing::info!(cell_id, zone = %presence.zone, "cell joined");
                Ok((true, waiting_work(tx)?))
            }
        })?;
        // A refresh only moves an expiry later: the timer needs waking
        // only for a new one.
        if joined {
            self.presence_changed.notify_one();
        }
        self.dispatch(fx);
        Ok(PresenceAck {
            ttl_secs: self.settings.presence_ttl.as_secs(),
        })
    }

    /// `DELETE /internal/v1/cells/{cell_id}/presence`: the cell left; its
    /// work is handled at once (a convergence pass). Blocking.
    pub fn remove_presence(&self, caller: &CellIdentity, cell_id: &str) -> Result<(), BbsError> {
        authorize(caller, cell_id)?;
        let removed = self
            .db
            .write_blocking(|tx| records::delete_cell(tx, cell_id))?;
        self.forget_metrics_of(cell_id);
        if removed {
            tracing::warn!(cell_id, "cell left");
            self.presence_changed.notify_one();
            self.converge_once()?;
        }
        Ok(())
    }

    /// `POST /internal/v1/actual_lrps/events`, in order. An event diego
    /// refuses is logged and, when it names an instance nobody wants, that
    /// instance is stopped. Blocking.
    pub fn apply_lrp_events(
        &self,
        caller: &CellIdentity,
        events: &LrpEvents,
    ) -> Result<(), BbsError> {
        authorize(caller, &events.cell_id)?;
        for event in &events.events {
            let instance = match event {
                LrpEvent::Claimed { instance, .. }
                | LrpEvent::Running { instance, .. }
                | LrpEvent::Crashed { instance, .. }
                | LrpEvent::Removed { instance, .. }
                | LrpEvent::Evacuating { instance, .. } => instance,
            };
            authorize(caller, &instance.cell_id)?;
            if instance.cell_id != events.cell_id {
                return Err(BbsError::WrongCell {
                    caller: format!("an event batch of cell {:?}", events.cell_id),
                    cell_id: instance.cell_id.clone(),
                });
            }
        }
        let now = self.now();
        for event in &events.events {
            let result = self
                .db
                .write_blocking_with(|tx| apply_event(tx, event, now));
            match result {
                Ok(fx) => self.dispatch(fx),
                Err(e @ (BbsError::Lrp(_) | BbsError::UnknownInstance(_))) => {
                    tracing::warn!(cell_id = %events.cell_id, error = %e, "lrp event refused");
                    if let LrpEvent::Claimed { key, instance }
                    | LrpEvent::Running { key, instance, .. } = event
                    {
                        self.dispatch(Effects {
                            stops: vec![stop_instance(key, instance)],
                            ..Effects::default()
                        });
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `POST /internal/v1/tasks/{guid}/started`. Blocking.
    pub fn task_started(
        &self,
        caller: &CellIdentity,
        guid: &str,
        cell_id: &str,
    ) -> Result<(), BbsError> {
        authorize(caller, cell_id)?;
        let now = self.now();
        self.db.write_blocking_with(|tx| {
            let mut t =
                records::task(tx, guid)?.ok_or_else(|| BbsError::UnknownTask(guid.into()))?;
            t.start(cell_id, now)?;
            records::put_task(tx, &t)?;
            crate::db::scheduler::start_task(tx, guid)?;
            Ok(())
        })
    }

    /// The BBS side of `POST /internal/v1/tasks/{guid}/completed`, before
    /// the controller's completion path: a RUNNING task completes only from
    /// its cell; the shared key may also end a task no cell reported
    /// (operators, tests). The record is then deleted: the controller's
    /// callback runs in process. Blocking.
    pub fn task_completed(
        &self,
        caller: &CellIdentity,
        guid: &str,
        cell_id: Option<&str>,
        failed: bool,
        reason: &str,
        result: &str,
    ) -> Result<(), BbsError> {
        if let Some(cell) = cell_id {
            authorize(caller, cell)?;
        } else if *caller != CellIdentity::Shared {
            return Err(BbsError::WrongCell {
                caller: caller.to_string(),
                cell_id: String::new(),
            });
        }
        let now = self.now();
        self.db.write_blocking_with(|tx| {
            let Some(mut t) = records::task(tx, guid)? else {
                return Ok(());
            };
            match (t.state, cell_id) {
                (TaskState::Running, Some(cell)) => {
                    t.complete(cell, failed, reason, result, now)?;
                }
                (TaskState::Completed | TaskState::Resolving, _) => {}
                _ if *caller == CellIdentity::Shared => {
                    t.fail(reason, now)?;
                }
                (_, cell) => {
                    t.complete(cell.unwrap_or_default(), failed, reason, result, now)?;
                }
            }
            records::delete_task(tx, guid)?;
            Ok(())
        })
    }

    /// Keeps one container's latest metrics, as `cell_id` reported them.
    pub fn record_metrics(&self, cell_id: &str, m: ContainerMetrics) {
        let mut all = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(m.instance_guid.clone(), (cell_id.to_owned(), m));
    }

    /// Forgets the metrics of a cell's containers (it left or was lost).
    pub(super) fn forget_metrics_of(&self, cell_id: &str) {
        let mut all = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, (cell, _)| cell != cell_id);
    }

    /// `POST /internal/v1/cells/{cell_id}/metrics`.
    pub fn put_metrics(
        &self,
        caller: &CellIdentity,
        cell_id: &str,
        batch: ContainerMetricsBatch,
    ) -> Result<(), BbsError> {
        authorize(caller, cell_id)?;
        // A batch covers all the cell's containers: the ones it no longer
        // lists are gone, so the map stays as large as what runs.
        let mut all = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, (cell, _)| cell != cell_id);
        for m in batch.containers {
            all.insert(m.instance_guid.clone(), (cell_id.to_owned(), m));
        }
        Ok(())
    }
}

fn ordinary(conn: &Connection, key: &diego::models::ActualLrpKey) -> Result<ActualLrp, BbsError> {
    records::actual(conn, &key.process_guid, key.index, Presence::Ordinary)?
        .ok_or_else(|| BbsError::UnknownInstance(key.clone()))
}

/// The ORDINARY record a crash report of `instance` applies to, or `None`
/// when the report changes nothing: the slot is gone, or it is no longer
/// held by that instance (the crash was already counted, which cleared the
/// holder, or the index restarted as another instance). A repeat report
/// (a rep's sweep after missed events, a retried call) is so acknowledged
/// and never counted twice. A SUSPECT or EVACUATING stand-in held by the
/// instance goes (its container ended; the cell deletes it): it no longer
/// serves, and its replacement is on the way.
fn crashed_holder(
    conn: &Connection,
    key: &diego::models::ActualLrpKey,
    instance: &diego::models::ActualLrpInstanceKey,
) -> Result<Option<ActualLrp>, BbsError> {
    for presence in [Presence::Suspect, Presence::Evacuating] {
        if let Some(old) = records::actual(conn, &key.process_guid, key.index, presence)? {
            if old.instance_key.as_ref() == Some(instance) {
                tracing::info!(process_guid = %key.process_guid, index = key.index, %presence, "stand-in instance crashed; record removed");
                records::delete_actual(conn, key, presence)?;
            }
        }
    }
    let current = records::actual(conn, &key.process_guid, key.index, Presence::Ordinary)?;
    match current {
        Some(r) if r.instance_key.as_ref() == Some(instance) => Ok(Some(r)),
        other => {
            tracing::info!(
                process_guid = %key.process_guid,
                index = key.index,
                instance = %instance,
                state = ?other.map(|r| r.state),
                "crash of an instance the record does not hold; nothing to change"
            );
            Ok(None)
        }
    }
}

fn advance(
    conn: &Connection,
    process_guid: &str,
    now: Timestamp,
    fx: &mut Effects,
) -> Result<(), BbsError> {
    if let Some(app_process) = records::app_process_of(conn, process_guid)? {
        fx.merge(rollout::advance(conn, &app_process, now)?);
    }
    Ok(())
}

fn apply_event(conn: &Connection, event: &LrpEvent, now: Timestamp) -> Result<Effects, BbsError> {
    let mut fx = Effects::default();
    match event {
        LrpEvent::Claimed { key, instance } => {
            let mut r = ordinary(conn, key)?;
            r.claim(instance, now)?;
            records::put_actual(conn, &r)?;
        }
        LrpEvent::Running {
            key,
            instance,
            net_info,
        } => {
            let mut r = ordinary(conn, key)?;
            r.start(instance, net_info.clone(), now)?;
            records::put_actual(conn, &r)?;
            tracing::info!(process_guid = %key.process_guid, index = key.index, cell_id = %instance.cell_id, "instance running");
            // The replacement serves: the suspect or evacuating record it
            // replaced goes (Diego's BBS does the same on start).
            for presence in [Presence::Suspect, Presence::Evacuating] {
                if let Some(old) = records::actual(conn, &key.process_guid, key.index, presence)? {
                    if old.instance_key.as_ref() == Some(instance) {
                        // The same instance adopted back (its cell returned
                        // and reconciled): forget the old record, keep it running.
                        records::delete_actual(conn, key, presence)?;
                    } else {
                        rollout::retire(conn, &old, &mut fx)?;
                    }
                }
            }
            advance(conn, &key.process_guid, now, &mut fx)?;
        }
        LrpEvent::Crashed {
            key,
            instance,
            reason,
        } => {
            let Some(mut r) = crashed_holder(conn, key, instance)? else {
                return Ok(fx);
            };
            let outcome = r.crash(instance, reason, now)?;
            records::put_actual(conn, &r)?;
            tracing::warn!(process_guid = %key.process_guid, index = key.index, reason, crash_count = r.crash_count, ?outcome, "instance crashed");
            if outcome == diego::models::CrashOutcome::RestartNow {
                fx.lrp_starts.push(key.clone());
            }
            advance(conn, &key.process_guid, now, &mut fx)?;
        }
        LrpEvent::Removed { key, instance } => {
            for presence in [Presence::Ordinary, Presence::Suspect, Presence::Evacuating] {
                let Some(mut r) = records::actual(conn, &key.process_guid, key.index, presence)?
                else {
                    continue;
                };
                if r.instance_key.as_ref() != Some(instance) {
                    continue;
                }
                if presence == Presence::Ordinary {
                    r.unclaim(now)?;
                    records::put_actual(conn, &r)?;
                    fx.lrp_starts.push(key.clone());
                } else {
                    records::delete_actual(conn, key, presence)?;
                }
            }
            advance(conn, &key.process_guid, now, &mut fx)?;
        }
        LrpEvent::Evacuating { key, instance, .. } => {
            let mut r = ordinary(conn, key)?;
            let replacement = r.evacuate(instance, now)?;
            records::delete_actual(conn, key, Presence::Ordinary)?;
            records::put_actual(conn, &r)?;
            records::put_actual(conn, &replacement)?;
            fx.lrp_starts.push(key.clone());
        }
    }
    Ok(fx)
}
