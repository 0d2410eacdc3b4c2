//! Scenarios every backend must pass, and a fixture that cleans up (volumes,
//! mounts, loop devices, temp dirs) even when a test fails.
#![allow(dead_code)] // each test binary uses a part

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use garden_disk::{BackendKind, Disk, DiskConfig, DiskLimits, DiskScope, ImageUsage, StoreImage};

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;

/// A store in a temp dir, destroyed with everything it mounted.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub config: DiskConfig,
    disk: Option<Disk>,
}

impl Fixture {
    /// A store at `<tmp>/store`; with `image_size`, on a store image at
    /// `<tmp>/store.img` that `open` creates.
    pub fn new(kind: BackendKind, image_size: Option<u64>) -> Result<Fixture> {
        Self::with_config(kind, image_size, |_| {})
    }

    pub fn with_config(
        kind: BackendKind,
        image_size: Option<u64>,
        edit: impl FnOnce(&mut DiskConfig),
    ) -> Result<Fixture> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("garden-disk-{}-", kind.name()))
            .tempdir_in(
                std::env::var_os("GARDEN_DISK_TEST_DIR").unwrap_or_else(|| "/var/tmp".into()),
            )?;
        let mut config = DiskConfig::new(kind, dir.path().join("store"));
        config.store_image = image_size.map(|size| StoreImage {
            path: dir.path().join("store.img"),
            size,
        });
        edit(&mut config);
        let mut fixture = Fixture {
            dir,
            config,
            disk: None,
        };
        fixture.disk = Some(Disk::open(fixture.config.clone()).context("open")?);
        Ok(fixture)
    }

    pub fn disk(&self) -> &Disk {
        self.disk.as_ref().expect("disk is open")
    }

    /// Drops the Disk (as a daemon crash would) and opens the store again.
    pub fn reopen(&mut self) -> Result<()> {
        self.disk = None;
        self.disk = Some(Disk::open(self.config.clone()).context("reopen")?);
        Ok(())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(disk) = self.disk.take() {
            for handle in disk.list().unwrap_or_default() {
                if let Err(e) = disk.destroy(&handle) {
                    eprintln!("cleanup: destroy {handle}: {e:#}");
                }
            }
            if let Err(e) = disk.unmount_store() {
                eprintln!("cleanup: unmount store: {e:#}");
            }
        }
        // Whatever a failed test left mounted, innermost first.
        let mut left = mounts_under(self.dir.path());
        left.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in left {
            eprintln!("cleanup: unmounting {mount}");
            let _ = nix::mount::umount2(mount.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Limits in exclusive scope.
pub fn exclusive(bytes: u64, inodes: u64) -> DiskLimits {
    DiskLimits {
        byte_hard: bytes,
        inode_hard: inodes,
        scope: DiskScope::Exclusive,
        ..DiskLimits::default()
    }
}

pub const NO_IMAGE: ImageUsage = ImageUsage {
    bytes: 0,
    inodes: 0,
};

/// A unique handle.
pub fn handle(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Writes `len` bytes of non-zero data to a new file and syncs it.
pub fn write_file(path: &Path, len: u64) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

/// Whether `e` is the disk-full error a limit must produce.
pub fn is_limit_error(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Mount points at or under `dir` (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().to_string();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect()
}

/// Loop devices whose backing file is under `dir` (from sysfs, what
/// `losetup -a` reads).
pub fn loops_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().to_string();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok())
        .map(|f| f.trim().to_string())
        .filter(|f| f.starts_with(&prefix))
        .collect()
}

/// Writing below the byte limit works; past it fails with ENOSPC/EDQUOT.
pub fn byte_limit_is_enforced(disk: &Disk, limit: u64) -> Result<()> {
    let h = handle("bytes");
    let volume = disk.create(&h, &exclusive(limit, 0), NO_IMAGE)?;
    let below = limit * 9 / 10;
    write_file(&volume.upper.join("below"), below).context("writing 90% of the limit")?;
    let err = write_file(&volume.upper.join("past"), limit / 5)
        .err()
        .context("writing past the limit succeeded")?;
    ensure!(is_limit_error(&err), "writing past the limit: {err}");
    // (XFS may refuse even to create the file so close to the limit.)
    disk.destroy(&h)?;
    Ok(())
}

/// Exactly `limit` files can be created in the upper dir.
pub fn inode_limit_is_enforced(disk: &Disk, limit: u64) -> Result<()> {
    let h = handle("inodes");
    let volume = disk.create(&h, &exclusive(0, limit), NO_IMAGE)?;
    let mut created = 0;
    let err = loop {
        match File::create(volume.upper.join(format!("f{created}"))) {
            Ok(_) => created += 1,
            Err(e) => break e,
        }
        ensure!(
            created <= limit + 100,
            "{created} files created with limit {limit}"
        );
    };
    ensure!(is_limit_error(&err), "creating file {created}: {err}");
    ensure!(
        created == limit,
        "{created} files created with an inode limit of {limit}"
    );
    disk.destroy(&h)?;
    Ok(())
}

/// Usage starts near zero and follows writes and deletes. `settle` runs
/// before each reading (btrfs counts at transaction commits).
pub fn usage_tracks_writes(disk: &Disk, settle: &dyn Fn(&Path)) -> Result<()> {
    let h = handle("usage");
    let image = ImageUsage {
        bytes: 10 * MIB,
        inodes: 100,
    };
    let volume = disk.create(
        &h,
        &DiskLimits {
            byte_hard: 64 * MIB,
            ..DiskLimits::default()
        },
        image,
    )?;
    settle(&volume.dir);
    let empty = disk.usage(&h)?;
    ensure!(
        empty.exclusive_bytes < 64 * KIB,
        "empty volume uses {empty:?}"
    );
    ensure!(empty.exclusive_inodes == 0, "empty volume uses {empty:?}");
    ensure!(
        empty.total_bytes == empty.exclusive_bytes + image.bytes,
        "{empty:?}"
    );
    write_file(&volume.upper.join("a"), 3 * MIB)?;
    std::fs::create_dir(volume.upper.join("d"))?;
    settle(&volume.dir);
    let used = disk.usage(&h)?;
    let written = used.exclusive_bytes - empty.exclusive_bytes;
    ensure!(
        (3 * MIB..3 * MIB + 256 * KIB).contains(&written),
        "3 MiB written, usage grew by {written}: {used:?}"
    );
    ensure!(used.exclusive_inodes == 2, "2 inodes created: {used:?}");
    ensure!(used.total_inodes == 102, "{used:?}");
    std::fs::remove_file(volume.upper.join("a"))?;
    settle(&volume.dir);
    let after = disk.usage(&h)?;
    ensure!(
        after.exclusive_bytes < empty.exclusive_bytes + 64 * KIB,
        "after delete: {after:?}"
    );
    disk.destroy(&h)?;
    Ok(())
}

/// Total scope: the image counts, so less than the limit can be written;
/// a limit not above the image is refused.
pub fn total_scope_subtracts_the_image(disk: &Disk, limit: u64) -> Result<()> {
    let h = handle("total");
    let image = ImageUsage {
        bytes: limit / 2,
        inodes: 10,
    };
    let limits = DiskLimits {
        byte_hard: limit,
        ..DiskLimits::default()
    };
    let volume = disk.create(&h, &limits, image)?;
    write_file(&volume.upper.join("below"), limit * 2 / 5)
        .context("writing 80% of what is left")?;
    let err = write_file(&volume.upper.join("past"), limit / 5)
        .err()
        .context("writing past limit minus image succeeded")?;
    ensure!(is_limit_error(&err), "writing past the limit: {err}");
    ensure!(disk.limits(&h)? == limits, "limits read back differ");
    disk.destroy(&h)?;

    let too_big = ImageUsage {
        bytes: limit,
        inodes: 10,
    };
    let err = disk
        .create(&h, &limits, too_big)
        .err()
        .context("limit equal to the image accepted")?;
    ensure!(err.is_bad_request(), "unexpected error {err}");
    ensure!(
        err.to_string().contains("not larger than the image"),
        "{err}"
    );
    ensure!(disk.list()?.is_empty(), "a refused volume is listed");
    Ok(())
}

/// Destroy leaves no mount, loop device or file, and is idempotent.
pub fn destroy_frees_everything(fixture: &Fixture, limits: &DiskLimits) -> Result<()> {
    let disk = fixture.disk();
    let h = handle("destroy");
    let volume = disk.create(&h, limits, NO_IMAGE)?;
    write_file(&volume.upper.join("f"), 100 * KIB)?;
    let err = disk
        .create(&h, limits, NO_IMAGE)
        .err()
        .context("second create of one handle")?;
    ensure!(
        matches!(err, garden_disk::DiskError::AlreadyExists(_)),
        "{err}"
    );
    disk.destroy(&h)?;
    disk.destroy(&h).context("second destroy")?;
    ensure!(!volume.dir.exists(), "{} left", volume.dir.display());
    let volumes = disk.root().join("volumes");
    ensure!(
        mounts_under(&volumes).is_empty(),
        "mounts left: {:?}",
        mounts_under(&volumes)
    );
    let images = disk.root().join("images");
    ensure!(
        loops_under(&images).is_empty(),
        "loop devices left: {:?}",
        loops_under(&images)
    );
    ensure!(std::fs::read_dir(&images)?.next().is_none(), "images left");
    ensure!(matches!(
        disk.usage(&h),
        Err(garden_disk::DiskError::NotFound(_))
    ));
    Ok(())
}

/// 20 volumes created, written and destroyed from 20 threads at once.
pub fn concurrent_create_destroy(disk: &Disk, limits: &DiskLimits) -> Result<()> {
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..20)
            .map(|i| {
                s.spawn(move || -> Result<()> {
                    let h = handle(&format!("conc{i}"));
                    let volume = disk
                        .create(&h, limits, NO_IMAGE)
                        .with_context(|| format!("create {h}"))?;
                    write_file(&volume.upper.join("f"), 64 * KIB)?;
                    disk.usage(&h)?;
                    disk.destroy(&h).with_context(|| format!("destroy {h}"))
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("worker panicked"))?)
    })?;
    ensure!(disk.list()?.is_empty(), "left: {:?}", disk.list()?);
    let volumes = disk.root().join("volumes");
    ensure!(mounts_under(&volumes).is_empty(), "mounts left");
    ensure!(
        std::fs::read_dir(&volumes)?.next().is_none(),
        "volume dirs left"
    );
    Ok(())
}

/// Volumes survive dropping the Disk: a new one lists them, reads their
/// usage and limits, still enforces them and destroys them; orphans (a
/// volume directory without a record, as after a crash) are removed.
pub fn restart_finds_volumes(fixture: &mut Fixture, limit: u64) -> Result<()> {
    let limits = exclusive(limit, 0);
    let handles: Vec<String> = (0..3).map(|i| handle(&format!("restart{i}"))).collect();
    for h in &handles {
        let volume = fixture.disk().create(h, &limits, NO_IMAGE)?;
        write_file(&volume.upper.join("f"), limit / 4)?;
    }
    // A crash between making a volume and recording it leaves an orphan.
    let orphan = handle("orphan");
    let orphan_dir = fixture.disk().create(&orphan, &limits, NO_IMAGE)?.dir;
    std::fs::remove_file(fixture.disk().root().join("records").join(&orphan))?;
    fixture.reopen()?;
    ensure!(
        !orphan_dir.exists(),
        "orphan {} not destroyed",
        orphan_dir.display()
    );
    ensure!(mounts_under(&orphan_dir).is_empty(), "orphan still mounted");
    let disk = fixture.disk();
    let mut listed = disk.list()?;
    listed.sort();
    ensure!(listed == handles, "after restart: {listed:?}");
    let volume = disk.volume(&handles[0])?;
    ensure!(disk.limits(&handles[0])? == limits);
    let err = write_file(&volume.upper.join("big"), limit)
        .err()
        .context("limit not enforced after restart")?;
    ensure!(is_limit_error(&err), "{err}");
    for h in &handles {
        disk.destroy(h)?;
    }
    Ok(())
}
