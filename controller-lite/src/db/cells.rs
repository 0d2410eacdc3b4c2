//! Per-cell credentials of the internal API: one row per cell with the
//! SHA-256 of its key (the key itself is never stored), revocable.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{now, DbError};

/// A cell's credential as listed (without the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellCredential {
    /// The cell's id.
    pub cell_id: String,
    /// When the current key was issued.
    pub created_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// Sets (or replaces) a cell's key digest; a revoked cell becomes valid again.
pub fn put(tx: &Transaction<'_>, cell_id: &str, key_sha256: &str) -> Result<(), DbError> {
    tx.execute(
        "INSERT OR REPLACE INTO cell_credentials (cell_id, key_sha256, created_at, revoked_at) VALUES (?, ?, ?, NULL)",
        params![cell_id, key_sha256, now()],
    )?;
    Ok(())
}

/// Revokes a cell's key; false when the cell has none or it is revoked.
pub fn revoke(tx: &Transaction<'_>, cell_id: &str) -> Result<bool, DbError> {
    Ok(tx.execute(
        "UPDATE cell_credentials SET revoked_at = ? WHERE cell_id = ? AND revoked_at IS NULL",
        params![now(), cell_id],
    )? > 0)
}

/// The cell whose valid key has this digest.
pub fn cell_for_digest(conn: &Connection, key_sha256: &str) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row(
            "SELECT cell_id FROM cell_credentials WHERE key_sha256 = ? AND revoked_at IS NULL",
            [key_sha256],
            |r| r.get(0),
        )
        .optional()?)
}

/// Every cell credential, by cell id.
pub fn list(conn: &Connection) -> Result<Vec<CellCredential>, DbError> {
    let mut stmt = conn
        .prepare("SELECT cell_id, created_at, revoked_at FROM cell_credentials ORDER BY cell_id")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(CellCredential {
                cell_id: r.get(0)?,
                created_at: r.get(1)?,
                revoked_at: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
