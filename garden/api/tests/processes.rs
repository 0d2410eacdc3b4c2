//! Run and Attach: the stream protocol, through the client and raw.

mod common;

use std::time::Duration;

use common::{MemoryBackend, TestServer};
use garden_api::client::{ClientError, OutputStream, OutputStreams, RemoteProcess};
use garden_api::types::*;
use garden_api::ErrorKind;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const WAIT: Duration = Duration::from_secs(10);

fn process(path: &str, args: &[&str]) -> ProcessSpec {
    ProcessSpec {
        path: path.into(),
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        ..ProcessSpec::default()
    }
}

async fn read_all(stream: Option<OutputStream>) -> String {
    let mut text = String::new();
    let mut stream = stream.expect("the stream was attached");
    tokio::time::timeout(WAIT, stream.read_to_string(&mut text))
        .await
        .expect("output ends in time")
        .expect("reads");
    text
}

async fn wait(process: &RemoteProcess) -> Result<i32, ClientError> {
    tokio::time::timeout(WAIT, process.wait())
        .await
        .expect("the process ends in time")
}

async fn server_with_container() -> TestServer {
    let server = TestServer::start().await;
    server
        .client()
        .create(&ContainerSpec {
            handle: "box".into(),
            ..ContainerSpec::default()
        })
        .await
        .expect("create");
    server
}

#[tokio::test]
async fn run_with_stdin_stdout_stderr_and_exit_codes() {
    let server = server_with_container().await;
    let client = server.client();

    let mut cat = client
        .run("box", &process("cat", &[]), OutputStreams::BOTH)
        .await
        .expect("run cat");
    let stdin = cat.stdin();
    stdin.write("hello ".as_bytes()).await.expect("stdin");
    let snowman = "☃\n".as_bytes();
    stdin.write(&snowman[..1]).await.expect("half a character");
    stdin.write(&snowman[1..]).await.expect("the rest");
    stdin.close().await.expect("stdin EOF");
    let (stdout, stderr) = (cat.take_stdout(), cat.take_stderr());
    assert_eq!(read_all(stdout).await, "hello ☃\n");
    assert_eq!(read_all(stderr).await, "");
    assert_eq!(wait(&cat).await.expect("an exit status"), 0);

    let mut warn = client
        .run(
            "box",
            &process("warn", &["to", "stderr"]),
            OutputStreams::BOTH,
        )
        .await
        .expect("run");
    assert_eq!(read_all(warn.take_stderr()).await, "to stderr\n");
    assert_eq!(wait(&warn).await.expect("an exit status"), 0);

    let exit = client
        .run("box", &process("exit", &["42"]), OutputStreams::NONE)
        .await
        .expect("run");
    assert_eq!(wait(&exit).await.expect("an exit status"), 42);

    let broken = client
        .run("box", &process("broken", &[]), OutputStreams::BOTH)
        .await
        .expect("run");
    let failed = wait(&broken).await.expect_err("waiting fails");
    assert!(
        matches!(&failed, ClientError::Process(message) if message == "the keeper vanished"),
        "{failed:?}"
    );

    let missing = client
        .run("box", &process("missing", &[]), OutputStreams::BOTH)
        .await
        .err()
        .expect("refused");
    assert_eq!(missing.kind(), Some(ErrorKind::ExecutableNotFound));
    let unknown = client
        .run("ghost", &process("echo", &[]), OutputStreams::BOTH)
        .await
        .err()
        .expect("refused");
    assert_eq!(unknown.kind(), Some(ErrorKind::ContainerNotFound));
    let info = client.info("box").await.expect("info");
    assert_eq!(info.process_ids.len(), 4, "{info:?}");
    server.stop().await;
}

#[tokio::test]
async fn signals_and_window_sizes_reach_the_backend() {
    let server = server_with_container().await;
    let client = server.client();
    let spec = ProcessSpec {
        tty: Some(TtySpec {
            window_size: Some(WindowSize {
                columns: 80,
                rows: 24,
            }),
        }),
        ..process("serve", &[])
    };
    let mut serve = client
        .run("box", &spec, OutputStreams::BOTH)
        .await
        .expect("run");
    let mut stdout = BufReader::new(serve.take_stdout().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).await.expect("reads");
    assert_eq!(line, "ready\n");
    serve
        .set_tty(TtySpec {
            window_size: Some(WindowSize {
                columns: 132,
                rows: 43,
            }),
        })
        .await
        .expect("resize");
    server.backend.journal.wait_for("tty 132x43").await;
    // stdin closed: signals still get through
    serve.stdin().close().await.expect("stdin EOF");
    serve.signal(Signal::Terminate).await.expect("signal");
    assert_eq!(wait(&serve).await.expect("an exit status"), 143);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.expect("reads");
    assert_eq!(rest, "bye\n");
    let events = server.backend.journal.all();
    assert!(
        events.contains(&"run p1 with tty 80x24".to_owned())
            || events.iter().any(|e| e.ends_with("with tty 80x24")),
        "{events:?}"
    );
    assert!(
        events.contains(&"signal Terminate".to_owned()),
        "{events:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn attach_after_the_run_connection_dropped() {
    let server = server_with_container().await;
    let client = server.client();
    let spec = ProcessSpec {
        id: "srv".into(),
        ..process("serve", &[])
    };
    let mut first = client
        .run("box", &spec, OutputStreams::BOTH)
        .await
        .expect("run");
    let mut stdout = BufReader::new(first.take_stdout().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).await.expect("reads");
    assert_eq!(line, "ready\n");
    drop(first);
    // The server detaches: the first stdout connection ends.
    let mut rest = String::new();
    tokio::time::timeout(WAIT, stdout.read_to_string(&mut rest))
        .await
        .expect("ends")
        .expect("reads");

    let mut again = client
        .attach("box", "srv", OutputStreams::BOTH)
        .await
        .expect("attach");
    assert_eq!(again.id(), "srv");
    let mut stdout = BufReader::new(again.take_stdout().expect("stdout"));
    again.stdin().write(b"still there?\n").await.expect("stdin");
    let mut echoed = String::new();
    tokio::time::timeout(WAIT, stdout.read_line(&mut echoed))
        .await
        .expect("echoes")
        .expect("reads");
    assert_eq!(echoed, "still there?\n");
    again.signal(Signal::Kill).await.expect("signal");
    assert_eq!(wait(&again).await.expect("an exit status"), 137);

    let unknown = client
        .attach("box", "nope", OutputStreams::BOTH)
        .await
        .err()
        .expect("unknown process");
    assert_eq!(unknown.kind(), Some(ErrorKind::ProcessNotFound));
    assert_eq!(unknown.to_string(), "unknown process: nope");
    server.stop().await;
}

/// Reads a raw answer's head, then lines, as Garden's Go client does.
async fn raw_run(
    socket: &std::path::Path,
    spec: &str,
) -> (String, BufReader<tokio::net::UnixStream>) {
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connects");
    let request = format!(
        "POST /containers/box/processes HTTP/1.1\r\nHost: api\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n{spec}",
        spec.len()
    );
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.expect("reads");
        head.push_str(&line);
        if line == "\r\n" || line.is_empty() {
            return (head, reader);
        }
    }
}

#[tokio::test]
async fn the_raw_protocol_and_a_late_stdout_attach() {
    let server = server_with_container().await;
    let (head, mut reader) = raw_run(
        &server.socket,
        r#"{"path":"echo","args":["late","output"],"rlimits":{},"image":{}}"#,
    )
    .await;
    assert_eq!(
        head,
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\r\n"
    );
    let mut hello = String::new();
    reader.read_line(&mut hello).await.expect("reads");
    let hello: ProcessPayload = serde_json::from_str(&hello).expect("the first message");
    assert!(!hello.process_id.is_empty() && !hello.stream_id.is_empty());
    let mut last = String::new();
    reader.read_line(&mut last).await.expect("reads");
    assert_eq!(
        last,
        format!(
            "{{\"process_id\":\"{}\",\"exit_status\":0}}\n",
            hello.process_id
        )
    );

    // stdout attached only after the process exited: its output waited.
    let path = format!(
        "/containers/box/processes/{}/attaches/{}/stdout",
        hello.process_id, hello.stream_id
    );
    let answer = common::raw(
        &server.socket,
        format!("GET {path} HTTP/1.1\r\nHost: api\r\n\r\n").as_bytes(),
        WAIT,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nlate output\n"), "{answer}");
    // An unknown stream: 200 and nothing, as from Garden.
    let answer = common::raw(
        &server.socket,
        b"GET /containers/box/processes/x/attaches/999/stderr HTTP/1.1\r\n\r\n",
        WAIT,
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\n"),
        "{answer}"
    );

    // Stdin and a concatenated second message in one write, then a detach.
    let (_, mut reader) = raw_run(&server.socket, r#"{"path":"cat"}"#).await;
    let mut hello = String::new();
    reader.read_line(&mut hello).await.expect("reads");
    let hello: ProcessPayload = serde_json::from_str(&hello).expect("the first message");
    let stream = reader.get_mut();
    stream
        .write_all(br#"{"source":0,"data":"in"}{"source":0}"#)
        .await
        .expect("writes");
    let mut last = String::new();
    reader.read_line(&mut last).await.expect("reads");
    assert!(last.contains("\"exit_status\":0"), "{last}");
    server
        .backend
        .journal
        .wait_for(&format!("{} stdin closed", hello.process_id))
        .await;
    server.stop().await;
}

#[tokio::test]
async fn output_nobody_reads_never_blocks_the_process() {
    let backend = std::sync::Arc::new(MemoryBackend::default());
    let server =
        TestServer::start_with(backend, |config| config.limits.stream_buffer_bytes = 4096).await;
    let client = server.client();
    client
        .create(&ContainerSpec {
            handle: "box".into(),
            ..ContainerSpec::default()
        })
        .await
        .expect("create");
    let flood = client
        .run("box", &process("flood", &["2000"]), OutputStreams::NONE)
        .await
        .expect("run");
    assert_eq!(wait(&flood).await.expect("an exit status"), 0);
    // Output written before the client attached waits for it (within the
    // buffer); after that, the client reads at its own pace.
    let mut flood = client
        .run("box", &process("flood", &["30"]), OutputStreams::BOTH)
        .await
        .expect("run");
    assert_eq!(read_all(flood.take_stdout()).await.len(), 30 * 100);
    assert_eq!(wait(&flood).await.expect("an exit status"), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_process_stream_holds_the_grace_timer() {
    let backend = std::sync::Arc::new(MemoryBackend::default());
    let server = TestServer::start_with(backend, |config| {
        config.default_grace_time = Some(Duration::from_millis(300))
    })
    .await;
    let client = server.client();
    client
        .create(&ContainerSpec {
            handle: "held".into(),
            ..ContainerSpec::default()
        })
        .await
        .expect("create");
    client
        .create(&ContainerSpec {
            handle: "idle".into(),
            ..ContainerSpec::default()
        })
        .await
        .expect("create");
    let held = client
        .run("held", &process("serve", &[]), OutputStreams::NONE)
        .await
        .expect("run");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        !server.backend.exists("idle"),
        "an unreferenced container is reaped"
    );
    assert!(
        server.backend.exists("held"),
        "a container with a process stream is not"
    );
    held.signal(Signal::Terminate).await.expect("signal");
    assert_eq!(wait(&held).await.expect("an exit status"), 143);
    server.backend.journal.wait_for("destroy held").await;
    server.stop().await;
}

#[tokio::test]
async fn stopping_the_server_detaches_process_streams() {
    let server = server_with_container().await;
    let client = server.client();
    let serve = client
        .run("box", &process("serve", &[]), OutputStreams::BOTH)
        .await
        .expect("run");
    server.stop().await;
    let detached = wait(&serve).await.expect_err("no exit status");
    assert!(
        matches!(detached, ClientError::Disconnected(_)),
        "{detached:?}"
    );
}
