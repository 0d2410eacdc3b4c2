//! The peer: plain runc doing create, start, wait, delete of `/bin/true`
//! on a busybox bundle (`runc spec`'s defaults, no disk limit), with the
//! same concurrency as the gardend workload, driven as a containerd shim
//! drives it. We are the child subreaper, so each container's init is
//! re-parented to us and its worker waits for exactly that pid.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::bundle::{self, Workdir};
use crate::interrupt::Interrupted;

/// Milliseconds of one runc cycle, per step.
#[derive(Debug, Clone)]
pub struct Cycle {
    pub create: f64,
    pub start: f64,
    /// From `start` returning to the init's exit status.
    pub wait: f64,
    pub delete: f64,
}

impl Cycle {
    pub fn total(&self) -> f64 {
        self.create + self.start + self.wait + self.delete
    }
}

/// runc with its state root on tmpfs and a bundle; dropping it deletes any
/// container left and removes both directories.
pub struct Peer {
    pub runc: PathBuf,
    bundle: PathBuf,
    root: PathBuf,
    prefix: String,
    _work: Workdir,
    _state: Workdir,
}

impl Peer {
    pub fn new(runc: PathBuf, rootfs: &Path, prefix: &str) -> Result<Peer> {
        let work = Workdir::create()?;
        let state = Workdir::create_on_tmpfs()?;
        let bundle = work.path().join("bundle");
        bundle::make(&runc, rootfs, &bundle)?;
        Ok(Peer {
            runc,
            bundle,
            root: state.path().to_path_buf(),
            prefix: prefix.to_string(),
            _work: work,
            _state: state,
        })
    }

    /// `workers` threads, each doing `warmup` unrecorded and `cycles`
    /// measured cycles.
    pub fn run(
        &self,
        workers: u32,
        warmup: u32,
        cycles: u32,
        interrupted: &Interrupted,
    ) -> Result<Vec<Cycle>> {
        nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
        let results: Vec<Result<Vec<Cycle>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|w| s.spawn(move || self.worker(w, warmup, cycles, interrupted)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a runc worker panicked")))
                })
                .collect()
        });
        reap_strays();
        let mut all = Vec::new();
        for r in results {
            all.extend(r?);
        }
        Ok(all)
    }

    fn worker(&self, w: u32, warmup: u32, cycles: u32, stop: &Interrupted) -> Result<Vec<Cycle>> {
        let mut out = Vec::with_capacity(cycles as usize);
        for i in 0..warmup + cycles {
            if stop.is_set() {
                bail!("stopped (interrupted, or another worker failed)");
            }
            let id = format!("{}-r{w}-{i}", self.prefix);
            match self.cycle(&id) {
                Ok(c) if i >= warmup => out.push(c),
                Ok(_) => {}
                Err(e) => {
                    stop.set();
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    fn cycle(&self, id: &str) -> Result<Cycle> {
        let pid_file = self.root.join(format!("{id}.pid"));
        let t0 = Instant::now();
        let create_args = [
            OsStr::new("--bundle"),
            self.bundle.as_os_str(),
            OsStr::new("--pid-file"),
            pid_file.as_os_str(),
        ];
        self.step(id, "create", &create_args)?;
        let t1 = Instant::now();
        let pid = read_pid(&pid_file).with_context(|| format!("runc: after `create {id}`"))?;
        self.step(id, "start", &[])?;
        let t2 = Instant::now();
        wait_success(pid).with_context(|| format!("runc: waiting for {id} (pid {pid})"))?;
        let t3 = Instant::now();
        self.step(id, "delete", &[])?;
        let t4 = Instant::now();
        let _ = fs::remove_file(&pid_file);
        Ok(Cycle {
            create: ms(t1 - t0),
            start: ms(t2 - t1),
            wait: ms(t3 - t2),
            delete: ms(t4 - t3),
        })
    }

    /// `runc --root R <verb> <args> <id>`; stderr to a file, never a pipe
    /// (the container inherits create's stdio and would hold it open).
    fn step(&self, id: &str, verb: &str, args: &[&OsStr]) -> Result<()> {
        let err_path = self.root.join(format!("{id}.{verb}.stderr"));
        let err =
            File::create(&err_path).with_context(|| format!("creating {}", err_path.display()))?;
        let status = Command::new(&self.runc)
            .arg("--root")
            .arg(&self.root)
            .arg(verb)
            .args(args)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .status()
            .with_context(|| format!("running {} {verb}", self.runc.display()))?;
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        let _ = fs::remove_file(&err_path);
        if !status.success() {
            bail!("runc: `{verb} {id}` failed ({status}): {}", stderr.trim());
        }
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten().filter(|e| e.path().is_dir()) {
            let _ = Command::new(&self.runc)
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
            Err(e) => bail!("waitpid({pid}): {e}"),
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            Ok(WaitStatus::Exited(_, code)) => bail!("/bin/true exited with status {code}"),
            Ok(WaitStatus::Signaled(_, sig, _)) => bail!("/bin/true was killed by {sig}"),
            Ok(_) => continue,
        }
    }
}

/// Reaps exited orphans nobody waits for; only once no worker is waiting.
fn reap_strays() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
