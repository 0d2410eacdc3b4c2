//! Generates the `BPF_PROG_TYPE_CGROUP_DEVICE` program for a rule list.
//!
//! The kernel calls the program with a `struct bpf_cgroup_dev_ctx`:
//! `u32 access_type` (`access << 16 | type`), `u32 major`, `u32 minor`; it returns
//! 1 to allow and 0 to deny. The program checks the rules from last to first and
//! the first match decides, so a later rule overrides an earlier one (the v1
//! semantics); nothing matching means deny. An allow rule matches when it grants
//! every requested access bit; a deny rule when it covers any of them.
//!
//! Only 64-bit compares against immediates are used (supported by every kernel
//! with cgroup v2 device programs); device numbers are validated to fit.

use crate::device_rule::{DevType, DeviceRule, ACC_ALL};

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BpfInsn {
    pub(crate) code: u8,
    /// `dst_reg:4, src_reg:4` bitfields, in the target's bit order.
    pub(crate) regs: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

// Opcodes (class | op | source), from linux/bpf_common.h and linux/bpf.h.
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const JMP_JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// Registers. R1 holds the context pointer on entry and is reused as scratch
// once the three fields are loaded.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2; // device type
const R3: u8 = 3; // requested access bits
const R4: u8 = 4; // major
const R5: u8 = 5; // minor

// BPF_DEVCG_DEV_*.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    let regs = if cfg!(target_endian = "little") {
        (src << 4) | (dst & 0x0f)
    } else {
        (dst << 4) | (src & 0x0f)
    };
    BpfInsn {
        code,
        regs,
        off,
        imm,
    }
}

/// A jump whose offset is patched once the rule's block length is known.
fn jump(code: u8, dst: u8, imm: i32) -> BpfInsn {
    insn(code, dst, 0, 0, imm)
}

fn exit_with(verdict: i32) -> [BpfInsn; 2] {
    [
        insn(ALU32_MOV_K, R0, 0, 0, verdict),
        insn(JMP_EXIT, 0, 0, 0, 0),
    ]
}

/// The whole program: prelude, rules last to first, default deny.
pub(crate) fn build(rules: &[DeviceRule]) -> Vec<BpfInsn> {
    let mut prog = vec![
        insn(LDX_MEM_W, R2, R1, 0, 0),
        insn(ALU32_AND_K, R2, 0, 0, 0xffff),
        insn(LDX_MEM_W, R3, R1, 0, 0),
        insn(ALU32_RSH_K, R3, 0, 0, 16),
        insn(LDX_MEM_W, R4, R1, 4, 0),
        insn(LDX_MEM_W, R5, R1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        let block = rule_block(rule);
        let all_match = block.len() == 2;
        prog.extend(block);
        if all_match {
            // Earlier rules can never be reached.
            return prog;
        }
    }
    prog.extend(exit_with(0));
    prog
}

/// Checks that skip to the end of the block on mismatch, then the verdict.
fn rule_block(rule: &DeviceRule) -> Vec<BpfInsn> {
    let mut block = Vec::new();
    if let DeviceRule::Specific {
        allow,
        typ,
        major,
        minor,
        access,
    } = rule
    {
        let dev = match typ {
            DevType::Block => DEV_BLOCK,
            DevType::Char => DEV_CHAR,
        };
        block.push(jump(JMP_JNE_K, R2, dev));
        if *access != ACC_ALL {
            let access = i32::try_from(*access).unwrap_or(0);
            block.push(insn(ALU32_MOV_X, R1, R3, 0, 0));
            block.push(insn(ALU32_AND_K, R1, 0, 0, access));
            if *allow {
                // Skip unless every requested bit is granted: (req & acc) != req.
                block.push(insn(JMP_JNE_X, R1, R3, 0, 0));
            } else {
                // Skip unless some requested bit is covered: (req & acc) == 0.
                block.push(jump(JMP_JEQ_K, R1, 0));
            }
        }
        // Device numbers are validated to fit in i32 by device_rule.
        if let Some(major) = major {
            block.push(jump(JMP_JNE_K, R4, i32::try_from(*major).unwrap_or(-1)));
        }
        if let Some(minor) = minor {
            block.push(jump(JMP_JNE_K, R5, i32::try_from(*minor).unwrap_or(-1)));
        }
    }
    block.extend(exit_with(i32::from(rule.allow())));
    // Every jump so far lands just past this block's exit.
    let len = block.len();
    for (i, ins) in block.iter_mut().enumerate() {
        if matches!(ins.code, JMP_JEQ_K | JMP_JNE_K | JMP_JNE_X) {
            ins.off = i16::try_from(len - i - 1).unwrap_or(i16::MAX);
        }
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_rule::{normalize, tests::rule, ACC_MKNOD, ACC_READ, ACC_WRITE};
    use oci_spec::runtime::LinuxDeviceType as T;

    /// A tiny interpreter for exactly the instructions `build` emits, so the
    /// program's decisions can be checked without a kernel.
    fn run(prog: &[BpfInsn], dev: i32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | dev as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 10_000, "runaway program");
            let i = prog[pc];
            let (dst, src) = if cfg!(target_endian = "little") {
                ((i.regs & 0x0f) as usize, (i.regs >> 4) as usize)
            } else {
                ((i.regs >> 4) as usize, (i.regs & 0x0f) as usize)
            };
            let imm = i64::from(i.imm) as u64;
            let mut next = pc + 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[(i.off / 4) as usize]);
                }
                ALU32_AND_K => r[dst] = u64::from((r[dst] as u32) & (imm as u32)),
                ALU32_RSH_K => r[dst] = u64::from((r[dst] as u32) >> imm),
                ALU32_MOV_K => r[dst] = u64::from(imm as u32),
                ALU32_MOV_X => r[dst] = u64::from(r[src] as u32),
                JMP_JEQ_K if r[dst] == imm => next += i.off as usize,
                JMP_JNE_K if r[dst] != imm => next += i.off as usize,
                JMP_JNE_X if r[dst] != r[src] => next += i.off as usize,
                JMP_JEQ_K | JMP_JNE_K | JMP_JNE_X => {}
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
            pc = next;
        }
    }

    const RW: u32 = ACC_READ | ACC_WRITE;
    const C: i32 = DEV_CHAR;
    const B: i32 = DEV_BLOCK;

    fn program(rules: &[oci_spec::runtime::LinuxDeviceCgroup]) -> Vec<BpfInsn> {
        build(&normalize(rules).expect("valid rules"))
    }

    #[test]
    fn default_deny_with_exceptions() {
        let p = program(&[
            rule(false, T::A, None, None, "rwm"),
            rule(true, T::C, Some(1), Some(3), "rwm"),
            rule(true, T::C, Some(136), None, "rw"),
        ]);
        assert_eq!(run(&p, C, RW, 1, 3), 1, "/dev/null rw");
        assert_eq!(run(&p, C, ACC_MKNOD, 1, 3), 1, "/dev/null mknod");
        assert_eq!(run(&p, C, RW, 1, 5), 0, "/dev/zero");
        assert_eq!(run(&p, B, RW, 1, 3), 0, "block 1:3");
        assert_eq!(run(&p, C, ACC_WRITE, 136, 7), 1, "pty write");
        assert_eq!(run(&p, C, ACC_MKNOD, 136, 7), 0, "pty mknod");
        assert_eq!(
            run(&p, C, ACC_READ | ACC_MKNOD, 136, 7),
            0,
            "partly granted"
        );
    }

    #[test]
    fn later_rules_override_earlier_ones() {
        let p = program(&[
            rule(true, T::A, None, None, "rwm"),
            rule(false, T::C, Some(1), Some(5), "w"),
        ]);
        assert_eq!(run(&p, C, ACC_READ, 1, 5), 1, "read is not denied");
        assert_eq!(run(&p, C, RW, 1, 5), 0, "write part is denied");
        assert_eq!(run(&p, B, RW, 8, 0), 1, "everything else allowed");

        let p = program(&[
            rule(true, T::C, Some(1), Some(3), "rwm"),
            rule(false, T::A, None, None, "rwm"),
        ]);
        assert_eq!(run(&p, C, RW, 1, 3), 0, "a final deny-all wins");
    }

    #[test]
    fn no_rules_denies_everything() {
        let p = program(&[]);
        assert_eq!(run(&p, C, ACC_READ, 1, 3), 0);
    }

    #[test]
    fn jumps_stay_inside_the_program() {
        let p = program(&[
            rule(false, T::A, None, None, "rwm"),
            rule(true, T::B, Some(7), None, "r"),
            rule(true, T::C, None, Some(9), "m"),
        ]);
        for (i, ins) in p.iter().enumerate() {
            assert!(i + 1 + ins.off as usize <= p.len(), "insn {i} jumps out");
        }
        assert_eq!(p.last().map(|i| i.code), Some(JMP_EXIT));
        assert_eq!(run(&p, B, ACC_READ, 7, 42), 1);
        assert_eq!(run(&p, B, ACC_WRITE, 7, 42), 0);
        assert_eq!(run(&p, C, ACC_MKNOD, 99, 9), 1);
    }
}
