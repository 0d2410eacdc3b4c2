//! Helpers for the privileged tests: unique names, clean-up guards, children.
//!
//! These tests need root and a real cgroup filesystem. They fail loudly when
//! not run as root rather than passing without testing anything.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use garden_cgroups::{Cgroup, Hierarchy};

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "privileged cgroup test: must run as root (CI does)"
    );
}

/// `garden-test-<pid>-<n>`: unique per test process and call.
pub fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "garden-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Kills and removes a cgroup on drop, whether or not the test passed. Also
/// removes `extra` directories (e.g. a private cgroup2 root) afterwards.
pub struct CgroupGuard {
    pub hierarchy: Hierarchy,
    pub path: String,
    pub extra: Vec<PathBuf>,
}

impl CgroupGuard {
    pub fn new(hierarchy: Hierarchy, path: impl Into<String>) -> CgroupGuard {
        CgroupGuard {
            hierarchy,
            path: path.into(),
            extra: Vec::new(),
        }
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Ok(cg) = Cgroup::open_at(&self.hierarchy, &self.path) {
            if let Err(e) = cg.kill_all() {
                eprintln!("guard: kill_all {}: {e}", self.path);
            }
            if let Err(e) = cg.destroy() {
                eprintln!("guard: destroy {}: {e}", self.path);
            }
        }
        for dir in self.extra.iter().rev() {
            remove_dir_retrying(dir);
        }
    }
}

/// Removes an (empty of processes) cgroup directory tree, deepest first.
pub fn remove_dir_retrying(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dir_retrying(&entry.path());
            }
        }
    }
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    eprintln!("guard: could not remove {}", dir.display());
}

/// A child process killed and reaped on drop.
pub struct ChildGuard {
    pub child: Child,
    stdin: Option<ChildStdin>,
}

impl ChildGuard {
    /// Starts `sh -c script` with a line-buffered gate: the script should begin
    /// with `read _`, so it waits until [`ChildGuard::release`] (after the test
    /// has put it into the cgroup).
    pub fn gated_sh(script: &str) -> ChildGuard {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sh");
        let stdin = child.stdin.take();
        ChildGuard { child, stdin }
    }

    pub fn sleeper() -> ChildGuard {
        let child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        ChildGuard { child, stdin: None }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    pub fn release(&mut self) {
        let mut stdin = self.stdin.take().expect("gated child");
        stdin.write_all(b"go\n").expect("release child");
    }

    /// Reads the child's stdout (byte by byte, so nothing after it is lost)
    /// until `needle` has appeared.
    pub fn wait_for_output(&mut self, needle: &str) {
        let stdout = self.child.stdout.as_mut().expect("piped stdout");
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let n = std::io::Read::read(stdout, &mut byte).expect("read stdout");
            assert!(n == 1, "child closed stdout before printing {needle:?}");
            seen.push(byte[0]);
        }
    }

    /// Waits (at most `limit`) for the child to exit; its stdout and status.
    pub fn finish(mut self, limit: Duration) -> (String, ExitStatus) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let mut out = String::new();
                if let Some(mut stdout) = self.child.stdout.take() {
                    std::io::Read::read_to_string(&mut stdout, &mut out).expect("read stdout");
                }
                return (out, status);
            }
            assert!(
                start.elapsed() < limit,
                "child did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` for up to two seconds.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A script that reports which device opens the cgroup allows.
pub const DEVICE_PROBE: &str = "read _
(: < /dev/null) 2>/dev/null && echo null-r-ok || echo null-r-denied
(: > /dev/null) 2>/dev/null && echo null-w-ok || echo null-w-denied
(: < /dev/zero) 2>/dev/null && echo zero-r-ok || echo zero-r-denied
(: > /dev/zero) 2>/dev/null && echo zero-w-ok || echo zero-w-denied
(: < /dev/full) 2>/dev/null && echo full-r-ok || echo full-r-denied
";
