//! garden-net-bench: what container networking costs per container, and
//! whether that cost stays flat as containers pile up.
//!
//! Containers are network namespaces the benchmark makes itself (held by a
//! file descriptor, gone when it exits); its nft table, bridges and veths
//! use their own names and pool, and are removed at the end. Needs root.
//!
//! For each preload (containers already attached, each with a NetIn and a
//! NetOut rule) it measures `attach` alone, `detach` alone, and the whole
//! cycle attach + net_in + detach, and prints p50 and p95. `detach` returns
//! once the container is cut off (nft); its links are deleted in the
//! background, which the benchmark waits for after each series.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use garden_api::types::{IpRange, NetOutRule, PortRange, Protocol};
use garden_net::{AttachRequest, NetConfig, Netns, Network};
use nix::sched::CloneFlags;

#[derive(Parser, Debug)]
#[command(about = "Measure garden-net's attach/net_in/detach cost at several preloads")]
struct Args {
    /// Measured cycles per preload.
    #[arg(long, default_value_t = 100)]
    iterations: usize,
    /// Containers attached before measuring (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,100,500")]
    preload: Vec<usize>,
    /// Pool for the benchmark's containers (needs a /30 per container).
    #[arg(long, default_value = "10.230.0.0/20")]
    pool: String,
    /// nft table the benchmark owns.
    #[arg(long, default_value = "garden_bench")]
    table: String,
    /// Interface prefix (bridges `<prefix>b`, veths `<prefix>v`).
    #[arg(long, default_value = "gnb")]
    prefix: String,
    /// First NetIn host port (away from a real gardend's 61001: NetIn
    /// rules apply to every local address of the host).
    #[arg(long, default_value_t = 48000)]
    port_start: u16,
    /// Print the figures as JSON too.
    #[arg(long)]
    json: bool,
}

/// A namespace standing for a container.
struct Space(File);

impl Space {
    fn new() -> Result<Self> {
        let file = std::thread::spawn(|| -> Result<File> {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
            File::open("/proc/thread-self/ns/net").context("open netns")
        })
        .join()
        .map_err(|_| anyhow::anyhow!("netns thread panicked"))??;
        Ok(Self(file))
    }

    fn netns(&self) -> Netns {
        use std::os::fd::AsRawFd;
        Netns::Path(PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.0.as_raw_fd()
        )))
    }
}

#[derive(Debug, Default, serde::Serialize)]
struct Figures {
    preload: usize,
    attach_p50_ms: f64,
    attach_p95_ms: f64,
    net_in_p50_ms: f64,
    net_in_p95_ms: f64,
    detach_p50_ms: f64,
    detach_p95_ms: f64,
    cycle_p50_ms: f64,
    cycle_p95_ms: f64,
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let rank = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(rank).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn rule() -> NetOutRule {
    let ip = "10.9.9.9".parse().ok();
    NetOutRule {
        protocol: Protocol::Tcp,
        networks: vec![IpRange { start: ip, end: ip }],
        ports: vec![PortRange {
            start: 443,
            end: 443,
        }],
        ..NetOutRule::default()
    }
}

/// One series; with `settle_each` the background link removal of each
/// cycle is waited for (untimed) before the next, so `attach` runs on a
/// quiet kernel.
async fn measure(
    network: &Network,
    preloaded: usize,
    iterations: usize,
    settle_each: bool,
) -> Result<Figures> {
    // A fresh namespace per container, made before timing, as a runtime would.
    let spaces: Vec<Space> = (0..iterations)
        .map(|_| Space::new())
        .collect::<Result<_>>()?;
    let (mut attach, mut net_in, mut detach, mut cycle) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let request = AttachRequest {
        net_out: vec![rule()],
        ..AttachRequest::default()
    };
    for (i, space) in spaces.iter().enumerate() {
        let handle = format!("bench-{preloaded}-{i}");
        let t0 = Instant::now();
        network.attach(&handle, &space.netns(), &request).await?;
        let t1 = Instant::now();
        network.net_in(&handle, 0, 8080).await?;
        let t2 = Instant::now();
        network.detach(&handle).await?;
        let t3 = Instant::now();
        attach.push(t1 - t0);
        net_in.push(t2 - t1);
        detach.push(t3 - t2);
        cycle.push(t3 - t0);
        if settle_each {
            network.settle().await;
        }
    }
    network.settle().await;
    Ok(Figures {
        preload: preloaded,
        attach_p50_ms: percentile(&mut attach, 0.5),
        attach_p95_ms: percentile(&mut attach, 0.95),
        net_in_p50_ms: percentile(&mut net_in, 0.5),
        net_in_p95_ms: percentile(&mut net_in, 0.95),
        detach_p50_ms: percentile(&mut detach, 0.5),
        detach_p95_ms: percentile(&mut detach, 0.95),
        cycle_p50_ms: percentile(&mut cycle, 0.5),
        cycle_p95_ms: percentile(&mut cycle, 0.95),
    })
}

async fn run(args: &Args, network: &Network) -> Result<Vec<Figures>> {
    let most = args.preload.iter().copied().max().unwrap_or(0);
    let spaces: Vec<Space> = (0..most).map(|_| Space::new()).collect::<Result<_>>()?;
    let request = AttachRequest {
        net_out: vec![rule()],
        ..AttachRequest::default()
    };
    let mut preloads = args.preload.clone();
    preloads.sort_unstable();
    let mut attached = 0;
    let mut figures = Vec::new();
    for preload in preloads {
        while attached < preload {
            let handle = format!("preload-{attached}");
            network
                .attach(&handle, &spaces[attached].netns(), &request)
                .await?;
            network.net_in(&handle, 0, 8080).await?;
            attached += 1;
        }
        let f = measure(network, attached, args.iterations, false).await?;
        println!(
            "preload {:>4}: attach p50 {:6.2} ms p95 {:6.2} | net_in p50 {:5.2} p95 {:5.2} | \
             detach p50 {:6.2} p95 {:6.2} | attach+net_in+detach p50 {:6.2} p95 {:6.2}",
            f.preload,
            f.attach_p50_ms,
            f.attach_p95_ms,
            f.net_in_p50_ms,
            f.net_in_p95_ms,
            f.detach_p50_ms,
            f.detach_p95_ms,
            f.cycle_p50_ms,
            f.cycle_p95_ms
        );
        figures.push(f);
        if preload == 0 {
            let quiet = measure(network, 0, args.iterations, true).await?;
            println!(
                "preload    0, each link removal awaited (untimed): attach p50 {:6.2} ms p95 {:6.2} | \
                 net_in p50 {:5.2} | detach p50 {:6.2} p95 {:6.2}",
                quiet.attach_p50_ms, quiet.attach_p95_ms, quiet.net_in_p50_ms, quiet.detach_p50_ms, quiet.detach_p95_ms
            );
        }
    }
    Ok(figures)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let config = NetConfig {
        pool: args.pool.parse().context("--pool")?,
        table: args.table.clone(),
        bridge_prefix: format!("{}b", args.prefix),
        veth_prefix: format!("{}v", args.prefix),
        ip_forward: false,
        dns_servers: vec!["10.0.0.2".parse()?],
        mtu: 1500,
        port_pool_start: args.port_start,
        port_pool_size: 2000,
        ..NetConfig::default()
    };
    let state = tempfile_dir()?;
    let (network, _) = Network::open(config, &state).await?;
    let result = run(&args, &network).await;
    let cleanup = network.teardown().await;
    let _ = std::fs::remove_dir_all(&state);
    let figures = result?;
    cleanup?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    }
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("garden-net-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}
