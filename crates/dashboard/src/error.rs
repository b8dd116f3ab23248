//! The dashboard's one error type: what went wrong starting it, and what a backend answered.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the dashboard could not start, or what a backend answered instead of doing something.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A flag's value cannot be used; the message names the flag and what to give instead.
    #[error("{0}")]
    Options(String),
    /// The address cannot be listened on.
    #[error("cannot listen on {address}: {source}; pick another with --address HOST:PORT")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate or key for TLS cannot be used.
    #[error("TLS {what} {path}: {message}")]
    Tls {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why, and what to do.
        message: String,
    },
    /// The token file cannot be read, written, or is readable by others.
    #[error("token file {path}: {message}")]
    Token {
        /// The file.
        path: PathBuf,
        /// Why, and what to do.
        message: String,
    },
    /// The backend refused the request as asked (a container or revision that does not exist).
    #[error("{0}")]
    Refused(String),
    /// The rollout named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The rollout's state leaves nothing to act on ("nothing to promote: rollout is Healthy").
    #[error("{0}")]
    NothingToDo(String),
    /// The backend's access control refused (Kubernetes RBAC: the user's kubeconfig may not
    /// patch the Rollout).
    #[error("{0}")]
    Forbidden(String),
    /// The backend could not be reached or failed.
    #[error("{0}")]
    Unavailable(String),
}

impl DashboardError {
    /// The HTTP status this answer maps to when the page asked for it.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Self::Refused(_) | Self::Options(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::NothingToDo(_) => StatusCode::CONFLICT,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Unavailable(_) => StatusCode::BAD_GATEWAY,
            Self::Bind { .. } | Self::Tls { .. } | Self::Token { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}
