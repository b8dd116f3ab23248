//! The controller's error type.

/// What went wrong in the Kubernetes backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed; `what` names the call and the object.
    #[error("{what}: {source}")]
    Kube {
        /// The call, e.g. `patch service default/app-active`.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The finalizer helper failed (adding or removing the finalizer, or apply/cleanup).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// An object lacks a field the API server always sets (name, namespace): should not happen.
    #[error("object has no {0}")]
    MissingField(&'static str),
    /// JSON (de)serialisation of an object failed.
    #[error("serialising {what}: {source}")]
    Json {
        /// What was being serialised.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// No kubeconfig or in-cluster configuration could be loaded.
    #[error("loading Kubernetes configuration: {0}")]
    Config(String),
    /// The metrics and health server could not bind or serve.
    #[error("metrics server on {addr}: {source}")]
    Server {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A watch cache's writer is gone: the controller is shutting down.
    #[error("the watch caches are closed")]
    CacheClosed,
    /// A route the Rollout's `trafficRouting` names cannot be used as it says (the object or a
    /// route, rule or subset in it is missing), or its gateway refused it: what and which.
    #[error("{0}")]
    Route(String),
    /// Another instance took over the leader Lease; this one stops.
    #[error("leadership lost: lease {0} is held by another instance")]
    LeaseLost(String),
}

impl Error {
    /// Wraps a client error with the call it came from.
    pub(crate) fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            what: what.into(),
            source,
        }
    }

    /// A stable label for metrics, independent of message text.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube { source, .. } => match source {
                kube::Error::Api(s) if s.code == 409 => "conflict",
                kube::Error::Api(s) if s.code == 404 => "not_found",
                kube::Error::Api(_) => "api",
                _ => "client",
            },
            Self::Finalizer(_) => "finalizer",
            Self::MissingField(_) => "missing_field",
            Self::Json { .. } => "json",
            Self::Config(_) => "config",
            Self::Server { .. } => "server",
            Self::LeaseLost(_) => "lease_lost",
            Self::Route(_) => "route",
            Self::CacheClosed => "cache_closed",
        }
    }
}

impl Error {
    /// The API server refused the call for a reason that retrying will not change (a bad
    /// request, an invalid object, a missing permission), or a managed route is unusable or
    /// refused by its gateway: what was said, for status and events.
    pub fn refusal(&self) -> Option<String> {
        match self {
            Self::Kube {
                what,
                source: kube::Error::Api(s),
            } if matches!(s.code, 400 | 403 | 422) => Some(format!(
                "the API server refused a change: {what}: {} ({})",
                s.message, s.reason
            )),
            Self::Route(message) => Some(message.clone()),
            _ => None,
        }
    }
}

/// The API answered 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The API answered 409 (already exists, or a stale resourceVersion).
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
