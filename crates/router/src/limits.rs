//! The open-files budget. Every client connection may need a second descriptor for its backend
//! request, and the process needs some for everything else (the control socket, logs, the
//! backend pool, refusals in progress), so client connections get half of what is left after a
//! reserve. Running out of descriptors is what turned idle sockets into an outage: accept,
//! probes and the store all failed at once.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The open-files limit of this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit (the most the soft one can be raised to).
    pub hard: u64,
    /// The soft limit before [`raise_fd_limit`] raised it, when it did.
    pub raised_from: Option<u64>,
}

/// Soft limit assumed when it cannot be read.
const FALLBACK_SOFT: u64 = 1024;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (many systems start processes at 1,024
/// while allowing far more) and returns the result. A failure leaves the limit as it was; the
/// connection budget follows whatever is in force.
pub fn raise_fd_limit() -> std::io::Result<FdLimit> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft >= hard {
        return Ok(FdLimit {
            soft,
            hard,
            raised_from: None,
        });
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    Ok(FdLimit {
        soft: hard,
        hard,
        raised_from: Some(soft),
    })
}

/// The soft open-files limit in force.
pub fn current_soft_limit() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(FALLBACK_SOFT, |(soft, _)| soft)
}

/// Descriptors held back from client connections for a soft limit of `soft`.
pub fn fd_reserve(soft: u64) -> u64 {
    128 + soft / 16
}

/// How many client connections (all listeners together) fit in a soft limit of `soft`.
pub fn connection_budget(soft: u64) -> usize {
    let budget = soft.saturating_sub(fd_reserve(soft)) / 2;
    usize::try_from(budget).unwrap_or(usize::MAX).max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_leaves_a_reserve_and_a_backend_descriptor_per_connection() {
        assert_eq!(connection_budget(1024), (1024 - 128 - 64) / 2);
        assert_eq!(connection_budget(512), (512 - 128 - 32) / 2);
        assert_eq!(connection_budget(100), 16);
        assert!(connection_budget(1 << 20) > 400_000);
    }
}
