//! Formatted ext4 images, one per (bytes, inodes) class, that the loop
//! backend copies for each volume instead of running mkfs each time.
//!
//! A template is sized so that exactly the quota is free: mke2fs is run
//! with a guessed size and inode count, the result is mounted and measured,
//! the guess is corrected until enough is free, and the excess is taken by
//! padding (empty files for inodes, a preallocated file for blocks) at the
//! volume's root, next to `upper/` and `work/`, where containers do not see
//! it. The usage of the empty volume is its baseline.

use std::collections::HashMap;
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use nix::fcntl::FallocateFlags;
use serde::{Deserialize, Serialize};

use super::Baseline;
use crate::limits::Quota;
use crate::loopmount::{self, LoopMountError, LoopMounter};
use crate::mkfs::{self, Fs, MkfsError};
use crate::store::{self, StoreError};

/// ext4 mount options of templates and volumes: no background zeroing of
/// inode tables (it would fill the sparse images).
pub(crate) const MOUNT_DATA: &str = "noinit_itable";
/// 1 KiB blocks up to this size (finer limits), 4 KiB above.
const SMALL_FS: u64 = 256 << 20;
const MAX_ATTEMPTS: usize = 8;

/// Errors of building templates.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// mke2fs failed.
    #[error(transparent)]
    Mkfs(#[from] MkfsError),
    /// Mounting the template to measure it failed.
    #[error(transparent)]
    Mount(#[from] LoopMountError),
    /// The overlay directories could not be made.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No size was found that leaves exactly the quota free.
    #[error("no ext4 layout leaves {bytes} bytes and {inodes} inodes free")]
    NoFit {
        /// The byte quota.
        bytes: u64,
        /// The inode quota.
        inodes: u64,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TemplateError + 'a {
    move |source| TemplateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A formatted image ready to copy.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub(crate) path: PathBuf,
    pub(crate) baseline: Baseline,
}

/// One size class's template, built at most once.
type Slot = Arc<Mutex<Option<Template>>>;

/// What is kept next to a template image.
#[derive(Debug, Serialize, Deserialize)]
struct TemplateInfo {
    baseline: Baseline,
}

/// The templates of a store, built on first use and kept on disk.
#[derive(Debug)]
pub(crate) struct Templates {
    dir: PathBuf,
    unlimited_bytes: u64,
    slots: Mutex<HashMap<(u64, u64), Slot>>,
}

impl Templates {
    pub(crate) fn new(dir: PathBuf, unlimited_bytes: u64) -> Templates {
        Templates {
            dir,
            unlimited_bytes,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The template for `quota`: cached, read from disk, or built (once,
    /// while concurrent callers of the same class wait).
    pub(crate) fn get(
        &self,
        mounter: &LoopMounter,
        quota: &Quota,
    ) -> Result<Template, TemplateError> {
        let class = (quota.bytes, quota.inodes);
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(slots.entry(class).or_default())
        };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(template) = &*slot {
            return Ok(template.clone());
        }
        let name = format!("ext4-{}-{}", quota.bytes, quota.inodes);
        let template = match self.load(&name)? {
            Some(template) => template,
            None => self.build(mounter, &name, quota)?,
        };
        *slot = Some(template.clone());
        Ok(template)
    }

    fn load(&self, name: &str) -> Result<Option<Template>, TemplateError> {
        let info_path = self.dir.join(format!("{name}.json"));
        let bytes = match std::fs::read(&info_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &info_path)(e)),
        };
        let path = self.dir.join(name);
        match serde_json::from_slice::<TemplateInfo>(&bytes) {
            Ok(info) if path.exists() => Ok(Some(Template {
                path,
                baseline: info.baseline,
            })),
            // Half-written: build again.
            _ => Ok(None),
        }
    }

    fn build(
        &self,
        mounter: &LoopMounter,
        name: &str,
        quota: &Quota,
    ) -> Result<Template, TemplateError> {
        let started = std::time::Instant::now();
        let work = self.dir.join(format!("{name}.build"));
        let mnt = self.dir.join(format!("{name}.mnt"));
        std::fs::create_dir_all(&mnt).map_err(io("create", &mnt))?;
        let exact = quota.bytes != 0;
        let bytes = if exact {
            quota.bytes
        } else {
            self.unlimited_bytes
        };
        let block = if bytes <= SMALL_FS { 1024 } else { 4096 };
        let mut size = round_up(bytes + bytes / 16 + 256 * block, block);
        let mut inodes = if quota.inodes > 0 {
            quota.inodes + 16
        } else {
            0
        };
        for _ in 0..MAX_ATTEMPTS {
            format(&work, size, block, inodes)?;
            mounter.mount(&work, &mnt, "ext4", MOUNT_DATA)?;
            let fitted = fit(&mnt, exact.then_some(bytes), quota.inodes);
            loopmount::unmount(&mnt)?;
            match fitted? {
                Fit::Done(baseline) => {
                    let info = serde_json::to_vec(&TemplateInfo { baseline })
                        .map_err(|e| io("encode", &work)(e.into()))?;
                    let path = self.dir.join(name);
                    std::fs::rename(&work, &path).map_err(io("rename", &work))?;
                    let info_path = self.dir.join(format!("{name}.json"));
                    std::fs::write(&info_path, info).map_err(io("write", &info_path))?;
                    let _ = std::fs::remove_dir(&mnt);
                    tracing::info!(
                        template = name,
                        size,
                        ?baseline,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "loop template built"
                    );
                    return Ok(Template { path, baseline });
                }
                Fit::Short {
                    bytes,
                    inodes: short,
                } => {
                    size += round_up(bytes + bytes / 16, block) + 16 * block;
                    inodes += if short > 0 { short + 8 } else { 0 };
                }
            }
        }
        let _ = std::fs::remove_file(&work);
        Err(TemplateError::NoFit {
            bytes: quota.bytes,
            inodes: quota.inodes,
        })
    }
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// mke2fs on a fresh sparse file of `size` bytes: no journal (the layer
/// does not outlive the host), no reserved blocks, no resize inode.
fn format(image: &Path, size: u64, block: u64, inodes: u64) -> Result<(), TemplateError> {
    let _ = std::fs::remove_file(image);
    let file = File::create(image).map_err(io("create", image))?;
    file.set_len(size).map_err(io("resize", image))?;
    drop(file);
    let mut args: Vec<String> = [
        "-q",
        "-F",
        "-t",
        "ext4",
        "-b",
        &block.to_string(),
        "-m",
        "0",
    ]
    .map(String::from)
    .to_vec();
    args.extend(
        [
            "-O",
            "^has_journal,^resize_inode",
            "-E",
            "nodiscard,lazy_itable_init=1",
        ]
        .map(String::from),
    );
    if inodes > 0 {
        args.extend(["-N".to_string(), inodes.to_string()]);
    }
    mkfs::mkfs(Fs::Ext4, image, &args)?;
    Ok(())
}

enum Fit {
    /// The filesystem fits; this is the usage of the empty volume.
    Done(Baseline),
    /// Too small by this much.
    Short { bytes: u64, inodes: u64 },
}

struct Free {
    bytes: u64,
    inodes: u64,
    used: Baseline,
}

fn free(mnt: &Path) -> Result<Free, TemplateError> {
    let st = nix::sys::statfs::statfs(mnt).map_err(|e| io("statfs", mnt)(e.into()))?;
    let block = st.block_size() as u64;
    Ok(Free {
        bytes: st.blocks_available() * block,
        inodes: st.files_free(),
        used: Baseline {
            bytes: (st.blocks() - st.blocks_available()) * block,
            inodes: st.files() - st.files_free(),
        },
    })
}

/// Makes the volume layout in the mounted filesystem and pads it so that
/// exactly `bytes` (rounded up to a block) and `inodes` are free (`None`/0:
/// whatever is free).
fn fit(mnt: &Path, bytes: Option<u64>, inodes: u64) -> Result<Fit, TemplateError> {
    store::make_layer_dirs(mnt)?;
    // The padding file takes an inode: before the inodes are counted.
    let pad = mnt.join(".garden-pad-bytes");
    let pad = File::create(&pad).map_err(io("create", &pad))?;
    let now = free(mnt)?;
    let block = nix::sys::statfs::statfs(mnt)
        .map_err(|e| io("statfs", mnt)(e.into()))?
        .block_size() as u64;
    let target = bytes.map(|b| round_up(b, block));
    let short_bytes = target.map_or(0, |t| t.saturating_sub(now.bytes));
    let short_inodes = inodes.saturating_sub(now.inodes);
    if short_bytes > 0 || (inodes > 0 && short_inodes > 0) {
        return Ok(Fit::Short {
            bytes: short_bytes,
            inodes: short_inodes,
        });
    }
    if inodes > 0 {
        for i in 0..now.inodes - inodes {
            let pad = mnt.join(format!(".garden-pad-{i}"));
            File::create(&pad).map_err(io("create", &pad))?;
        }
    }
    if let Some(target) = target {
        pad_bytes(mnt, &pad, target)?;
    }
    let done = free(mnt)?;
    let exact = target.is_none_or(|t| done.bytes == t) && (inodes == 0 || done.inodes == inodes);
    if !exact {
        return Ok(Fit::Short {
            bytes: target.map_or(0, |t| t.saturating_sub(done.bytes)) + block,
            inodes: inodes.saturating_sub(done.inodes),
        });
    }
    Ok(Fit::Done(done.used))
}

/// Grows or shrinks a preallocated padding file until `target` bytes are
/// free (its extent blocks count too, hence the loop).
fn pad_bytes(mnt: &Path, file: &File, target: u64) -> Result<(), TemplateError> {
    let pad = mnt.join(".garden-pad-bytes");
    let mut len: u64 = 0;
    for _ in 0..MAX_ATTEMPTS {
        let now = free(mnt)?.bytes;
        if now == target {
            break;
        }
        if now > target {
            len += now - target;
            let end =
                i64::try_from(len).map_err(|_| io("pad", &pad)(ErrorKind::InvalidInput.into()))?;
            nix::fcntl::fallocate(file, FallocateFlags::empty(), 0, end)
                .map_err(|e| io("fallocate", &pad)(e.into()))?;
        } else {
            len = len.saturating_sub(target - now);
            file.set_len(len).map_err(io("truncate", &pad))?;
        }
    }
    Ok(())
}
