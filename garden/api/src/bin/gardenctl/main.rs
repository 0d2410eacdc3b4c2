//! gardenctl: a command line for the Garden API (this daemon or a real Garden).
//!
//! `gardenctl create --handle web -m 256M`, `gardenctl run web -- /bin/sh -c 'echo hi'`,
//! `gardenctl list -p app=web --json`. The server is `--socket` (default
//! `/run/garden/garden.sock`, or `GARDEN_SOCKET`) or `--address host:port`.
#![forbid(unsafe_code)]

mod commands;
mod output;
mod run;
mod tarball;
mod term;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use garden_api::client::Client;

/// Talk to a Garden API server.
#[derive(Parser)]
#[command(name = "gardenctl", version)]
struct Cli {
    /// The server's unix socket.
    #[arg(
        long,
        env = "GARDEN_SOCKET",
        default_value = "/run/garden/garden.sock",
        global = true
    )]
    socket: PathBuf,
    /// The server's TCP address (`host:port`), instead of the socket.
    #[arg(long, env = "GARDEN_ADDRESS", global = true)]
    address: Option<String>,
    /// Print JSON (as the API returns it) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that the server answers.
    Ping,
    /// Show the server's capacity.
    Capacity,
    /// Create a container; prints its handle.
    Create(commands::CreateArgs),
    /// List containers, optionally only those with all the given properties.
    List {
        /// A property filter KEY=VALUE (repeatable; all must match).
        #[arg(short = 'p', long = "property", value_parser = commands::key_value)]
        properties: Vec<(String, String)>,
    },
    /// Show containers' state, addresses, processes and properties.
    Info {
        /// Container handles.
        #[arg(required = true)]
        handles: Vec<String>,
    },
    /// Show a container's resource usage.
    Metrics {
        /// Container handle.
        handle: String,
    },
    /// Show a container's current limits.
    Limits {
        /// Container handle.
        handle: String,
    },
    /// Read, set or remove properties.
    #[command(subcommand)]
    Properties(commands::PropertiesCommand),
    /// Run a process in a container with live stdio; exits with its status.
    Run(run::RunArgs),
    /// Attach to a running process; exits with its status.
    Attach(run::AttachArgs),
    /// Stop a container's processes (TERM, then KILL after 10 s).
    Stop {
        /// Container handle.
        handle: String,
        /// KILL at once.
        #[arg(long)]
        kill: bool,
    },
    /// Copy a local directory (or a tar archive on stdin) into a container.
    StreamIn(tarball::StreamInArgs),
    /// Copy a path out of a container into a local directory (or as tar to stdout).
    StreamOut(tarball::StreamOutArgs),
    /// Destroy containers.
    Destroy {
        /// Container handles.
        #[arg(required = true)]
        handles: Vec<String>,
    },
}

fn client(cli: &Cli) -> Client {
    match &cli.address {
        Some(address) => Client::tcp(address.clone()),
        None => Client::unix(&cli.socket),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let client = client(&cli);
    let json = cli.json;
    match cli.command {
        Command::Ping => commands::ping(&client).await.map(|()| 0),
        Command::Capacity => commands::capacity(&client, json).await.map(|()| 0),
        Command::Create(args) => commands::create(&client, args).await.map(|()| 0),
        Command::List { properties } => commands::list(&client, properties, json).await.map(|()| 0),
        Command::Info { handles } => commands::info(&client, &handles, json).await.map(|()| 0),
        Command::Metrics { handle } => commands::metrics(&client, &handle, json).await.map(|()| 0),
        Command::Limits { handle } => commands::limits(&client, &handle, json).await.map(|()| 0),
        Command::Properties(command) => commands::properties(&client, command, json)
            .await
            .map(|()| 0),
        Command::Run(args) => run::run(&client, args).await,
        Command::Attach(args) => run::attach(&client, args).await,
        Command::Stop { handle, kill } => client
            .stop(&handle, kill)
            .await
            .map(|()| 0)
            .map_err(Into::into),
        Command::StreamIn(args) => tarball::stream_in(&client, args).await.map(|()| 0),
        Command::StreamOut(args) => tarball::stream_out(&client, args).await.map(|()| 0),
        Command::Destroy { handles } => commands::destroy(&client, &handles).await.map(|()| 0),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gardenctl: cannot start: {error}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("gardenctl: {error:#}");
            1
        }
    };
    // stdin may be blocked in a read: do not wait for it.
    runtime.shutdown_background();
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
