//! The none backend: plain directories, and limits refused.

mod common;

use anyhow::{ensure, Context, Result};
use common::*;
use garden_disk::{BackendKind, DiskLimits};

#[test]
fn limits_are_refused_never_ignored() -> Result<()> {
    let f = Fixture::new(BackendKind::None, None)?;
    for limits in [exclusive(MIB, 0), exclusive(0, 10)] {
        let err = f
            .disk()
            .create("limited", &limits, NO_IMAGE)
            .err()
            .context("a limit accepted by the none backend")?;
        ensure!(err.is_bad_request(), "{err}");
        ensure!(err.to_string().contains("enforces no limits"), "{err}");
    }
    ensure!(f.disk().list()?.is_empty());
    Ok(())
}

#[test]
fn usage_and_lifecycle() -> Result<()> {
    let mut f = Fixture::new(BackendKind::None, None)?;
    usage_tracks_writes_unlimited(&f)?;
    destroy_frees_everything(&f, &DiskLimits::default())?;
    concurrent_create_destroy(f.disk(), &DiskLimits::default())?;
    f.disk().create("kept", &DiskLimits::default(), NO_IMAGE)?;
    f.reopen()?;
    ensure!(f.disk().list()? == ["kept"]);
    Ok(())
}

fn usage_tracks_writes_unlimited(f: &Fixture) -> Result<()> {
    let volume = f.disk().create("u", &DiskLimits::default(), NO_IMAGE)?;
    let empty = f.disk().usage("u")?;
    ensure!(
        empty.exclusive_bytes == 0 && empty.exclusive_inodes == 0,
        "{empty:?}"
    );
    write_file(&volume.upper.join("a"), MIB)?;
    let used = f.disk().usage("u")?;
    ensure!(used.exclusive_inodes == 1, "{used:?}");
    ensure!(
        (MIB..MIB + 64 * KIB).contains(&used.exclusive_bytes),
        "{used:?}"
    );
    f.disk().destroy("u")?;
    Ok(())
}
