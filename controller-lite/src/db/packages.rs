//! Packages: app bits (a zip in the blobstore) or a Docker image reference.

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::query::{self, Filter, Listing, Page};
use super::{new_guid, now, DbError, StoredBlob};
use crate::states::PackageState;

/// A package.
#[derive(Debug, Clone)]
pub struct Package {
    /// Guid.
    pub guid: String,
    /// Owning app.
    pub app_guid: String,
    /// `bits` or `docker`.
    pub kind: String,
    /// See [`PackageState`].
    pub state: String,
    /// Image reference for docker packages.
    pub docker_image: Option<String>,
    /// The zip, once READY.
    pub blob: Option<StoredBlob>,
    /// Why the upload failed.
    pub error: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

const COLS: &str = "guid, app_guid, type, state, docker_image, blob_sha256, blob_sha1, blob_size, error, created_at, updated_at";

fn map(r: &Row<'_>) -> rusqlite::Result<Package> {
    Ok(Package {
        guid: r.get(0)?,
        app_guid: r.get(1)?,
        kind: r.get(2)?,
        state: r.get(3)?,
        docker_image: r.get(4)?,
        blob: StoredBlob::from_columns(r.get(5)?, r.get(6)?, r.get(7)?),
        error: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

/// Creates a package: docker packages are READY at once, bits await upload.
pub fn create(
    tx: &Transaction<'_>,
    app_guid: &str,
    kind: &str,
    docker_image: Option<&str>,
) -> Result<Package, DbError> {
    let t = now();
    let state = if kind == "docker" {
        PackageState::Ready.as_str()
    } else {
        PackageState::AwaitingUpload.as_str()
    };
    let p = Package {
        guid: new_guid(),
        app_guid: app_guid.to_owned(),
        kind: kind.to_owned(),
        state: state.to_owned(),
        docker_image: docker_image.map(str::to_owned),
        blob: None,
        error: None,
        created_at: t,
        updated_at: t,
    };
    tx.execute(
        "INSERT INTO packages (guid, app_guid, type, state, docker_image, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        params![p.guid, p.app_guid, p.kind, p.state, p.docker_image, t, t],
    )?;
    Ok(p)
}

/// One package.
pub fn get(conn: &Connection, guid: &str) -> Result<Option<Package>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM packages WHERE guid = ?"),
            [guid],
            map,
        )
        .optional()?)
}

/// Lists packages.
pub fn list(
    conn: &Connection,
    filters: &[Filter],
    extra: Option<(&str, Vec<Value>)>,
    page: &Page,
) -> Result<Listing<Package>, DbError> {
    query::list(conn, "packages", COLS, filters, extra, page, map)
}

/// Moves a package to `to` if its state machine allows it; returns whether it moved.
pub fn transition(tx: &Transaction<'_>, guid: &str, to: PackageState) -> Result<bool, DbError> {
    let current: Option<String> = tx
        .query_row("SELECT state FROM packages WHERE guid = ?", [guid], |r| {
            r.get(0)
        })
        .optional()?;
    let allowed = current
        .as_deref()
        .and_then(PackageState::parse)
        .is_some_and(|from| from.can_transition_to(to));
    if allowed {
        tx.execute(
            "UPDATE packages SET state = ?, updated_at = ? WHERE guid = ?",
            params![to.as_str(), now(), guid],
        )?;
    }
    Ok(allowed)
}

/// PROCESSING_UPLOAD → READY with its zip; false if not processing.
pub fn set_ready(tx: &Transaction<'_>, guid: &str, blob: &StoredBlob) -> Result<bool, DbError> {
    if !transition(tx, guid, PackageState::Ready)? {
        return Ok(false);
    }
    tx.execute(
        "UPDATE packages SET blob_sha256 = ?, blob_sha1 = ?, blob_size = ?, error = NULL WHERE guid = ?",
        params![blob.sha256, blob.sha1, blob.size as i64, guid],
    )?;
    Ok(true)
}

/// PROCESSING_UPLOAD → FAILED with a reason; false if not processing.
pub fn set_failed(tx: &Transaction<'_>, guid: &str, error: &str) -> Result<bool, DbError> {
    if !transition(tx, guid, PackageState::Failed)? {
        return Ok(false);
    }
    tx.execute(
        "UPDATE packages SET error = ? WHERE guid = ?",
        params![error, guid],
    )?;
    Ok(true)
}

/// After a restart: uploads that were in flight failed (their bits are gone).
pub fn fail_interrupted_uploads(tx: &Transaction<'_>) -> Result<usize, DbError> {
    Ok(tx.execute(
        "UPDATE packages SET state = 'FAILED', error = 'upload interrupted by a controller restart; upload again', updated_at = ? WHERE state = 'PROCESSING_UPLOAD'",
        [now()],
    )?)
}

/// The checksums of a blob the database refers to, by its SHA-256.
pub fn find_blob(conn: &Connection, sha256: &str) -> Result<Option<StoredBlob>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT blob_sha256, blob_sha1, blob_size FROM packages WHERE blob_sha256 = ?1
         UNION SELECT blob_sha256, blob_sha1, blob_size FROM droplets WHERE blob_sha256 = ?1
         UNION SELECT blob_sha256, blob_sha1, blob_size FROM buildpacks WHERE blob_sha256 = ?1
         UNION SELECT blob_sha256, blob_sha1, blob_size FROM buildpack_caches WHERE blob_sha256 = ?1
         UNION SELECT blob_sha256, blob_sha1, blob_size FROM staging_uploads WHERE blob_sha256 = ?1
         LIMIT 1",
    )?;
    let found = stmt
        .query_row([sha256], |r| {
            Ok(StoredBlob::from_columns(r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    Ok(found.flatten())
}

/// Every blob sha256 the database refers to (for blobstore garbage collection).
pub fn referenced_blobs(conn: &Connection) -> Result<Vec<String>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT blob_sha256 FROM packages WHERE blob_sha256 IS NOT NULL
         UNION SELECT blob_sha256 FROM droplets WHERE blob_sha256 IS NOT NULL
         UNION SELECT blob_sha256 FROM staging_uploads
         UNION SELECT blob_sha256 FROM buildpack_caches
         UNION SELECT blob_sha256 FROM buildpacks WHERE blob_sha256 IS NOT NULL",
    )?;
    let rows = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(rows)
}
