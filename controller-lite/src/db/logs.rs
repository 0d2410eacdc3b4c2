//! Log-cache envelopes: a bounded ring per source id (an app guid) in
//! `log_envelopes`, and `log_sources` with each source's last write so the
//! least recently written source goes first when there are too many.

use rusqlite::{params, Connection, Row, Transaction};

use super::DbError;

/// One stored log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Source id (app guid).
    pub source_id: String,
    /// Nanoseconds since the epoch; unique and increasing.
    pub timestamp_ns: i64,
    /// `STG`, `APP/PROC/WEB`, `APP/TASK/<name>`, ...
    pub source_type: String,
    /// Instance index or id.
    pub instance_id: String,
    /// The text.
    pub line: String,
    /// Written to stderr.
    pub stderr: bool,
}

/// Filters of a read, as log-cache takes them.
#[derive(Debug, Clone, Copy)]
pub struct LogRange {
    /// Inclusive lower bound (ns).
    pub start: i64,
    /// Exclusive upper bound (ns).
    pub end: i64,
    /// Most rows.
    pub limit: i64,
    /// Newest first.
    pub descending: bool,
}

fn map(r: &Row<'_>) -> rusqlite::Result<LogRow> {
    Ok(LogRow {
        source_id: r.get(0)?,
        timestamp_ns: r.get(1)?,
        source_type: r.get(2)?,
        instance_id: r.get(3)?,
        line: r.get(4)?,
        stderr: r.get(5)?,
    })
}

/// The newest timestamp stored, 0 when there is none.
pub fn last_timestamp(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(timestamp_ns), 0) FROM log_envelopes",
        [],
        |r| r.get(0),
    )?)
}

/// Appends rows (timestamps already assigned), then trims each touched
/// source to its newest `per_source` rows and the table to `max_sources`
/// sources.
pub fn append(
    tx: &Transaction<'_>,
    rows: &[LogRow],
    per_source: i64,
    max_sources: i64,
) -> Result<(), DbError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO log_envelopes (source_id, timestamp_ns, source_type, instance_id, line, stderr) VALUES (?, ?, ?, ?, ?, ?)",
    )?;
    for r in rows {
        insert.execute(params![
            r.source_id,
            r.timestamp_ns,
            r.source_type,
            r.instance_id,
            r.line,
            r.stderr
        ])?;
    }
    let mut sources: Vec<(&str, i64)> = Vec::new();
    for r in rows {
        match sources.iter_mut().find(|(s, _)| *s == r.source_id) {
            Some(entry) => entry.1 = entry.1.max(r.timestamp_ns),
            None => sources.push((&r.source_id, r.timestamp_ns)),
        }
    }
    let mut added_source = false;
    for (source, last) in sources {
        added_source |= tx.execute(
            "INSERT OR IGNORE INTO log_sources (source_id, last_write) VALUES (?, ?)",
            params![source, last],
        )? > 0;
        tx.execute(
            "UPDATE log_sources SET last_write = ? WHERE source_id = ?",
            params![last, source],
        )?;
        // Everything at or below the (per_source + 1)-th newest goes.
        tx.execute(
            "DELETE FROM log_envelopes WHERE source_id = ?1 AND timestamp_ns <= (
                SELECT timestamp_ns FROM log_envelopes WHERE source_id = ?1
                ORDER BY timestamp_ns DESC LIMIT 1 OFFSET ?2)",
            params![source, per_source],
        )?;
    }
    if added_source {
        drop_oldest_sources(tx, max_sources)?;
    }
    Ok(())
}

fn drop_oldest_sources(tx: &Transaction<'_>, max_sources: i64) -> Result<(), DbError> {
    let count: i64 = tx.query_row("SELECT COUNT(*) FROM log_sources", [], |r| r.get(0))?;
    if count <= max_sources {
        return Ok(());
    }
    let mut stmt =
        tx.prepare("SELECT source_id FROM log_sources ORDER BY last_write, source_id LIMIT ?")?;
    let victims = stmt
        .query_map([count - max_sources], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for v in victims {
        delete_source(tx, &v)?;
    }
    Ok(())
}

/// Forgets every envelope of a source (its app was deleted).
pub fn delete_source(tx: &Transaction<'_>, source_id: &str) -> Result<(), DbError> {
    tx.execute("DELETE FROM log_envelopes WHERE source_id = ?", [source_id])?;
    tx.execute("DELETE FROM log_sources WHERE source_id = ?", [source_id])?;
    Ok(())
}

/// Rows of a source in `range`, oldest first unless descending.
pub fn read(conn: &Connection, source_id: &str, range: LogRange) -> Result<Vec<LogRow>, DbError> {
    let order = if range.descending { "DESC" } else { "ASC" };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT source_id, timestamp_ns, source_type, instance_id, line, stderr FROM log_envelopes
         WHERE source_id = ? AND timestamp_ns >= ? AND timestamp_ns < ?
         ORDER BY timestamp_ns {order} LIMIT ?"
    ))?;
    let rows = stmt
        .query_map(params![source_id, range.start, range.end, range.limit], map)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// How many rows a source has.
pub fn count(conn: &Connection, source_id: &str) -> Result<i64, DbError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM log_envelopes WHERE source_id = ?",
        [source_id],
        |r| r.get(0),
    )?)
}
