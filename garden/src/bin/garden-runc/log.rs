//! runc-style logging: `--log FILE` with `--log-format text|json`. Shims read
//! the last JSON error line from that file to explain a failure.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use super::cli::Global;

static LOG_FILE: Mutex<Option<(PathBuf, bool)>> = Mutex::new(None);

pub struct Guard;

pub fn init(g: &Global) -> Guard {
    let level = if g.debug { "debug" } else { "warn" };
    let filter = EnvFilter::try_from_env("GARDEN_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let json = g.log_format == "json";
    if let Some(path) = &g.log {
        if let Ok(mut slot) = LOG_FILE.lock() {
            *slot = Some((path.clone(), json));
        }
        if let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let b = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(Mutex::new(file))
                .with_ansi(false);
            if json {
                b.json().flatten_event(true).init();
            } else {
                b.init();
            }
            return Guard;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Guard
}

/// Reports a failed command: always on stderr, and in the log file the way
/// runc does (`{"level":"error","msg":...,"time":...}`).
pub fn error(e: &anyhow::Error) {
    let msg = message(e);
    eprintln!("garden-runc: {msg}");
    let Ok(slot) = LOG_FILE.lock() else { return };
    let Some((path, json)) = slot.as_ref() else {
        return;
    };
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let line = if *json {
        serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
    } else {
        format!("time=\"{time}\" level=error msg=\"{msg}\"")
    };
    let _ = writeln!(f, "{line}");
}

/// The error and its causes, `: `-separated, leaving out a cause whose text
/// the message already carries (our error types embed their source).
fn message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(io).context("reading /x: no such file");
        assert_eq!(message(&e), "reading /x: no such file");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(io).context("reading /x");
        assert_eq!(message(&e), "reading /x: no such file");
    }
}
