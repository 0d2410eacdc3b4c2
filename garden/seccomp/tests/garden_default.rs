//! Garden's default profile installed for real, in forked children (run as root).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::process::{Child, Command};

use common::*;
use garden_seccomp::{Profile, SeccompError};
use libc::{ENOSYS, EPERM};

/// A process on the host for ptrace to aim at (never the harness itself).
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(Command::new("sleep").arg("60").spawn().unwrap())
    }
    fn pid(&self) -> u64 {
        u64::from(self.0.id())
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proc_status_field(field: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .map(|value| value.trim_start_matches(':').trim().to_owned())
}

const NO_ARGS: [u64; 6] = [0; 6];

fn call(nr: libc::c_long, a: &[u64]) -> Ret {
    let mut args = NO_ARGS;
    args[..a.len()].copy_from_slice(a);
    probe(nr, args)
}

#[test]
fn refuses_what_an_unprivileged_container_must_not_do() {
    let profile = Profile::garden_default().unwrap();
    let sleeper = Sleeper::start();
    let target = std::env::temp_dir().join(format!("garden-seccomp-mnt-{}", std::process::id()));
    std::fs::create_dir_all(&target).unwrap();
    let target_c = std::ffi::CString::new(target.to_str().unwrap()).unwrap();
    let (none, tmpfs) = (c"none".as_ptr() as u64, c"tmpfs".as_ptr() as u64);
    let target_ptr = target_c.as_ptr() as u64;
    let sleeper_pid = sleeper.pid();

    let outcome = in_child(|| {
        // If the filter failed, a stray mount must not reach the host.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|_| Failure {
            what: "private mount namespace for the test",
            ret: -1,
            errno: 0,
        })?;
        let private = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE;
        nix::mount::mount(None::<&str>, "/", None::<&str>, private, None::<&str>).map_err(
            |_| Failure {
                what: "make / private",
                ret: -1,
                errno: 0,
            },
        )?;
        profile.install().map_err(|_| Failure {
            what: "install",
            ret: -1,
            errno: 0,
        })?;

        let key_spec_session = (-3i64) as u64;
        expect_errno(
            "keyctl",
            call(libc::SYS_keyctl, &[0, key_spec_session]),
            EPERM,
        )?;
        expect_errno("add_key", call(libc::SYS_add_key, &[]), EPERM)?;
        expect_errno("request_key", call(libc::SYS_request_key, &[]), EPERM)?;
        let newuser = libc::CLONE_NEWUSER as u64;
        expect_errno(
            "unshare(NEWUSER)",
            call(libc::SYS_unshare, &[newuser]),
            EPERM,
        )?;
        let newns = libc::CLONE_NEWNS as u64;
        expect_errno("unshare(NEWNS)", call(libc::SYS_unshare, &[newns]), EPERM)?;
        let mount = call(libc::SYS_mount, &[none, target_ptr, tmpfs, 0, 0]);
        expect_errno("mount tmpfs", mount, EPERM)?;
        expect_errno("umount2", call(libc::SYS_umount2, &[target_ptr, 0]), EPERM)?;
        expect_errno("pivot_root", call(libc::SYS_pivot_root, &[]), EPERM)?;
        let attach = libc::PTRACE_ATTACH as u64;
        let ptrace = call(libc::SYS_ptrace, &[attach, sleeper_pid]);
        expect_errno("ptrace(PTRACE_ATTACH, host pid)", ptrace, EPERM)?;
        let vm_read = call(libc::SYS_process_vm_readv, &[sleeper_pid]);
        expect_errno("process_vm_readv", vm_read, EPERM)?;
        expect_errno("setns", call(libc::SYS_setns, &[u64::MAX, 0]), EPERM)?;
        expect_errno("bpf", call(libc::SYS_bpf, &[]), EPERM)?;
        let any = u64::MAX; // -1: any cpu / no group
        let perf = call(libc::SYS_perf_event_open, &[0, 0, any, any, 0]);
        expect_errno("perf_event_open", perf, EPERM)?;
        expect_errno("init_module", call(libc::SYS_init_module, &[]), EPERM)?;
        expect_errno("finit_module", call(libc::SYS_finit_module, &[any]), EPERM)?;
        expect_errno("delete_module", call(libc::SYS_delete_module, &[]), EPERM)?;
        expect_errno("kexec_load", call(libc::SYS_kexec_load, &[]), EPERM)?;
        expect_errno(
            "io_uring_setup",
            call(libc::SYS_io_uring_setup, &[1]),
            EPERM,
        )?;
        expect_errno("syslog", call(libc::SYS_syslog, &[10]), EPERM)?;
        expect_errno("userfaultfd", call(libc::SYS_userfaultfd, &[]), EPERM)?;
        expect_errno("unknown syscall 999", call(999, &[]), EPERM)?;

        expect_errno("clone3", call(libc::SYS_clone3, &[0, 0]), ENOSYS)?;
        let sigchld = libc::SIGCHLD as u64;
        for (what, flag) in [
            ("clone(NEWNS)", libc::CLONE_NEWNS),
            ("clone(NEWUSER)", libc::CLONE_NEWUSER),
            ("clone(NEWPID)", libc::CLONE_NEWPID),
            ("clone(NEWNET)", libc::CLONE_NEWNET),
            ("clone(NEWCGROUP)", libc::CLONE_NEWCGROUP),
            ("clone(NEWUTS)", libc::CLONE_NEWUTS),
            ("clone(NEWIPC)", libc::CLONE_NEWIPC),
        ] {
            expect_errno(what, raw_clone(flag as u64 | sigchld, 0), EPERM)?;
        }
        let no_aslr = 0x0040000; // ADDR_NO_RANDOMIZE, what `setarch -R` asks for
        expect_errno(
            "personality(ADDR_NO_RANDOMIZE)",
            call(libc::SYS_personality, &[no_aslr]),
            EPERM,
        )?;
        let vsock = libc::AF_VSOCK as u64;
        let socket = call(libc::SYS_socket, &[vsock, libc::SOCK_STREAM as u64]);
        expect_errno("socket(AF_VSOCK)", socket, EPERM)?;
        Ok(())
    });
    let _ = std::fs::remove_dir(&target);
    assert_eq!(outcome, Outcome::Passed);
}

#[test]
fn ordinary_programs_keep_working() {
    let profile = Profile::garden_default().unwrap();
    let dev_null = c"/dev/null".as_ptr() as u64;
    let message = b"hello\n";

    assert_passes(|| {
        profile.install().map_err(|_| Failure {
            what: "install",
            ret: -1,
            errno: 0,
        })?;
        expect_ok("getpid", call(libc::SYS_getpid, &[]))?;
        expect_ok("gettid", call(libc::SYS_gettid, &[]))?;
        let at_fdcwd = libc::AT_FDCWD as u64;
        let flags = (libc::O_WRONLY | libc::O_CLOEXEC) as u64;
        let fd = call(libc::SYS_openat, &[at_fdcwd, dev_null, flags]);
        expect_ok("openat /dev/null", fd)?;
        let write = call(
            libc::SYS_write,
            &[fd.ret as u64, message.as_ptr() as u64, message.len() as u64],
        );
        expect_ok("write", write)?;
        expect_ok("close", call(libc::SYS_close, &[fd.ret as u64]))?;

        for persona in [0xFFFF_FFFF, 0x8, 0x0] {
            expect_ok("personality", call(libc::SYS_personality, &[persona]))?;
        }
        for (what, family) in [
            ("socket(AF_INET)", libc::AF_INET),
            ("socket(AF_UNIX)", libc::AF_UNIX),
        ] {
            let sock = call(libc::SYS_socket, &[family as u64, libc::SOCK_STREAM as u64]);
            expect_ok(what, sock)?;
            expect_ok("close socket", call(libc::SYS_close, &[sock.ret as u64]))?;
        }

        let forked = libc_fork(7);
        expect_ok("fork", forked)?;
        check("forked child exits 7", wait_code(forked.ret) == 7)?;
        let cloned = raw_clone(libc::SIGCHLD as u64, 9);
        expect_ok("clone(SIGCHLD)", cloned)?;
        check("cloned child exits 9", wait_code(cloned.ret) == 9)?;

        // glibc's pthread_create tries clone3 first and falls back to clone on ENOSYS.
        let thread = std::thread::spawn(|| 42).join();
        check(
            "thread via clone3 → clone fallback",
            matches!(thread, Ok(42)),
        )?;

        // A real program: exec, pipes, fork/wait inside the shell.
        let status = Command::new("/bin/sh")
            .args(["-c", "echo hi | cat > /dev/null && exit 3"])
            .status();
        check(
            "sh -c ... exits 3",
            matches!(status.map(|s| s.code()), Ok(Some(3))),
        )?;

        check(
            "Seccomp: 2",
            proc_status_field("Seccomp").as_deref() == Some("2"),
        )?;
        Ok(())
    });
}

#[test]
fn installs_without_no_new_privs_while_holding_cap_sys_admin() {
    let profile = Profile::garden_default().unwrap();
    assert_passes(|| {
        let nnp = call(libc::SYS_prctl, &[libc::PR_GET_NO_NEW_PRIVS as u64]);
        check("no_new_privs unset before", nnp.ret == 0)?;
        check("install as root", profile.install().is_ok())?;
        check(
            "NoNewPrivs: 0",
            proc_status_field("NoNewPrivs").as_deref() == Some("0"),
        )?;
        check(
            "Seccomp: 2",
            proc_status_field("Seccomp").as_deref() == Some("2"),
        )?;
        Ok(())
    });
}

#[test]
fn install_without_no_new_privs_or_cap_sys_admin_fails_with_eacces() {
    let profile = Profile::garden_default().unwrap();
    assert_passes(|| {
        // Switching every uid away from 0 clears all capabilities.
        let nobody = nix::unistd::Uid::from_raw(65534);
        check("setuid(nobody)", nix::unistd::setuid(nobody).is_ok())?;
        let result = profile.install();
        check(
            "install fails with EACCES",
            matches!(&result, Err(SeccompError::Install { source, .. })
                if source.raw_os_error() == Some(libc::EACCES)),
        )?;
        check(
            "install did not set no_new_privs",
            proc_status_field("NoNewPrivs").as_deref() == Some("0"),
        )?;
        check(
            "no filter installed",
            proc_status_field("Seccomp").as_deref() == Some("0"),
        )?;
        Ok(())
    });
}

#[test]
fn default_profile_shape() {
    let profile = Profile::garden_default().unwrap();
    assert!(profile.skipped_syscalls().is_empty(), "{profile:?}");
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        profile.filters(),
        ["x32 guard", "ERRNO(38)", "default ERRNO(1)"],
        "{profile:?}"
    );
    let error = format!(
        "{}",
        SeccompError::Install {
            instructions: 10,
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        }
    );
    assert!(error.contains("CAP_SYS_ADMIN"), "{error}");
}
