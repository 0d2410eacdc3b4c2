//! A minimal log-cache: envelopes kept in the database (`db::logs`), so they
//! survive a controller restart, bounded per source id and in the number of
//! source ids (the least recently written source is dropped first).
//! Staging output carries `source_type` `STG`, app output `APP/PROC/WEB`.
//! Timestamps are unique and increase in commit order, so a reader that
//! polls with `start_time` = the last timestamp it saw + 1 misses nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Serialize;

use crate::db::logs::{self, LogRange, LogRow};
use crate::db::{Db, DbError};

/// One log envelope in log-cache's v1 JSON shape.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope {
    /// Nanoseconds since the epoch, as a decimal string.
    pub timestamp: String,
    /// App guid (or another source).
    pub source_id: String,
    /// Instance index as a string.
    pub instance_id: String,
    /// `source_type` and friends.
    pub tags: HashMap<String, String>,
    /// The line.
    pub log: LogLine,
}

/// The log part of an envelope.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// Base64 of the line.
    pub payload: String,
    /// `OUT` or `ERR`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Read filters of `GET /api/v1/read/:source_id`.
#[derive(Debug, Clone, Default)]
pub struct ReadQuery {
    /// Inclusive lower bound in ns.
    pub start_time: Option<i64>,
    /// Exclusive upper bound in ns.
    pub end_time: Option<i64>,
    /// Most envelopes returned (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Newest first.
    pub descending: bool,
}

/// A line to append.
#[derive(Debug, Clone)]
pub struct NewLine {
    /// Source id (app guid).
    pub source_id: String,
    /// `STG`, `APP/PROC/WEB`, ...
    pub source_type: String,
    /// Instance index or id.
    pub instance_id: String,
    /// The text.
    pub line: String,
    /// Written to stderr.
    pub stderr: bool,
}

/// The persisted cache.
pub struct LogCache {
    db: Db,
    per_source: i64,
    max_sources: i64,
    /// The last timestamp handed out; only changed inside a write transaction.
    last_ns: Mutex<i64>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn envelope(row: LogRow) -> Envelope {
    let tags = HashMap::from([("source_type".to_owned(), row.source_type)]);
    Envelope {
        timestamp: row.timestamp_ns.to_string(),
        source_id: row.source_id,
        instance_id: row.instance_id,
        tags,
        log: LogLine {
            payload: base64::engine::general_purpose::STANDARD.encode(row.line.as_bytes()),
            kind: if row.stderr { "ERR" } else { "OUT" }.to_owned(),
        },
    }
}

impl LogCache {
    /// The cache on `db`, keeping `per_source` envelopes per source and at
    /// most `max_sources` sources. Blocking (reads the newest timestamp).
    pub fn open(db: Db, per_source: usize, max_sources: usize) -> Result<Self, DbError> {
        let last = db.read_blocking(logs::last_timestamp)?;
        Ok(Self {
            db,
            per_source: i64::try_from(per_source.max(1)).unwrap_or(i64::MAX),
            max_sources: i64::try_from(max_sources.max(1)).unwrap_or(i64::MAX),
            last_ns: Mutex::new(last),
        })
    }

    /// Appends one line. Blocking.
    pub fn emit(
        &self,
        source_id: &str,
        source_type: &str,
        instance_id: &str,
        line: &str,
        stderr: bool,
    ) -> Result<(), DbError> {
        self.emit_all(vec![NewLine {
            source_id: source_id.to_owned(),
            source_type: source_type.to_owned(),
            instance_id: instance_id.to_owned(),
            line: line.to_owned(),
            stderr,
        }])
    }

    /// Appends lines in one transaction, in order. Blocking.
    pub fn emit_all(&self, lines: Vec<NewLine>) -> Result<(), DbError> {
        if lines.is_empty() {
            return Ok(());
        }
        self.db.write_blocking(|tx| {
            // Timestamps are handed out while the writer is held, so they
            // become visible in increasing order.
            let mut last = self.last_ns.lock().unwrap_or_else(|e| e.into_inner());
            let mut ts = *last;
            let rows: Vec<LogRow> = lines
                .into_iter()
                .map(|l| {
                    ts = now_ns().max(ts + 1);
                    LogRow {
                        source_id: l.source_id,
                        timestamp_ns: ts,
                        source_type: l.source_type,
                        instance_id: l.instance_id,
                        line: l.line,
                        stderr: l.stderr,
                    }
                })
                .collect();
            logs::append(tx, &rows, self.per_source, self.max_sources)?;
            *last = ts;
            Ok(())
        })
    }

    /// Envelopes of a source matching `q`, oldest first unless descending.
    /// Blocking.
    pub fn read(&self, source_id: &str, q: &ReadQuery) -> Result<Vec<Envelope>, DbError> {
        let range = LogRange {
            start: q.start_time.unwrap_or(i64::MIN),
            end: q.end_time.unwrap_or(i64::MAX),
            limit: i64::try_from(q.limit.unwrap_or(100).clamp(1, 1000)).unwrap_or(1000),
            descending: q.descending,
        };
        let rows = self.db.read_blocking(|c| logs::read(c, source_id, range))?;
        Ok(rows.into_iter().map(envelope).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(per_source: usize, max_sources: usize) -> (tempfile::TempDir, Db, LogCache) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("t.db")).expect("db");
        let cache = LogCache::open(db.clone(), per_source, max_sources).expect("cache");
        (dir, db, cache)
    }

    fn text(e: &Envelope) -> String {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&e.log.payload)
            .expect("base64");
        String::from_utf8(bytes).expect("utf8")
    }

    #[test]
    fn bounded_per_source_and_in_sources() {
        let (_dir, _db, cache) = cache(3, 2);
        for i in 0..5 {
            cache
                .emit("a", "STG", "0", &format!("line {i}"), false)
                .expect("emit");
        }
        let got = cache.read("a", &ReadQuery::default()).expect("read");
        let lines: Vec<String> = got.iter().map(text).collect();
        assert_eq!(lines, ["line 2", "line 3", "line 4"]);
        cache.emit("b", "STG", "0", "x", false).expect("emit");
        cache.emit("c", "STG", "0", "y", false).expect("emit");
        assert!(
            cache
                .read("a", &ReadQuery::default())
                .expect("read")
                .is_empty(),
            "least recently written source dropped"
        );
        assert_eq!(
            cache.read("c", &ReadQuery::default()).expect("read").len(),
            1
        );
    }

    #[test]
    fn start_time_is_inclusive_and_timestamps_increase() {
        let (_dir, _db, cache) = cache(10, 10);
        cache.emit("a", "STG", "0", "one", false).expect("emit");
        cache.emit("a", "STG", "0", "two", true).expect("emit");
        let all = cache.read("a", &ReadQuery::default()).expect("read");
        let second: i64 = all[1].timestamp.parse().expect("ns");
        assert!(second > all[0].timestamp.parse::<i64>().expect("ns"));
        let q = ReadQuery {
            start_time: Some(second),
            ..Default::default()
        };
        let got = cache.read("a", &q).expect("read");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].log.kind, "ERR");
    }

    #[test]
    fn descending_with_a_limit_gives_the_newest() {
        let (_dir, _db, cache) = cache(100, 10);
        let lines = (0..20)
            .map(|i| NewLine {
                source_id: "a".into(),
                source_type: "APP/PROC/WEB".into(),
                instance_id: "0".into(),
                line: format!("line {i}"),
                stderr: false,
            })
            .collect();
        cache.emit_all(lines).expect("emit");
        let q = ReadQuery {
            limit: Some(3),
            descending: true,
            ..Default::default()
        };
        let newest: Vec<String> = cache
            .read("a", &q)
            .expect("read")
            .iter()
            .map(text)
            .collect();
        assert_eq!(newest, ["line 19", "line 18", "line 17"]);
        let q = ReadQuery {
            limit: Some(3),
            ..Default::default()
        };
        let oldest: Vec<String> = cache
            .read("a", &q)
            .expect("read")
            .iter()
            .map(text)
            .collect();
        assert_eq!(oldest, ["line 0", "line 1", "line 2"]);
    }

    #[test]
    fn envelopes_survive_reopening_and_timestamps_keep_increasing() {
        let (_dir, db, cache) = cache(10, 10);
        cache.emit("a", "STG", "0", "before", false).expect("emit");
        let before = cache.read("a", &ReadQuery::default()).expect("read");
        drop(cache);
        let reopened = LogCache::open(db, 10, 10).expect("reopen");
        reopened
            .emit("a", "STG", "0", "after", false)
            .expect("emit");
        let all = reopened.read("a", &ReadQuery::default()).expect("read");
        assert_eq!(all.len(), 2);
        assert_eq!(text(&all[0]), "before");
        assert_eq!(all[0].timestamp, before[0].timestamp);
        assert!(
            all[1].timestamp.parse::<i64>().expect("ns")
                > all[0].timestamp.parse::<i64>().expect("ns")
        );
    }
}
