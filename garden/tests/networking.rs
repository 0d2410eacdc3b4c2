//! gardend with networking (garden-net): a container's address, routes,
//! `/etc/hosts` and `/etc/resolv.conf`, NetIn from the host, traffic in
//! Metrics, the network surviving a daemon crash, and nothing left after
//! destroy. The reachability matrix itself is garden-net's own test.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use garden_api::client::OutputStreams;
use garden_api::types::{NetIn, NetOutRule, Protocol};

use common::daemon::{busybox_spec, run, sh, unique, Daemon};

/// Reads what a listener in the container sends on connect, retrying until
/// it listens.
fn fetch(port: u32) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = TcpStream::connect(("127.0.0.1", port as u16)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        });
        match got {
            Ok(text) if !text.is_empty() => return text,
            _ => {
                assert!(Instant::now() < deadline, "nothing served on port {port}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

async fn serve_once(d: &Daemon, handle: &str, text: &str) {
    let p = d
        .client
        .run(
            handle,
            &sh(&format!("echo {text} | nc -l -p 8080")),
            OutputStreams::NONE,
        )
        .await
        .expect("listener");
    drop(p);
}

#[tokio::test(flavor = "multi_thread")]
async fn container_network_netin_metrics_restart_and_cleanup() {
    let mut d = Daemon::start();
    let handle = unique("net");
    let mut spec = busybox_spec(&handle);
    spec.net_in.push(NetIn {
        host_port: 0,
        container_port: 8080,
    });
    spec.net_out.push(NetOutRule {
        protocol: Protocol::Tcp,
        ..NetOutRule::default()
    });
    d.client
        .create(&spec)
        .await
        .expect("create with networking");

    let info = d.client.info(&handle).await.expect("info");
    assert!(info.container_ip.starts_with("10.253."), "{info:?}");
    assert!(info.host_ip.starts_with("10.253."), "{info:?}");
    assert_eq!(info.mapped_ports.len(), 1, "{info:?}");
    let host_port = info.mapped_ports[0].host_port;

    let (out, err, code) = run(
        &d.client,
        &handle,
        sh("cat /etc/resolv.conf /etc/hosts; cat /sys/class/net/lo/operstate /sys/class/net/eth0/operstate; ls -ln /etc/hosts"),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nameserver 192.0.2.53"), "{out}");
    assert!(out.contains(&info.container_ip), "{out}");
    assert!(!out.contains("down"), "lo and eth0 are up: {out}");
    assert!(
        out.lines()
            .any(|l| l.contains(" 0 ") && l.ends_with("/etc/hosts")),
        "/etc/hosts belongs to the container's root: {out}"
    );

    // NetIn given at create, and one more through the API.
    serve_once(&d, &handle, "hello").await;
    assert_eq!(fetch(host_port), "hello\n");
    let (second, _) = d.client.net_in(&handle, 0, 8080).await.expect("net in");
    assert_ne!(second, host_port);
    serve_once(&d, &handle, "again").await;
    assert_eq!(fetch(second), "again\n");
    let metrics = d.client.metrics(&handle).await.expect("metrics");
    assert!(metrics.network.tx_bytes > 0, "{:?}", metrics.network);

    // A daemon crash keeps the network; a port number above 65535 is a 400.
    d.crash_and_restart();
    let again = d.client.info(&handle).await.expect("info after restart");
    assert_eq!(again.container_ip, info.container_ip);
    assert_eq!(again.mapped_ports.len(), 2);
    serve_once(&d, &handle, "survived").await;
    assert_eq!(fetch(host_port), "survived\n");
    let bad = d.client.net_in(&handle, 70000, 80).await;
    assert!(bad.is_err(), "port 70000 refused");

    d.client.destroy(&handle).await.expect("destroy");
    // Links go in the background; give them a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !test_links().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(test_links().is_empty(), "links left: {:?}", test_links());
}

/// Links named with the test daemons' prefixes (`tg<n>b-`, `tg<n>v-`).
fn test_links() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .filter(|n| n.starts_with("tg"))
        .map(str::to_string)
        .collect()
}
