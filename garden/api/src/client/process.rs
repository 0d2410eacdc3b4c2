//! A process on the server, as Run and Attach return it: stdin, the output
//! streams, signals, window size and the exit status.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf, WriteHalf};
use tokio::sync::{watch, Mutex};

use super::request::{check_status, Body};
use super::{Client, ClientError};
use crate::http1::{BodyReader, BoxIo, JsonReader, Prefixed};
use crate::routes::{Params, Route};
use crate::types::{ProcessPayload, Signal, Source, TtySpec};

const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Which output streams to attach (Garden's client attaches a stream only
/// when the caller wants it; the server drops output nobody attached to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputStreams {
    /// Attach stdout.
    pub stdout: bool,
    /// Attach stderr.
    pub stderr: bool,
}

impl OutputStreams {
    /// Both stdout and stderr.
    pub const BOTH: Self = Self {
        stdout: true,
        stderr: true,
    };
    /// Neither.
    pub const NONE: Self = Self {
        stdout: false,
        stderr: false,
    };
}

/// A process's stdout or stderr: read it to its end, which comes after the
/// exit status (or when the client detaches).
pub struct OutputStream(Prefixed<BoxIo>);

impl AsyncRead for OutputStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

struct WriteSide {
    writer: WriteHalf<BoxIo>,
    /// The start of a UTF-8 character split across writes.
    partial: Vec<u8>,
}

/// Writes to a process's stdin (and sends its control messages).
///
/// Stdin travels as JSON strings, so it is text: a character split across
/// writes is kept whole, invalid UTF-8 becomes U+FFFD (as with Go's client).
#[derive(Clone)]
pub struct StdinWriter {
    process_id: String,
    side: Arc<Mutex<WriteSide>>,
}

impl StdinWriter {
    async fn send(
        &self,
        side: &mut WriteSide,
        payload: &ProcessPayload,
    ) -> Result<(), ClientError> {
        let mut line = serde_json::to_vec(payload)
            .map_err(|error| ClientError::Protocol(error.to_string()))?;
        line.push(b'\n');
        side.writer
            .write_all(&line)
            .await
            .map_err(|error| ClientError::Http(error.into()))
    }

    fn payload(&self) -> ProcessPayload {
        ProcessPayload {
            process_id: self.process_id.clone(),
            ..ProcessPayload::default()
        }
    }

    /// Sends `data` to stdin.
    pub async fn write(&self, data: &[u8]) -> Result<(), ClientError> {
        let mut side = self.side.lock().await;
        side.partial.extend_from_slice(data);
        let text = take_text(&mut side.partial, false);
        if text.is_empty() {
            return Ok(());
        }
        let payload = ProcessPayload {
            source: Some(Source::Stdin),
            data: Some(text),
            ..self.payload()
        };
        self.send(&mut side, &payload).await
    }

    /// Closes stdin (the process reads EOF).
    pub async fn close(&self) -> Result<(), ClientError> {
        let mut side = self.side.lock().await;
        let rest = take_text(&mut side.partial, true);
        if !rest.is_empty() {
            let payload = ProcessPayload {
                source: Some(Source::Stdin),
                data: Some(rest),
                ..self.payload()
            };
            self.send(&mut side, &payload).await?;
        }
        let payload = ProcessPayload {
            source: Some(Source::Stdin),
            ..self.payload()
        };
        self.send(&mut side, &payload).await
    }

    async fn control(&self, payload: ProcessPayload) -> Result<(), ClientError> {
        let mut side = self.side.lock().await;
        self.send(&mut side, &payload).await
    }
}

/// Takes the complete UTF-8 text from `bytes` (all of it when `flush`),
/// leaving an incomplete trailing character; invalid bytes become U+FFFD.
fn take_text(bytes: &mut Vec<u8>, flush: bool) -> String {
    let keep = if flush { 0 } else { incomplete_tail(bytes) };
    let tail = bytes.split_off(bytes.len() - keep);
    let text = String::from_utf8_lossy(bytes).into_owned();
    *bytes = tail;
    text
}

/// The length of a character's start at the end of `bytes` that lacks its
/// continuation bytes.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xc0 == 0x80 {
            continue;
        }
        let needed = match byte {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return 0,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

/// How a process stream ended.
#[derive(Clone, Debug)]
enum Outcome {
    Exited(i32),
    Failed(String),
    Disconnected(String),
}

/// A process running on the server.
pub struct RemoteProcess {
    id: String,
    stdin: StdinWriter,
    stdout: Option<OutputStream>,
    stderr: Option<OutputStream>,
    outcome: watch::Receiver<Option<Outcome>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for RemoteProcess {
    fn drop(&mut self) {
        // Detach: the process goes on on the server.
        self.reader.abort();
    }
}

impl RemoteProcess {
    /// The process id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A writer for stdin (cloneable).
    pub fn stdin(&self) -> StdinWriter {
        self.stdin.clone()
    }

    /// Takes the stdout stream (if attached and not taken yet).
    pub fn take_stdout(&mut self) -> Option<OutputStream> {
        self.stdout.take()
    }

    /// Takes the stderr stream (if attached and not taken yet).
    pub fn take_stderr(&mut self) -> Option<OutputStream> {
        self.stderr.take()
    }

    /// Sends SIGTERM or SIGKILL.
    pub async fn signal(&self, signal: Signal) -> Result<(), ClientError> {
        self.stdin
            .control(ProcessPayload {
                signal: Some(signal),
                ..self.stdin.payload()
            })
            .await
    }

    /// Resizes the process's terminal.
    pub async fn set_tty(&self, tty: TtySpec) -> Result<(), ClientError> {
        self.stdin
            .control(ProcessPayload {
                tty: Some(tty),
                ..self.stdin.payload()
            })
            .await
    }

    /// Waits for the exit status. Output may still be arriving on the
    /// output streams; read them to their end for all of it.
    pub async fn wait(&self) -> Result<i32, ClientError> {
        let mut outcome = self.outcome.clone();
        let ended = outcome
            .wait_for(Option::is_some)
            .await
            .map(|ended| ended.clone());
        match ended {
            Ok(Some(Outcome::Exited(status))) => Ok(status),
            Ok(Some(Outcome::Failed(message))) => Err(ClientError::Process(message)),
            Ok(Some(Outcome::Disconnected(reason))) => Err(ClientError::Disconnected(reason)),
            Ok(None) | Err(_) => Err(ClientError::Disconnected(
                "the stream reader stopped".into(),
            )),
        }
    }
}

/// Sends Run or Attach, reads the first message, opens the output streams.
pub(super) async fn open(
    client: &Client,
    route: Route,
    params: &Params,
    body: Body,
    outputs: OutputStreams,
) -> Result<RemoteProcess, ClientError> {
    let (head, mut conn) = client.start(route, params, &[], body, true).await?;
    if !(200..300).contains(&head.status) {
        let bytes = BodyReader::new(head.framing()?)
            .read_to_end(&mut conn, MAX_MESSAGE_BYTES)
            .await?;
        check_status(head.status, &bytes)?;
    }
    let (io, buffered) = conn.into_parts();
    let (reader, writer) = tokio::io::split(io);
    let mut messages = JsonReader::new(reader, buffered, MAX_MESSAGE_BYTES);
    let hello: ProcessPayload = match messages.next().await {
        Ok(Some(Ok(hello))) => hello,
        Ok(Some(Err(error))) => {
            return Err(ClientError::Protocol(format!(
                "first process message: {error}"
            )))
        }
        Ok(None) => {
            return Err(ClientError::Protocol(
                "process stream closed before its first message".into(),
            ))
        }
        Err(error) => return Err(ClientError::Protocol(error.to_string())),
    };
    let output_params = |process_id: &str| Params {
        handle: params.handle.clone(),
        process_id: process_id.to_owned(),
        stream_id: hello.stream_id.clone(),
        key: String::new(),
    };
    let stdout = if outputs.stdout {
        Some(open_output(client, Route::Stdout, &output_params(&hello.process_id)).await?)
    } else {
        None
    };
    let stderr = if outputs.stderr {
        Some(open_output(client, Route::Stderr, &output_params(&hello.process_id)).await?)
    } else {
        None
    };
    let (report, outcome) = watch::channel(None);
    let reader = tokio::spawn(async move {
        let ended = loop {
            match messages.next::<ProcessPayload>().await {
                Ok(Some(Ok(payload))) => {
                    if let Some(error) = payload.error {
                        break Outcome::Failed(error);
                    }
                    if let Some(status) = payload.exit_status {
                        break Outcome::Exited(status);
                    }
                }
                Ok(Some(Err(_))) => {}
                Ok(None) => break Outcome::Disconnected("the server closed the stream".into()),
                Err(error) => break Outcome::Disconnected(error.to_string()),
            }
        };
        let _ = report.send(Some(ended));
    });
    let stdin = StdinWriter {
        process_id: hello.process_id.clone(),
        side: Arc::new(Mutex::new(WriteSide {
            writer,
            partial: Vec::new(),
        })),
    };
    Ok(RemoteProcess {
        id: hello.process_id,
        stdin,
        stdout,
        stderr,
        outcome,
        reader,
    })
}

async fn open_output(
    client: &Client,
    route: Route,
    params: &Params,
) -> Result<OutputStream, ClientError> {
    let (head, mut conn) = client.start(route, params, &[], Body::Empty, true).await?;
    if !(200..300).contains(&head.status) {
        let bytes = BodyReader::new(head.framing()?)
            .read_to_end(&mut conn, MAX_MESSAGE_BYTES)
            .await?;
        check_status(head.status, &bytes)?;
    }
    let (io, buffered) = conn.into_parts();
    Ok(OutputStream(Prefixed::new(buffered, io)))
}

#[cfg(test)]
mod tests {
    use super::take_text;

    #[test]
    fn text_keeps_split_characters_whole() {
        let mut bytes = "añ".as_bytes()[..2].to_vec();
        assert_eq!(take_text(&mut bytes, false), "a");
        bytes.extend_from_slice(&"ñ".as_bytes()[1..]);
        assert_eq!(take_text(&mut bytes, false), "ñ");
        assert!(bytes.is_empty());
        let mut invalid = vec![b'x', 0xff, b'y', 0xc3];
        assert_eq!(take_text(&mut invalid, false), "x\u{fffd}y");
        assert_eq!(take_text(&mut invalid, true), "\u{fffd}");
    }
}
