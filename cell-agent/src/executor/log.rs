//! Container output as log lines: split on newlines (at most 61,440 bytes a
//! line), rate-limited per container, handed to a [`LogSink`] (the rep
//! forwards them to the controller's log store).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::container::LogConfig;

/// Longest line; longer output is cut into lines of this size (Diego's limit).
pub const MAX_LINE_BYTES: usize = 61_440;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output (and the executor's own progress messages).
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The app or task guid.
    pub guid: String,
    /// `APP/PROC/WEB`, `STG`, `HEALTH`, ...
    pub source_type: String,
    /// The instance index.
    pub source_instance: String,
    /// stdout or stderr.
    pub stream: LogStream,
    /// The text, without its newline.
    pub message: String,
    /// When the executor read it.
    pub timestamp: SystemTime,
}

/// Where log lines go. Must not block: a slow consumer drops lines.
pub trait LogSink: Send + Sync + 'static {
    /// Takes one line.
    fn emit(&self, line: LogLine);
}

/// A sink into a bounded channel; lines that do not fit are dropped and
/// counted.
pub struct ChannelLogSink {
    sender: mpsc::Sender<LogLine>,
    dropped: AtomicU64,
    accepted: AtomicU64,
}

impl ChannelLogSink {
    /// A sink and the receiving end of its channel of `capacity` lines.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<LogLine>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let sink = Self {
            sender,
            dropped: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        };
        (sink, receiver)
    }

    /// Lines dropped because the channel was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Lines taken into the channel so far: a consumer that has handled
    /// this many has seen every line emitted before the call.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl LogSink for ChannelLogSink {
    fn emit(&self, line: LogLine) {
        if self.sender.try_send(line).is_ok() {
            self.accepted.fetch_add(1, Ordering::SeqCst);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A sink that drops everything.
pub struct NullLogSink;

impl LogSink for NullLogSink {
    fn emit(&self, _line: LogLine) {}
}

/// At most `per_second` lines in each one-second window.
struct RateLimit {
    per_second: u32,
    window_start: Instant,
    in_window: u32,
    reported: bool,
}

enum Verdict {
    Pass,
    /// The first line over the limit in this window: say so once.
    Exceeded,
    Drop,
}

impl RateLimit {
    fn check(&mut self, now: Instant) -> Verdict {
        if self.per_second == 0 {
            return Verdict::Pass;
        }
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.in_window = 0;
            self.reported = false;
        }
        if self.in_window < self.per_second {
            self.in_window += 1;
            Verdict::Pass
        } else if !self.reported {
            self.reported = true;
            Verdict::Exceeded
        } else {
            Verdict::Drop
        }
    }
}

/// The log of one container: its sink, names and rate limit. Cheap to
/// clone; clones share the limit.
#[derive(Clone)]
pub(crate) struct ContainerLog {
    sink: Arc<dyn LogSink>,
    config: LogConfig,
    limit: Arc<Mutex<RateLimit>>,
}

impl ContainerLog {
    pub(crate) fn new(sink: Arc<dyn LogSink>, config: LogConfig, per_second: u32) -> Self {
        Self {
            sink,
            config,
            limit: Arc::new(Mutex::new(RateLimit {
                per_second,
                window_start: Instant::now(),
                in_window: 0,
                reported: false,
            })),
        }
    }

    /// The source name a step uses: its own, else the container's.
    pub(crate) fn source<'a>(&'a self, step_source: &'a str) -> &'a str {
        if step_source.is_empty() {
            &self.config.source_name
        } else {
            step_source
        }
    }

    /// Emits one line, within the rate limit.
    pub(crate) fn line(&self, source: &str, stream: LogStream, message: String) {
        let verdict = match self.limit.lock() {
            Ok(mut limit) => limit.check(Instant::now()),
            Err(_) => Verdict::Pass,
        };
        let message = match verdict {
            Verdict::Pass => message,
            Verdict::Exceeded => {
                let per_second = self.limit.lock().map(|l| l.per_second).unwrap_or(0);
                format!(
                    "app instance exceeded log rate limit ({per_second} log-lines/sec) set by platform operator"
                )
            }
            Verdict::Drop => return,
        };
        self.sink.emit(LogLine {
            guid: self.config.guid.clone(),
            source_type: self.source(source).to_owned(),
            source_instance: self.config.source_instance.clone(),
            stream,
            message,
            timestamp: SystemTime::now(),
        });
    }

    /// Reads `output` to its end, one log line per line.
    pub(crate) async fn pump(
        &self,
        source: &str,
        stream: LogStream,
        mut output: impl AsyncRead + Unpin,
    ) {
        let mut splitter = LineSplitter::default();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match output.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for line in splitter.push(&buf[..n]) {
                        self.line(source, stream, line);
                    }
                }
            }
        }
        if let Some(line) = splitter.finish() {
            self.line(source, stream, line);
        }
    }
}

/// Cuts a byte stream into lines of at most [`MAX_LINE_BYTES`] bytes.
#[derive(Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// The lines completed by `bytes`.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                lines.push(take_line(&mut self.pending));
                continue;
            }
            self.pending.push(byte);
            if self.pending.len() >= MAX_LINE_BYTES {
                lines.push(take_line(&mut self.pending));
            }
        }
        lines
    }

    /// What is left after the stream ended, if anything.
    pub(crate) fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| take_line(&mut self.pending))
    }
}

fn take_line(pending: &mut Vec<u8>) -> String {
    if pending.last() == Some(&b'\r') {
        pending.pop();
    }
    let line = String::from_utf8_lossy(pending).into_owned();
    pending.clear();
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_on_newlines_and_at_the_limit() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"one\ntw"), vec!["one"]);
        assert_eq!(s.push(b"o\r\n\nthree"), vec!["two", ""]);
        assert_eq!(s.finish().as_deref(), Some("three"));
        assert_eq!(s.finish(), None);
        let long = vec![b'x'; MAX_LINE_BYTES * 2 + 5];
        let lines = s.push(&long);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == MAX_LINE_BYTES));
        assert_eq!(s.finish().map(|l| l.len()), Some(5));
    }

    #[tokio::test]
    async fn rate_limit_drops_and_says_so_once() {
        let (sink, mut lines) = ChannelLogSink::new(100);
        let log = ContainerLog::new(
            Arc::new(sink),
            LogConfig {
                guid: "app".into(),
                source_name: "APP/PROC/WEB".into(),
                source_instance: "0".into(),
            },
            3,
        );
        let text = (0..10).map(|i| format!("line {i}\n")).collect::<String>();
        log.pump("", LogStream::Stdout, text.as_bytes()).await;
        let mut got = Vec::new();
        while let Ok(line) = lines.try_recv() {
            assert_eq!(line.source_type, "APP/PROC/WEB");
            assert_eq!(line.source_instance, "0");
            got.push(line.message);
        }
        assert_eq!(
            got,
            [
                "line 0",
                "line 1",
                "line 2",
                "app instance exceeded log rate limit (3 log-lines/sec) set by platform operator"
            ]
        );
    }
}
