//! `lifecycle-builder`: stages an app with buildpacks (REFERENCE §3).
//! Installed in staging containers as `/tmp/lifecycle/builder`.

use lifecycle::args::{self, BuilderArgs};
use lifecycle::staging;

fn main() {
    init_logging();
    let args: BuilderArgs = match args::parse(std::env::args_os()) {
        Ok(a) => a,
        Err(e) => {
            e.print();
            std::process::exit(e.exit_code());
        }
    };
    if let Err(e) = staging::stage(&args) {
        eprintln!("{e}");
        std::process::exit(e.exit_code());
    }
}

/// Warnings and errors on stderr unless `RUST_LOG` says otherwise.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
}
