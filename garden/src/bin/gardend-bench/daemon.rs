//! A private gardend for one bench run, and everything it leaves behind.
//!
//! ```text
//! /tmp/gardend-bench-<pid>-<nanos>/        depot, images, volumes, garden.toml, gardend.log, socket
//! /dev/shm/gardend-bench-<pid>-<nanos>/    garden-runc's state root (tmpfs, as /run on hosts)
//! cgroup parent gardend-bench-<pid>-<nanos> in every hierarchy
//! ```
//!
//! Dropping a [`Daemon`] destroys its containers through the API, kills the
//! daemon, force-deletes what the API could not, unmounts whatever is left
//! under its directories (loop volumes and overlays; the loop devices are
//! autoclear, so they go with their mounts), removes its cgroups and, unless
//! asked to keep them, its directories.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use garden_api::client::Client;
use garden_api::types::Properties;
use nix::mount::{umount2, MntFlags};

/// How long gardend may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What the daemon runs.
pub struct Binaries {
    pub gardend: PathBuf,
    pub runtime: PathBuf,
}

/// A running gardend on private directories.
pub struct Daemon {
    /// Unique per run: names the directories and the cgroup parent.
    name: String,
    dir: PathBuf,
    state_root: PathBuf,
    runtime: PathBuf,
    child: Option<Child>,
    client: Client,
    keep_dir: bool,
    /// For `--teardown-network` at the end.
    gardend: PathBuf,
}

impl Daemon {
    /// Writes the config and starts gardend, returning once it answers a ping.
    pub async fn start(bins: &Binaries, keep_dir: bool) -> Result<Daemon> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("gardend-bench-{}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let shm = Path::new("/dev/shm");
        let state_root = if shm.is_dir() {
            shm.join(&name)
        } else {
            dir.join("runc")
        };
        let mut daemon = Daemon {
            client: Client::unix(dir.join("garden.sock")),
            name,
            dir,
            state_root,
            runtime: bins.runtime.clone(),
            child: None,
            keep_dir,
            gardend: bins.gardend.clone(),
        };
        // create_dir (not create_dir_all) fails if the name is taken.
        fs::create_dir(&daemon.dir)
            .with_context(|| format!("creating {}", daemon.dir.display()))?;
        daemon.write_config()?;
        daemon.spawn(&bins.gardend)?;
        daemon.wait_ready().await?;
        Ok(daemon)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// gardend's stderr: JSON log lines.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("gardend.log")
    }

    fn write_config(&self) -> Result<()> {
        let d = self.dir.display();
        let config = format!(
            "depot = \"{d}/depot\"\n\
             [listen]\nsocket = \"{d}/garden.sock\"\n\
             [runtime]\nbinary = \"{runtime}\"\nstate_root = \"{state}\"\ncgroup_parent = \"{name}\"\n\
             [images]\nstore = \"{d}/images\"\n\
             [disk]\nkind = \"loop\"\nroot = \"{d}/volumes\"\n\
             [containers]\nstop_timeout = \"2s\"\n\
             [network]\npool = \"10.251.0.0/22\"\ntable = \"gdbench{pid}\"\n\
             bridge_prefix = \"gbb-\"\nveth_prefix = \"gbv-\"\nip_forward = false\n\
             port_pool_start = 44000\nport_pool_size = 1000\n\
             dns_servers = [\"192.0.2.53\"]\n",
            pid = std::process::id(),
            runtime = self.runtime.display(),
            state = self.state_root.display(),
            name = self.name,
        );
        let path = self.dir.join("garden.toml");
        fs::write(&path, config).with_context(|| format!("writing {}", path.display()))
    }

    fn spawn(&mut self, gardend: &Path) -> Result<()> {
        let log_path = self.log_path();
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(gardend)
            .arg("--config")
            .arg(self.dir.join("garden.toml"))
            .env("GARDEN_LOG", "info")
            .env("GARDEN_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: a Ctrl-C at the terminal must not stop
            // it before we have destroyed its containers.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", gardend.display()))?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("checking on gardend")? {
                    bail!(
                        "gardend exited ({status}) while starting:\n{}",
                        self.log_tail()
                    );
                }
            }
            if self.client.ping().await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "gardend did not answer within {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last lines of gardend's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Destroys every container through the API (best effort, bounded).
    fn destroy_all(&self) {
        let client = self.client.clone();
        // Our own runtime on our own thread: drop may run inside the bench's.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let all = async {
                    if let Ok(handles) = client.list(&Properties::new()).await {
                        for h in handles {
                            if let Err(e) = client.destroy(&h).await {
                                eprintln!("gardend-bench: destroying {h}: {e}");
                            }
                        }
                    }
                };
                if tokio::time::timeout(Duration::from_secs(120), all)
                    .await
                    .is_err()
                {
                    eprintln!("gardend-bench: destroying leftovers timed out");
                }
            });
        })
        .join();
    }

    /// `garden-runc delete --force` of whatever the API did not destroy.
    fn force_delete_leftovers(&self) {
        let Ok(entries) = fs::read_dir(&self.state_root) else {
            return;
        };
        for entry in entries.flatten().filter(|e| e.path().is_dir()) {
            eprintln!(
                "gardend-bench: force-deleting leftover container {}",
                entry.file_name().to_string_lossy()
            );
            let _ = Command::new(&self.runtime)
                .arg("--root")
                .arg(&self.state_root)
                .args(["delete", "--force"])
                .arg(entry.file_name())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Removes the cgroup parent (and anything left in it) everywhere.
    fn remove_cgroups(&self) {
        let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        let mut parents = vec![Path::new("/sys/fs/cgroup").join(&self.name)];
        parents.extend(hierarchies.flatten().map(|h| h.path().join(&self.name)));
        for parent in parents.iter().filter(|p| p.is_dir()) {
            if let Ok(children) = fs::read_dir(parent) {
                for child in children.flatten().filter(|c| c.path().is_dir()) {
                    let _ = fs::remove_dir(child.path());
                }
            }
            if let Err(e) = fs::remove_dir(parent) {
                eprintln!("gardend-bench: removing {}: {e}", parent.display());
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.destroy_all();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::process::Command::new(&self.gardend)
            .arg("--config")
            .arg(self.dir.join("garden.toml"))
            .arg("--teardown-network")
            .stderr(std::process::Stdio::null())
            .status();
        self.force_delete_leftovers();
        let mounted = unmount_under(&[&self.dir, &self.state_root]);
        self.remove_cgroups();
        if mounted {
            eprintln!(
                "gardend-bench: mounts remain under {}; not removing it",
                self.dir.display()
            );
            return;
        }
        if self.keep_dir {
            eprintln!("gardend-bench: kept {}", self.dir.display());
        } else {
            remove_dir(&self.dir);
        }
        if self.state_root.starts_with("/dev/shm") {
            remove_dir(&self.state_root);
        }
    }
}

fn remove_dir(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("gardend-bench: removing {}: {e}", dir.display());
        }
    }
}

/// Unmounts (lazily, deepest first) every mount at or below `dirs`;
/// returns whether any is still there afterwards.
fn unmount_under(dirs: &[&Path]) -> bool {
    let mut points = mounts_under(dirs);
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for point in &points {
        eprintln!("gardend-bench: unmounting leftover {}", point.display());
        if let Err(e) = umount2(point, MntFlags::MNT_DETACH) {
            eprintln!("gardend-bench: unmounting {}: {e}", point.display());
        }
    }
    !mounts_under(dirs).is_empty()
}

/// Mount points at or below `dirs`, from /proc/self/mountinfo (field 5;
/// our directory names never need its octal escapes).
fn mounts_under(dirs: &[&Path]) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| dirs.iter().any(|d| p.starts_with(d)))
        .collect()
}
