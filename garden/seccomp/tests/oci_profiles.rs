//! OCI profiles installed for real, in forked children (run as root).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use garden_seccomp::Profile;
use libc::{EACCES, ENOSYS, EPERM};
use nix::sys::signal::Signal;

fn install(profile: &Profile) -> Check {
    profile.install().map_err(|_| Failure {
        what: "install",
        ret: -1,
        errno: 0,
    })
}

#[test]
fn errno_default_with_allow_list_and_an_enosys_rule() {
    // The child needs write (to report) and exit_group (to exit) after installing.
    let profile = Profile::from_oci(&oci(r#"{"defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
            "syscalls": [
              {"names": ["write", "exit_group", "exit", "getpid", "rt_sigreturn"],
               "action": "SCMP_ACT_ALLOW"},
              {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
              {"names": ["getgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
            ]}"#))
    .unwrap();
    assert_passes(|| {
        install(&profile)?;
        expect_ok("getpid allowed", ignored_args(libc::SYS_getpid, 0, 0))?;
        expect_errno(
            "getppid → ENOSYS",
            ignored_args(libc::SYS_getppid, 0, 0),
            ENOSYS,
        )?;
        expect_errno(
            "getgid → EACCES",
            ignored_args(libc::SYS_getgid, 0, 0),
            EACCES,
        )?;
        expect_errno(
            "getuid → default EPERM",
            ignored_args(libc::SYS_getuid, 0, 0),
            EPERM,
        )?;
        // seccomp itself is not on the list: a stacked install could not have finished.
        expect_errno(
            "seccomp not allowed",
            probe(libc::SYS_seccomp, [2, 0, 0, 0, 0, 0]),
            EPERM,
        )?;
        Ok(())
    });
}

#[test]
fn default_errno_ret_is_used() {
    let profile = Profile::from_oci(&oci(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "syscalls": [{"names": ["write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}"#,
    ))
    .unwrap();
    assert_passes(|| {
        install(&profile)?;
        expect_errno(
            "getuid → ENOSYS",
            ignored_args(libc::SYS_getuid, 0, 0),
            ENOSYS,
        )
    });
}

/// Argument conditions, probed with syscalls that ignore their arguments (the filter still
/// sees them).
#[test]
fn argument_conditions_compare_like_libseccomp() {
    let profile = Profile::from_oci(&oci(r#"{"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
              {"names": ["write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
              {"names": ["getpid"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": 240, "valueTwo": 48, "op": "SCMP_CMP_MASKED_EQ"}]},
              {"names": ["getppid"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 1, "value": 4294967296, "op": "SCMP_CMP_GT"}]},
              {"names": ["gettid"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                        {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
              {"names": ["getuid"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                        {"index": 1, "value": 10, "op": "SCMP_CMP_LT"}]},
              {"names": ["getgid"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_NE"}]},
              {"names": ["getegid"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_LE"}]},
              {"names": ["geteuid"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_GE"}]}
            ]}"#))
    .unwrap();
    let (pid, ppid, tid) = (libc::SYS_getpid, libc::SYS_getppid, libc::SYS_gettid);
    let (uid, gid, egid, euid) = (
        libc::SYS_getuid,
        libc::SYS_getgid,
        libc::SYS_getegid,
        libc::SYS_geteuid,
    );
    assert_passes(|| {
        install(&profile)?;
        expect_ok("MASKED_EQ 0x3F & 0xF0 == 0x30", ignored_args(pid, 0x3F, 0))?;
        expect_ok(
            "MASKED_EQ ignores unmasked high bits",
            ignored_args(pid, 0x1_0000_0030, 0),
        )?;
        expect_errno("MASKED_EQ 0x40", ignored_args(pid, 0x40, 0), EPERM)?;
        expect_ok("GT 2^32 (64-bit)", ignored_args(ppid, 0, (1 << 32) + 1))?;
        expect_errno(
            "GT: 2^32 is not > 2^32",
            ignored_args(ppid, 0, 1 << 32),
            EPERM,
        )?;
        expect_errno(
            "GT: low half alone is not enough",
            ignored_args(ppid, 0, 0xFFFF_FFFF),
            EPERM,
        )?;
        expect_ok("same index ORed: 1", ignored_args(tid, 1, 0))?;
        expect_ok("same index ORed: 2", ignored_args(tid, 2, 0))?;
        expect_errno("same index ORed: 3", ignored_args(tid, 3, 0), EPERM)?;
        expect_ok("distinct indexes ANDed", ignored_args(uid, 1, 9))?;
        expect_errno("AND: second fails", ignored_args(uid, 1, 10), EPERM)?;
        expect_errno("AND: first fails", ignored_args(uid, 2, 9), EPERM)?;
        expect_ok("NE", ignored_args(gid, 6, 0))?;
        expect_ok(
            "NE differs in the high half",
            ignored_args(gid, (1 << 32) | 5, 0),
        )?;
        expect_errno("NE equal", ignored_args(gid, 5, 0), EPERM)?;
        expect_ok("LE equal", ignored_args(egid, 5, 0))?;
        expect_errno("LE above", ignored_args(egid, 6, 0), EPERM)?;
        expect_ok("GE equal", ignored_args(euid, 5, 0))?;
        expect_errno("GE below", ignored_args(euid, 4, 0), EPERM)?;
        Ok(())
    });
}

fn only_getppid(action: &str) -> Profile {
    Profile::from_oci(&oci(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{{"names": ["getppid"], "action": "{action}"}}]}}"#
    )))
    .unwrap()
}

#[test]
fn kill_and_trap_actions_end_the_process_with_sigsys() {
    for action in [
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL",
        "SCMP_ACT_TRAP",
    ] {
        let profile = only_getppid(action);
        let outcome = in_child(|| {
            install(&profile)?;
            let _ = ignored_args(libc::SYS_getppid, 0, 0);
            check("still alive after getppid", false)
        });
        assert_eq!(outcome, Outcome::Signaled(Signal::SIGSYS), "{action}");
    }
}

#[test]
fn log_allows_and_trace_without_tracer_answers_enosys() {
    let log = only_getppid("SCMP_ACT_LOG");
    assert_passes(|| {
        install(&log)?;
        expect_ok(
            "LOG lets getppid run",
            ignored_args(libc::SYS_getppid, 0, 0),
        )
    });
    let trace = only_getppid("SCMP_ACT_TRACE");
    assert_passes(|| {
        install(&trace)?;
        expect_errno(
            "TRACE, no tracer",
            ignored_args(libc::SYS_getppid, 0, 0),
            ENOSYS,
        )
    });
}

#[test]
fn unknown_names_are_skipped_and_the_rest_applies() {
    let profile = Profile::from_oci(&oci(r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["chown32", "getppid", "not_a_syscall"],
                          "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}"#))
    .unwrap();
    assert_eq!(profile.skipped_syscalls(), ["chown32", "not_a_syscall"]);
    assert_passes(|| {
        install(&profile)?;
        expect_errno("getppid", ignored_args(libc::SYS_getppid, 0, 0), ENOSYS)
    });
}

#[test]
fn notify_is_refused() {
    let err = Profile::from_oci(&oci(r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}]}"#))
    .unwrap_err();
    assert!(err.to_string().contains("SCMP_ACT_NOTIFY"), "{err}");
}
