//! gardend-bench: Garden's performance gate against gardend. Concurrent
//! clients (5 by default) each create 40 containers from a cached image
//! with a 1 MiB disk limit, run `/bin/true` in each and destroy it; the
//! bench prints p50/p95/mean of Create as the clients see it, of each of
//! the daemon's create phases (from its JSON log), of run+wait and of
//! destroy, and checks the target: mean Create ≤ 50 ms. Plain runc doing
//! create+start+wait+delete with the same concurrency is measured in the
//! same run as a peer.
//!
//! Run as root: `gardend-bench [--clients 5 --creates 40] [--json]`. It
//! starts its own gardend on temporary directories and removes everything
//! it made, even when interrupted.

#![forbid(unsafe_code)]

#[path = "../garden-bench/bundle.rs"]
mod bundle;
mod daemon;
// Shared with garden-bench: runc driven as a containerd shim drives it;
// the phase timings are garden-bench's alone.
#[allow(dead_code)]
#[path = "../garden-bench/driver.rs"]
mod driver;
#[path = "../garden-bench/interrupt.rs"]
mod interrupt;
mod peer;
mod phases;
mod report;
// Shared with garden-bench; `median` is its alone.
#[allow(dead_code)]
#[path = "../garden-bench/stats.rs"]
mod stats;
mod workload;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

use daemon::{Binaries, Daemon};
use interrupt::Interrupted;
use report::{Results, Row};
use workload::Plan;

#[derive(Debug, Parser)]
#[command(
    name = "gardend-bench",
    about = "Garden's performance gate against gardend: concurrent create (disk limit) + run /bin/true + destroy, with runc as a peer"
)]
struct Cli {
    /// Busybox rootfs directory: the image of every container.
    #[arg(long, env = "GARDEN_TEST_ROOTFS", default_value = "rootfs/out/busybox")]
    rootfs: PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    clients: u32,
    /// Measured creates per client.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    creates: u32,
    /// Disk limit of each container (byte_hard, exclusive scope): bytes, or
    /// with a KiB/MiB/GiB (or K/M/G) suffix.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    disk_limit: u64,
    /// Unrecorded cycles per client (and per runc worker) before measuring,
    /// after the one create that pulls the image.
    #[arg(long, default_value_t = 2)]
    warmup: u32,
    /// gardend [default: beside this executable].
    #[arg(long)]
    gardend: Option<PathBuf>,
    /// garden-runc for gardend [default: beside gardend].
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// runc for the peer [default: /usr/sbin/runc, else runc on PATH].
    #[arg(long)]
    runc: Option<PathBuf>,
    /// Skip the runc peer.
    #[arg(long)]
    no_runc: bool,
    /// Keep gardend's directory (config, log, depot) for debugging.
    #[arg(long)]
    keep_dir: bool,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = interrupt::watch().and_then(|interrupted| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        rt.block_on(run(&cli, &interrupted))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gardend-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli, interrupted: &Interrupted) -> Result<()> {
    let rootfs = std::fs::canonicalize(&cli.rootfs)
        .with_context(|| format!("--rootfs {}", cli.rootfs.display()))?;
    if !rootfs.join("bin/true").exists() {
        bail!(
            "{} has no bin/true: build the busybox rootfs (rootfs/build.sh) or pass --rootfs",
            rootfs.display()
        );
    }
    let bins = binaries(cli)?;
    let runc = if cli.no_runc {
        None
    } else {
        Some(match &cli.runc {
            Some(p) => existing(p.clone(), "--runc")?,
            None => default_runc()?,
        })
    };

    let prefix = format!("gdb{}", std::process::id());
    let plan = Plan {
        image: rootfs.display().to_string(),
        disk_limit: cli.disk_limit,
        prefix: prefix.clone(),
    };
    let (cycles, phases, dir) = {
        let daemon = Daemon::start(&bins, cli.keep_dir).await?;
        eprintln!(
            "gardend-bench: gardend up in {}; pulling the image, then {} client(s) x ({} warm-up + {} measured)",
            daemon.dir().display(),
            cli.clients,
            cli.warmup,
            cli.creates
        );
        let measured = measure_gardend(cli, &plan, &daemon, interrupted).await;
        let measured =
            measured.map_err(|e| anyhow!("{e:#}\ngardend's log ends:\n{}", daemon.log_tail()));
        let (cycles, phases) = measured?;
        (cycles, phases, daemon.dir().to_path_buf())
        // The daemon is dropped here: destroyed, killed, cleaned up.
    };

    let runc_cycles = match &runc {
        Some(runc) => {
            eprintln!(
                "gardend-bench: runc peer, {} worker(s) x ({} warm-up + {} measured)",
                cli.clients, cli.warmup, cli.creates
            );
            let peer = peer::Peer::new(runc.clone(), &rootfs, &prefix)?;
            let (clients, warmup, creates) = (cli.clients, cli.warmup, cli.creates);
            let stop = interrupted.clone();
            tokio::task::block_in_place(|| peer.run(clients, warmup, creates, &stop))?
        }
        None => Vec::new(),
    };

    let results = results(
        cli,
        &bins,
        runc.as_deref(),
        &rootfs,
        &dir,
        &cycles,
        &phases,
        &runc_cycles,
    )?;
    if cli.json {
        println!("{}", results.json());
    } else {
        print!("{}", results.text());
    }
    Ok(())
}

/// The image pull, the workload, and the daemon's phases of the measured
/// creates.
async fn measure_gardend(
    cli: &Cli,
    plan: &Plan,
    daemon: &Daemon,
    interrupted: &Interrupted,
) -> Result<(Vec<workload::Cycle>, phases::Phases)> {
    let pull = format!("{}-pull", plan.prefix);
    let first = plan.cycle(daemon.client(), &pull).await?;
    eprintln!(
        "gardend-bench: first create (pulls and caches the image) took {:.1} ms",
        first.create
    );
    let cycles = plan
        .run(
            daemon.client(),
            cli.clients,
            cli.warmup,
            cli.creates,
            interrupted,
        )
        .await?;
    let handles: HashSet<&str> = cycles.iter().map(|c| c.handle.as_str()).collect();
    let phases = phases::read(&daemon.log_path(), &handles)?;
    Ok((cycles, phases))
}

#[allow(clippy::too_many_arguments)]
fn results(
    cli: &Cli,
    bins: &Binaries,
    runc: Option<&Path>,
    rootfs: &Path,
    dir: &Path,
    cycles: &[workload::Cycle],
    phases: &phases::Phases,
    runc_cycles: &[peer::Cycle],
) -> Result<Results> {
    let none = || anyhow!("no samples");
    let row = |name, values: Vec<f64>| Row::new(name, &values).ok_or_else(none);
    let gardend = vec![
        row("create", cycles.iter().map(|c| c.create).collect())?,
        row("run+wait", cycles.iter().map(|c| c.run).collect())?,
        row("destroy", cycles.iter().map(|c| c.destroy).collect())?,
        row("cycle", cycles.iter().map(|c| c.total()).collect())?,
    ];
    let phases = phases::PHASES
        .iter()
        .zip(phases)
        .map(|(name, values)| row(name, values.clone()))
        .collect::<Result<Vec<_>>>()?;
    let runc_rows = if runc_cycles.is_empty() {
        Vec::new()
    } else {
        vec![
            row("create", runc_cycles.iter().map(|c| c.create).collect())?,
            row("start", runc_cycles.iter().map(|c| c.start).collect())?,
            row("wait", runc_cycles.iter().map(|c| c.wait).collect())?,
            row("delete", runc_cycles.iter().map(|c| c.delete).collect())?,
            row("cycle", runc_cycles.iter().map(|c| c.total()).collect())?,
        ]
    };
    let mut setup = vec![
        (
            "workload:",
            format!(
                "{} clients x {} creates (after 1 image pull and {} warm-up each)",
                cli.clients, cli.creates, cli.warmup
            ),
        ),
        (
            "disk limit:",
            format!("{} bytes, exclusive scope, loop backend", cli.disk_limit),
        ),
        ("image:", rootfs.display().to_string()),
        ("gardend:", bins.gardend.display().to_string()),
        ("runtime:", bins.runtime.display().to_string()),
        ("depot:", dir.display().to_string()),
    ];
    if let Some(runc) = runc {
        setup.push(("runc:", runc.display().to_string()));
    }
    Ok(Results {
        setup,
        gardend,
        phases,
        runc: runc_rows,
    })
}

fn binaries(cli: &Cli) -> Result<Binaries> {
    let gardend = match &cli.gardend {
        Some(p) => existing(p.clone(), "--gardend")?,
        None => {
            let exe = std::env::current_exe().context("locating this executable")?;
            let p = exe.with_file_name("gardend");
            if !p.is_file() {
                bail!(
                    "{} not found: build it (cargo build --release -p garden --bins) or pass --gardend",
                    p.display()
                );
            }
            p
        }
    };
    let runtime = match &cli.runtime {
        Some(p) => existing(p.clone(), "--runtime")?,
        None => {
            let p = gardend.with_file_name("garden-runc");
            if !p.is_file() {
                bail!("{} not found: pass --runtime", p.display());
            }
            p
        }
    };
    // gardend writes it into TOML and changes directory nowhere: absolute.
    let absolute =
        |p: PathBuf| std::fs::canonicalize(&p).with_context(|| format!("{}", p.display()));
    Ok(Binaries {
        gardend: absolute(gardend)?,
        runtime: absolute(runtime)?,
    })
}

/// Parses `1048576`, `1MiB`, `512KiB`, `1M`, `2G`... (binary units).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a number of bytes, e.g. 1MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(format!("{text:?}: unknown unit (use KiB, MiB or GiB)")),
    };
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{text:?}: out of range"))
}

fn existing(path: PathBuf, flag: &str) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path);
    }
    // A bare name is looked up on PATH, as a shell would.
    if path.components().count() == 1 {
        if let Some(found) = on_path(&path) {
            return Ok(found);
        }
    }
    bail!("{flag} {}: no such file", path.display())
}

fn default_runc() -> Result<PathBuf> {
    let debian = PathBuf::from("/usr/sbin/runc");
    if debian.is_file() {
        return Ok(debian);
    }
    on_path(Path::new("runc")).ok_or_else(|| {
        anyhow!(
            "runc not found at /usr/sbin/runc nor on PATH: install it, pass --runc, or --no-runc"
        )
    })
}

fn on_path(name: &Path) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        for bad in ["", "MiB", "1TB", "0", "-1", "99999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
