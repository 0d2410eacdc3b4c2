//! OCI runtime-spec profiles (`config.json` `linux.seccomp`) to rules.
//!
//! Semantics follow runc with libseccomp:
//! * `SCMP_ACT_KILL` is KILL_THREAD; ERRNO and TRACE use `errnoRet`, or EPERM without it.
//! * a rule whose action equals the default action is a no-op and dropped.
//! * argument conditions compare all 64 bits; `SCMP_CMP_MASKED_EQ` takes the mask in `value`
//!   and the expected value in `valueTwo`.
//! * conditions on distinct arguments are ANDed; if a rule has several conditions on the same
//!   argument, every condition becomes a rule of its own (ORed), as runc does.
//! * syscall names unknown on this architecture are skipped with one warning per profile;
//!   `architectures` other than the native one are ignored (only the native ABI is filtered,
//!   others are killed).
//! * `SCMP_ACT_NOTIFY` is refused: garden runs no seccomp agent.

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

use crate::compile::{Rule, Rules};
use crate::syscalls;
use crate::SeccompError;

/// What an OCI profile turns into before compilation.
pub(crate) struct Translated {
    pub(crate) rules: Rules,
    /// `SECCOMP_FILTER_FLAG_*` bits for seccomp(2).
    pub(crate) flags: libc::c_ulong,
    /// Names the profile uses that this architecture does not have.
    pub(crate) skipped: Vec<String>,
}

/// Translates `spec` into rules for the native architecture.
pub(crate) fn translate(spec: &LinuxSeccomp) -> Result<Translated, SeccompError> {
    let default_action = action(spec.default_action(), spec.default_errno_ret(), &[])?;
    let mut rules = Vec::new();
    let mut skipped = Vec::new();

    for syscall in spec.syscalls().iter().flatten() {
        let names = syscall.names();
        let action = action(syscall.action(), syscall.errno_ret(), names)?;
        for name in names {
            let Some(nr) = syscalls::lookup(name) else {
                if !skipped.contains(name) {
                    skipped.push(name.clone());
                }
                continue;
            };
            for condition in conditions(name, syscall)? {
                rules.push(Rule {
                    nr,
                    action: action.clone(),
                    condition,
                });
            }
        }
    }

    if !skipped.is_empty() {
        tracing::warn!(
            count = skipped.len(),
            syscalls = %skipped.join(","),
            arch = std::env::consts::ARCH,
            "seccomp profile names syscalls unknown on this architecture; their rules are skipped"
        );
    }
    Ok(Translated {
        rules: Rules {
            default_action,
            rules,
        },
        flags: flags(spec.flags().as_deref().unwrap_or_default()),
        skipped,
    })
}

/// Maps an OCI action to seccompiler's.
fn action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    names: &[String],
) -> Result<SeccompAction, SeccompError> {
    let data = || {
        let value = errno_ret.unwrap_or(libc::EPERM as u32);
        match u16::try_from(value) {
            Ok(_) => Ok(value),
            Err(_) => Err(SeccompError::InvalidErrnoRet {
                action,
                errno: value,
                syscalls: names.to_vec(),
            }),
        }
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => SeccompAction::Errno(data()?),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Trace(data()?),
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::UnsupportedAction {
                action,
                syscalls: names.to_vec(),
                reason: "garden runs no seccomp notify agent (listenerPath)",
            })
        }
    })
}

/// The alternatives (ORed) a syscall entry matches on: `[None]` for no conditions.
fn conditions(
    name: &str,
    syscall: &LinuxSyscall,
) -> Result<Vec<Option<SeccompRule>>, SeccompError> {
    let args = syscall.args().as_deref().unwrap_or_default();
    if args.is_empty() {
        return Ok(vec![None]);
    }
    let mut built = Vec::with_capacity(args.len());
    for arg in args {
        built.push(condition(name, arg)?);
    }
    let mut indexes: Vec<usize> = args.iter().map(LinuxSeccompArg::index).collect();
    indexes.sort_unstable();
    let repeated = indexes.windows(2).any(|pair| pair[0] == pair[1]);

    let rule = |conditions: Vec<SeccompCondition>| {
        SeccompRule::new(conditions).map_err(|source| SeccompError::Compile {
            filter: format!("rule for {name}"),
            source,
        })
    };
    if repeated {
        built
            .into_iter()
            .map(|condition| rule(vec![condition]).map(Some))
            .collect()
    } else {
        Ok(vec![Some(rule(built)?)])
    }
}

fn condition(name: &str, arg: &LinuxSeccompArg) -> Result<SeccompCondition, SeccompError> {
    let invalid_index = || SeccompError::InvalidArgIndex {
        syscall: name.to_owned(),
        index: arg.index(),
        op: arg.op(),
    };
    let index = u8::try_from(arg.index()).map_err(|_| invalid_index())?;
    let (op, value) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
        LinuxSeccompOperator::ScmpCmpMaskedEq => (
            SeccompCmpOp::MaskedEq(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value).map_err(|_| invalid_index())
}

/// `SECCOMP_FILTER_FLAG_*` bits for the OCI flags.
fn flags(flags: &[LinuxSeccompFilterFlag]) -> libc::c_ulong {
    flags.iter().fold(0, |bits, flag| {
        bits | match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                // Only meaningful with a notify listener, which we never create; the kernel
                // would reject the flag without one.
                tracing::warn!(
                    "seccomp flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV ignored: no notify listener"
                );
                0
            }
        }
    })
}

#[cfg(test)]
#[path = "oci_tests.rs"]
#[allow(clippy::unwrap_used)]
mod tests;
