//! `lifecycle-docker-builder`: reads a docker image's config for staging
//! (REFERENCE §4). Installed in staging containers as
//! `/tmp/lifecycle/docker-builder`.

use lifecycle::args::{self, DockerArgs};
use lifecycle::docker;

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let args: DockerArgs = match args::parse(std::env::args_os()) {
        Ok(a) => a,
        Err(e) => {
            e.print();
            std::process::exit(e.exit_code());
        }
    };
    if let Err(e) = docker::stage(&args) {
        eprintln!("Staging failed: {e}");
        std::process::exit(1);
    }
}
