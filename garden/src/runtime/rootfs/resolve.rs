//! Resolving a path inside the root filesystem without ever leaving it.
//!
//! Symlinks are followed the way the container will see them: an absolute
//! target starts again at the rootfs. A target that climbs above the rootfs
//! with `..` is refused rather than clamped: in a bundle it can only mean
//! someone is aiming a mount at the host.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use super::RootfsError;

const MAX_SYMLINKS: usize = 40;

/// Resolves `dest` (absolute, as the container sees it) to a host path under
/// `root` whose existing components are all real directories (no symlinks).
/// Components that do not exist yet are kept as they are, for the caller to
/// create.
pub fn resolve_in_root(root: &Path, dest: &Path) -> Result<PathBuf, RootfsError> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: Vec<OsString> = Vec::new();
    push_front(&mut pending, dest, dest)?;
    let mut links = 0;
    let mut missing = false;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            if resolved.pop().is_none() {
                return Err(RootfsError::Escape {
                    dest: dest.to_path_buf(),
                    reason: "a '..' climbs above the root filesystem".into(),
                });
            }
            continue;
        }
        let candidate = join(root, &resolved).join(&comp);
        if !missing {
            match std::fs::symlink_metadata(&candidate) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(RootfsError::Escape {
                            dest: dest.to_path_buf(),
                            reason: "too many levels of symbolic links".into(),
                        });
                    }
                    let target =
                        std::fs::read_link(&candidate).map_err(|source| RootfsError::Io {
                            action: "reading symlink",
                            path: candidate.clone(),
                            source,
                        })?;
                    if target.is_absolute() {
                        resolved.clear();
                    }
                    push_front(&mut pending, &target, dest)?;
                    continue;
                }
                Ok(_) => {}
                Err(_) => missing = true,
            }
        }
        resolved.push(comp);
    }
    Ok(join(root, &resolved))
}

fn join(root: &Path, comps: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(comps);
    p
}

/// Queues the components of `path` to be processed before what is pending.
fn push_front(pending: &mut Vec<OsString>, path: &Path, dest: &Path) -> Result<(), RootfsError> {
    let mut comps = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => comps.push(OsString::from("..")),
            Component::Normal(n) => comps.push(n.to_os_string()),
            Component::Prefix(_) => {
                return Err(RootfsError::Escape {
                    dest: dest.to_path_buf(),
                    reason: "unexpected path prefix".into(),
                })
            }
        }
    }
    // `pending` is a stack: push in reverse so the first component pops first.
    pending.extend(comps.into_iter().rev());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn plain_and_missing_paths_stay_under_root() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("a/b")).expect("mkdir");
        assert_eq!(
            resolve_in_root(t.path(), Path::new("/a/b/c/d")).expect("ok"),
            t.path().join("a/b/c/d")
        );
    }

    #[test]
    fn absolute_symlinks_are_rerooted() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("run")).expect("mkdir");
        std::fs::create_dir_all(t.path().join("var")).expect("mkdir");
        symlink("/run", t.path().join("var/run")).expect("symlink");
        symlink("/etc", t.path().join("hostetc")).expect("symlink");
        assert_eq!(
            resolve_in_root(t.path(), Path::new("/var/run/x")).expect("ok"),
            t.path().join("run/x")
        );
        assert_eq!(
            resolve_in_root(t.path(), Path::new("/hostetc/passwd")).expect("ok"),
            t.path().join("etc/passwd")
        );
    }

    #[test]
    fn relative_symlinks_climbing_out_are_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        symlink("../../../../../../tmp", t.path().join("evil")).expect("symlink");
        let err = resolve_in_root(t.path(), Path::new("/evil")).expect_err("must refuse");
        assert!(err.to_string().contains("/evil"), "{err}");
        std::fs::create_dir_all(t.path().join("usr/lib")).expect("mkdir");
        symlink("usr/lib", t.path().join("lib")).expect("symlink");
        assert_eq!(
            resolve_in_root(t.path(), Path::new("/lib/x")).expect("ok"),
            t.path().join("usr/lib/x")
        );
    }

    #[test]
    fn symlink_loops_end() {
        let t = tempfile::tempdir().expect("tempdir");
        symlink("/loop", t.path().join("loop")).expect("symlink");
        assert!(resolve_in_root(t.path(), Path::new("/loop/x")).is_err());
    }
}
