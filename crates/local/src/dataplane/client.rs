//! The daemon's side of the wire: one HTTP/1.1 exchange per call on a fresh connection to the
//! Unix socket. Connections are cheap here, and a fresh one never outlives a data plane that
//! was replaced.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use super::protocol::ErrorBody;

/// Why a call to the data plane failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing listens on the socket (the data plane is not running).
    #[error("cannot reach the data plane at {path}: {source}")]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The exchange broke (the data plane died while answering).
    #[error("data plane connection failed: {0}")]
    Http(#[from] hyper::Error),
    /// It answered with an error.
    #[error("data plane answered {status}: {message}")]
    Status {
        /// The status.
        status: StatusCode,
        /// Its message.
        message: String,
    },
    /// It answered something that is not the expected JSON.
    #[error("data plane answered unreadable JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// No answer in time.
    #[error("data plane did not answer within {0:?}")]
    Timeout(Duration),
}

/// Sends one request and returns the answer's body, or its error.
pub async fn call_raw(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    limit: Duration,
) -> Result<Bytes, CallError> {
    let exchange = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|source| CallError::Connect {
                path: socket.display().to_string(),
                source,
            })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "data-plane");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| CallError::Status {
                status: StatusCode::BAD_REQUEST,
                message: format!("invalid request {path}: {e}"),
            })?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        driver.abort();
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(CallError::Status { status, message });
        }
        Ok(bytes)
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| CallError::Timeout(limit))?
}

/// Sends `body` as JSON (if any) and reads a JSON answer.
pub async fn call<T: DeserializeOwned>(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<&impl Serialize>,
    limit: Duration,
) -> Result<T, CallError> {
    let body = body.map(serde_json::to_vec).transpose()?;
    let bytes = call_raw(socket, method, path, body, limit).await?;
    Ok(serde_json::from_slice(&bytes)?)
}
