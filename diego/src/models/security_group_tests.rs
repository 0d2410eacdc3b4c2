use super::*;

fn tcp(destination: &str, ports: &[u32]) -> SecurityGroupRule {
    let mut rule = SecurityGroupRule::new(SecurityProtocol::Tcp, &[destination]);
    rule.ports = ports.to_vec();
    rule
}

fn range(start: [u8; 4], end: [u8; 4]) -> AddressRange {
    AddressRange {
        start: Ipv4Addr::from(start),
        end: Ipv4Addr::from(end),
    }
}

#[test]
fn destinations_are_addresses_cidrs_and_ranges() {
    let mut rule = SecurityGroupRule::new(
        SecurityProtocol::All,
        &[
            "10.1.2.3",
            "10.9.8.7/8",
            "0.0.0.0-9.255.255.255",
            "0.0.0.0/0",
        ],
    );
    assert_eq!(rule.validate(), Ok(()));
    assert_eq!(
        rule.address_ranges().expect("ranges"),
        [
            range([10, 1, 2, 3], [10, 1, 2, 3]),
            range([10, 0, 0, 0], [10, 255, 255, 255]),
            range([0, 0, 0, 0], [9, 255, 255, 255]),
            range([0, 0, 0, 0], [255, 255, 255, 255]),
        ]
    );
    for (bad, reason) in [
        ("10.0.0.0/33", "CIDR"),
        ("10.0.0.300", "not an address"),
        ("example.com", "not an address"),
        ("10.0.0.9-10.0.0.1", "starts after"),
        ("::1", "IPv6"),
        ("fe80::/10", "IPv6"),
        ("10.0.0.1-", "not an address"),
    ] {
        rule.destinations = vec![bad.into()];
        let err = rule.validate().expect_err(bad).to_string();
        assert!(err.contains(bad) && err.contains(reason), "{bad}: {err}");
    }
    rule.destinations.clear();
    assert_eq!(rule.validate(), Err(SecurityGroupError::NoDestinations));
}

#[test]
fn tcp_and_udp_need_valid_ports() {
    assert_eq!(tcp("10.0.0.0/8", &[443, 8443]).validate(), Ok(()));
    assert_eq!(
        tcp("10.0.0.0/8", &[443, 8443]).port_ranges(),
        [(443, 443), (8443, 8443)]
    );
    assert_eq!(
        tcp("10.0.0.0/8", &[]).validate(),
        Err(SecurityGroupError::NoPorts {
            protocol: SecurityProtocol::Tcp
        })
    );
    assert_eq!(
        tcp("10.0.0.0/8", &[0]).validate(),
        Err(SecurityGroupError::Port { port: 0 })
    );
    assert_eq!(
        tcp("10.0.0.0/8", &[70_000]).validate(),
        Err(SecurityGroupError::Port { port: 70_000 })
    );
    let mut udp = SecurityGroupRule::new(SecurityProtocol::Udp, &["0.0.0.0/0"]);
    udp.port_range = Some(PortRange { start: 53, end: 54 });
    assert_eq!(udp.validate(), Ok(()));
    assert_eq!(udp.port_ranges(), [(53, 54)]);
    udp.port_range = Some(PortRange { start: 54, end: 53 });
    assert_eq!(
        udp.validate(),
        Err(SecurityGroupError::PortRange { start: 54, end: 53 })
    );
    udp.port_range = Some(PortRange { start: 0, end: 53 });
    assert!(udp.validate().is_err());
    udp.port_range = Some(PortRange { start: 1, end: 53 });
    udp.ports = vec![53];
    assert_eq!(udp.validate(), Err(SecurityGroupError::PortsAndRange));
    let mut with_icmp = tcp("10.0.0.0/8", &[80]);
    with_icmp.icmp_info = Some(IcmpInfo {
        icmp_type: 8,
        code: 0,
    });
    assert_eq!(
        with_icmp.validate().expect_err("icmp on tcp").to_string(),
        "icmp_info is not allowed with protocol tcp"
    );
}

#[test]
fn icmp_needs_icmp_info_and_all_takes_nothing_else() {
    let mut icmp = SecurityGroupRule::new(SecurityProtocol::Icmp, &["192.168.1.1"]);
    assert_eq!(icmp.validate(), Err(SecurityGroupError::NoIcmpInfo));
    icmp.icmp_info = Some(IcmpInfo {
        icmp_type: 8,
        code: -1,
    });
    assert_eq!(icmp.validate(), Ok(()));
    icmp.icmp_info = Some(IcmpInfo {
        icmp_type: 256,
        code: 0,
    });
    assert_eq!(
        icmp.validate(),
        Err(SecurityGroupError::Icmp {
            field: "type",
            value: 256
        })
    );
    icmp.icmp_info = Some(IcmpInfo {
        icmp_type: -1,
        code: -1,
    });
    icmp.ports = vec![1];
    assert!(matches!(
        icmp.validate(),
        Err(SecurityGroupError::NotAllowed { field: "ports", .. })
    ));
    let mut all = SecurityGroupRule::new(SecurityProtocol::All, &["10.0.0.0/8"]);
    all.port_range = Some(PortRange { start: 1, end: 2 });
    assert!(matches!(
        all.validate(),
        Err(SecurityGroupError::NotAllowed {
            field: "port_range",
            ..
        })
    ));
}

#[test]
fn json_in_diegos_shape() {
    let rule: SecurityGroupRule = serde_json::from_str(
        r#"{"protocol":"icmp","destinations":["10.0.0.1"],"icmp_info":{"type":8,"code":0},"log":true}"#,
    )
    .expect("parse");
    assert_eq!(rule.protocol, SecurityProtocol::Icmp);
    assert_eq!(
        rule.icmp_info,
        Some(IcmpInfo {
            icmp_type: 8,
            code: 0
        })
    );
    assert!(rule.log);
    let json = serde_json::to_string(&rule).expect("json");
    assert_eq!(
        serde_json::from_str::<SecurityGroupRule>(&json).expect("again"),
        rule
    );
    let err = serde_json::from_str::<SecurityGroupRule>(
        r#"{"protocol":"sctp","destinations":["10.0.0.1"]}"#,
    )
    .expect_err("unknown protocol")
    .to_string();
    assert!(err.contains("sctp"), "{err}");
    assert_eq!(
        tcp("10.0.0.0/8", &[443]).to_string(),
        "tcp to 10.0.0.0/8 ports [443]"
    );
}

#[test]
fn a_list_names_the_bad_rule() {
    let rules = [tcp("10.0.0.0/8", &[443]), tcp("10.0.0.0/8", &[])];
    assert!(matches!(
        validate_rules(&rules),
        Err((1, SecurityGroupError::NoPorts { .. }))
    ));
    assert_eq!(validate_rules(&rules[..1]), Ok(()));
}
