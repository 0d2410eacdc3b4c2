//! `cell-agent`: the cell agent's binary. So far one command, the health
//! check the executor runs inside LRP containers (bind-mounted at
//! `/etc/cf-assets/healthcheck`).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use cell_agent::executor::healthcheck::Healthcheck;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cell-agent", about = "Diego's cell agent (rep and executor)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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

fn main() -> ExitCode {
    match Cli::parse().command {
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
