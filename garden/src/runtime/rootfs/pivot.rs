//! `pivot_root` into the new root, never `chroot`: the old root is detached
//! so no path in the container can reach the host's filesystem.

use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, fchdir};

use super::RootfsError;

pub fn pivot_root(root: &Path) -> Result<(), RootfsError> {
    let err = |step: &'static str| {
        move |source| RootfsError::Pivot {
            root: root.to_path_buf(),
            step,
            source,
        }
    };
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let old = open("/", flags, Mode::empty()).map_err(err("opening the old root"))?;
    let new = open(root, flags, Mode::empty()).map_err(err("opening the new root"))?;
    fchdir(&new).map_err(err("entering the new root"))?;
    // pivot_root(".", ".") stacks the old root on top of the new one, so no
    // directory for it is needed inside the container.
    nix::unistd::pivot_root(".", ".").map_err(err("pivot_root"))?;
    fchdir(&old).map_err(err("entering the old root"))?;
    // Make sure the unmount below cannot propagate to the host.
    nix::mount::mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(err("making the old root a slave"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(err("detaching the old root"))?;
    chdir("/").map_err(err("chdir to /"))?;
    Ok(())
}
