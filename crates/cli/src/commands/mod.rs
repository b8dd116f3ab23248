//! One module per verb.

pub mod analysis;
pub mod color;
pub mod completion;
pub mod convert;
pub mod crds;
pub mod dashboard;
pub mod demo;
pub mod get;
pub mod lint;
pub mod logs;
pub mod migrate;
pub mod source;
pub mod target;
pub mod tree;
pub mod up;
pub mod update_line;
pub mod verbs;
pub mod version;

use cutover_manifest::Diagnostics;

/// Exit codes beyond 0 (done; `status`: Healthy), the same for every verb (README.md, "Exit
/// codes"; `cutover --help`).
pub mod exit {
    /// Invalid manifests, or a request the backend refused; `status`: the rollout is Degraded.
    pub const REFUSED: u8 = 1;
    /// No answer: a usage error, an I/O or connection problem; `status`: the timeout passed.
    pub const NO_ANSWER: u8 = 2;
    /// The rollout (or analysis run) named does not exist.
    pub const NOT_FOUND: u8 = 3;
    /// `promote`, `abort`, `retry rollout`: nothing to act on ("nothing to abort: rollout is
    /// Healthy"); nothing was changed.
    pub const NOTHING_TO_DO: u8 = 4;
}

/// Prints diagnostics to stderr, one per line with its `help:` line.
pub fn print_diagnostics(diags: &Diagnostics) {
    for d in diags.iter() {
        eprintln!("{d}");
    }
}

/// "1 error", "2 warnings".
pub fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
