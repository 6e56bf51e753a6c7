//! `linux.seccomp` of the OCI spec: the profile is translated and compiled to classic BPF when
//! the container is created (before any fork), and the child installs the programs with the raw
//! seccomp(2) system call as one of its last steps before execve (see `process::finalize`).
//!
//! seccompiler gives a filter ONE on-match action, so a profile becomes a stack of filters:
//!
//! 1. the default filter: every syscall (with its argument conditions) named by any rule of the
//!    profile → ALLOW (left to the rule filters), everything else → `defaultAction`;
//! 2. one filter per distinct rule action (and errno) other than ALLOW: its syscalls → that
//!    action, everything else → ALLOW.
//!
//! The kernel runs every filter of the stack and keeps the most restrictive action
//! class (KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > … > LOG > ALLOW); among filters returning
//! the same class the one installed LAST wins. The default filter never ties with a rule filter
//! (it allows exactly what the rules match), so its place does not matter; the rule filters go
//! in the order of their first rule in the profile. A syscall matched by several rules with
//! different actions gets the most restrictive one (libseccomp refuses most such conflicts; the
//! profiles of podman, docker and containerd have none). Each installation is itself a
//! seccomp(2) call that the filters already installed must allow: a filter refusing it (an
//! allow-list's default filter without `seccomp`) is installed last (see [`install_order`]).
//!
//! Syscall names unknown on the guest's architecture are skipped, as runc does. On an x86_64
//! guest the filters check the architecture and kill a process making a 32-bit (i386,
//! `int 0x80`) or x32 system call, so `SCMP_ARCH_X86` / `SCMP_ARCH_X32` entries of
//! `architectures` are accepted but their syscalls are then killed by the architecture check
//! rather than filtered. An aarch64 guest (a foreign-architecture VM) takes the profile the
//! engine wrote for its own host (x86_64's `architectures`) by name: the names are looked up in
//! aarch64's table and the filters check for aarch64 (the guest kernel has no AArch32).
//! Seccomp notify (`listenerPath`, `SCMP_ACT_NOTIFY`), `SCMP_ACT_TRACE` and unknown flags are
//! refused: the container does not start.

use std::collections::BTreeMap;
use std::str::FromStr;

use nix::errno::Errno;
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule,
};

use crate::error::{Error, Result};

/// seccomp(2) flags (linux/seccomp.h).
const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
const SECCOMP_FILTER_FLAG_TSYNC: libc::c_uint = 1;
const SECCOMP_FILTER_FLAG_LOG: libc::c_uint = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_uint = 4;

/// Classic BPF opcodes (linux/bpf_common.h), the ones seccompiler emits.
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// Bit of an x32 system call number (arch is still AUDIT_ARCH_X86_64).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The guest's architecture: its system call table, and what the filters check.
#[cfg(target_arch = "x86_64")]
mod guest {
    pub use syscalls::x86_64::Sysno;
    pub const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
    pub const AUDIT_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    pub const NAME: &str = "x86_64";
}
#[cfg(target_arch = "aarch64")]
mod guest {
    pub use syscalls::aarch64::Sysno;
    pub const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;
    pub const AUDIT_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    pub const NAME: &str = "aarch64";
}

/// What `hull-runtime features` reports (runtime-spec features.md).
pub const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_LOG",
];

/// The profile, compiled: BPF programs in installation order, and the seccomp(2) flags.
#[derive(Debug)]
pub struct SeccompPlan {
    programs: Vec<BpfProgram>,
    flags: libc::c_uint,
}

/// The translated profile, before compilation (kept apart for the unit tests).
#[derive(Debug, PartialEq)]
struct Profile {
    default: SeccompAction,
    /// Rule groups, one per distinct action, in the order of their first rule.
    groups: Vec<(SeccompAction, BTreeMap<i64, Vec<SeccompRule>>)>,
    flags: libc::c_uint,
}

fn action(a: LinuxSeccompAction, errno: Option<u32>, field: &str) -> Result<SeccompAction> {
    use LinuxSeccompAction::*;
    Ok(match a {
        ScmpActAllow => SeccompAction::Allow,
        ScmpActErrno => SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32)),
        // libseccomp: SCMP_ACT_KILL is SCMP_ACT_KILL_THREAD.
        ScmpActKill | ScmpActKillThread => SeccompAction::KillThread,
        ScmpActKillProcess => SeccompAction::KillProcess,
        ScmpActTrap => SeccompAction::Trap,
        ScmpActLog => SeccompAction::Log,
        ScmpActNotify | ScmpActTrace => {
            return Err(Error::spec(
                field,
                format!(
                    "{a} is not supported by hull (supported: {})",
                    ACTIONS.join(", ")
                ),
            ))
        }
    })
}

fn condition(arg: &LinuxSeccompArg, field: &str) -> Result<SeccompCondition> {
    use LinuxSeccompOperator::*;
    let (op, value) = match arg.op() {
        ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
        ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
        ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
        ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
        ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
        ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
        // libseccomp's SCMP_CMP_MASKED_EQ(mask, datum): (arg & value) == valueTwo.
        ScmpCmpMaskedEq => (
            SeccompCmpOp::MaskedEq(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    let index = u8::try_from(arg.index())
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| {
            Error::spec(
                format!("{field}.index"),
                format!("{} is not a system call argument (0 to 5)", arg.index()),
            )
        })?;
    // 64-bit comparisons, as libseccomp does on 64-bit architectures.
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| Error::spec(field, e.to_string()))
}

/// The rules of one `syscalls[]` entry's args: all conditions must hold (one rule); like runc,
/// when an argument index appears more than once, each condition is a rule of its own (any
/// may hold).
fn rules(args: &[LinuxSeccompArg], field: &str) -> Result<Vec<SeccompRule>> {
    if args.is_empty() {
        return Ok(Vec::new());
    }
    let conds = args
        .iter()
        .enumerate()
        .map(|(i, a)| condition(a, &format!("{field}.args[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    let mut seen = [false; 6];
    let repeated = args.iter().any(|a| {
        let i = a.index().min(5);
        std::mem::replace(&mut seen[i], true)
    });
    let rule = |c: Vec<SeccompCondition>| {
        SeccompRule::new(c).map_err(|e| Error::spec(format!("{field}.args"), e.to_string()))
    };
    if repeated {
        conds.into_iter().map(|c| rule(vec![c])).collect()
    } else {
        Ok(vec![rule(conds)?])
    }
}

/// Adds `rules` for syscall `nr` to a filter's map: an empty list matches the syscall whatever
/// its arguments, and stays so.
fn add_rules(map: &mut BTreeMap<i64, Vec<SeccompRule>>, nr: i64, rules: &[SeccompRule]) {
    match map.get_mut(&nr) {
        Some(existing) if existing.is_empty() => {}
        Some(existing) if rules.is_empty() => existing.clear(),
        Some(existing) => existing.extend_from_slice(rules),
        None => {
            map.insert(nr, rules.to_vec());
        }
    }
}

fn syscall_number(name: &str) -> Option<i64> {
    guest::Sysno::from_str(name).ok().map(|s| i64::from(s.id()))
}

impl Profile {
    fn new(s: &LinuxSeccomp) -> Result<Self> {
        const F: &str = "linux.seccomp";
        if let Some(p) = s.listener_path() {
            return Err(Error::spec(
                format!("{F}.listenerPath"),
                format!("{}: seccomp notify is not supported by hull", p.display()),
            ));
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(archs) = s.architectures() {
            use oci_spec::runtime::Arch;
            // The guest is x86_64: 32-bit and x32 system calls are killed by the filters'
            // architecture check, whatever the profile says about them.
            if !archs.is_empty()
                && !archs
                    .iter()
                    .any(|a| matches!(a, Arch::ScmpArchX86_64 | Arch::ScmpArchNative))
            {
                return Err(Error::spec(
                    format!("{F}.architectures"),
                    format!("{archs:?} does not include SCMP_ARCH_X86_64, the guest's"),
                ));
            }
        }
        let mut flags = 0;
        for f in s.flags().iter().flatten() {
            flags |= match f {
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                    SECCOMP_FILTER_FLAG_SPEC_ALLOW
                }
                other => {
                    return Err(Error::spec(
                        format!("{F}.flags"),
                        format!("{other} is not supported by hull"),
                    ))
                }
            };
        }
        let default = action(
            s.default_action(),
            s.default_errno_ret(),
            &format!("{F}.defaultAction"),
        )?;
        let mut groups: Vec<(SeccompAction, BTreeMap<i64, Vec<SeccompRule>>)> = Vec::new();
        for (i, sc) in s.syscalls().iter().flatten().enumerate() {
            let field = format!("{F}.syscalls[{i}]");
            let act = action(sc.action(), sc.errno_ret(), &format!("{field}.action"))?;
            let rules = rules(sc.args().as_deref().unwrap_or_default(), &field)?;
            let pos = match groups.iter().position(|(a, _)| *a == act) {
                Some(p) => p,
                None => {
                    groups.push((act, BTreeMap::new()));
                    groups.len() - 1
                }
            };
            for name in sc.names() {
                match syscall_number(name) {
                    Some(nr) => add_rules(&mut groups[pos].1, nr, &rules),
                    None => debug!(
                        "seccomp: unknown system call {name:?} on {}; skipped",
                        guest::NAME
                    ),
                }
            }
        }
        groups.retain(|(_, map)| !map.is_empty());
        Ok(Self {
            default,
            groups,
            flags,
        })
    }

    /// The BPF programs, in installation order.
    fn compile(self) -> Result<Vec<BpfProgram>> {
        let arch = guest::ARCH;
        let compile = |rules, mismatch: SeccompAction, matched: SeccompAction| {
            let what = format!("the filter for {matched:?}");
            SeccompFilter::new(rules, mismatch, matched, arch)
                .and_then(BpfProgram::try_from)
                .map_err(|e| Error::spec("linux.seccomp", format!("{what}: {e}")))
        };
        let mut programs = arch_guards();
        if self.default != SeccompAction::Allow {
            let mut all = BTreeMap::new();
            for (_, map) in &self.groups {
                for (nr, rules) in map {
                    add_rules(&mut all, *nr, rules);
                }
            }
            programs.push(compile(all, self.default.clone(), SeccompAction::Allow)?);
        }
        for (act, map) in self.groups {
            if act != SeccompAction::Allow {
                programs.push(compile(map, SeccompAction::Allow, act)?);
            }
        }
        Ok(programs)
    }
}

/// The filters that go before the profile's: x86_64's x32 guard; none on aarch64 (one ABI).
fn arch_guards() -> Vec<BpfProgram> {
    if cfg!(target_arch = "x86_64") {
        vec![x32_guard()]
    } else {
        Vec::new()
    }
}

/// Kills a process making an x32 system call (the number has bit 30 set; the architecture is
/// x86_64's, so seccompiler's check lets it through), as libseccomp does for a profile without
/// SCMP_ARCH_X32.
fn x32_guard() -> BpfProgram {
    let s = |code, k| sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    vec![
        s(LD_W_ABS, 0), // seccomp_data.nr
        sock_filter {
            code: JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        s(RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        s(RET_K, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Runs a classic-BPF seccomp program (what seccompiler emits) on a `seccomp_data` of the
/// guest's architecture; a program it cannot follow counts as killing.
fn eval(p: &[sock_filter], nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&guest::AUDIT_ARCH.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let (mut acc, mut pc) = (0u32, 0usize);
    // Jumps only go forward: this ends.
    while let Some(i) = p.get(pc) {
        pc += 1;
        match i.code {
            LD_W_ABS => match data.get(i.k as usize..i.k as usize + 4) {
                Some(w) => acc = u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
                None => break,
            },
            AND_K => acc &= i.k,
            JA => pc += i.k as usize,
            JEQ_K | JGT_K | JGE_K => {
                let t = match i.code {
                    JEQ_K => acc == i.k,
                    JGT_K => acc > i.k,
                    _ => acc >= i.k,
                };
                pc += usize::from(if t { i.jt } else { i.jf });
            }
            RET_K => return i.k,
            _ => break,
        }
    }
    libc::SECCOMP_RET_KILL_PROCESS
}

/// Orders the programs for installation: each seccomp(2) call must be allowed by the filters
/// already installed, so a program refusing the agent's own call (the default filter of an
/// allow-list without `seccomp`, or a rule on `seccomp`) goes last. Only ties between filters
/// of one action class depend on the order (the last installed wins), and the default filter
/// never ties with a rule filter (it allows exactly what the rules match).
fn install_order(programs: Vec<BpfProgram>, flags: libc::c_uint) -> Result<Vec<BpfProgram>> {
    let call = [
        u64::from(SECCOMP_SET_MODE_FILTER),
        u64::from(flags),
        0,
        0,
        0,
        0,
    ];
    let (mut ok, blocking): (Vec<_>, Vec<_>) = programs.into_iter().partition(|p| {
        let action = eval(p, libc::SYS_seccomp as u32, call) & libc::SECCOMP_RET_ACTION_FULL;
        action == libc::SECCOMP_RET_ALLOW || action == libc::SECCOMP_RET_LOG
    });
    if blocking.len() > 1 {
        return Err(Error::spec(
            "linux.seccomp",
            "the profile refuses seccomp(2) itself in several filters, which hull could not \
             install one after the other",
        ));
    }
    ok.extend(blocking);
    Ok(ok)
}

impl SeccompPlan {
    /// Translates and compiles `linux.seccomp`; refuses what hull cannot enforce.
    pub fn new(s: &LinuxSeccomp) -> Result<Self> {
        let profile = Profile::new(s)?;
        let flags = profile.flags;
        let programs = install_order(profile.compile()?, flags)?;
        debug!(
            "seccomp: {} filters, {} instructions",
            programs.len(),
            programs.iter().map(Vec::len).sum::<usize>()
        );
        Ok(Self { programs, flags })
    }

    /// Installs the filters, in order. Runs in the child after fork: no allocation. Without
    /// no_new_privs the caller must still have CAP_SYS_ADMIN.
    pub fn install(&self) -> Result<()> {
        for (i, p) in self.programs.iter().enumerate() {
            set_mode_filter(p, self.flags).map_err(|e| {
                Error::msg(format!(
                    "installing seccomp filter {i} of linux.seccomp: {}",
                    e.desc()
                ))
            })?;
        }
        Ok(())
    }
}

/// struct sock_fprog (linux/filter.h).
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const sock_filter,
}

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog), without the PR_SET_NO_NEW_PRIVS that
/// seccompiler::apply_filter forces.
fn set_mode_filter(prog: &[sock_filter], flags: libc::c_uint) -> nix::Result<()> {
    let len = libc::c_ushort::try_from(prog.len()).map_err(|_| Errno::EINVAL)?;
    let fprog = SockFprog {
        len,
        filter: prog.as_ptr(),
    };
    // SAFETY: `fprog` points to `len` valid `sock_filter`s (repr(C), the kernel's layout) that
    // outlive the call; the kernel copies the program and keeps no pointer to our memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const SockFprog,
        )
    };
    Errno::result(r).map(drop)
}

// The tests use x86_64's system call table and profiles.
#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// The kernel's evaluation of a filter stack (kernel/seccomp.c, seccomp_run_filters): every
    /// program runs, newest first; the lowest action (as s32) wins, the newest among equals.
    fn run_stack(programs: &[BpfProgram], nr: u32, args: [u64; 6]) -> u32 {
        let mut ret = libc::SECCOMP_RET_ALLOW;
        for p in programs.iter().rev() {
            let cur = eval(p, nr, args);
            let action = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
            if action(cur) < action(ret) {
                ret = cur;
            }
        }
        ret
    }

    fn plan(json: &str) -> Result<SeccompPlan> {
        SeccompPlan::new(&serde_json::from_str(json).unwrap())
    }

    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

    fn nr(name: &str) -> u32 {
        syscall_number(name).unwrap() as u32
    }

    #[test]
    fn default_allow_with_errno_rules() {
        let p = plan(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "syscalls":[{"names":["mkdir","mkdirat","no_such_syscall"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
        )
        .unwrap();
        // x32 guard + the ERRNO group; no default filter for ALLOW.
        assert_eq!(p.programs.len(), 2);
        assert_eq!(run_stack(&p.programs, nr("mkdir"), [0; 6]), EPERM);
        assert_eq!(run_stack(&p.programs, nr("mkdirat"), [0; 6]), EPERM);
        assert_eq!(run_stack(&p.programs, nr("openat"), [0; 6]), ALLOW);
        assert_eq!(
            run_stack(&p.programs, X32_SYSCALL_BIT | nr("openat"), [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn allow_list_with_a_later_errno_rule() {
        let p = plan(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
                "syscalls":[{"names":["read","write","uname"],"action":"SCMP_ACT_ALLOW"},
                            {"names":["uname"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
                            {"names":["getpid"],"action":"SCMP_ACT_KILL_PROCESS"},
                            {"names":["gettid"],"action":"SCMP_ACT_KILL"},
                            {"names":["getppid"],"action":"SCMP_ACT_TRAP"},
                            {"names":["getuid"],"action":"SCMP_ACT_LOG"}]}"#,
        )
        .unwrap();
        let run = |n| run_stack(&p.programs, nr(n), [0; 6]);
        assert_eq!(run("read"), ALLOW);
        assert_eq!(run("write"), ALLOW);
        assert_eq!(run("uname"), ENOSYS);
        assert_eq!(run("mkdir"), EPERM);
        assert_eq!(run("getpid"), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run("gettid"), libc::SECCOMP_RET_KILL_THREAD);
        assert_eq!(run("getppid"), libc::SECCOMP_RET_TRAP);
        assert_eq!(run("getuid"), libc::SECCOMP_RET_LOG);
    }

    #[test]
    fn errno_defaults_to_eperm() {
        let p = plan(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#)
            .unwrap();
        assert_eq!(run_stack(&p.programs, nr("write"), [0; 6]), EPERM);
        assert_eq!(run_stack(&p.programs, nr("read"), [0; 6]), ALLOW);
    }

    #[test]
    fn argument_conditions() {
        let p = plan(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"}]},
                {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":4294967295,"op":"SCMP_CMP_EQ"}]},
                {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
                {"names":["kill"],"action":"SCMP_ACT_ALLOW","args":[{"index":1,"value":9,"op":"SCMP_CMP_NE"},{"index":0,"value":1,"op":"SCMP_CMP_GT"}]},
                {"names":["socket"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":0,"value":2,"op":"SCMP_CMP_EQ"}]},
                {"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":2,"value":100,"op":"SCMP_CMP_LT"},{"index":0,"value":3,"op":"SCMP_CMP_GE"},{"index":1,"value":4096,"op":"SCMP_CMP_LE"}]}]}"#,
        )
        .unwrap();
        let run = |n, args| run_stack(&p.programs, nr(n), args);
        assert_eq!(run("personality", [0; 6]), ALLOW);
        assert_eq!(run("personality", [0xffff_ffff, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run("personality", [8, 0, 0, 0, 0, 0]), EPERM);
        // 64-bit comparison: the high half counts.
        assert_eq!(run("personality", [1 << 32, 0, 0, 0, 0, 0]), EPERM);
        // CLONE_NEWNS etc. masked out: plain fork-like clones only.
        assert_eq!(run("clone", [0x11, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run("clone", [0x2_0000 | 0x11, 0, 0, 0, 0, 0]), EPERM);
        // Different indexes: all must hold.
        assert_eq!(run("kill", [5, 15, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run("kill", [5, 9, 0, 0, 0, 0]), EPERM);
        assert_eq!(run("kill", [1, 15, 0, 0, 0, 0]), EPERM);
        // The same index twice: either may hold (runc).
        assert_eq!(run("socket", [1, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run("socket", [2, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run("socket", [10, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(run("read", [3, 4096, 99, 0, 0, 0]), ALLOW);
        assert_eq!(run("read", [3, 4097, 99, 0, 0, 0]), EPERM);
        assert_eq!(run("read", [2, 4096, 99, 0, 0, 0]), EPERM);
        assert_eq!(run("read", [3, 4096, 100, 0, 0, 0]), EPERM);
    }

    #[test]
    fn unconditional_rule_wins_over_conditional_ones() {
        let mut map = BTreeMap::new();
        let cond = SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::Eq,
            1,
        )
        .unwrap()])
        .unwrap();
        add_rules(&mut map, 1, std::slice::from_ref(&cond));
        add_rules(&mut map, 1, std::slice::from_ref(&cond));
        assert_eq!(map[&1].len(), 2);
        add_rules(&mut map, 1, &[]);
        assert!(map[&1].is_empty());
        add_rules(&mut map, 1, std::slice::from_ref(&cond));
        assert!(map[&1].is_empty());
    }

    #[test]
    fn unsupported_features_are_refused_naming_the_field() {
        // Each is a refusal of the bundle (exit 3 on the host), not a failure of the guest.
        let err = |json: &str| {
            let e = plan(json).unwrap_err();
            assert!(matches!(e, Error::Spec { .. }), "{e:?}");
            e.to_string()
        };
        let e = err(r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/notify.sock"}"#);
        assert!(e.contains("linux.seccomp.listenerPath"), "{e}");
        let e = err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        );
        assert!(e.contains("linux.seccomp.syscalls[0].action"), "{e}");
        assert!(e.contains("SCMP_ACT_NOTIFY"), "{e}");
        let e = err(r#"{"defaultAction":"SCMP_ACT_TRACE"}"#);
        assert!(e.contains("linux.seccomp.defaultAction"), "{e}");
        let e = err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#,
        );
        assert!(e.contains("linux.seccomp.flags"), "{e}");
        let e = err(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_AARCH64"]}"#);
        assert!(e.contains("linux.seccomp.architectures"), "{e}");
        let e = err(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":6,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        assert!(e.contains("linux.seccomp.syscalls[0].args[0].index"), "{e}");
    }

    /// Each install (seccomp(2) with these flags) is allowed by the filters before it.
    fn installs_in_order(p: &SeccompPlan) {
        let call = [1, u64::from(p.flags), 0, 0, 0, 0];
        for i in 0..p.programs.len() {
            let r = run_stack(&p.programs[..i], libc::SYS_seccomp as u32, call);
            assert_eq!(r, ALLOW, "installing program {i}");
        }
    }

    #[test]
    fn filters_refusing_seccomp_itself_go_last() {
        // An allow-list without `seccomp`: the default filter refuses it, so it goes last.
        let p = plan(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["read"],"action":"SCMP_ACT_ALLOW"},
                {"names":["write"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
        )
        .unwrap();
        installs_in_order(&p);
        assert_eq!(
            run_stack(&p.programs, nr("seccomp"), [1, 0, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(run_stack(&p.programs, nr("write"), [0; 6]), ENOSYS);
        // A rule refusing `seccomp`, installed before the other rule filters' would be refused.
        let p = plan(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["seccomp"],"action":"SCMP_ACT_ERRNO","errnoRet":1},
                {"names":["write"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
        )
        .unwrap();
        installs_in_order(&p);
        assert_eq!(
            run_stack(&p.programs, nr("seccomp"), [1, 0, 0, 0, 0, 0]),
            EPERM
        );
        // Two filters refusing it cannot both be installed.
        let e = plan(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["seccomp"],"action":"SCMP_ACT_ERRNO","errnoRet":1},
                {"names":["seccomp"],"action":"SCMP_ACT_KILL"}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("linux.seccomp"), "{e}");
    }

    #[test]
    fn flags_are_passed_on() {
        let p = plan(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}"#,
        )
        .unwrap();
        assert_eq!(p.flags, 7);
        // Only the x32 guard: an ALLOW-all profile.
        assert_eq!(p.programs.len(), 1);
    }

    #[test]
    fn a_large_profile_compiles() {
        // Every x86_64 system call allowed, a few with conditions: the size of runc's default.
        let names: Vec<String> = syscalls::x86_64::Sysno::iter()
            .map(|s| format!("{:?}", s.name()))
            .collect();
        let json = format!(
            r#"{{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"syscalls":[
                {{"names":[{}],"action":"SCMP_ACT_ALLOW"}},
                {{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{{"index":0,"value":8,"op":"SCMP_CMP_EQ"}}]}},
                {{"names":["ptrace"],"action":"SCMP_ACT_ERRNO","errnoRet":1}}]}}"#,
            names.join(",")
        );
        let p = plan(&json).unwrap();
        assert_eq!(run_stack(&p.programs, nr("ptrace"), [0; 6]), EPERM);
        assert_eq!(run_stack(&p.programs, nr("personality"), [0; 6]), ALLOW);
        assert_eq!(run_stack(&p.programs, 1000, [0; 6]), ENOSYS);
    }
}
