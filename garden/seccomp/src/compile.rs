//! From rules to one BPF program.
//!
//! seccompiler builds filters with a single match action, while a profile gives every rule its
//! own action. So a profile becomes several seccompiler filters:
//!
//! * the **default filter**: every syscall (with its conditions) that any rule names returns
//!   ALLOW, everything else the profile's default action. Left out when the default is ALLOW.
//! * one **action filter** per distinct non-ALLOW rule action (ERRNO(38), TRAP, ...): the
//!   syscalls of those rules return the action, everything else ALLOW.
//! * on x86_64 a small **guard** first that kills x32-ABI syscalls (numbers with bit 30 set),
//!   which would otherwise slip past deny-list profiles.
//!
//! Loaded as separate stacked filters, the kernel runs them all and keeps the result with the
//! highest precedence (KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > USER_NOTIF > TRACE > LOG >
//! ALLOW); among equal precedence the most recently loaded filter's value wins. The default
//! filter can never disagree with an action filter: an action filter answers non-ALLOW only
//! when one of its rules matched, and then the default filter, which holds every rule, answers
//! ALLOW.
//!
//! Instead of loading them separately we **chain** them into one program: every `RET ALLOW`
//! of a filter becomes a jump to the start of the next one, so the first non-ALLOW answer
//! wins. Ordering the action filters by precedence (and, within the same precedence, the
//! action that first appears later in the profile first) makes "first non-ALLOW answer" equal
//! to the kernel's stacking rule; the default filter comes last. One program means one
//! seccomp(2) call: no half-installed profile, and a profile need not allow `seccomp` itself
//! for the later filters to load. The unit tests check the chained program against the
//! stacking rule with a small BPF interpreter; tests/stacking.rs checks the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use seccompiler::{sock_filter, BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

use crate::sys::MAX_INSTRUCTIONS;
use crate::SeccompError;

/// One rule of a profile, resolved to a syscall number.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) nr: i64,
    pub(crate) action: SeccompAction,
    /// `None` matches on the syscall number alone; `Some` adds ANDed argument conditions.
    pub(crate) condition: Option<SeccompRule>,
}

/// A profile resolved to syscall numbers: the input of [`compile`].
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) default_action: SeccompAction,
    /// In profile order, which decides ties between actions of equal precedence.
    pub(crate) rules: Vec<Rule>,
}

/// One seccompiler filter before chaining.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    /// For logs and errors: `guard`, `default ERRNO(1)`, `ERRNO(38)`.
    pub(crate) label: String,
    pub(crate) program: BpfProgram,
}

/// The result of [`compile`].
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    /// The filters in an order that gives the profile's meaning when loaded as stacked filters
    /// (guard, action filters by first appearance, default last).
    #[cfg(test)]
    pub(crate) stacked: Vec<Filter>,
    /// Labels of the filters in chain order.
    pub(crate) chain_labels: Vec<String>,
    /// All filters chained into one program; empty when the profile allows everything.
    pub(crate) chained: BpfProgram,
}

/// Display of a seccompiler action in libseccomp's words.
pub(crate) struct ActionName<'a>(pub(crate) &'a SeccompAction);

impl fmt::Display for ActionName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SeccompAction::Allow => f.write_str("ALLOW"),
            SeccompAction::Errno(errno) => write!(f, "ERRNO({errno})"),
            SeccompAction::KillThread => f.write_str("KILL_THREAD"),
            SeccompAction::KillProcess => f.write_str("KILL_PROCESS"),
            SeccompAction::Log => f.write_str("LOG"),
            SeccompAction::Trace(data) => write!(f, "TRACE({data})"),
            SeccompAction::Trap => f.write_str("TRAP"),
        }
    }
}

/// The kernel's ordering of actions: smaller wins (it compares the action bits as signed).
pub(crate) fn precedence(action: &SeccompAction) -> i32 {
    (u32::from(action.clone()) & libc::SECCOMP_RET_ACTION_FULL) as i32
}

/// Syscall number → alternative condition sets (ORed). seccompiler reads an empty list as
/// "match on the number alone".
#[derive(Default)]
struct Chains {
    map: BTreeMap<i64, Vec<SeccompRule>>,
    unconditional: BTreeSet<i64>,
}

impl Chains {
    fn add(&mut self, rule: &Rule) {
        match &rule.condition {
            None => {
                self.unconditional.insert(rule.nr);
                self.map.insert(rule.nr, Vec::new());
            }
            Some(condition) if !self.unconditional.contains(&rule.nr) => {
                self.map.entry(rule.nr).or_default().push(condition.clone());
            }
            Some(_) => {}
        }
    }

    fn build(
        self,
        label: String,
        mismatch: SeccompAction,
        matched: SeccompAction,
        arch: TargetArch,
    ) -> Result<Filter, SeccompError> {
        let program = SeccompFilter::new(self.map, mismatch, matched, arch)
            .and_then(BpfProgram::try_from)
            .map_err(|source| SeccompError::Compile {
                filter: label.clone(),
                source,
            })?;
        Ok(Filter { label, program })
    }
}

/// Compiles `rules` for `arch` into stacked filters and one chained program.
///
/// Rules whose action equals the default action are dropped (as runc does): they cannot
/// change any decision.
pub(crate) fn compile(rules: &Rules, arch: TargetArch) -> Result<Compiled, SeccompError> {
    let default = &rules.default_action;
    let mut default_chains = Chains::default();
    // Distinct non-ALLOW actions in order of first appearance.
    let mut by_action: Vec<(SeccompAction, Chains)> = Vec::new();

    for rule in rules.rules.iter().filter(|rule| &rule.action != default) {
        if *default != SeccompAction::Allow {
            default_chains.add(rule);
        }
        if rule.action != SeccompAction::Allow {
            match by_action
                .iter_mut()
                .find(|(action, _)| *action == rule.action)
            {
                Some((_, chains)) => chains.add(rule),
                None => {
                    let mut chains = Chains::default();
                    chains.add(rule);
                    by_action.push((rule.action.clone(), chains));
                }
            }
        }
    }

    let guard = foreign_abi_guard(arch);
    let mut action_filters = Vec::with_capacity(by_action.len());
    for (appearance, (action, chains)) in by_action.into_iter().enumerate() {
        let label = ActionName(&action).to_string();
        let filter = chains.build(label, SeccompAction::Allow, action.clone(), arch)?;
        action_filters.push((precedence(&action), appearance, filter));
    }
    let default_filter = if *default == SeccompAction::Allow {
        None
    } else {
        let label = format!("default {}", ActionName(default));
        Some(default_chains.build(label, default.clone(), SeccompAction::Allow, arch)?)
    };

    #[cfg(test)]
    let stacked: Vec<Filter> = guard
        .iter()
        .cloned()
        .chain(action_filters.iter().map(|(_, _, filter)| filter.clone()))
        .chain(default_filter.iter().cloned())
        .collect();

    // Highest precedence first; among equals, the action that appeared later first.
    action_filters.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let in_chain_order: Vec<&Filter> = guard
        .iter()
        .chain(action_filters.iter().map(|(_, _, filter)| filter))
        .chain(default_filter.iter())
        .collect();
    let chained = chain(&in_chain_order)?;
    let chain_labels = in_chain_order.iter().map(|f| f.label.clone()).collect();

    Ok(Compiled {
        #[cfg(test)]
        stacked,
        chain_labels,
        chained,
    })
}

const SECCOMP_DATA_NR_OFFSET: u32 = 0;
/// `__X32_SYSCALL_BIT`: x32-ABI syscalls arrive with AUDIT_ARCH_X86_64 and this bit set.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// On x86_64: kill x32-ABI syscalls, which seccompiler's arch check lets through.
fn foreign_abi_guard(arch: TargetArch) -> Option<Filter> {
    if arch != TargetArch::x86_64 {
        return None;
    }
    let program = vec![
        stmt(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            SECCOMP_DATA_NR_OFFSET,
        ),
        jump(
            libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
            X32_SYSCALL_BIT,
            0,
            1,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    Some(Filter {
        label: "x32 guard".to_owned(),
        program,
    })
}

fn is_ret_allow(instruction: &sock_filter) -> bool {
    u32::from(instruction.code) == libc::BPF_RET | libc::BPF_K
        && instruction.k == libc::SECCOMP_RET_ALLOW
}

/// Concatenates `filters`, turning each `RET ALLOW` of all but the last into a jump to the
/// start of the next filter. Jumps inside a filter are relative, so they stay valid.
fn chain(filters: &[&Filter]) -> Result<BpfProgram, SeccompError> {
    let instructions: usize = filters.iter().map(|f| f.program.len()).sum();
    if instructions > MAX_INSTRUCTIONS {
        return Err(SeccompError::ProgramTooLarge {
            instructions,
            max: MAX_INSTRUCTIONS,
        });
    }
    let mut chained = Vec::with_capacity(instructions);
    let last = filters.len().saturating_sub(1);
    for (index, filter) in filters.iter().enumerate() {
        let next_start = chained.len() + filter.program.len();
        for instruction in &filter.program {
            if index < last && is_ret_allow(instruction) {
                // Forward distance from the instruction after this one; < 4096, fits u32.
                let distance = (next_start - chained.len() - 1) as u32;
                chained.push(stmt(libc::BPF_JMP | libc::BPF_JA, distance));
            } else {
                chained.push(instruction.clone());
            }
        }
    }
    Ok(chained)
}

#[cfg(test)]
#[path = "compile_tests.rs"]
#[allow(clippy::unwrap_used)]
mod tests;
