//! `lifecycle-builder`: stages an app with buildpacks (REFERENCE §3).
//! Installed in staging containers as `/tmp/lifecycle/builder`.

use lifecycle::args::{self, BuilderArgs};
use lifecycle::staging;

fn main() {
    lifecycle::init_logging();
    let args: BuilderArgs = args::parse_or_exit();
    if let Err(e) = staging::stage(&args) {
        eprintln!("{e}");
        std::process::exit(e.exit_code());
    }
}
