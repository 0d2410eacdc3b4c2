//! The scratch directory and the one OCI bundle both runtimes run.
//!
//! ```text
//! /tmp/garden-bench-<pid>-<nanos>/
//!   bundle/config.json   `runc spec`'s default, running /bin/true without a terminal
//!   bundle/rootfs/       a copy of the busybox rootfs
//! /dev/shm/garden-bench-<pid>-<nanos>/
//!   <runtime>/           that runtime's --root state directory, pid files, stderr
//! ```
//!
//! State roots live on tmpfs, as in /run on production hosts (both runtimes
//! write their state there; on a disk both would pay for metadata writes).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// A fresh directory under /tmp, removed with everything in it when dropped.
pub struct Workdir {
    path: PathBuf,
}

impl Workdir {
    pub fn create() -> Result<Self> {
        Workdir::create_in(&std::env::temp_dir())
    }

    /// A fresh directory on tmpfs for the runtimes' state roots: production
    /// hosts keep them in /run (tmpfs); this falls back to the temp dir
    /// where /dev/shm is missing.
    pub fn create_on_tmpfs() -> Result<Self> {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            Workdir::create_in(shm)
        } else {
            Workdir::create()
        }
    }

    fn create_in(base: &Path) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = base.join(format!("garden-bench-{}-{nanos}", std::process::id()));
        // create_dir (not create_dir_all) fails if the name is taken.
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Workdir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!(
                "garden-bench: could not remove {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Makes `bundle` from `runc spec`'s default config and a copy of `rootfs`.
pub fn make(runc: &Path, rootfs: &Path, bundle: &Path) -> Result<()> {
    if !rootfs.join("bin/true").exists() {
        bail!(
            "{} has no bin/true: build the busybox rootfs (rootfs/build.sh) or pass --rootfs",
            rootfs.display()
        );
    }
    fs::create_dir(bundle).with_context(|| format!("creating {}", bundle.display()))?;
    let copy = bundle.join("rootfs");
    run(
        Command::new("cp").arg("-a").arg(rootfs).arg(&copy),
        "copying the rootfs",
    )?;
    run(
        Command::new(runc).arg("spec").arg("--bundle").arg(bundle),
        "`runc spec`",
    )?;

    let path = bundle.join("config.json");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut config: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let Some(process) = config.get_mut("process").and_then(Value::as_object_mut) else {
        bail!("{} has no process object", path.display());
    };
    process.insert("terminal".into(), json!(false));
    process.insert("args".into(), json!(["/bin/true"]));
    let text = serde_json::to_string_pretty(&config).context("serialising config.json")?;
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: running {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
