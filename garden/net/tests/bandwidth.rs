//! Bandwidth limits: a tbf on both veth ends limits what the container
//! sends and receives; an unlimited container next to it is not slowed.
//! Traffic only between the host and namespaces the test makes. Needs root.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::{require_root, test_config, Cleanup, TestNs};
use garden_api::types::BandwidthLimits;
use garden_net::{AttachRequest, NetError, Network};

const BYTES: usize = 3_000_000;
const RATE: u64 = 2_000_000;

/// In `ns`, accepts one connection on `port`: sends BYTES ("source") or
/// reads until EOF ("sink").
fn serve_once(ns: &TestNs, port: u16, source: bool) -> Result<std::thread::JoinHandle<Result<()>>> {
    let listener = ns.run(move || TcpListener::bind(("0.0.0.0", port)))??;
    Ok(std::thread::spawn(move || -> Result<()> {
        let (mut stream, _) = listener.accept()?;
        if source {
            stream.write_all(&vec![7u8; BYTES])?;
        } else {
            std::io::copy(&mut stream, &mut std::io::sink())?;
        }
        Ok(())
    }))
}

/// Seconds the host needs to download BYTES from, or upload them to, `ip:port`.
fn transfer(ip: Ipv4Addr, port: u16, download: bool) -> Result<f64> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(3))
        .context("connect")?;
    if download {
        let mut received = Vec::with_capacity(BYTES);
        stream.read_to_end(&mut received)?;
        assert_eq!(received.len(), BYTES);
    } else {
        stream.write_all(&vec![7u8; BYTES])?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let _ = stream.read(&mut [0u8; 1]);
    }
    Ok(started.elapsed().as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limits_both_directions() -> Result<()> {
    require_root();
    let config = test_config("tw", "10.208.0.0/24", 48100);
    let _cleanup = Cleanup::new(&config);
    let state = tempfile::tempdir()?;
    let (network, _) = Network::open(config, state.path()).await?;
    let limits = BandwidthLimits {
        rate_in_bytes_per_second: RATE,
        burst_rate_in_bytes_per_second: 100_000,
    };
    let (slow_ns, fast_ns) = (TestNs::new()?, TestNs::new()?);
    let request = AttachRequest {
        bandwidth: limits,
        ..AttachRequest::default()
    };
    let slow = network.attach("slow", &slow_ns.netns(), &request).await?;
    let fast = network
        .attach("fast", &fast_ns.netns(), &AttachRequest::default())
        .await?;
    assert_eq!(slow.bandwidth, limits);

    let expected = (BYTES as f64 - 100_000.0) / RATE as f64;
    let servers = [
        serve_once(&slow_ns, 9000, true)?,
        serve_once(&slow_ns, 9001, false)?,
        serve_once(&fast_ns, 9000, true)?,
    ];
    let from_slow = transfer(slow.ip, 9000, true)?;
    let to_slow = transfer(slow.ip, 9001, false)?;
    let from_fast = transfer(fast.ip, 9000, true)?;
    for server in servers {
        server
            .join()
            .map_err(|_| anyhow::anyhow!("server panicked"))??;
    }
    eprintln!("3 MB at 2 MB/s: container sends in {from_slow:.2} s, receives in {to_slow:.2} s; unlimited {from_fast:.2} s");
    assert!(
        from_slow > expected * 0.8 && from_slow < expected * 2.0,
        "container egress limited: {from_slow}"
    );
    assert!(
        to_slow > expected * 0.8 && to_slow < expected * 2.0,
        "container ingress limited: {to_slow}"
    );
    assert!(
        from_fast < expected * 0.5,
        "the unlimited container is not slowed: {from_fast}"
    );

    let half = BandwidthLimits {
        rate_in_bytes_per_second: RATE,
        burst_rate_in_bytes_per_second: 0,
    };
    let refused = network
        .attach(
            "half",
            &fast_ns.netns(),
            &AttachRequest {
                bandwidth: half,
                ..AttachRequest::default()
            },
        )
        .await
        .expect_err("rate without burst");
    assert!(matches!(refused, NetError::Bandwidth { .. }), "{refused}");
    network.teardown().await?;
    Ok(())
}
