//! Reading log-cache (`/api/v1/read/:app_guid`): staging output during a
//! push, `cfl logs --recent` (the newest lines, as the cf CLI asks for them:
//! `descending=true&limit=1000`, then reversed) and following (from just
//! after the server's newest line, until the app is deleted).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::client::{Client, ClientError};

/// One log line.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// Nanoseconds since the epoch.
    pub timestamp: u128,
    /// `STG`, `APP/PROC/WEB`, `API`, ...
    pub source_type: String,
    /// Instance index or id.
    pub instance: String,
    /// The text.
    pub text: String,
    /// ERR rather than OUT.
    pub stderr: bool,
}

impl LogLine {
    /// `[STG/0] OUT text`, as `cf logs` prints it.
    pub fn render(&self) -> String {
        let stream = if self.stderr { "ERR" } else { "OUT" };
        format!(
            "[{}/{}] {stream} {}",
            self.source_type, self.instance, self.text
        )
    }
}

fn parse(e: &Value) -> Option<LogLine> {
    let payload = e["log"]["payload"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    Some(LogLine {
        timestamp: e["timestamp"].as_str().and_then(|t| t.parse().ok())?,
        source_type: e["tags"]["source_type"].as_str().unwrap_or("").to_owned(),
        instance: e["instance_id"].as_str().unwrap_or("").to_owned(),
        text: String::from_utf8_lossy(&bytes).trim_end().to_owned(),
        stderr: e["log"]["type"] == "ERR",
    })
}

/// Lines the cf CLI asks for with `logs --recent`.
pub const RECENT_LINES: usize = 1000;

/// One log-cache read of an app's LOG envelopes, in the order the server
/// sent them.
fn read_raw(client: &mut Client, app_guid: &str, query: &str) -> Result<Vec<LogLine>, ClientError> {
    let base = client.config.log_cache_url.trim_end_matches('/').to_owned();
    let url = format!("{base}/api/v1/read/{app_guid}?envelope_types=LOG&{query}");
    let body = client.get(&url)?;
    Ok(body["envelopes"]["batch"]
        .as_array()
        .map(|b| b.iter().filter_map(parse).collect())
        .unwrap_or_default())
}

/// Log lines of an app from `start_ns` on (inclusive), oldest first (at
/// most 1000 per call).
pub fn read(
    client: &mut Client,
    app_guid: &str,
    start_ns: u128,
) -> Result<Vec<LogLine>, ClientError> {
    let mut lines = read_raw(
        client,
        app_guid,
        &format!("start_time={start_ns}&limit=1000"),
    )?;
    lines.sort_by_key(|l| l.timestamp);
    Ok(lines)
}

/// The newest `limit` lines, oldest first: log-cache read with
/// `descending=true&limit=N`, reversed, as the cf CLI does for `--recent`.
pub fn newest(
    client: &mut Client,
    app_guid: &str,
    limit: usize,
) -> Result<Vec<LogLine>, ClientError> {
    let mut lines = read_raw(client, app_guid, &format!("descending=true&limit={limit}"))?;
    lines.sort_by_key(|l| l.timestamp);
    Ok(lines)
}

/// Where to start reading to see only lines written from now on: just
/// after the server's newest line (no clock of ours involved).
pub fn next_start(client: &mut Client, app_guid: &str) -> Result<u128, ClientError> {
    Ok(newest(client, app_guid, 1)?
        .last()
        .map(|l| l.timestamp + 1)
        .unwrap_or(0))
}

/// Hands every line from `from_ns` on to `sink`; returns the next start.
pub fn poll_new<F>(
    client: &mut Client,
    app_guid: &str,
    from_ns: u128,
    mut sink: F,
) -> Result<u128, ClientError>
where
    F: FnMut(&LogLine),
{
    let mut next = from_ns;
    loop {
        let lines = read(client, app_guid, next)?;
        let full = lines.len() >= 1000;
        for line in &lines {
            sink(line);
            next = next.max(line.timestamp + 1);
        }
        // A full page may have more behind it.
        if !full {
            return Ok(next);
        }
    }
}

/// `cfl logs --recent`: the newest lines kept, oldest first.
pub fn recent(client: &mut Client, app_guid: &str) -> Result<(), ClientError> {
    for line in newest(client, app_guid, RECENT_LINES)? {
        println!("{}", line.render());
    }
    Ok(())
}

/// `cfl logs`: prints every new line until the app is deleted (returns
/// `Ok`) or ^C ([`ClientError::Interrupted`]). SIGINT gets a handler of its
/// own, so ^C ends following even where the shell started cfl with SIGINT
/// ignored (a background job of a script).
pub fn follow(client: &mut Client, app_guid: &str) -> Result<(), ClientError> {
    let interrupted = Arc::new(AtomicBool::new(false));
    // Without the handler, SIGINT keeps its inherited disposition.
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone());
    let mut next = next_start(client, app_guid)?;
    loop {
        let polled = poll_new(client, app_guid, next, |l| {
            println!("{}", l.render());
        });
        match polled {
            Ok(n) => next = n,
            // The log source is the app: gone means deleted.
            Err(ClientError::Api { status: 404, .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        std::io::Write::flush(&mut std::io::stdout()).ok();
        for _ in 0..5 {
            if interrupted.load(Ordering::Relaxed) {
                return Err(ClientError::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
