//! The kernel's rules for stacked filters, which the chained program reproduces
//! (see src/compile.rs): every filter runs, the highest-precedence action wins, and among equal
//! precedence the most recently installed filter's value wins. Installing one profile after
//! another stacks them, so these tests need only the public API.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use garden_seccomp::Profile;
use libc::{EACCES, ENOSYS};
use nix::sys::signal::Signal;

fn getpid_rule(action: &str) -> Profile {
    Profile::from_oci(&oci(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{{"names": ["getpid"], {action}}}]}}"#
    )))
    .unwrap()
}

fn install_all(profiles: &[&Profile]) -> Check {
    for profile in profiles {
        profile.install().map_err(|_| Failure {
            what: "install",
            ret: -1,
            errno: 0,
        })?;
    }
    Ok(())
}

const EACCES_RULE: &str = r#""action": "SCMP_ACT_ERRNO", "errnoRet": 13"#;
const ENOSYS_RULE: &str = r#""action": "SCMP_ACT_ERRNO", "errnoRet": 38"#;

#[test]
fn equal_precedence_newest_filter_wins() {
    let (eacces, enosys) = (getpid_rule(EACCES_RULE), getpid_rule(ENOSYS_RULE));
    assert_passes(|| {
        install_all(&[&eacces, &enosys])?;
        expect_errno(
            "EACCES then ENOSYS",
            ignored_args(libc::SYS_getpid, 0, 0),
            ENOSYS,
        )
    });
    assert_passes(|| {
        install_all(&[&enosys, &eacces])?;
        expect_errno(
            "ENOSYS then EACCES",
            ignored_args(libc::SYS_getpid, 0, 0),
            EACCES,
        )
    });
}

#[test]
fn higher_precedence_wins_whatever_the_order() {
    let errno = getpid_rule(EACCES_RULE);
    let trace = getpid_rule(r#""action": "SCMP_ACT_TRACE""#); // ENOSYS without a tracer
    let log = getpid_rule(r#""action": "SCMP_ACT_LOG""#);
    assert_passes(|| {
        install_all(&[&errno, &trace, &log])?;
        expect_errno(
            "ERRNO beats TRACE and LOG",
            ignored_args(libc::SYS_getpid, 0, 0),
            EACCES,
        )
    });
    assert_passes(|| {
        install_all(&[&log, &trace, &errno])?;
        expect_errno(
            "same, reversed",
            ignored_args(libc::SYS_getpid, 0, 0),
            EACCES,
        )
    });
    let kill = getpid_rule(r#""action": "SCMP_ACT_KILL_PROCESS""#);
    let outcome = in_child(|| {
        install_all(&[&kill, &errno])?;
        let _ = ignored_args(libc::SYS_getpid, 0, 0);
        check("still alive", false)
    });
    assert_eq!(outcome, Outcome::Signaled(Signal::SIGSYS));
}

/// One profile whose rules overlap with different errnos: the chained program must answer
/// what the two rules would answer as separately stacked filters (the later action wins).
#[test]
fn chained_profile_matches_stacked_filters() {
    let chained = Profile::from_oci(&oci(r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
              {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
               "args": [{"index": 0, "value": 32, "op": "SCMP_CMP_GE"}]},
              {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
               "args": [{"index": 0, "value": 240, "valueTwo": 48, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]}"#))
    .unwrap();
    let first = Profile::from_oci(&oci(r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
               "args": [{"index": 0, "value": 32, "op": "SCMP_CMP_GE"}]}]}"#))
    .unwrap();
    let second = Profile::from_oci(&oci(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
               "args": [{"index": 0, "value": 240, "valueTwo": 48, "op": "SCMP_CMP_MASKED_EQ"}]}]}"#,
    ))
    .unwrap();
    let probes = [0x10u64, 0x35, 0x40, 0x135];
    let answers = |profiles: &[&Profile]| -> Vec<Outcome> {
        probes
            .iter()
            .map(|arg| {
                let arg = *arg;
                in_child(|| {
                    install_all(profiles)?;
                    let got = ignored_args(libc::SYS_getpid, arg, 0);
                    // Report the errno as the exit code: 0 = allowed.
                    exit_now(if got.ret == -1 { got.errno } else { 0 })
                })
            })
            .collect()
    };
    let from_chain = answers(&[&chained]);
    assert_eq!(from_chain, answers(&[&first, &second]));
    assert_eq!(
        from_chain,
        [
            Outcome::Passed,         // 0x10: no rule
            Outcome::Exited(EACCES), // 0x35: both; the later rule wins
            Outcome::Exited(ENOSYS), // 0x40: GE only
            Outcome::Exited(EACCES), // 0x135: both
        ]
    );
}
