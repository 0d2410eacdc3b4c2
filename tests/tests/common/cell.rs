//! One cell on this machine: its own gardend (depot, images, volumes, runc
//! state, cgroup parent and network: nft table, link prefixes, address pool
//! and host ports) and its own `cell-agent run` with its own id, zone, key
//! and state directory. Dropping a cell kills the agent, destroys every
//! container of its garden, stops the daemon and removes its network,
//! mounts, cgroups and directories.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use garden_api::client::Client;
use garden_api::types::Properties;

use super::{binary, busybox_rootfs};

/// How a test cell is set up.
pub struct CellSpec {
    /// Which cell of the test (0, 1, ...): picks its network values.
    pub k: u32,
    /// Cell id.
    pub cell_id: String,
    /// Zone.
    pub zone: String,
    /// The controller's base URL.
    pub controller_url: String,
    /// The cell's own internal-API key.
    pub key: String,
    /// The stack name the busybox rootfs is offered as.
    pub stack: String,
}

/// A running cell: gardend and cell agent.
pub struct Cell {
    pub cell_id: String,
    pub garden: Client,
    dir: tempfile::TempDir,
    gardend: Option<Child>,
    agent: Option<Child>,
    cgroup_parent: String,
}

impl Cell {
    /// Starts the cell's gardend, then its agent.
    pub fn start(spec: &CellSpec) -> Cell {
        let dir = tempfile::Builder::new()
            .prefix("e2e-cell-")
            .tempdir()
            .expect("tempdir");
        // The containers' root user must reach the rootfs mounts below.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let cgroup_parent = format!("e2e-cell-{}-{}", std::process::id(), spec.k);
        let mut cell = Cell {
            cell_id: spec.cell_id.clone(),
            garden: Client::unix(dir.path().join("garden.sock")),
            dir,
            gardend: None,
            agent: None,
            cgroup_parent,
        };
        cell.start_gardend(spec.k);
        cell.start_agent(spec);
        cell
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start_gardend(&mut self, k: u32) {
        let p = self.dir.path().display().to_string();
        let pid = std::process::id();
        let config = format!(
            "depot = \"{p}/depot\"\n\
             [listen]\nsocket = \"{p}/garden.sock\"\n\
             [runtime]\nbinary = \"{runc}\"\nstate_root = \"{p}/runc\"\ncgroup_parent = \"{cg}\"\n\
             [images]\nstore = \"{p}/images\"\n\
             [disk]\nkind = \"loop\"\nroot = \"{p}/volumes\"\n\
             [containers]\nstop_timeout = \"2s\"\n\
             [network]\npool = \"10.250.{third}.0/22\"\ntable = \"mctest{pid}n{k}\"\n\
             bridge_prefix = \"tm{k}b-\"\nveth_prefix = \"tm{k}v-\"\nip_forward = false\n\
             idle_bridge_seconds = 0\nport_pool_start = {port}\nport_pool_size = 50\n\
             dns_servers = [\"192.0.2.53\"]\n",
            runc = binary("garden", "garden-runc").display(),
            cg = self.cgroup_parent,
            third = (k % 64) * 4,
            port = 47000 + (k % 20) * 50,
        );
        std::fs::write(self.path("garden.toml"), config).expect("garden config");
        let log = std::fs::File::create(self.path("gardend.log")).expect("log");
        let child = Command::new(binary("garden", "gardend"))
            .arg("--config")
            .arg(self.path("garden.toml"))
            .env("GARDEN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn gardend");
        self.gardend = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.path("garden.sock").exists() {
            assert!(
                Instant::now() < deadline,
                "gardend did not start: {}",
                self.log("gardend.log")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn start_agent(&mut self, spec: &CellSpec) {
        let d = self.dir.path().display().to_string();
        std::fs::write(self.path("cell.key"), format!("{}\n", spec.key)).expect("key");
        let config = format!(
            "cell_id = \"{id}\"\nzone = \"{zone}\"\nmemory_mb = 1024\ndisk_mb = 4096\n\
             containers = 10\ngarden_socket = \"{d}/garden.sock\"\n\
             controller_url = \"{url}\"\ncell_key_file = \"{d}/cell.key\"\n\
             listen = \"127.0.0.1:0\"\npresence_ttl = \"3s\"\npresence_refresh = \"1s\"\n\
             metrics_interval = \"1s\"\nstate_dir = \"{d}/agent-state\"\nowner = \"{id}\"\n\
             [stacks]\n{stack} = \"{rootfs}\"\n\
             [executor]\nstop_grace = \"2s\"\nstartup_interval = \"200ms\"\n\
             liveness_interval = \"500ms\"\n",
            id = spec.cell_id,
            zone = spec.zone,
            url = spec.controller_url,
            stack = spec.stack,
            rootfs = busybox_rootfs().display(),
        );
        std::fs::write(self.path("agent.toml"), config).expect("agent config");
        let log = std::fs::File::create(self.path("agent.log")).expect("log");
        let child = Command::new(binary("cell-agent", "cell-agent"))
            .args(["run", "--config"])
            .arg(self.path("agent.toml"))
            .env("CELL_AGENT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn cell-agent");
        self.agent = Some(child);
    }

    /// `kill -9` of the agent only: its gardend and containers stay, its
    /// presence is no longer refreshed.
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            child.kill().expect("kill -9 cell-agent");
            let _ = child.wait();
        }
    }

    /// Container handles in this cell's garden.
    pub async fn containers(&self) -> Vec<String> {
        self.garden
            .list(&Properties::new())
            .await
            .expect("garden list")
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// The agent's and gardend's logs (printed when a test fails).
    pub fn logs(&self) -> String {
        format!(
            "--- {} agent log ---\n{}\n--- {} gardend log ---\n{}",
            self.cell_id,
            self.log("agent.log"),
            self.cell_id,
            self.log("gardend.log")
        )
    }

    fn destroy_containers(&self) {
        let client = self.garden.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Runtime::new() else {
                return;
            };
            rt.block_on(async {
                if let Ok(handles) = client.list(&Properties::new()).await {
                    for h in handles {
                        let _ = client.destroy(&h).await;
                    }
                }
            });
        })
        .join();
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.kill_agent();
        self.destroy_containers();
        if let Some(mut child) = self.gardend.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The daemon's nft table and links go too.
        let _ = Command::new(binary("garden", "gardend"))
            .arg("--config")
            .arg(self.path("garden.toml"))
            .arg("--teardown-network")
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.path("volumes"))
            .stderr(Stdio::null())
            .status();
        remove_cgroups(&self.cgroup_parent);
    }
}

fn remove_cgroups(parent: &str) {
    let root = Path::new("/sys/fs/cgroup");
    if let Ok(hierarchies) = std::fs::read_dir(root) {
        for h in hierarchies.flatten() {
            let _ = std::fs::remove_dir(h.path().join(parent));
        }
    }
    let _ = std::fs::remove_dir(root.join(parent));
}

/// Starts one cell per `k` (cell ids `<prefix>-<pid>-cell<k>`, zones
/// `z<k>`, the [`super::controller::STACK`] stack), each with its own key
/// from `ctl`, and waits until all of them are present.
pub async fn start_cells(
    ctl: &super::controller::Ctl,
    prefix: &str,
    ks: std::ops::Range<u32>,
) -> Vec<Cell> {
    let pid = std::process::id();
    let mut cells = Vec::new();
    for k in ks {
        let cell_id = format!("{prefix}-{pid}-cell{k}");
        let spec = CellSpec {
            k,
            key: ctl.cell_key(&cell_id).await,
            cell_id,
            zone: format!("z{k}"),
            controller_url: ctl.base.clone(),
            stack: super::controller::STACK.into(),
        };
        cells.push(Cell::start(&spec));
    }
    let ids: Vec<String> = cells.iter().map(|c| c.cell_id.clone()).collect();
    super::wait_for("every cell present", Duration::from_secs(60), || async {
        let present = ctl.present_cells().await;
        ids.iter().all(|id| present.contains(id)).then_some(())
    })
    .await;
    cells
}
