//! The work handed to the scheduler: Tasks and desired LRPs as the
//! recording scheduler keeps them, and actual LRP instances as cells report
//! them. The BBS of a later issue grows from these tables.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{now, DbError};

/// A scheduler task row.
#[derive(Debug, Clone)]
pub struct TaskRow {
    /// Task guid.
    pub task_guid: String,
    /// `cf-app-staging` or `cf-tasks`.
    pub domain: String,
    /// `PENDING`, `RUNNING`, `COMPLETED` or `RESOLVING`.
    pub state: String,
    /// The full task definition as JSON.
    pub definition: String,
    /// Whether a COMPLETED task failed.
    pub failed: bool,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// The result file (first 10 KB).
    pub result: Option<String>,
}

/// An actual LRP instance as reported by a cell.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ActualLrp {
    /// Process guid.
    pub process_guid: String,
    /// Instance index.
    pub index: i64,
    /// `UNCLAIMED`, `CLAIMED`, `RUNNING` or `CRASHED`.
    pub state: String,
    /// Cell address.
    pub host: String,
    /// Host port of the container's app port.
    pub port: Option<i64>,
    /// Unix seconds since the instance entered its state.
    pub since: i64,
    /// CPU fraction.
    pub cpu: f64,
    /// Memory bytes.
    pub mem: i64,
    /// Disk bytes.
    pub disk: i64,
}

/// Records a new PENDING task (idempotent on the guid).
pub fn insert_task(
    tx: &Transaction<'_>,
    guid: &str,
    domain: &str,
    definition: &str,
) -> Result<(), DbError> {
    let t = now();
    tx.execute(
        "INSERT OR IGNORE INTO scheduler_tasks (task_guid, domain, state, definition, created_at, updated_at) VALUES (?, ?, 'PENDING', ?, ?, ?)",
        params![guid, domain, definition, t, t],
    )?;
    Ok(())
}

/// One scheduler task.
pub fn get_task(conn: &Connection, guid: &str) -> Result<Option<TaskRow>, DbError> {
    Ok(conn
        .query_row(
            "SELECT task_guid, domain, state, definition, failed, failure_reason, result FROM scheduler_tasks WHERE task_guid = ?",
            [guid],
            |r| {
                Ok(TaskRow {
                    task_guid: r.get(0)?,
                    domain: r.get(1)?,
                    state: r.get(2)?,
                    definition: r.get(3)?,
                    failed: r.get(4)?,
                    failure_reason: r.get(5)?,
                    result: r.get(6)?,
                })
            },
        )
        .optional()?)
}

/// Tasks in a state, oldest first.
pub fn tasks_in_state(conn: &Connection, state: &str) -> Result<Vec<TaskRow>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT task_guid FROM scheduler_tasks WHERE state = ? ORDER BY created_at, rowid",
    )?;
    let guids = stmt
        .query_map([state], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(guids.len());
    for g in guids {
        if let Some(t) = get_task(conn, &g)? {
            out.push(t);
        }
    }
    Ok(out)
}

/// Guids of an app's staging builds and tasks that are not finished.
pub fn unfinished_tasks_of_app(conn: &Connection, app_guid: &str) -> Result<Vec<String>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT guid FROM builds WHERE app_guid = ?1 AND state = 'STAGING'
         UNION SELECT guid FROM tasks WHERE app_guid = ?1 AND state IN ('PENDING', 'RUNNING', 'CANCELING')",
    )?;
    let rows = stmt
        .query_map([app_guid], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(rows)
}

/// PENDING/RUNNING → COMPLETED with the outcome; false if already completed.
pub fn complete_task(
    tx: &Transaction<'_>,
    guid: &str,
    failed: bool,
    failure_reason: Option<&str>,
    result: Option<&str>,
) -> Result<bool, DbError> {
    Ok(tx.execute(
        "UPDATE scheduler_tasks SET state = 'COMPLETED', failed = ?, failure_reason = ?, result = ?, updated_at = ? WHERE task_guid = ? AND state IN ('PENDING', 'RUNNING')",
        params![failed, failure_reason, result, now(), guid],
    )? > 0)
}

/// PENDING → RUNNING.
pub fn start_task(tx: &Transaction<'_>, guid: &str) -> Result<bool, DbError> {
    Ok(tx.execute(
        "UPDATE scheduler_tasks SET state = 'RUNNING', updated_at = ? WHERE task_guid = ? AND state = 'PENDING'",
        params![now(), guid],
    )? > 0)
}

/// Creates or replaces a desired LRP.
pub fn upsert_desired(
    tx: &Transaction<'_>,
    process_guid: &str,
    app_guid: &str,
    instances: i64,
    definition: &str,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT OR REPLACE INTO desired_lrps (process_guid, app_guid, instances, definition, updated_at) VALUES (?, ?, ?, ?, ?)",
        params![process_guid, app_guid, instances, definition, now()],
    )?;
    // Instances above the new count are no longer wanted.
    tx.execute(
        "DELETE FROM actual_lrps WHERE process_guid = ? AND idx >= ?",
        params![process_guid, instances],
    )?;
    Ok(())
}

/// Desired instance count, if desired at all.
pub fn desired_instances(
    conn: &Connection,
    process_guid: &str,
) -> Result<Option<(i64, String)>, DbError> {
    Ok(conn
        .query_row(
            "SELECT instances, definition FROM desired_lrps WHERE process_guid = ?",
            [process_guid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Sets the instance count of a desired LRP.
pub fn scale_desired(
    tx: &Transaction<'_>,
    process_guid: &str,
    instances: i64,
) -> Result<bool, DbError> {
    let n = tx.execute(
        "UPDATE desired_lrps SET instances = ?, updated_at = ? WHERE process_guid = ?",
        params![instances, now(), process_guid],
    )?;
    tx.execute(
        "DELETE FROM actual_lrps WHERE process_guid = ? AND idx >= ?",
        params![process_guid, instances],
    )?;
    Ok(n > 0)
}

/// Removes a desired LRP and its instances.
pub fn remove_desired(tx: &Transaction<'_>, process_guid: &str) -> Result<(), DbError> {
    tx.execute(
        "DELETE FROM desired_lrps WHERE process_guid = ?",
        [process_guid],
    )?;
    tx.execute(
        "DELETE FROM actual_lrps WHERE process_guid = ?",
        [process_guid],
    )?;
    Ok(())
}

/// Records an instance's state (only for desired LRPs and indices).
pub fn put_actual(tx: &Transaction<'_>, a: &ActualLrp) -> Result<bool, DbError> {
    let Some((instances, _)) = desired_instances(tx, &a.process_guid)? else {
        return Ok(false);
    };
    if a.index < 0 || a.index >= instances {
        return Ok(false);
    }
    tx.execute(
        "INSERT OR REPLACE INTO actual_lrps (process_guid, idx, state, host, port, since, cpu, mem, disk) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![a.process_guid, a.index, a.state, a.host, a.port, a.since, a.cpu, a.mem, a.disk],
    )?;
    Ok(true)
}

/// Instances of a process, by index.
pub fn actuals(conn: &Connection, process_guid: &str) -> Result<Vec<ActualLrp>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT process_guid, idx, state, host, port, since, cpu, mem, disk FROM actual_lrps WHERE process_guid = ? ORDER BY idx",
    )?;
    let rows = stmt
        .query_map([process_guid], |r| {
            Ok(ActualLrp {
                process_guid: r.get(0)?,
                index: r.get(1)?,
                state: r.get(2)?,
                host: r.get(3)?,
                port: r.get(4)?,
                since: r.get(5)?,
                cpu: r.get(6)?,
                mem: r.get(7)?,
                disk: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
