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
//! checked). So the profile becomes one allow-list program and one program per such errno.
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
    let mut programs = vec![program(allow, default, SeccompAction::Allow, target)?];
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
            assert_eq!(programs.len(), 2, "{arch}");
            assert!(programs[0].len() > 300, "{arch}: {}", programs[0].len());
        }
    }

    #[test]
    fn cap_sys_admin_lets_clone3_through() {
        let mut caps = default_caps();
        caps.push("CAP_SYS_ADMIN".into());
        let programs = compile(DEFAULT_PROFILE, "x86_64", &caps).unwrap();
        assert_eq!(programs.len(), 1);
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
