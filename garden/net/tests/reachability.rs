//! The reachability matrix: containers are namespaces this test makes, the
//! "outside" is another namespace wired to the host by a veth. Traffic
//! stays between them and the host. Needs root.

mod common;

use std::net::Ipv4Addr;

use anyhow::Result;
use common::{
    fetch, reaches, require_root, server_name, test_config, udp_echoed, Cleanup, Outside, Server,
    TestNs, UdpEcho,
};
use garden_api::types::IpRange;
use garden_api::types::{NetOutRule, PortRange, Protocol};
use garden_net::{AttachRequest, NetError, Network};

const HOST_PORT: u16 = 47101;

fn tcp_rule(to: Ipv4Addr, port: u16) -> NetOutRule {
    NetOutRule {
        protocol: Protocol::Tcp,
        networks: vec![IpRange {
            start: Some(to.into()),
            end: Some(to.into()),
        }],
        ports: vec![PortRange {
            start: port,
            end: port,
        }],
        ..NetOutRule::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reachability_matrix() -> Result<()> {
    require_root();
    let config = test_config("tr", "10.201.0.0/24", 47200);
    let _cleanup = Cleanup::new(&config);
    let state = tempfile::tempdir()?;
    let (network, report) = Network::open(config, state.path()).await?;
    assert_eq!(report.restored, 0);
    let outside = Outside::new("tr", Ipv4Addr::new(10, 200, 1, 0))?;

    let (ns_a, ns_b) = (TestNs::new()?, TestNs::new()?);
    let a = network
        .attach("a", &ns_a.netns(), &AttachRequest::default())
        .await?;
    let b = network
        .attach("b", &ns_b.netns(), &AttachRequest::default())
        .await?;
    assert_eq!(
        (a.ip, a.gateway),
        ("10.201.0.1".parse()?, "10.201.0.2".parse()?)
    );
    assert_eq!(b.subnet.to_string(), "10.201.0.4/30");
    assert_eq!(a.container_iface, "eth0");

    let _servers = [
        Server::start(None, HOST_PORT, "host")?,
        Server::start(Some(&ns_a), 8080, "a8080")?,
        Server::start(Some(&ns_a), 8081, "a8081")?,
        Server::start(Some(&ns_b), 8080, "b8080")?,
        Server::start(Some(&ns_b), 8081, "b8081")?,
        Server::start(Some(&outside.ns), 9090, "outside")?,
    ];

    // The host reaches containers directly; nothing else does by default.
    assert_eq!(server_name(None, a.ip, 8080)?, "a8080");
    assert!(
        !reaches(Some(&ns_a), a.gateway, HOST_PORT),
        "container -> host (gateway) must be blocked"
    );
    assert!(
        !reaches(Some(&ns_a), outside.host_ip, HOST_PORT),
        "container -> host address must be blocked"
    );
    assert!(
        !reaches(Some(&ns_a), b.ip, 8080),
        "container -> container must be blocked"
    );
    assert!(
        !reaches(Some(&ns_b), a.ip, 8080),
        "container -> container must be blocked"
    );
    assert!(
        !reaches(Some(&ns_a), outside.ip, 9090),
        "egress is denied without rules"
    );
    assert!(
        !reaches(Some(&outside.ns), a.ip, 8080),
        "outside -> container needs NetIn"
    );

    // NetIn: from the host (loopback and its own address) and from outside.
    let mapping = network.net_in("a", 0, 8080).await?;
    assert_eq!(mapping.host_port, 47200, "the pool's first port");
    let port = u16::try_from(mapping.host_port)?;
    assert_eq!(server_name(None, Ipv4Addr::LOCALHOST, port)?, "a8080");
    assert_eq!(server_name(None, outside.host_ip, port)?, "a8080");
    let seen = fetch(Some(&outside.ns), outside.host_ip, port)?;
    assert_eq!(
        seen,
        format!("a8080@{}", outside.ip),
        "the outside client's address is kept"
    );
    let explicit = network.net_in("b", 47102, 0).await?;
    assert_eq!(
        (explicit.host_port, explicit.container_port),
        (47102, 47102)
    );
    let conflict = network
        .net_in("b", mapping.host_port, 8080)
        .await
        .expect_err("port taken");
    assert!(matches!(conflict, NetError::Alloc { .. }), "{conflict}");
    assert!(
        conflict.to_string().contains("already mapped"),
        "{conflict}"
    );
    assert!(matches!(
        network.net_in("b", 70000, 1).await,
        Err(NetError::BadPort { .. })
    ));

    // NetOut opens exactly what it names.
    network.net_out("a", &[tcp_rule(b.ip, 8080)]).await?;
    assert_eq!(server_name(Some(&ns_a), b.ip, 8080)?, "b8080");
    assert!(
        !reaches(Some(&ns_a), b.ip, 8081),
        "only the port the rule names"
    );
    assert!(!reaches(Some(&ns_b), a.ip, 8080), "rules are one-way");
    assert!(
        !reaches(Some(&ns_a), a.gateway, HOST_PORT),
        "still no host access"
    );
    network.net_out("a", &[tcp_rule(outside.ip, 9090)]).await?;
    let seen = fetch(Some(&ns_a), outside.ip, 9090)?;
    assert_eq!(
        seen,
        format!("outside@{}", outside.host_ip),
        "egress is masqueraded"
    );
    let bad = NetOutRule {
        protocol: Protocol::Icmp,
        ports: vec![PortRange { start: 1, end: 2 }],
        ..NetOutRule::default()
    };
    assert!(matches!(
        network.net_out("a", &[bad]).await,
        Err(NetError::Rule { .. })
    ));

    // UDP: exactly the port named; a rule for everything to an address range.
    let _echo = [UdpEcho::start(&ns_b, 5353)?, UdpEcho::start(&ns_b, 5354)?];
    assert!(
        !udp_echoed(&ns_a, b.ip, 5353, false),
        "udp is denied without a rule"
    );
    let udp = NetOutRule {
        protocol: Protocol::Udp,
        ..tcp_rule(b.ip, 5353)
    };
    network.net_out("a", &[udp]).await?;
    assert!(udp_echoed(&ns_a, b.ip, 5353, true));
    assert!(!udp_echoed(&ns_a, b.ip, 5354, false));
    let everything = NetOutRule {
        networks: vec![IpRange {
            start: Some(b.ip.into()),
            end: Some(b.ip.into()),
        }],
        ..NetOutRule::default()
    };
    network.net_out("a", &[everything]).await?;
    assert!(
        udp_echoed(&ns_a, b.ip, 5354, true),
        "protocol all opens every port"
    );
    assert_eq!(server_name(Some(&ns_a), b.ip, 8081)?, "b8081");
    assert!(!reaches(Some(&ns_b), a.ip, 8080), "still one-way");

    let stats = network.stats("a").await?;
    assert!(stats.rx_bytes > 0 && stats.tx_bytes > 0, "{stats:?}");
    assert_eq!(
        network.attachment("a").map(|a| a.mapped_ports.len()),
        Some(1)
    );

    network.detach("a").await?;
    network.detach("a").await?;
    assert!(
        !reaches(None, Ipv4Addr::LOCALHOST, port),
        "NetIn gone with the container"
    );
    network.teardown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subnet_members_talk_to_each_other_only() -> Result<()> {
    require_root();
    let config = test_config("ts", "10.202.0.0/24", 47300);
    let _cleanup = Cleanup::new(&config);
    let state = tempfile::tempdir()?;
    let (network, _) = Network::open(config, state.path()).await?;
    let shared = AttachRequest {
        network: "10.202.0.64/29".into(),
        ..AttachRequest::default()
    };
    let (ns_c, ns_d, ns_e) = (TestNs::new()?, TestNs::new()?, TestNs::new()?);
    let c = network.attach("c", &ns_c.netns(), &shared).await?;
    let fixed = AttachRequest {
        network: "10.202.0.69/29".into(),
        ..AttachRequest::default()
    };
    let d = network.attach("d", &ns_d.netns(), &fixed).await?;
    let e = network
        .attach("e", &ns_e.netns(), &AttachRequest::default())
        .await?;
    assert_eq!(
        (c.ip, d.ip, c.gateway),
        (
            "10.202.0.65".parse()?,
            "10.202.0.69".parse()?,
            "10.202.0.70".parse()?
        )
    );
    assert_eq!(c.bridge, d.bridge);
    let _servers = [
        Server::start(Some(&ns_c), 8080, "c")?,
        Server::start(Some(&ns_d), 8080, "d")?,
        Server::start(Some(&ns_e), 8080, "e")?,
    ];
    assert_eq!(server_name(Some(&ns_c), d.ip, 8080)?, "d");
    assert_eq!(server_name(Some(&ns_d), c.ip, 8080)?, "c");
    assert!(!reaches(Some(&ns_c), e.ip, 8080));
    assert!(!reaches(Some(&ns_e), c.ip, 8080));
    let taken = network
        .attach("x", &ns_e.netns(), &fixed)
        .await
        .expect_err("address taken");
    assert!(taken.to_string().contains("already in use"), "{taken}");
    assert!(
        network.attachment("x").is_none(),
        "a refused attach leaves nothing"
    );

    // The bridge stays while a member is left.
    network.detach("c").await?;
    assert_eq!(server_name(None, d.ip, 8080)?, "d");
    network.teardown().await?;
    assert!(network.host_links().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_clear_errors_and_leave_nothing() -> Result<()> {
    require_root();
    let config = test_config("tb", "10.203.0.0/28", 47400);
    let _cleanup = Cleanup::new(&config);
    let state = tempfile::tempdir()?;
    let (network, _) = Network::open(config.clone(), state.path()).await?;
    let ns = TestNs::new()?;
    let outside_pool = AttachRequest {
        network: "192.168.77.0/30".into(),
        ..AttachRequest::default()
    };
    let err = network
        .attach("p", &ns.netns(), &outside_pool)
        .await
        .expect_err("outside the pool");
    assert!(
        err.to_string().contains("outside the network pool"),
        "{err}"
    );
    let gone = garden_net::Netns::Pid(u32::MAX - 1);
    let err = network
        .attach("p", &gone, &AttachRequest::default())
        .await
        .expect_err("no such process");
    assert!(err.to_string().contains("network namespace"), "{err}");
    let own = garden_net::Netns::Pid(std::process::id());
    let err = network
        .attach("p", &own, &AttachRequest::default())
        .await
        .expect_err("host netns");
    assert!(err.to_string().contains("host's own"), "{err}");
    assert!(matches!(
        network.net_in("nobody", 0, 80).await,
        Err(NetError::NotAttached(_))
    ));
    network.detach("nobody").await?;

    // A namespace that already has an eth0: the veth cannot be made, and
    // the half-made attachment is removed.
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ])?;
    let err = network
        .attach("p", &ns.netns(), &AttachRequest::default())
        .await
        .expect_err("eth0 exists");
    assert!(matches!(err, NetError::Link { .. }), "{err}");
    assert_eq!(network.usage(), garden_net::Usage::default());
    network.reap_idle_bridges(std::time::Duration::ZERO);
    network.settle().await;
    assert!(network.host_links().await?.is_empty());

    // The pool has 4 /30s.
    let spaces: Vec<TestNs> = (0..4).map(|_| TestNs::new()).collect::<Result<_>>()?;
    for (i, space) in spaces.iter().enumerate() {
        network
            .attach(&format!("n{i}"), &space.netns(), &AttachRequest::default())
            .await?;
    }
    let err = network
        .attach("n4", &ns.netns(), &AttachRequest::default())
        .await
        .expect_err("pool exhausted");
    assert!(err.to_string().contains("exhausted"), "{err}");
    let err = network
        .attach("n0", &ns.netns(), &AttachRequest::default())
        .await
        .expect_err("twice");
    assert!(matches!(err, NetError::AlreadyAttached(_)), "{err}");
    network.teardown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_container_answers_at_once() -> Result<()> {
    require_root();
    let config = test_config("ta", "10.207.0.0/24", 47900);
    let _cleanup = Cleanup::new(&config);
    let state = tempfile::tempdir()?;
    let (network, _) = Network::open(config, state.path()).await?;
    let spaces: Vec<TestNs> = (0..6).map(|_| TestNs::new()).collect::<Result<_>>()?;
    let mut servers = Vec::new();
    for (i, space) in spaces.iter().enumerate() {
        servers.push(Server::start(Some(space), 8080, "x")?);
        // Each one gets a new subnet, so a new bridge.
        let attached = network
            .attach(
                &format!("fresh{i}"),
                &space.netns(),
                &AttachRequest::default(),
            )
            .await?;
        let started = std::time::Instant::now();
        common::fetch_within(None, attached.ip, 8080, common::BLOCKED_AFTER)?;
        assert!(started.elapsed() < common::BLOCKED_AFTER);
    }
    network.teardown().await?;
    Ok(())
}
