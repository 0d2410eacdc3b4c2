//! The btrfs backend on this host: a store image that `open` formats and
//! loop-mounts, a subvolume and qgroup per volume.

mod common;

use std::path::Path;

use anyhow::{ensure, Context, Result};
use common::*;
use garden_disk::{BackendKind, DiskLimits};

const STORE_SIZE: u64 = 512 * MIB;

fn fixture() -> Result<Fixture> {
    Fixture::new(BackendKind::Btrfs, Some(STORE_SIZE))
}

/// Commits the transaction, so the qgroups are up to date.
fn sync(dir: &Path) {
    let file = std::fs::File::open(dir).expect("open volume");
    nix::unistd::syncfs(&file).expect("syncfs");
}

#[test]
fn byte_limit() -> Result<()> {
    let f = fixture()?;
    byte_limit_is_enforced(f.disk(), MIB)?;
    byte_limit_is_enforced(f.disk(), 100 * MIB)
}

#[test]
fn inode_limits_are_refused() -> Result<()> {
    let f = fixture()?;
    let err = f
        .disk()
        .create("inodes", &exclusive(0, 100), NO_IMAGE)
        .err()
        .context("an inode limit accepted")?;
    ensure!(err.is_bad_request(), "{err}");
    ensure!(err.to_string().contains("no inode quota"), "{err}");
    ensure!(f.disk().list()?.is_empty());
    Ok(())
}

#[test]
fn usage() -> Result<()> {
    let f = fixture()?;
    usage_tracks_writes(f.disk(), &sync)
}

#[test]
fn total_scope() -> Result<()> {
    let f = fixture()?;
    total_scope_subtracts_the_image(f.disk(), 32 * MIB)
}

#[test]
fn destroy() -> Result<()> {
    let f = fixture()?;
    destroy_frees_everything(&f, &exclusive(16 * MIB, 0))
}

#[test]
fn concurrent() -> Result<()> {
    let f = fixture()?;
    concurrent_create_destroy(f.disk(), &exclusive(16 * MIB, 0))
}

#[test]
fn restart_keeps_the_store_mounted() -> Result<()> {
    let mut f = fixture()?;
    restart_finds_volumes(&mut f, 16 * MIB)
}

#[test]
fn store_image_is_released_with_the_store() -> Result<()> {
    let mut f = fixture()?;
    f.disk().create("x", &DiskLimits::default(), NO_IMAGE)?;
    f.disk().destroy("x")?;
    let dir = f.dir.path().to_path_buf();
    ensure!(mounts_under(&dir).len() == 1, "{:?}", mounts_under(&dir));
    f.reopen()?;
    ensure!(
        mounts_under(&dir).len() == 1,
        "mounted twice: {:?}",
        mounts_under(&dir)
    );
    drop(f);
    ensure!(mounts_under(&dir).is_empty(), "{:?}", mounts_under(&dir));
    ensure!(loops_under(&dir).is_empty(), "{:?}", loops_under(&dir));
    Ok(())
}
