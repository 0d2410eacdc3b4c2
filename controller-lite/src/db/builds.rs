//! Builds (staging attempts), droplets (their output), droplet uploads that
//! wait for staging completion, and buildpack caches per app and stack.

use std::collections::BTreeMap;

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::query::{self, Filter, Listing, Page};
use super::{from_json, now, to_json, DbError, StoredBlob};
use crate::states::BuildState;

/// A build.
#[derive(Debug, Clone)]
pub struct Build {
    /// Guid (also the staging task's guid).
    pub guid: String,
    /// Owning app.
    pub app_guid: String,
    /// Staged package.
    pub package_guid: String,
    /// `STAGING`, `STAGED` or `FAILED`.
    pub state: String,
    /// Why staging failed.
    pub error: Option<String>,
    /// `buildpack` or `docker`.
    pub lifecycle_type: String,
    /// Requested buildpacks.
    pub buildpacks: Vec<String>,
    /// Stack.
    pub stack: Option<String>,
    /// The droplet, once STAGED.
    pub droplet_guid: Option<String>,
    /// Staging task memory.
    pub staging_memory_in_mb: i64,
    /// Staging task disk.
    pub staging_disk_in_mb: i64,
    /// User who started the build.
    pub created_by_guid: String,
    /// Their name.
    pub created_by_name: String,
    /// Unix time after which a STAGING build fails.
    pub staging_deadline: i64,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// A droplet.
#[derive(Debug, Clone)]
pub struct Droplet {
    /// Guid.
    pub guid: String,
    /// Owning app.
    pub app_guid: String,
    /// Build that produced it.
    pub build_guid: Option<String>,
    /// Package it was staged from.
    pub package_guid: Option<String>,
    /// `STAGED` for every droplet we keep.
    pub state: String,
    /// `buildpack` or `docker`.
    pub lifecycle_type: String,
    /// Process type → start command.
    pub process_types: BTreeMap<String, String>,
    /// Lifecycle-specific data (for docker: the image config as JSON).
    pub execution_metadata: String,
    /// Buildpacks used (`[{name, buildpack_name, detect_output, version}]`).
    pub buildpacks: serde_json::Value,
    /// Stack.
    pub stack: Option<String>,
    /// Image for docker droplets.
    pub docker_image: Option<String>,
    /// The tarball for buildpack droplets.
    pub blob: Option<StoredBlob>,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

const BUILD_COLS: &str = "guid, app_guid, package_guid, state, error, lifecycle_type, buildpacks, stack, droplet_guid, staging_memory_in_mb, staging_disk_in_mb, created_by_guid, created_by_name, staging_deadline, created_at, updated_at";
const DROPLET_COLS: &str = "guid, app_guid, build_guid, package_guid, state, lifecycle_type, process_types, execution_metadata, buildpacks, stack, docker_image, blob_sha256, blob_sha1, blob_size, created_at, updated_at";

fn map_build(r: &Row<'_>) -> rusqlite::Result<(Build, String)> {
    Ok((
        Build {
            guid: r.get(0)?,
            app_guid: r.get(1)?,
            package_guid: r.get(2)?,
            state: r.get(3)?,
            error: r.get(4)?,
            lifecycle_type: r.get(5)?,
            buildpacks: Vec::new(),
            stack: r.get(7)?,
            droplet_guid: r.get(8)?,
            staging_memory_in_mb: r.get(9)?,
            staging_disk_in_mb: r.get(10)?,
            created_by_guid: r.get(11)?,
            created_by_name: r.get(12)?,
            staging_deadline: r.get(13)?,
            created_at: r.get(14)?,
            updated_at: r.get(15)?,
        },
        r.get(6)?,
    ))
}

fn decode_build((mut b, bps): (Build, String)) -> Result<Build, DbError> {
    b.buildpacks = from_json("builds.buildpacks", &bps)?;
    Ok(b)
}

type RawDroplet = (Droplet, String, String);

fn map_droplet(r: &Row<'_>) -> rusqlite::Result<RawDroplet> {
    Ok((
        Droplet {
            guid: r.get(0)?,
            app_guid: r.get(1)?,
            build_guid: r.get(2)?,
            package_guid: r.get(3)?,
            state: r.get(4)?,
            lifecycle_type: r.get(5)?,
            process_types: BTreeMap::new(),
            execution_metadata: r.get(7)?,
            buildpacks: serde_json::Value::Null,
            stack: r.get(9)?,
            docker_image: r.get(10)?,
            blob: StoredBlob::from_columns(r.get(11)?, r.get(12)?, r.get(13)?),
            created_at: r.get(14)?,
            updated_at: r.get(15)?,
        },
        r.get(6)?,
        r.get(8)?,
    ))
}

fn decode_droplet((mut d, pt, bps): RawDroplet) -> Result<Droplet, DbError> {
    d.process_types = from_json("droplets.process_types", &pt)?;
    d.buildpacks = from_json("droplets.buildpacks", &bps)?;
    Ok(d)
}

/// Inserts a build (guid and times set by the caller).
pub fn create_build(tx: &Transaction<'_>, b: &Build) -> Result<(), DbError> {
    tx.execute(
        &format!("INSERT INTO builds ({BUILD_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
        params![
            b.guid,
            b.app_guid,
            b.package_guid,
            b.state,
            b.error,
            b.lifecycle_type,
            to_json(&b.buildpacks),
            b.stack,
            b.droplet_guid,
            b.staging_memory_in_mb,
            b.staging_disk_in_mb,
            b.created_by_guid,
            b.created_by_name,
            b.staging_deadline,
            b.created_at,
            b.updated_at
        ],
    )?;
    Ok(())
}

/// One build.
pub fn get_build(conn: &Connection, guid: &str) -> Result<Option<Build>, DbError> {
    conn.query_row(
        &format!("SELECT {BUILD_COLS} FROM builds WHERE guid = ?"),
        [guid],
        map_build,
    )
    .optional()?
    .map(decode_build)
    .transpose()
}

/// Lists builds.
pub fn list_builds(
    conn: &Connection,
    filters: &[Filter],
    extra: Option<(&str, Vec<Value>)>,
    page: &Page,
) -> Result<Listing<Build>, DbError> {
    let raw = query::list(conn, "builds", BUILD_COLS, filters, extra, page, map_build)?;
    Ok(Listing {
        total: raw.total,
        items: raw
            .items
            .into_iter()
            .map(decode_build)
            .collect::<Result<_, _>>()?,
    })
}

/// Moves a build to `to` if its state machine allows it; returns whether it moved.
fn transition(
    tx: &Transaction<'_>,
    guid: &str,
    to: BuildState,
    error: Option<&str>,
    droplet_guid: Option<&str>,
) -> Result<bool, DbError> {
    let current: Option<String> = tx
        .query_row("SELECT state FROM builds WHERE guid = ?", [guid], |r| {
            r.get(0)
        })
        .optional()?;
    let allowed = current
        .as_deref()
        .and_then(BuildState::parse)
        .is_some_and(|from| from.can_transition_to(to));
    if allowed {
        tx.execute(
            "UPDATE builds SET state = ?, error = COALESCE(?, error), droplet_guid = COALESCE(?, droplet_guid), updated_at = ? WHERE guid = ?",
            params![to.as_str(), error, droplet_guid, now(), guid],
        )?;
    }
    Ok(allowed)
}

/// STAGING → STAGED with its droplet; false if the build was no longer STAGING.
pub fn mark_staged(tx: &Transaction<'_>, guid: &str, droplet_guid: &str) -> Result<bool, DbError> {
    transition(tx, guid, BuildState::Staged, None, Some(droplet_guid))
}

/// STAGING → FAILED; false if the build was no longer STAGING.
pub fn mark_failed(tx: &Transaction<'_>, guid: &str, error: &str) -> Result<bool, DbError> {
    transition(tx, guid, BuildState::Failed, Some(error), None)
}

/// Guids of builds still STAGING past their deadline.
pub fn overdue_builds(conn: &Connection, now: i64) -> Result<Vec<String>, DbError> {
    let mut stmt =
        conn.prepare("SELECT guid FROM builds WHERE state = 'STAGING' AND staging_deadline <= ?")?;
    let rows = stmt
        .query_map([now], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(rows)
}

/// Inserts a droplet (guid and times set by the caller).
pub fn create_droplet(tx: &Transaction<'_>, d: &Droplet) -> Result<(), DbError> {
    let (sha256, sha1, size) = match &d.blob {
        Some(b) => (
            Some(b.sha256.clone()),
            Some(b.sha1.clone()),
            Some(b.size as i64),
        ),
        None => (None, None, None),
    };
    tx.execute(
        &format!("INSERT INTO droplets ({DROPLET_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
        params![
            d.guid,
            d.app_guid,
            d.build_guid,
            d.package_guid,
            d.state,
            d.lifecycle_type,
            to_json(&d.process_types),
            d.execution_metadata,
            to_json(&d.buildpacks),
            d.stack,
            d.docker_image,
            sha256,
            sha1,
            size,
            d.created_at,
            d.updated_at
        ],
    )?;
    Ok(())
}

/// One droplet.
pub fn get_droplet(conn: &Connection, guid: &str) -> Result<Option<Droplet>, DbError> {
    conn.query_row(
        &format!("SELECT {DROPLET_COLS} FROM droplets WHERE guid = ?"),
        [guid],
        map_droplet,
    )
    .optional()?
    .map(decode_droplet)
    .transpose()
}

/// Lists droplets.
pub fn list_droplets(
    conn: &Connection,
    filters: &[Filter],
    extra: Option<(&str, Vec<Value>)>,
    page: &Page,
) -> Result<Listing<Droplet>, DbError> {
    let raw = query::list(
        conn,
        "droplets",
        DROPLET_COLS,
        filters,
        extra,
        page,
        map_droplet,
    )?;
    Ok(Listing {
        total: raw.total,
        items: raw
            .items
            .into_iter()
            .map(decode_droplet)
            .collect::<Result<_, _>>()?,
    })
}

/// Records the droplet a cell uploaded for a build (replacing an earlier upload).
pub fn put_staging_upload(
    tx: &Transaction<'_>,
    build_guid: &str,
    blob: &StoredBlob,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT OR REPLACE INTO staging_uploads (build_guid, blob_sha256, blob_sha1, blob_size) VALUES (?, ?, ?, ?)",
        params![build_guid, blob.sha256, blob.sha1, blob.size as i64],
    )?;
    Ok(())
}

/// Removes and returns the droplet uploaded for a build.
pub fn take_staging_upload(
    tx: &Transaction<'_>,
    build_guid: &str,
) -> Result<Option<StoredBlob>, DbError> {
    let blob = tx
        .query_row(
            "SELECT blob_sha256, blob_sha1, blob_size FROM staging_uploads WHERE build_guid = ?",
            [build_guid],
            |r| Ok(StoredBlob::from_columns(r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .flatten();
    tx.execute(
        "DELETE FROM staging_uploads WHERE build_guid = ?",
        [build_guid],
    )?;
    Ok(blob)
}

/// Records an app's buildpack cache for a stack.
pub fn put_buildpack_cache(
    tx: &Transaction<'_>,
    app_guid: &str,
    stack: &str,
    blob: &StoredBlob,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT OR REPLACE INTO buildpack_caches (app_guid, stack, blob_sha256, blob_sha1, blob_size) VALUES (?, ?, ?, ?, ?)",
        params![app_guid, stack, blob.sha256, blob.sha1, blob.size as i64],
    )?;
    Ok(())
}

/// An app's buildpack cache for a stack.
pub fn buildpack_cache(
    conn: &Connection,
    app_guid: &str,
    stack: &str,
) -> Result<Option<StoredBlob>, DbError> {
    Ok(conn
        .query_row(
            "SELECT blob_sha256, blob_sha1, blob_size FROM buildpack_caches WHERE app_guid = ? AND stack = ?",
            [app_guid, stack],
            |r| Ok(StoredBlob::from_columns(r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .flatten())
}
