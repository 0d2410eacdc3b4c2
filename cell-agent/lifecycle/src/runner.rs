//! Running a buildpack's scripts. Their stdout and stderr pass straight
//! through (the executor streams them as the staging log); only
//! `bin/detect`'s and `bin/release`'s stdout is captured, because it is
//! their answer. Stdin is closed.

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

use crate::buildpack::{Buildpack, Script};

/// Why a script could not be run at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot run {}: {source}", path.display())]
pub struct RunError {
    /// The script.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// How a script ended, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub ExitStatus);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use std::os::unix::process::ExitStatusExt as _;
        match (self.0.code(), self.0.signal()) {
            (Some(code), _) => write!(f, "status {code}"),
            (None, Some(sig)) => write!(f, "signal {sig}"),
            (None, None) => write!(f, "{}", self.0),
        }
    }
}

fn command<S: AsRef<OsStr>>(bp: &Buildpack, script: Script, args: &[S]) -> Command {
    let mut cmd = Command::new(bp.script(script));
    cmd.args(args).stdin(Stdio::null());
    cmd
}

/// Runs `script` with `args`, its output passing through.
pub fn run<S: AsRef<OsStr>>(
    bp: &Buildpack,
    script: Script,
    args: &[S],
) -> Result<Status, RunError> {
    tracing::debug!(buildpack = %bp.key, script = script.rel_path(), "running");
    command(bp, script, args)
        .status()
        .map(Status)
        .map_err(|source| RunError {
            path: bp.script(script),
            source,
        })
}

/// Runs `script` with `args`, returning its stdout (stderr passes through).
pub fn run_capture<S: AsRef<OsStr>>(
    bp: &Buildpack,
    script: Script,
    args: &[S],
) -> Result<(Status, String), RunError> {
    tracing::debug!(buildpack = %bp.key, script = script.rel_path(), "running, capturing stdout");
    let out = command(bp, script, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| RunError {
            path: bp.script(script),
            source,
        })?;
    Ok((
        Status(out.status),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn buildpack(script: &str, body: &str) -> (tempfile::TempDir, Buildpack) {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(tmp.path().join("bin")).expect("mkdir");
        let path = tmp.path().join("bin").join(script);
        std::fs::write(&path, body).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let bp = Buildpack {
            key: "k".into(),
            dir: tmp.path().to_path_buf(),
        };
        (tmp, bp)
    }

    #[test]
    fn captures_stdout_and_reports_status() {
        let (_tmp, bp) = buildpack("detect", "#!/bin/sh\necho \"name-$1\"\nexit 3\n");
        let (status, out) = run_capture(&bp, Script::Detect, &["x"]).expect("run");
        assert_eq!(out, "name-x\n");
        assert_eq!(status.to_string(), "status 3");
        assert!(!status.0.success());
        let again = run(&bp, Script::Detect, &["x"]).expect("run");
        assert_eq!(again.0.code(), Some(3));
    }

    #[test]
    fn a_missing_script_is_a_run_error() {
        let (_tmp, bp) = buildpack("detect", "#!/bin/sh\n");
        let err = run(&bp, Script::Compile, &["x"]).expect_err("missing");
        assert!(err.to_string().contains("bin/compile"), "{err}");
    }
}
