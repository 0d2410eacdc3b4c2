//! Reading log-cache (`/api/v1/read/:app_guid`): staging output during a
//! push, `cfl logs --recent` and following.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Now in nanoseconds since the epoch.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
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

/// Log lines of an app from `start_ns` on (inclusive), oldest first.
pub fn read(
    client: &mut Client,
    app_guid: &str,
    start_ns: u128,
) -> Result<Vec<LogLine>, ClientError> {
    let base = client.config.log_cache_url.trim_end_matches('/').to_owned();
    let url = format!(
        "{base}/api/v1/read/{app_guid}?start_time={start_ns}&envelope_types=LOG&limit=1000"
    );
    let body = client.get(&url)?;
    let mut lines: Vec<LogLine> = body["envelopes"]["batch"]
        .as_array()
        .map(|b| b.iter().filter_map(parse).collect())
        .unwrap_or_default();
    lines.sort_by_key(|l| l.timestamp);
    Ok(lines)
}

/// Polls for new lines, handing each to `sink`, until `done` says stop.
/// Returns the next start time.
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
    for line in read(client, app_guid, from_ns)? {
        sink(&line);
        next = next.max(line.timestamp + 1);
    }
    Ok(next)
}

/// `cfl logs`: the recent lines, or (follow) every new line until killed.
pub fn show(client: &mut Client, app_guid: &str, follow: bool) -> Result<(), ClientError> {
    let mut next = if follow { now_ns() } else { 0 };
    if !follow {
        for line in read(client, app_guid, 0)? {
            println!("{}", line.render());
        }
        return Ok(());
    }
    loop {
        next = poll_new(client, app_guid, next, |l| println!("{}", l.render()))?;
        std::thread::sleep(Duration::from_millis(500));
    }
}
