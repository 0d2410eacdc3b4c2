//! Sidecar processes with their own image (Garden's "peas") through a real
//! gardend: their own root filesystem and mount namespace, the container's
//! other namespaces, their own limits, cleanup on exit, on destroy and
//! across a daemon crash.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use garden_api::client::OutputStreams;
use garden_api::types::{ProcessLimits, ProcessSpec};
use tokio::io::AsyncReadExt;

use common::daemon::{busybox_spec, run, sh, unique, Daemon};

/// The busybox rootfs again, with a marker file: the sidecar's own image.
fn sidecar_image(d: &Daemon) -> PathBuf {
    let dst = d.path().join("sidecar-image");
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(common::busybox_rootfs())
        .arg(&dst)
        .status()
        .expect("cp")
        .success();
    assert!(ok, "copying the rootfs");
    std::fs::write(dst.join("sidecar-marker"), "sidecar\n").expect("marker");
    dst
}

fn sidecar(image: &Path, script: &str) -> ProcessSpec {
    let mut p = sh(script);
    p.image.uri = image.display().to_string();
    p
}

const NAMESPACES: &str =
    "for n in net ipc uts pid user mnt; do echo $n $(readlink /proc/self/ns/$n); done; \
     if [ -e /sidecar-marker ]; then echo marker; fi";

/// Pea runtime containers and overlay mounts left by the daemon in `d`.
fn pea_leftovers(d: &Daemon) -> Vec<String> {
    let mut left = Vec::new();
    if let Ok(entries) = std::fs::read_dir(d.path().join("runc")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("pea-") {
                left.push(format!("runtime state {name}"));
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let depot = d.path().join("depot").display().to_string();
    for line in mounts.lines() {
        if line.contains(&depot) && line.contains("/processes/") {
            left.push(format!("mount {line}"));
        }
    }
    left
}

fn wait_clean(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = pea_leftovers(d);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "sidecar leftovers: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn namespaces(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecar_has_its_own_root_and_the_containers_namespaces() {
    let d = Daemon::start();
    let image = sidecar_image(&d);
    let handle = unique("pea-ns");
    d.client
        .create(&busybox_spec(&handle))
        .await
        .expect("create");

    let (inside, _, code) = run(&d.client, &handle, sh(NAMESPACES)).await;
    assert_eq!(code, 0);
    assert!(!inside.contains("marker"), "the container has no marker");
    let script = format!("{NAMESPACES}; id -u; exit 7");
    let (out, err, code) = run(&d.client, &handle, sidecar(&image, &script)).await;
    assert_eq!(code, 7, "exit status passes through: {err}");
    assert!(
        out.contains("marker"),
        "the sidecar sees its own image: {out}"
    );
    assert!(
        out.lines().any(|l| l == "0"),
        "runs as root by default: {out}"
    );
    let (c, s) = (namespaces(&inside), namespaces(&out));
    for kind in ["net", "ipc", "uts", "pid", "user"] {
        let get = |v: &Vec<(String, String)>| v.iter().find(|(k, _)| k == kind).cloned();
        assert_eq!(get(&c), get(&s), "{kind} namespace shared");
    }
    let mnt = |v: &Vec<(String, String)>| v.iter().find(|(k, _)| k == "mnt").cloned();
    assert_ne!(mnt(&c), mnt(&s), "own mount namespace");
    wait_clean(&d);

    // A missing image is refused clearly and leaves nothing.
    let bad = sidecar(Path::new("/nonexistent/image"), "true");
    let err = d
        .client
        .run(&handle, &bad, OutputStreams::BOTH)
        .await
        .err()
        .expect("a missing image fails");
    assert!(err.to_string().contains("nonexistent"), "{err}");
    wait_clean(&d);
    d.client.destroy(&handle).await.expect("destroy");
}

/// The pea's memory limit as the host sees it (v1 or v2).
fn pea_memory_limit(cgroup_parent: &str, id: &str) -> Option<u64> {
    let candidates = [
        format!("/sys/fs/cgroup/memory/{cgroup_parent}/{id}/memory.limit_in_bytes"),
        format!("/sys/fs/cgroup/{cgroup_parent}/{id}/memory.max"),
    ];
    candidates
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse().ok())
}

fn pea_id(d: &Daemon, handle: &str, process: &str) -> Option<String> {
    let path = d
        .path()
        .join("depot")
        .join(handle)
        .join("processes")
        .join(process)
        .join("pea.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["runtime_id"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecar_limits_and_removal_with_the_container() {
    let d = Daemon::start();
    let image = sidecar_image(&d);
    let handle = unique("pea-limits");
    d.client
        .create(&busybox_spec(&handle))
        .await
        .expect("create");
    let mut spec = sidecar(&image, "sleep 300");
    spec.id = "long".into();
    spec.override_container_limits = Some(ProcessLimits::default());
    if let Some(l) = spec.override_container_limits.as_mut() {
        l.memory.limit_in_bytes = 48 << 20;
    }
    let p = d
        .client
        .run(&handle, &spec, OutputStreams::NONE)
        .await
        .expect("run");
    let id = pea_id(&d, &handle, p.id()).expect("pea record");
    let parent = format!("garden-test-{}", std::process::id());
    assert_eq!(pea_memory_limit(&parent, &id), Some(48 << 20));
    let info = d.client.info(&handle).await.expect("info");
    assert!(info.process_ids.contains(&"long".to_string()), "{info:?}");

    d.client.destroy(&handle).await.expect("destroy");
    assert!(pea_leftovers(&d).is_empty(), "{:?}", pea_leftovers(&d));
    assert_eq!(
        pea_memory_limit(&parent, &id),
        None,
        "the pea's cgroup is gone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecar_survives_a_daemon_crash() {
    let mut d = Daemon::start();
    let image = sidecar_image(&d);
    let handle = unique("pea-crash");
    d.client
        .create(&busybox_spec(&handle))
        .await
        .expect("create");
    let mut spec = sidecar(&image, "sleep 2; cat /sidecar-marker; exit 4");
    spec.id = "survivor".into();
    let p = d
        .client
        .run(&handle, &spec, OutputStreams::NONE)
        .await
        .expect("run");
    drop(p);
    d.crash_and_restart();
    let mut p = d
        .client
        .attach(&handle, "survivor", OutputStreams::BOTH)
        .await
        .expect("attach after the restart");
    let mut out = p.take_stdout().expect("stdout");
    let mut text = String::new();
    let (r, status) = tokio::join!(out.read_to_string(&mut text), p.wait());
    r.expect("read");
    assert_eq!(status.expect("status"), 4);
    assert_eq!(text, "sidecar\n");
    wait_clean(&d);
    d.client.destroy(&handle).await.expect("destroy");
}
