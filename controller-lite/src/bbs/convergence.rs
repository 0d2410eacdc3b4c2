//! Convergence: load everything, run [`diego::convergence::converge`],
//! apply its plan in one transaction (skipping items whose record changed
//! since the load), then queue the starts and finish failed tasks. Runs
//! every `convergence_interval`, and at once when a presence expires (a
//! timer set to the earliest `expires_at`) or a cell leaves. Only the
//! holder of the auctioneer lease converges.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diego::convergence::{converge, Plan, RecordRef};
use diego::models::{ActualLrp, Presence, Timestamp};
use rusqlite::Connection;
use tokio_util::sync::CancellationToken;

use super::{records, rollout, Bbs, BbsError, Effects, Stop};
use crate::staging::TaskOutcome;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Records loaded.
    pub actual_lrps: usize,
    /// Desired LRPs loaded.
    pub desired_lrps: usize,
    /// Plan items applied (retire, suspect, unclaim, restart, create, task changes).
    pub changes: usize,
    /// Instances queued for the auction.
    pub starts: usize,
    /// Milliseconds to load the records.
    pub load_ms: u128,
    /// Milliseconds to plan.
    pub plan_ms: u128,
    /// Milliseconds to apply the plan (one transaction).
    pub apply_ms: u128,
    /// Milliseconds to load, plan and apply.
    pub millis: u128,
}

fn current(conn: &Connection, r: &RecordRef) -> Result<Option<ActualLrp>, BbsError> {
    Ok(
        records::actual(conn, &r.key.process_guid, r.key.index, r.presence)?
            .filter(|a| a.instance_key == r.instance_key),
    )
}

fn refused<T>(what: &str, r: Result<T, diego::models::ActualLrpError>) -> Option<T> {
    r.map_err(|e| tracing::debug!(what, error = %e, "convergence item skipped"))
        .ok()
}

/// Applies the LRP part of a plan. Returns the number of changes.
fn apply_lrps(
    conn: &Connection,
    plan: &Plan,
    now: Timestamp,
    fx: &mut Effects,
) -> Result<usize, BbsError> {
    let mut changes = 0;
    for r in &plan.retire {
        if let Some(a) = current(conn, &r.record)? {
            records::delete_actual(conn, &a.key, a.presence)?;
            if let (Some(cell), Some(i)) = (&r.stop_on_cell, &a.instance_key) {
                fx.stops.push(Stop {
                    cell_id: cell.clone(),
                    key: a.key.clone(),
                    instance_guid: i.instance_guid.clone(),
                });
            }
            changes += 1;
        }
    }
    for r in &plan.unsuspect {
        let Some(mut a) = current(conn, r)? else {
            continue;
        };
        if records::actual(conn, &a.key.process_guid, a.key.index, Presence::Ordinary)?.is_some() {
            continue;
        }
        if refused("unsuspect", a.unsuspect()).is_some() {
            records::delete_actual(conn, &a.key, Presence::Suspect)?;
            records::put_actual(conn, &a)?;
            changes += 1;
        }
    }
    for r in &plan.suspect {
        let Some(mut a) = current(conn, r)? else {
            continue;
        };
        if let Some(replacement) = refused("suspect", a.suspect(now)) {
            records::delete_actual(conn, &a.key, Presence::Ordinary)?;
            records::put_actual(conn, &a)?;
            records::put_actual(conn, &replacement)?;
            changes += 1;
        }
    }
    for r in &plan.unclaim {
        let Some(mut a) = current(conn, r)? else {
            continue;
        };
        if refused("unclaim", a.unclaim(now)).is_some() {
            records::put_actual(conn, &a)?;
            changes += 1;
        }
    }
    for r in &plan.restart_crashed {
        let Some(mut a) = current(conn, r)? else {
            continue;
        };
        if refused("restart", a.restart(now)).is_some() {
            records::put_actual(conn, &a)?;
            changes += 1;
        }
    }
    for key in &plan.create_unclaimed {
        if records::actual(conn, &key.process_guid, key.index, Presence::Ordinary)?.is_none() {
            records::put_actual(conn, &ActualLrp::new_unclaimed(key.clone(), now))?;
            changes += 1;
        }
    }
    fx.lrp_starts
        .extend(plan.starts.iter().map(|s| s.start.key.clone()));
    Ok(changes)
}

/// Applies the task part of a plan; returns the failed tasks (for the
/// controller's completion path) and the number of changes.
fn apply_tasks(
    conn: &Connection,
    plan: &Plan,
    now: Timestamp,
    fx: &mut Effects,
) -> Result<(Vec<(String, String)>, usize), BbsError> {
    let mut failed = Vec::new();
    let mut changes = 0;
    for f in &plan.tasks.fail {
        let Some(mut t) = records::task(conn, &f.task_guid)? else {
            continue;
        };
        if t.fail(&f.reason, now).is_ok() {
            records::delete_task(conn, &f.task_guid)?;
            failed.push((f.task_guid.clone(), f.reason.clone()));
            changes += 1;
        }
    }
    for guid in &plan.tasks.demote {
        let Some(mut t) = records::task(conn, guid)? else {
            continue;
        };
        if t.demote(now).is_ok() {
            records::put_task(conn, &t)?;
            changes += 1;
        }
    }
    for guid in &plan.tasks.delete {
        records::delete_task(conn, guid)?;
        changes += 1;
    }
    fx.task_starts
        .extend(plan.tasks.auction.iter().map(|t| t.task_guid.clone()));
    Ok((failed, changes))
}

impl Bbs {
    /// One convergence pass. Blocking.
    pub fn converge_once(&self) -> Result<PassReport, BbsError> {
        let started = Instant::now();
        let now = self.now();
        let (desired, actual, tasks, cells) = self.db.read_blocking(|c| {
            let cells: HashSet<String> = records::present_cells(c, now)?
                .into_iter()
                .map(|(p, _)| p.cell_id)
                .collect();
            Ok((
                records::all_desired(c)?,
                records::all_actuals(c)?,
                records::all_tasks(c)?,
                cells,
            ))
        })?;
        let loaded = Instant::now();
        let plan = converge(
            now,
            &desired,
            &actual,
            &tasks,
            &cells,
            &self.settings.convergence,
        );
        let planned = Instant::now();
        let mut report = PassReport {
            actual_lrps: actual.len(),
            desired_lrps: desired.len(),
            ..PassReport::default()
        };
        drop((desired, actual, tasks));
        let (fx, failed) = self.db.write_blocking_with(|tx| {
            let mut fx = Effects::default();
            report.changes = apply_lrps(tx, &plan, now, &mut fx)?;
            let (failed, task_changes) = apply_tasks(tx, &plan, now, &mut fx)?;
            report.changes += task_changes;
            for app_process in records::rolling_app_processes(tx)? {
                fx.merge(rollout::advance(tx, &app_process, now)?);
            }
            Ok::<_, BbsError>((fx, failed))
        })?;
        report.load_ms = loaded.duration_since(started).as_millis();
        report.plan_ms = planned.duration_since(loaded).as_millis();
        report.apply_ms = planned.elapsed().as_millis();
        report.starts = fx.lrp_starts.len() + fx.task_starts.len();
        self.dispatch(fx);
        for (guid, reason) in failed {
            self.finish_task(&guid, TaskOutcome::Failed { reason });
        }
        report.millis = started.elapsed().as_millis();
        if report.changes > 0 || report.starts > 0 {
            tracing::info!(?report, "convergence pass");
        }
        Ok(report)
    }

    /// Hands a task's end to the controller (staging build or app task).
    pub(crate) fn finish_task(&self, guid: &str, outcome: TaskOutcome) {
        if let Some(staging) = self.staging.get() {
            if let Err(e) = staging.task_completed(guid, outcome) {
                tracing::warn!(task_guid = guid, error = %e, "task completion failed");
            }
        }
    }

    /// Removes presences that expired by now and, if any did, converges at
    /// once (their instances SUSPECT or UNCLAIMED, replacements auctioned).
    /// Blocking.
    pub fn expire_cells(&self) -> Result<Vec<String>, BbsError> {
        let now = self.now();
        let expired = self
            .db
            .write_blocking(|tx| records::take_expired_cells(tx, now))?;
        for cell_id in &expired {
            self.forget_metrics_of(cell_id);
        }
        if !expired.is_empty() {
            tracing::warn!(cells = ?expired, "cell presence expired");
            self.converge_once()?;
        }
        Ok(expired)
    }
}

async fn blocking<T: Send + 'static>(
    bbs: &Arc<Bbs>,
    f: impl FnOnce(&Bbs) -> Result<T, BbsError> + Send + 'static,
) -> Option<T> {
    let b = bbs.clone();
    match tokio::task::spawn_blocking(move || f(&b)).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "bbs background work failed");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "bbs background work panicked");
            None
        }
    }
}

/// Keeps (or waits to take) the auctioneer lease, renewing at a third of
/// its life.
pub(crate) async fn keep_lease(bbs: Arc<Bbs>, cancel: CancellationToken) {
    let period = (bbs.settings.lock_ttl / 3).max(Duration::from_millis(100));
    loop {
        blocking(&bbs, Bbs::renew_lease).await;
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(period) => {}
        }
    }
    blocking(&bbs, Bbs::release_lease).await;
}

/// The periodic pass.
pub(crate) async fn periodic(bbs: Arc<Bbs>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(bbs.settings.convergence_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if bbs.is_leader() {
            blocking(&bbs, Bbs::converge_once).await;
        }
    }
}

/// The next moments the timer cares about: the earliest presence expiry
/// and the earliest crash restart the back-off allows.
fn next_due(bbs: &Bbs) -> Result<(Option<Timestamp>, Option<Timestamp>), BbsError> {
    Ok(bbs.db.read_blocking(|c| {
        let restart = records::crashed(c)?
            .iter()
            .filter_map(|a| diego::backoff::restart_at(a.since, a.crash_count))
            .min();
        Ok((records::next_expiry(c)?, restart))
    })?)
}

/// Wakes at the earliest presence expiry or crash restart (re-checked at
/// least every second, and whenever a presence changes): an expired cell
/// is handled at once, a crashed instance restarts when its back-off ends
/// rather than at the next periodic pass.
pub(crate) async fn expiry_timer(bbs: Arc<Bbs>, cancel: CancellationToken) {
    const TICK: Duration = Duration::from_secs(1);
    const FLOOR: Duration = Duration::from_millis(250);
    let mut ran = false;
    loop {
        let (expiry, restart) = blocking(&bbs, next_due).await.unwrap_or_default();
        let next = [expiry, restart].into_iter().flatten().min();
        let wait = next.filter(|_| bbs.is_leader()).map_or(TICK, |at| {
            let now = bbs.now();
            let until = if at <= now {
                Duration::ZERO
            } else {
                at.since(now)
            };
            // After a pass, a due time still in the past (a record that
            // changed meanwhile) must not spin.
            let floor = if ran { FLOOR } else { Duration::ZERO };
            until.clamp(floor, TICK.max(floor))
        });
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = bbs.presence_changed.notified() => { ran = false; continue },
            _ = tokio::time::sleep(wait) => {}
        }
        let now = bbs.now();
        ran = false;
        if !bbs.is_leader() {
            continue;
        }
        if expiry.is_some_and(|at| at <= now) {
            ran = blocking(&bbs, Bbs::expire_cells).await.is_some();
        } else if restart.is_some_and(|at| at <= now) {
            ran = blocking(&bbs, Bbs::converge_once).await.is_some();
        }
    }
}
