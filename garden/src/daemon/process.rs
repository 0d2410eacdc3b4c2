//! Processes: each runs under its own keeper (`gardend keep`); the daemon
//! talks to the keeper's socket, so a process outlives the daemon and a
//! new daemon attaches to it again.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use garden_api::types::{ProcessSpec, Signal, TtySpec};
use garden_api::{Error as ApiError, Process, ProcessIo};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

use crate::keeper::frame::Frame;
use crate::keeper::{self, PROCESS, SOCKET};

use super::container::Container;
use super::depot::Record;
use super::files::User;
use super::spec::GARDEN_CAPS;
use super::{DaemonError, Garden};

/// How long a keeper may take to start its process.
const KEEPER_START: Duration = Duration::from_secs(60);

type ExitState = Option<Result<i32, String>>;

/// A process as seen through one connection to its keeper.
pub struct KeeperProcess {
    id: String,
    ctl: mpsc::Sender<Frame>,
    exit: watch::Receiver<ExitState>,
}

impl Garden {
    pub async fn run_process(
        &self,
        container: &Container,
        spec: ProcessSpec,
        io: ProcessIo,
    ) -> Result<KeeperProcess, DaemonError> {
        let record = container.record();
        if record.stopped {
            return Err(DaemonError::Stopped(container.handle.clone()));
        }
        if spec.path.is_empty() {
            return Err(DaemonError::BadRequest {
                what: "process",
                message: "path is empty: nothing to run".into(),
            });
        }
        let sidecar = !spec.image.uri.is_empty();
        if !sidecar && !spec.bind_mounts.is_empty() {
            return Err(DaemonError::BadRequest {
                what: "process",
                message: "bind mounts are for processes with their own image".into(),
            });
        }
        if !sidecar
            && spec.override_container_limits.is_some_and(|l| {
                l.cpu.weight > 0 || l.cpu.limit_in_shares > 0 || l.memory.limit_in_bytes > 0
            })
        {
            return Err(DaemonError::BadRequest {
                what: "process limits",
                message: "per-process limits need a process with its own image (a sidecar)".into(),
            });
        }
        let id = if spec.id.is_empty() {
            super::create::random_hex()
        } else {
            spec.id.clone()
        };
        crate::runtime::state::validate_id(&id).map_err(|e| DaemonError::BadRequest {
            what: "process id",
            message: e.to_string(),
        })?;
        let dir = self.inner.depot.processes(&container.handle).join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(DaemonError::ProcessIdInUse(id))
            }
            Err(source) => {
                return Err(DaemonError::Io {
                    action: "creating",
                    path: dir,
                    source,
                })
            }
        }
        let started = if sidecar {
            self.start_pea(container, &record, &spec, &dir).await
        } else {
            self.start_plain(container, &record, &spec, &dir).await
        };
        if let Err(e) = started {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let p = connect(&dir, &id, io).await?;
        if let Some(size) = spec.tty.and_then(|t| t.window_size) {
            let _ = p.resize(size.rows, size.columns).await;
        }
        tracing::info!(handle = container.handle, process = id, "process started");
        Ok(p)
    }

    /// A process in the container itself: `process.json` for an exec.
    async fn start_plain(
        &self,
        container: &Container,
        record: &Record,
        spec: &ProcessSpec,
        dir: &Path,
    ) -> Result<(), DaemonError> {
        let root = container.root_path();
        let user_spec = if spec.user.is_empty() {
            record.image_user.clone()
        } else {
            spec.user.clone()
        };
        let user =
            super::create::blocking(move || super::files::lookup_user(&root, &user_spec)).await??;
        let defaults = Defaults {
            env: [&record.image_env, &record.spec.env],
            dir: &record.image_dir,
        };
        let process = process_json(&defaults, spec, &user);
        let path = dir.join(PROCESS);
        std::fs::write(&path, process.to_string()).map_err(|source| DaemonError::Io {
            action: "writing",
            path,
            source,
        })?;
        self.start_keeper(&container.handle, dir, spec.tty.is_some(), false)
            .await
    }

    /// A sidecar: its own container (a pea) with the process as init.
    async fn start_pea(
        &self,
        container: &Container,
        record: &Record,
        spec: &ProcessSpec,
        dir: &Path,
    ) -> Result<(), DaemonError> {
        let pea = self.prepare_pea(container, record, spec, dir).await?;
        match self
            .start_keeper(&pea.runtime_id, dir, spec.tty.is_some(), true)
            .await
        {
            Ok(()) => {
                self.watch_pea(dir.to_path_buf());
                Ok(())
            }
            Err(e) => {
                self.remove_pea(dir).await;
                Err(e)
            }
        }
    }

    async fn start_keeper(
        &self,
        target: &str,
        dir: &Path,
        tty: bool,
        pea: bool,
    ) -> Result<(), DaemonError> {
        let inner = &self.inner;
        let mut cmd = tokio::process::Command::new(&inner.keeper_binary);
        cmd.arg("keep")
            .arg("--runtime")
            .arg(&inner.runc.binary)
            .arg("--root")
            .arg(&inner.runc.root)
            .args(["--container", target, "--dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Our terminal's ^C must not reach the keepers.
            .process_group(0);
        if tty {
            cmd.arg("--tty");
        }
        if pea {
            cmd.arg("--pea");
        }
        let mut child = cmd.spawn().map_err(|source| DaemonError::Io {
            action: "starting the keeper",
            path: inner.keeper_binary.clone(),
            source,
        })?;
        let stdout = child.stdout.take();
        // The keeper lives on; reap it whenever it ends.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let mut line = String::new();
        if let Some(out) = stdout {
            let mut reader = BufReader::new(out);
            let read = tokio::time::timeout(KEEPER_START, reader.read_line(&mut line)).await;
            if read.is_err() {
                return Err(DaemonError::Keeper(
                    "the keeper did not start in time".into(),
                ));
            }
        }
        let line = line.trim();
        if line.starts_with("ok ") {
            return Ok(());
        }
        let message = line.strip_prefix("error ").unwrap_or(line).to_string();
        if message.contains("not found") || message.contains("No such file") {
            return Err(DaemonError::ExecutableNotFound(message));
        }
        Err(DaemonError::Keeper(if message.is_empty() {
            "the keeper exited without a word".into()
        } else {
            message
        }))
    }

    pub async fn attach_process(
        &self,
        container: &Container,
        id: &str,
        io: ProcessIo,
    ) -> Result<KeeperProcess, DaemonError> {
        let dir = self.inner.depot.processes(&container.handle).join(id);
        if crate::runtime::state::validate_id(id).is_err() || !dir.join(PROCESS).exists() {
            return Err(DaemonError::ProcessNotFound(id.to_string()));
        }
        connect(&dir, id, io).await
    }

    /// Ids of the container's processes that have not exited.
    pub fn process_ids(&self, handle: &str) -> Vec<String> {
        let dir = self.inner.depot.processes(handle);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter(|e| keeper_alive(&e.path()) && keeper::recorded_exit(&e.path()).is_none())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids
    }
}

pub(super) fn keeper_alive(dir: &Path) -> bool {
    keeper::keeper_pid(dir).is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Connects to the keeper in `dir` and pumps frames to and from `io`.
async fn connect(dir: &Path, id: &str, io: ProcessIo) -> Result<KeeperProcess, DaemonError> {
    let (exit_tx, exit_rx) = watch::channel(None);
    let (ctl_tx, ctl_rx) = mpsc::channel(16);
    let stream = match connect_socket(dir).await {
        Ok(s) => s,
        Err(_) => {
            // The keeper is gone: the status it recorded is all there is.
            return match keeper::recorded_exit(dir) {
                Some(code) => {
                    let _ = exit_tx.send(Some(Ok(code)));
                    Ok(KeeperProcess {
                        id: id.to_string(),
                        ctl: ctl_tx,
                        exit: exit_rx,
                    })
                }
                None => Err(DaemonError::ProcessNotFound(id.to_string())),
            };
        }
    };
    let (rd, mut wr) = stream.into_split();
    // Without readers here, output stays with the keeper for the next
    // client that takes it (an Attach, possibly after a daemon restart).
    let output = io.stdout.is_some() || io.stderr.is_some();
    let _ = wr.write_all(&Frame::Watch { output }.encode()).await;
    let (done_tx, done_rx) = watch::channel(false);
    let dir2 = dir.to_path_buf();
    tokio::spawn(write_frames(wr, io.stdin, ctl_rx, done_rx));
    tokio::spawn(read_frames(
        rd, io.stdout, io.stderr, exit_tx, done_tx, dir2,
    ));
    Ok(KeeperProcess {
        id: id.to_string(),
        ctl: ctl_tx,
        exit: exit_rx,
    })
}

/// Connects to the keeper's socket through an open descriptor of its
/// directory: the full path can exceed the 108 bytes a socket path may
/// have (long handles and process ids), `/proc/self/fd/N/sock` cannot.
async fn connect_socket(dir: &Path) -> std::io::Result<UnixStream> {
    let d = std::fs::File::open(dir)?;
    let short = format!(
        "/proc/self/fd/{}/{SOCKET}",
        std::os::fd::AsRawFd::as_raw_fd(&d)
    );
    let stream = UnixStream::connect(short).await;
    drop(d);
    stream
}

async fn write_frames(
    mut wr: tokio::net::unix::OwnedWriteHalf,
    mut stdin: Option<mpsc::Receiver<Bytes>>,
    mut ctl: mpsc::Receiver<Frame>,
    mut done: watch::Receiver<bool>,
) {
    let mut ctl_open = true;
    loop {
        let frame = tokio::select! {
            d = recv_opt(&mut stdin), if stdin.is_some() => match d {
                Some(data) => Frame::Stdin(data.to_vec()),
                None => { stdin = None; Frame::StdinEof }
            },
            c = ctl.recv(), if ctl_open => match c {
                Some(f) => f,
                None => { ctl_open = false; continue; }
            },
            // Keep our half open until the reader is done: closing it
            // would tell the keeper we left.
            _ = done.changed() => return,
        };
        if wr.write_all(&frame.encode()).await.is_err() {
            return;
        }
    }
}

async fn read_frames(
    mut rd: tokio::net::unix::OwnedReadHalf,
    mut stdout: Option<mpsc::Sender<Bytes>>,
    mut stderr: Option<mpsc::Sender<Bytes>>,
    exit: watch::Sender<ExitState>,
    done: watch::Sender<bool>,
    dir: PathBuf,
) {
    let listening = stdout.is_some() || stderr.is_some();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let result = 'outer: loop {
        loop {
            match Frame::decode(&buf) {
                Ok(Some((frame, used))) => {
                    buf.drain(..used);
                    match frame {
                        Frame::Stdout(d) => forward(&mut stdout, d).await,
                        Frame::Stderr(d) => forward(&mut stderr, d).await,
                        Frame::Exit(code) => break 'outer Ok(code),
                        Frame::Dropped(n) => {
                            tracing::warn!(bytes = n, "output dropped while detached")
                        }
                        _ => {}
                    }
                    // The client left: detach, so the keeper keeps the
                    // output for the next one.
                    if listening && stdout.is_none() && stderr.is_none() {
                        break 'outer Err("the client detached".to_string());
                    }
                }
                Ok(None) => break,
                Err(e) => break 'outer Err(format!("keeper protocol: {e}")),
            }
        }
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                break match keeper::recorded_exit(&dir) {
                    Some(code) => Ok(code),
                    None => Err("the process keeper went away".to_string()),
                }
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    // Output first, then the status: drop the senders before waking waiters.
    drop(stdout);
    drop(stderr);
    let _ = exit.send(Some(result));
    let _ = done.send(true);
}

async fn recv_opt(rx: &mut Option<mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

async fn forward(tx: &mut Option<mpsc::Sender<Bytes>>, data: Vec<u8>) {
    if let Some(t) = tx {
        if t.send(Bytes::from(data)).await.is_err() {
            *tx = None;
        }
    }
}

impl KeeperProcess {
    async fn resize(&self, rows: u32, cols: u32) -> Result<(), ApiError> {
        let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
        self.ctl
            .send(Frame::WindowSize {
                rows: clamp(rows),
                cols: clamp(cols),
            })
            .await
            .map_err(|_| ApiError::process_not_found(&self.id))
    }
}

#[async_trait]
impl Process for KeeperProcess {
    fn id(&self) -> String {
        self.id.clone()
    }

    async fn wait(&self) -> Result<i32, ApiError> {
        let mut rx = self.exit.clone();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r.map_err(ApiError::internal);
            }
            if rx.changed().await.is_err() {
                return Err(ApiError::internal("lost the process keeper"));
            }
        }
    }

    async fn set_tty(&self, tty: TtySpec) -> Result<(), ApiError> {
        match tty.window_size {
            Some(w) => self.resize(w.rows, w.columns).await,
            None => Ok(()),
        }
    }

    async fn signal(&self, signal: Signal) -> Result<(), ApiError> {
        let sig = match signal {
            Signal::Terminate => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        };
        self.ctl
            .send(Frame::Signal(sig))
            .await
            .map_err(|_| ApiError::process_not_found(&self.id))
    }
}

/// Where a process's defaults come from: the container's image and spec,
/// or a sidecar's own image.
pub(super) struct Defaults<'a> {
    /// Environments under the process's own, lowest first.
    pub env: [&'a Vec<String>; 2],
    /// The image's working directory.
    pub dir: &'a str,
}

/// The OCI process for `garden-runc exec` (or a sidecar's init), Garden's
/// way: the image's and container's environment under the process's own,
/// the user's home as the default directory, Garden's capabilities
/// (effective only for root).
pub(super) fn process_json(defaults: &Defaults<'_>, spec: &ProcessSpec, user: &User) -> Value {
    let mut args = vec![spec.path.clone()];
    args.extend(spec.args.iter().cloned());
    let [image_env, container_env] = defaults.env;
    let mut env = merge_env(&[image_env, container_env, &spec.env]);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) && !user.home.is_empty() {
        env.push(format!("HOME={}", user.home));
    }
    if !env.iter().any(|e| e.starts_with("USER="))
        && !spec.user.is_empty()
        && !spec.user.contains(':')
        && spec.user.parse::<u32>().is_err()
    {
        env.push(format!("USER={}", spec.user));
    }
    let cwd = [spec.dir.as_str(), defaults.dir, user.home.as_str()]
        .into_iter()
        .find(|d| d.starts_with('/'))
        .unwrap_or("/")
        .to_string();
    let caps = json!(GARDEN_CAPS);
    let capabilities = if user.uid == 0 {
        json!({"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps})
    } else {
        json!({"bounding": caps, "permitted": caps, "inheritable": caps})
    };
    let mut p = json!({
        "terminal": spec.tty.is_some(),
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": capabilities,
        "rlimits": rlimits(&spec.rlimits),
    });
    if let Some(w) = spec.tty.and_then(|t| t.window_size) {
        p["consoleSize"] = json!({"height": w.rows, "width": w.columns});
    }
    p
}

/// Later lists override earlier ones, key by key; order of first
/// appearance is kept.
fn merge_env(lists: &[&Vec<String>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for list in lists {
        for e in list.iter() {
            let key = e.split('=').next().unwrap_or(e);
            match out
                .iter_mut()
                .find(|o| o.split('=').next().unwrap_or(o) == key)
            {
                Some(slot) => slot.clone_from(e),
                None => out.push(e.clone()),
            }
        }
    }
    out
}

fn rlimits(r: &garden_api::types::ResourceLimits) -> Value {
    let pairs = [
        ("RLIMIT_AS", r.r#as),
        ("RLIMIT_CORE", r.core),
        ("RLIMIT_CPU", r.cpu),
        ("RLIMIT_DATA", r.data),
        ("RLIMIT_FSIZE", r.fsize),
        ("RLIMIT_LOCKS", r.locks),
        ("RLIMIT_MEMLOCK", r.memlock),
        ("RLIMIT_MSGQUEUE", r.msgqueue),
        ("RLIMIT_NICE", r.nice),
        ("RLIMIT_NOFILE", r.nofile),
        ("RLIMIT_NPROC", r.nproc),
        ("RLIMIT_RSS", r.rss),
        ("RLIMIT_RTPRIO", r.rtprio),
        ("RLIMIT_SIGPENDING", r.sigpending),
        ("RLIMIT_STACK", r.stack),
    ];
    Value::Array(
        pairs
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| json!({"type": name, "soft": v, "hard": v})))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_merges_by_key() {
        let a = vec!["PATH=/a".to_string(), "X=1".to_string()];
        let b = vec!["X=2".to_string()];
        let c = vec!["Y=3".to_string(), "PATH=/c".to_string()];
        assert_eq!(merge_env(&[&a, &b, &c]), vec!["PATH=/c", "X=2", "Y=3"]);
    }

    #[test]
    fn rlimits_become_oci_entries() {
        let r = garden_api::types::ResourceLimits {
            nofile: Some(100),
            ..Default::default()
        };
        assert_eq!(
            rlimits(&r),
            json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100}])
        );
    }
}
