//! Shared pieces of the end-to-end tests: where the binaries are, the
//! busybox rootfs, and the real components (controller, cells) that clean
//! up after themselves on drop, also when a test fails.
#![allow(dead_code)]

pub mod cell;
pub mod controller;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The busybox rootfs built by `make rootfs` (or `$GARDEN_TEST_ROOTFS`).
pub fn busybox_rootfs() -> PathBuf {
    let p = std::env::var_os("GARDEN_TEST_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../rootfs/out/busybox"));
    assert!(
        p.join("bin/busybox").exists(),
        "test rootfs missing at {}: run `make rootfs`",
        p.display()
    );
    std::fs::canonicalize(p).expect("canonical rootfs path")
}

/// The profile directory of this test executable (`target/<triple>/<profile>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target profile dir")
        .to_owned()
}

/// A workspace binary beside this test's target directory, built there
/// with cargo (same profile) when it is missing.
pub fn binary(package: &str, name: &str) -> PathBuf {
    let dir = profile_dir();
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", package, "--bin", name]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building {name} failed");
    }
    assert!(path.exists(), "{name} not found in {}", dir.display());
    path
}

/// Panics unless the test runs as root (gardend creates real containers).
pub fn assert_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .unwrap_or_default();
    assert_eq!(uid, "0", "the end-to-end tests need root");
}

/// Polls `probe` every 100 ms until it answers `Some`, for at most `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
