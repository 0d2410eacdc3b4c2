//! controller-lite with the Diego scheduler (BBS, auctioneer, convergence),
//! started in this process through `controller_lite::server::start`, the
//! function `controller-lite serve` runs, on 127.0.0.1 with its own data
//! directory; and a droplet for the platform's buildpack recipe, served
//! over loopback HTTP.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use controller_lite::config::Config;
use controller_lite::scheduler::{BlobLocation, DesiredLrp, HealthCheck, Scheduler};
use controller_lite::server::{self, Controller};
use sha2::{Digest, Sha256};

use super::binary;

/// The stack the cells offer (their busybox rootfs) and apps ask for.
pub const STACK: &str = "cflinuxfs4";

/// The password of the controller's `admin` user.
pub const ADMIN_PASSWORD: &str = "admin-pw";

/// A running controller; shut down on [`Ctl::stop`] (or with the runtime).
pub struct Ctl {
    ctl: Option<Controller>,
    dir: tempfile::TempDir,
    pub base: String,
}

/// One RUNNING instance as the BBS records it.
#[derive(Debug, Clone)]
pub struct Running {
    pub index: i64,
    pub cell_id: String,
    pub address: String,
    pub port: u16,
}

impl Ctl {
    /// Presence TTL `ttl_secs`; convergence every `convergence_secs`.
    pub async fn start(ttl_secs: u64, convergence_secs: u64) -> Ctl {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        // The staging lifecycles cells download, built beside the tests.
        let lifecycle_dir = binary("lifecycle", "lifecycle-builder")
            .parent()
            .expect("profile dir")
            .to_owned();
        binary("lifecycle", "lifecycle-docker-builder");
        let text = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
             [auth]\nargon2_memory_kib = 64\nargon2_iterations = 1\n\
             [[auth.users]]\nname = \"admin\"\npassword = \"{ADMIN_PASSWORD}\"\nadmin = true\n\
             [staging]\nlifecycle_dir = \"{}\"\nmemory_mb = 256\ndisk_mb = 256\n\
             [scheduler]\nkind = \"diego\"\npresence_ttl_secs = {ttl_secs}\n\
             convergence_interval_secs = {convergence_secs}\n",
            dir.path().join("data").display(),
            lifecycle_dir.display(),
        );
        std::fs::write(dir.path().join("controller.toml"), &text).expect("config file");
        let config = Config::parse(&text).expect("controller config");
        let ctl = server::start(config).await.expect("controller start");
        let base = ctl.state.base_url.clone();
        Ctl {
            ctl: Some(ctl),
            dir,
            base,
        }
    }

    fn controller(&self) -> &Controller {
        self.ctl.as_ref().expect("controller running")
    }

    fn scheduler(&self) -> Arc<dyn Scheduler> {
        self.controller().state.scheduler.clone()
    }

    /// Issues `cell_id`'s own internal-API key with `controller-lite
    /// cell-key` on this controller's configuration (it works while the
    /// controller runs).
    pub async fn cell_key(&self, cell_id: &str) -> String {
        let out = tokio::process::Command::new(binary("controller-lite", "controller-lite"))
            .args(["cell-key", "--config"])
            .arg(self.dir.path().join("controller.toml"))
            .arg(cell_id)
            .output()
            .await
            .expect("run controller-lite cell-key");
        assert!(
            out.status.success(),
            "controller-lite cell-key {cell_id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = String::from_utf8(out.stdout).expect("utf-8 key");
        let key = key.trim().to_owned();
        assert!(!key.is_empty(), "no key printed for {cell_id}");
        key
    }

    /// Cells with a live presence.
    pub async fn present_cells(&self) -> Vec<String> {
        self.controller()
            .state
            .db
            .read(|c| {
                let mut stmt = c.prepare("SELECT cell_id FROM bbs_cells ORDER BY cell_id")?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .expect("read cells")
    }

    /// Desires `lrp` (as starting an app does).
    pub async fn desire(&self, lrp: DesiredLrp) {
        let s = self.scheduler();
        tokio::task::spawn_blocking(move || s.desire_lrp(&lrp))
            .await
            .expect("join")
            .expect("desire");
    }

    /// Scales the app process `process_guid` to `instances`.
    pub async fn scale(&self, process_guid: &str, instances: i64) {
        let s = self.scheduler();
        let pg = process_guid.to_owned();
        tokio::task::spawn_blocking(move || s.scale_lrp(&pg, instances))
            .await
            .expect("join")
            .expect("scale");
    }

    /// The diego process guid of app `name`'s web process as it is now
    /// (a new version after a restart is a new guid).
    pub async fn web_process(&self, name: &str) -> String {
        let name = name.to_owned();
        self.controller()
            .state
            .db
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT p.guid || '-' || p.version FROM processes p \
                     JOIN apps a ON a.guid = p.app_guid WHERE a.name = ? AND p.type = 'web'",
                    [name],
                    |r| r.get::<_, String>(0),
                )?)
            })
            .await
            .expect("the app's web process")
    }

    /// RUNNING instances of every version of app `name`'s web process.
    pub async fn running_all_versions(&self, name: &str) -> i64 {
        let name = name.to_owned();
        self.controller()
            .state
            .db
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM bbs_actual_lrps WHERE state = 'RUNNING' \
                     AND process_guid LIKE (SELECT p.guid || '-%' FROM processes p \
                     JOIN apps a ON a.guid = p.app_guid WHERE a.name = ? AND p.type = 'web')",
                    [name],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .await
            .expect("RUNNING records of the app")
    }

    /// RUNNING instances of the diego process `diego_guid`, by index.
    pub async fn running(&self, diego_guid: &str) -> Vec<Running> {
        let pg = diego_guid.to_owned();
        let rows: Vec<(i64, String, String)> = self
            .controller()
            .state
            .db
            .read(move |c| {
                let mut stmt = c.prepare(
                    "SELECT idx, cell_id, net_info FROM bbs_actual_lrps \
                     WHERE process_guid = ? AND state = 'RUNNING' ORDER BY idx",
                )?;
                let rows = stmt.query_map([pg], |r| {
                    Ok((
                        r.get(0)?,
                        r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    ))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .expect("read actual LRPs");
        rows.into_iter()
            .map(|(index, cell_id, net)| {
                let net: serde_json::Value = serde_json::from_str(&net).unwrap_or_default();
                let port = net["ports"][0]["host_port"].as_u64().unwrap_or(0);
                Running {
                    index,
                    cell_id,
                    address: net["address"].as_str().unwrap_or_default().to_owned(),
                    port: u16::try_from(port).unwrap_or(0),
                }
            })
            .collect()
    }

    /// `(address, port)` of every routable instance of `diego_guid`, as
    /// the routing table (`GET /internal/v1/routes`) lists them.
    pub async fn routes(&self, diego_guid: &str) -> Vec<(String, u16)> {
        let bbs = self
            .controller()
            .state
            .bbs
            .clone()
            .expect("diego scheduler");
        let table = tokio::task::spawn_blocking(move || bbs.routing_table())
            .await
            .expect("join")
            .expect("routing table");
        let mut out: Vec<(String, u16)> = table
            .into_iter()
            .filter(|r| r.process_guid == diego_guid)
            .map(|r| (r.address, r.port))
            .collect();
        out.sort();
        out
    }

    /// Stops the controller's server and scheduler.
    pub async fn stop(mut self) {
        if let Some(c) = self.ctl.take() {
            c.shutdown().await;
        }
    }
}

/// A buildpack app process on [`STACK`] whose droplet is `droplet`.
pub fn app_process(
    process_guid: &str,
    instances: i64,
    droplet: BlobLocation,
    command: &str,
) -> DesiredLrp {
    DesiredLrp {
        process_guid: process_guid.into(),
        app_guid: format!("app-{process_guid}"),
        process_type: "web".into(),
        version: "v1".into(),
        instances,
        memory_mb: 64,
        disk_mb: 64,
        stack: Some(STACK.into()),
        droplet: Some(droplet),
        docker_image: None,
        start_command: command.into(),
        env: BTreeMap::new(),
        ports: vec![8080],
        health_check: HealthCheck {
            kind: "port".into(),
            endpoint: None,
            timeout_secs: None,
            invocation_timeout_secs: None,
        },
        routes: vec![format!("{process_guid}.apps.lite.internal")],
        log_source_id: process_guid.into(),
        egress_rules: Vec::new(),
    }
}

/// Serves one file at every path on 127.0.0.1 from a thread (until the
/// test process ends); answers its blob location.
pub fn serve_droplet(tgz: &Path) -> BlobLocation {
    let body = std::fs::read(tgz).expect("read droplet");
    let sha256 = hex::encode(Sha256::digest(&body));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind droplet server");
    let addr = listener.local_addr().expect("addr");
    let size = u64::try_from(body.len()).unwrap_or(u64::MAX);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    BlobLocation {
        url: format!("http://{addr}/droplet.tgz"),
        sha256,
        sha1: String::new(),
        size,
    }
}

/// A droplet: a gzipped tar of an empty `app/` directory (the start
/// command needs nothing but the stack's busybox).
pub fn make_droplet(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("droplet/app")).expect("droplet dir");
    std::fs::write(dir.join("droplet/app/README"), "e2e droplet\n").expect("file");
    let out = dir.join("droplet.tgz");
    let status = Command::new("tar")
        .arg("-C")
        .arg(dir.join("droplet"))
        .arg("-czf")
        .arg(&out)
        .arg("app")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar failed");
    out
}
