//! Round trips against JSON exactly as Garden's Go code writes it
//! (encoding/json: struct field order, sorted map keys, `omitempty`, `null`
//! for nil slices).

use std::net::IpAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::*;
use crate::error::{Error, ErrorKind};

/// Parses Go's JSON, checks the value, and checks that writing it back
/// gives Go's JSON byte for byte.
fn round_trip<T>(go_json: &str, expected: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let parsed: T = serde_json::from_str(go_json).expect("Go's JSON parses");
    assert_eq!(&parsed, expected);
    assert_eq!(serde_json::to_string(&parsed).expect("serializes"), go_json);
}

#[test]
fn empty_container_spec_is_what_go_writes_for_a_zero_spec() {
    let go = r#"{"image":{},"limits":{"bandwidth_limits":{},"cpu_limits":{},"disk_limits":{},"memory_limits":{},"pid_limits":{}}}"#;
    round_trip(go, &ContainerSpec::default());
    let parsed: ContainerSpec = serde_json::from_str("{}").expect("an empty object parses");
    assert_eq!(parsed, ContainerSpec::default());
}

#[test]
fn full_container_spec() {
    let go = concat!(
        r#"{"handle":"app-1","grace_time":300000000000,"rootfs":"/var/rootfs","#,
        r#""image":{"uri":"docker://registry.local/busybox#1.36","username":"me","password":"secret"},"#,
        r#""bind_mounts":[{"src_path":"/host/dir","dst_path":"/data","mode":1,"origin":1},{"src_path":"/ro","dst_path":"/ro"}],"#,
        r#""network":"10.254.0.0/30","properties":{"a":"1","executor:owner":"rep"},"env":["A=1","B=2"],"#,
        r#""privileged":true,"limits":{"bandwidth_limits":{"rate":1000,"burst":2000},"cpu_limits":{"weight":512},"#,
        r#""disk_limits":{"inode_hard":200,"byte_soft":1,"byte_hard":1048576,"scope":1},"#,
        r#""memory_limits":{"limit_in_bytes":67108864},"pid_limits":{"max":1024}},"#,
        r#""netout_rules":[{"protocol":1,"networks":[{"start":"10.0.0.1","end":"10.0.0.255"}],"#,
        r#""ports":[{"start":80,"end":443}],"log":true},{"protocol":3,"icmps":{"type":8,"code":0}}],"#,
        r#""netin":[{"host_port":0,"container_port":8080}]}"#
    );
    let expected = ContainerSpec {
        handle: "app-1".into(),
        grace_time: Some(Duration::from_secs(300)),
        rootfs_path: "/var/rootfs".into(),
        image: ImageRef {
            uri: "docker://registry.local/busybox#1.36".into(),
            username: "me".into(),
            password: "secret".into(),
        },
        bind_mounts: vec![
            BindMount {
                src_path: "/host/dir".into(),
                dst_path: "/data".into(),
                mode: BindMountMode::Rw,
                origin: BindMountOrigin::Container,
            },
            BindMount {
                src_path: "/ro".into(),
                dst_path: "/ro".into(),
                ..Default::default()
            },
        ],
        network: "10.254.0.0/30".into(),
        properties: [
            ("a".to_owned(), "1".to_owned()),
            ("executor:owner".to_owned(), "rep".to_owned()),
        ]
        .into(),
        env: vec!["A=1".into(), "B=2".into()],
        privileged: true,
        limits: Limits {
            bandwidth: BandwidthLimits {
                rate_in_bytes_per_second: 1000,
                burst_rate_in_bytes_per_second: 2000,
            },
            cpu: CpuLimits {
                weight: 512,
                limit_in_shares: 0,
            },
            disk: DiskLimits {
                inode_soft: 0,
                inode_hard: 200,
                byte_soft: 1,
                byte_hard: 1 << 20,
                scope: DiskLimitScope::Exclusive,
            },
            memory: MemoryLimits {
                limit_in_bytes: 64 << 20,
            },
            pid: PidLimits { max: 1024 },
        },
        net_out: vec![
            NetOutRule {
                protocol: Protocol::Tcp,
                networks: vec![IpRange {
                    start: Some(IpAddr::from([10, 0, 0, 1])),
                    end: Some(IpAddr::from([10, 0, 0, 255])),
                }],
                ports: vec![PortRange {
                    start: 80,
                    end: 443,
                }],
                icmps: None,
                log: true,
            },
            NetOutRule {
                protocol: Protocol::Icmp,
                icmps: Some(IcmpControl {
                    icmp_type: 8,
                    code: Some(0),
                }),
                ..Default::default()
            },
        ],
        net_in: vec![NetIn {
            host_port: 0,
            container_port: 8080,
        }],
    };
    round_trip(go, &expected);
}

#[test]
fn container_spec_accepts_nulls_and_rejects_bad_values() {
    let nulls = r#"{"bind_mounts":null,"properties":null,"env":null,"netout_rules":null,"netin":null,"grace_time":0}"#;
    let parsed: ContainerSpec = serde_json::from_str(nulls).expect("nulls parse");
    assert_eq!(parsed, ContainerSpec::default());
    for bad in [
        r#"{"grace_time":-1}"#,
        r#"{"bind_mounts":[{"mode":7}]}"#,
        r#"{"privileged":"yes"}"#,
        r#"{"netout_rules":[{"networks":[{"start":"not-an-ip"}]}]}"#,
    ] {
        assert!(
            serde_json::from_str::<ContainerSpec>(bad).is_err(),
            "{bad} must not parse"
        );
    }
}

#[test]
fn process_spec() {
    round_trip(r#"{"rlimits":{},"image":{}}"#, &ProcessSpec::default());
    let go = concat!(
        r#"{"id":"task-1","path":"/bin/sh","args":["-c","echo hi"],"env":["HOME=/home/vcap"],"dir":"/tmp","#,
        r#""user":"1000:1000","rlimits":{"as":1,"core":0,"nofile":1024,"stack":8388608},"#,
        r#""limits":{"cpu_limits":{"weight":10},"memory_limits":{"limit_in_bytes":4096}},"#,
        r#""tty":{"window_size":{"columns":80,"rows":24}},"image":{"uri":"/rootfs/sidecar"},"#,
        r#""bind_mounts":[{"src_path":"/a","dst_path":"/b"}]}"#
    );
    let expected = ProcessSpec {
        id: "task-1".into(),
        path: "/bin/sh".into(),
        args: vec!["-c".into(), "echo hi".into()],
        env: vec!["HOME=/home/vcap".into()],
        dir: "/tmp".into(),
        user: "1000:1000".into(),
        rlimits: ResourceLimits {
            r#as: Some(1),
            core: Some(0),
            nofile: Some(1024),
            stack: Some(8 << 20),
            ..Default::default()
        },
        override_container_limits: Some(ProcessLimits {
            cpu: CpuLimits {
                weight: 10,
                limit_in_shares: 0,
            },
            memory: MemoryLimits {
                limit_in_bytes: 4096,
            },
        }),
        tty: Some(TtySpec {
            window_size: Some(WindowSize {
                columns: 80,
                rows: 24,
            }),
        }),
        image: ImageRef {
            uri: "/rootfs/sidecar".into(),
            ..Default::default()
        },
        bind_mounts: vec![BindMount {
            src_path: "/a".into(),
            dst_path: "/b".into(),
            ..Default::default()
        }],
    };
    round_trip(go, &expected);
}

#[test]
fn container_info_with_go_nulls() {
    let go = concat!(
        r#"{"State":"active","Events":["oom"],"HostIP":"10.254.0.1","ContainerIP":"10.254.0.2","#,
        r#""ExternalIP":"192.0.2.7","ContainerPath":"/var/garden/c1","ProcessIDs":["p1","p2"],"#,
        r#""Properties":{"k":"v"},"MappedPorts":[{"HostPort":61001,"ContainerPort":8080}]}"#
    );
    let expected = ContainerInfo {
        state: "active".into(),
        events: vec!["oom".into()],
        host_ip: "10.254.0.1".into(),
        container_ip: "10.254.0.2".into(),
        external_ip: "192.0.2.7".into(),
        container_path: "/var/garden/c1".into(),
        process_ids: vec!["p1".into(), "p2".into()],
        properties: [("k".to_owned(), "v".to_owned())].into(),
        mapped_ports: vec![PortMapping {
            host_port: 61001,
            container_port: 8080,
        }],
    };
    round_trip(go, &expected);
    let nil_slices = r#"{"State":"","Events":null,"HostIP":"","ContainerIP":"","ExternalIP":"","ContainerPath":"","ProcessIDs":null,"Properties":null,"MappedPorts":null}"#;
    let parsed: ContainerInfo = serde_json::from_str(nil_slices).expect("Go's nils parse");
    assert_eq!(parsed, ContainerInfo::default());
}

#[test]
fn metrics() {
    let memory_fields = [
        "active_anon",
        "active_file",
        "cache",
        "hierarchical_memory_limit",
        "inactive_anon",
        "inactive_file",
        "mapped_file",
        "pgfault",
        "pgmajfault",
        "pgpgin",
        "pgpgout",
        "rss",
        "total_active_anon",
        "total_active_file",
        "total_cache",
        "total_inactive_anon",
        "total_inactive_file",
        "total_mapped_file",
        "total_pgfault",
        "total_pgmajfault",
        "total_pgpgin",
        "total_pgpgout",
        "total_rss",
        "total_unevictable",
        "unevictable",
        "swap",
        "hierarchical_memsw_limit",
        "total_swap",
    ];
    let memory: Vec<String> = memory_fields
        .iter()
        .map(|name| format!(r#""{name}":0"#))
        .collect();
    let go = format!(
        concat!(
            r#"{{"MemoryStat":{{{},"TotalUsageTowardLimit":4096}},"CPUStat":{{"Usage":30,"User":20,"System":10}},"#,
            r#""DiskStat":{{"TotalBytesUsed":5,"TotalInodesUsed":6,"ExclusiveBytesUsed":7,"ExclusiveInodesUsed":8}},"#,
            r#""NetworkStat":{{"RxBytes":100,"TxBytes":200}},"PidStat":{{"Current":3,"Max":1024}},"#,
            r#""Age":90000000000,"CPUEntitlement":12345}}"#
        ),
        memory.join(",")
    );
    let expected = Metrics {
        memory: ContainerMemoryStat {
            total_usage_toward_limit: 4096,
            ..Default::default()
        },
        cpu: ContainerCpuStat {
            usage: 30,
            user: 20,
            system: 10,
        },
        disk: ContainerDiskStat {
            total_bytes_used: 5,
            total_inodes_used: 6,
            exclusive_bytes_used: 7,
            exclusive_inodes_used: 8,
        },
        network: ContainerNetworkStat {
            rx_bytes: 100,
            tx_bytes: 200,
        },
        pid: ContainerPidStat {
            current: 3,
            max: 1024,
        },
        age: Duration::from_secs(90),
        cpu_entitlement: 12345,
    };
    round_trip(&go, &expected);
}

#[test]
fn bulk_entries_carry_garden_errors() {
    let go = concat!(
        r#"{"Info":{"State":"","Events":[],"HostIP":"","ContainerIP":"","ExternalIP":"","ContainerPath":"","#,
        r#""ProcessIDs":[],"Properties":{},"MappedPorts":[]},"#,
        r#""Err":{"Type":"ContainerNotFoundError","Message":"unknown handle: gone","Handle":"gone","ProcessID":"","Binary":""}}"#
    );
    let expected = ContainerInfoEntry {
        info: ContainerInfo::default(),
        err: Some(Error::container_not_found("gone")),
    };
    round_trip(go, &expected);
    let ok: ContainerMetricsEntry = serde_json::from_str(r#"{"Metrics":{"Age":1},"Err":null}"#)
        .expect("a bulk metrics entry parses");
    assert_eq!(ok.metrics.age, Duration::from_nanos(1));
    assert!(ok.err.is_none());
}

#[test]
fn errors_as_garden_writes_them() {
    round_trip(
        r#"{"Type":"ProcessNotFoundError","Message":"unknown process: p9","Handle":"","ProcessID":"p9","Binary":""}"#,
        &Error::process_not_found("p9"),
    );
    round_trip(
        r#"{"Type":"","Message":"container already being destroyed","Handle":"","ProcessID":"","Binary":""}"#,
        &Error::internal("container already being destroyed"),
    );
    let unknown: Error = serde_json::from_str(r#"{"Type":"SomethingNewError","Message":"m"}"#)
        .expect("unknown types parse");
    assert_eq!(unknown.kind, ErrorKind::Internal);
    let bad =
        Error::from_response(400, br#"{"Type":"","Message":"invalid JSON"}"#).expect("parses");
    assert_eq!(bad.kind, ErrorKind::BadRequest);
    assert_eq!(Error::container_not_found("x").status(), 404);
    assert_eq!(Error::process_not_found("x").status(), 404);
    assert_eq!(Error::bad_request("x").status(), 400);
    assert_eq!(Error::service_unavailable("x").status(), 503);
    assert_eq!(Error::internal("x").status(), 500);
}

#[test]
fn capacity_and_net_in() {
    round_trip(
        r#"{"memory_in_bytes":8589934592,"disk_in_bytes":2,"schedulable_disk_in_bytes":3,"max_containers":250}"#,
        &Capacity {
            memory_in_bytes: 8 << 30,
            disk_in_bytes: 2,
            schedulable_disk_in_bytes: 3,
            max_containers: 250,
        },
    );
    round_trip(
        r#"{"handle":"h","container_port":8080}"#,
        &NetInRequest {
            handle: "h".into(),
            host_port: 0,
            container_port: 8080,
        },
    );
    round_trip(
        r#"{"host_port":61001,"container_port":8080}"#,
        &NetInResponse {
            host_port: 61001,
            container_port: 8080,
        },
    );
}

#[test]
fn stream_payloads() {
    let cases = [
        (
            r#"{"process_id":"p","stream_id":"7"}"#,
            ProcessPayload {
                process_id: "p".into(),
                stream_id: "7".into(),
                ..Default::default()
            },
        ),
        (
            r#"{"process_id":"p","source":0,"data":"hi\n"}"#,
            ProcessPayload {
                process_id: "p".into(),
                source: Some(Source::Stdin),
                data: Some("hi\n".into()),
                ..Default::default()
            },
        ),
        (
            r#"{"process_id":"p","source":0}"#,
            ProcessPayload {
                process_id: "p".into(),
                source: Some(Source::Stdin),
                ..Default::default()
            },
        ),
        (
            r#"{"process_id":"p","signal":1}"#,
            ProcessPayload {
                process_id: "p".into(),
                signal: Some(Signal::Kill),
                ..Default::default()
            },
        ),
        (
            r#"{"process_id":"p","tty":{"window_size":{"columns":132,"rows":43}}}"#,
            ProcessPayload {
                process_id: "p".into(),
                tty: Some(TtySpec {
                    window_size: Some(WindowSize {
                        columns: 132,
                        rows: 43,
                    }),
                }),
                ..Default::default()
            },
        ),
        (
            r#"{"process_id":"p","exit_status":0}"#,
            ProcessPayload {
                process_id: "p".into(),
                exit_status: Some(0),
                ..Default::default()
            },
        ),
        (
            r#"{"process_id":"p","error":"wait failed"}"#,
            ProcessPayload {
                process_id: "p".into(),
                error: Some("wait failed".into()),
                ..Default::default()
            },
        ),
    ];
    for (go, expected) in cases {
        round_trip(go, &expected);
    }
}
