//! gardend: the Garden API daemon, and (hidden) the per-process keeper.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use garden::keeper::{self, KeeperArgs};

#[derive(Debug, Parser)]
#[command(name = "gardend", version, about = "The Garden API daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keep {
            runtime,
            root,
            container,
            dir,
            tty,
        } => {
            let code = keeper::run(&KeeperArgs {
                runtime,
                root,
                container,
                dir,
                tty,
            });
            ExitCode::from(code as u8)
        }
    }
}
