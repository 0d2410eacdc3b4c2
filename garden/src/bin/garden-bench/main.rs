//! garden-bench: how long `create`+`start`+wait+`delete` of `/bin/true`
//! takes with garden-runc and with runc, on the same bundle, alternating
//! runtimes in one run; p50/p95/mean of each, the ratio against the target
//! (ours ≤ 0.25 × runc at p50) and where our milliseconds go, phase by phase.
//!
//! Run as root: `garden-bench --iterations 50 [--json]`.

#![forbid(unsafe_code)]

mod bundle;
mod driver;
mod interrupt;
mod report;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

use bundle::Workdir;
use driver::{Phases, Runtime, PHASES};
use interrupt::Interrupted;
use report::Results;

#[derive(Debug, Parser)]
#[command(
    name = "garden-bench",
    about = "Compare garden-runc with runc: create+start+wait+delete of /bin/true"
)]
struct Cli {
    /// Busybox rootfs directory copied into the bundle.
    #[arg(long, env = "GARDEN_TEST_ROOTFS", default_value = "rootfs/out/busybox")]
    rootfs: PathBuf,
    /// Measured iterations per runtime.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,
    /// Unrecorded iterations per runtime before measuring.
    #[arg(long, default_value_t = 10)]
    warmup: u32,
    /// Our runtime [default: garden-runc next to this executable].
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// runc [default: /usr/sbin/runc, else runc on PATH].
    #[arg(long)]
    runc: Option<PathBuf>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,
}

/// The runtimes and their scratch directory. Dropping it force-deletes any
/// containers left behind, then removes the directory (fields drop after
/// `drop`).
struct Bench {
    ours: Runtime,
    runc: Runtime,
    bundle: PathBuf,
    _work: Workdir,
    _state: Workdir,
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.ours.delete_leftovers();
        self.runc.delete_leftovers();
    }
}

/// Every measured sample, in milliseconds (phases in microseconds).
#[derive(Default)]
struct Samples {
    ours: Vec<f64>,
    runc: Vec<f64>,
    phases: Vec<Phases>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("garden-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let interrupted = interrupt::watch()?;
    let ours_path = match cli.runtime {
        Some(p) => existing(p, "--runtime")?,
        None => default_ours()?,
    };
    let runc_path = match cli.runc {
        Some(p) => existing(p, "--runc")?,
        None => default_runc()?,
    };
    // The container's init is re-parented to us when `create` exits, as it
    // is to a containerd shim, so we can wait for it.
    nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;

    let work = Workdir::create()?;
    let state = Workdir::create_on_tmpfs()?;
    let bench = Bench {
        ours: Runtime::new("garden-runc", ours_path, &state.path().join("garden"))?,
        runc: Runtime::new("runc", runc_path, &state.path().join("runc"))?,
        bundle: work.path().join("bundle"),
        _work: work,
        _state: state,
    };
    bundle::make(&bench.runc.path, &cli.rootfs, &bench.bundle)?;

    eprintln!(
        "garden-bench: {} warm-up and {} measured iterations per runtime",
        cli.warmup, cli.iterations
    );
    let mut discard = Samples::default();
    for i in 0..cli.warmup {
        bench.pair(&format!("warmup-{i}"), &mut discard, &interrupted)?;
    }
    let mut samples = Samples::default();
    for i in 0..cli.iterations {
        bench.pair(&format!("bench-{i}"), &mut samples, &interrupted)?;
    }

    let results = summarize(&cli.rootfs, &bench, cli.iterations, cli.warmup, &samples)?;
    if cli.json {
        println!("{}", results.json());
    } else {
        print!("{}", results.text());
    }
    Ok(())
}

impl Bench {
    /// One cycle of ours, then one of runc's.
    fn pair(&self, id: &str, samples: &mut Samples, interrupted: &Interrupted) -> Result<()> {
        // A Ctrl-C also reaches the runtimes: say why they failed.
        let checked = |res: Result<driver::Cycle>| {
            if interrupted.is_set() {
                Err(anyhow!("interrupted"))
            } else {
                res
            }
        };
        let ours = checked(self.ours.cycle(&self.bundle, &format!("{id}-g"), true))?;
        let runc = checked(self.runc.cycle(&self.bundle, &format!("{id}-r"), false))?;
        driver::reap_strays();
        samples.ours.push(ms(ours.elapsed));
        samples.runc.push(ms(runc.elapsed));
        samples.phases.extend(ours.phases);
        Ok(())
    }
}

fn summarize(
    rootfs: &Path,
    bench: &Bench,
    iterations: u32,
    warmup: u32,
    s: &Samples,
) -> Result<Results> {
    let none = || anyhow!("no samples");
    let mut phases = [0.0; PHASES.len()];
    for (i, slot) in phases.iter_mut().enumerate() {
        let values: Vec<f64> = s.phases.iter().map(|p| p[i] as f64 / 1000.0).collect();
        *slot = stats::median(&values).ok_or_else(none)?;
    }
    Ok(Results {
        iterations,
        warmup,
        rootfs: rootfs.to_path_buf(),
        ours_path: bench.ours.path.clone(),
        runc_path: bench.runc.path.clone(),
        ours: stats::summarize(&s.ours).ok_or_else(none)?,
        runc: stats::summarize(&s.runc).ok_or_else(none)?,
        phases,
    })
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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

fn default_ours() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let path = exe.with_file_name("garden-runc");
    if !path.is_file() {
        bail!(
            "{} not found: build it (cargo build --release -p garden --bins) or pass --runtime",
            path.display()
        );
    }
    Ok(path)
}

fn default_runc() -> Result<PathBuf> {
    let debian = PathBuf::from("/usr/sbin/runc");
    if debian.is_file() {
        return Ok(debian);
    }
    on_path(Path::new("runc")).ok_or_else(|| anyhow!("runc not found at /usr/sbin/runc nor on PATH: install it (apt-get install runc) or pass --runc"))
}

fn on_path(name: &Path) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
