//! The `controller-lite` binary: `controller-lite serve --config FILE`, and
//! `controller-lite cell-key CELL_ID` for a cell's own internal-API key.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use controller_lite::cells;
use controller_lite::config::Config;
use controller_lite::db::Db;

#[derive(Parser)]
#[command(
    name = "controller-lite",
    version,
    about = "Cloud Foundry v3 API server, UAA, log-cache, blobstore and staging"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API until SIGINT or SIGTERM.
    Serve {
        /// TOML configuration file (every key has a default).
        #[arg(long, env = "CONTROLLER_LITE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Issue (or rotate) a cell's own internal-API key and print it, or
    /// revoke it. Works while the controller runs.
    CellKey {
        /// TOML configuration file (for `data_dir`).
        #[arg(long, env = "CONTROLLER_LITE_CONFIG")]
        config: Option<PathBuf>,
        /// The cell's id (letters, digits, '.', '_', '-').
        cell_id: String,
        /// Revoke the cell's key instead of issuing one.
        #[arg(long)]
        revoke: bool,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let config = load(config)?;
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(serve(config))
        }
        Command::CellKey {
            config,
            cell_id,
            revoke,
        } => cell_key(&load(config)?, &cell_id, revoke),
    }
}

fn load(path: Option<PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(path) => Config::load(&path)?,
        None => Config::default(),
    })
}

fn cell_key(config: &Config, cell_id: &str, revoke: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let db = Db::open_with_readers(&config.data_dir.join("controller.db"), 1)?;
    if revoke {
        if !cells::revoke_key(&db, cell_id)? {
            anyhow::bail!("cell {cell_id:?} has no valid key");
        }
        println!("revoked the key of cell {cell_id}");
    } else {
        println!("{}", cells::issue_key(&db, cell_id)?);
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let mut controller = controller_lite::server::start(config)
        .await
        .context("starting the controller")?;
    // The address line lets supervisors and tests find an ephemeral port.
    println!("listening on {}", controller.addr);
    let cancel = controller.cancel_token();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = controller.wait() => anyhow::bail!("the HTTP server stopped unexpectedly"),
    }
    cancel.cancel();
    controller.shutdown().await;
    Ok(())
}
