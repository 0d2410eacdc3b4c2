//! Create: image → volume → overlay → spec → runtime → record. Any failure
//! undoes the steps already taken (the same teardown destroy uses).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use garden_api::types::{ContainerSpec, DiskLimitScope};
use garden_image::IdMapping;

use super::container::Container;
use super::depot::Record;
use super::destroy::Steps;
use super::spec::{container_spec, SpecInputs};
use super::{lock, DaemonError, Garden};

/// Where create's time goes, in microseconds (logged with "container
/// created"; the benchmark reads them).
#[derive(Debug, Default)]
struct Phases {
    image: u64,
    volume: u64,
    rootfs: u64,
    runtime: u64,
    network: u64,
}

/// Releases the handle's reservation however create ends.
struct Reservation<'a> {
    garden: &'a Garden,
    handle: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        lock(&self.garden.inner.creating).remove(&self.handle);
    }
}

impl Garden {
    pub async fn create_container(&self, mut spec: ContainerSpec) -> Result<String, DaemonError> {
        if spec.handle.is_empty() {
            spec.handle = random_hex();
        }
        let handle = spec.handle.clone();
        crate::runtime::state::validate_id(&handle).map_err(|e| DaemonError::BadRequest {
            what: "handle",
            message: e.to_string(),
        })?;
        let _reservation = self.reserve(&handle)?;
        let started = std::time::Instant::now();
        let mut steps = Steps::default();
        let mut phases = Phases::default();
        match self.build(&mut spec, &mut steps, &mut phases).await {
            Ok(container) => {
                lock(&self.inner.containers).insert(handle.clone(), Arc::new(container));
                tracing::info!(
                    handle,
                    total_us = started.elapsed().as_micros() as u64,
                    image_us = phases.image,
                    volume_us = phases.volume,
                    rootfs_us = phases.rootfs,
                    runtime_us = phases.runtime,
                    network_us = phases.network,
                    "container created"
                );
                Ok(handle)
            }
            Err(e) => {
                tracing::warn!(handle, error = %e, "create failed; undoing");
                self.teardown(&handle, steps).await;
                Err(e)
            }
        }
    }

    fn reserve(&self, handle: &str) -> Result<Reservation<'_>, DaemonError> {
        let containers = lock(&self.inner.containers);
        let mut creating = lock(&self.inner.creating);
        if containers.contains_key(handle) || creating.contains(handle) {
            return Err(DaemonError::HandleInUse(handle.to_string()));
        }
        let max = self.inner.capacity.max_containers;
        if (containers.len() + creating.len()) as u64 >= max {
            return Err(DaemonError::Full(max));
        }
        creating.insert(handle.to_string());
        Ok(Reservation {
            garden: self,
            handle: handle.to_string(),
        })
    }

    async fn build(
        &self,
        spec: &mut ContainerSpec,
        steps: &mut Steps,
        phases: &mut Phases,
    ) -> Result<Container, DaemonError> {
        let inner = &self.inner;
        let handle = spec.handle.clone();
        let dir = inner.depot.claim(&handle).map_err(|e| match e {
            super::depot::DepotError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                DaemonError::HandleInUse(handle.clone())
            }
            other => other.into(),
        })?;
        steps.depot = true;

        let uri = image_uri(spec, &inner.config)?;
        let mapping = id_mapping(spec.privileged, inner.maximus);
        let creds = credentials(&spec.image);
        // Never stored: the record keeps the reference only.
        spec.image.password.clear();
        let t = std::time::Instant::now();
        let image = inner.images.pull(&uri, creds, &mapping).await?;
        inner.images.acquire(&image, &handle)?;
        steps.image = true;

        let limits = disk_limits(spec);
        let usage = garden_disk::ImageUsage {
            bytes: image.size_bytes,
            inodes: image.inodes,
        };
        let disk = inner.disk.clone();
        let h = handle.clone();
        steps.volume = true;
        phases.image = t.elapsed().as_micros() as u64;
        let t = std::time::Instant::now();
        let volume = blocking(move || disk.create(&h, &limits, usage)).await??;
        phases.volume = t.elapsed().as_micros() as u64;
        let t = std::time::Instant::now();

        let owner = if spec.privileged { 0 } else { inner.maximus };
        let rootfs = inner.depot.bundle(&handle).join("rootfs");
        let (layers, r) = (image.layers.clone(), rootfs.clone());
        steps.mount = true;
        blocking(move || {
            super::rootfs::mount_overlay(&layers, &volume.upper, &volume.work, &r, owner)
        })
        .await??;

        phases.rootfs = t.elapsed().as_micros() as u64;
        let t = std::time::Instant::now();
        let cgroup_path = format!("/{}/{}", inner.config.runtime.cgroup_parent, handle);
        let oci = container_spec(
            spec,
            &SpecInputs {
                handle: &handle,
                rootfs: &rootfs,
                cgroup_path: cgroup_path.clone(),
                maximus: (!spec.privileged).then_some(inner.maximus),
                cgroup_v2: inner.cgroup_v2,
            },
        )?;
        let bundle = inner.depot.bundle(&handle);
        let config_path = bundle.join("config.json");
        std::fs::write(&config_path, oci.to_string()).map_err(|source| DaemonError::Io {
            action: "writing",
            path: config_path,
            source,
        })?;
        steps.runtime = true;
        inner
            .runc
            .create_and_start(&bundle, &handle, &dir.join("runc.log"))
            .await?;
        let inspection = inner.runc.inspect(&handle).await?;
        phases.runtime = t.elapsed().as_micros() as u64;
        let t = std::time::Instant::now();
        steps.network = true;
        self.attach_network(spec, inspection.record.pid, owner)
            .await?;
        phases.network = t.elapsed().as_micros() as u64;

        let record = Record {
            handle: handle.clone(),
            properties: spec.properties.clone(),
            spec: spec.clone(),
            created_unix_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
            image_id: image.id.clone(),
            image_bytes: image.size_bytes,
            image_inodes: image.inodes,
            image_env: image.config.env.clone(),
            image_dir: image.config.working_dir.clone().unwrap_or_default(),
            image_user: image.config.user.clone().unwrap_or_default(),
            root_host_id: owner,
            stopped: false,
        };
        inner.depot.save(&record)?;
        Ok(Container {
            handle: handle.clone(),
            record: std::sync::Mutex::new(record),
            gate: Arc::new(tokio::sync::RwLock::new(true)),
            cgroup_path,
            init_pid: inspection.record.pid,
            dir,
        })
    }
}

impl Garden {
    /// The container's network (address, routes, NetIn, NetOut, bandwidth),
    /// then its `/etc/hosts` and `/etc/resolv.conf`, written before any of
    /// its processes runs.
    async fn attach_network(
        &self,
        spec: &ContainerSpec,
        init_pid: i32,
        owner: u32,
    ) -> Result<(), DaemonError> {
        let inner = &self.inner;
        let handle = &spec.handle;
        let request = garden_net::AttachRequest {
            network: spec.network.clone(),
            net_in: spec.net_in.clone(),
            net_out: spec.net_out.clone(),
            bandwidth: spec.limits.bandwidth,
        };
        let netns = garden_net::Netns::Pid(init_pid as u32);
        inner.network.attach(handle, &netns, &request).await?;
        let hostname: String = handle.chars().take(63).collect();
        let hosts = inner
            .network
            .hosts_file(handle, &hostname)
            .unwrap_or_default();
        let resolv = inner.network.resolv_conf();
        let root = super::files::container_root(init_pid);
        let map = if spec.privileged {
            super::files::IdMap::identity()
        } else {
            super::files::IdMap::maximus(owner)
        };
        blocking(move || write_etc(&root, &map, &[("hosts", hosts), ("resolv.conf", resolv)]))
            .await??;
        Ok(())
    }
}

/// Writes files into the container's `/etc`, owned by its root, through
/// stream-in's resolution that never leaves the container's root.
fn write_etc(
    root: &std::path::Path,
    map: &super::files::IdMap,
    files: &[(&str, String)],
) -> Result<(), DaemonError> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, body) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, body.as_bytes())
            .map_err(|source| DaemonError::Io {
                action: "building",
                path: root.join("etc"),
                source,
            })?;
    }
    let bytes = tar.into_inner().map_err(|source| DaemonError::Io {
        action: "building",
        path: root.join("etc"),
        source,
    })?;
    let owner = super::files::User {
        uid: 0,
        gid: 0,
        home: String::new(),
        additional_gids: Vec::new(),
    };
    super::files::stream_in(root, "/etc", &owner, map, bytes.as_slice())?;
    Ok(())
}

fn image_uri(spec: &ContainerSpec, config: &super::Config) -> Result<String, DaemonError> {
    for candidate in [&spec.image.uri, &spec.rootfs_path] {
        if !candidate.is_empty() {
            return Ok(candidate.clone());
        }
    }
    config
        .images
        .default_rootfs
        .clone()
        .ok_or_else(|| DaemonError::BadRequest {
            what: "image",
            message: "no image.uri given and no images.default_rootfs configured".into(),
        })
}

/// How image files are owned for a container whose root is `root_host_id`
/// on the host (privileged containers see the image as it is).
pub(super) fn id_mapping(privileged: bool, root_host_id: u32) -> IdMapping {
    if privileged {
        IdMapping::Identity
    } else {
        IdMapping::Shifted {
            root_host_uid: root_host_id,
            root_host_gid: root_host_id,
        }
    }
}

/// Registry credentials of an image reference, if it has any.
pub(super) fn credentials(
    image: &garden_api::types::ImageRef,
) -> Option<garden_image::Credentials> {
    (!image.username.is_empty() || !image.password.is_empty()).then(|| garden_image::Credentials {
        username: image.username.clone(),
        password: image.password.clone(),
    })
}

pub(super) fn disk_limits(spec: &ContainerSpec) -> garden_disk::DiskLimits {
    let d = &spec.limits.disk;
    garden_disk::DiskLimits {
        byte_soft: d.byte_soft,
        byte_hard: d.byte_hard,
        inode_soft: d.inode_soft,
        inode_hard: d.inode_hard,
        scope: match d.scope {
            DiskLimitScope::Total => garden_disk::DiskScope::Total,
            DiskLimitScope::Exclusive => garden_disk::DiskScope::Exclusive,
        },
    }
}

/// Runs blocking work (file systems, mounts) off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(DaemonError::Task)
}

/// 16 hex digits from the kernel's random pool: generated handles and
/// process ids.
pub(super) fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
