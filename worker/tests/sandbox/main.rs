//! Integration tests that need root, namespaces and the `__sandbox` helper. This binary is
//! its own helper: started as `<test binary> __sandbox` it is the sandbox, as `strata` is.
#![expect(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "a test binary: fixtures are shared by modules, a failed fixture is a failed test"
)]

mod cgroup;
mod common;
mod diff;
mod files;
mod hostile;
#[path = "../../../store/tests/fixture/hostile_expect.rs"]
mod hostile_expect;
mod run;

use libtest_mimic::{Arguments, Trial};
use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("__sandbox") {
        return strata_worker::sandbox_main();
    }
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = Vec::new();
    trials.extend(run::tests());
    trials.extend(files::tests());
    trials.extend(diff::tests());
    trials.extend(hostile::tests());
    trials.extend(cgroup::tests());
    libtest_mimic::run(&args, trials).exit_code()
}
