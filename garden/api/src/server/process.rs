//! Run and Attach: Garden's answer-then-hijack stream protocol.
//!
//! ```text
//! client                                   server
//! POST /containers/h/processes (spec) ──►  backend.run
//!                                     ◄──  201 + {"process_id","stream_id"}
//! GET .../attaches/<sid>/stdout       ──►  200, then raw output   (streams.rs)
//! {"source":0,"data":"..."}           ──►  stdin
//! {"source":0}                        ──►  stdin EOF
//! {"signal":0|1} / {"tty":{...}}      ──►  process.signal / set_tty
//!                                     ◄──  {"process_id","exit_status":N} or {"error"}
//! ```
//! A client that closes its side (or sends something that is not JSON)
//! detaches: the process goes on and can be attached again.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::sync::mpsc;

use super::connection::{HandlerError, Request};
use super::grace::Hold;
use super::State;
use crate::backend::{Process, ProcessIo};
use crate::http1::{response_head, BoxIo, BufConn, JsonReader};
use crate::routes::Route;
use crate::types::{ProcessPayload, ProcessSpec};

/// Stdin the client may send ahead of the process reading it.
const STDIN_BACKLOG_BYTES: usize = 1024 * 1024;

/// A process started or attached, before its stream begins.
pub(super) struct StartedProcess {
    process: Arc<dyn Process>,
    process_id: String,
    stream_id: String,
    status: u16,
    stdin: mpsc::Sender<Bytes>,
    _hold: Hold,
}

/// Runs or attaches to the process; errors are answered as ordinary errors.
pub(super) async fn start(req: &mut Request<'_>) -> Result<StartedProcess, HandlerError> {
    let state = req.state;
    let handle = req.params.handle.clone();
    let hold = state.reaper.hold(&handle);
    let spec = if req.route == Route::Run {
        Some(req.json::<ProcessSpec>().await?)
    } else {
        while req.body_chunk().await?.is_some() {}
        None
    };
    let (stdin, stdin_receiver) = mpsc::channel(16);
    let opened = state.streams.open(&state.tracker, &handle);
    let io = ProcessIo {
        stdin: Some(stdin_receiver),
        stdout: Some(opened.stdout),
        stderr: Some(opened.stderr),
    };
    let result = match spec {
        Some(spec) => {
            tracing::debug!(
                path = spec.path,
                id = spec.id,
                user = spec.user,
                tty = spec.tty.is_some(),
                "running"
            );
            state.backend.run(&handle, spec, io).await
        }
        None => {
            state
                .backend
                .attach(&handle, &req.params.process_id, io)
                .await
        }
    };
    let process: Arc<dyn Process> = match result {
        Ok(process) => Arc::from(process),
        Err(error) => {
            state.streams.discard(&opened.stream_id);
            return Err(error.into());
        }
    };
    let process_id = process.id();
    state.streams.set_process_id(&opened.stream_id, &process_id);
    tracing::info!(
        process_id,
        stream_id = opened.stream_id,
        "{}",
        if req.route == Route::Run {
            "spawned"
        } else {
            "attached"
        }
    );
    let status = if req.route == Route::Run { 201 } else { 200 };
    Ok(StartedProcess {
        process,
        process_id,
        stream_id: opened.stream_id,
        status,
        stdin,
        _hold: hold,
    })
}

/// Answers 201/200, then speaks the stream protocol until the process
/// exits, the client detaches or the server stops.
pub(super) async fn stream(state: &State, mut conn: BufConn, started: StartedProcess) {
    let _gauge = state.metrics.process_stream();
    let hello = ProcessPayload {
        process_id: started.process_id.clone(),
        stream_id: started.stream_id.clone(),
        ..ProcessPayload::default()
    };
    let head = response_head(started.status, &[("Content-Type", "application/json")]);
    if conn
        .write_all(&[head, payload_line(&hello)].concat())
        .await
        .is_err()
    {
        state.streams.finish(&state.tracker, &started.stream_id);
        return;
    }
    let (io, buffered) = conn.into_parts();
    let (reader, mut writer) = tokio::io::split(io);
    let mut input = JsonReader::new(reader, buffered, state.limits.max_stream_message_bytes);
    let outcome = tokio::select! {
        result = started.process.wait() => Some(result),
        () = forward_input(&mut input, &*started.process, started.stdin) => None,
        () = state.shutdown.cancelled() => None,
    };
    let process_id = started.process_id;
    match outcome {
        Some(result) => {
            let last = match result {
                Ok(status) => {
                    tracing::info!(process_id, status, "exited");
                    ProcessPayload {
                        process_id,
                        exit_status: Some(status),
                        ..ProcessPayload::default()
                    }
                }
                Err(error) => {
                    tracing::warn!(process_id, %error, "waiting for the process failed");
                    ProcessPayload {
                        process_id,
                        error: Some(error.message),
                        ..ProcessPayload::default()
                    }
                }
            };
            let _ = write_with_timeout(state, &mut writer, &payload_line(&last)).await;
        }
        None => tracing::info!(process_id, "detached"),
    }
    state.streams.finish(&state.tracker, &started.stream_id);
    let _ = tokio::time::timeout(state.limits.stream_write_timeout, writer.shutdown()).await;
}

fn payload_line(payload: &ProcessPayload) -> Vec<u8> {
    let mut line = serde_json::to_vec(payload).unwrap_or_default();
    line.push(b'\n');
    line
}

async fn write_with_timeout<W: AsyncWrite + Unpin>(
    state: &State,
    writer: &mut W,
    data: &[u8],
) -> bool {
    matches!(
        tokio::time::timeout(state.limits.stream_write_timeout, writer.write_all(data)).await,
        Ok(Ok(()))
    )
}

/// Stdin waiting for the process, so that signals and window sizes are
/// still handled while the process does not read.
#[derive(Default)]
struct StdinBacklog {
    chunks: VecDeque<Bytes>,
    bytes: usize,
    eof: bool,
}

/// Applies the client's messages until the client goes away.
async fn forward_input(
    input: &mut JsonReader<ReadHalf<BoxIo>>,
    process: &dyn Process,
    stdin: mpsc::Sender<Bytes>,
) {
    let mut stdin = Some(stdin);
    let mut backlog = StdinBacklog::default();
    loop {
        if backlog.eof && backlog.chunks.is_empty() {
            stdin = None;
        }
        let room = backlog.bytes < STDIN_BACKLOG_BYTES;
        tokio::select! {
            message = input.next::<ProcessPayload>(), if room => match message {
                Ok(Some(Ok(payload))) => apply(payload, process, &mut backlog, stdin.is_some()).await,
                Ok(Some(Err(error))) => tracing::warn!(%error, "ignoring a message that is not a process payload"),
                Ok(None) => return,
                Err(error) => {
                    tracing::debug!(%error, "process stream input failed");
                    return;
                }
            },
            permit = reserve(stdin.as_ref()), if !backlog.chunks.is_empty() => match permit {
                Some(permit) => {
                    if let Some(chunk) = backlog.chunks.pop_front() {
                        backlog.bytes -= chunk.len();
                        permit.send(chunk);
                    }
                }
                None => {
                    // The backend no longer reads stdin: drop what waits.
                    backlog.chunks.clear();
                    backlog.bytes = 0;
                    backlog.eof = true;
                }
            },
        }
    }
}

async fn reserve(sender: Option<&mpsc::Sender<Bytes>>) -> Option<mpsc::Permit<'_, Bytes>> {
    sender?.reserve().await.ok()
}

async fn apply(
    payload: ProcessPayload,
    process: &dyn Process,
    backlog: &mut StdinBacklog,
    stdin_open: bool,
) {
    if let Some(tty) = payload.tty {
        if let Err(error) = process.set_tty(tty).await {
            tracing::warn!(%error, "resizing the terminal failed");
        }
    } else if payload.source.is_some() {
        match payload.data {
            Some(data) if stdin_open && !backlog.eof && !data.is_empty() => {
                backlog.bytes += data.len();
                backlog.chunks.push_back(Bytes::from(data));
            }
            Some(_) => {}
            None => backlog.eof = true,
        }
    } else if let Some(signal) = payload.signal {
        tracing::info!(?signal, "signalling");
        if let Err(error) = process.signal(signal).await {
            tracing::warn!(?signal, %error, "signalling failed");
        }
    } else {
        tracing::warn!("ignoring a process payload with nothing to do");
    }
}
