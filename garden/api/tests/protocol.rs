//! Bad and slow clients, the listeners, concurrent destroys, counters.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use common::{raw, raw_open, status_of, MemoryBackend, TestServer};
use garden_api::client::Client;
use garden_api::server::{Server, ServerConfig, ServerError};
use garden_api::types::ContainerSpec;
use garden_api::{Backend, ErrorKind};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn malformed_oversized_and_slow_requests_get_clear_4xx() {
    let backend = Arc::new(MemoryBackend::default());
    let server = TestServer::start_with(backend, |config| {
        config.limits.head_timeout = Duration::from_millis(200)
    })
    .await;
    let answer = raw(
        &server.socket,
        b"\x16\x03\x01 not http at all\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    let huge = format!(
        "GET /ping HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    assert_eq!(
        status_of(&raw(&server.socket, huge.as_bytes(), WAIT).await),
        431
    );
    let many: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET /ping HTTP/1.1\r\n{many}\r\n");
    assert_eq!(
        status_of(&raw(&server.socket, many.as_bytes(), WAIT).await),
        431
    );
    let conflicting = b"PUT /containers/x/stop HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        status_of(&raw(&server.socket, conflicting, WAIT).await),
        400
    );
    let gzip = b"PUT /containers/x/files HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert_eq!(status_of(&raw(&server.socket, gzip, WAIT).await), 501);
    let bad_chunk = b"PUT /containers/x/files HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    server
        .client()
        .create(&ContainerSpec {
            handle: "x".into(),
            ..ContainerSpec::default()
        })
        .await
        .expect("create");
    assert_eq!(status_of(&raw(&server.socket, bad_chunk, WAIT).await), 400);
    // A head that never completes: 408 after the head timeout.
    let slow = raw_open(&server.socket, b"GET /ping HTTP/1.1\r\nHost: a", WAIT).await;
    assert_eq!(status_of(&slow), 408, "{slow}");
    // A client that half-closes after its request still gets the answer.
    let answer = raw(
        &server.socket,
        b"GET /ping HTTP/1.1\r\nHost: api\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(common::body_of(&answer), "{}\n");
    // HTTP/1.0 without keep-alive: answered, then closed.
    let answer = raw_open(&server.socket, b"GET /ping HTTP/1.0\r\n\r\n", WAIT).await;
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    // Expect: 100-continue is honoured before the body is read.
    let body = r#"{"value":"v"}"#;
    let expect = format!("PUT /containers/x/properties/k HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let answer = raw(&server.socket, expect.as_bytes(), WAIT).await;
    assert!(
        answer.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
        "{answer}"
    );
    server.client().ping().await.expect("still serving");
    server.stop().await;
}

#[tokio::test]
async fn concurrent_destroys_of_one_handle() {
    let server = TestServer::start().await;
    let client = server.client();
    client
        .create(&ContainerSpec {
            handle: "twice".into(),
            ..ContainerSpec::default()
        })
        .await
        .expect("create");
    let (first, second) = tokio::join!(client.destroy("twice"), client.destroy("twice"));
    let results = [first, second];
    assert_eq!(
        results.iter().filter(|result| result.is_ok()).count(),
        1,
        "{results:?}"
    );
    let error = results
        .into_iter()
        .find_map(Result::err)
        .expect("one fails");
    let concurrent = error.to_string() == "container already being destroyed";
    assert!(
        concurrent || error.kind() == Some(ErrorKind::ContainerNotFound),
        "{error}"
    );
    assert!(!server.backend.exists("twice"));
    server.stop().await;
}

#[tokio::test]
async fn tcp_and_request_counters() {
    let server = TestServer::start().await;
    let client = Client::tcp(server.tcp.to_string());
    client.ping().await.expect("ping over TCP");
    let _ = client.info("ghost").await;
    let answer = raw(&server.socket, b"GET /metrics HTTP/1.1\r\n\r\n", WAIT).await;
    assert!(
        answer.contains("garden_api_requests_total{route=\"Ping\",status=\"200\"} 1\n"),
        "{answer}"
    );
    assert!(
        answer.contains("garden_api_requests_total{route=\"Info\",status=\"404\"} 1\n"),
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_unix_socket_is_private_and_stale_ones_are_replaced() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let socket = dir.path().join("deep/er/garden.sock");
    let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
    let server = Server::bind(ServerConfig::unix(&socket), Arc::clone(&backend))
        .await
        .expect("binds");
    let mode = std::fs::metadata(&socket)
        .expect("the socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let shutdown = server.shutdown_token();
    let serving = tokio::spawn(server.serve());
    let second = Server::bind(ServerConfig::unix(&socket), Arc::clone(&backend)).await;
    assert!(
        matches!(second, Err(ServerError::SocketInUse { .. })),
        "a live socket is not stolen"
    );
    shutdown.cancel();
    serving.await.expect("ends").expect("serves");
    assert!(!socket.exists(), "the socket is removed at shutdown");

    drop(std::os::unix::net::UnixListener::bind(&socket).expect("a stale socket"));
    let server = Server::bind(ServerConfig::unix(&socket), Arc::clone(&backend))
        .await
        .expect("replaces a stale socket");
    drop(server);
    std::fs::remove_file(&socket).expect("removes");
    std::fs::write(&socket, b"not a socket").expect("writes");
    let refused = Server::bind(ServerConfig::unix(&socket), backend).await;
    assert!(
        matches!(refused, Err(ServerError::NotASocket { .. })),
        "a regular file is not removed"
    );
    assert_eq!(
        std::fs::read(&socket).expect("still there"),
        b"not a socket"
    );
}

#[tokio::test]
async fn grace_times_survive_a_server_restart() {
    let backend = Arc::new(MemoryBackend::default());
    let server = TestServer::start_with(Arc::clone(&backend), |_| {}).await;
    let spec = ContainerSpec {
        handle: "old".into(),
        grace_time: Some(Duration::from_millis(200)),
        ..ContainerSpec::default()
    };
    let client = server.client();
    client.create(&spec).await.expect("create");
    client
        .set_grace_time("old", Duration::from_secs(3600))
        .await
        .expect("a long grace time");
    server.stop().await;
    // The backend remembers 1 h: a new server does not reap it soon.
    client
        .set_grace_time("old", Duration::ZERO)
        .await
        .expect_err("no server");
    let server = TestServer::start_with(Arc::clone(&backend), |_| {}).await;
    server
        .client()
        .set_grace_time("old", Duration::from_millis(100))
        .await
        .expect("a short grace time");
    server.stop().await;
    let server = TestServer::start_with(Arc::clone(&backend), |_| {}).await;
    backend.journal.wait_for("destroy old").await;
    server.stop().await;
}
