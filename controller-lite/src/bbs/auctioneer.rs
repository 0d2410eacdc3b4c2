//! The auctioneer: gathers start requests for a short window, asks every
//! present cell for its state in parallel (with a timeout), runs the pure
//! auction, sends each cell one `POST /work` with the full definitions and
//! records what failed. A failed commit is not retried here: the record
//! stays UNCLAIMED with its placement error (a task stays PENDING with a
//! rejection counted) and convergence auctions it again.
//!
//! A task the auction placed nowhere although cells took part fails at
//! once with the placement error (as Diego's auctioneer does); with no cell
//! in the auction at all it stays PENDING, bounded by convergence's
//! pending-task expiry.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use diego::auction::{self, CellState, LrpStart, TaskStart, Work};
use diego::models::{ActualLrpKey, ActualLrpState, DesiredLrp, Presence, Task, TaskState};
use diego::rep::{CellPresence, LrpWork, TaskWork, WorkRequest, WorkResponse};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{records, Bbs, BbsError, Command};
use crate::staging::TaskOutcome;

/// What one batch is about, loaded from the database.
#[derive(Default)]
struct Batch {
    cells: Vec<CellPresence>,
    lrps: Vec<(LrpStart, DesiredLrp)>,
    tasks: Vec<Task>,
}

fn load(
    bbs: &Bbs,
    lrps: &BTreeSet<ActualLrpKey>,
    tasks: &BTreeSet<String>,
) -> Result<Batch, BbsError> {
    let now = bbs.now();
    bbs.db
        .read_blocking(|c| {
            let mut batch = Batch {
                cells: records::present_cells(c, now)?
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect(),
                ..Batch::default()
            };
            let mut desired: HashMap<String, Option<DesiredLrp>> = HashMap::new();
            for key in lrps {
                let unclaimed =
                    records::actual(c, &key.process_guid, key.index, Presence::Ordinary)?
                        .is_some_and(|a| a.state == ActualLrpState::Unclaimed);
                if !unclaimed {
                    continue;
                }
                if !desired.contains_key(&key.process_guid) {
                    desired.insert(
                        key.process_guid.clone(),
                        records::desired(c, &key.process_guid)?,
                    );
                }
                if let Some(Some(d)) = desired.get(&key.process_guid) {
                    if key.index < d.instances {
                        let start = LrpStart::for_indices(d, [key.index]).remove(0);
                        batch.lrps.push((start, d.clone()));
                    }
                }
            }
            for guid in tasks {
                if let Some(t) = records::task(c, guid)?.filter(|t| t.state == TaskState::Pending) {
                    batch.tasks.push(t);
                }
            }
            Ok(batch)
        })
        .map_err(BbsError::from)
}

async fn states(bbs: &Arc<Bbs>, cells: &[CellPresence]) -> Vec<CellState> {
    let mut set = JoinSet::new();
    for cell in cells.iter().filter(|c| !c.evacuating) {
        let (client, cell) = (bbs.client.clone(), cell.clone());
        set.spawn(async move { client.state(&cell).await });
    }
    let mut out = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(state)) => out.push(state),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cell state unavailable; left out of the auction")
            }
            Err(e) => tracing::error!(error = %e, "cell state fetch panicked"),
        }
    }
    out.sort_by(|a, b| a.cell_id.cmp(&b.cell_id));
    out
}

/// Who failed a task of the batch.
enum TaskFailer {
    /// The auction placed it nowhere, with this many cells taking part.
    Auction {
        /// Cells whose state the auction had.
        cells: usize,
    },
    /// The cell it was given refused it (or could not be reached).
    Cell(String),
}

/// Failures to record: LRP keys and task guids with their reasons.
#[derive(Default)]
struct Failures {
    lrps: Vec<(ActualLrpKey, String)>,
    tasks: Vec<(TaskFailer, String, String)>,
}

/// Records what the auction and the cells could not do; answers the tasks
/// that ended (failed) with their reasons, for the completion path.
fn record_failures(bbs: &Bbs, f: &Failures) -> Result<Vec<(String, String)>, BbsError> {
    let now = bbs.now();
    let max = bbs.settings.convergence.max_task_rejections;
    bbs.db.write_blocking_with(|tx| {
        for (key, error) in &f.lrps {
            if let Some(mut a) =
                records::actual(tx, &key.process_guid, key.index, Presence::Ordinary)?
            {
                if a.fail_placement(error, now).is_ok() {
                    records::put_actual(tx, &a)?;
                }
            }
        }
        let mut ended = Vec::new();
        for (failer, guid, reason) in &f.tasks {
            let Some(mut t) = records::task(tx, guid)? else {
                continue;
            };
            let changed = match failer {
                TaskFailer::Auction { cells: 0 } => {
                    // No cell took part: it waits (PENDING) for one; the
                    // pending-task expiry of convergence bounds the wait.
                    t.rejection_reason.clone_from(reason);
                    records::put_task(tx, &t)?;
                    continue;
                }
                // Cells took part and none could run it: the placement
                // error says what each lacked, and waiting changes nothing.
                TaskFailer::Auction { .. } => t.fail(reason, now).is_ok(),
                TaskFailer::Cell(cell) => t.reject(cell, reason, max, now).is_ok(),
            };
            if !changed {
                continue;
            }
            if t.state == TaskState::Completed {
                tracing::warn!(task_guid = %guid, reason = %t.failure_reason, "task failed: not placed");
                records::delete_task(tx, guid)?;
                ended.push((guid.clone(), t.failure_reason.clone()));
            } else {
                records::put_task(tx, &t)?;
            }
        }
        Ok(ended)
    })
}

/// The `POST /work` body of one cell: the full definitions of what the
/// auction gave it.
fn work_request(work: &Work, batch: &Batch) -> WorkRequest {
    let desired: HashMap<(&str, u32), &DesiredLrp> = batch
        .lrps
        .iter()
        .map(|(s, d)| ((s.key.process_guid.as_str(), s.key.index), d))
        .collect();
    let tasks: HashMap<&str, &Task> = batch
        .tasks
        .iter()
        .map(|t| (t.task_guid.as_str(), t))
        .collect();
    WorkRequest {
        lrps: work
            .lrps
            .iter()
            .filter_map(|s| {
                let d = desired.get(&(s.key.process_guid.as_str(), s.key.index))?;
                Some(LrpWork {
                    key: s.key.clone(),
                    desired: (*d).clone(),
                })
            })
            .collect(),
        tasks: work
            .tasks
            .iter()
            .filter_map(|s| {
                let t = tasks.get(s.task_guid.as_str())?;
                Some(TaskWork {
                    task_guid: t.task_guid.clone(),
                    domain: t.domain.clone(),
                    definition: t.definition.clone(),
                })
            })
            .collect(),
    }
}

async fn commit(
    bbs: &Arc<Bbs>,
    cells: &[CellPresence],
    placed: BTreeMap<String, Work>,
    batch: &Batch,
    failures: &mut Failures,
) {
    let mut set = JoinSet::new();
    for (cell_id, work) in placed {
        let Some(cell) = cells.iter().find(|c| c.cell_id == cell_id).cloned() else {
            continue;
        };
        let request = work_request(&work, batch);
        let client = bbs.client.clone();
        set.spawn(async move {
            let answer = client.work(&cell, &request).await;
            (cell.cell_id, request, answer)
        });
    }
    while let Some(joined) = set.join_next().await {
        let Ok((cell_id, request, answer)) = joined else {
            continue;
        };
        let answer = answer.unwrap_or_else(|e| {
            tracing::warn!(%cell_id, error = %e, "work commit failed; convergence will retry");
            let why = e.to_string();
            WorkResponse {
                failed_lrps: request
                    .lrps
                    .iter()
                    .map(|l| (l.key.clone(), why.clone()))
                    .collect(),
                failed_tasks: request
                    .tasks
                    .iter()
                    .map(|t| (t.task_guid.clone(), why.clone()))
                    .collect(),
            }
        });
        tracing::info!(%cell_id, lrps = request.lrps.len(), tasks = request.tasks.len(),
            failed = answer.failed_lrps.len() + answer.failed_tasks.len(), "work sent");
        failures.lrps.extend(answer.failed_lrps);
        failures.tasks.extend(
            answer
                .failed_tasks
                .into_iter()
                .map(|(g, r)| (TaskFailer::Cell(cell_id.clone()), g, r)),
        );
    }
}

/// Runs one auction over the requested instances and tasks.
pub(crate) async fn auction_batch(
    bbs: &Arc<Bbs>,
    lrps: BTreeSet<ActualLrpKey>,
    tasks: BTreeSet<String>,
) {
    let b = bbs.clone();
    let batch = match tokio::task::spawn_blocking(move || load(&b, &lrps, &tasks)).await {
        Ok(Ok(batch)) => batch,
        Ok(Err(e)) => return tracing::error!(error = %e, "auction batch could not load"),
        Err(e) => return tracing::error!(error = %e, "auction batch load panicked"),
    };
    if batch.lrps.is_empty() && batch.tasks.is_empty() {
        return;
    }
    let cells = states(bbs, &batch.cells).await;
    let work = Work {
        lrps: batch.lrps.iter().map(|(s, _)| s.clone()).collect(),
        tasks: batch.tasks.iter().map(TaskStart::for_task).collect(),
    };
    let results = auction::auction(&cells, work);
    let mut failures = Failures {
        lrps: results
            .failed_lrps
            .iter()
            .map(|f| (f.lrp.key.clone(), f.error.to_string()))
            .collect(),
        tasks: results
            .failed_tasks
            .iter()
            .map(|f| {
                let failer = TaskFailer::Auction { cells: cells.len() };
                (failer, f.task.task_guid.clone(), f.error.to_string())
            })
            .collect(),
    };
    tracing::info!(
        cells = cells.len(),
        placed = results.placed_count(),
        failed = failures.lrps.len() + failures.tasks.len(),
        "auction"
    );
    commit(bbs, &batch.cells, results.placed, &batch, &mut failures).await;
    let b = bbs.clone();
    match tokio::task::spawn_blocking(move || {
        let ended = record_failures(&b, &failures)?;
        for (guid, reason) in ended {
            b.finish_task(&guid, TaskOutcome::Failed { reason });
        }
        Ok::<_, BbsError>(())
    })
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "auction failures could not be recorded"),
        Err(e) => tracing::error!(error = %e, "auction failure recording panicked"),
    }
}

async fn send_stop_or_cancel(bbs: Arc<Bbs>, command: Command) {
    let cell_id = match &command {
        Command::Stop(s) => s.cell_id.clone(),
        Command::CancelTask { cell_id, .. } => cell_id.clone(),
        Command::Starts { .. } => return,
    };
    let now = bbs.now();
    let db = bbs.db.clone();
    let cell =
        tokio::task::spawn_blocking(move || db.read_blocking(|c| records::present_cells(c, now)))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|cells| {
                cells
                    .into_iter()
                    .map(|(p, _)| p)
                    .find(|p| p.cell_id == cell_id)
            });
    let Some(cell) = cell else { return };
    let result = match &command {
        Command::Stop(s) => bbs.client.stop(&cell, &s.key, &s.instance_guid).await,
        Command::CancelTask { task_guid, .. } => bbs.client.cancel_task(&cell, task_guid).await,
        Command::Starts { .. } => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "stop/cancel not delivered; the cell's reconcile or convergence handles it");
    }
}

/// The auctioneer task.
pub(crate) async fn run(
    bbs: Arc<Bbs>,
    mut queue: UnboundedReceiver<Command>,
    cancel: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => return,
            c = queue.recv() => match c { Some(c) => c, None => return },
        };
        let (mut lrps, mut tasks) = (BTreeSet::new(), BTreeSet::new());
        let take =
            |c: Command, lrps: &mut BTreeSet<ActualLrpKey>, tasks: &mut BTreeSet<String>| match c {
                Command::Starts { lrps: l, tasks: t } => {
                    lrps.extend(l);
                    tasks.extend(t);
                }
                other => {
                    tokio::spawn(send_stop_or_cancel(bbs.clone(), other));
                }
            };
        take(first, &mut lrps, &mut tasks);
        if lrps.is_empty() && tasks.is_empty() {
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(bbs.settings.batch_window) => {}
        }
        while let Ok(c) = queue.try_recv() {
            take(c, &mut lrps, &mut tasks);
        }
        let mut leader = bbs.is_leader();
        if !leader {
            let b = bbs.clone();
            leader = matches!(
                tokio::task::spawn_blocking(move || b.renew_lease()).await,
                Ok(Ok(true))
            );
        }
        if leader {
            auction_batch(&bbs, lrps, tasks).await;
        } else {
            tracing::debug!(
                lrps = lrps.len(),
                tasks = tasks.len(),
                "not the active auctioneer; the leader's convergence places them"
            );
        }
    }
}
