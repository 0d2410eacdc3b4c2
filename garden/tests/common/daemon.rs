//! A real gardend on a private socket and state directories, driven
//! through the garden-api client, with containers from the busybox test
//! rootfs; shared by the daemon's end-to-end tests.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use garden_api::client::{Client, OutputStreams};
use garden_api::types::{ContainerSpec, ProcessSpec, Properties};
use tokio::io::AsyncReadExt;

pub const GARDEND: &str = env!("CARGO_BIN_EXE_gardend");
pub const RUNTIME: &str = env!("CARGO_BIN_EXE_garden-runc");

/// A daemon with its own directories; killed and cleaned up on drop.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub client: Client,
}

impl Daemon {
    pub fn start() -> Daemon {
        super::assert_root();
        let dir = tempfile::Builder::new()
            .prefix("gardend-test-")
            .tempdir()
            .expect("tempdir");
        let mut d = Daemon {
            client: Client::unix(dir.path().join("garden.sock")),
            dir,
            child: None,
        };
        let p = d.dir.path();
        let config = format!(
            "depot = \"{p}/depot\"\n\
             [listen]\nsocket = \"{p}/garden.sock\"\n\
             [runtime]\nbinary = \"{RUNTIME}\"\nstate_root = \"{p}/runc\"\ncgroup_parent = \"garden-test-{pid}\"\n\
             [images]\nstore = \"{p}/images\"\n\
             [disk]\nkind = \"loop\"\nroot = \"{p}/volumes\"\n\
             [containers]\nstop_timeout = \"2s\"\n\
             {network}",
            p = p.display(),
            pid = std::process::id(),
            network = network_section(),
        );
        std::fs::write(p.join("garden.toml"), config).expect("config");
        d.spawn();
        d
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("gardend.log"))
            .expect("log");
        let _ = std::fs::remove_file(self.dir.path().join("garden.sock"));
        let child = Command::new(GARDEND)
            .arg("--config")
            .arg(self.dir.path().join("garden.toml"))
            .env("GARDEN_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn gardend");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.dir.path().join("garden.sock").exists() {
            assert!(
                Instant::now() < deadline,
                "gardend did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`, then a new daemon on the same directories.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gardend.log")).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

static DAEMONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A network of its own for each test daemon (table, interface prefixes,
/// a /22 of 10.253.0.0/16, 50 NetIn ports), never touching global sysctls.
fn network_section() -> String {
    let n = DAEMONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 64;
    format!(
        "[network]\npool = \"10.253.{third}.0/22\"\ntable = \"gdtest{pid}n{n}\"\n\
         bridge_prefix = \"tg{n}b-\"\nveth_prefix = \"tg{n}v-\"\nip_forward = false\n\
         idle_bridge_seconds = 0\nport_pool_start = {port}\nport_pool_size = 50\n\
         dns_servers = [\"192.0.2.53\"]\n",
        third = n * 4,
        pid = std::process::id(),
        port = 42000 + n * 50,
    )
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Destroy what is left through the API, then stop the daemon.
        // Our own runtime on our own thread: drop may run inside a test's.
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
        let _ = Command::new(GARDEND)
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
    }
}

pub fn busybox_spec(handle: &str) -> ContainerSpec {
    let mut spec = ContainerSpec {
        handle: handle.to_string(),
        ..ContainerSpec::default()
    };
    spec.image.uri = super::busybox_rootfs().display().to_string();
    spec
}

pub fn sh(script: &str) -> ProcessSpec {
    ProcessSpec {
        path: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        ..ProcessSpec::default()
    }
}

/// Runs `script` and returns (stdout, stderr, exit status).
pub async fn run(client: &Client, handle: &str, spec: ProcessSpec) -> (String, String, i32) {
    let mut p = client
        .run(handle, &spec, OutputStreams::BOTH)
        .await
        .expect("run");
    let mut out = p.take_stdout().expect("stdout");
    let mut err = p.take_stderr().expect("stderr");
    let (mut o, mut e) = (String::new(), String::new());
    let (r1, r2, status) = tokio::join!(
        out.read_to_string(&mut o),
        err.read_to_string(&mut e),
        p.wait()
    );
    r1.expect("read stdout");
    r2.expect("read stderr");
    (o, e, status.expect("exit status"))
}

pub fn unique(name: &str) -> String {
    format!("gd-{name}-{}", std::process::id())
}
