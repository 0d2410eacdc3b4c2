//! Formatting images with the distribution's mkfs tools (e2fsprogs,
//! btrfs-progs, xfsprogs).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors of running a mkfs tool.
#[derive(Debug, thiserror::Error)]
pub enum MkfsError {
    /// The tool is not installed.
    #[error("{tool} not found in PATH, /usr/sbin or /sbin (install {package})")]
    Missing {
        /// The tool.
        tool: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// The tool could not be started.
    #[error("cannot run {tool}")]
    Spawn {
        /// The tool.
        tool: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The tool failed.
    #[error("{tool} {image} failed ({status}): {stderr}")]
    Failed {
        /// The tool.
        tool: &'static str,
        /// The image.
        image: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
}

/// The filesystems we format.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fs {
    Ext4,
    Btrfs,
    Xfs,
}

impl Fs {
    fn tool(self) -> (&'static str, &'static str) {
        match self {
            Fs::Ext4 => ("mkfs.ext4", "e2fsprogs"),
            Fs::Btrfs => ("mkfs.btrfs", "btrfs-progs"),
            Fs::Xfs => ("mkfs.xfs", "xfsprogs"),
        }
    }
}

/// Finds `tool` in PATH or the sbin directories (which a non-login PATH
/// may lack).
fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// Formats `image` as `fs`; `args` go before the image path.
pub(crate) fn mkfs(fs: Fs, image: &Path, args: &[String]) -> Result<(), MkfsError> {
    let (tool, package) = fs.tool();
    let exe = find(tool).ok_or(MkfsError::Missing { tool, package })?;
    let output = Command::new(exe)
        .args(args)
        .arg(image)
        .output()
        .map_err(|source| MkfsError::Spawn { tool, source })?;
    if output.status.success() {
        return Ok(());
    }
    Err(MkfsError::Failed {
        tool,
        image: image.to_path_buf(),
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// Formats `image`, growing it to `size` bytes (sparse) first: the store
/// image of the btrfs and xfs backends.
pub(crate) fn mkfs_store_image(fs: Fs, image: &Path, size: u64) -> Result<(), MkfsError> {
    let (tool, _) = fs.tool();
    let spawn = |source| MkfsError::Spawn { tool, source };
    let file = std::fs::File::create(image).map_err(spawn)?;
    file.set_len(size).map_err(spawn)?;
    drop(file);
    let args: Vec<String> = match fs {
        Fs::Ext4 => vec!["-q".into(), "-F".into()],
        Fs::Btrfs => vec!["-q".into(), "-f".into()],
        // -K: no discard (the image is sparse already).
        Fs::Xfs => vec!["-q".into(), "-f".into(), "-K".into()],
    };
    mkfs(fs, image, &args)
}
