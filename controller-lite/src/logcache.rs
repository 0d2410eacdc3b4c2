//! A minimal log-cache: envelopes kept **in memory**, bounded per source id
//! and in the number of source ids (the least recently written source is
//! dropped first). Staging output carries `source_type` `STG`, app output
//! `APP/PROC/WEB`. Nothing survives a controller restart, as with Cloud
//! Foundry's own log-cache nodes.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Serialize;

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
    /// Most envelopes returned (default 100, max 1000).
    pub limit: Option<usize>,
    /// Newest first.
    pub descending: bool,
}

struct Source {
    envelopes: VecDeque<(i64, Envelope)>,
    last_write: u64,
}

struct Inner {
    sources: HashMap<String, Source>,
    clock: u64,
    last_ns: i64,
}

/// The in-memory cache.
pub struct LogCache {
    per_source: usize,
    max_sources: usize,
    inner: Mutex<Inner>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl LogCache {
    /// A cache with the given bounds.
    pub fn new(per_source: usize, max_sources: usize) -> Self {
        Self {
            per_source: per_source.max(1),
            max_sources: max_sources.max(1),
            inner: Mutex::new(Inner {
                sources: HashMap::new(),
                clock: 0,
                last_ns: 0,
            }),
        }
    }

    /// Appends a line. Timestamps are strictly increasing, so a reader that
    /// asks for everything after the last one it saw misses nothing.
    pub fn emit(
        &self,
        source_id: &str,
        source_type: &str,
        instance_id: &str,
        line: &str,
        stderr: bool,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let ts = now_ns().max(inner.last_ns + 1);
        inner.last_ns = ts;
        inner.clock += 1;
        let clock = inner.clock;
        if !inner.sources.contains_key(source_id) && inner.sources.len() >= self.max_sources {
            let oldest = inner
                .sources
                .iter()
                .min_by_key(|(_, s)| s.last_write)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                inner.sources.remove(&k);
            }
        }
        let source = inner
            .sources
            .entry(source_id.to_owned())
            .or_insert_with(|| Source {
                envelopes: VecDeque::new(),
                last_write: 0,
            });
        source.last_write = clock;
        if source.envelopes.len() >= self.per_source {
            source.envelopes.pop_front();
        }
        let tags = HashMap::from([("source_type".to_owned(), source_type.to_owned())]);
        source.envelopes.push_back((
            ts,
            Envelope {
                timestamp: ts.to_string(),
                source_id: source_id.to_owned(),
                instance_id: instance_id.to_owned(),
                tags,
                log: LogLine {
                    payload: base64::engine::general_purpose::STANDARD.encode(line.as_bytes()),
                    kind: if stderr { "ERR" } else { "OUT" }.to_owned(),
                },
            },
        ));
    }

    /// Envelopes of a source matching `q`, oldest first unless descending.
    pub fn read(&self, source_id: &str, q: &ReadQuery) -> Vec<Envelope> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(source) = inner.sources.get(source_id) else {
            return Vec::new();
        };
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        let matching = source.envelopes.iter().filter(|(ts, _)| {
            q.start_time.is_none_or(|s| *ts >= s) && q.end_time.is_none_or(|e| *ts < e)
        });
        if q.descending {
            matching.rev().take(limit).map(|(_, e)| e.clone()).collect()
        } else {
            matching.take(limit).map(|(_, e)| e.clone()).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_source_and_in_sources() {
        let cache = LogCache::new(3, 2);
        for i in 0..5 {
            cache.emit("a", "STG", "0", &format!("line {i}"), false);
        }
        let got = cache.read("a", &ReadQuery::default());
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0].log.payload,
            base64::engine::general_purpose::STANDARD.encode("line 2")
        );
        cache.emit("b", "STG", "0", "x", false);
        cache.emit("c", "STG", "0", "y", false);
        assert!(
            cache.read("a", &ReadQuery::default()).is_empty(),
            "least recently written source dropped"
        );
        assert_eq!(cache.read("c", &ReadQuery::default()).len(), 1);
    }

    #[test]
    fn start_time_is_inclusive_and_timestamps_increase() {
        let cache = LogCache::new(10, 10);
        cache.emit("a", "STG", "0", "one", false);
        cache.emit("a", "STG", "0", "two", true);
        let all = cache.read("a", &ReadQuery::default());
        let second: i64 = all[1].timestamp.parse().expect("ns");
        assert!(second > all[0].timestamp.parse::<i64>().expect("ns"));
        let q = ReadQuery {
            start_time: Some(second),
            ..Default::default()
        };
        let got = cache.read("a", &q);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].log.kind, "ERR");
    }
}
