//! The stdout and stderr of Run and Attach, served on their own
//! connections (`.../attaches/:streamid/stdout|stderr`).
//!
//! Each output stream has a pump task between the backend's channel and the
//! client's connection. Until the client attaches, output is buffered (up to
//! `stream_buffer_bytes`, then dropped, so a process never blocks on a
//! client that does not listen); once attached, output flows with the
//! socket's back-pressure. When the process stream is finished (exit status
//! sent, client detached, server stopping) the pump writes what is left and
//! closes the connection; with nobody attached yet, it waits
//! `stream_linger` for a late connection.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{HttpLimits, State};
use crate::http1::{response_head, BoxIo, BufConn};
use crate::routes::{Params, Route};

/// Chunks the backend may send ahead of a slow client.
const CHANNEL_CHUNKS: usize = 32;
/// Most bytes joined into one socket write.
const COALESCE_BYTES: usize = 64 * 1024;

struct Entry {
    handle: String,
    process_id: String,
    stdout: mpsc::Sender<BoxIo>,
    stderr: mpsc::Sender<BoxIo>,
    /// The process stream is over: deliver what is left and close.
    done: CancellationToken,
    /// Stop the pumps at once (a failed Run, the server stopping).
    kill: CancellationToken,
}

/// The output streams of all process streams, by stream id.
pub(crate) struct Streams {
    limits: HttpLimits,
    shutdown: CancellationToken,
    next_id: AtomicU64,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

/// The backend's ends of a new pair of output streams.
pub(crate) struct Opened {
    pub(crate) stream_id: String,
    pub(crate) stdout: mpsc::Sender<Bytes>,
    pub(crate) stderr: mpsc::Sender<Bytes>,
}

impl Streams {
    pub(crate) fn new(limits: HttpLimits, shutdown: CancellationToken) -> Self {
        Self {
            limits,
            shutdown,
            next_id: AtomicU64::new(0),
            entries: Arc::default(),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Opens stdout and stderr for a process of `handle`, with their pumps.
    pub(crate) fn open(&self, tracker: &TaskTracker, handle: &str) -> Opened {
        let stream_id = (self.next_id.fetch_add(1, Ordering::Relaxed) + 1).to_string();
        let done = CancellationToken::new();
        let kill = self.shutdown.child_token();
        let spawn_pump = |name: &'static str| {
            let (data_sender, data) = mpsc::channel(CHANNEL_CHUNKS);
            let (writer_sender, writers) = mpsc::channel(2);
            let pump = Pump {
                name,
                data,
                writers,
                done: done.clone(),
                kill: kill.clone(),
                limits: self.limits.clone(),
            };
            tracker.spawn(pump.run());
            (data_sender, writer_sender)
        };
        let (stdout, stdout_writers) = spawn_pump("stdout");
        let (stderr, stderr_writers) = spawn_pump("stderr");
        let entry = Entry {
            handle: handle.to_owned(),
            process_id: String::new(),
            stdout: stdout_writers,
            stderr: stderr_writers,
            done,
            kill,
        };
        self.entries().insert(stream_id.clone(), entry);
        Opened {
            stream_id,
            stdout,
            stderr,
        }
    }

    /// Names the process once the backend started it.
    pub(crate) fn set_process_id(&self, stream_id: &str, process_id: &str) {
        if let Some(entry) = self.entries().get_mut(stream_id) {
            process_id.clone_into(&mut entry.process_id);
        }
    }

    /// Drops a stream whose process never started.
    pub(crate) fn discard(&self, stream_id: &str) {
        if let Some(entry) = self.entries().remove(stream_id) {
            entry.kill.cancel();
        }
    }

    /// The process stream is over: the pumps deliver what is left; the id
    /// stays known for `stream_linger` for late connections.
    pub(crate) fn finish(&self, tracker: &TaskTracker, stream_id: &str) {
        let Some(done) = self
            .entries()
            .get(stream_id)
            .map(|entry| entry.done.clone())
        else {
            return;
        };
        done.cancel();
        let (entries, linger, shutdown) = (
            Arc::clone(&self.entries),
            self.limits.stream_linger,
            self.shutdown.clone(),
        );
        let stream_id = stream_id.to_owned();
        tracker.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(linger) => {}
                () = shutdown.cancelled() => {}
            }
            entries
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .remove(&stream_id);
        });
    }

    fn writer_sender(&self, params: &Params, stdout: bool) -> Option<mpsc::Sender<BoxIo>> {
        let entries = self.entries();
        let entry = entries.get(&params.stream_id)?;
        let same_process = entry.process_id.is_empty() || entry.process_id == params.process_id;
        if entry.handle != params.handle || !same_process {
            return None;
        }
        Some(if stdout {
            entry.stdout.clone()
        } else {
            entry.stderr.clone()
        })
    }
}

/// Serves `GET .../attaches/:streamid/stdout|stderr`: answers 200 and hands
/// the connection to the stream's pump. An unknown stream (or one whose
/// pump ended) gets 200 and an immediate end, as from Garden.
pub(super) async fn serve_output(state: &State, mut conn: BufConn, route: Route, params: &Params) {
    let head = response_head(200, &[("Content-Type", "application/octet-stream")]);
    if conn.write_all(&head).await.is_err() {
        return;
    }
    let (mut io, _) = conn.into_parts();
    let delivered = match state.streams.writer_sender(params, route == Route::Stdout) {
        Some(sender) => match sender.send(io).await {
            Ok(()) => return,
            Err(mpsc::error::SendError(returned)) => {
                io = returned;
                false
            }
        },
        None => false,
    };
    if !delivered {
        tracing::debug!(
            stream_id = params.stream_id,
            "output connection for an unknown or ended stream"
        );
        let _ = io.shutdown().await;
    }
}

struct Pump {
    name: &'static str,
    data: mpsc::Receiver<Bytes>,
    writers: mpsc::Receiver<BoxIo>,
    done: CancellationToken,
    kill: CancellationToken,
    limits: HttpLimits,
}

/// Output waiting for a client.
#[derive(Default)]
struct Backlog {
    chunks: VecDeque<Bytes>,
    bytes: usize,
    dropped: usize,
}

impl Pump {
    async fn run(mut self) {
        let mut backlog = Backlog::default();
        let mut writer: Option<BoxIo> = None;
        let (mut eof, mut writers_open) = (false, true);
        loop {
            if self.done.is_cancelled() {
                while let Ok(chunk) = self.data.try_recv() {
                    self.deliver(&mut writer, &mut backlog, chunk).await;
                }
                break;
            }
            if eof && writer.is_some() {
                break;
            }
            tokio::select! {
                () = self.kill.cancelled() => return,
                () = self.done.cancelled() => {}
                new = self.writers.recv(), if writers_open => match new {
                    Some(new) => writer = self.attach(writer, new, &mut backlog).await,
                    None => writers_open = false,
                },
                chunk = self.data.recv(), if !eof => match chunk {
                    Some(chunk) => {
                        let chunk = self.coalesce(chunk);
                        self.deliver(&mut writer, &mut backlog, chunk).await;
                    }
                    None => eof = true,
                },
            }
        }
        if writer.is_none() && !backlog.chunks.is_empty() && writers_open {
            tokio::select! {
                new = self.writers.recv() => if let Some(new) = new {
                    writer = self.attach(None, new, &mut backlog).await;
                },
                () = tokio::time::sleep(self.limits.stream_linger) => {}
                () = self.kill.cancelled() => {}
            }
        }
        if backlog.dropped > 0 {
            tracing::warn!(
                stream = self.name,
                bytes = backlog.dropped,
                "output dropped: no client read it"
            );
        }
        if let Some(mut writer) = writer {
            let _ = writer.shutdown().await;
        }
    }

    /// Joins `first` with the chunks already waiting (up to 64 KiB), so a
    /// process writing many small pieces costs one socket write per batch.
    fn coalesce(&mut self, first: Bytes) -> Bytes {
        let Ok(second) = self.data.try_recv() else {
            return first;
        };
        let mut joined = BytesMut::with_capacity(first.len() + second.len());
        joined.extend_from_slice(&first);
        joined.extend_from_slice(&second);
        while joined.len() < COALESCE_BYTES {
            match self.data.try_recv() {
                Ok(chunk) => joined.extend_from_slice(&chunk),
                Err(_) => break,
            }
        }
        joined.freeze()
    }

    /// Writes to the client, or keeps the chunk while none is attached.
    async fn deliver(&self, writer: &mut Option<BoxIo>, backlog: &mut Backlog, chunk: Bytes) {
        if let Some(io) = writer {
            if self.write(io, &chunk).await {
                return;
            }
            *writer = None;
            return;
        }
        if backlog.bytes + chunk.len() > self.limits.stream_buffer_bytes {
            backlog.dropped += chunk.len();
            return;
        }
        backlog.bytes += chunk.len();
        backlog.chunks.push_back(chunk);
    }

    /// A client connected: it replaces any earlier one and gets the backlog.
    async fn attach(
        &self,
        old: Option<BoxIo>,
        mut new: BoxIo,
        backlog: &mut Backlog,
    ) -> Option<BoxIo> {
        if let Some(mut old) = old {
            let _ = old.shutdown().await;
        }
        while let Some(chunk) = backlog.chunks.pop_front() {
            backlog.bytes -= chunk.len();
            if !self.write(&mut new, &chunk).await {
                return None;
            }
        }
        Some(new)
    }

    async fn write(&self, io: &mut BoxIo, chunk: &[u8]) -> bool {
        match tokio::time::timeout(self.limits.stream_write_timeout, io.write_all(chunk)).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::debug!(stream = self.name, %error, "output client went away");
                false
            }
            Err(_) => {
                tracing::warn!(stream = self.name, "output client stalled: dropping it");
                false
            }
        }
    }
}
