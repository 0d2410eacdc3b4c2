//! A real gardend on private directories and the busybox rootfs, and an
//! executor on it with short intervals. Everything a test creates (garden
//! containers, the daemon, its mounts and cgroups, temp dirs) goes away on
//! drop, also when the test fails.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cell_agent::executor::{
    ChannelLogSink, Container, Event, Executor, ExecutorConfig, LogLine, Resources, RunRequest,
};
use diego::models::action::{Action, RunAction};
use garden_api::client::Client;
use garden_api::types::Properties;
use tokio::sync::{broadcast, mpsc};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique container guid for this test process.
pub fn guid(name: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("ex-{name}-{}-{n}", std::process::id())
}

/// The busybox rootfs built by `make rootfs`.
pub fn busybox_rootfs() -> String {
    let p = std::env::var_os("GARDEN_TEST_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../rootfs/out/busybox"));
    assert!(
        p.join("bin/busybox").exists(),
        "test rootfs missing at {}: run `make rootfs`",
        p.display()
    );
    std::fs::canonicalize(p)
        .expect("canonical rootfs path")
        .display()
        .to_string()
}

/// `gardend` and `garden-runc`: `$GARDEN_BIN`, else beside this test's
/// target directory, built there with cargo when missing.
fn garden_binaries() -> (PathBuf, PathBuf) {
    let dir = match std::env::var_os("GARDEN_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("test exe");
            exe.parent()
                .and_then(Path::parent)
                .expect("target profile dir")
                .to_owned()
        }
    };
    let (gardend, runc) = (dir.join("gardend"), dir.join("garden-runc"));
    if !gardend.exists() || !runc.exists() {
        let release = dir.ends_with("release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-p",
            "garden",
            "--bin",
            "gardend",
            "--bin",
            "garden-runc",
        ]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build -p garden");
        assert!(status.success(), "building gardend failed");
    }
    assert!(
        gardend.exists() && runc.exists(),
        "gardend/garden-runc not found in {} (set GARDEN_BIN)",
        dir.display()
    );
    (gardend, runc)
}

pub fn assert_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "these tests need root (gardend creates real containers)"
    );
}

/// A gardend of one test.
pub struct Garden {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub client: Client,
    cgroup_parent: String,
}

impl Garden {
    pub fn start() -> Garden {
        assert_root();
        let (gardend, runc) = garden_binaries();
        let dir = tempfile::Builder::new()
            .prefix("executor-test-")
            .tempdir()
            .expect("tempdir");
        // The container's root user (maximus) must reach the rootfs mount.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let p = dir.path().display().to_string();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let cgroup_parent = format!("executor-test-{}-{n}", std::process::id());
        let config = format!(
            "depot = \"{p}/depot\"\n\
             [listen]\nsocket = \"{p}/garden.sock\"\n\
             [runtime]\nbinary = \"{runc}\"\nstate_root = \"{p}/runc\"\ncgroup_parent = \"{cgroup_parent}\"\n\
             [images]\nstore = \"{p}/images\"\n\
             [disk]\nkind = \"loop\"\nroot = \"{p}/volumes\"\n\
             [containers]\nstop_timeout = \"2s\"\n\
             [network]\npool = \"10.252.{third}.0/22\"\ntable = \"extest{pid}n{m}\"\n\
             bridge_prefix = \"te{m}b-\"\nveth_prefix = \"te{m}v-\"\nip_forward = false\n\
             idle_bridge_seconds = 0\nport_pool_start = {port}\nport_pool_size = 50\n\
             dns_servers = [\"192.0.2.53\"]\n",
            runc = runc.display(),
            third = (n % 64) * 4,
            m = n % 64,
            pid = std::process::id(),
            port = 43000 + (n % 64) * 50,
        );
        std::fs::write(dir.path().join("garden.toml"), config).expect("config");
        let log = std::fs::File::create(dir.path().join("gardend.log")).expect("log");
        let child = Command::new(gardend)
            .arg("--config")
            .arg(dir.path().join("garden.toml"))
            .env("GARDEN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn gardend");
        let g = Garden {
            client: Client::unix(dir.path().join("garden.sock")),
            dir,
            child: Some(child),
            cgroup_parent,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !g.dir.path().join("garden.sock").exists() {
            assert!(
                Instant::now() < deadline,
                "gardend did not start: {}",
                g.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        g
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gardend.log")).unwrap_or_default()
    }

    /// Brings up `lo` in a container's network namespace from the host.
    /// Until garden networking (issue 5) does it, a new network namespace
    /// has its loopback down and nothing inside can reach its own ports.
    pub fn loopback_up(&self, handle: &str) -> bool {
        let state = self.dir.path().join("runc").join(handle).join("state.json");
        let Ok(text) = std::fs::read_to_string(state) else {
            return false;
        };
        let Some(pid) = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["pid"].as_u64())
        else {
            return false;
        };
        Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "-n",
                "ip",
                "link",
                "set",
                "lo",
                "up",
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Keeps trying [`Self::loopback_up`] in the background until it worked.
    pub fn loopback_up_soon(self: &Arc<Self>, handle: &str) {
        let garden = self.clone();
        let handle = handle.to_owned();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline && !garden.loopback_up(&handle) {
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    }
}

impl Drop for Garden {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                if let Ok(handles) = client.list(&Properties::new()).await {
                    for h in handles {
                        let _ = client.destroy(&h).await;
                    }
                }
            });
        })
        .join();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The daemon's nft table and links go too.
        let _ = Command::new(garden_binaries().0)
            .arg("--config")
            .arg(self.dir.path().join("garden.toml"))
            .arg("--teardown-network")
            .stderr(Stdio::null())
            .status();
        if std::thread::panicking() {
            eprintln!("--- gardend log ---\n{}", self.log());
        }
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("volumes"))
            .stderr(Stdio::null())
            .status();
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let _ = std::fs::remove_dir(h.path().join(&self.cgroup_parent));
            }
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&self.cgroup_parent));
    }
}

/// An executor on a test garden, with its log lines and events.
pub struct Cell {
    pub garden: Arc<Garden>,
    pub executor: Executor,
    pub events: broadcast::Receiver<Event>,
    pub logs: mpsc::Receiver<LogLine>,
    pub scratch: tempfile::TempDir,
}

/// Short intervals so the whole suite stays quick.
pub fn test_config(scratch: &Path) -> ExecutorConfig {
    ExecutorConfig {
        owner: format!("executor-test-{}", std::process::id()),
        healthcheck_binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_cell-agent"))),
        stop_grace: Duration::from_secs(2),
        startup_interval: Duration::from_millis(200),
        liveness_interval: Duration::from_millis(500),
        metrics_interval: Duration::from_millis(300),
        cache_dir: scratch.join("cache"),
        temp_dir: scratch.join("tmp"),
        ..ExecutorConfig::default()
    }
}

impl Cell {
    pub fn start() -> Cell {
        Cell::with_config(|_| {})
    }

    pub fn with_config(change: impl FnOnce(&mut ExecutorConfig)) -> Cell {
        let garden = Arc::new(Garden::start());
        let scratch = tempfile::tempdir().expect("scratch");
        let mut config = test_config(scratch.path());
        change(&mut config);
        let (sink, logs) = ChannelLogSink::new(10_000);
        let executor =
            Executor::new(config, garden.client.clone(), Arc::new(sink)).expect("executor");
        let events = executor.subscribe();
        Cell {
            garden,
            executor,
            events,
            logs,
            scratch,
        }
    }

    /// Reserves with small resources and runs `request`.
    pub fn start_container(&self, guid: &str, request: RunRequest) {
        self.executor
            .reserve(guid, small(), BTreeMap::new())
            .expect("reserve");
        self.executor.run(guid, request).expect("run");
    }

    /// Waits for the next event about `guid` that `pick` accepts.
    pub async fn wait_for<T>(
        &mut self,
        guid: &str,
        limit: Duration,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no matching event for {guid} within {limit:?}; container: {:?}",
                        self.executor.get(guid)
                    )
                })
                .expect("event channel");
            let about = match &event {
                Event::Reserved(c) | Event::Running(c) | Event::Completed(c) => &c.guid,
                Event::Health { guid, .. } | Event::Deleted { guid } => guid,
            };
            if about == guid {
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
        }
    }

    /// Waits for `guid` to complete; returns its record.
    pub async fn completed(&mut self, guid: &str, limit: Duration) -> Container {
        self.wait_for(guid, limit, |e| match e {
            Event::Completed(c) => Some(c.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for `guid` to be running.
    pub async fn running(&mut self, guid: &str, limit: Duration) -> Container {
        self.wait_for(guid, limit, |e| match e {
            Event::Running(c) => Some(c.clone()),
            Event::Completed(c) => panic!("completed instead of running: {:?}", c.result),
            _ => None,
        })
        .await
    }

    /// Log messages received so far.
    pub fn log_messages(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.logs.try_recv() {
            out.push(line.message);
        }
        out
    }
}

pub fn small() -> Resources {
    Resources {
        memory_mb: 64,
        disk_mb: 64,
        max_pids: 0,
    }
}

/// `sh -c script`.
pub fn sh(script: &str) -> Action {
    Action::Run(RunAction {
        path: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        ..RunAction::default()
    })
}

pub fn request(action: Action) -> RunRequest {
    RunRequest::new(busybox_rootfs(), action)
}

/// Answers 200 until /tmp/sick exists, then 503.
pub const HTTP_SERVER: &str = r#"
cat > /tmp/answer <<'EOF'
#!/bin/sh
read request
if [ -e /tmp/sick ]; then
  printf 'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n'
else
  printf 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'
fi
EOF
chmod +x /tmp/answer
exec nc -ll -p 8081 -e /tmp/answer
"#;

/// An http check of `/health` on `port`.
pub fn http_check(port: u16) -> Option<diego::models::check::CheckDefinition> {
    Some(diego::models::check::CheckDefinition {
        checks: vec![diego::models::check::Check::Http {
            port,
            path: "/health".into(),
            request_timeout_ms: 0,
        }],
        log_source: String::new(),
    })
}

/// Makes [`HTTP_SERVER`] in container `handle` answer 503.
pub async fn make_sick(client: &Client, handle: &str) {
    let spec = garden_api::types::ProcessSpec {
        path: "/bin/touch".into(),
        args: vec!["/tmp/sick".into()],
        ..Default::default()
    };
    let status = client
        .run(handle, &spec, garden_api::client::OutputStreams::NONE)
        .await
        .expect("run touch")
        .wait()
        .await
        .expect("status");
    assert_eq!(status, 0);
}
