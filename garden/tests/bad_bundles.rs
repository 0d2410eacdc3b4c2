//! Bad bundles give clear errors and leave no mounts, cgroups or processes.

mod common;

use common::{stderr, TestBundle};
use serde_json::json;

fn fails_cleanly(b: &TestBundle, expect: &str) {
    let out = b.create();
    assert!(!out.status.success(), "create succeeded");
    let err = stderr(&out);
    assert!(
        err.contains(expect),
        "error should mention {expect:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    b.assert_nothing_left();
}

#[test]
fn missing_rootfs() {
    let b = TestBundle::new("norootfs").edit(|c| {
        c["root"]["path"] = json!("does-not-exist");
        c["annotations"] = json!({});
    });
    fails_cleanly(&b, "does-not-exist");
}

#[test]
fn invalid_json() {
    let b = TestBundle::new("badjson");
    b.write();
    std::fs::write(
        b.path().join("config.json"),
        b"{\"ociVersion\": \"1.0.2\", \"process\": ",
    )
    .expect("write");
    let out = b.runtime(&[
        "create",
        "--bundle",
        b.path().to_str().expect("utf8"),
        &b.id,
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("config.json"), "{}", stderr(&out));
    b.assert_nothing_left();
}

#[test]
fn unknown_namespace_type() {
    let b = TestBundle::new("badns").edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .expect("ns")
            .push(json!({"type": "bogus"}));
    });
    fails_cleanly(&b, "bogus");
}

#[test]
fn mount_onto_a_symlink_out_of_the_rootfs() {
    let b = TestBundle::new("symlink").with_copied_rootfs();
    std::os::unix::fs::symlink(
        "../../../../../../../../tmp",
        b.path().join("rootfs/escape"),
    )
    .expect("symlink");
    let b = b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(json!({"destination": "/escape", "type": "tmpfs", "source": "tmpfs"}));
    });
    fails_cleanly(&b, "/escape");
}

#[test]
fn a_failing_mount_names_what_failed() {
    let b = TestBundle::new("badmount").edit(|c| {
        c["mounts"].as_array_mut().expect("mounts").push(json!({"destination": "/data", "type": "bind", "source": "/no/such/source", "options": ["rbind"]}));
    });
    fails_cleanly(&b, "/no/such/source");
}

#[test]
fn missing_program_fails_at_create() {
    let b = TestBundle::new("noprog").args(&["/bin/no-such-program"]);
    let out = b.create();
    // The absolute path is checked at exec time: create succeeds, start
    // reports the failure through the exit record.
    if out.status.success() {
        assert!(b.runtime(&["start", &b.id]).status.success());
        let s = b.wait_stopped();
        assert_eq!(s["exit"]["exit_code"], 127, "{s}");
        assert!(
            s["exit"]["error"]
                .as_str()
                .unwrap_or("")
                .contains("no-such-program"),
            "{s}"
        );
    }
    let b2 = TestBundle::new("noprog2").args(&["no-such-program"]);
    fails_cleanly(&b2, "executable file not found");
}

#[test]
fn duplicate_id_is_refused() {
    let b = TestBundle::new("dup").args(&["sleep", "10"]);
    assert!(b.create().status.success());
    let again = b.create();
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn sysctl_outside_the_container_namespaces_is_refused() {
    let b = TestBundle::new("sysctl").edit(|c| c["linux"]["sysctl"] = json!({"kernel.panic": "1"}));
    fails_cleanly(&b, "kernel.panic");
}

#[test]
fn concurrent_creates_of_one_id_let_exactly_one_win() {
    let b = TestBundle::new("race").args(&["sleep", "10"]);
    b.write();
    let outcomes: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| b.create_written(&[]).status.success()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("create thread"))
            .collect()
    });
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "{outcomes:?}");
    assert_eq!(b.state()["status"], "created");
    assert!(b.runtime(&["delete", "--force", &b.id]).status.success());
    b.assert_nothing_left();
}
