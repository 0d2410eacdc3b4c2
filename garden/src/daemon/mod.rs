//! The Garden daemon's backend: containers from images, with limits, disk
//! volumes and processes that survive the daemon. The HTTP side lives in
//! the `garden-api` crate; [`Garden`] implements its `Backend` trait.
//!
//! ```text
//! create:  image (garden-image) → volume (garden-disk) → overlay on the host
//!          → OCI spec (Garden's security defaults) → garden-runc run -d
//!          (idle init) → network (garden-net) → record in the depot
//! run:     process.json → `gardend keep` (one keeper per process) → socket
//! restart: depot records + runtime state + keeper sockets → containers again
//! ```

mod backend;
pub mod config;
mod container;
mod create;
pub mod depot;
mod destroy;
mod error;
pub mod files;
mod info;
mod pea;
mod process;
mod restore;
pub mod rootfs;
pub mod runc;
pub mod spec;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

pub use config::Config;
pub use container::Container;
pub use error::DaemonError;

use depot::Depot;
use runc::Runc;

/// The backend: shared state behind an `Arc`, cheap to clone.
#[derive(Clone)]
pub struct Garden {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    depot: Depot,
    runc: Runc,
    images: garden_image::Store,
    disk: Arc<garden_disk::Disk>,
    network: garden_net::Network,
    /// Our own binary, started as `gardend keep` for every process.
    keeper_binary: std::path::PathBuf,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    /// Handles being created (not yet in `containers`).
    creating: Mutex<HashSet<String>>,
    /// Container root's host id in unprivileged containers.
    maximus: u32,
    cgroup_v2: bool,
    capacity: garden_api::types::Capacity,
}

impl Garden {
    /// Opens the stores, then restores the containers a previous daemon left.
    pub async fn start(config: Config) -> Result<Garden, DaemonError> {
        let depot = Depot::new(&config.depot);
        std::fs::create_dir_all(depot.root()).map_err(|source| DaemonError::Io {
            action: "creating the depot",
            path: depot.root().to_path_buf(),
            source,
        })?;
        let runc = Runc {
            binary: config.runtime_binary(),
            root: config.runtime.state_root.clone(),
        };
        let mut store_config = garden_image::StoreConfig::new(&config.images.store);
        store_config.max_size_bytes = config.images.max_size_bytes;
        store_config.insecure_registries = config.images.insecure_registries.clone();
        let images = garden_image::Store::open(store_config)?;
        let disk_config = config.disk.clone();
        let disk = tokio::task::spawn_blocking(move || garden_disk::Disk::open(disk_config))
            .await
            .map_err(DaemonError::Task)??;
        let (network, report) =
            garden_net::Network::open(config.network.clone(), &config.network_state_dir()).await?;
        tracing::info!(
            restored = report.restored,
            skipped = ?report.skipped,
            missing_links = ?report.missing_links,
            "network ready"
        );
        let maximus = match config.containers.maximus {
            Some(m) => m,
            None => match garden_image::IdMapping::maximus() {
                Ok(garden_image::IdMapping::Shifted { root_host_uid, .. }) => root_host_uid,
                _ => u32::MAX - 1,
            },
        };
        let capacity = info::host_capacity(&config, &disk);
        let keeper_binary = std::env::current_exe().map_err(|source| DaemonError::Io {
            action: "finding our own binary",
            path: "/proc/self/exe".into(),
            source,
        })?;
        let garden = Garden {
            inner: Arc::new(Inner {
                cgroup_v2: garden_cgroups::detect_mode() == garden_cgroups::CgroupMode::Unified,
                config,
                depot,
                runc,
                images,
                disk: Arc::new(disk),
                network,
                keeper_binary,
                containers: Mutex::new(HashMap::new()),
                creating: Mutex::new(HashSet::new()),
                maximus,
                capacity,
            }),
        };
        garden.restore().await;
        Ok(garden)
    }

    /// The container with `handle`, or Garden's not-found error.
    fn container(&self, handle: &str) -> Result<Arc<Container>, DaemonError> {
        lock(&self.inner.containers)
            .get(handle)
            .cloned()
            .ok_or_else(|| DaemonError::NotFound(handle.to_string()))
    }

    /// Every known handle.
    pub fn handles(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.inner.containers).keys().cloned().collect();
        v.sort();
        v
    }
}

/// Locks a std mutex; a poisoned one (a panic elsewhere) is still usable
/// for these plain maps.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
