//! The gardenctl binary against a server with the in-memory backend.

mod common;

use std::process::Stdio;

use common::TestServer;
use tokio::io::AsyncWriteExt;

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn gardenctl(server: &TestServer, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gardenctl"))
        .arg("--socket")
        .arg(&server.socket)
        .args(args)
        .env_remove("GARDEN_ADDRESS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("gardenctl starts");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).await.expect("writes stdin");
    drop(input);
    let output = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("gardenctl ends in time")
        .expect("gardenctl runs");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn ok(server: &TestServer, args: &[&str]) -> String {
    let output = gardenctl(server, args, b"").await;
    assert_eq!(output.code, 0, "gardenctl {args:?}: {}", output.stderr);
    output.stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_properties_and_errors() {
    let server = TestServer::start().await;
    assert_eq!(ok(&server, &["ping"]).await, "ok\n");
    assert!(ok(&server, &["capacity"]).await.contains("max containers:"));
    let created = ok(
        &server,
        &[
            "create",
            "--handle",
            "web",
            "-m",
            "256M",
            "--pids",
            "64",
            "-p",
            "app=web",
            "-e",
            "A=1",
            "--grace-time",
            "5m",
        ],
    )
    .await;
    assert_eq!(created, "web\n");
    ok(
        &server,
        &["create", "--handle", "worker", "-p", "app=worker"],
    )
    .await;
    assert_eq!(ok(&server, &["list", "-p", "app=web"]).await, "web\n");
    let list: Vec<String> =
        serde_json::from_str(&ok(&server, &["list", "--json"]).await).expect("JSON");
    assert_eq!(list, ["web", "worker"]);
    let info = ok(&server, &["info", "web"]).await;
    assert!(
        info.contains("state:") && info.contains("active") && info.contains("app=web"),
        "{info}"
    );
    let limits = ok(&server, &["limits", "web"]).await;
    assert!(limits.contains("256.0 MiB"), "{limits}");
    ok(&server, &["properties", "set", "web", "owner", "me"]).await;
    assert_eq!(
        ok(&server, &["properties", "get", "web", "owner"]).await,
        "me\n"
    );
    ok(&server, &["properties", "rm", "web", "owner"]).await;
    assert!(ok(&server, &["metrics", "web", "--json"])
        .await
        .contains("\"CPUEntitlement\": 42"));

    let unknown = gardenctl(&server, &["info", "ghost"], b"").await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("unknown handle: ghost"),
        "{}",
        unknown.stderr
    );
    let bad = gardenctl(&server, &["create", "-m", "lots"], b"").await;
    assert_eq!(bad.code, 2, "a usage error: {}", bad.stderr);
    ok(&server, &["destroy", "web", "worker"]).await;
    let again = gardenctl(&server, &["destroy", "web"], b"").await;
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("unknown handle: web"),
        "{}",
        again.stderr
    );
    let nowhere = tokio::process::Command::new(env!("CARGO_BIN_EXE_gardenctl"))
        .args(["--socket", "/nonexistent/garden.sock", "ping"])
        .output()
        .await
        .expect("runs");
    assert_eq!(nowhere.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nowhere.stderr)
        .contains("cannot connect to garden at /nonexistent/garden.sock"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_streams_stdio_and_exits_with_the_status() {
    let server = TestServer::start().await;
    ok(&server, &["create", "--handle", "box"]).await;
    assert_eq!(
        ok(&server, &["run", "box", "--", "echo", "hello", "-n"]).await,
        "hello -n\n"
    );
    let exit = gardenctl(&server, &["run", "box", "--", "exit", "3"], b"").await;
    assert_eq!(exit.code, 3);
    let cat = gardenctl(
        &server,
        &["run", "box", "--id", "cat-1", "--", "cat"],
        b"piped\nin\n",
    )
    .await;
    assert_eq!((cat.code, cat.stdout.as_str()), (0, "piped\nin\n"));
    let warn = gardenctl(&server, &["run", "box", "--", "warn", "oops"], b"").await;
    assert_eq!(
        (warn.code, warn.stdout.as_str(), warn.stderr.as_str()),
        (0, "", "oops\n")
    );
    let missing = gardenctl(&server, &["run", "box", "--", "missing"], b"").await;
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("not found"), "{}", missing.stderr);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_in_and_out_with_directories() {
    let server = TestServer::start().await;
    ok(&server, &["create", "--handle", "files"]).await;
    let source = tempfile::tempdir().expect("a directory");
    std::fs::create_dir(source.path().join("sub")).expect("mkdir");
    std::fs::write(source.path().join("sub/a.txt"), b"alpha").expect("writes");
    std::fs::write(source.path().join("b.bin"), vec![7u8; 100_000]).expect("writes");
    let src = source.path().to_str().expect("UTF-8");
    ok(
        &server,
        &["stream-in", "files", "--dst", "/app", "--src", src],
    )
    .await;
    // The in-memory backend keeps the archive as sent: stream it back out.
    let target = tempfile::tempdir().expect("a directory");
    let dst = target.path().join("out");
    ok(
        &server,
        &[
            "stream-out",
            "files",
            "--src",
            "/app",
            "--dst",
            dst.to_str().expect("UTF-8"),
        ],
    )
    .await;
    assert_eq!(
        std::fs::read(dst.join("sub/a.txt")).expect("unpacked"),
        b"alpha"
    );
    assert_eq!(
        std::fs::read(dst.join("b.bin")).expect("unpacked").len(),
        100_000
    );
    let raw = gardenctl(
        &server,
        &["stream-in", "files", "--dst", "/raw"],
        b"raw tar bytes",
    )
    .await;
    assert_eq!(raw.code, 0, "{}", raw.stderr);
    assert_eq!(
        ok(&server, &["stream-out", "files", "--src", "/raw"]).await,
        "raw tar bytes"
    );
    server.stop().await;
}
