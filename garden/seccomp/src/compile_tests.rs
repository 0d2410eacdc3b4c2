//! Checks the chained program against the kernel's stacking rule, with a small interpreter
//! for the classic-BPF subset seccomp filters use.

use super::*;
use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition};

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

#[derive(Debug, Clone, Copy)]
struct Data {
    nr: u32,
    arch: u32,
    args: [u64; 6],
}

fn load(data: &Data, offset: u32) -> u32 {
    match offset {
        0 => data.nr,
        4 => data.arch,
        8 | 12 => 0,
        16..=63 => {
            let arg = data.args[((offset - 16) / 8) as usize];
            if (offset - 16) % 8 == 4 {
                (arg >> 32) as u32
            } else {
                arg as u32
            }
        }
        other => panic!("load from offset {other}"),
    }
}

/// Runs a seccomp BPF program on `data` and returns its verdict.
fn run(program: &[sock_filter], data: &Data) -> u32 {
    use libc::{BPF_ABS, BPF_ALU, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K, BPF_LD};
    use libc::{BPF_RET, BPF_W};
    const BPF_AND: u32 = 0x50;
    let mut pc = 0;
    let mut acc = 0u32;
    loop {
        let ins = &program[pc];
        pc += 1;
        let code = u32::from(ins.code);
        let branch = |taken: bool| usize::from(if taken { ins.jt } else { ins.jf });
        if code == BPF_LD | BPF_W | BPF_ABS {
            acc = load(data, ins.k);
        } else if code == BPF_ALU | BPF_AND | BPF_K {
            acc &= ins.k;
        } else if code == BPF_JMP | BPF_JA {
            pc += ins.k as usize;
        } else if code == BPF_JMP | BPF_JEQ | BPF_K {
            pc += branch(acc == ins.k);
        } else if code == BPF_JMP | BPF_JGT | BPF_K {
            pc += branch(acc > ins.k);
        } else if code == BPF_JMP | BPF_JGE | BPF_K {
            pc += branch(acc >= ins.k);
        } else if code == BPF_RET | BPF_K {
            return ins.k;
        } else {
            panic!("instruction {code:#x} not expected in a seccomp filter");
        }
    }
}

/// The kernel's rule for stacked filters (seccomp_run_filters): newest filter first, a result
/// replaces the current one only if its action has strictly higher precedence.
fn stacked_verdict(filters: &[Filter], data: &Data) -> u32 {
    let action = |ret: u32| (ret & libc::SECCOMP_RET_ACTION_FULL) as i32;
    let mut verdict = libc::SECCOMP_RET_ALLOW;
    for filter in filters.iter().rev() {
        let current = run(&filter.program, data);
        if action(current) < action(verdict) {
            verdict = current;
        }
    }
    verdict
}

fn cond(index: u8, op: SeccompCmpOp, value: u64) -> Option<SeccompRule> {
    let condition = SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value).unwrap();
    Some(SeccompRule::new(vec![condition]).unwrap())
}

fn rule(nr: i64, action: SeccompAction, condition: Option<SeccompRule>) -> Rule {
    Rule {
        nr,
        action,
        condition,
    }
}

/// A profile with every kind of interaction: overlapping rules with different actions,
/// equal-precedence ties, conditions, and a rule equal to the default.
fn tricky_rules(default_action: SeccompAction) -> Rules {
    use SeccompAction::*;
    use SeccompCmpOp::*;
    Rules {
        default_action,
        rules: vec![
            rule(39, Allow, None),
            rule(10, Allow, cond(0, Eq, 5)),
            rule(10, Errno(38), cond(1, Gt, 100)),
            rule(11, Trap, None),
            rule(12, Errno(38), cond(0, Ge, 0x20)),
            rule(12, Errno(13), cond(0, MaskedEq(0xF0), 0x30)),
            rule(13, KillProcess, cond(2, Ne, 0)),
            rule(13, Log, None),
            rule(14, Trace(7), None),
            rule(15, KillThread, cond(0, Lt, 3)),
            rule(16, Errno(1), None),
            rule(17, Allow, cond(0, Le, 1 << 40)),
            rule(17, Allow, cond(0, Eq, u64::MAX)),
        ],
    }
}

fn inputs() -> Vec<Data> {
    let values = [
        0,
        1,
        2,
        3,
        5,
        0x20,
        0x35,
        0x3F,
        101,
        1 << 40,
        (1 << 40) + 1,
        u64::MAX,
    ];
    let mut inputs = Vec::new();
    for nr in [0, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 39, 0x4000_0027] {
        for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386] {
            for (i, a) in values.iter().enumerate() {
                let b = values[(i * 5 + 3) % values.len()];
                let c = values[(i * 7 + 1) % values.len()];
                for (x, y, z) in [(*a, b, c), (b, *a, 0), (c, b, *a)] {
                    inputs.push(Data {
                        nr,
                        arch,
                        args: [x, y, z, 0, 0, 0],
                    });
                }
            }
        }
    }
    inputs
}

#[test]
fn chained_program_decides_like_stacked_filters() {
    use SeccompAction::*;
    for default in [
        Errno(1),
        Allow,
        KillProcess,
        KillThread,
        Trap,
        Log,
        Trace(3),
        Errno(38),
    ] {
        let compiled = compile(&tricky_rules(default.clone()), TargetArch::x86_64).unwrap();
        for data in inputs() {
            assert_eq!(
                run(&compiled.chained, &data),
                stacked_verdict(&compiled.stacked, &data),
                "default {}, {data:?}",
                ActionName(&default)
            );
        }
    }
}

#[test]
fn chained_program_gives_the_expected_answers() {
    let compiled = compile(&tricky_rules(SeccompAction::Errno(1)), TargetArch::x86_64).unwrap();
    let verdict = |nr: u32, args: [u64; 3]| {
        let data = Data {
            nr,
            arch: AUDIT_ARCH_X86_64,
            args: [args[0], args[1], args[2], 0, 0, 0],
        };
        run(&compiled.chained, &data)
    };
    let errno = |e: u32| libc::SECCOMP_RET_ERRNO | e;
    let allow = libc::SECCOMP_RET_ALLOW;
    assert_eq!(verdict(39, [0, 0, 0]), allow);
    assert_eq!(verdict(9, [0, 0, 0]), errno(1), "not named: default");
    assert_eq!(verdict(10, [5, 0, 0]), allow);
    assert_eq!(verdict(10, [5, 101, 0]), errno(38), "ERRNO beats ALLOW");
    assert_eq!(verdict(10, [4, 101, 0]), errno(38));
    assert_eq!(
        verdict(10, [4, 100, 0]),
        errno(1),
        "no rule matched: default"
    );
    assert_eq!(verdict(11, [0, 0, 0]), libc::SECCOMP_RET_TRAP);
    assert_eq!(
        verdict(12, [0x35, 0, 0]),
        errno(13),
        "tie: later action wins"
    );
    assert_eq!(verdict(12, [0x40, 0, 0]), errno(38));
    assert_eq!(verdict(12, [0x10, 0, 0]), errno(1));
    assert_eq!(verdict(13, [0, 0, 1]), libc::SECCOMP_RET_KILL_PROCESS);
    assert_eq!(verdict(13, [0, 0, 0]), libc::SECCOMP_RET_LOG);
    assert_eq!(verdict(14, [0, 0, 0]), libc::SECCOMP_RET_TRACE | 7);
    assert_eq!(verdict(15, [2, 0, 0]), libc::SECCOMP_RET_KILL_THREAD);
    assert_eq!(verdict(15, [3, 0, 0]), errno(1));
    assert_eq!(
        verdict(16, [0, 0, 0]),
        errno(1),
        "rule equal to the default"
    );
    assert_eq!(verdict(17, [1 << 40, 0, 0]), allow);
    assert_eq!(
        verdict(17, [(1 << 40) + 1, 0, 0]),
        errno(1),
        "64-bit compare"
    );
    assert_eq!(verdict(17, [u64::MAX, 0, 0]), allow, "ORed rules");
    assert_eq!(
        verdict(0x4000_0027, [0, 0, 0]),
        libc::SECCOMP_RET_KILL_PROCESS
    );
    let i386 = Data {
        nr: 39,
        arch: AUDIT_ARCH_I386,
        args: [0; 6],
    };
    assert_eq!(
        run(&compiled.chained, &i386),
        libc::SECCOMP_RET_KILL_PROCESS
    );
}

#[test]
fn chain_order_is_precedence_then_later_first() {
    let compiled = compile(&tricky_rules(SeccompAction::Errno(1)), TargetArch::x86_64).unwrap();
    assert_eq!(
        compiled.chain_labels,
        [
            "x32 guard",
            "KILL_PROCESS",
            "KILL_THREAD",
            "TRAP",
            "ERRNO(13)",
            "ERRNO(38)",
            "TRACE(7)",
            "LOG",
            "default ERRNO(1)",
        ]
    );
    let stacked: Vec<_> = compiled.stacked.iter().map(|f| f.label.as_str()).collect();
    assert_eq!(stacked.first(), Some(&"x32 guard"));
    assert_eq!(stacked.last(), Some(&"default ERRNO(1)"));
}

#[test]
fn precedence_follows_the_kernel() {
    use SeccompAction::*;
    let order = [
        KillProcess,
        KillThread,
        Trap,
        Errno(4095),
        Trace(1),
        Log,
        Allow,
    ];
    for pair in order.windows(2) {
        assert!(precedence(&pair[0]) < precedence(&pair[1]), "{pair:?}");
    }
    assert_eq!(precedence(&Errno(1)), precedence(&Errno(38)));
}

#[test]
fn allow_everything_compiles_to_the_guard_alone() {
    let rules = Rules {
        default_action: SeccompAction::Allow,
        rules: vec![rule(39, SeccompAction::Allow, None)],
    };
    let compiled = compile(&rules, TargetArch::x86_64).unwrap();
    assert_eq!(compiled.chain_labels, ["x32 guard"]);
    let compiled = compile(&rules, TargetArch::aarch64).unwrap();
    assert!(compiled.chained.is_empty());
}

#[test]
fn too_many_instructions_is_an_error() {
    let rules = Rules {
        default_action: SeccompAction::Errno(1),
        rules: (0..900)
            .map(|nr| rule(nr, SeccompAction::Allow, None))
            .collect(),
    };
    match compile(&rules, TargetArch::x86_64) {
        Err(SeccompError::ProgramTooLarge { instructions, max }) => {
            assert!(instructions > max);
        }
        Err(SeccompError::Compile { .. }) => {}
        other => panic!("expected a size error, got {other:?}"),
    }
}
