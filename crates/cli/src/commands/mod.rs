//! One module per verb.

pub mod analysis;
pub mod convert;
pub mod crds;
pub mod demo;
pub mod get;
pub mod lint;
pub mod logs;
pub mod migrate;
pub mod source;
pub mod target;
pub mod up;
pub mod verbs;
pub mod version;

use cutover_manifest::Diagnostics;

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
