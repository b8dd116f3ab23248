//! jemalloc settings for cutover's long-running processes: the Kubernetes controller, and the
//! single-host daemon and data plane (`cutover up`, `cutover data-plane`).
//!
//! A reconcile wave (an update over 1,000 Rollouts, a relist after a watch expired) frees
//! megabytes at once; so do thousands of idle keep-alive connections being parked by the
//! router. jemalloc keeps freed pages dirty for ten seconds by default and purges them only
//! when the arena that holds them is used again, so an idle process can sit on them for a long
//! time. A background thread purging after one second returns them to the kernel whether or
//! not the process is busy. Both the `cutover controller` binary and the bench enter
//! [`crate::cli::run`], which applies these settings first; `cutover up` and `cutover
//! data-plane` apply them at start.

use tikv_jemalloc_ctl::{Access, AsName};

/// How long freed pages stay dirty before jemalloc purges them (default 10 s).
const DIRTY_DECAY_MS: isize = 1_000;

/// Applies the settings; a failure (the binary uses another allocator) changes nothing and is
/// only logged, as memory use is not a reason to refuse to run.
pub fn tune_for_daemon() {
    if let Err(e) = apply() {
        tracing::debug!(error = %e, "jemalloc settings not applied");
    }
}

fn apply() -> tikv_jemalloc_ctl::Result<()> {
    // The default for arenas created from now on (one per worker thread, lazily) ...
    write_ms("arenas.dirty_decay_ms\0", DIRTY_DECAY_MS)?;
    write_ms("arenas.muzzy_decay_ms\0", 0)?;
    // ... and the arenas that exist already (the main thread's).
    let arenas = tikv_jemalloc_ctl::arenas::narenas::read()?;
    for arena in 0..arenas {
        let dirty = format!("arena.{arena}.dirty_decay_ms\0");
        let muzzy = format!("arena.{arena}.muzzy_decay_ms\0");
        // An arena index that was never initialized answers EFAULT: nothing to tune there.
        let _ = write_ms(&dirty, DIRTY_DECAY_MS);
        let _ = write_ms(&muzzy, 0);
    }
    tikv_jemalloc_ctl::background_thread::write(true)
}

/// Writes a decay time (jemalloc's `ssize_t` milliseconds) at the NUL-terminated key `key`.
fn write_ms(key: &str, ms: isize) -> tikv_jemalloc_ctl::Result<()> {
    key.name().write(ms)
}
