//! What survives a daemon restart: one JSON file per attachment under the
//! state directory, named after the container's address (handles may hold
//! any character), written to a temporary file and renamed into place.

use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use garden_api::types::{BandwidthLimits, NetOutRule, PortMapping};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing a state file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A state file is not a record this version understands.
    #[error("{path}: not an attachment record: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// One container's network as persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The container handle.
    pub handle: String,
    /// The container's subnet.
    pub subnet: Ipv4Net,
    /// The container's address.
    pub ip: Ipv4Addr,
    /// The bridge's address.
    pub gateway: Ipv4Addr,
    /// The container interfaces' MTU.
    pub mtu: u32,
    /// NetIn mappings in the order they were made.
    #[serde(default)]
    pub net_in: Vec<PortMapping>,
    /// NetOut rules in the order they were added.
    #[serde(default)]
    pub net_out: Vec<NetOutRule>,
    /// Bandwidth limits (zero: none).
    #[serde(default)]
    pub bandwidth: BandwidthLimits,
}

/// The directory of records.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        fs::create_dir_all(dir).map_err(|source| StateError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Every record, with the files that could not be read.
    pub fn load_all(&self) -> Result<(Vec<Record>, Vec<StateError>), StateError> {
        let io_err = |source| StateError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut records = Vec::new();
        let mut broken = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err)? {
            let path = entry.map_err(io_err)?.path();
            if path.extension().is_none_or(|ext| ext != "json") {
                // Left-over temporary files of an interrupted write.
                if path.extension().is_some_and(|ext| ext == "tmp") {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            match read_record(&path) {
                Ok(record) => records.push(record),
                Err(err) => broken.push(err),
            }
        }
        records.sort_by_key(|r| r.ip);
        Ok((records, broken))
    }

    /// Writes `record` atomically.
    pub fn save(&self, record: &Record) -> Result<(), StateError> {
        let path = self.path_of(record.ip);
        let tmp = path.with_extension("tmp");
        let io_err = |source| StateError::Io {
            path: tmp.clone(),
            source,
        };
        let body = serde_json::to_vec_pretty(record).expect("a record always serializes");
        let mut file = fs::File::create(&tmp).map_err(io_err)?;
        file.write_all(&body).map_err(io_err)?;
        drop(file);
        fs::rename(&tmp, &path).map_err(|source| StateError::Io { path, source })
    }

    /// Removes the record of the container with address `ip` (fine if absent).
    pub fn remove(&self, ip: Ipv4Addr) -> Result<(), StateError> {
        let path = self.path_of(ip);
        match fs::remove_file(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                Err(StateError::Io { path, source: err })
            }
            _ => Ok(()),
        }
    }

    /// How many records are stored (the leak test counts them).
    pub fn count(&self) -> Result<usize, StateError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| StateError::Io {
            path: self.dir.clone(),
            source,
        })?;
        Ok(entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|ext| ext == "json"))
            .count())
    }

    fn path_of(&self, ip: Ipv4Addr) -> PathBuf {
        self.dir.join(format!("{ip}.json"))
    }
}

fn read_record(path: &Path) -> Result<Record, StateError> {
    let body = fs::read(path).map_err(|source| StateError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&body).map_err(|source| StateError::Corrupt {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ip: &str) -> Record {
        Record {
            handle: "a/b c".into(),
            subnet: "10.1.0.0/30".parse().expect("cidr"),
            ip: ip.parse().expect("ip"),
            gateway: "10.1.0.2".parse().expect("ip"),
            mtu: 1500,
            net_in: vec![PortMapping {
                host_port: 61001,
                container_port: 8080,
            }],
            net_out: vec![NetOutRule::default()],
            bandwidth: BandwidthLimits::default(),
        }
    }

    #[test]
    fn records_round_trip_and_broken_files_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("open");
        state.save(&record("10.1.0.1")).expect("save");
        state.save(&record("10.1.0.5")).expect("save");
        fs::write(dir.path().join("junk.json"), "{").expect("write");
        fs::write(dir.path().join("x.tmp"), "half").expect("write");
        let (records, broken) = state.load_all().expect("load");
        assert_eq!(records, vec![record("10.1.0.1"), record("10.1.0.5")]);
        assert_eq!(broken.len(), 1);
        assert!(broken[0].to_string().contains("junk.json"));
        assert!(
            !dir.path().join("x.tmp").exists(),
            "temporary files are swept"
        );
        state
            .remove("10.1.0.1".parse().expect("ip"))
            .expect("remove");
        state
            .remove("10.1.0.1".parse().expect("ip"))
            .expect("remove twice");
        assert_eq!(state.count().expect("count"), 2);
    }
}
