//! The supervisor's one error type.

use std::path::PathBuf;

/// Why the supervisor could not run a revision as asked.
///
/// Problems with the pod template are reported when [`super::Supervisor::scale`] or
/// [`super::Supervisor::adopt`] is called, before anything starts, so that a bad manifest fails
/// loudly instead of crash-looping. Problems that happen while a replica runs (a missing program,
/// a crash, a failing probe) are not errors: they show in [`super::ReplicaStatus::last_exit`].
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The pod template has no `spec` or an empty `spec.containers`.
    #[error(
        "rollout {rollout} revision {hash}: the pod template has no containers; add at least one under spec.template.spec.containers"
    )]
    NoContainers { rollout: String, hash: String },

    /// A container has no `command`: the single-host backend starts programs, not images.
    #[error(
        "rollout {rollout} revision {hash} container {container:?}: no `command`; the single-host backend runs local processes and cannot use the image's entrypoint, so set `command` (and `args`) to the program to run (no shell is involved)"
    )]
    MissingCommand {
        rollout: String,
        hash: String,
        container: String,
    },

    /// A part of the pod template that the single-host backend cannot honour and that would change
    /// behaviour if silently ignored (env sources, init containers, gRPC or HTTPS probes, ...).
    #[error("rollout {rollout} revision {hash} container {container:?}: {what}; {hint}")]
    Unsupported {
        rollout: String,
        hash: String,
        container: String,
        /// What was found, naming the field.
        what: String,
        /// What to do instead.
        hint: String,
    },

    /// The supervisor was called outside a tokio runtime, so it cannot start background tasks.
    #[error(
        "cutover's supervisor must be called from inside a tokio runtime ({operation}); run it from the daemon's async context"
    )]
    NoRuntime { operation: &'static str },

    /// No free TCP port on 127.0.0.1 could be reserved for a replica.
    #[error(
        "rollout {rollout} revision {hash} replica {index}: could not find a free port on 127.0.0.1: {source}"
    )]
    Port {
        rollout: String,
        hash: String,
        index: u32,
        source: std::io::Error,
    },

    /// A rollout or revision name cannot be a directory name under the log directory.
    #[error(transparent)]
    UnsafeName(#[from] crate::private::UnsafeName),

    /// The log directory for a revision could not be created.
    #[error("could not create the log directory {path}: {source}; check that log_dir is writable")]
    LogDir {
        path: PathBuf,
        source: std::io::Error,
    },
}
