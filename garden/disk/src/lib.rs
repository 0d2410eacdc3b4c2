//! Disk limits for garden's containers, really enforced: each container's
//! writable layer (overlay `upper/` and `work/`) lives on a volume whose
//! backend makes writes past the byte limit and file creation past the
//! inode limit fail with ENOSPC or EDQUOT.
//!
//! # Backends ([`BackendKind`], chosen by [`DiskConfig`])
//!
//! - `loop`: an ext4 image per container on a loop device, copied from a
//!   template formatted once per size class. Works on any kernel with
//!   loop devices and ext4.
//! - `btrfs`: a subvolume per container with a qgroup byte limit; inode
//!   limits are refused.
//! - `xfs`: project quotas (blocks and inodes) on an XFS store mounted with
//!   `prjquota`; the production backend.
//! - `none`: plain directories, only without limits.
//!
//! # Use
//!
//! ```no_run
//! use garden_disk::{BackendKind, Disk, DiskConfig, DiskLimits, ImageUsage};
//! # fn main() -> Result<(), garden_disk::DiskError> {
//! let disk = Disk::open(DiskConfig::new(BackendKind::Loop, "/var/lib/garden/disk"))?;
//! let limits = DiskLimits { byte_hard: 1 << 20, ..DiskLimits::default() };
//! let volume = disk.create("c1", &limits, ImageUsage { bytes: 4096, inodes: 3 })?;
//! // mount overlay with upperdir=volume.upper, workdir=volume.work ...
//! let usage = disk.usage("c1")?;
//! disk.destroy("c1")?;
//! # let _ = (volume, usage);
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/disk-limits.md` for the design, the measurements and what each
//! backend does not do.

mod backend;
mod config;
mod disk;
mod limits;
mod loopmount;
mod mkfs;
mod store;
mod store_image;
mod sys;
mod walk;

pub use backend::btrfs::BtrfsError;
pub use backend::loopfs::LoopError;
pub use backend::plain::PlainError;
pub use backend::template::TemplateError;
pub use backend::xfs::XfsError;
pub use config::{BackendKind, DiskConfig, ProjectIds, StoreImage, DEFAULT_LOOP_UNLIMITED_BYTES};
pub use disk::{Disk, DiskError, Volume};
pub use limits::{DiskLimits, DiskScope, ImageUsage, LimitsError, Quota, Usage};
pub use loopmount::LoopMountError;
pub use mkfs::MkfsError;
pub use store::{StoreError, MAX_HANDLE_LEN};
pub use store_image::StoreImageError;
pub use walk::WalkError;
