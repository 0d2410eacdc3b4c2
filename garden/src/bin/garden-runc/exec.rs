//! `exec`: runc's flags, turned into an OCI `Process` for the library.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use garden::runtime::container::wait::{catch_signals, wait_forwarding};
use garden::runtime::process::exec::{spawn, ExecRequest};
use garden::runtime::state::Status;
use garden::runtime::Runtime;
use oci_spec::runtime::{Capability, Process};

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Extra environment, KEY=VALUE.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// The user to run as: UID or UID:GID.
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// A process.json with the whole OCI process (overrides the flags).
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Add a capability (CAP_NAME) to the bounding, effective and permitted sets.
    #[arg(short, long)]
    pub cap: Vec<String>,
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(rt: &Runtime, a: ExecArgs) -> Result<i32> {
    let c = rt.inspect(&a.id)?;
    if c.status == Status::Stopped {
        bail!("cannot exec in a stopped container {}", a.id);
    }
    let spec = rt.spec(&a.id)?;
    let process = build_process(&spec, &a)?;
    nix::sys::prctl::set_child_subreaper(true).context("prctl(PR_SET_CHILD_SUBREAPER)")?;
    let signals = if a.detach {
        None
    } else {
        Some(catch_signals()?)
    };
    let pid = spawn(&ExecRequest {
        init_pid: c.record.pid,
        cgroup_path: c.record.cgroup_path.clone(),
        spec,
        process,
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
    })?;
    if let Some(f) = &a.pid_file {
        std::fs::write(f, pid.to_string()).with_context(|| format!("writing {}", f.display()))?;
    }
    match signals {
        None => Ok(0),
        Some(s) => Ok(wait_forwarding(pid, &s)?.shell_status()),
    }
}

fn build_process(spec: &oci_spec::runtime::Spec, a: &ExecArgs) -> Result<Process> {
    if let Some(path) = &a.process {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return serde_json::from_slice(&bytes)
            .with_context(|| format!("invalid process file {}", path.display()));
    }
    if a.command.is_empty() {
        bail!("exec needs a command (or --process FILE)");
    }
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(a.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(user) = &a.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u.parse::<u32>()?, g.parse::<u32>()?),
            None => (
                user.parse::<u32>()
                    .with_context(|| format!("--user {user:?}: want UID[:GID]"))?,
                0,
            ),
        };
        let mut u = p.user().clone();
        u.set_uid(uid);
        u.set_gid(gid);
        if !a.additional_gids.is_empty() {
            u.set_additional_gids(Some(a.additional_gids.clone()));
        }
        p.set_user(u);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            let c: Capability = name
                .trim_start_matches("CAP_")
                .parse()
                .with_context(|| format!("unknown capability {name}"))?;
            for set in [
                caps.bounding().clone(),
                caps.effective().clone(),
                caps.permitted().clone(),
            ] {
                let _ = set;
            }
            let mut b = caps.bounding().clone().unwrap_or_default();
            b.insert(c);
            caps.set_bounding(Some(b));
            let mut e = caps.effective().clone().unwrap_or_default();
            e.insert(c);
            caps.set_effective(Some(e));
            let mut pm = caps.permitted().clone().unwrap_or_default();
            pm.insert(c);
            caps.set_permitted(Some(pm));
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}
