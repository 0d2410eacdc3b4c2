//! gardend: the Garden API daemon, and (hidden) the per-process keeper.
//!
//! `gardend --config /etc/garden/garden.toml` serves the Garden HTTP API;
//! `gardend --print-config` shows the effective configuration. Stopping the
//! daemon (SIGTERM, SIGINT, even SIGKILL) leaves every container and
//! process running; the next start takes them up again.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use garden::daemon::{Config, Garden};
use garden::keeper::{self, KeeperArgs};
use garden_api::server::{Server, ServerConfig};

#[derive(Debug, Parser)]
#[command(name = "gardend", version, about = "The Garden API daemon")]
struct Cli {
    /// TOML configuration (every key optional; see docs/garden-daemon.md).
    #[arg(long, short, env = "GARDEN_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    print_config: bool,
    /// Remove garden's container networks and nft table, then exit (a
    /// host that stops running containers; tests). Destroy the containers
    /// first: their networks go with them.
    #[arg(long)]
    teardown_network: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Internal: keep one container process (started by the daemon).
    #[command(hide = true)]
    Keep {
        #[arg(long)]
        runtime: PathBuf,
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        container: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        tty: bool,
        /// The process is a sidecar's init: `container` names its own
        /// runtime container, `dir/bundle` is its bundle.
        #[arg(long)]
        pea: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Keep {
        runtime,
        root,
        container,
        dir,
        tty,
        pea,
    }) = cli.command
    {
        let code = keeper::run(&KeeperArgs {
            runtime,
            root,
            container,
            dir,
            tty,
            pea,
        });
        return ExitCode::from(code as u8);
    }
    init_tracing();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("gardend: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (journald under systemd); `GARDEN_LOG` filters them
/// (default `info`), `GARDEN_LOG_FORMAT=json` makes them JSON lines.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("GARDEN_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(cli: &Cli) -> Result<()> {
    let config = match &cli.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if cli.print_config {
        print!("{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if cli.teardown_network {
        return rt.block_on(teardown_network(config));
    }
    rt.block_on(serve(config))
}

async fn teardown_network(config: Config) -> Result<()> {
    let (network, _) =
        garden_net::Network::open(config.network.clone(), &config.network_state_dir())
            .await
            .context("opening the network")?;
    network.teardown().await.context("tearing down")?;
    Ok(())
}

async fn serve(config: Config) -> Result<()> {
    let server_config = ServerConfig {
        unix_socket: config.listen.socket.clone(),
        tcp: config.listen.tcp,
        default_grace_time: config.containers.default_grace_time,
        limits: Default::default(),
    };
    let garden = Garden::start(config).await.context("starting garden")?;
    let server = Server::bind(server_config, Arc::new(garden))
        .await
        .context("listening")?;
    if let Some(p) = server.socket_path() {
        tracing::info!(socket = %p.display(), "serving the Garden API");
    }
    if let Some(a) = server.tcp_addr() {
        tracing::info!(address = %a, "serving the Garden API");
    }
    let token = server.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("stopping; containers and processes keep running");
        token.cancel();
    });
    notify_ready();
    server.serve().await.context("serving")?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// systemd's `Type=notify`: READY=1 on $NOTIFY_SOCKET once we serve.
fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let path = PathBuf::from(path);
    // Abstract sockets start with '@'; std cannot address them, so only
    // path sockets are supported (systemd uses a path by default).
    if let Err(e) = sock.send_to(b"READY=1", &path) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}
