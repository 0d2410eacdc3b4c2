//! An in-memory backend and a server on a temporary unix socket, for the
//! HTTP layer's tests. Processes are tiny scripts named by `path`:
//!
//! - `echo ARGS...`: prints the arguments, exits 0
//! - `cat`: copies stdin to stdout until EOF, exits 0
//! - `warn ARGS...`: prints the arguments to stderr, exits 0
//! - `exit N`: exits with N
//! - `serve`: prints `ready`, then waits for a signal (printing `bye` and
//!   exiting 143 on TERM, 137 on KILL) or for stdin lines it echoes
//! - `broken`: waiting for it fails
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use garden_api::backend::{ByteStream, Process, ProcessIo, StreamInSpec, StreamOutSpec};
use garden_api::client::Client;
use garden_api::server::{Server, ServerConfig};
use garden_api::types::*;
use garden_api::{Backend, Error};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// What a test can look at afterwards.
#[derive(Default)]
pub struct Journal {
    pub events: Mutex<Vec<String>>,
}

impl Journal {
    pub fn push(&self, event: impl Into<String>) {
        self.events.lock().expect("not poisoned").push(event.into());
    }

    pub fn all(&self) -> Vec<String> {
        self.events.lock().expect("not poisoned").clone()
    }

    pub async fn wait_for(&self, event: &str) {
        for _ in 0..500 {
            if self.all().iter().any(|seen| seen == event) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never saw {event:?}; saw {:?}", self.all());
    }
}

#[derive(Default)]
struct Container {
    spec: ContainerSpec,
    properties: Properties,
    grace: Option<Duration>,
    files: Vec<u8>,
    processes: HashMap<String, Arc<ProcState>>,
    stopped: Option<bool>,
}

/// The in-memory backend.
#[derive(Default)]
pub struct MemoryBackend {
    containers: Mutex<BTreeMap<String, Container>>,
    next: AtomicUsize,
    pub journal: Arc<Journal>,
}

impl MemoryBackend {
    fn with<T>(
        &self,
        handle: &str,
        f: impl FnOnce(&mut Container) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut containers = self.containers.lock().expect("not poisoned");
        let container = containers
            .get_mut(handle)
            .ok_or_else(|| Error::container_not_found(handle))?;
        f(container)
    }

    pub fn files(&self, handle: &str) -> Vec<u8> {
        self.with(handle, |container| Ok(container.files.clone()))
            .expect("container exists")
    }

    pub fn exists(&self, handle: &str) -> bool {
        self.containers
            .lock()
            .expect("not poisoned")
            .contains_key(handle)
    }

    pub fn stopped(&self, handle: &str) -> Option<bool> {
        self.with(handle, |container| Ok(container.stopped))
            .expect("container exists")
    }
}

struct ProcState {
    id: String,
    stdout: Mutex<Option<mpsc::Sender<Bytes>>>,
    stderr: Mutex<Option<mpsc::Sender<Bytes>>>,
    stdin: Mutex<Option<mpsc::Receiver<Bytes>>>,
    signals: mpsc::UnboundedSender<Signal>,
    exit: watch::Sender<Option<Result<i32, String>>>,
    journal: Arc<Journal>,
}

impl ProcState {
    fn connect(&self, io: ProcessIo) {
        *self.stdout.lock().expect("not poisoned") = io.stdout;
        *self.stderr.lock().expect("not poisoned") = io.stderr;
        *self.stdin.lock().expect("not poisoned") = io.stdin;
    }

    async fn emit(&self, to_stderr: bool, text: &str) {
        let slot = if to_stderr {
            &self.stderr
        } else {
            &self.stdout
        };
        let sender = slot.lock().expect("not poisoned").clone();
        if let Some(sender) = sender {
            if sender
                .send(Bytes::copy_from_slice(text.as_bytes()))
                .await
                .is_err()
            {
                slot.lock().expect("not poisoned").take();
            }
        }
    }

    /// Waits a little for stdin (an attach may replace the channel meanwhile).
    async fn read_stdin(&self) -> Stdin {
        let Some(mut receiver) = self.stdin.lock().expect("not poisoned").take() else {
            return Stdin::Closed;
        };
        let read = tokio::time::timeout(Duration::from_millis(20), receiver.recv()).await;
        let mut slot = self.stdin.lock().expect("not poisoned");
        match read {
            Ok(Some(chunk)) => {
                slot.get_or_insert(receiver);
                Stdin::Data(chunk)
            }
            Ok(None) => Stdin::Closed,
            Err(_) => {
                slot.get_or_insert(receiver);
                Stdin::Nothing
            }
        }
    }

    fn exit(&self, result: Result<i32, String>) {
        self.stdout.lock().expect("not poisoned").take();
        self.stderr.lock().expect("not poisoned").take();
        let _ = self.exit.send(Some(result));
    }
}

enum Stdin {
    Data(Bytes),
    Closed,
    Nothing,
}

struct FakeProcess(Arc<ProcState>);

#[async_trait]
impl Process for FakeProcess {
    fn id(&self) -> String {
        self.0.id.clone()
    }

    async fn wait(&self) -> Result<i32, Error> {
        let mut exit = self.0.exit.subscribe();
        let result = exit
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::internal("process vanished"))?
            .clone();
        result
            .unwrap_or_else(|| Err("no status".into()))
            .map_err(Error::internal)
    }

    async fn set_tty(&self, tty: TtySpec) -> Result<(), Error> {
        let size = tty.window_size.unwrap_or_default();
        self.0
            .journal
            .push(format!("tty {}x{}", size.columns, size.rows));
        Ok(())
    }

    async fn signal(&self, signal: Signal) -> Result<(), Error> {
        self.0.journal.push(format!("signal {signal:?}"));
        let _ = self.0.signals.send(signal);
        Ok(())
    }
}

async fn script(
    state: Arc<ProcState>,
    spec: ProcessSpec,
    mut signals: mpsc::UnboundedReceiver<Signal>,
) {
    let args = spec.args.join(" ");
    match spec.path.as_str() {
        "echo" => {
            state.emit(false, &format!("{args}\n")).await;
            state.exit(Ok(0));
        }
        "warn" => {
            state.emit(true, &format!("{args}\n")).await;
            state.exit(Ok(0));
        }
        "exit" => state.exit(Ok(args.parse().unwrap_or(1))),
        "cat" => {
            loop {
                match state.read_stdin().await {
                    Stdin::Data(chunk) => state.emit(false, &String::from_utf8_lossy(&chunk)).await,
                    Stdin::Nothing => {}
                    Stdin::Closed => break,
                }
            }
            state.journal.push(format!("{} stdin closed", state.id));
            state.exit(Ok(0));
        }
        "flood" => {
            let line = format!("{}\n", "x".repeat(99));
            for _ in 0..args.parse::<usize>().unwrap_or(1000) {
                state.emit(false, &line).await;
            }
            state.exit(Ok(0));
        }
        "serve" => {
            state.emit(false, "ready\n").await;
            let status = loop {
                match signals.try_recv() {
                    Ok(Signal::Terminate) => break 143,
                    Ok(Signal::Kill) => break 137,
                    Err(_) => {}
                }
                match state.read_stdin().await {
                    Stdin::Data(chunk) => state.emit(false, &String::from_utf8_lossy(&chunk)).await,
                    Stdin::Nothing => {}
                    Stdin::Closed => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            state.emit(false, "bye\n").await;
            state.exit(Ok(status));
        }
        "broken" => state.exit(Err("the keeper vanished".into())),
        other => state.exit(Err(format!("no such script {other}"))),
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn capacity(&self) -> Result<Capacity, Error> {
        Ok(Capacity {
            memory_in_bytes: 1 << 30,
            disk_in_bytes: 2 << 30,
            schedulable_disk_in_bytes: 1 << 30,
            max_containers: 250,
        })
    }

    async fn create(&self, spec: ContainerSpec) -> Result<String, Error> {
        if spec.image.uri == "bad://image" {
            return Err(Error::bad_request("unsupported image scheme"));
        }
        let handle = if spec.handle.is_empty() {
            format!("c{}", self.next.fetch_add(1, Ordering::Relaxed))
        } else {
            spec.handle.clone()
        };
        let mut containers = self.containers.lock().expect("not poisoned");
        if containers.contains_key(&handle) {
            return Err(Error::internal(format!("handle already exists: {handle}")));
        }
        let container = Container {
            properties: spec.properties.clone(),
            grace: spec.grace_time,
            spec,
            ..Container::default()
        };
        containers.insert(handle.clone(), container);
        self.journal.push(format!("create {handle}"));
        Ok(handle)
    }

    async fn destroy(&self, handle: &str) -> Result<(), Error> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let removed = self.containers.lock().expect("not poisoned").remove(handle);
        removed
            .map(|_| self.journal.push(format!("destroy {handle}")))
            .ok_or_else(|| Error::container_not_found(handle))
    }

    async fn containers(&self, filter: &Properties) -> Result<Vec<String>, Error> {
        let containers = self.containers.lock().expect("not poisoned");
        Ok(containers
            .iter()
            .filter(|(_, container)| {
                filter
                    .iter()
                    .all(|(key, value)| container.properties.get(key) == Some(value))
            })
            .map(|(handle, _)| handle.clone())
            .collect())
    }

    async fn info(&self, handle: &str) -> Result<ContainerInfo, Error> {
        self.with(handle, |container| {
            Ok(ContainerInfo {
                state: if container.stopped.is_some() {
                    "stopped"
                } else {
                    "active"
                }
                .into(),
                container_ip: "10.254.0.2".into(),
                process_ids: container.processes.keys().cloned().collect(),
                properties: container.properties.clone(),
                ..ContainerInfo::default()
            })
        })
    }

    async fn metrics(&self, handle: &str) -> Result<Metrics, Error> {
        self.with(handle, |container| {
            Ok(Metrics {
                memory: ContainerMemoryStat {
                    total_usage_toward_limit: container.spec.limits.memory.limit_in_bytes / 2,
                    ..Default::default()
                },
                age: Duration::from_secs(3),
                cpu_entitlement: 42,
                ..Metrics::default()
            })
        })
    }

    async fn stop(&self, handle: &str, kill: bool) -> Result<(), Error> {
        self.with(handle, |container| {
            container.stopped = Some(kill);
            Ok(())
        })
    }

    async fn stream_in(
        &self,
        handle: &str,
        spec: StreamInSpec,
        mut tar: ByteStream,
    ) -> Result<(), Error> {
        self.with(handle, |_| Ok(()))?;
        if spec.path == "/refused" {
            return Err(Error::bad_request("destination refused"));
        }
        let mut files = Vec::new();
        while let Some(chunk) = tar.next().await {
            files.extend_from_slice(&chunk.map_err(|error| Error::internal(error.to_string()))?);
        }
        self.journal.push(format!(
            "stream-in {handle} {} {} bytes as {:?}",
            spec.path,
            files.len(),
            spec.user
        ));
        self.with(handle, |container| {
            container.files = files;
            Ok(())
        })
    }

    async fn stream_out(&self, handle: &str, spec: StreamOutSpec) -> Result<ByteStream, Error> {
        let files = self.with(handle, |container| Ok(container.files.clone()))?;
        if spec.path == "/missing" {
            return Err(Error::internal("no such file: /missing"));
        }
        let chunks: Vec<std::io::Result<Bytes>> = files
            .chunks(1000)
            .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
            .collect();
        Ok(Box::pin(futures_util::stream::iter(chunks)))
    }

    async fn limits(&self, handle: &str) -> Result<Limits, Error> {
        self.with(handle, |container| Ok(container.spec.limits.clone()))
    }

    async fn net_in(
        &self,
        handle: &str,
        host_port: u32,
        container_port: u32,
    ) -> Result<(u32, u32), Error> {
        self.with(handle, |_| Ok(()))?;
        let host_port = if host_port == 0 { 61001 } else { host_port };
        Ok((
            host_port,
            if container_port == 0 {
                host_port
            } else {
                container_port
            },
        ))
    }

    async fn net_out(&self, handle: &str, rules: Vec<NetOutRule>) -> Result<(), Error> {
        self.with(handle, |_| Ok(()))?;
        self.journal
            .push(format!("net-out {handle} {} rules", rules.len()));
        Ok(())
    }

    async fn run(
        &self,
        handle: &str,
        spec: ProcessSpec,
        io: ProcessIo,
    ) -> Result<Box<dyn Process>, Error> {
        if spec.path == "missing" {
            return Err(Error::new(
                garden_api::ErrorKind::ExecutableNotFound,
                "exec: \"missing\": not found",
            ));
        }
        let id = if spec.id.is_empty() {
            format!("p{}", self.next.fetch_add(1, Ordering::Relaxed))
        } else {
            spec.id.clone()
        };
        let (signals, signal_receiver) = mpsc::unbounded_channel();
        let state = Arc::new(ProcState {
            id: id.clone(),
            stdout: Mutex::new(None),
            stderr: Mutex::new(None),
            stdin: Mutex::new(None),
            signals,
            exit: watch::Sender::new(None),
            journal: Arc::clone(&self.journal),
        });
        state.connect(io);
        self.with(handle, |container| {
            container.processes.insert(id.clone(), Arc::clone(&state));
            Ok(())
        })?;
        if let Some(tty) = spec.tty {
            let size = tty.window_size.unwrap_or_default();
            self.journal
                .push(format!("run {id} with tty {}x{}", size.columns, size.rows));
        }
        tokio::spawn(script(Arc::clone(&state), spec, signal_receiver));
        Ok(Box::new(FakeProcess(state)))
    }

    async fn attach(
        &self,
        handle: &str,
        process_id: &str,
        io: ProcessIo,
    ) -> Result<Box<dyn Process>, Error> {
        let state = self.with(handle, |container| {
            container
                .processes
                .get(process_id)
                .cloned()
                .ok_or_else(|| Error::process_not_found(process_id))
        })?;
        state.connect(io);
        Ok(Box::new(FakeProcess(state)))
    }

    async fn set_grace_time(&self, handle: &str, grace: Duration) -> Result<(), Error> {
        self.with(handle, |container| {
            container.grace = Some(grace);
            Ok(())
        })
    }

    async fn grace_time(&self, handle: &str) -> Result<Option<Duration>, Error> {
        self.with(handle, |container| Ok(container.grace))
    }

    async fn properties(&self, handle: &str) -> Result<Properties, Error> {
        self.with(handle, |container| Ok(container.properties.clone()))
    }

    async fn property(&self, handle: &str, key: &str) -> Result<String, Error> {
        self.with(handle, |container| {
            container
                .properties
                .get(key)
                .cloned()
                .ok_or_else(|| Error::internal(format!("property does not exist: {key}")))
        })
    }

    async fn set_property(&self, handle: &str, key: &str, value: &str) -> Result<(), Error> {
        self.with(handle, |container| {
            container
                .properties
                .insert(key.to_owned(), value.to_owned());
            Ok(())
        })
    }

    async fn remove_property(&self, handle: &str, key: &str) -> Result<(), Error> {
        self.with(handle, |container| {
            container
                .properties
                .remove(key)
                .map(|_| ())
                .ok_or_else(|| Error::internal(format!("property does not exist: {key}")))
        })
    }
}

/// A server on a temporary unix socket (and loopback TCP), stopped on drop.
pub struct TestServer {
    pub backend: Arc<MemoryBackend>,
    pub socket: PathBuf,
    pub tcp: std::net::SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Arc::default(), |_| {}).await
    }

    pub async fn start_with(
        backend: Arc<MemoryBackend>,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let socket = dir.path().join("run/garden.sock");
        let mut config = ServerConfig::unix(&socket);
        config.tcp = Some("127.0.0.1:0".parse().expect("an address"));
        configure(&mut config);
        let server = Server::bind(config, Arc::clone(&backend) as Arc<dyn Backend>)
            .await
            .expect("the server binds");
        let tcp = server.tcp_addr().expect("a TCP address");
        let shutdown = server.shutdown_token();
        let task = tokio::spawn(async move { server.serve().await.expect("the server serves") });
        Self {
            backend,
            socket,
            tcp,
            shutdown,
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn client(&self) -> Client {
        Client::unix(&self.socket)
    }

    /// Stops the server and waits until every task ended.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("the server stops in time")
                .expect("the server task ends");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Sends raw bytes on a new unix connection, closes the sending side, and
/// returns everything the server answers until it closes (or `wait` passes).
pub async fn raw(socket: &std::path::Path, request: &[u8], wait: Duration) -> String {
    raw_with(socket, request, wait, true).await
}

/// Like [`raw`], leaving the sending side open.
pub async fn raw_open(socket: &std::path::Path, request: &[u8], wait: Duration) -> String {
    raw_with(socket, request, wait, false).await
}

async fn raw_with(
    socket: &std::path::Path,
    request: &[u8],
    wait: Duration,
    half_close: bool,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connects");
    stream.write_all(request).await.expect("writes");
    if half_close {
        stream.shutdown().await.expect("half-closes");
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of a raw answer.
pub fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// The body of a raw answer with a Content-Length.
pub fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}
