//! The runtime's verbs on containers (runc's command set), one file per
//! operation.

mod delete;
pub mod kill;
mod query;
mod run;
mod start;
pub mod tty;
pub mod wait;

use std::path::PathBuf;

use garden_cgroups::CgroupError;

use super::hooks::HookError;
use super::process::create::CreateError;
use super::process::exec::ExecError;
use super::state::{StateError, StateRoot, Status};

pub use query::Inspection;
pub use run::RunOptions;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Create(#[from] CreateError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("cgroup of container {id}: {source}")]
    Cgroup {
        id: String,
        #[source]
        source: CgroupError,
    },
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error("container {id} is {status}, {wanted}")]
    WrongStatus {
        id: String,
        status: Status,
        wanted: &'static str,
    },
    #[error("sending signal {signal} to container {id}: {source}")]
    Signal {
        id: String,
        signal: i32,
        #[source]
        source: nix::Error,
    },
    #[error("starting container {id}: {source}")]
    Start {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id} did not stop within {secs} s after SIGKILL")]
    StuckProcesses { id: String, secs: u64 },
    #[error("reading {path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("console: {step}: {source}")]
    Console {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{step}: {source}")]
    Sys {
        step: &'static str,
        #[source]
        source: nix::Error,
    },
}

/// The runtime: a state root and the verbs.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub root: StateRoot,
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: StateRoot::new(root),
        }
    }
}
