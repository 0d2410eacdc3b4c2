//! Apps and their processes.

use std::collections::BTreeMap;

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::query::{self, Filter, Listing, Page};
use super::{conflict, from_json, new_guid, now, to_json, DbError};

/// An app.
#[derive(Debug, Clone)]
pub struct App {
    /// Guid.
    pub guid: String,
    /// Name, unique in its space.
    pub name: String,
    /// Owning space.
    pub space_guid: String,
    /// `STARTED` or `STOPPED`.
    pub state: String,
    /// `buildpack` or `docker`.
    pub lifecycle_type: String,
    /// Buildpack names or URLs, in order (empty: detect).
    pub buildpacks: Vec<String>,
    /// Stack for buildpack apps.
    pub stack: Option<String>,
    /// User-provided environment variables.
    pub environment: BTreeMap<String, String>,
    /// The droplet instances run.
    pub droplet_guid: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// A process type of an app (`web`, `worker`, ...).
#[derive(Debug, Clone)]
pub struct Process {
    /// Guid.
    pub guid: String,
    /// Owning app.
    pub app_guid: String,
    /// Process type.
    pub kind: String,
    /// Start command override.
    pub command: Option<String>,
    /// Desired instances.
    pub instances: i64,
    /// Memory limit per instance.
    pub memory_in_mb: i64,
    /// Disk limit per instance.
    pub disk_in_mb: i64,
    /// `port`, `http` or `process`.
    pub health_check_type: String,
    /// HTTP endpoint for `http` checks.
    pub health_check_endpoint: Option<String>,
    /// Start timeout in seconds.
    pub health_check_timeout: Option<i64>,
    /// Per-check timeout in seconds.
    pub health_check_invocation_timeout: Option<i64>,
    /// Changes whenever the running instances must be replaced.
    pub version: String,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

const APP_COLS: &str = "guid, name, space_guid, state, lifecycle_type, buildpacks, stack, environment, droplet_guid, created_at, updated_at";
const PROCESS_COLS: &str = "guid, app_guid, type, command, instances, memory_in_mb, disk_in_mb, health_check_type, health_check_endpoint, health_check_timeout, health_check_invocation_timeout, version, created_at, updated_at";

struct RawApp(App, String, String);

fn map_app(r: &Row<'_>) -> rusqlite::Result<RawApp> {
    Ok(RawApp(
        App {
            guid: r.get(0)?,
            name: r.get(1)?,
            space_guid: r.get(2)?,
            state: r.get(3)?,
            lifecycle_type: r.get(4)?,
            buildpacks: Vec::new(),
            stack: r.get(6)?,
            environment: BTreeMap::new(),
            droplet_guid: r.get(8)?,
            created_at: r.get(9)?,
            updated_at: r.get(10)?,
        },
        r.get(5)?,
        r.get(7)?,
    ))
}

fn decode(raw: RawApp) -> Result<App, DbError> {
    let RawApp(mut app, buildpacks, env) = raw;
    app.buildpacks = from_json("apps.buildpacks", &buildpacks)?;
    app.environment = from_json("apps.environment", &env)?;
    Ok(app)
}

fn map_process(r: &Row<'_>) -> rusqlite::Result<Process> {
    Ok(Process {
        guid: r.get(0)?,
        app_guid: r.get(1)?,
        kind: r.get(2)?,
        command: r.get(3)?,
        instances: r.get(4)?,
        memory_in_mb: r.get(5)?,
        disk_in_mb: r.get(6)?,
        health_check_type: r.get(7)?,
        health_check_endpoint: r.get(8)?,
        health_check_timeout: r.get(9)?,
        health_check_invocation_timeout: r.get(10)?,
        version: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
    })
}

/// Creates an app (state STOPPED); `app.guid` and times are filled in.
pub fn create_app(tx: &Transaction<'_>, mut app: App) -> Result<App, DbError> {
    let t = now();
    app.guid = new_guid();
    app.created_at = t;
    app.updated_at = t;
    tx.execute(
        &format!("INSERT INTO apps ({APP_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
        params![
            app.guid,
            app.name,
            app.space_guid,
            app.state,
            app.lifecycle_type,
            to_json(&app.buildpacks),
            app.stack,
            to_json(&app.environment),
            app.droplet_guid,
            t,
            t
        ],
    )
    .map_err(conflict(format!("app {:?} in this space", app.name)))?;
    Ok(app)
}

/// Writes every mutable field of `app` and bumps `updated_at`.
pub fn update_app(tx: &Transaction<'_>, app: &App) -> Result<(), DbError> {
    tx.execute(
        "UPDATE apps SET name = ?, state = ?, lifecycle_type = ?, buildpacks = ?, stack = ?, environment = ?, droplet_guid = ?, updated_at = ? WHERE guid = ?",
        params![
            app.name,
            app.state,
            app.lifecycle_type,
            to_json(&app.buildpacks),
            app.stack,
            to_json(&app.environment),
            app.droplet_guid,
            now(),
            app.guid
        ],
    )
    .map_err(conflict(format!("app {:?} in this space", app.name)))?;
    Ok(())
}

/// One app.
pub fn get_app(conn: &Connection, guid: &str) -> Result<Option<App>, DbError> {
    conn.query_row(
        &format!("SELECT {APP_COLS} FROM apps WHERE guid = ?"),
        [guid],
        map_app,
    )
    .optional()?
    .map(decode)
    .transpose()
}

/// An app by space and name.
pub fn app_by_name(
    conn: &Connection,
    space_guid: &str,
    name: &str,
) -> Result<Option<App>, DbError> {
    conn.query_row(
        &format!("SELECT {APP_COLS} FROM apps WHERE space_guid = ? AND name = ?"),
        [space_guid, name],
        map_app,
    )
    .optional()?
    .map(decode)
    .transpose()
}

/// Lists apps.
pub fn list_apps(
    conn: &Connection,
    filters: &[Filter],
    extra: Option<(&str, Vec<Value>)>,
    page: &Page,
) -> Result<Listing<App>, DbError> {
    let raw = query::list(conn, "apps", APP_COLS, filters, extra, page, map_app)?;
    Ok(Listing {
        total: raw.total,
        items: raw
            .items
            .into_iter()
            .map(decode)
            .collect::<Result<_, _>>()?,
    })
}

/// Deletes an app, its log envelopes and (by cascade) everything it owns.
pub fn delete_app(tx: &Transaction<'_>, guid: &str) -> Result<bool, DbError> {
    super::logs::delete_source(tx, guid)?;
    Ok(tx.execute("DELETE FROM apps WHERE guid = ?", [guid])? > 0)
}

/// A new process with platform defaults.
pub fn default_process(app_guid: &str, kind: &str, memory_in_mb: i64, disk_in_mb: i64) -> Process {
    Process {
        guid: String::new(),
        app_guid: app_guid.to_owned(),
        kind: kind.to_owned(),
        command: None,
        instances: i64::from(kind == "web"),
        memory_in_mb,
        disk_in_mb,
        health_check_type: if kind == "web" { "port" } else { "process" }.to_owned(),
        health_check_endpoint: None,
        health_check_timeout: None,
        health_check_invocation_timeout: None,
        version: String::new(),
        created_at: 0,
        updated_at: 0,
    }
}

/// Creates a process; guid, version and times are filled in.
pub fn create_process(tx: &Transaction<'_>, mut p: Process) -> Result<Process, DbError> {
    let t = now();
    p.guid = new_guid();
    p.version = new_guid();
    p.created_at = t;
    p.updated_at = t;
    tx.execute(
        &format!("INSERT INTO processes ({PROCESS_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
        params![
            p.guid,
            p.app_guid,
            p.kind,
            p.command,
            p.instances,
            p.memory_in_mb,
            p.disk_in_mb,
            p.health_check_type,
            p.health_check_endpoint,
            p.health_check_timeout,
            p.health_check_invocation_timeout,
            p.version,
            t,
            t
        ],
    )
    .map_err(conflict(format!("process type {:?}", p.kind)))?;
    Ok(p)
}

/// Writes every mutable field of a process.
pub fn update_process(tx: &Transaction<'_>, p: &Process) -> Result<(), DbError> {
    tx.execute(
        "UPDATE processes SET command = ?, instances = ?, memory_in_mb = ?, disk_in_mb = ?, health_check_type = ?, health_check_endpoint = ?, health_check_timeout = ?, health_check_invocation_timeout = ?, version = ?, updated_at = ? WHERE guid = ?",
        params![
            p.command,
            p.instances,
            p.memory_in_mb,
            p.disk_in_mb,
            p.health_check_type,
            p.health_check_endpoint,
            p.health_check_timeout,
            p.health_check_invocation_timeout,
            p.version,
            now(),
            p.guid
        ],
    )?;
    Ok(())
}

/// One process.
pub fn get_process(conn: &Connection, guid: &str) -> Result<Option<Process>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {PROCESS_COLS} FROM processes WHERE guid = ?"),
            [guid],
            map_process,
        )
        .optional()?)
}

/// An app's process of one type.
pub fn process_by_type(
    conn: &Connection,
    app_guid: &str,
    kind: &str,
) -> Result<Option<Process>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {PROCESS_COLS} FROM processes WHERE app_guid = ? AND type = ?"),
            [app_guid, kind],
            map_process,
        )
        .optional()?)
}

/// All processes of an app, by type.
pub fn app_processes(conn: &Connection, app_guid: &str) -> Result<Vec<Process>, DbError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {PROCESS_COLS} FROM processes WHERE app_guid = ? ORDER BY type"
    ))?;
    let rows = stmt
        .query_map([app_guid], map_process)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Lists processes (the `space_guids` filter joins through apps).
pub fn list_processes(
    conn: &Connection,
    filters: &[Filter],
    extra: Option<(&str, Vec<Value>)>,
    page: &Page,
) -> Result<Listing<Process>, DbError> {
    query::list(
        conn,
        "processes",
        PROCESS_COLS,
        filters,
        extra,
        page,
        map_process,
    )
}
