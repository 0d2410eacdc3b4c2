//! The `controller-lite` binary: `controller-lite serve --config FILE`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use controller_lite::config::Config;

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
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(serve(config))
        }
    }
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
