//! The system-call filter of a RUN: Docker's default seccomp profile.
//!
//! The profile is data, kept as Docker publishes it (`worker/seccomp/default.json`, its origin
//! and licence in `worker/seccomp/NOTICE`), and compiled here to BPF with `seccompiler`, for
//! this machine's architecture and Docker's default capability set
//! ([`sys::DEFAULT_CAPS`](crate::sys::DEFAULT_CAPS)), the way Docker selects its rules: an
//! entry counts when every capability and one of the architectures it `includes` are there
//! and none it `excludes` is. Compiling takes well under a millisecond; the sandbox helper
//! does it once when it starts ([`programs`]), and every command installs the result.
//!
//! One BPF program has one action on a match and one on a miss, and the profile has two
//! kinds of rule: allow (a miss: `EPERM`, the profile's default) and "fail with this errno"
//! (`clone3` fails with `ENOSYS`, so that C libraries fall back to `clone`, whose flags are
//! checked). So the profile becomes allow-list programs (split by syscall number, see
//! [`allow_programs`]) and one program per such errno.
//! The kernel runs every installed program and keeps the strictest action; between two
//! errno actions, the one of the program installed last. The errno programs are installed
//! after the allow list, so `clone3` gets `ENOSYS` rather than `EPERM`.
//!
//! Limits, against Docker's (libseccomp's) filter: only the native ABI is allowed (a 32-bit
//! x86 or arm program is killed at its first system call, where Docker also lets i386 and
//! arm programs run); `minKernel` conditions are taken as met (strata needs a 5.x kernel
//! anyway); names the `syscalls` crate does not know for this architecture are skipped, as
//! libseccomp skips names it cannot resolve.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::OnceLock;

/// Docker's default profile (see the module's documentation).
const DEFAULT_PROFILE: &str = include_str!("../seccomp/default.json");

/// Why the profile could not be compiled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SeccompError {
    #[error("no seccomp filter for the {0} architecture")]
    Arch(String),
    #[error("the seccomp profile is not valid")]
    Profile(#[source] serde_json::Error),
    #[error("unknown seccomp operator {0} in the profile")]
    Operator(String),
    #[error("unknown seccomp action {0} in the profile")]
    Action(String),
    #[error("failed to compile the seccomp profile")]
    Compile(#[source] seccompiler::BackendError),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_errno_ret: Option<u32>,
    syscalls: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    names: Vec<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Arg>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// The programs to install, in order, for Docker's default profile on this machine;
/// compiled on the first call (the helper makes it at start-up, before any fork).
pub(crate) fn programs() -> Result<&'static [BpfProgram], &'static str> {
    static PROGRAMS: OnceLock<Result<Vec<BpfProgram>, String>> = OnceLock::new();
    PROGRAMS
        .get_or_init(|| {
            let caps: Vec<String> = crate::sys::DEFAULT_CAPS
                .iter()
                .map(|c| c.to_string())
                .collect();
            compile(DEFAULT_PROFILE, std::env::consts::ARCH, &caps)
                .map_err(|e| crate::sandbox::error_chain(&e))
        })
        .as_ref()
        .map(Vec::as_slice)
        .map_err(String::as_str)
}

/// Compiles `profile` (Docker's format) for `arch` (Rust's name: `x86_64`, `aarch64`) and
/// a process holding `caps` (`CAP_CHOWN`, ...).
pub(crate) fn compile(
    profile: &str,
    arch: &str,
    caps: &[String],
) -> Result<Vec<BpfProgram>, SeccompError> {
    let (target, docker_arch) = match arch {
        "x86_64" => (TargetArch::x86_64, "amd64"),
        "aarch64" => (TargetArch::aarch64, "arm64"),
        other => return Err(SeccompError::Arch(other.to_owned())),
    };
    let profile: Profile = serde_json::from_str(profile).map_err(SeccompError::Profile)?;
    // Per action (None: allow, Some(errno)): syscall number -> rules (empty: always).
    let mut by_action: BTreeMap<Option<u32>, BTreeMap<i64, Option<Vec<SeccompRule>>>> =
        BTreeMap::new();
    for entry in &profile.syscalls {
        if !applies(entry, docker_arch, caps) {
            continue;
        }
        let action = match entry.action.as_str() {
            "SCMP_ACT_ALLOW" => None,
            "SCMP_ACT_ERRNO" => Some(entry.errno_ret.unwrap_or(libc::EPERM as u32)),
            other => return Err(SeccompError::Action(other.to_owned())),
        };
        let rule = if entry.args.is_empty() {
            None
        } else {
            let conditions = entry
                .args
                .iter()
                .map(condition)
                .collect::<Result<Vec<_>, _>>()?;
            Some(SeccompRule::new(conditions).map_err(SeccompError::Compile)?)
        };
        let table = by_action.entry(action).or_default();
        for name in &entry.names {
            let Some(nr) = syscall_number(name, target) else {
                continue;
            };
            match (table.entry(nr).or_insert_with(|| Some(Vec::new())), &rule) {
                // Already allowed whatever its arguments.
                (None, _) => {}
                (slot @ Some(_), None) => *slot = None,
                (Some(rules), Some(rule)) => rules.push(rule.clone()),
            }
        }
    }
    let default = SeccompAction::Errno(profile.default_errno_ret.unwrap_or(libc::EPERM as u32));
    // The allow list first (see the module's documentation), then the errno programs.
    let allow = by_action.remove(&None).unwrap_or_default();
    let mut programs = allow_programs(allow, default, target)?;
    for (errno, table) in by_action {
        let errno = errno.expect("the allow list was taken out");
        programs.push(program(
            table,
            SeccompAction::Allow,
            SeccompAction::Errno(errno),
            target,
        )?);
    }
    Ok(programs)
}

/// The allow list as several programs, each in charge of one range of syscall numbers and
/// allowing every call outside it, so that exactly one program decides each call.
///
/// Why not one program: `seccompiler` emits a linear chain, and when a filter is installed
/// the kernel runs it once for every syscall number (twice on x86_64, for the 32-bit ABI too)
/// to find the calls it always allows. Installing Docker's allow list as one program of
/// 1,600 instructions took 0.9 ms, in every RUN; as five programs of at most [`CHUNK`]
/// syscalls, each behind a range check of a few instructions, 0.4 ms (8 or 128 syscalls a
/// program: 0.8 and 0.47 ms; each install has a cost of its own). libseccomp would emit a
/// binary tree, but it is a C library to link and install; this keeps the filter in Rust.
fn allow_programs(
    table: BTreeMap<i64, Option<Vec<SeccompRule>>>,
    default: SeccompAction,
    target: TargetArch,
) -> Result<Vec<BpfProgram>, SeccompError> {
    let entries: Vec<_> = table.into_iter().collect();
    let chunks: Vec<_> = entries.chunks(CHUNK).collect();
    let first_nr = |c: &[(i64, Option<Vec<SeccompRule>>)]| {
        u32::try_from(c.first().map_or(0, |e| e.0)).unwrap_or(0)
    };
    let mut programs = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let lo = if i == 0 { 0 } else { first_nr(chunk) };
        let hi = chunks.get(i + 1).map(|next| first_nr(next));
        let inner = program(
            chunk.iter().cloned().collect(),
            default.clone(),
            SeccompAction::Allow,
            target,
        )?;
        let op = |code: u32, jt: u8, jf: u8, k: u32| seccompiler::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        };
        let jge = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
        let mut guarded = vec![
            // A = the syscall number (offset 0 of seccomp_data).
            op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
            // Below the range: allow (this program does not decide it).
            op(jge, 0, 2, lo),
            // At or above the next range: allow; the last range has no end.
            match hi {
                Some(hi) => op(jge, 1, 0, hi),
                None => op(libc::BPF_JMP | libc::BPF_JA, 0, 0, 0),
            },
            // In the range: on to the chain.
            op(libc::BPF_JMP | libc::BPF_JA, 0, 0, 1),
            op(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        ];
        guarded.extend(inner);
        programs.push(guarded);
    }
    Ok(programs)
}

/// Syscalls per allow-list program (see [`allow_programs`]).
const CHUNK: usize = 64;

fn program(
    table: BTreeMap<i64, Option<Vec<SeccompRule>>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
    target: TargetArch,
) -> Result<BpfProgram, SeccompError> {
    let rules = table
        .into_iter()
        .map(|(nr, rules)| (nr, rules.unwrap_or_default()))
        .collect();
    let filter =
        SeccompFilter::new(rules, mismatch, matched, target).map_err(SeccompError::Compile)?;
    BpfProgram::try_from(filter).map_err(SeccompError::Compile)
}

/// Whether Docker would keep `entry` for `arch` (Docker's name) and `caps`.
fn applies(entry: &Entry, arch: &str, caps: &[String]) -> bool {
    let has = |c: &String| caps.contains(c);
    let inc = &entry.includes;
    let exc = &entry.excludes;
    inc.caps.iter().all(has)
        && (inc.arches.is_empty() || inc.arches.iter().any(|a| a == arch))
        && !exc.caps.iter().any(has)
        && !exc.arches.iter().any(|a| a == arch)
}

fn condition(arg: &Arg) -> Result<SeccompCondition, SeccompError> {
    // libseccomp compares the whole 64-bit register; so does a `Qword` condition.
    let (op, value) = match arg.op.as_str() {
        "SCMP_CMP_EQ" => (SeccompCmpOp::Eq, arg.value),
        "SCMP_CMP_NE" => (SeccompCmpOp::Ne, arg.value),
        "SCMP_CMP_LT" => (SeccompCmpOp::Lt, arg.value),
        "SCMP_CMP_LE" => (SeccompCmpOp::Le, arg.value),
        "SCMP_CMP_GT" => (SeccompCmpOp::Gt, arg.value),
        "SCMP_CMP_GE" => (SeccompCmpOp::Ge, arg.value),
        "SCMP_CMP_MASKED_EQ" => (SeccompCmpOp::MaskedEq(arg.value), arg.value_two),
        other => return Err(SeccompError::Operator(other.to_owned())),
    };
    SeccompCondition::new(arg.index, SeccompCmpArgLen::Qword, op, value)
        .map_err(SeccompError::Compile)
}

/// The number of system call `name` on `arch`, if it has one there.
fn syscall_number(name: &str, arch: TargetArch) -> Option<i64> {
    let nr = match arch {
        TargetArch::x86_64 => syscalls::x86_64::Sysno::from_str(name).ok()?.id(),
        TargetArch::aarch64 => syscalls::aarch64::Sysno::from_str(name).ok()?.id(),
        TargetArch::riscv64 => syscalls::riscv64::Sysno::from_str(name).ok()?.id(),
    };
    Some(i64::from(nr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_caps() -> Vec<String> {
        crate::sys::DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    #[test]
    fn docker_profile_compiles_for_both_architectures() {
        for arch in ["x86_64", "aarch64"] {
            let programs = compile(DEFAULT_PROFILE, arch, &default_caps()).unwrap();
            // The allow list and clone3's ENOSYS.
            assert!(programs.len() > 2, "{arch}");
            assert!(programs.iter().all(|p| p.len() < 400), "{arch}");
        }
    }

    #[test]
    fn cap_sys_admin_lets_clone3_through() {
        let mut caps = default_caps();
        caps.push("CAP_SYS_ADMIN".into());
        let enosys = |programs: &[BpfProgram]| {
            programs.iter().flatten().any(|i| {
                i.code == (libc::BPF_RET | libc::BPF_K) as u16
                    && i.k == libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
            })
        };
        let with = compile(DEFAULT_PROFILE, "x86_64", &caps).unwrap();
        let without = compile(DEFAULT_PROFILE, "x86_64", &default_caps()).unwrap();
        assert!(!enosys(&with));
        assert!(enosys(&without));
    }

    #[test]
    fn other_architectures_are_refused() {
        let e = compile(DEFAULT_PROFILE, "mips", &default_caps()).unwrap_err();
        assert_eq!(e.to_string(), "no seccomp filter for the mips architecture");
    }

    #[test]
    fn selection_follows_includes_and_excludes() {
        let entry: Entry = serde_json::from_str(
            r#"{"names":["x"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64"]},"excludes":{"caps":["CAP_SYS_ADMIN"]}}"#,
        )
        .unwrap();
        assert!(applies(&entry, "amd64", &default_caps()));
        assert!(!applies(&entry, "arm64", &default_caps()));
        assert!(!applies(&entry, "amd64", &["CAP_SYS_ADMIN".to_owned()]));
    }
}
