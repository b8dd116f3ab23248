//! cutover's data plane: one listener per Service, routing to the ready backends of the
//! revisions named by an atomically swapped route table, with header routes, weighted (sticky)
//! split, mirroring, drain on switch and Prometheus metrics.
//!
//! The switch model: [`ServiceHandle::install`] swaps one immutable snapshot; backends that
//! left the table drain (refuse new requests, close upgraded connections at once, let in-flight
//! requests finish until [`RouterConfig::drain_timeout`], then cancel them).
//! [`ServiceHandle::drained`] and [`ServiceHandle::serving`] are what the planner verifies with.

mod body;
mod client_io;
mod conn;
mod counters;
mod error;
mod headers;
mod limits;
mod listener;
mod metrics;
mod mirror;
mod proxy;
mod service;
mod state;
mod table;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use counters::RevisionCounters;
pub use error::RouterError;
pub use limits::{FdLimit, connection_budget, current_soft_limit, fd_reserve, raise_fd_limit};
pub use service::ServiceHandle;
pub use table::{
    HeaderMatch, HeaderRoute, MirrorRule, RouteTable, STICKY_COOKIE, STICKY_HEADER,
    WeightedRevision,
};

use metrics::ServiceLabels;
use service::{ServiceInner, Shared};

/// Router settings. A zero duration turns its timeout off.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterConfig {
    /// How long requests on a removed backend may finish before they are cancelled.
    pub drain_timeout: Duration,
    /// Mirror copies in flight per Service; when full, copies are skipped, never queued.
    pub mirror_max_in_flight: usize,
    /// A mirror copy still running after this is abandoned.
    pub mirror_timeout: Duration,
    /// Request bodies larger than this are not mirrored (and not buffered beyond it).
    pub mirror_max_body: usize,
    /// Connecting to a backend longer than this fails the request with 502.
    pub backend_connect_timeout: Duration,
    /// A client must send a whole request head within this after connecting (and, on an
    /// HTTP/1.1 keep-alive connection, after its previous response), or the connection is
    /// closed: a half-sent request or a silent socket does not hold a connection.
    pub header_read_timeout: Duration,
    /// A connection on which no request was made for this long is closed (HTTP/1.1 and h2c).
    pub idle_timeout: Duration,
    /// Open client connections per Service listener. Beyond it (or beyond the process's
    /// open-files budget) a new connection is answered `503` with `Connection: close`.
    pub max_connections: usize,
    /// Time from forwarding a whole request to the response head, for routes whose table sets
    /// none; a backend slower than this gets the client a `504`.
    pub response_timeout: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(30),
            mirror_max_in_flight: 64,
            mirror_timeout: Duration::from_secs(5),
            mirror_max_body: 1024 * 1024,
            backend_connect_timeout: Duration::from_secs(2),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            response_timeout: Duration::from_secs(15),
        }
    }
}

/// The data plane of one host. Cheap to clone; clones share listeners, tables and metrics.
#[derive(Clone)]
pub struct Router {
    inner: Arc<RouterInner>,
}

struct RouterInner {
    shared: Arc<Shared>,
    services: Mutex<BTreeMap<String, ServiceHandle>>,
    /// Stops accept loops and asks connections to finish gracefully.
    stop: CancellationToken,
    /// Cancels every in-flight request (shutdown's deadline).
    cancel_root: CancellationToken,
    /// Closes every upgraded connection (shutdown's start).
    upgrades_root: CancellationToken,
    connections: TaskTracker,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("config", &self.inner.shared.config)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router whose client connections share the open-files budget of the soft limit in
    /// force now (call [`raise_fd_limit`] first).
    pub fn new(config: RouterConfig) -> Self {
        let client = proxy::client(&config);
        let shared = Arc::new(Shared {
            config,
            client,
            metrics: metrics::Metrics::new(),
            epoch: tokio::time::Instant::now(),
            connections: AtomicUsize::new(0),
            connection_budget: connection_budget(current_soft_limit()),
            refusals: Arc::new(Semaphore::new(listener::REFUSAL_SLOTS)),
            changes: watch::Sender::new(0),
        });
        Self {
            inner: Arc::new(RouterInner {
                shared,
                services: Mutex::new(BTreeMap::new()),
                stop: CancellationToken::new(),
                cancel_root: CancellationToken::new(),
                upgrades_root: CancellationToken::new(),
                connections: TaskTracker::new(),
            }),
        }
    }

    /// Starts a listener for a Service. Until a table is installed every request gets 503.
    pub async fn bind(
        &self,
        service: &str,
        addr: SocketAddr,
    ) -> Result<ServiceHandle, RouterError> {
        self.bind_with(service, addr, None).await
    }

    /// Starts a listener for a Service whose first table is installed before the first
    /// connection is accepted, so a listener that opens again after a restart never answers
    /// from an empty table. Connections arriving meanwhile wait in the kernel's backlog.
    pub async fn bind_with(
        &self,
        service: &str,
        addr: SocketAddr,
        table: Option<RouteTable>,
    ) -> Result<ServiceHandle, RouterError> {
        let inner = &self.inner;
        if inner.stop.is_cancelled() {
            return Err(RouterError::ShuttingDown);
        }
        if self.service(service).is_some() {
            return Err(RouterError::AlreadyBound(service.to_owned()));
        }
        let bind_error = |source| RouterError::Bind {
            service: service.to_owned(),
            addr,
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        let handle = ServiceHandle {
            inner: Arc::new(ServiceInner::new(
                service,
                local,
                Arc::clone(&inner.shared),
                inner.cancel_root.child_token(),
                inner.upgrades_root.child_token(),
            )),
        };
        {
            let mut services = inner
                .services
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Another bind of the same name may have won the race while we were binding.
            if services.contains_key(service) {
                return Err(RouterError::AlreadyBound(service.to_owned()));
            }
            services.insert(service.to_owned(), handle.clone());
        }
        inner
            .shared
            .metrics
            .generation
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .set(0);
        if let Some(table) = table {
            handle.install(table);
        }
        inner.connections.spawn(listener::accept_loop(
            listener,
            Arc::clone(&handle.inner),
            inner.stop.clone(),
            inner.connections.clone(),
        ));
        tracing::info!(service, addr = %local, "service listening");
        Ok(handle)
    }

    pub fn service(&self, name: &str) -> Option<ServiceHandle> {
        self.inner
            .services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Every Service bound, by name.
    pub fn services(&self) -> Vec<ServiceHandle> {
        self.inner
            .services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// A counter bumped on every table install and every finished drain: what a watcher of
    /// [`ServiceHandle::serving`] waits on.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.shared.changes.subscribe()
    }

    /// How many client connections the open-files budget allows, all listeners together.
    pub fn connection_budget(&self) -> usize {
        self.inner.shared.connection_budget
    }

    /// The settings this router runs with.
    pub fn config(&self) -> &RouterConfig {
        &self.inner.shared.config
    }

    /// OpenMetrics text of all metrics.
    pub fn metrics_text(&self) -> String {
        self.inner.shared.metrics.encode()
    }

    /// Cumulative request counters and latency histogram of one revision behind one Service,
    /// or None when it has served nothing yet.
    pub fn revision_counters(&self, service: &str, revision: &str) -> Option<RevisionCounters> {
        counters::parse(&self.metrics_text(), service, revision)
    }

    /// The counters of one revision read from metrics text this router (or another process
    /// running one) produced.
    pub fn counters_from_metrics(
        text: &str,
        service: &str,
        revision: &str,
    ) -> Option<RevisionCounters> {
        counters::parse(text, service, revision)
    }

    /// Records a measured switch latency (install to verified) for `service`.
    pub fn record_switch(&self, service: &str, seconds: f64) {
        self.inner
            .shared
            .metrics
            .switch
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .observe(seconds);
    }

    /// Stops accepting, closes upgraded connections, lets in-flight requests finish until the
    /// drain timeout, cancels the rest, and returns.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stop.cancel();
        inner.upgrades_root.cancel();
        inner.connections.close();
        let deadline = inner.shared.config.drain_timeout;
        if tokio::time::timeout(deadline, inner.connections.wait())
            .await
            .is_err()
        {
            inner.cancel_root.cancel();
            // Cancelled requests end promptly; a peer that never reads does not hold us.
            let _ = tokio::time::timeout(Duration::from_secs(1), inner.connections.wait()).await;
        }
        inner.cancel_root.cancel();
    }
}
