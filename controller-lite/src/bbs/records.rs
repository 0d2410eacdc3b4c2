//! The BBS tables: desired LRPs (one row per generation of an app process),
//! actual LRPs (one row per slot and presence), tasks and cell presences.
//! Plain SQL with `?` parameters and `ON CONFLICT` upserts, so the same
//! statements run on PostgreSQL later. Callers pass the transaction: every
//! change is made inside one.

use diego::models::{
    ActualLrp, ActualLrpInstanceKey, ActualLrpKey, ActualLrpState, DesiredLrp, ModificationTag,
    Presence, Task, TaskState, Timestamp,
};
use diego::rep::CellPresence;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::db::{from_json, to_json, DbError};

/// One generation of an app process: the diego desired LRP and what the
/// controller wants of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The diego record (its `instances` is what runs now).
    pub desired: DesiredLrp,
    /// The controller's process guid.
    pub app_process_guid: String,
    /// The app.
    pub app_guid: String,
    /// The process version this generation runs.
    pub version: String,
    /// Instances the controller wants once the rollout is done.
    pub target_instances: u32,
    /// An older version being replaced by a newer one.
    pub retiring: bool,
}

const GEN_COLS: &str =
    "definition, app_process_guid, app_guid, version, target_instances, retiring";

fn generation(r: &Row<'_>) -> rusqlite::Result<(String, Generation)> {
    let json: String = r.get(0)?;
    let placeholder = DesiredLrp::new("", "", diego::models::Action::Serial(Default::default()));
    Ok((
        json,
        Generation {
            desired: placeholder,
            app_process_guid: r.get(1)?,
            app_guid: r.get(2)?,
            version: r.get(3)?,
            target_instances: r.get(4)?,
            retiring: r.get(5)?,
        },
    ))
}

fn parse_generations(rows: Vec<(String, Generation)>) -> Result<Vec<Generation>, DbError> {
    rows.into_iter()
        .map(|(json, mut g)| {
            g.desired = from_json("bbs_desired_lrps.definition", &json)?;
            Ok(g)
        })
        .collect()
}

/// Creates or replaces a generation.
pub fn put_generation(conn: &Connection, g: &Generation, now: Timestamp) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO bbs_desired_lrps (process_guid, app_process_guid, app_guid, version, domain, target_instances, retiring, definition, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (process_guid) DO UPDATE SET target_instances = excluded.target_instances,
           retiring = excluded.retiring, definition = excluded.definition, updated_at = excluded.updated_at",
        params![
            g.desired.process_guid,
            g.app_process_guid,
            g.app_guid,
            g.version,
            g.desired.domain,
            g.target_instances,
            g.retiring,
            to_json(&g.desired),
            now.unix_millis()
        ],
    )?;
    Ok(())
}

/// The generations of an app process: the active one first, then the
/// retiring ones, newest first.
pub fn generations(conn: &Connection, app_process_guid: &str) -> Result<Vec<Generation>, DbError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {GEN_COLS} FROM bbs_desired_lrps WHERE app_process_guid = ? ORDER BY retiring, updated_at DESC, process_guid"
    ))?;
    let rows = stmt
        .query_map([app_process_guid], generation)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    parse_generations(rows)
}

/// The app processes in a rolling restart (with a retiring generation).
pub fn rolling_app_processes(conn: &Connection) -> Result<Vec<String>, DbError> {
    let mut stmt =
        conn.prepare("SELECT DISTINCT app_process_guid FROM bbs_desired_lrps WHERE retiring = 1")?;
    let rows = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(rows)
}

/// One diego desired LRP.
pub fn desired(conn: &Connection, process_guid: &str) -> Result<Option<DesiredLrp>, DbError> {
    let json: Option<String> = conn
        .query_row(
            "SELECT definition FROM bbs_desired_lrps WHERE process_guid = ?",
            [process_guid],
            |r| r.get(0),
        )
        .optional()?;
    json.map(|j| from_json("bbs_desired_lrps.definition", &j))
        .transpose()
}

/// The controller process a diego process belongs to.
pub fn app_process_of(conn: &Connection, process_guid: &str) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row(
            "SELECT app_process_guid FROM bbs_desired_lrps WHERE process_guid = ?",
            [process_guid],
            |r| r.get(0),
        )
        .optional()?)
}

/// Every diego desired LRP.
pub fn all_desired(conn: &Connection) -> Result<Vec<DesiredLrp>, DbError> {
    let mut stmt = conn.prepare("SELECT definition FROM bbs_desired_lrps")?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.iter()
        .map(|j| from_json("bbs_desired_lrps.definition", j))
        .collect()
}

/// Removes a generation (its actual records are the caller's business).
pub fn delete_desired(conn: &Connection, process_guid: &str) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM bbs_desired_lrps WHERE process_guid = ?",
        [process_guid],
    )?;
    Ok(())
}

const ACTUAL_COLS: &str = "process_guid, idx, presence, domain, state, instance_guid, cell_id, net_info, crash_count, crash_reason, since, placement_error, mod_epoch, mod_index";

/// The text of a state or presence (their `Display` is the column value).
fn enum_text<T: std::fmt::Display>(v: &T) -> String {
    v.to_string()
}

fn state_of(text: &str) -> Result<ActualLrpState, DbError> {
    Ok(match text {
        "UNCLAIMED" => ActualLrpState::Unclaimed,
        "CLAIMED" => ActualLrpState::Claimed,
        "RUNNING" => ActualLrpState::Running,
        "CRASHED" => ActualLrpState::Crashed,
        other => from_json("bbs_actual_lrps.state", &format!("{other:?}"))?,
    })
}

fn presence_of(text: &str) -> Result<Presence, DbError> {
    Ok(match text {
        "ORDINARY" => Presence::Ordinary,
        "SUSPECT" => Presence::Suspect,
        "EVACUATING" => Presence::Evacuating,
        other => from_json("bbs_actual_lrps.presence", &format!("{other:?}"))?,
    })
}

type RawActual = (
    ActualLrpKey,
    String,
    String,
    Option<ActualLrpInstanceKey>,
    Option<String>,
    (u32, String, i64, String, ModificationTag),
);

fn raw_actual(r: &Row<'_>) -> rusqlite::Result<RawActual> {
    let instance: Option<String> = r.get(5)?;
    let cell: Option<String> = r.get(6)?;
    Ok((
        ActualLrpKey::new(r.get::<_, String>(0)?, r.get(1)?, r.get::<_, String>(3)?),
        r.get(2)?,
        r.get(4)?,
        instance
            .zip(cell)
            .map(|(i, c)| ActualLrpInstanceKey::new(i, c)),
        r.get(7)?,
        (
            r.get(8)?,
            r.get(9)?,
            r.get(10)?,
            r.get(11)?,
            ModificationTag {
                epoch: r.get(12)?,
                index: r.get(13)?,
            },
        ),
    ))
}

fn actual_of(raw: RawActual) -> Result<ActualLrp, DbError> {
    let (key, presence, state, instance_key, net, rest) = raw;
    let (crash_count, crash_reason, since, placement_error, modification_tag) = rest;
    Ok(ActualLrp {
        key,
        instance_key,
        state: state_of(&state)?,
        presence: presence_of(&presence)?,
        net_info: net
            .map(|n| from_json("bbs_actual_lrps.net_info", &n))
            .transpose()?,
        crash_count,
        crash_reason,
        since: Timestamp::from_unix_millis(since),
        placement_error,
        modification_tag,
    })
}

fn query_actuals(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<ActualLrp>, DbError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ACTUAL_COLS} FROM bbs_actual_lrps {filter}"
    ))?;
    let raws = stmt
        .query_map(args, raw_actual)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raws.into_iter().map(actual_of).collect()
}

/// Keys of the ORDINARY records waiting for a cell (UNCLAIMED).
pub fn unclaimed_keys(conn: &Connection) -> Result<Vec<ActualLrpKey>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT process_guid, idx, domain FROM bbs_actual_lrps WHERE presence = 'ORDINARY' AND state = 'UNCLAIMED'",
    )?;
    let keys = stmt
        .query_map([], |r| {
            Ok(ActualLrpKey::new(
                r.get::<_, String>(0)?,
                r.get(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(keys)
}

/// The CRASHED records (waiting for their back-off).
pub fn crashed(conn: &Connection) -> Result<Vec<ActualLrp>, DbError> {
    query_actuals(conn, "WHERE state = 'CRASHED'", [])
}

/// Every actual record.
pub fn all_actuals(conn: &Connection) -> Result<Vec<ActualLrp>, DbError> {
    query_actuals(conn, "", [])
}

/// The records of one diego process, by index.
pub fn actuals_of(conn: &Connection, process_guid: &str) -> Result<Vec<ActualLrp>, DbError> {
    query_actuals(conn, "WHERE process_guid = ? ORDER BY idx", [process_guid])
}

/// The records held by a cell.
pub fn actuals_on_cell(conn: &Connection, cell_id: &str) -> Result<Vec<ActualLrp>, DbError> {
    query_actuals(conn, "WHERE cell_id = ?", [cell_id])
}

/// One record of a slot.
pub fn actual(
    conn: &Connection,
    process_guid: &str,
    index: u32,
    presence: Presence,
) -> Result<Option<ActualLrp>, DbError> {
    Ok(query_actuals(
        conn,
        "WHERE process_guid = ? AND idx = ? AND presence = ?",
        params![process_guid, index, enum_text(&presence)],
    )?
    .pop())
}

/// Creates or replaces the record of its slot and presence.
pub fn put_actual(conn: &Connection, a: &ActualLrp) -> Result<(), DbError> {
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO bbs_actual_lrps ({ACTUAL_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (process_guid, idx, presence) DO UPDATE SET domain = excluded.domain,
           state = excluded.state, instance_guid = excluded.instance_guid, cell_id = excluded.cell_id,
           net_info = excluded.net_info, crash_count = excluded.crash_count,
           crash_reason = excluded.crash_reason, since = excluded.since,
           placement_error = excluded.placement_error, mod_epoch = excluded.mod_epoch,
           mod_index = excluded.mod_index"
    ))?;
    stmt.execute(params![
        a.key.process_guid,
        a.key.index,
        enum_text(&a.presence),
        a.key.domain,
        enum_text(&a.state),
        a.instance_key.as_ref().map(|k| &k.instance_guid),
        a.instance_key.as_ref().map(|k| &k.cell_id),
        a.net_info.as_ref().map(to_json),
        a.crash_count,
        a.crash_reason,
        a.since.unix_millis(),
        a.placement_error,
        a.modification_tag.epoch,
        a.modification_tag.index,
    ])?;
    Ok(())
}

/// Deletes the record of a slot and presence.
pub fn delete_actual(
    conn: &Connection,
    key: &ActualLrpKey,
    presence: Presence,
) -> Result<(), DbError> {
    conn.prepare_cached(
        "DELETE FROM bbs_actual_lrps WHERE process_guid = ? AND idx = ? AND presence = ?",
    )?
    .execute(params![key.process_guid, key.index, enum_text(&presence)])?;
    Ok(())
}

/// Creates or replaces a task.
pub fn put_task(conn: &Connection, t: &Task) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO bbs_tasks (task_guid, domain, state, cell_id, record, updated_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (task_guid) DO UPDATE SET state = excluded.state, cell_id = excluded.cell_id,
           record = excluded.record, updated_at = excluded.updated_at",
        params![
            t.task_guid,
            t.domain,
            enum_text(&t.state),
            t.cell_id,
            to_json(t),
            t.updated_at.unix_millis()
        ],
    )?;
    Ok(())
}

fn tasks_where(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Task>, DbError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT record FROM bbs_tasks {filter} ORDER BY updated_at, task_guid"
    ))?;
    let rows = stmt
        .query_map(args, |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.iter()
        .map(|j| from_json("bbs_tasks.record", j))
        .collect()
}

/// One task.
pub fn task(conn: &Connection, guid: &str) -> Result<Option<Task>, DbError> {
    Ok(tasks_where(conn, "WHERE task_guid = ?", [guid])?.pop())
}

/// Every task.
pub fn all_tasks(conn: &Connection) -> Result<Vec<Task>, DbError> {
    tasks_where(conn, "", [])
}

/// Tasks in a state.
pub fn tasks_in(conn: &Connection, state: TaskState) -> Result<Vec<Task>, DbError> {
    tasks_where(conn, "WHERE state = ?", [enum_text(&state)])
}

/// Deletes a task.
pub fn delete_task(conn: &Connection, guid: &str) -> Result<(), DbError> {
    conn.execute("DELETE FROM bbs_tasks WHERE task_guid = ?", [guid])?;
    Ok(())
}

/// Records a cell's presence until `expires_at`.
pub fn put_cell(conn: &Connection, p: &CellPresence, expires_at: Timestamp) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO bbs_cells (cell_id, presence, expires_at) VALUES (?, ?, ?)
         ON CONFLICT (cell_id) DO UPDATE SET presence = excluded.presence, expires_at = excluded.expires_at",
        params![p.cell_id, to_json(p), expires_at.unix_millis()],
    )?;
    Ok(())
}

/// Removes a cell's presence; false when it had none.
pub fn delete_cell(conn: &Connection, cell_id: &str) -> Result<bool, DbError> {
    Ok(conn.execute("DELETE FROM bbs_cells WHERE cell_id = ?", [cell_id])? > 0)
}

/// Whether a cell's presence is unexpired at `now`.
pub fn cell_present(conn: &Connection, cell_id: &str, now: Timestamp) -> Result<bool, DbError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM bbs_cells WHERE cell_id = ? AND expires_at > ?",
            params![cell_id, now.unix_millis()],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Cells present at `now`, with when each expires.
pub fn present_cells(
    conn: &Connection,
    now: Timestamp,
) -> Result<Vec<(CellPresence, Timestamp)>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT presence, expires_at FROM bbs_cells WHERE expires_at > ? ORDER BY cell_id",
    )?;
    let rows = stmt
        .query_map([now.unix_millis()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.iter()
        .map(|(j, at)| {
            Ok((
                from_json("bbs_cells.presence", j)?,
                Timestamp::from_unix_millis(*at),
            ))
        })
        .collect()
}

/// Ids of cells whose presence expired at or before `now`, and removes them.
pub fn take_expired_cells(conn: &Connection, now: Timestamp) -> Result<Vec<String>, DbError> {
    let mut stmt =
        conn.prepare("SELECT cell_id FROM bbs_cells WHERE expires_at <= ? ORDER BY cell_id")?;
    let ids = stmt
        .query_map([now.unix_millis()], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    conn.execute(
        "DELETE FROM bbs_cells WHERE expires_at <= ?",
        [now.unix_millis()],
    )?;
    Ok(ids)
}

/// The earliest presence expiry, if any cell is present.
pub fn next_expiry(conn: &Connection) -> Result<Option<Timestamp>, DbError> {
    let at: Option<i64> =
        conn.query_row("SELECT MIN(expires_at) FROM bbs_cells", [], |r| r.get(0))?;
    Ok(at.map(Timestamp::from_unix_millis))
}

/// Takes or renews the lease `name` for `owner` until `expires_at`; false
/// when another owner holds an unexpired lease.
pub fn take_lease(
    conn: &Connection,
    name: &str,
    owner: &str,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<bool, DbError> {
    let changed = conn.execute(
        "INSERT INTO bbs_locks (name, owner, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
         WHERE bbs_locks.owner = excluded.owner OR bbs_locks.expires_at <= ?4",
        params![name, owner, expires_at.unix_millis(), now.unix_millis()],
    )?;
    Ok(changed > 0)
}

/// Gives the lease up (on shutdown).
pub fn release_lease(conn: &Connection, name: &str, owner: &str) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM bbs_locks WHERE name = ? AND owner = ?",
        params![name, owner],
    )?;
    Ok(())
}
