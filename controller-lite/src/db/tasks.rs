//! One-off app tasks (`cf run-task`).

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::query::{self, Filter, Listing, Page};
use super::{new_guid, now, DbError};
use crate::states::TaskState;

/// A task.
#[derive(Debug, Clone)]
pub struct Task {
    /// Guid (also the scheduler task's guid).
    pub guid: String,
    /// Owning app.
    pub app_guid: String,
    /// Per-app sequence number, from 1.
    pub sequence_id: i64,
    /// Name.
    pub name: String,
    /// Command run in the droplet.
    pub command: String,
    /// `PENDING`, `RUNNING`, `SUCCEEDED`, `FAILED` or `CANCELING`.
    pub state: String,
    /// Memory limit.
    pub memory_in_mb: i64,
    /// Disk limit.
    pub disk_in_mb: i64,
    /// Droplet the task runs.
    pub droplet_guid: String,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Unix time after which an unfinished task fails (`None`: created_at +
    /// the configured timeout; tasks from before deadlines were kept).
    pub deadline: Option<i64>,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

const COLS: &str = "guid, app_guid, sequence_id, name, command, state, memory_in_mb, disk_in_mb, droplet_guid, failure_reason, created_at, updated_at, deadline";

fn map(r: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        guid: r.get(0)?,
        app_guid: r.get(1)?,
        sequence_id: r.get(2)?,
        name: r.get(3)?,
        command: r.get(4)?,
        state: r.get(5)?,
        memory_in_mb: r.get(6)?,
        disk_in_mb: r.get(7)?,
        droplet_guid: r.get(8)?,
        failure_reason: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        deadline: r.get(12)?,
    })
}

/// What a new task runs, and until when.
#[derive(Debug, Clone)]
pub struct NewTask<'a> {
    /// Owning app.
    pub app_guid: &'a str,
    /// Name; defaults to the first 8 characters of the guid.
    pub name: Option<&'a str>,
    /// Command.
    pub command: &'a str,
    /// Memory limit.
    pub memory_in_mb: i64,
    /// Disk limit.
    pub disk_in_mb: i64,
    /// Droplet it runs.
    pub droplet_guid: &'a str,
    /// Unix time after which it fails if not finished.
    pub deadline: i64,
}

/// Creates a PENDING task with the app's next sequence id.
pub fn create(tx: &Transaction<'_>, new: &NewTask<'_>) -> Result<Task, DbError> {
    let NewTask {
        app_guid,
        name,
        command,
        memory_in_mb,
        disk_in_mb,
        droplet_guid,
        deadline,
    } = *new;
    let seq: i64 = tx.query_row(
        "SELECT COALESCE(MAX(sequence_id), 0) + 1 FROM tasks WHERE app_guid = ?",
        [app_guid],
        |r| r.get(0),
    )?;
    let guid = new_guid();
    let t = now();
    let task = Task {
        name: name
            .map(str::to_owned)
            .unwrap_or_else(|| guid[..8].to_owned()),
        guid,
        app_guid: app_guid.to_owned(),
        sequence_id: seq,
        command: command.to_owned(),
        state: "PENDING".to_owned(),
        memory_in_mb,
        disk_in_mb,
        droplet_guid: droplet_guid.to_owned(),
        failure_reason: None,
        deadline: Some(deadline),
        created_at: t,
        updated_at: t,
    };
    tx.execute(
        &format!("INSERT INTO tasks ({COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
        params![
            task.guid,
            task.app_guid,
            task.sequence_id,
            task.name,
            task.command,
            task.state,
            task.memory_in_mb,
            task.disk_in_mb,
            task.droplet_guid,
            task.failure_reason,
            t,
            t,
            deadline
        ],
    )?;
    Ok(task)
}

/// One task.
pub fn get(conn: &Connection, guid: &str) -> Result<Option<Task>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM tasks WHERE guid = ?"),
            [guid],
            map,
        )
        .optional()?)
}

/// Lists tasks.
pub fn list(
    conn: &Connection,
    filters: &[Filter],
    extra: Option<(&str, Vec<Value>)>,
    page: &Page,
) -> Result<Listing<Task>, DbError> {
    query::list(conn, "tasks", COLS, filters, extra, page, map)
}

/// Moves a task to `to` if its state machine allows it; returns whether it moved.
pub fn transition(
    tx: &Transaction<'_>,
    guid: &str,
    to: TaskState,
    failure_reason: Option<&str>,
) -> Result<bool, DbError> {
    let Some(task) = get(tx, guid)? else {
        return Ok(false);
    };
    if !TaskState::parse(&task.state).is_some_and(|from| from.can_transition_to(to)) {
        return Ok(false);
    }
    tx.execute(
        "UPDATE tasks SET state = ?, failure_reason = ?, updated_at = ? WHERE guid = ?",
        params![to.as_str(), failure_reason, now(), guid],
    )?;
    Ok(true)
}

/// Guids of unfinished tasks whose deadline is at or before `now` (a task
/// without one is due `default_timeout` seconds after its creation).
pub fn overdue(conn: &Connection, now: i64, default_timeout: i64) -> Result<Vec<String>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT guid FROM tasks WHERE state IN ('PENDING', 'RUNNING', 'CANCELING')
         AND COALESCE(deadline, created_at + ?) <= ? ORDER BY created_at",
    )?;
    let rows = stmt
        .query_map(params![default_timeout, now], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(rows)
}
