//! Garden's default profile for unprivileged containers.
//!
//! Garden uses Docker's default profile: default action ERRNO(EPERM) and an allow-list of the
//! syscalls a normal program needs. Here it is written for 64-bit architectures only (the
//! 32-bit compat names such as `chown32` do not exist there) and with the rules Docker
//! applies when the container lacks CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_NICE, CAP_SYSLOG,
//! ..., as garden's unprivileged containers do. Argument rules:
//!
//! * `clone` only when its flags ask for no new namespace;
//! * `clone3` answers ENOSYS: its flags live in memory seccomp cannot read, and ENOSYS makes
//!   glibc (2.34+) fall back to `clone`;
//! * `personality` only to query or set the plain Linux personalities (Docker's values);
//! * `socket` for every family except AF_VSOCK (as Docker since 25.0).
//!
//! Deliberately not allowed, unlike Docker on kernels ≥ 4.8: `ptrace`, `process_vm_readv`,
//! `process_vm_writev`, `kcmp`, `pidfd_getfd`; and `syslog`, which Docker allows only with
//! CAP_SYSLOG.

use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

use crate::compile::{Rule, Rules};
use crate::syscalls;
use crate::SeccompError;

/// Allowed on every supported 64-bit architecture, without argument checks.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    "accept", "accept4", "adjtimex", "bind", "brk", "cachestat", "capget", "capset", "chdir",
    "chroot", "clock_adjtime", "clock_getres", "clock_gettime", "clock_nanosleep", "close",
    "close_range", "connect", "copy_file_range", "dup", "dup3", "epoll_create1", "epoll_ctl",
    "epoll_pwait", "epoll_pwait2", "eventfd2", "execve", "execveat", "exit", "exit_group",
    "faccessat", "faccessat2", "fadvise64", "fallocate", "fanotify_mark", "fchdir", "fchmod",
    "fchmodat", "fchmodat2", "fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr", "flistxattr",
    "flock", "fremovexattr", "fsetxattr", "fstat", "fstatfs", "fsync", "ftruncate", "futex",
    "futex_requeue", "futex_wait", "futex_waitv", "futex_wake", "get_robust_list", "getcpu",
    "getcwd", "getdents64", "getegid", "geteuid", "getgid", "getgroups", "getitimer", "getpeername",
    "getpgid", "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresuid",
    "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt", "gettid", "gettimeofday",
    "getuid", "getxattr", "inotify_add_watch", "inotify_init1", "inotify_rm_watch", "io_cancel",
    "io_destroy", "io_getevents", "io_pgetevents", "io_setup", "io_submit", "ioctl", "ioprio_get",
    "ioprio_set", "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
    "lgetxattr", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr", "lseek",
    "lsetxattr", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdirat",
    "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mprotect", "mq_getsetattr", "mq_notify",
    "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap", "msgctl", "msgget",
    "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "nanosleep", "newfstatat",
    "openat", "openat2", "pidfd_open", "pidfd_send_signal", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "ppoll", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
    "process_mrelease", "pselect6", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
    "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmsg", "remap_file_pages", "removexattr",
    "renameat", "renameat2", "restart_syscall", "rseq", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_tgsigqueueinfo", "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity",
    "sched_getattr", "sched_getparam", "sched_getscheduler", "sched_rr_get_interval",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "semctl", "semget", "semop", "semtimedop", "sendfile", "sendmmsg", "sendmsg",
    "sendto", "set_robust_list", "set_tid_address", "setfsgid", "setfsuid", "setgid", "setgroups",
    "setitimer", "setpgid", "setpriority", "setregid", "setresgid", "setresuid", "setreuid",
    "setrlimit", "setsid", "setsockopt", "setuid", "setxattr", "shmat", "shmctl", "shmdt", "shmget",
    "shutdown", "sigaltstack", "signalfd4", "socketpair", "splice", "statfs", "statx", "symlinkat",
    "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_settime", "timerfd_create", "timerfd_gettime",
    "timerfd_settime", "times", "tkill", "truncate", "umask", "uname", "unlinkat", "utimensat",
    "vmsplice", "wait4", "waitid", "write", "writev",
];

/// x86_64's older syscalls that aarch64 never had, plus its arch-specific ones.
#[cfg(target_arch = "x86_64")]
#[rustfmt::skip]
const ALLOWED_ARCH: &[&str] = &[
    "access", "alarm", "arch_prctl", "chmod", "chown", "creat", "dup2", "epoll_create",
    "epoll_ctl_old", "epoll_wait", "epoll_wait_old", "eventfd", "fork", "futimesat",
    "get_thread_area", "getdents", "getpgrp", "inotify_init", "lchown", "link", "lstat",
    "map_shadow_stack", "mkdir", "mknod", "modify_ldt", "open", "pause", "pipe", "poll", "readlink",
    "rename", "rmdir", "select", "set_thread_area", "signalfd", "stat", "symlink", "time", "unlink",
    "utime", "utimes", "vfork",
];

#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_ARCH: &[&str] = &[];

/// Never allowed (the tests check none of these slipped into the allow-lists).
#[cfg(test)]
#[rustfmt::skip]
pub(crate) const DENIED: &[&str] = &[
    "acct", "add_key", "bpf", "clock_settime", "delete_module", "finit_module", "fsconfig",
    "fsmount", "fsopen", "fspick", "get_mempolicy", "init_module", "io_uring_enter",
    "io_uring_register", "io_uring_setup", "ioperm", "iopl", "kcmp", "kexec_file_load",
    "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "mount_setattr", "move_mount",
    "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open",
    "pidfd_getfd", "pivot_root", "process_madvise", "process_vm_readv", "process_vm_writev",
    "ptrace", "quotactl", "quotactl_fd", "reboot", "request_key", "set_mempolicy", "setdomainname",
    "sethostname", "setns", "settimeofday", "swapoff", "swapon", "syslog", "umount2", "unshare",
    "uselib", "userfaultfd", "ustat", "vhangup",
];

/// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID
/// | CLONE_NEWNET: `clone` must set none of them.
pub(crate) const NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// `personality` values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32|UNAME26,
/// and 0xffffffff (query without change).
pub(crate) const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xFFFF_FFFF];

/// Garden's default profile as rules. Names the architecture lacks are returned separately.
pub(crate) fn rules() -> Result<(Rules, Vec<String>), SeccompError> {
    let mut rules = Vec::with_capacity(ALLOWED.len() + ALLOWED_ARCH.len() + 8);
    let mut skipped = Vec::new();
    let mut add =
        |name: &str, action: SeccompAction, condition: Option<SeccompRule>| match syscalls::lookup(
            name,
        ) {
            Some(nr) => rules.push(Rule {
                nr,
                action,
                condition,
            }),
            None => skipped.push(name.to_owned()),
        };

    for name in ALLOWED.iter().chain(ALLOWED_ARCH) {
        add(name, SeccompAction::Allow, None);
    }
    let no_new_namespace = condition("clone", 0, SeccompCmpOp::MaskedEq(NAMESPACE_FLAGS), 0)?;
    add("clone", SeccompAction::Allow, Some(no_new_namespace));
    add("clone3", SeccompAction::Errno(libc::ENOSYS as u32), None);
    for persona in PERSONALITIES {
        let rule = condition("personality", 0, SeccompCmpOp::Eq, *persona)?;
        add("personality", SeccompAction::Allow, Some(rule));
    }
    let not_vsock = condition("socket", 0, SeccompCmpOp::Ne, libc::AF_VSOCK as u64)?;
    add("socket", SeccompAction::Allow, Some(not_vsock));

    let rules = Rules {
        default_action: SeccompAction::Errno(libc::EPERM as u32),
        rules,
    };
    Ok((rules, skipped))
}

/// A one-condition rule on a 32-bit argument (flags, personality and address family are
/// `int`/`unsigned int` to the kernel, so the upper half is ignored as the kernel does).
fn condition(
    syscall: &str,
    index: u8,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompRule, SeccompError> {
    SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value)
        .and_then(|condition| SeccompRule::new(vec![condition]))
        .map_err(|source| SeccompError::Compile {
            filter: format!("default (rule for {syscall})"),
            source,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn lists_have_no_duplicates_and_no_denied_syscall() {
        let all: Vec<&str> = ALLOWED.iter().chain(ALLOWED_ARCH).copied().collect();
        let unique: BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "duplicate names");
        for denied in DENIED {
            assert!(!unique.contains(denied), "{denied} must not be allowed");
        }
        for conditional in ["clone", "clone3", "personality", "socket"] {
            assert!(
                !unique.contains(conditional),
                "{conditional} has its own rule"
            );
        }
    }

    #[test]
    fn every_name_exists_on_this_architecture() {
        let (_, skipped) = rules().unwrap();
        assert!(skipped.is_empty(), "unknown here: {skipped:?}");
    }

    #[test]
    fn denied_names_are_real_syscalls_here() {
        // A typo in DENIED would make the test above vacuous.
        for name in DENIED {
            if cfg!(target_arch = "x86_64") {
                assert!(syscalls::lookup(name).is_some(), "{name}");
            }
        }
    }
}
