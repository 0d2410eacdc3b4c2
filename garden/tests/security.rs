//! Capabilities, seccomp, masked paths, and the two runc CVE classes.

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use common::{stderr, stdout, TestBundle, RUNTIME};
use serde_json::json;

fn probe(b: TestBundle, script: &str) -> String {
    b.with_probe().sh(script).run_ok()
}

#[test]
fn without_cap_sys_admin_mount_is_refused() {
    let out = probe(
        TestBundle::new("caps"),
        "/probe mount; grep CapEff /proc/self/status",
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("EPERM"), "{out}");
    // CAP_KILL, CAP_NET_BIND_SERVICE and CAP_AUDIT_WRITE only.
    assert_eq!(
        lines.next().map(|l| l.split_whitespace().nth(1)),
        Some(Some("0000000020000420")),
        "{out}"
    );
}

#[test]
fn garden_default_seccomp_blocks_the_dangerous_calls() {
    let b = TestBundle::new("seccomp").edit(|c| {
        c["annotations"]["garden.seccomp"] = json!("default");
        // Give the capabilities back, so only seccomp stands in the way.
        let all = json!([
            "CAP_SYS_ADMIN",
            "CAP_SYS_PTRACE",
            "CAP_KILL",
            "CAP_SETUID",
            "CAP_SETGID"
        ]);
        c["process"]["capabilities"] = json!({"bounding": all, "effective": all, "permitted": all});
    });
    let host_pid = std::process::id();
    let out = probe(
        b,
        &format!(
            "/probe keyctl; /probe unshare-user; /probe mount; /probe ptrace {host_pid}; echo done"
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "EPERM", "keyctl: {out}");
    assert_eq!(lines[1], "EPERM", "unshare(CLONE_NEWUSER): {out}");
    assert_eq!(lines[2], "EPERM", "mount: {out}");
    assert_ne!(lines[3], "ok", "ptrace of a host pid: {out}");
    assert_eq!(lines[4], "done");
}

#[test]
fn an_oci_seccomp_profile_is_enforced() {
    let b = TestBundle::new("ociseccomp").edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    });
    let out = probe(b, "mkdir /tmp/x 2>&1; echo rc=$?");
    assert!(out.contains("rc=1"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
}

#[test]
fn masked_paths_are_unreadable() {
    let out = probe(TestBundle::new("masked"), "wc -c < /proc/timer_list; wc -c < /proc/keys; ls /sys/firmware | wc -l; echo x > /proc/sysrq-trigger 2>&1 || echo ro");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(&lines[..4], ["0", "0", "0", "ro"], "{out}");
}

#[test]
fn the_runtime_binary_cannot_be_reached_for_writing() {
    // CVE-2019-5736 class: init is not dumpable and runs a sealed memfd copy;
    // every process's exe is either the container's own or refused.
    let out = probe(
        TestBundle::new("exe"),
        "for p in /proc/[0-9]*; do /probe open-write $p/exe; done | sort | uniq -c",
    );
    assert!(
        !out.contains(" ok"),
        "a process's binary was writable: {out}"
    );
    // And the runtime's own processes inside never run the host's file:
    // init runs from a read-only overlay (or a sealed memfd copy).
    let b = TestBundle::new("exe2").args(&["sleep", "30"]);
    assert!(b.create().status.success(), "create");
    let pid = b.state()["pid"].as_i64().expect("pid");
    let exe_path = format!("/proc/{pid}/exe");
    // Init switches to the read-only copy right after create returns, and
    // before it starts anything of the container's.
    use std::os::unix::fs::MetadataExt;
    let host = std::fs::metadata(RUNTIME).expect("runtime binary");
    for _ in 0..2000 {
        let now = std::fs::metadata(&exe_path).expect("init's exe");
        if (now.dev(), now.ino()) != (host.dev(), host.ino()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(&exe_path)
        .expect_err("init's binary opened for writing");
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::EROFS | libc::EPERM | libc::ETXTBSY)
        ),
        "{err}"
    );
    let exe = std::fs::File::open(&exe_path).expect("open exe");
    let runtime_file = std::fs::metadata(RUNTIME).expect("runtime binary");
    let init_file = exe.metadata().expect("init's binary");
    assert_ne!(
        (init_file.dev(), init_file.ino()),
        (runtime_file.dev(), runtime_file.ino()),
        "init runs the host's runtime binary itself"
    );
    let sealed = nix::fcntl::fcntl(&exe, nix::fcntl::FcntlArg::F_GET_SEALS).ok();
    match sealed {
        Some(seals) => {
            let wanted =
                libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
            assert_eq!(seals & wanted, wanted, "seals {seals:#x}");
        }
        None => {
            // The overlay without upper layer: read-only, whatever the caller.
            let vfs = nix::sys::statvfs::fstatvfs(&exe).expect("statvfs");
            assert!(
                vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
                "init's binary is on a writable mount"
            );
            let fs = nix::sys::statfs::fstatfs(&exe).expect("statfs");
            assert_eq!(
                fs.filesystem_type(),
                nix::sys::statfs::OVERLAYFS_SUPER_MAGIC
            );
        }
    }
}

#[test]
fn no_host_descriptor_reaches_the_container() {
    // CVE-2024-21626 class: an inheritable host fd (a directory, the worst
    // kind) open in the caller must not be visible inside.
    let b = TestBundle::new("fds").with_probe().args(&["/probe", "fds"]);
    b.write();
    let dir = std::fs::File::open("/").expect("open /");
    let raw = dir.as_raw_fd();
    let mut cmd = Command::new(RUNTIME);
    cmd.arg("--root")
        .arg(b.state_root())
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(&b.id)
        .stdin(Stdio::null());
    // SAFETY-free variant: clear close-on-exec on our descriptor via fcntl.
    nix::fcntl::fcntl(
        &dir,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .expect("clear cloexec");
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let fds = stdout(&out);
    // 0-2 and the descriptor read_dir itself opened.
    assert_eq!(
        fds.split_whitespace().count(),
        4,
        "fds inside: {fds} (host fd was {raw})"
    );
    let _ = std::io::stderr().flush();
}
