//! Garden processes, driven from one thread of their own.
//!
//! `garden_api::client::RemoteProcess` is `Send` but not `Sync` (its
//! streams box a `dyn Io` without `Sync`), so a future that awaits its
//! `wait` or `signal` cannot move between the threads of a multi-threaded
//! runtime. This module keeps every process on a current-thread runtime
//! with a `LocalSet` ("garden-processes"): Run steps and health checks
//! send it commands and get back the exit status, with the output already
//! in the container's log (or captured, for health checks).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use garden_api::client::{Client, ClientError, OutputStream, OutputStreams, RemoteProcess};
use garden_api::types::{ProcessSpec, Signal};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use super::log::{ContainerLog, LogStream};

/// How long output may keep flowing after the process exited (children
/// that inherited its stdout can hold the stream open).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// What happens to a process's output.
pub(crate) enum Output {
    /// Dropped by garden (not attached).
    Discard,
    /// Into the container's log under `source`.
    Log {
        /// The container's log.
        log: ContainerLog,
        /// The source name of the lines.
        source: String,
    },
    /// Kept (stdout then stderr, at most `max` bytes each) for the caller.
    Capture {
        /// Bytes kept of each stream.
        max: u64,
    },
}

/// How a process ended.
pub(crate) struct Finished {
    /// Its exit status, or why it could not be followed.
    pub(crate) status: Result<i32, ClientError>,
    /// Captured output (`Output::Capture`).
    pub(crate) output: String,
}

/// A new process, or one that already runs.
enum Open {
    Run(Box<ProcessSpec>),
    Attach(String),
}

struct Start {
    garden: Client,
    handle: String,
    open: Open,
    output: Output,
    reply: oneshot::Sender<Result<Started, ClientError>>,
}

enum Command {
    Start(Box<Start>),
    Signal {
        key: u64,
        signal: Signal,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
}

struct Started {
    key: u64,
    id: String,
    done: oneshot::Receiver<Finished>,
}

/// The handle to the process thread. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Processes {
    commands: mpsc::UnboundedSender<Command>,
}

/// A running process.
pub(crate) struct Running {
    key: u64,
    id: String,
    done: Option<oneshot::Receiver<Finished>>,
    commands: mpsc::UnboundedSender<Command>,
}

fn gone() -> ClientError {
    ClientError::Disconnected("the garden process thread stopped".into())
}

impl Processes {
    /// Starts the thread; it ends when the last handle is dropped.
    pub(crate) fn start() -> std::io::Result<Self> {
        let (commands, receiver) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("garden-processes".into())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, serve(receiver));
            })?;
        Ok(Self { commands })
    }

    /// Runs `spec` in container `handle`.
    pub(crate) async fn run(
        &self,
        garden: &Client,
        handle: &str,
        spec: ProcessSpec,
        output: Output,
    ) -> Result<Running, ClientError> {
        self.open(garden, handle, Open::Run(Box::new(spec)), output)
            .await
    }

    /// Follows process `id` that already runs in container `handle`.
    pub(crate) async fn attach(
        &self,
        garden: &Client,
        handle: &str,
        id: &str,
        output: Output,
    ) -> Result<Running, ClientError> {
        self.open(garden, handle, Open::Attach(id.to_owned()), output)
            .await
    }

    async fn open(
        &self,
        garden: &Client,
        handle: &str,
        open: Open,
        output: Output,
    ) -> Result<Running, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Start(Box::new(Start {
                garden: garden.clone(),
                handle: handle.to_owned(),
                open,
                output,
                reply,
            })))
            .map_err(|_| gone())?;
        let started = answer.await.map_err(|_| gone())??;
        Ok(Running {
            key: started.key,
            id: started.id,
            done: Some(started.done),
            commands: self.commands.clone(),
        })
    }
}

impl Running {
    /// Garden's process id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Sends a signal (nothing happens once the process ended).
    pub(crate) async fn signal(&self, signal: Signal) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Signal {
                key: self.key,
                signal,
                reply,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Waits for the end (again: the same answer is not kept, a second
    /// wait says the process is gone).
    pub(crate) async fn wait(&mut self) -> Finished {
        let lost = || Finished {
            status: Err(gone()),
            output: String::new(),
        };
        match self.done.as_mut() {
            Some(done) => {
                let finished = done.await.unwrap_or_else(|_| lost());
                self.done = None;
                finished
            }
            None => lost(),
        }
    }
}

type Table = Rc<RefCell<HashMap<u64, Rc<RemoteProcess>>>>;

async fn serve(mut commands: mpsc::UnboundedReceiver<Command>) {
    let table: Table = Rc::default();
    let mut next_key = 0u64;
    while let Some(command) = commands.recv().await {
        match command {
            Command::Start(request) => {
                next_key += 1;
                let key = next_key;
                let table = table.clone();
                tokio::task::spawn_local(async move {
                    start(*request, key, table).await;
                });
            }
            Command::Signal { key, signal, reply } => {
                let process = table.borrow().get(&key).cloned();
                tokio::task::spawn_local(async move {
                    let sent = match process {
                        Some(p) => p.signal(signal).await,
                        None => Ok(()),
                    };
                    let _ = reply.send(sent);
                });
            }
        }
    }
}

async fn start(request: Start, key: u64, table: Table) {
    let Start {
        garden,
        handle,
        open,
        output,
        reply,
    } = request;
    let streams = match output {
        Output::Discard => OutputStreams::NONE,
        _ => OutputStreams::BOTH,
    };
    let opened = match open {
        Open::Run(spec) => garden.run(&handle, &spec, streams).await,
        Open::Attach(id) => garden.attach(&handle, &id, streams).await,
    };
    let mut process = match opened {
        Ok(p) => p,
        Err(e) => {
            let _ = reply.send(Err(e));
            return;
        }
    };
    let readers = (process.take_stdout(), process.take_stderr());
    let process = Rc::new(process);
    table.borrow_mut().insert(key, process.clone());
    let (finish, done) = oneshot::channel();
    let _ = reply.send(Ok(Started {
        key,
        id: process.id().to_owned(),
        done,
    }));
    let collect = collect_output(readers, output);
    tokio::pin!(collect);
    let mut collected = None;
    let status = tokio::select! {
        status = process.wait() => status,
        text = &mut collect => {
            collected = Some(text);
            process.wait().await
        }
    };
    let captured = match collected {
        Some(text) => text,
        None => tokio::time::timeout(OUTPUT_DRAIN, &mut collect)
            .await
            .unwrap_or_default(),
    };
    table.borrow_mut().remove(&key);
    let _ = finish.send(Finished {
        status,
        output: captured,
    });
}

/// Reads both streams to their end: into the log, or kept.
async fn collect_output(
    (stdout, stderr): (Option<OutputStream>, Option<OutputStream>),
    output: Output,
) -> String {
    match output {
        Output::Discard => String::new(),
        Output::Log { log, source } => {
            let out = async {
                if let Some(s) = stdout {
                    log.pump(&source, LogStream::Stdout, s).await;
                }
            };
            let err = async {
                if let Some(s) = stderr {
                    log.pump(&source, LogStream::Stderr, s).await;
                }
            };
            tokio::join!(out, err);
            String::new()
        }
        Output::Capture { max } => {
            let read = |stream: Option<OutputStream>| async move {
                let mut text = String::new();
                if let Some(s) = stream {
                    let mut bytes = Vec::new();
                    let _ = s.take(max).read_to_end(&mut bytes).await;
                    text = String::from_utf8_lossy(&bytes).into_owned();
                }
                text
            };
            let (out, err) = tokio::join!(read(stdout), read(stderr));
            out + &err
        }
    }
}
