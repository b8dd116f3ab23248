//! What every request must show before the dashboard answers it.
//!
//! - **Host**: an IP address, `localhost`, or a name given with `--allowed-host`. A page of
//!   another site that re-points its own name at 127.0.0.1 (DNS rebinding) sends its own name
//!   as Host and is refused, so it can neither read the pages nor reach the actions.
//! - **Origin** (when the browser sends one): the dashboard's own origin or an allowed host.
//! - **Mutations**: the bearer token in `Authorization`, never a cookie, so another site
//!   cannot make the browser act with ambient credentials.

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Headers on every answer: no script, style or frame from anywhere else, no referrer, no
/// content sniffing.
pub const SECURITY_HEADERS: &[(header::HeaderName, &str)] = &[
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// The checks, with what they compare against.
pub struct Guard {
    token: String,
    allowed_hosts: Vec<String>,
    scheme: &'static str,
}

/// A refused request: its status and the reason shown to the user.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

impl Guard {
    /// Checks against `token`, the extra host names, and the scheme served.
    pub fn new(token: String, allowed_hosts: &[String], tls: bool) -> Self {
        Self {
            token,
            allowed_hosts: allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            scheme: if tls { "https" } else { "http" },
        }
    }

    /// Host and Origin.
    pub fn check_request(&self, request: &Request) -> Result<(), Refusal> {
        // HTTP/2 carries the host in the URI's authority, HTTP/1.1 in the Host header.
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| request.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !self.host_allowed(&host) {
            return Err(Refusal {
                status: StatusCode::MISDIRECTED_REQUEST,
                message: format!(
                    "Host {host:?} is not this dashboard's: open it by IP address or \
                     localhost, or start it with --allowed-host {}",
                    strip_port(&host)
                ),
            });
        }
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
            if !self.origin_allowed(&origin, &host) {
                return Err(Refusal {
                    status: StatusCode::FORBIDDEN,
                    message: format!(
                        "requests from origin {origin:?} are refused: only pages of this \
                         dashboard ({}://{host}) may call it",
                        self.scheme
                    ),
                });
            }
        }
        Ok(())
    }

    /// The bearer token of a mutation.
    pub fn check_token(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if given.is_empty() || !same(given.as_bytes(), self.token.as_bytes()) {
            return Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: "missing or wrong token: give the token `cutover dashboard` printed \
                          at start (or the content of its --token-file)"
                    .into(),
            });
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = strip_port(host);
        if name.is_empty() {
            return false;
        }
        let ip = name.trim_start_matches('[').trim_end_matches(']');
        name == "localhost"
            || ip.parse::<std::net::IpAddr>().is_ok()
            || self
                .allowed_hosts
                .iter()
                .any(|allowed| allowed == host || allowed == name)
    }

    fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        (scheme == self.scheme && authority == host)
            || ((scheme == "http" || scheme == "https")
                && self
                    .allowed_hosts
                    .iter()
                    .any(|a| a == authority || a == strip_port(authority)))
    }
}

/// `name:port` → `name`; `[::1]:3100` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Equality in time that does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: &str, origin: Option<&str>) -> Request {
        let mut b = Request::builder().uri("/").header(header::HOST, host);
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b.body(axum::body::Body::empty()).unwrap_or_default()
    }

    #[test]
    fn hosts_are_ip_addresses_localhost_or_allowed_names() {
        let g = Guard::new("t".repeat(32), &["dash.example.com".into()], false);
        for ok in [
            "127.0.0.1:3100",
            "localhost:3100",
            "[::1]:3100",
            "10.0.0.5",
            "dash.example.com:443",
        ] {
            assert!(g.check_request(&request(ok, None)).is_ok(), "{ok}");
        }
        for bad in ["evil.example:3100", "", "127.0.0.1.nip.io:3100"] {
            assert!(g.check_request(&request(bad, None)).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_must_be_the_dashboards_own() {
        let g = Guard::new("t".repeat(32), &[], false);
        let host = "127.0.0.1:3100";
        assert!(
            g.check_request(&request(host, Some("http://127.0.0.1:3100")))
                .is_ok()
        );
        for bad in [
            "http://evil.example",
            "https://127.0.0.1:3100",
            "null",
            "http://localhost:3100",
        ] {
            assert!(g.check_request(&request(host, Some(bad))).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        let g = Guard::new("secret-token-0123456789".into(), &[], false);
        let mut h = HeaderMap::new();
        assert!(g.check_token(&h).is_err());
        h.insert(
            header::AUTHORIZATION,
            "Bearer secret-token-0123456788"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        assert!(g.check_token(&h).is_err());
        h.insert(
            header::AUTHORIZATION,
            "Bearer secret-token-0123456789"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        assert!(g.check_token(&h).is_ok());
    }
}
