//! The command line: runc's verbs, flags and defaults.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use garden::runtime::container::kill::parse_signal;
use garden::runtime::{CreateOptions, RunOptions, Runtime};

#[derive(Debug, Parser)]
#[command(
    name = "garden-runc",
    version,
    about = "garden's OCI container runtime, with runc's command line"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Directory for container state (tmpfs is best).
    #[arg(long, global = true, default_value = "/run/garden-runc")]
    pub root: PathBuf,
    /// Log file (runc-compatible).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    pub log_format: String,
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for compatibility; systemd cgroup management is not supported.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create(CreateArgs),
    /// Start a created container's process.
    Start { id: String },
    /// Print a container's state as OCI state JSON.
    State { id: String },
    /// Send a signal (default TERM) to a container's init, or to all its processes.
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "TERM")]
        signal: String,
    },
    /// Delete a container (stopped, or any with --force).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create, start and wait for a container; delete it after.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Run a new process inside a running container.
    Exec(crate::exec::ExecArgs),
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// List the processes of a container.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
    },
    /// Internal: a container's init continuing from a read-only copy of
    /// the binary after set-up (see `process::resume`).
    #[command(name = "init-resume", hide = true)]
    InitResume { fd: i32 },
    /// Write a default config.json into a bundle directory.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Bundle directory (default: the current directory).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is set.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Write the container's init pid here.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Pass descriptors 3..3+N to the container's process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
    /// Refused: this runtime always uses pivot_root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Accepted for compatibility (no session keyring is created).
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    pub id: String,
}

impl CreateArgs {
    pub fn options(&self) -> Result<CreateOptions> {
        if self.no_pivot {
            bail!("--no-pivot is not supported: garden-runc always uses pivot_root");
        }
        Ok(CreateOptions {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            console_socket: self.console_socket.clone(),
            pid_file: self.pid_file.as_ref().map(|p| absolute(p)),
            preserve_fds: self.preserve_fds,
        })
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

impl Command {
    pub fn enters_container(&self) -> bool {
        // `create` (and `run`) need not: their init re-executes from a
        // read-only copy by itself once set-up is done.
        matches!(self, Command::Exec(_))
    }
}

pub fn dispatch(cli: Cli) -> Result<i32> {
    if cli.global.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: garden-runc manages cgroupfs directly");
    }
    let rt = Runtime::new(&cli.global.root);
    match cli.command {
        Command::Create(a) => {
            rt.create(&a.options()?)?;
        }
        Command::Start { id } => rt.start(&id)?,
        Command::State { id } => {
            let c = rt.inspect(&id)?;
            println!("{}", serde_json::to_string_pretty(&c.oci())?);
        }
        Command::Kill { all, id, signal } => {
            let sig =
                parse_signal(&signal).with_context(|| format!("unknown signal {signal:?}"))?;
            rt.kill(&id, sig, all)?;
        }
        Command::Delete { force, id } => rt.delete(&id, force)?,
        Command::Run {
            create,
            detach,
            keep,
        } => {
            return Ok(rt.run(&RunOptions {
                create: create.options()?,
                detach,
                keep,
            })?)
        }
        Command::Exec(a) => return crate::exec::run(&rt, a),
        Command::List { format, quiet } => list(&rt, &format, quiet)?,
        Command::Ps { format, id } => ps(&rt, &format, &id)?,
        Command::Spec { bundle } => spec(&bundle)?,
        Command::InitResume { fd } => garden::runtime::process::resume::resume(fd),
    }
    Ok(0)
}

fn list(rt: &Runtime, format: &str, quiet: bool) -> Result<()> {
    let all = rt.list()?;
    if quiet {
        all.iter().for_each(|c| println!("{}", c.record.id));
        return Ok(());
    }
    match format {
        "json" => {
            let states: Vec<_> = all.iter().map(|c| c.oci()).collect();
            println!("{}", serde_json::to_string(&states)?);
        }
        "table" => {
            println!(
                "{:<24} {:<8} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for c in &all {
                let s = c.oci();
                println!(
                    "{:<24} {:<8} {:<10} {:<40} {:<32} {}",
                    s.id,
                    s.pid,
                    s.status,
                    s.bundle.display(),
                    s.created,
                    s.owner
                );
            }
        }
        other => bail!("unknown format {other:?}: use table or json"),
    }
    Ok(())
}

fn ps(rt: &Runtime, format: &str, id: &str) -> Result<()> {
    let pids = rt.pids(id)?;
    match format {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            println!("{:<8} CMD", "PID");
            for pid in pids {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd: Vec<String> = cmd
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect();
                println!("{pid:<8} {}", cmd.join(" "));
            }
        }
        other => bail!("unknown format {other:?}: use table or json"),
    }
    Ok(())
}

fn spec(bundle: &std::path::Path) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{} already exists; remove it first", path.display());
    }
    let spec = oci_spec::runtime::Spec::default();
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
