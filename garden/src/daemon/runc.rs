//! Driving our OCI runtime: `garden-runc` as a subprocess for the verbs that
//! fork (create, start, delete), the runtime library in-process for the
//! read-only ones and for signals (no fork in a multi-threaded daemon).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::runtime::state::Status;
use crate::runtime::{Inspection, Runtime};

#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("garden-runc {verb} {handle}: {message}")]
    Failed {
        verb: &'static str,
        handle: String,
        message: String,
    },
    #[error(transparent)]
    Runtime(#[from] crate::runtime::ContainerError),
    #[error("a runtime task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

#[derive(Debug, Clone)]
pub struct Runc {
    pub binary: PathBuf,
    pub root: PathBuf,
}

impl Runc {
    /// `run --detach`: create and start in one exec (errors in `log`); a
    /// failed start leaves no container behind.
    pub async fn create_and_start(
        &self,
        bundle: &Path,
        handle: &str,
        log: &Path,
    ) -> Result<(), RuncError> {
        let mut cmd = self.command(log);
        cmd.args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg(handle);
        self.status(cmd, "run", handle, log).await
    }

    /// `delete --force`: kills whatever runs, removes cgroup and state.
    pub async fn delete(&self, handle: &str, log: &Path) -> Result<(), RuncError> {
        if !self.root.join(handle).exists() {
            return Ok(());
        }
        let mut cmd = self.command(log);
        cmd.args(["delete", "--force", handle]);
        self.status(cmd, "delete", handle, log).await
    }

    pub fn library(&self) -> Runtime {
        Runtime::new(&self.root)
    }

    /// The container's record and status.
    pub async fn inspect(&self, handle: &str) -> Result<Inspection, RuncError> {
        let rt = self.library();
        let h = handle.to_string();
        Ok(tokio::task::spawn_blocking(move || rt.inspect(&h)).await??)
    }

    pub async fn running(&self, handle: &str) -> bool {
        self.inspect(handle)
            .await
            .is_ok_and(|i| i.status == Status::Running)
    }

    /// Signals every process of the container (init included).
    pub async fn kill_all(&self, handle: &str, signal: i32) -> Result<(), RuncError> {
        let rt = self.library();
        let h = handle.to_string();
        Ok(tokio::task::spawn_blocking(move || rt.kill(&h, signal, true)).await??)
    }

    pub async fn pids(&self, handle: &str) -> Result<Vec<i32>, RuncError> {
        let rt = self.library();
        let h = handle.to_string();
        Ok(tokio::task::spawn_blocking(move || rt.pids(&h)).await??)
    }

    fn command(&self, log: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(log)
            .args(["--log-format", "json"])
            // init inherits create's stdio: never a pipe we would wait on.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    async fn status(
        &self,
        mut cmd: tokio::process::Command,
        verb: &'static str,
        handle: &str,
        log: &Path,
    ) -> Result<(), RuncError> {
        let status = cmd.status().await.map_err(|source| RuncError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        if status.success() {
            return Ok(());
        }
        Err(RuncError::Failed {
            verb,
            handle: handle.to_string(),
            message: last_error(log)
                .unwrap_or_else(|| format!("exited with {status} without a message")),
        })
    }
}

/// The last message garden-runc logged (runc's JSON log lines).
pub fn last_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        v.get("msg")?.as_str().map(str::to_string)
    })
}
