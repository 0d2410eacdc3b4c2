//! The xfs backend: project quotas on an XFS store image that `open`
//! formats (mkfs.xfs) and mounts with prjquota.
//!
//! This host's kernel has no XFS quota support (HOST.md), so these tests
//! are ignored here; `tests/vm/run.sh` runs them with `--ignored` in the
//! qemu VM, on Debian's kernel, which has it.

mod common;

use std::path::Path;

use anyhow::{ensure, Context, Result};
use common::*;
use garden_disk::{BackendKind, DiskConfig};

/// mkfs.xfs refuses filesystems below 300 MiB.
const STORE_SIZE: u64 = 300 * MIB;
const VM_ONLY: &str =
    "needs XFS project quotas, which this host's kernel lacks; tests/vm/run.sh runs it";

fn fixture() -> Result<Fixture> {
    Fixture::new(BackendKind::Xfs, Some(STORE_SIZE))
}

#[test]
#[ignore = "needs XFS project quotas, which this host's kernel lacks; tests/vm/run.sh runs it"]
fn byte_limit() -> Result<()> {
    let f = fixture()?;
    byte_limit_is_enforced(f.disk(), MIB)?;
    byte_limit_is_enforced(f.disk(), 64 * MIB)
}

#[test]
#[ignore = "needs XFS project quotas, which this host's kernel lacks; tests/vm/run.sh runs it"]
fn inode_limit() -> Result<()> {
    let f = fixture()?;
    inode_limit_is_enforced(f.disk(), 50)?;
    inode_limit_is_enforced(f.disk(), 1000)
}

#[test]
#[ignore = "needs XFS project quotas, which this host's kernel lacks; tests/vm/run.sh runs it"]
fn usage() -> Result<()> {
    let f = fixture()?;
    // No settling: usage() itself waits for XFS's background frees.
    usage_tracks_writes(f.disk(), &|_: &Path| {})
}

#[test]
#[ignore = "needs XFS project quotas, which this host's kernel lacks; tests/vm/run.sh runs it"]
fn total_scope() -> Result<()> {
    let f = fixture()?;
    total_scope_subtracts_the_image(f.disk(), 4 * MIB)
}

#[test]
#[ignore = "needs XFS project quotas, which this host's kernel lacks; tests/vm/run.sh runs it"]
fn destroy_and_concurrency() -> Result<()> {
    let f = fixture()?;
    destroy_frees_everything(&f, &exclusive(MIB, 100))?;
    concurrent_create_destroy(f.disk(), &exclusive(MIB, 100))
}

#[test]
#[ignore = "needs XFS project quotas, which this host's kernel lacks; tests/vm/run.sh runs it"]
fn restart_and_project_ids() -> Result<()> {
    let mut f = Fixture::with_config(BackendKind::Xfs, Some(STORE_SIZE), |c| {
        c.xfs_project_ids.first = 7000;
        c.xfs_project_ids.count = 4;
    })?;
    restart_finds_volumes(&mut f, 2 * MIB)?;
    // Four ids: a fifth volume is refused, and ids are reused after destroy.
    for i in 0..4 {
        f.disk()
            .create(&format!("v{i}"), &exclusive(MIB, 0), NO_IMAGE)?;
    }
    let err = f
        .disk()
        .create("v4", &exclusive(MIB, 0), NO_IMAGE)
        .err()
        .context("a fifth project id")?;
    ensure!(err.to_string().contains("project ids"), "{err}");
    f.reopen()?;
    let volume = f.disk().volume("v1")?;
    write_file(&volume.upper.join("f"), 512 * KIB)?;
    f.disk().destroy("v1")?;
    let volume = f.disk().create("v4", &exclusive(MIB, 0), NO_IMAGE)?;
    ensure!(
        f.disk().usage("v4")?.exclusive_bytes == 0,
        "{:?}",
        f.disk().usage("v4")?
    );
    let err = write_file(&volume.upper.join("f"), MIB + 100 * KIB)
        .err()
        .context("the reused project id is not limited")?;
    ensure!(is_limit_error(&err), "{err}");
    Ok(())
}

/// Runs here: a store that is not XFS is refused with a clear error.
#[test]
fn a_store_not_on_xfs_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("store");
    std::fs::create_dir(&root)?;
    if nix::sys::statfs::statfs(&root)?.filesystem_type() == nix::sys::statfs::XFS_SUPER_MAGIC {
        eprintln!("skipped: {VM_ONLY}");
        return Ok(());
    }
    let err = garden_disk::Disk::open(DiskConfig::new(BackendKind::Xfs, &root))
        .err()
        .context("a non-XFS store accepted")?;
    ensure!(err.to_string().contains("is not on XFS"), "{err}");
    Ok(())
}
