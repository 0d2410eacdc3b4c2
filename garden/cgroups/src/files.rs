//! Reading and writing cgroup control files, with the path and value in every error.
//!
//! Writes open the file write-only with `O_TRUNC` and never create it: on cgroupfs
//! a missing file means a missing controller or feature, and in unit tests the fake
//! layout must contain the file for the write to succeed.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use crate::error::CgroupError;

/// Writes `value` to the control file `dir/file` in one `write(2)`.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    tracing::debug!(path = %path.display(), value, "cgroup write");
    let result = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    result.map_err(|source| CgroupError::Write {
        path,
        value: value.to_owned(),
        source,
    })
}

/// Fails with [`CgroupError::Unsupported`] unless `dir/file` exists: used before
/// writing an optional feature's file so the error says what is missing.
pub(crate) fn require_file(
    dir: &Path,
    file: &str,
    resource: &'static str,
) -> Result<(), CgroupError> {
    let path = dir.join(file);
    if path.exists() {
        Ok(())
    } else {
        Err(CgroupError::Unsupported { resource, path })
    }
}

/// `-1` is `max`; other negative values are invalid (v2 files, v1 `pids.max`).
pub(crate) fn num_or_max(resource: &'static str, n: i64) -> Result<String, CgroupError> {
    match n {
        -1 => Ok("max".to_owned()),
        n if n >= 0 => Ok(n.to_string()),
        n => Err(CgroupError::InvalidResource {
            resource,
            value: n.to_string(),
            reason: "must be -1 (unlimited) or a non-negative number",
        }),
    }
}

/// Reads a control file whole.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })
}

/// Reads a control file holding one unsigned integer.
pub(crate) fn read_u64(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    let content = read(dir, file)?;
    parse_u64(&dir.join(file), content.trim())
}

/// Reads a v2-style file holding either an integer or `max` (`None`).
pub(crate) fn read_u64_or_max(dir: &Path, file: &str) -> Result<Option<u64>, CgroupError> {
    let content = read(dir, file)?;
    let trimmed = content.trim();
    if trimmed == "max" {
        return Ok(None);
    }
    parse_u64(&dir.join(file), trimmed).map(Some)
}

/// Looks `key` up in a flat-keyed file (`key value` per line, e.g. `memory.stat`,
/// `memory.events`, `memory.oom_control`, `cpu.stat`).
pub(crate) fn read_keyed(dir: &Path, file: &str, key: &'static str) -> Result<u64, CgroupError> {
    let path = dir.join(file);
    let content = read(dir, file)?;
    match keyed_value(&content, key) {
        Some(v) => parse_u64(&path, v),
        None => Err(CgroupError::MissingKey { path, key }),
    }
}

/// Like [`read_keyed`], but a missing key yields `None`.
pub(crate) fn read_keyed_opt(
    dir: &Path,
    file: &str,
    key: &'static str,
) -> Result<Option<u64>, CgroupError> {
    let path = dir.join(file);
    let content = read(dir, file)?;
    keyed_value(&content, key)
        .map(|v| parse_u64(&path, v))
        .transpose()
}

fn keyed_value<'a>(content: &'a str, key: &str) -> Option<&'a str> {
    content.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some(k), Some(v)) if k == key => Some(v),
            _ => None,
        }
    })
}

fn parse_u64(path: &Path, s: &str) -> Result<u64, CgroupError> {
    s.parse().map_err(|_| CgroupError::Parse {
        path: path.to_owned(),
        content: s.to_owned(),
        reason: "expected an unsigned integer",
    })
}

/// Reads the pids listed in `cgroup.procs` of `dir` and of every cgroup below it.
/// A directory that vanishes meanwhile contributes nothing.
pub(crate) fn procs_recursive(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.procs");
    let content = match fs::read_to_string(&path) {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(CgroupError::Read { path, source }),
    };
    for line in content.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let pid: i32 = line.parse().map_err(|_| CgroupError::Parse {
            path: path.clone(),
            content: line.to_owned(),
            reason: "expected a pid",
        })?;
        // 0 is a process outside our pid namespace: it has no pid we could use
        // (and kill(0) would signal our own process group).
        if pid > 0 {
            out.push(pid);
        }
    }
    for child in subdirs(dir)? {
        procs_recursive(&child, out)?;
    }
    Ok(())
}

/// Whether any process (in any pid namespace) is in `dir` or below it.
pub(crate) fn populated_recursive(dir: &Path) -> Result<bool, CgroupError> {
    let path = dir.join("cgroup.procs");
    match fs::read(&path) {
        Ok(c) if c.iter().any(u8::is_ascii_digit) => return Ok(true),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(CgroupError::Read { path, source }),
    }
    for child in subdirs(dir)? {
        if populated_recursive(&child)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The child directories (child cgroups) of `dir`; none if `dir` is gone.
pub(crate) fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::ReadDir {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::ReadDir {
            path: dir.to_owned(),
            source,
        })?;
        // file_type() does not follow symlinks; cgroupfs has none.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// Creates `dir` and its missing parents. Returns whether `dir` itself was new.
pub(crate) fn create_dir_all(dir: &Path) -> Result<bool, CgroupError> {
    if dir.is_dir() {
        return Ok(false);
    }
    fs::create_dir_all(dir).map_err(|source| CgroupError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    Ok(true)
}

/// Best-effort removal of the leaf directories a failed `create` made.
pub(crate) fn remove_created(created: &[PathBuf]) {
    for dir in created {
        if let Err(e) = remove_cgroup_dir(dir) {
            tracing::warn!(error = %e, "rolling back a cgroup directory failed");
        }
    }
}

/// Delays between `rmdir` attempts on `EBUSY` (the last processes may still be
/// exiting after a kill): about 1.3 s in all, like runc's but a little longer.
const RMDIR_BACKOFF_MS: [u64; 7] = [10, 20, 40, 80, 160, 320, 640];

/// Removes the cgroup `dir` and all cgroups below it, deepest first.
/// A missing directory is not an error. `EBUSY` is retried briefly.
pub(crate) fn remove_cgroup_dir(dir: &Path) -> Result<(), CgroupError> {
    for child in subdirs(dir)? {
        remove_cgroup_dir(&child)?;
    }
    let mut attempt = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < RMDIR_BACKOFF_MS.len() => {
                thread::sleep(Duration::from_millis(RMDIR_BACKOFF_MS[attempt]));
                attempt += 1;
            }
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
}

/// Polls `done` until it returns true, sleeping between tries, for about two
/// seconds. Returns the last answer.
pub(crate) fn poll_until(
    mut done: impl FnMut() -> Result<bool, CgroupError>,
) -> Result<bool, CgroupError> {
    let mut delay = Duration::from_millis(1);
    let mut waited = Duration::ZERO;
    loop {
        if done()? {
            return Ok(true);
        }
        if waited >= Duration::from_secs(2) {
            return Ok(false);
        }
        thread::sleep(delay);
        waited += delay;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_lookup_matches_whole_key() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n";
        assert_eq!(keyed_value(text, "oom_kill"), Some("7"));
        assert_eq!(keyed_value(text, "oom"), None);
    }

    #[test]
    fn write_does_not_create_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = write(dir.path(), "memory.max", "1").expect_err("must fail");
        assert!(matches!(err, CgroupError::Write { .. }), "{err}");
        assert!(!dir.path().join("memory.max").exists());
    }

    #[test]
    fn write_truncates() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("pids.max"), "123456\n").expect("seed");
        write(dir.path(), "pids.max", "7").expect("write");
        assert_eq!(read(dir.path(), "pids.max").expect("read"), "7");
    }

    #[test]
    fn max_reads_as_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("pids.max"), "max\n").expect("seed");
        assert_eq!(read_u64_or_max(dir.path(), "pids.max").expect("read"), None);
    }

    #[test]
    fn remove_missing_dir_is_ok() {
        let dir = tempfile::tempdir().expect("tempdir");
        remove_cgroup_dir(&dir.path().join("gone")).expect("missing is fine");
    }
}
