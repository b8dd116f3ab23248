//! Errors: [`RouterError`] for the control API, [`ProxyError`] for one proxied request, and the
//! single place where a proxy error becomes a client response ([`error_response`]).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Response, StatusCode};

/// Errors of the router's control API.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The listener address could not be bound (in use, not local, no permission).
    #[error(
        "cannot listen for service {service} on {addr}: {source}; pick a free port or stop whatever holds it"
    )]
    Bind {
        service: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A Service of this name already has a listener on this router.
    #[error("service {0} is already bound; use Router::service to get its handle")]
    AlreadyBound(String),
    /// The router is shutting down and takes no new listener.
    #[error("the router is shutting down")]
    ShuttingDown,
}

/// Why one request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// No table installed yet, or its routes are empty or all zero weight.
    #[error("no revision")]
    NoRevision,
    /// The chosen routes name revisions, but none has a backend that accepts requests.
    #[error("no healthy backend")]
    NoHealthyBackend,
    /// The backend refused or did not accept the connection in time.
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: hyper_util::client::legacy::Error,
    },
    /// The backend failed after the connection was made (reset, bad response).
    #[error("backend {addr}: {source}")]
    Backend {
        addr: SocketAddr,
        source: hyper_util::client::legacy::Error,
    },
    /// The backend sent no response head within the route's response timeout.
    #[error("no response within {0:?}")]
    Timeout(std::time::Duration),
    /// The backend's revision was drained and its deadline passed, or the router shut down.
    #[error("cancelled by drain")]
    Cancelled,
    /// The request could not be turned into a backend request.
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// The one mapping from a proxy error to what the client sees.
pub(crate) fn error_response<B: From<Bytes>>(service: &str, error: &ProxyError) -> Response<B> {
    let (status, message) = match error {
        ProxyError::NoRevision => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("service {service} has no revision\n"),
        ),
        // Like "no healthy upstream" in other proxies: nothing failed, nothing is ready yet
        // (a preview revision still starting, every endpoint ejected), so it is a 503 the
        // client may retry, not a 502.
        ProxyError::NoHealthyBackend => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no healthy backend for service {service}\n"),
        ),
        ProxyError::Connect { .. } | ProxyError::Backend { .. } => (
            StatusCode::BAD_GATEWAY,
            format!("backend of service {service} failed\n"),
        ),
        ProxyError::Timeout(after) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the backend of service {service} did not answer within {after:?} (annotation cutover.dev/response-timeout on the Service sets this)\n"
            ),
        ),
        ProxyError::Cancelled => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("service {service}: request cancelled by drain\n"),
        ),
        ProxyError::BadRequest(why) => (StatusCode::BAD_REQUEST, format!("{why}\n")),
    };
    let mut response = Response::new(B::from(Bytes::from(message)));
    *response.status_mut() = status;
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
