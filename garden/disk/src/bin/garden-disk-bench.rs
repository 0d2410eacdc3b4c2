//! Create/destroy timings of a disk backend, like Garden's performance
//! gate: `--concurrency` workers each create `--per-worker` volumes with a
//! byte limit, write a little into each, and destroy it. Prints p50, p95 and
//! mean of create and destroy. The template build (loop) happens before
//! the clock starts, as in a daemon that has created a container before.
//!
//!   garden-disk-bench --kind loop
//!   garden-disk-bench --kind btrfs --store-size 1073741824

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use garden_disk::{BackendKind, Disk, DiskConfig, DiskLimits, DiskScope, ImageUsage, StoreImage};

#[derive(Parser)]
#[command(about = "Measures create and destroy of garden-disk volumes")]
struct Args {
    /// The backend: loop, btrfs, xfs, none.
    #[arg(long, default_value = "loop")]
    kind: String,
    /// The store directory (default: a temp dir under /var/tmp, removed after).
    #[arg(long)]
    root: Option<PathBuf>,
    /// btrfs, xfs: create and mount a store image of this many bytes.
    #[arg(long)]
    store_size: Option<u64>,
    /// The byte limit of each volume.
    #[arg(long, default_value_t = 1 << 20)]
    bytes: u64,
    /// The inode limit of each volume.
    #[arg(long, default_value_t = 0)]
    inodes: u64,
    /// Concurrent workers.
    #[arg(long, default_value_t = 5)]
    concurrency: usize,
    /// Volumes per worker.
    #[arg(long, default_value_t = 40)]
    per_worker: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let kind: BackendKind = serde_json::from_value(serde_json::Value::String(args.kind.clone()))
        .with_context(|| format!("unknown backend {:?}", args.kind))?;
    let temp = tempfile::Builder::new()
        .prefix("garden-disk-bench-")
        .tempdir_in("/var/tmp")?;
    let root = args
        .root
        .clone()
        .unwrap_or_else(|| temp.path().join("store"));
    let mut config = DiskConfig::new(kind, &root);
    config.store_image = args.store_size.map(|size| StoreImage {
        path: temp.path().join("store.img"),
        size,
    });
    let disk = Disk::open(config)?;
    let limits = DiskLimits {
        byte_hard: args.bytes,
        inode_hard: args.inodes,
        scope: DiskScope::Exclusive,
        ..DiskLimits::default()
    };
    let warm = Instant::now();
    disk.create("warm-up", &limits, ImageUsage::default())?;
    disk.destroy("warm-up")?;
    println!(
        "{} backend, first create+destroy (template build): {:.1} ms",
        kind.name(),
        ms(warm.elapsed())
    );
    let result = run(&disk, &args, &limits);
    for handle in disk.list()? {
        disk.destroy(&handle)?;
    }
    disk.unmount_store()?;
    let (creates, destroys) = result?;
    report("create", creates);
    report("destroy", destroys);
    Ok(())
}

type Timings = (Vec<Duration>, Vec<Duration>);

fn run(disk: &Disk, args: &Args, limits: &DiskLimits) -> Result<Timings> {
    let timings = Mutex::new((Vec::new(), Vec::new()));
    let started = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..args.concurrency)
            .map(|w| {
                let timings = &timings;
                s.spawn(move || -> Result<()> {
                    for i in 0..args.per_worker {
                        let handle = format!("bench-{w}-{i}");
                        let t = Instant::now();
                        let volume = disk.create(&handle, limits, ImageUsage::default())?;
                        let created = t.elapsed();
                        std::fs::write(volume.upper.join("f"), b"hello")?;
                        let t = Instant::now();
                        disk.destroy(&handle)?;
                        let destroyed = t.elapsed();
                        let mut timings =
                            timings.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                        timings.0.push(created);
                        timings.1.push(destroyed);
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("worker panicked"))??;
        }
        Ok(())
    })?;
    let n = args.concurrency * args.per_worker;
    println!(
        "{n} volumes ({} workers x {}), {} bytes, {} inodes: {:.2} s wall",
        args.concurrency,
        args.per_worker,
        args.bytes,
        args.inodes,
        started.elapsed().as_secs_f64()
    );
    timings
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let pick = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
    println!(
        "{what:8} p50 {:6.2} ms  p95 {:6.2} ms  mean {:6.2} ms  max {:6.2} ms",
        ms(pick(0.5)),
        ms(pick(0.95)),
        ms(mean),
        ms(times[times.len() - 1])
    );
}
