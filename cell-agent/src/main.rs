//! `cell-agent`: the cell agent's binary.
//!
//! - `cell-agent run --config /etc/cell-agent/cell-agent.toml`: the rep and
//!   executor (see `docs/cell-agent.md`); exits 0 after evacuating
//!   (SIGTERM or `POST /evacuate`), leaves containers for the next start
//!   on SIGINT;
//! - `cell-agent diag [--json] summary|containers|container <guid>|host`:
//!   the operators' diagnostics;
//! - `cell-agent healthcheck`: the health check the executor runs inside
//!   LRP containers (bind-mounted at `/etc/cf-assets/healthcheck`).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cell_agent::config::CellConfig;
use cell_agent::diag;
use cell_agent::executor::healthcheck::Healthcheck;
use clap::{Parser, Subcommand};

const DEFAULT_CONFIG: &str = "/etc/cell-agent/cell-agent.toml";

#[derive(Parser)]
#[command(name = "cell-agent", about = "Diego's cell agent (rep and executor)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cell agent: presence, rep API, executor, evacuation.
    Run {
        /// The TOML configuration (every key optional).
        #[arg(long, short, env = "CELL_AGENT_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print the effective configuration and exit.
    PrintConfig {
        /// The TOML configuration.
        #[arg(long, short, env = "CELL_AGENT_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Diagnostics of this cell (talks to the local agent and gardend).
    Diag {
        /// The agent's configuration (for its admin address and garden
        /// socket); a missing file means the defaults.
        #[arg(long, short, env = "CELL_AGENT_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The agent's admin URL instead of the one from the configuration.
        #[arg(long)]
        agent_url: Option<String>,
        /// gardend's socket instead of the one from the configuration.
        #[arg(long)]
        garden_socket: Option<PathBuf>,
        /// JSON instead of tables.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        what: DiagCommand,
    },
    /// One health check of a port (TCP connect, or HTTP GET wanting 200);
    /// exits 0 when healthy, 1 with the reason on stderr otherwise.
    Healthcheck {
        /// The port.
        #[arg(long)]
        port: u16,
        /// Check with an HTTP GET of this path instead of a TCP connect.
        #[arg(long)]
        http_path: Option<String>,
        /// Time the whole attempt may take.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// The address to check.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
    },
}

#[derive(Subcommand)]
enum DiagCommand {
    /// Capacity, allocations, presence, garden ping and capacity.
    Summary,
    /// Every container: state, owner, usage, uptime, ports, health, crashes.
    Containers,
    /// One container in detail, with its recent log lines.
    Container {
        /// Its guid (instance guid or task guid).
        guid: String,
    },
    /// Host checks: cgroup mode, overlayfs, user namespaces, seccomp, garden.
    Host,
}

fn load(config: &std::path::Path) -> Result<CellConfig, cell_agent::config::ConfigError> {
    CellConfig::load(config)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(config: PathBuf) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CELL_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = load(&config)?;
    let outcome = runtime()?.block_on(cell_agent::rep::run(config))?;
    tracing::info!(?outcome, "cell agent stopped");
    Ok(())
}

fn diag_target(
    config: &std::path::Path,
    agent_url: Option<String>,
    garden_socket: Option<PathBuf>,
) -> anyhow::Result<diag::Target> {
    let config = if config.exists() {
        load(config)?
    } else {
        CellConfig::parse("")?
    };
    Ok(diag::Target {
        agent_url: agent_url.unwrap_or_else(|| config.admin_url()),
        garden_socket: garden_socket.unwrap_or(config.garden_socket),
        proc_root: PathBuf::from("/proc"),
    })
}

fn run_diag(target: diag::Target, what: DiagCommand, json: bool) -> anyhow::Result<bool> {
    let command = match what {
        DiagCommand::Summary => diag::Command::Summary,
        DiagCommand::Containers => diag::Command::Containers,
        DiagCommand::Container { guid } => diag::Command::Container(guid),
        DiagCommand::Host => diag::Command::Host,
    };
    let (text, ok) = runtime()?.block_on(diag::run(&command, &target, json))?;
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(ok)
}

fn report(result: anyhow::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("cell-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config } => report(run(config).map(|()| true)),
        Command::PrintConfig { config } => {
            report(load(&config).map_err(Into::into).and_then(|c| {
                print!("{}", toml::to_string(&c)?);
                Ok(true)
            }))
        }
        Command::Diag {
            config,
            agent_url,
            garden_socket,
            json,
            what,
        } => report(
            diag_target(&config, agent_url, garden_socket).and_then(|t| run_diag(t, what, json)),
        ),
        Command::Healthcheck {
            port,
            http_path,
            timeout,
            host,
        } => {
            let check = Healthcheck {
                host,
                port,
                http_path,
                timeout,
            };
            match check.run() {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("{error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
