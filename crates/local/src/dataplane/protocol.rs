//! The control protocol between the daemon and the data-plane process: HTTP/1.1 with JSON
//! bodies on the Unix socket `<state-dir>/data-plane.sock`.
//!
//! | request | body | answer |
//! |---|---|---|
//! | `GET /v1/hello` | | [`Hello`]: protocol version, pid, settings |
//! | `PUT /v1/services/{name}` | [`ServiceRequest`] | [`ServiceStatus`]: binds the listener if it has none (the table installed before the first accept), else installs the table |
//! | `GET /v1/status?after=V` | | [`StatusReport`], once its version passed `V` (or after [`STATUS_WAIT`]) |
//! | `GET /v1/metrics` | | the router's OpenMetrics text |
//! | `POST /v1/switches` | [`SwitchRecord`] | `204`: a measured switch latency for the histogram |
//! | `POST /v1/shutdown` | | `202`: stop accepting, drain, exit |
//!
//! Errors are `{"error": "..."}` with a 4xx/5xx status. The version is [`PROTOCOL`]; a change
//! that an older daemon could misread takes a new number and new paths, while `/v1/hello` and
//! `/v1/shutdown` stay in every version so that any daemon can find out what runs and replace
//! it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use cutover_router::{
    HeaderMatch, HeaderRoute, MirrorRule, RouteTable, RouterConfig, WeightedRevision,
};
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL: u32 = 1;

/// The longest a status request waits for a change before it answers anyway.
pub const STATUS_WAIT: Duration = Duration::from_secs(1);

/// Socket, lock and pid files in the state directory.
pub const SOCKET_FILE: &str = "data-plane.sock";
/// Held by the running data plane: one per state directory.
pub const LOCK_FILE: &str = "data-plane.lock";
/// `{pid, protocol, version}` of the running data plane.
pub const INFO_FILE: &str = "data-plane.json";

/// What the data plane says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version it speaks.
    pub protocol: u32,
    /// cutover version of its binary.
    pub version: String,
    /// Its process id.
    pub pid: u32,
    /// Random per process start: a new value means a new data plane with no state.
    pub instance: u64,
    /// The settings it runs with (fixed for its lifetime).
    pub config: WireConfig,
}

/// Identifies a table a daemon sent: its session (random per daemon start) and a sequence
/// number that grows with every table that daemon sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableId {
    /// Random per daemon start.
    pub session: u64,
    /// Grows with every table sent in the session.
    pub seq: u64,
}

/// Bind a Service (if it has no listener) and install its table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceRequest {
    /// Where to listen, used only when the Service has no listener yet.
    pub addr: SocketAddr,
    /// The table to install.
    pub table: WireTable,
    /// The table's identity, echoed in the status.
    pub table_id: TableId,
}

/// One Service as the data plane runs it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// Where it listens.
    pub addr: Option<SocketAddr>,
    /// Generation of the live table (0: none installed).
    pub generation: u64,
    /// The identity of the live table, as the daemon sent it.
    pub table_id: Option<TableId>,
    /// Revisions it still sends traffic to (see `ServiceHandle::serving`), sorted.
    pub serving: Vec<String>,
    /// Generations whose drain has not finished.
    pub pending_drains: Vec<u64>,
    /// Open client connections.
    pub connections: usize,
}

/// Every Service, with a version that grows whenever a table is installed or a drain ends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The data plane instance ([`Hello::instance`]).
    pub instance: u64,
    /// Grows with every install and finished drain.
    pub version: u64,
    /// Every Service, by name.
    pub services: Vec<ServiceStatus>,
}

/// A measured switch latency.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SwitchRecord {
    /// The active Service.
    pub service: String,
    /// Install to verified, in seconds.
    pub seconds: f64,
}

/// An error answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub error: String,
}

/// [`RouterConfig`] on the wire, durations in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireConfig {
    /// [`RouterConfig::drain_timeout`].
    pub drain_timeout_ms: u64,
    /// [`RouterConfig::mirror_max_in_flight`].
    pub mirror_max_in_flight: usize,
    /// [`RouterConfig::mirror_timeout`].
    pub mirror_timeout_ms: u64,
    /// [`RouterConfig::mirror_max_body`].
    pub mirror_max_body: usize,
    /// [`RouterConfig::backend_connect_timeout`].
    pub backend_connect_timeout_ms: u64,
    /// [`RouterConfig::header_read_timeout`].
    pub header_read_timeout_ms: u64,
    /// [`RouterConfig::idle_timeout`].
    pub idle_timeout_ms: u64,
    /// [`RouterConfig::max_connections`].
    pub max_connections: usize,
    /// [`RouterConfig::response_timeout`].
    pub response_timeout_ms: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&RouterConfig> for WireConfig {
    fn from(c: &RouterConfig) -> Self {
        Self {
            drain_timeout_ms: ms(c.drain_timeout),
            mirror_max_in_flight: c.mirror_max_in_flight,
            mirror_timeout_ms: ms(c.mirror_timeout),
            mirror_max_body: c.mirror_max_body,
            backend_connect_timeout_ms: ms(c.backend_connect_timeout),
            header_read_timeout_ms: ms(c.header_read_timeout),
            idle_timeout_ms: ms(c.idle_timeout),
            max_connections: c.max_connections,
            response_timeout_ms: ms(c.response_timeout),
        }
    }
}

impl From<&WireConfig> for RouterConfig {
    fn from(c: &WireConfig) -> Self {
        Self {
            drain_timeout: Duration::from_millis(c.drain_timeout_ms),
            mirror_max_in_flight: c.mirror_max_in_flight,
            mirror_timeout: Duration::from_millis(c.mirror_timeout_ms),
            mirror_max_body: c.mirror_max_body,
            backend_connect_timeout: Duration::from_millis(c.backend_connect_timeout_ms),
            header_read_timeout: Duration::from_millis(c.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
            max_connections: c.max_connections,
            response_timeout: Duration::from_millis(c.response_timeout_ms),
        }
    }
}

/// [`RouteTable`] on the wire.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WireTable {
    /// Ready endpoints per revision.
    pub backends: BTreeMap<String, Vec<SocketAddr>>,
    /// `(revision, weight)` of requests matching no header route.
    pub weights: Vec<(String, u32)>,
    /// Checked in order, first match wins.
    pub header_routes: Vec<WireHeaderRoute>,
    /// `(revision, percent)` of mirrored requests.
    pub mirror: Option<(String, f64)>,
    /// Response timeout in milliseconds (None: the data plane's default; 0: none).
    pub response_timeout_ms: Option<u64>,
}

/// A header route on the wire: exactly one of `exact`, `prefix`, `regex`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WireHeaderRoute {
    /// Header name.
    pub header: String,
    /// Whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Value prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Regular expression matched against the whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Where matching requests go.
    pub revision: String,
}

impl WireTable {
    /// Revisions this table sends requests to (weight > 0 or a header route), sorted.
    pub fn routable(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .weights
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|(r, _)| r.clone())
            .chain(self.header_routes.iter().map(|h| h.revision.clone()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The router's table. A header route whose regex does not compile is an error naming it.
    pub fn to_table(&self) -> Result<RouteTable, String> {
        let mut header_routes = Vec::with_capacity(self.header_routes.len());
        for route in &self.header_routes {
            let matcher = match (&route.exact, &route.prefix, &route.regex) {
                (Some(v), None, None) => HeaderMatch::Exact(v.clone()),
                (None, Some(v), None) => HeaderMatch::Prefix(v.clone()),
                (None, None, Some(v)) => HeaderMatch::Regex(
                    regex::Regex::new(v)
                        .map_err(|e| format!("header route on {}: {e}", route.header))?,
                ),
                _ => {
                    return Err(format!(
                        "header route on {}: give exactly one of exact, prefix, regex",
                        route.header
                    ));
                }
            };
            header_routes.push(HeaderRoute {
                header: route.header.clone(),
                matcher,
                revision: route.revision.clone(),
            });
        }
        Ok(RouteTable {
            backends: self.backends.clone(),
            default_route: self
                .weights
                .iter()
                .map(|(revision, weight)| WeightedRevision {
                    revision: revision.clone(),
                    weight: *weight,
                })
                .collect(),
            header_routes,
            mirror: self.mirror.as_ref().map(|(revision, percent)| MirrorRule {
                revision: revision.clone(),
                percent: *percent,
            }),
            response_timeout: self.response_timeout_ms.map(Duration::from_millis),
        })
    }
}

impl From<&RouteTable> for WireTable {
    fn from(t: &RouteTable) -> Self {
        Self {
            backends: t.backends.clone(),
            weights: t
                .default_route
                .iter()
                .map(|w| (w.revision.clone(), w.weight))
                .collect(),
            header_routes: t
                .header_routes
                .iter()
                .map(|h| {
                    let mut wire = WireHeaderRoute {
                        header: h.header.clone(),
                        revision: h.revision.clone(),
                        ..WireHeaderRoute::default()
                    };
                    match &h.matcher {
                        HeaderMatch::Exact(v) => wire.exact = Some(v.clone()),
                        HeaderMatch::Prefix(v) => wire.prefix = Some(v.clone()),
                        HeaderMatch::Regex(re) => wire.regex = Some(re.as_str().to_owned()),
                    }
                    wire
                })
                .collect(),
            mirror: t.mirror.as_ref().map(|m| (m.revision.clone(), m.percent)),
            response_timeout_ms: t.response_timeout.map(ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_settings_survive_the_wire() {
        let mut table = RouteTable::single("abc", vec!["127.0.0.1:9000".parse().expect("addr")]);
        table.header_routes.push(HeaderRoute {
            header: "x-canary".into(),
            matcher: HeaderMatch::Regex(regex::Regex::new("tr.e").expect("regex")),
            revision: "def".into(),
        });
        table.mirror = Some(MirrorRule {
            revision: "def".into(),
            percent: 12.5,
        });
        table.response_timeout = Some(Duration::from_secs(30));
        let wire = WireTable::from(&table);
        let json = serde_json::to_string(&wire).expect("json");
        let back: WireTable = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, wire);
        let again = WireTable::from(&back.to_table().expect("table"));
        assert_eq!(again, wire);
        assert_eq!(wire.routable(), vec!["abc".to_string(), "def".to_string()]);

        let config = RouterConfig::default();
        assert_eq!(RouterConfig::from(&WireConfig::from(&config)), config);
    }

    #[test]
    fn a_header_route_with_two_matchers_is_refused_with_its_header() {
        let wire = WireTable {
            header_routes: vec![WireHeaderRoute {
                header: "x-a".into(),
                exact: Some("1".into()),
                prefix: Some("1".into()),
                ..WireHeaderRoute::default()
            }],
            ..WireTable::default()
        };
        let error = wire.to_table().expect_err("refused");
        assert!(error.contains("x-a"), "{error}");
    }
}
