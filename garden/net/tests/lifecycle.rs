//! Restart and leak tests: the `Network` is dropped and opened again from
//! its state directory; 1,000 attach/detach cycles leave nothing behind.
//! Needs root.

mod common;

use std::net::Ipv4Addr;
use std::time::Instant;

use anyhow::Result;
use common::{
    reaches, require_root, run, server_name, table_counts, test_config, Cleanup, Server, TestNs,
};
use garden_api::types::{IpRange, NetIn, NetOutRule, PortRange, Protocol};
use garden_net::{AttachRequest, Network, Usage};

fn tcp_rule(to: Ipv4Addr, port: u16) -> NetOutRule {
    NetOutRule {
        protocol: Protocol::Tcp,
        networks: vec![IpRange {
            start: Some(to.into()),
            end: None,
        }],
        ports: vec![PortRange {
            start: port,
            end: 0,
        }],
        log: true,
        ..NetOutRule::default()
    }
}

/// Chains of an empty table: forward, input, prerouting, output, postrouting.
const BASE_CHAINS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_restores_rules_and_allocations() -> Result<()> {
    require_root();
    let config = test_config("tl", "10.204.0.0/24", 47500);
    let _cleanup = Cleanup::new(&config);
    let state = tempfile::tempdir()?;
    let (ns_a, ns_b, ns_c) = (TestNs::new()?, TestNs::new()?, TestNs::new()?);
    let (a, b, mapping) = {
        let (network, _) = Network::open(config.clone(), state.path()).await?;
        let b = network
            .attach("b", &ns_b.netns(), &AttachRequest::default())
            .await?;
        let request = AttachRequest {
            network: String::new(),
            net_in: vec![NetIn {
                host_port: 0,
                container_port: 8080,
            }],
            net_out: vec![tcp_rule(b.ip, 8080)],
            ..AttachRequest::default()
        };
        let a = network.attach("a", &ns_a.netns(), &request).await?;
        (a.clone(), b, a.mapped_ports[0])
        // The network is dropped here, as when the daemon stops.
    };
    let port = u16::try_from(mapping.host_port)?;
    let _servers = [
        Server::start(Some(&ns_a), 8080, "a")?,
        Server::start(Some(&ns_b), 8080, "b8080")?,
        Server::start(Some(&ns_b), 8081, "b8081")?,
    ];

    // The kernel lost the table meanwhile (someone flushed the ruleset).
    run("nft", &["delete", "table", "inet", &config.table])?;
    let (network, report) = Network::open(config.clone(), state.path()).await?;
    assert_eq!(report.restored, 2);
    assert!(
        report.skipped.is_empty() && report.missing_links.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        network.attachment("a").map(|x| x.mapped_ports),
        Some(vec![mapping])
    );
    assert_eq!(
        server_name(None, Ipv4Addr::LOCALHOST, port)?,
        "a",
        "NetIn survives the restart"
    );
    assert_eq!(
        server_name(Some(&ns_a), b.ip, 8080)?,
        "b8080",
        "NetOut survives"
    );
    assert!(!reaches(Some(&ns_a), b.ip, 8081));
    assert!(!reaches(Some(&ns_b), a.ip, 8080), "isolation survives");

    // New allocations do not collide with restored ones.
    let c = network
        .attach("c", &ns_c.netns(), &AttachRequest::default())
        .await?;
    assert!(c.ip != a.ip && c.ip != b.ip && c.subnet != a.subnet && c.subnet != b.subnet);
    let next = network.net_in("c", 0, 8080).await?;
    assert_ne!(next.host_port, mapping.host_port);
    assert!(network.net_in("c", mapping.host_port, 1).await.is_err());

    // The daemon found only "a" and "c" alive.
    let dropped = network.restore(&["a", "c"]).await;
    assert_eq!(dropped, vec!["b".to_owned()]);
    assert_eq!(
        network.usage(),
        Usage {
            attachments: 2,
            addresses: 2,
            ports: 2,
            state_files: 2
        }
    );
    drop(network);

    // A veth that vanished while the daemon was down is reported.
    run(
        "ip",
        &[
            "link",
            "del",
            &format!("{}{:08x}", config.veth_prefix, u32::from(c.ip)),
        ],
    )?;
    // Links no record explains (a crash between making a link and writing
    // its record): the veth goes at open, the bridge is reaped as idle.
    let orphan_veth = format!("{}deadbeef", config.veth_prefix);
    let orphan_bridge = format!("{}0acc00f0", config.bridge_prefix);
    run(
        "ip",
        &[
            "link",
            "add",
            &orphan_veth,
            "type",
            "veth",
            "peer",
            "name",
            "tlq0",
        ],
    )?;
    run("ip", &["link", "add", &orphan_bridge, "type", "bridge"])?;
    let (network, report) = Network::open(config, state.path()).await?;
    assert_eq!(report.missing_links, vec!["c".to_owned()]);
    let links = network.host_links().await?;
    assert!(
        !links.contains(&orphan_veth) && links.contains(&orphan_bridge),
        "{links:?}"
    );
    network.teardown().await?;
    assert!(network.host_links().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_attaches_and_a_container_by_pid() -> Result<()> {
    require_root();
    let config = test_config("tc", "10.206.0.0/24", 47600);
    let _cleanup = Cleanup::new(&config);
    let state = tempfile::tempdir()?;
    let (network, _) = Network::open(config, state.path()).await?;
    let network = std::sync::Arc::new(network);
    let spaces: Vec<TestNs> = (0..16).map(|_| TestNs::new()).collect::<Result<_>>()?;
    let mut tasks = Vec::new();
    for (i, space) in spaces.iter().enumerate() {
        let (network, netns) = (network.clone(), space.netns());
        // Half of them share one subnet, so bridge creation races too.
        let subnet = if i % 2 == 0 { "10.206.0.128/27" } else { "" };
        let request = AttachRequest {
            network: subnet.into(),
            ..AttachRequest::default()
        };
        tasks.push(tokio::spawn(async move {
            let handle = format!("p{i}");
            let attached = network.attach(&handle, &netns, &request).await?;
            network.net_in(&handle, 0, 8080).await?;
            anyhow::Ok(attached)
        }));
    }
    let mut addresses = Vec::new();
    for task in tasks {
        addresses.push(task.await??.ip);
    }
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 16, "every container has its own address");

    // A container known by its init's pid, as the daemon knows it.
    let process = common::NsProcess::start()?;
    let by_pid = network
        .attach(
            "by-pid",
            &garden_net::Netns::Pid(process.pid()),
            &AttachRequest::default(),
        )
        .await?;
    let inside = TestNs::of_pid(process.pid())?;
    let _server = Server::start(Some(&inside), 8080, "by-pid")?;
    assert_eq!(server_name(None, by_pid.ip, 8080)?, "by-pid");
    let mapping = network.net_in("by-pid", 0, 8080).await?;
    let port = u16::try_from(mapping.host_port)?;
    assert_eq!(server_name(None, Ipv4Addr::LOCALHOST, port)?, "by-pid");

    let mut tasks = Vec::new();
    for handle in network.handles() {
        let network = network.clone();
        tasks.push(tokio::spawn(async move { network.detach(&handle).await }));
    }
    for task in tasks {
        task.await??;
    }
    network.settle().await;
    assert_eq!(network.usage(), Usage::default());
    network.teardown().await?;
    assert!(network.host_links().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cycles_leak_nothing() -> Result<()> {
    require_root();
    let config = test_config("tk", "10.205.0.0/24", 47700);
    let _cleanup = Cleanup::new(&config);
    let state = tempfile::tempdir()?;
    let (network, _) = Network::open(config.clone(), state.path()).await?;
    let before = table_counts(&config.table)?;
    let rule = tcp_rule(Ipv4Addr::new(10, 9, 9, 9), 443);
    let started = Instant::now();
    for i in 0..1000 {
        let handle = format!("leak-{i}");
        let space = TestNs::new()?;
        let request = AttachRequest {
            net_out: vec![rule.clone()],
            ..AttachRequest::default()
        };
        network.attach(&handle, &space.netns(), &request).await?;
        network.net_in(&handle, 0, 8080).await?;
        network
            .net_out(&handle, std::slice::from_ref(&rule))
            .await?;
        network.detach(&handle).await?;
    }
    network.settle().await;
    let elapsed = started.elapsed();
    eprintln!("1000 attach+net_in+net_out+detach cycles: {elapsed:?}");
    // Emptied bridges wait for reuse (idle_bridge_seconds); churn reuses a
    // few subnets only, and reaping removes them.
    let idle = network.host_links().await?;
    assert!(idle.len() <= 4, "idle bridges stay few: {idle:?}");
    network.reap_idle_bridges(std::time::Duration::ZERO);
    network.settle().await;

    assert_eq!(
        network.usage(),
        Usage::default(),
        "addresses, ports, records"
    );
    assert_eq!(network.host_links().await?, Vec::<String>::new(), "links");
    let after = table_counts(&config.table)?;
    assert_eq!(after, before, "(chains, egress, netin, rules)");
    assert_eq!(after.0, BASE_CHAINS);
    assert_eq!((after.1, after.2), (0, 0));
    network.teardown().await?;
    Ok(())
}
