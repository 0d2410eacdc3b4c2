//! The staging lifecycle that runs inside a staging container, as Diego's
//! buildpack and docker app lifecycles do:
//!
//! - `lifecycle-builder` ([`staging::stage`]): detects or takes the named
//!   buildpacks, runs their scripts on the app, and writes the droplet,
//!   the build artifacts cache and `result.json` (REFERENCE §3);
//! - `lifecycle-docker-builder` ([`docker::stage`]): reads an image's
//!   config from its registry and writes `result.json` (REFERENCE §4).
//!
//! The controller packs them into staging containers as
//! `/tmp/lifecycle/builder` and `/tmp/lifecycle/docker-builder`. Both are
//! static binaries, so they run in any root filesystem.
#![forbid(unsafe_code)]

pub mod archive;
pub mod args;
pub mod buildpack;
pub mod docker;
pub mod release;
pub mod result;
pub mod runner;
pub mod staging;

/// Warnings and errors on stderr unless `RUST_LOG` says otherwise (the
/// binaries' stdout and stderr are the staging log).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
}
