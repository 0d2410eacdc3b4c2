//! gardend end to end: the real daemon on a private socket and state
//! directories, driven through the garden-api client as the cell agent
//! will drive it. Containers come from the busybox test rootfs.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use garden_api::client::OutputStreams;
use garden_api::types::{BindMount, BindMountMode, DiskLimitScope, ProcessSpec, Properties};
use garden_api::{ErrorKind, StreamInSpec, StreamOutSpec};
use tokio::io::AsyncReadExt;

use common::daemon::{busybox_spec, run, sh, unique, Daemon};

#[tokio::test(flavor = "multi_thread")]
async fn create_run_info_properties_destroy() {
    let d = Daemon::start();
    let c = &d.client;
    c.ping().await.expect("ping");
    let h = unique("basic");
    let mut spec = busybox_spec(&h);
    spec.properties.insert("app".into(), "web".into());
    spec.env = vec!["FROM_CONTAINER=1".into()];
    assert_eq!(c.create(&spec).await.expect("create"), h);

    let mut p = sh("echo out:$FROM_CONTAINER:$FROM_PROCESS; echo err >&2; id -u; exit 3");
    p.env = vec!["FROM_PROCESS=2".into()];
    let (out, err, status) = run(c, &h, p).await;
    assert_eq!(
        (out.as_str(), err.as_str(), status),
        ("out:1:2\n0\n", "err\n", 3)
    );

    let info = c.info(&h).await.expect("info");
    assert_eq!(info.state, "active");
    assert_eq!(info.properties.get("app").map(String::as_str), Some("web"));

    let mut filter = Properties::new();
    filter.insert("app".into(), "web".into());
    assert_eq!(c.list(&filter).await.expect("list"), vec![h.clone()]);
    filter.insert("app".into(), "worker".into());
    assert!(c.list(&filter).await.expect("list").is_empty());

    c.set_property(&h, "k", "v").await.expect("set");
    assert_eq!(c.property(&h, "k").await.expect("get"), "v");
    c.remove_property(&h, "k").await.expect("rm");
    assert!(c.property(&h, "k").await.is_err());

    let m = c.metrics(&h).await.expect("metrics");
    assert!(m.age > Duration::ZERO);
    assert!(m.memory.total_usage_toward_limit > 0, "{m:?}");

    c.destroy(&h).await.expect("destroy");
    let e = c.info(&h).await.expect_err("gone");
    assert_eq!(e.kind(), Some(ErrorKind::ContainerNotFound));
    let e = c.destroy(&h).await.expect_err("gone");
    assert_eq!(e.kind(), Some(ErrorKind::ContainerNotFound));
    assert!(!d.path().join("depot").join(&h).exists(), "depot dir left");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_clearly() {
    let d = Daemon::start();
    let c = &d.client;
    let mut spec = busybox_spec(&unique("bad/handle"));
    let e = c.create(&spec).await.expect_err("bad handle");
    assert_eq!(e.kind(), Some(ErrorKind::BadRequest), "{e}");
    spec.handle = unique("noimage");
    spec.image.uri = "/no/such/rootfs".into();
    assert!(c.create(&spec).await.is_err());
    let h = unique("dup");
    c.create(&busybox_spec(&h)).await.expect("create");
    let e = c.create(&busybox_spec(&h)).await.expect_err("duplicate");
    assert!(e.to_string().contains("in use"), "{e}");
    let e = c
        .run(
            &h,
            &ProcessSpec {
                path: "/no/such/binary".into(),
                ..Default::default()
            },
            OutputStreams::BOTH,
        )
        .await;
    match e {
        Err(e) => assert!(e.to_string().contains("/no/such/binary"), "{e}"),
        Ok(p) => assert_ne!(p.wait().await.unwrap_or(0), 0),
    }
    let Err(e) = c.attach(&h, "nope", OutputStreams::BOTH).await else {
        panic!("attach to an unknown process succeeded");
    };
    assert_eq!(e.kind(), Some(ErrorKind::ProcessNotFound), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_survive_a_daemon_crash() {
    let mut d = Daemon::start();
    let h = unique("restart");
    d.client.create(&busybox_spec(&h)).await.expect("create");
    // Five lines, a pause (the daemon dies in it), then lines written
    // while no daemon runs and after the new one started.
    let mut spec = sh(
        "i=0; while [ $i -lt 40 ]; do echo line$i; i=$((i+1)); [ $i = 5 ] && sleep 1; sleep 0.03; done; exit 7",
    );
    spec.id = "writer".into();
    let mut p = d
        .client
        .run(&h, &spec, OutputStreams::BOTH)
        .await
        .expect("run");
    let mut out = p.take_stdout().expect("stdout");
    let mut before = Vec::new();
    let mut byte = [0u8; 1];
    while !before.ends_with(b"line4\n") {
        let n = out.read(&mut byte).await.expect("read");
        assert_eq!(
            n,
            1,
            "stdout ended early: {}",
            String::from_utf8_lossy(&before)
        );
        before.push(byte[0]);
    }
    d.crash_and_restart();
    drop(out);
    drop(p);
    let info = d.client.info(&h).await.expect("restored");
    assert_eq!(info.state, "active");
    assert_eq!(info.process_ids, vec!["writer".to_string()]);
    let mut p = d
        .client
        .attach(&h, "writer", OutputStreams::BOTH)
        .await
        .expect("attach after restart");
    let mut out = p.take_stdout().expect("stdout");
    let mut after = String::new();
    let (r, status) = tokio::join!(out.read_to_string(&mut after), p.wait());
    r.expect("read");
    assert_eq!(status.expect("status"), 7);
    let all = String::from_utf8_lossy(&before).into_owned() + &after;
    let expected: String = (0..40).map(|i| format!("line{i}\n")).collect();
    assert_eq!(
        all, expected,
        "output through the restart is complete and in order"
    );
    // Exit codes are not lost: attach again after the keeper is gone.
    let p = d
        .client
        .attach(&h, "writer", OutputStreams::NONE)
        .await
        .expect("attach again");
    assert_eq!(p.wait().await.expect("status"), 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn oom_kill_is_an_event() {
    let d = Daemon::start();
    let h = unique("oom");
    let mut spec = busybox_spec(&h);
    spec.limits.memory.limit_in_bytes = 32 << 20;
    d.client.create(&spec).await.expect("create");
    let (_, _, status) = run(
        &d.client,
        &h,
        sh("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"),
    )
    .await;
    assert_ne!(status, 0);
    let info = d.client.info(&h).await.expect("info");
    assert!(info.events.iter().any(|e| e == "oom"), "{info:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_limit_is_enforced() {
    let d = Daemon::start();
    let h = unique("disk");
    let mut spec = busybox_spec(&h);
    spec.limits.disk.byte_hard = 4 << 20;
    spec.limits.disk.scope = DiskLimitScope::Exclusive;
    d.client.create(&spec).await.expect("create");
    let (_, small_err, small) =
        run(&d.client, &h, sh("dd if=/dev/zero of=/small bs=1M count=1")).await;
    assert_eq!(small, 0, "below the limit: {small_err}");
    let (_, err, status) = run(&d.client, &h, sh("dd if=/dev/zero of=/big bs=1M count=16")).await;
    assert_ne!(status, 0, "writing past the limit must fail");
    assert!(
        err.contains("No space left") || err.contains("quota"),
        "{err}"
    );
    let limits = d.client.current_disk_limits(&h).await.expect("limits");
    assert_eq!(limits.byte_hard, 4 << 20);
    let m = d.client.metrics(&h).await.expect("metrics");
    assert!(m.disk.exclusive_bytes_used > 1 << 20, "{:?}", m.disk);
}

#[tokio::test(flavor = "multi_thread")]
async fn container_root_is_not_host_root() {
    let d = Daemon::start();
    let h = unique("userns");
    let shared = d.path().join("shared");
    std::fs::create_dir(&shared).expect("shared dir");
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let mut spec = busybox_spec(&h);
    spec.bind_mounts.push(BindMount {
        src_path: shared.display().to_string(),
        dst_path: "/shared".into(),
        mode: BindMountMode::Rw,
        ..BindMount::default()
    });
    d.client.create(&spec).await.expect("create");
    let (out, err, status) = run(&d.client, &h, sh("id -u; touch /shared/made-by-root")).await;
    assert_eq!((out.as_str(), status), ("0\n", 0), "{err}");
    let meta = std::fs::metadata(shared.join("made-by-root")).expect("file");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        4294967294,
        "container root must be maximus on the host"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_in_and_out() {
    let d = Daemon::start();
    let h = unique("stream");
    d.client.create(&busybox_spec(&h)).await.expect("create");
    let mut b = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(5);
    header.set_mode(0o644);
    header.set_cksum();
    b.append_data(&mut header, "dir/hello.txt", &b"hello"[..])
        .expect("tar");
    let tar = b.into_inner().expect("tar");
    let body = futures_util::stream::once(async move { Ok(bytes::Bytes::from(tar)) });
    d.client
        .stream_in(
            &h,
            &StreamInSpec {
                path: "/tmp/in".into(),
                user: String::new(),
            },
            Box::pin(body),
        )
        .await
        .expect("stream in");
    let (out, err, _) = run(
        &d.client,
        &h,
        sh("ls -laR /tmp/in; cat /tmp/in/dir/hello.txt"),
    )
    .await;
    assert!(out.ends_with("hello"), "{out} {err}");

    let mut stream = d
        .client
        .stream_out(
            &h,
            &StreamOutSpec {
                path: "/tmp/in/dir".into(),
                user: String::new(),
            },
        )
        .await
        .expect("stream out");
    let mut bytes = Vec::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        bytes.extend_from_slice(&chunk.expect("chunk"));
    }
    let mut a = tar::Archive::new(&bytes[..]);
    let names: Vec<PathBuf> = a
        .entries()
        .expect("entries")
        .map(|e| e.expect("entry").path().expect("path").into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("hello.txt")), "{names:?}");

    // An escaping archive is refused and writes nothing outside.
    let mut evil = tar::Builder::new(Vec::new());
    let mut hd = tar::Header::new_gnu();
    hd.set_size(1);
    hd.set_mode(0o644);
    let name = format!("../../../../../../../..{}/escaped", d.path().display());
    hd.as_gnu_mut().expect("gnu").name[..name.len()].copy_from_slice(name.as_bytes());
    hd.set_cksum();
    evil.append(&hd, &b"x"[..]).expect("tar");
    let evil = evil.into_inner().expect("tar");
    let body = futures_util::stream::once(async move { Ok(bytes::Bytes::from(evil)) });
    let e = d
        .client
        .stream_in(
            &h,
            &StreamInSpec {
                path: "/tmp".into(),
                user: String::new(),
            },
            Box::pin(body),
        )
        .await
        .expect_err("traversal refused");
    assert_eq!(e.kind(), Some(ErrorKind::BadRequest), "{e}");
    assert!(!d.path().join("escaped").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_destroys_of_one_handle() {
    let d = Daemon::start();
    let h = unique("race");
    d.client.create(&busybox_spec(&h)).await.expect("create");
    let (a, b) = tokio::join!(d.client.destroy(&h), d.client.destroy(&h));
    let oks = [a.is_ok(), b.is_ok()].iter().filter(|x| **x).count();
    assert_eq!(oks, 1, "exactly one destroy wins: {a:?} {b:?}");
    for r in [a, b] {
        if let Err(e) = r {
            assert!(
                e.kind() == Some(ErrorKind::ContainerNotFound)
                    || e.to_string().contains("being destroyed"),
                "{e}"
            );
        }
    }
    assert!(d
        .client
        .list(&Properties::new())
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_kills_processes_and_keeps_the_container() {
    let d = Daemon::start();
    let h = unique("stop");
    d.client.create(&busybox_spec(&h)).await.expect("create");
    let p = d
        .client
        .run(
            &h,
            &sh("trap 'exit 42' TERM; while true; do sleep 0.1; done"),
            OutputStreams::NONE,
        )
        .await
        .expect("run");
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.client.stop(&h, false).await.expect("stop");
    assert_eq!(p.wait().await.expect("status"), 42);
    assert_eq!(d.client.info(&h).await.expect("info").state, "stopped");
}

#[tokio::test(flavor = "multi_thread")]
async fn many_short_and_concurrent_processes() {
    let d = Daemon::start();
    let h = unique("many");
    d.client.create(&busybox_spec(&h)).await.expect("create");
    for i in 0..15 {
        let (out, err, status) = run(&d.client, &h, sh(&format!("printf {i}"))).await;
        assert_eq!(
            (out.as_str(), status),
            (i.to_string().as_str(), 0),
            "run {i}: {err}"
        );
    }
    let runs = (0..10).map(|i| {
        let c = d.client.clone();
        let h = h.clone();
        async move { run(&c, &h, sh(&format!("sleep 0.2; echo {i}"))).await }
    });
    let results = futures_util::future::join_all(runs).await;
    for (i, (out, _, status)) in results.into_iter().enumerate() {
        assert_eq!((out, status), (format!("{i}\n"), 0));
    }
}
