//! Every ordinary route, through the client and as raw HTTP the way
//! Garden's Go client sends it, against the in-memory backend.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{body_of, raw, raw_open, status_of, TestServer};
use futures_util::StreamExt;
use garden_api::backend::{StreamInSpec, StreamOutSpec};
use garden_api::client::ClientError;
use garden_api::types::*;
use garden_api::ErrorKind;

const WAIT: Duration = Duration::from_secs(5);

fn spec(handle: &str, properties: &[(&str, &str)]) -> ContainerSpec {
    ContainerSpec {
        handle: handle.into(),
        properties: properties
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        limits: Limits {
            memory: MemoryLimits {
                limit_in_bytes: 64 << 20,
            },
            ..Limits::default()
        },
        ..ContainerSpec::default()
    }
}

#[tokio::test]
async fn ping_capacity_and_requests_matching_no_route() {
    let server = TestServer::start().await;
    let client = server.client();
    client.ping().await.expect("ping");
    assert_eq!(
        client.capacity().await.expect("capacity").max_containers,
        250
    );

    let answer = raw(
        &server.socket,
        b"GET /nope HTTP/1.1\r\nHost: api\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(status_of(&answer), 404, "{answer}");
    assert!(
        body_of(&answer).contains(r#""Message":"no route for GET /nope""#),
        "{answer}"
    );
    let answer = raw(
        &server.socket,
        b"POST /ping HTTP/1.1\r\nHost: api\r\nContent-Length: 0\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(status_of(&answer), 405, "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn create_list_info_metrics_destroy() {
    let server = TestServer::start().await;
    let client = server.client();
    assert_eq!(
        client
            .create(&spec("web-1", &[("app", "web")]))
            .await
            .expect("create"),
        "web-1"
    );
    let generated = client
        .create(&ContainerSpec::default())
        .await
        .expect("create without a handle");
    assert!(!generated.is_empty());
    let info = client.info("web-1").await.expect("info");
    assert_eq!(info.state, "active");
    assert_eq!(info.properties.get("app").map(String::as_str), Some("web"));
    let metrics = client.metrics("web-1").await.expect("metrics");
    assert_eq!(metrics.memory.total_usage_toward_limit, 32 << 20);
    assert_eq!(metrics.age, Duration::from_secs(3));
    let mut all = client.list(&Properties::new()).await.expect("list");
    all.sort();
    assert_eq!(all, [generated.as_str(), "web-1"]);

    let duplicate = client
        .create(&spec("web-1", &[]))
        .await
        .expect_err("a taken handle");
    assert!(
        duplicate.to_string().contains("handle already exists"),
        "{duplicate}"
    );
    let bad_image = ContainerSpec {
        image: ImageRef {
            uri: "bad://image".into(),
            ..ImageRef::default()
        },
        ..ContainerSpec::default()
    };
    let refused = client.create(&bad_image).await.expect_err("a bad image");
    assert_eq!(refused.kind(), Some(ErrorKind::BadRequest));

    client.destroy("web-1").await.expect("destroy");
    let gone = client.destroy("web-1").await.expect_err("destroyed twice");
    assert_eq!(gone.kind(), Some(ErrorKind::ContainerNotFound));
    assert_eq!(gone.to_string(), "unknown handle: web-1");
    server.stop().await;
}

#[tokio::test]
async fn unknown_handles_answer_404_with_garden_error_json() {
    let server = TestServer::start().await;
    for (method, path) in [
        ("GET", "/containers/ghost/info"),
        ("GET", "/containers/ghost/metrics"),
        ("GET", "/containers/ghost/properties"),
        ("GET", "/containers/ghost/limits/memory"),
        ("DELETE", "/containers/ghost"),
        ("DELETE", "/containers/ghost/properties/k"),
    ] {
        let request = format!("{method} {path} HTTP/1.1\r\nHost: api\r\n\r\n");
        let answer = raw(&server.socket, request.as_bytes(), WAIT).await;
        assert_eq!(status_of(&answer), 404, "{method} {path}: {answer}");
        assert!(
            answer.contains("Content-Type: application/json\r\n"),
            "{answer}"
        );
        assert_eq!(
            body_of(&answer),
            "{\"Type\":\"ContainerNotFoundError\",\"Message\":\"unknown handle: ghost\",\"Handle\":\"ghost\",\"ProcessID\":\"\",\"Binary\":\"\"}\n"
        );
    }
    let client = server.client();
    let error = client.info("ghost").await.expect_err("unknown");
    assert!(
        matches!(&error, ClientError::Garden(garden) if garden.handle == "ghost"),
        "{error:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn requests_as_the_go_client_sends_them() {
    let server = TestServer::start().await;
    let body = r#"{"handle":"go-1","grace_time":0,"image":{},"limits":{"bandwidth_limits":{},"cpu_limits":{"weight":5},"disk_limits":{},"memory_limits":{},"pid_limits":{}},"properties":{"a":"b"}}
"#;
    let request = format!(
        "POST /containers HTTP/1.1\r\nHost: api\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: {}\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(&server.socket, request.as_bytes(), WAIT).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(body_of(&answer), "{\"Handle\":\"go-1\"}\n");
    let answer = raw(
        &server.socket,
        b"GET /containers?a=b HTTP/1.1\r\nHost: api\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(body_of(&answer), "{\"Handles\":[\"go-1\"]}\n");
    let answer = raw(
        &server.socket,
        b"GET /containers/go-1/limits/cpu HTTP/1.1\r\nHost: api\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(body_of(&answer), "{\"weight\":5}\n");
    let answer = raw(
        &server.socket,
        b"GET /containers/go-1/properties/a HTTP/1.1\r\nHost: api\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(body_of(&answer), "{\"value\":\"b\"}\n");
    server.stop().await;
}

#[tokio::test]
async fn invalid_json_is_a_400_and_the_connection_stays_usable() {
    let server = TestServer::start().await;
    let requests = concat!(
        "POST /containers HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\n\r\n{nope",
        "POST /containers HTTP/1.1\r\nHost: api\r\nContent-Length: 0\r\n\r\n",
        "PUT /containers/x/grace_time HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\n\r\n-5",
        "GET /ping HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n",
    );
    let answer = raw(&server.socket, requests.as_bytes(), WAIT).await;
    let statuses: Vec<u16> = answer
        .split("HTTP/1.1 ")
        .skip(1)
        .filter_map(|part| part[..3].parse().ok())
        .collect();
    assert_eq!(statuses, [400, 400, 400, 200], "{answer}");
    assert!(
        answer.contains(r#""Message":"invalid JSON: key must be a string"#),
        "{answer}"
    );
    assert!(
        answer.contains(r#""Message":"empty request body: expected JSON""#),
        "{answer}"
    );
    assert!(
        answer.contains(r#""Message":"negative grace time: -5 ns""#),
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test]
async fn properties_and_property_filters() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create(&spec("a", &[("app", "web"), ("space", "dev")]))
        .await
        .expect("create a");
    client
        .create(&spec("b", &[("app", "web"), ("space", "prod")]))
        .await
        .expect("create b");
    client
        .create(&spec("c", &[("app", "worker")]))
        .await
        .expect("create c");
    let filter = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Properties>()
    };
    assert_eq!(
        client.list(&filter(&[("app", "web")])).await.expect("list"),
        ["a", "b"]
    );
    assert_eq!(
        client
            .list(&filter(&[("app", "web"), ("space", "prod")]))
            .await
            .expect("list"),
        ["b"]
    );
    assert!(client
        .list(&filter(&[("app", "none")]))
        .await
        .expect("list")
        .is_empty());

    client
        .set_property("c", "executor:owner", "rep 1/2")
        .await
        .expect("set");
    assert_eq!(
        client.property("c", "executor:owner").await.expect("get"),
        "rep 1/2"
    );
    assert_eq!(client.properties("c").await.expect("all").len(), 2);
    assert_eq!(
        client
            .list(&filter(&[("executor:owner", "rep 1/2")]))
            .await
            .expect("list"),
        ["c"]
    );
    client
        .remove_property("c", "executor:owner")
        .await
        .expect("remove");
    let missing = client
        .property("c", "executor:owner")
        .await
        .expect_err("removed");
    assert!(
        missing.to_string().contains("property does not exist"),
        "{missing}"
    );
    server.stop().await;
}

#[tokio::test]
async fn bulk_info_and_metrics_with_an_unknown_handle() {
    let server = TestServer::start().await;
    let client = server.client();
    client.create(&spec("one", &[])).await.expect("create");
    client.create(&spec("two", &[])).await.expect("create");
    let handles = ["one".to_owned(), "ghost".to_owned(), "two".to_owned()];
    let infos = client.bulk_info(&handles).await.expect("bulk info");
    assert_eq!(infos.len(), 3);
    assert_eq!(infos["one"].info.state, "active");
    assert!(infos["one"].err.is_none());
    let ghost = infos["ghost"]
        .err
        .as_ref()
        .expect("an error for the unknown handle");
    assert_eq!(ghost.kind, ErrorKind::ContainerNotFound);
    let metrics = client.bulk_metrics(&handles).await.expect("bulk metrics");
    assert_eq!(metrics["two"].metrics.cpu_entitlement, 42);
    assert!(metrics["ghost"].err.is_some());
    assert!(client.bulk_info(&[]).await.expect("no handles").is_empty());
    let answer = raw(
        &server.socket,
        b"GET /containers/bulk_info?handles=ghost HTTP/1.1\r\nHost: api\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(
        body_of(&answer).starts_with(r#"{"ghost":{"Info":{"State":"","Events":[]"#),
        "{answer}"
    );
    assert!(
        body_of(&answer).contains(r#""Err":{"Type":"ContainerNotFoundError""#),
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test]
async fn limits_net_stop_and_grace_time() {
    let server = TestServer::start().await;
    let client = server.client();
    let mut container = spec("l", &[]);
    container.limits = Limits {
        bandwidth: BandwidthLimits {
            rate_in_bytes_per_second: 100,
            burst_rate_in_bytes_per_second: 200,
        },
        cpu: CpuLimits {
            weight: 7,
            limit_in_shares: 0,
        },
        disk: DiskLimits {
            byte_hard: 1 << 20,
            inode_hard: 10,
            scope: DiskLimitScope::Exclusive,
            ..DiskLimits::default()
        },
        memory: MemoryLimits {
            limit_in_bytes: 1 << 30,
        },
        pid: PidLimits { max: 9 },
    };
    client.create(&container).await.expect("create");
    assert_eq!(
        client
            .current_bandwidth_limits("l")
            .await
            .expect("bandwidth"),
        container.limits.bandwidth
    );
    assert_eq!(
        client.current_cpu_limits("l").await.expect("cpu"),
        container.limits.cpu
    );
    assert_eq!(
        client.current_disk_limits("l").await.expect("disk"),
        container.limits.disk
    );
    assert_eq!(
        client.current_memory_limits("l").await.expect("memory"),
        container.limits.memory
    );
    assert_eq!(
        client.net_in("l", 0, 8080).await.expect("net in"),
        (61001, 8080)
    );
    assert_eq!(
        client.net_in("l", 61005, 0).await.expect("net in"),
        (61005, 61005)
    );
    let rule = NetOutRule {
        protocol: Protocol::Tcp,
        ports: vec![PortRange {
            start: 443,
            end: 443,
        }],
        ..NetOutRule::default()
    };
    client.net_out("l", &rule).await.expect("net out");
    client
        .bulk_net_out("l", &[rule.clone(), rule])
        .await
        .expect("bulk net out");
    client.stop("l", true).await.expect("stop");
    assert_eq!(server.backend.stopped("l"), Some(true));
    client
        .set_grace_time("l", Duration::from_secs(3600))
        .await
        .expect("grace time");
    let events = server.backend.journal.all();
    assert!(
        events.contains(&"net-out l 1 rules".to_owned())
            && events.contains(&"net-out l 2 rules".to_owned()),
        "{events:?}"
    );
    assert_eq!(
        client
            .net_in("ghost", 0, 1)
            .await
            .expect_err("unknown")
            .kind(),
        Some(ErrorKind::ContainerNotFound)
    );
    server.stop().await;
}

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn stream_in_and_out_pass_chunked_bodies_through() {
    let server = TestServer::start().await;
    let client = server.client();
    client.create(&spec("files", &[])).await.expect("create");
    let data = payload(300_000);
    let chunks: Vec<std::io::Result<Bytes>> = data
        .chunks(7_777)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let spec_in = StreamInSpec {
        path: "/tmp/app".into(),
        user: "vcap".into(),
    };
    client
        .stream_in(
            "files",
            &spec_in,
            Box::pin(futures_util::stream::iter(chunks)),
        )
        .await
        .expect("stream in");
    assert_eq!(server.backend.files("files"), data);
    assert!(server
        .backend
        .journal
        .all()
        .contains(&"stream-in files /tmp/app 300000 bytes as \"vcap\"".to_owned()));

    let mut out = client
        .stream_out(
            "files",
            &StreamOutSpec {
                path: "/tmp/app".into(),
                user: String::new(),
            },
        )
        .await
        .expect("stream out");
    let mut received = Vec::new();
    while let Some(chunk) = out.next().await {
        received.extend_from_slice(&chunk.expect("a chunk"));
    }
    assert_eq!(received, data);
    let missing_spec = StreamOutSpec {
        path: "/missing".into(),
        user: String::new(),
    };
    let missing = client.stream_out("files", &missing_spec).await;
    assert!(missing
        .err()
        .expect("missing path")
        .to_string()
        .contains("no such file"));

    // A raw chunked request with a chunk extension and a trailer.
    let request = concat!(
        "PUT /containers/files/files?destination=%2Fraw&user= HTTP/1.1\r\nHost: api\r\n",
        "Transfer-Encoding: chunked\r\nContent-Type: application/x-tar\r\n\r\n",
        "5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    );
    let answer = raw(&server.socket, request.as_bytes(), WAIT).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert_eq!(server.backend.files("files"), b"hello world");
    let answer = raw(
        &server.socket,
        b"GET /containers/files/files?source=%2Fraw HTTP/1.1\r\nHost: api\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(
        answer.contains("Transfer-Encoding: chunked\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("b\r\nhello world\r\n0\r\n\r\n"),
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test]
async fn stream_in_refused_before_the_body_is_read() {
    let server = TestServer::start().await;
    let client = server.client();
    client.create(&spec("f", &[])).await.expect("create");
    let big: Vec<std::io::Result<Bytes>> = (0..200)
        .map(|_| Ok(Bytes::from(vec![0u8; 64 * 1024])))
        .collect();
    let refused = client
        .stream_in(
            "f",
            &StreamInSpec {
                path: "/refused".into(),
                user: String::new(),
            },
            Box::pin(futures_util::stream::iter(big)),
        )
        .await
        .expect_err("refused");
    assert_eq!(refused.kind(), Some(ErrorKind::BadRequest), "{refused:?}");
    let broken: Vec<std::io::Result<Bytes>> = vec![
        Ok(Bytes::from_static(b"abc")),
        Err(std::io::Error::other("disk gone")),
    ];
    let failed = client
        .stream_in(
            "f",
            &StreamInSpec::default(),
            Box::pin(futures_util::stream::iter(broken)),
        )
        .await;
    assert!(matches!(failed, Err(ClientError::Source(_))), "{failed:?}");
    let truncated = "PUT /containers/f/files?destination=%2Fx HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
    let answer = raw_open(
        &server.socket,
        truncated.as_bytes(),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(answer, "", "no answer while the body may still come");
    let answer = raw(&server.socket, truncated.as_bytes(), WAIT).await;
    assert_eq!(
        status_of(&answer),
        400,
        "a body cut short by the client: {answer}"
    );
    client.ping().await.expect("the server still serves");
    server.stop().await;
}
