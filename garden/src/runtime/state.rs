//! Container records on disk: one directory per container under the state
//! root (`/run/garden-runc/<id>` by default), like runc's.
//!
//! ```text
//! <root>/<id>/state.json   what `create` decided (pid, bundle, cgroup, ...)
//! <root>/<id>/config.json  the spec as created, for exec and delete hooks
//! <root>/<id>/exec.fifo    init waits on it until `start` writes a byte
//! <root>/<id>/exit.json    init writes how the process ended
//! ```

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::process::timings::Timings;

pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.json";
pub const FIFO_FILE: &str = "exec.fifo";
pub const EXIT_FILE: &str = "exit.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container id {0:?} is invalid: use letters, digits, '_', '-', '.' and '+', at most 255 characters")]
    InvalidId(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// OCI status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        })
    }
}

/// What `create` recorded about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// Host pid of the container's init (pid 1 inside when it has a pid
    /// namespace).
    pub pid: i32,
    /// The init's start time in clock ticks since boot (`/proc/<pid>/stat`
    /// field 22), so a recycled pid is never mistaken for the container.
    pub pid_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    pub owner: String,
    /// The container's cgroup path, relative to the hierarchy roots.
    pub cgroup_path: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub timings: Timings,
    /// The spec has poststart / poststop hooks, so `start` and `delete`
    /// need to read it at all.
    #[serde(default = "yes")]
    pub has_poststart: bool,
    #[serde(default = "yes")]
    pub has_poststop: bool,
}

/// Records written before the hook flags existed are assumed to have hooks.
fn yes() -> bool {
    true
}

/// How the container's process ended, written by its init.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    /// Exit code when the process exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Terminating signal when it was killed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub core_dumped: bool,
    /// Why the process never started (exec failed), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Microseconds from `start` to the process's successful `execve`.
    #[serde(default)]
    pub exec_us: u64,
}

impl ExitRecord {
    /// The shell convention: the exit code, or 128 + signal.
    pub fn shell_status(&self) -> i32 {
        match (self.exit_code, self.signal) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => 255,
        }
    }
}

/// Validates a container id the way runc does, so ids can never name a path
/// outside the state root.
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_string()))
    }
}

/// The state root: where container directories live.
#[derive(Debug, Clone)]
pub struct StateRoot {
    root: PathBuf,
}

impl StateRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Claims `id` by creating its directory (atomic: two concurrent creates
    /// of one id cannot both win).
    pub fn claim(&self, id: &str) -> Result<PathBuf, StateError> {
        validate_id(id)?;
        fs::create_dir_all(&self.root).map_err(io_err("creating state root", &self.root))?;
        let dir = self.dir(id);
        match fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StateError::Exists(id.to_string()))
            }
            Err(e) => Err(io_err("creating state directory", &dir)(e)),
        }
    }

    /// Loads the record of `id`.
    pub fn load(&self, id: &str) -> Result<Record, StateError> {
        validate_id(id)?;
        let path = self.dir(id).join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path, source })
    }

    /// Writes the record atomically (temp file, rename), so readers never
    /// see half a record. No fsync: state roots belong on tmpfs (`/run`),
    /// where records do not outlive a reboot anyway, and on a disk an fsync
    /// costs milliseconds (at times tens) per create.
    pub fn save(&self, record: &Record) -> Result<(), StateError> {
        let dir = self.dir(&record.id);
        let tmp = dir.join(".state.json.tmp");
        let path = dir.join(STATE_FILE);
        let bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
        let mut f = fs::File::create(&tmp).map_err(io_err("creating", &tmp))?;
        f.write_all(&bytes).map_err(io_err("writing", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("renaming into place", &path))
    }

    /// The exit record written by init, if the process has ended.
    pub fn exit_record(&self, id: &str) -> Option<ExitRecord> {
        let bytes = fs::read(self.dir(id).join(EXIT_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Ids of every container with a record, sorted.
    pub fn list(&self) -> Result<Vec<String>, StateError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("listing", &self.root)(e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Removes the container's directory; missing is fine.
    pub fn remove(&self, id: &str) -> Result<(), StateError> {
        validate_id(id)?;
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing", &dir)(e)),
        }
    }
}

/// Reads a process's start time (field 22 of `/proc/<pid>/stat`); `None` when
/// the process is gone.
pub fn process_start_time(pid: i32) -> Option<u64> {
    stat_fields(pid).map(|(_, start)| start)
}

/// The state letter of a process (field 3), e.g. 'Z' for a zombie.
pub fn process_state(pid: i32) -> Option<char> {
    stat_fields(pid).map(|(state, _)| state)
}

/// State letter and start time from one read of `/proc/<pid>/stat`.
fn stat_fields(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and ')': skip past the last ')'.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    // rest starts with field 3 (state); starttime is field 22.
    let state = rest.next()?.chars().next()?;
    let start = rest.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether the record's init is still alive (and not a zombie, and not a
/// recycled pid).
pub fn init_alive(record: &Record) -> bool {
    stat_fields(record.pid)
        .is_some_and(|(state, start)| start == record.pid_start_time && state != 'Z')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_escape_the_root_are_rejected() {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "x\0y"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["abc", "a.b-c_d+e", "123"] {
            assert!(validate_id(good).is_ok(), "{good:?} rejected");
        }
        // Ids become directory names: at most one file name's length.
        assert!(validate_id(&"a".repeat(255)).is_ok());
        assert!(validate_id(&"a".repeat(256)).is_err());
    }

    #[test]
    fn claim_is_exclusive_and_records_round_trip() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = StateRoot::new(tmp.path().join("state"));
        root.claim("c1").expect("first claim");
        assert!(matches!(root.claim("c1"), Err(StateError::Exists(_))));
        let rec = Record {
            id: "c1".into(),
            pid: 42,
            pid_start_time: 7,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "now".into(),
            owner: "root".into(),
            cgroup_path: "garden/c1".into(),
            annotations: HashMap::new(),
            timings: Timings::default(),
            has_poststart: false,
            has_poststop: true,
        };
        root.save(&rec).expect("save");
        let loaded = root.load("c1").expect("load");
        assert_eq!(loaded.pid, 42);
        assert!(!loaded.has_poststart && loaded.has_poststop);
        // A record from before the hook flags assumes hooks.
        let old = r#"{"id":"c2","pid":1,"pid_start_time":1,"bundle":"/b","rootfs":"/r","created":"x","owner":"root","cgroup_path":"g"}"#;
        let old: Record = serde_json::from_str(old).expect("old record");
        assert!(old.has_poststart && old.has_poststop);
        assert_eq!(root.list().expect("list"), vec!["c1".to_string()]);
        root.remove("c1").expect("remove");
        assert!(matches!(root.load("c1"), Err(StateError::NotFound(_))));
    }

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert!(matches!(process_state(me), Some('R' | 'S')));
    }

    #[test]
    fn shell_status_follows_the_convention() {
        let exited = ExitRecord {
            exit_code: Some(3),
            ..Default::default()
        };
        let killed = ExitRecord {
            signal: Some(9),
            ..Default::default()
        };
        assert_eq!(exited.shell_status(), 3);
        assert_eq!(killed.shell_status(), 137);
    }
}
