//! `lifecycle-docker-builder`: reads a docker image's config for staging
//! (REFERENCE §4). Installed in staging containers as
//! `/tmp/lifecycle/docker-builder`.

use lifecycle::args::{self, DockerArgs};
use lifecycle::docker;

fn main() {
    lifecycle::init_logging();
    let args: DockerArgs = args::parse_or_exit();
    if let Err(e) = docker::stage(&args) {
        eprintln!("Staging failed: {e}");
        std::process::exit(1);
    }
}
