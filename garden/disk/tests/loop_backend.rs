//! The loop backend on this host (root, loop devices, ext4).

mod common;

use anyhow::{ensure, Result};
use common::*;
use garden_disk::BackendKind;

fn fixture() -> Result<Fixture> {
    Fixture::new(BackendKind::Loop, None)
}

#[test]
fn byte_limit() -> Result<()> {
    let f = fixture()?;
    byte_limit_is_enforced(f.disk(), MIB)?;
    byte_limit_is_enforced(f.disk(), 300 * MIB)
}

#[test]
fn inode_limit() -> Result<()> {
    let f = fixture()?;
    inode_limit_is_enforced(f.disk(), 50)?;
    inode_limit_is_enforced(f.disk(), 1000)
}

#[test]
fn usage() -> Result<()> {
    let f = fixture()?;
    usage_tracks_writes(f.disk(), &|_| {})
}

#[test]
fn total_scope() -> Result<()> {
    let f = fixture()?;
    total_scope_subtracts_the_image(f.disk(), 4 * MIB)
}

#[test]
fn destroy() -> Result<()> {
    let f = fixture()?;
    destroy_frees_everything(&f, &exclusive(MIB, 100))
}

#[test]
fn concurrent() -> Result<()> {
    let f = fixture()?;
    concurrent_create_destroy(f.disk(), &exclusive(MIB, 0))
}

#[test]
fn restart() -> Result<()> {
    let mut f = fixture()?;
    restart_finds_volumes(&mut f, 2 * MIB)
}

#[test]
fn unlimited_volume_is_a_large_sparse_image() -> Result<()> {
    let f = Fixture::with_config(BackendKind::Loop, None, |c| {
        c.loop_unlimited_bytes = 2 << 30
    })?;
    let h = handle("unlimited");
    let volume = f
        .disk()
        .create(&h, &garden_disk::DiskLimits::default(), NO_IMAGE)?;
    write_file(&volume.upper.join("f"), 20 * MIB)?;
    let image = f.disk().root().join("images").join(&h);
    let allocated = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&image)?) * 512;
    ensure!(
        allocated < 200 * MIB,
        "the 2 GiB image holds {allocated} bytes"
    );
    f.disk().destroy(&h)?;
    Ok(())
}
