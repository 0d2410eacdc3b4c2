//! Admin buildpacks, ordered by position.

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::query::{self, Filter, Listing, Page};
use super::{conflict, new_guid, now, DbError, StoredBlob};

/// A buildpack.
#[derive(Debug, Clone)]
pub struct Buildpack {
    /// Guid.
    pub guid: String,
    /// Name.
    pub name: String,
    /// Stack it runs on (none: any).
    pub stack: Option<String>,
    /// 1-based detection order.
    pub position: i64,
    /// Used for detection and by name.
    pub enabled: bool,
    /// Locked against bits updates.
    pub locked: bool,
    /// `AWAITING_UPLOAD` or `READY`.
    pub state: String,
    /// Uploaded file name.
    pub filename: Option<String>,
    /// The zip.
    pub blob: Option<StoredBlob>,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

const COLS: &str = "guid, name, stack, position, enabled, locked, state, filename, blob_sha256, blob_sha1, blob_size, created_at, updated_at";

fn map(r: &Row<'_>) -> rusqlite::Result<Buildpack> {
    Ok(Buildpack {
        guid: r.get(0)?,
        name: r.get(1)?,
        stack: r.get(2)?,
        position: r.get(3)?,
        enabled: r.get(4)?,
        locked: r.get(5)?,
        state: r.get(6)?,
        filename: r.get(7)?,
        blob: StoredBlob::from_columns(r.get(8)?, r.get(9)?, r.get(10)?),
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
    })
}

/// Creates a buildpack at `position` (clamped to 1..=count+1), shifting later ones down.
pub fn create(
    tx: &Transaction<'_>,
    name: &str,
    stack: Option<&str>,
    position: Option<i64>,
    enabled: bool,
    locked: bool,
) -> Result<Buildpack, DbError> {
    let count: i64 = tx.query_row("SELECT COUNT(*) FROM buildpacks", [], |r| r.get(0))?;
    let position = position.unwrap_or(count + 1).clamp(1, count + 1);
    tx.execute(
        "UPDATE buildpacks SET position = position + 1 WHERE position >= ?",
        [position],
    )?;
    let t = now();
    let bp = Buildpack {
        guid: new_guid(),
        name: name.to_owned(),
        stack: stack.map(str::to_owned),
        position,
        enabled,
        locked,
        state: "AWAITING_UPLOAD".to_owned(),
        filename: None,
        blob: None,
        created_at: t,
        updated_at: t,
    };
    tx.execute(
        "INSERT INTO buildpacks (guid, name, stack, position, enabled, locked, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![bp.guid, bp.name, bp.stack, bp.position, enabled, locked, bp.state, t, t],
    )
    .map_err(conflict(format!("buildpack {name:?} for this stack")))?;
    Ok(bp)
}

/// One buildpack.
pub fn get(conn: &Connection, guid: &str) -> Result<Option<Buildpack>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM buildpacks WHERE guid = ?"),
            [guid],
            map,
        )
        .optional()?)
}

/// Lists buildpacks (by position unless ordered otherwise).
pub fn list(
    conn: &Connection,
    filters: &[Filter],
    page: &Page,
) -> Result<Listing<Buildpack>, DbError> {
    query::list(conn, "buildpacks", COLS, filters, None, page, map)
}

/// Enabled, READY buildpacks usable on `stack`, by position.
pub fn usable(conn: &Connection, stack: &str) -> Result<Vec<Buildpack>, DbError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLS} FROM buildpacks WHERE enabled = 1 AND state = 'READY' AND (stack IS NULL OR stack = ?) ORDER BY position"
    ))?;
    let rows = stmt
        .query_map([stack], map)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Marks a buildpack READY with its zip.
pub fn set_bits(
    tx: &Transaction<'_>,
    guid: &str,
    filename: &str,
    blob: &StoredBlob,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE buildpacks SET state = 'READY', filename = ?, blob_sha256 = ?, blob_sha1 = ?, blob_size = ?, updated_at = ? WHERE guid = ?",
        params![filename, blob.sha256, blob.sha1, blob.size as i64, now(), guid],
    )?;
    Ok(())
}

/// Updates position, enabled and locked.
pub fn update(
    tx: &Transaction<'_>,
    bp: &Buildpack,
    new_position: Option<i64>,
) -> Result<(), DbError> {
    if let Some(pos) = new_position {
        let count: i64 = tx.query_row("SELECT COUNT(*) FROM buildpacks", [], |r| r.get(0))?;
        let pos = pos.clamp(1, count.max(1));
        tx.execute(
            "UPDATE buildpacks SET position = position - 1 WHERE position > ?",
            [bp.position],
        )?;
        tx.execute(
            "UPDATE buildpacks SET position = position + 1 WHERE position >= ? AND guid != ?",
            params![pos, bp.guid],
        )?;
        tx.execute(
            "UPDATE buildpacks SET position = ? WHERE guid = ?",
            params![pos, bp.guid],
        )?;
    }
    tx.execute(
        "UPDATE buildpacks SET enabled = ?, locked = ?, updated_at = ? WHERE guid = ?",
        params![bp.enabled, bp.locked, now(), bp.guid],
    )?;
    Ok(())
}

/// Deletes a buildpack, closing the gap in positions.
pub fn delete(tx: &Transaction<'_>, guid: &str) -> Result<bool, DbError> {
    let Some(bp) = get(tx, guid)? else {
        return Ok(false);
    };
    tx.execute("DELETE FROM buildpacks WHERE guid = ?", [guid])?;
    tx.execute(
        "UPDATE buildpacks SET position = position - 1 WHERE position > ?",
        [bp.position],
    )?;
    Ok(true)
}
