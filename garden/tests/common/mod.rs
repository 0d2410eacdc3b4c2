//! Shared helpers of the privileged runtime tests: a bundle on the busybox
//! test rootfs (as overlay lower layer, so the shared rootfs stays pristine),
//! a private state root, and `garden-runc` invocations.
//!
//! Every test uses unique ids and temp dirs and force-deletes its container
//! on drop, so a failing test leaves nothing behind.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

pub const RUNTIME: &str = env!("CARGO_BIN_EXE_garden-runc");
pub const PROBE: &str = env!("CARGO_BIN_EXE_garden-probe");

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The busybox rootfs built by `rootfs/build.sh busybox`.
pub fn busybox_rootfs() -> PathBuf {
    let p = std::env::var_os("GARDEN_TEST_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../rootfs/out/busybox"));
    assert!(
        p.join("bin/busybox").exists(),
        "test rootfs missing at {}: run `rootfs/build.sh busybox` (or `make test`)",
        p.display()
    );
    std::fs::canonicalize(p).expect("canonical rootfs path")
}

pub fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root (real namespaces, cgroups and mounts)"
    );
}

/// A bundle and a state root of one test.
pub struct TestBundle {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub config: Value,
}

impl TestBundle {
    pub fn new(name: &str) -> TestBundle {
        assert_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("gt-{name}-{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("garden-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("rootfs")).expect("rootfs dir");
        let config = base_config(&busybox_rootfs(), dir.path());
        TestBundle { dir, id, config }
    }

    /// Uses a private copy of the busybox rootfs as a plain directory rootfs
    /// instead of the overlay.
    pub fn with_copied_rootfs(mut self) -> Self {
        let dst = self.path().join("rootfs");
        let status = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", busybox_rootfs().display()))
            .arg(&dst)
            .status()
            .expect("cp");
        assert!(status.success());
        if let Some(a) = self.config["annotations"].as_object_mut() {
            a.retain(|k, _| !k.starts_with("garden.rootfs."));
        }
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_root(&self) -> PathBuf {
        self.path().join("state")
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    pub fn sh(self, script: &str) -> Self {
        self.args(&["sh", "-c", script])
    }

    pub fn edit(mut self, f: impl FnOnce(&mut Value)) -> Self {
        f(&mut self.config);
        self
    }

    /// Bind-mounts the probe binary at /probe and the host's libraries it
    /// links against, read-only.
    pub fn with_probe(mut self) -> Self {
        let mounts = self.config["mounts"].as_array_mut().expect("mounts");
        mounts.push(json!({"destination": "/probe", "type": "bind", "source": PROBE, "options": ["rbind", "ro"]}));
        for lib in ["/lib/x86_64-linux-gnu", "/lib64"] {
            if Path::new(lib).exists() {
                mounts.push(json!({"destination": lib, "type": "bind", "source": lib, "options": ["rbind", "ro"]}));
            }
        }
        self
    }

    pub fn write(&self) {
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).expect("json"),
        )
        .expect("write config");
    }

    /// `garden-runc --root <state> <args...>`.
    pub fn runtime(&self, args: &[&str]) -> Output {
        Command::new(RUNTIME)
            .arg("--root")
            .arg(self.state_root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn garden-runc")
    }

    /// Writes the config and runs the container to completion.
    pub fn run(&self) -> Output {
        self.write();
        let bundle = self.path().to_str().expect("utf8").to_string();
        self.runtime(&["run", "--bundle", &bundle, &self.id])
    }

    /// Runs the container to completion, which must succeed; its stdout.
    pub fn run_ok(&self) -> String {
        let out = self.run();
        assert!(
            out.status.success(),
            "exit {:?}: {}",
            out.status.code(),
            stderr(&out)
        );
        stdout(&out)
    }

    /// `create`. The container's init inherits create's stdout and stderr
    /// (as with runc), so they go to files: pipes would stay open until the
    /// container ends.
    pub fn create(&self) -> Output {
        self.create_with(&[])
    }

    /// `create` with extra flags before the id.
    pub fn create_with(&self, extra: &[&str]) -> Output {
        self.write();
        self.create_written(extra)
    }

    /// `create` of the config.json already written (concurrent creates must
    /// not rewrite it under each other).
    pub fn create_written(&self, extra: &[&str]) -> Output {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let out_path = self.path().join(format!("create-{n}.out"));
        let err_path = self.path().join(format!("create-{n}.err"));
        let status = Command::new(RUNTIME)
            .arg("--root")
            .arg(self.state_root())
            .args(["create", "--bundle"])
            .arg(self.path())
            .args(extra)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).expect("create.out"))
            .stderr(std::fs::File::create(&err_path).expect("create.err"))
            .status()
            .expect("spawn garden-runc");
        Output {
            status,
            stdout: std::fs::read(&out_path).unwrap_or_default(),
            stderr: std::fs::read(&err_path).unwrap_or_default(),
        }
    }

    pub fn state(&self) -> Value {
        let out = self.runtime(&["state", &self.id]);
        assert!(out.status.success(), "state failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("state json")
    }

    /// The container's host pids (`ps`), polled (about 2 s at most) until
    /// `enough` says they are what the test waits for; the last answer.
    pub fn ps_until(&self, enough: impl Fn(&[i64]) -> bool) -> Vec<i64> {
        let mut pids = Vec::new();
        for _ in 0..100 {
            let out = self.runtime(&["ps", "--format", "json", &self.id]);
            pids = serde_json::from_slice(&out.stdout).expect("ps json");
            if enough(&pids) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        pids
    }

    /// Waits until the container is stopped (bounded).
    pub fn wait_stopped(&self) -> Value {
        for _ in 0..500 {
            let s = self.state();
            if s["status"] == "stopped" {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("container {} did not stop", self.id);
    }

    /// The container's cgroup directory in one v1 hierarchy (or v2).
    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        let v1 = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join("garden")
            .join(&self.id);
        if Path::new("/sys/fs/cgroup").join(controller).exists() {
            v1
        } else {
            Path::new("/sys/fs/cgroup/garden").join(&self.id)
        }
    }

    /// Asserts that nothing of the container is left on the host.
    pub fn assert_nothing_left(&self) {
        assert!(
            !self.state_root().join(&self.id).exists(),
            "state directory left behind"
        );
        for c in ["memory", "pids", "cpu", "devices", "freezer"] {
            assert!(!self.cgroup_dir(c).exists(), "cgroup {c} left behind");
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let p = self.path().display().to_string();
        assert!(!mounts.contains(&p), "a mount under {p} leaked to the host");
    }
}

impl Drop for TestBundle {
    fn drop(&mut self) {
        let _ = self.runtime(&["delete", "--force", &self.id]);
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// runc's default spec, plus a cgroup namespace, our overlay annotations
/// and the busybox PATH.
fn base_config(lower: &Path, bundle: &Path) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["true"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "garden-test",
        "annotations": {
            "garden.rootfs.lower": lower.display().to_string(),
            "garden.rootfs.upper": bundle.join("upper").display().to_string(),
            "garden.rootfs.work": bundle.join("work").display().to_string()
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}
pub mod daemon;
