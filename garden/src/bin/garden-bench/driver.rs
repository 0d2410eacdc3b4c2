//! One create+start+wait+delete cycle under one runtime, driven the way a
//! containerd shim drives runc: `create --pid-file`, `start`, wait for the
//! container's init (re-parented to us, the child subreaper), `delete`.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::Value;

/// Our phases, in report order; `exec` comes from exit.json, the rest from
/// state.json's `timings` (`<name>_us`).
pub const PHASES: [&str; 7] = [
    "spec",
    "cgroups",
    "seccomp",
    "namespaces",
    "mounts",
    "create",
    "exec",
];

/// Microseconds per phase, in [`PHASES`] order.
pub type Phases = [u64; PHASES.len()];

/// One runtime binary with its own state root.
pub struct Runtime {
    /// How the report names it.
    pub name: String,
    pub path: PathBuf,
    root: PathBuf,
    /// Pid files and each step's stderr live here.
    scratch: PathBuf,
}

/// What one cycle measured.
pub struct Cycle {
    /// create+start+wait+delete, without the time spent reading timings.
    pub elapsed: Duration,
    /// Each step: create, start, wait (from `start` returning to the
    /// init's exit), delete. Read by gardend-bench's runc peer.
    #[allow(dead_code)]
    pub steps: [Duration; 4],
    /// Our phase timings, when asked for.
    pub phases: Option<Phases>,
}

impl Runtime {
    /// A runtime whose state root and scratch files live in `dir`.
    pub fn new(name: &str, path: PathBuf, dir: &Path) -> Result<Self> {
        let root = dir.join("root");
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        Ok(Runtime {
            name: name.into(),
            path,
            root,
            scratch: dir.to_path_buf(),
        })
    }

    /// Runs `/bin/true` from `bundle` once as container `id`; with
    /// `read_phases`, also reads our runtime's timing records. Several
    /// threads may run cycles at once (distinct ids); the caller reaps
    /// strays ([`reap_strays`]) once no cycle is waiting.
    pub fn cycle(&self, bundle: &Path, id: &str, read_phases: bool) -> Result<Cycle> {
        let pid_file = self.scratch.join(format!("{id}.pid"));
        let t0 = Instant::now();
        self.step(
            id,
            "create",
            &[
                OsStr::new("--bundle"),
                bundle.as_os_str(),
                OsStr::new("--pid-file"),
                pid_file.as_os_str(),
            ],
        )?;
        let created = Instant::now();
        let pid =
            read_pid(&pid_file).with_context(|| format!("{}: after `create {id}`", self.name))?;
        self.step(id, "start", &[])?;
        let started = Instant::now();
        wait_success(pid)
            .with_context(|| format!("{}: waiting for container {id} (pid {pid})", self.name))?;
        let paused = Instant::now();
        let phases = if read_phases {
            Some(
                read_timings(&self.root.join(id))
                    .with_context(|| format!("{}: reading timings of {id}", self.name))?,
            )
        } else {
            None
        };
        let resumed = Instant::now();
        self.step(id, "delete", &[])?;
        let deleted = resumed.elapsed();
        let _ = fs::remove_file(&pid_file);
        Ok(Cycle {
            elapsed: (paused - t0) + deleted,
            steps: [created - t0, started - created, paused - started, deleted],
            phases,
        })
    }

    /// `<runtime> --root R <verb> <args> <id>`; stdio never a pipe, because
    /// the container inherits create's and would hold it open.
    fn step(&self, id: &str, verb: &str, args: &[&OsStr]) -> Result<()> {
        let err_path = self.scratch.join(format!("{id}.{verb}.stderr"));
        let err =
            File::create(&err_path).with_context(|| format!("creating {}", err_path.display()))?;
        let status = Command::new(&self.path)
            .arg("--root")
            .arg(&self.root)
            .arg(verb)
            .args(args)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .status()
            .with_context(|| format!("{}: running {} {verb}", self.name, self.path.display()))?;
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        let _ = fs::remove_file(&err_path);
        if !status.success() {
            let stderr = match stderr.trim() {
                "" => "(empty)",
                text => text,
            };
            bail!(
                "{}: `{verb} {id}` failed ({status}); stderr: {stderr}",
                self.name
            );
        }
        Ok(())
    }

    /// Best effort: force-deletes every container left in the state root.
    pub fn delete_leftovers(&self) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.path().is_dir() {
                continue;
            }
            let _ = Command::new(&self.path)
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force"])
                .arg(entry.file_name())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        reap_strays();
    }
}

fn read_pid(path: &Path) -> Result<Pid> {
    let text =
        fs::read_to_string(path).with_context(|| format!("reading pid file {}", path.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("pid file {} holds {text:?}", path.display()))?;
    if pid <= 0 {
        bail!("pid file {} holds {pid}", path.display());
    }
    Ok(Pid::from_raw(pid))
}

/// Waits for the container's init, which must exit 0.
fn wait_success(pid: Pid) -> Result<()> {
    loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => {
                bail!("pid {pid} is not our child: was it re-parented to us (child subreaper)?")
            }
            Err(e) => bail!("waitpid({pid}): {e}"),
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            Ok(WaitStatus::Exited(_, code)) => {
                bail!("the container's process exited with status {code}")
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                bail!("the container's process was killed by {sig}")
            }
            Ok(_) => continue,
        }
    }
}

/// Reaps any exited children nobody waits for (orphans re-parented to us).
pub fn reap_strays() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Reads `state.json`'s timings and `exit.json`'s exec_us from a container's
/// state directory.
fn read_timings(dir: &Path) -> Result<Phases> {
    let state = read_json(&dir.join("state.json"))?;
    let exit = read_json(&dir.join("exit.json"))?;
    let mut phases = [0; PHASES.len()];
    for (slot, name) in phases.iter_mut().zip(PHASES) {
        let key = format!("{name}_us");
        let value = match name {
            "exec" => exit.get(&key),
            _ => state.get("timings").and_then(|t| t.get(&key)),
        };
        *slot = value
            .and_then(Value::as_u64)
            .with_context(|| format!("no {key} in {}", dir.display()))?;
    }
    Ok(phases)
}

fn read_json(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
