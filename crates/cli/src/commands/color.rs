//! Whether to print colours (and the control sequences of the live view).
//!
//! Colour goes only to a terminal, and never when `--no-color` is given or `NO_COLOR` is set
//! to a non-empty value (no-color.org). Logs follow the same rule on stderr, so a daemon's log
//! file never holds escape sequences.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once from `--no-color` before any verb runs.
static REFUSED_BY_FLAG: AtomicBool = AtomicBool::new(false);

/// Records `--no-color`.
pub fn init(no_color_flag: bool) {
    REFUSED_BY_FLAG.store(no_color_flag, Ordering::Relaxed);
}

/// Colour on stdout.
pub fn stdout() -> bool {
    allowed(no_color_env().as_deref()) && std::io::stdout().is_terminal()
}

/// Colour in logs on stderr.
pub fn stderr() -> bool {
    allowed(no_color_env().as_deref()) && std::io::stderr().is_terminal()
}

fn no_color_env() -> Option<String> {
    std::env::var_os("NO_COLOR").map(|v| v.to_string_lossy().into_owned())
}

/// The flag and the variable; an empty `NO_COLOR` does not count (no-color.org).
fn allowed(no_color: Option<&str>) -> bool {
    !REFUSED_BY_FLAG.load(Ordering::Relaxed) && no_color.is_none_or(str::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_counts_only_when_not_empty() {
        assert!(allowed(None));
        assert!(allowed(Some("")));
        assert!(!allowed(Some("1")));
        assert!(
            !allowed(Some("false")),
            "any non-empty value disables colour"
        );
    }
}
