//! The immutable snapshot the request path reads, and the per-backend state that outlives
//! snapshots (in-flight counts, drain flags, cancellation tokens, passive-health ejection).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, RevisionMetrics};
use crate::table::{CompiledHeaderRoute, RouteTable};

/// One endpoint of one revision. Shared by every snapshot that keeps this (revision, address)
/// pair, so its in-flight count spans installs; replaced only when the pair leaves the table.
pub(crate) struct BackendState {
    pub addr: SocketAddr,
    /// `addr` as a URI authority, built once for the outgoing request URI.
    pub authority: http::uri::Authority,
    pub revision: Arc<str>,
    pub metrics: Arc<RevisionMetrics>,
    in_flight: AtomicUsize,
    draining: AtomicBool,
    /// Milliseconds since the service epoch until which the endpoint is skipped.
    ejected_until_ms: AtomicU64,
    /// Cancelled at the drain deadline (or router shutdown): in-flight requests are aborted.
    pub cancel: CancellationToken,
    /// Cancelled when the drain starts: upgraded connections are closed at once.
    pub upgrades: CancellationToken,
    /// Service-wide: wakes drain waiters when a draining backend's count reaches zero.
    notify: Arc<Notify>,
}

impl BackendState {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Starts the drain: no claim succeeds after this returns.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.upgrades.cancel();
    }

    /// Registers one request. The increment comes before the draining check (both SeqCst), so
    /// either the drain sees this request in flight or this request sees the drain and backs off.
    pub fn claim(self: &Arc<Self>) -> Option<InFlight> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.is_draining() {
            self.release();
            return None;
        }
        self.metrics.in_flight.inc();
        Some(InFlight {
            backend: Arc::clone(self),
            started: Instant::now(),
            observe: true,
        })
    }

    fn release(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 && self.is_draining() {
            self.notify.notify_waiters();
        }
    }

    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }

    pub fn eject(&self, now_ms: u64, period: Duration) {
        let until = now_ms.saturating_add(period.as_millis() as u64);
        self.ejected_until_ms.store(until, Ordering::Relaxed);
    }
}

/// A claimed request (or upgraded connection) on a backend; dropping it ends the claim and
/// records the request's duration.
pub(crate) struct InFlight {
    pub backend: Arc<BackendState>,
    started: Instant,
    /// False for mirror copies: they count as in flight but not in the request histogram.
    observe: bool,
}

impl InFlight {
    pub fn into_shadow(mut self) -> Self {
        self.observe = false;
        self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let metrics = &self.backend.metrics;
        metrics.in_flight.dec();
        if self.observe {
            metrics
                .duration
                .observe(self.started.elapsed().as_secs_f64());
        }
        self.backend.release();
    }
}

/// One revision in one snapshot.
pub(crate) struct RevisionState {
    pub name: Arc<str>,
    pub backends: Vec<Arc<BackendState>>,
    next: AtomicUsize,
}

impl RevisionState {
    /// Claims a backend round robin, skipping ejected endpoints unless `allow_ejected`.
    pub fn claim(&self, now_ms: u64, allow_ejected: bool) -> Option<InFlight> {
        let count = self.backends.len();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| &self.backends[(start + offset) % count])
            .filter(|b| allow_ejected || !b.is_ejected(now_ms))
            .find_map(|b| b.claim())
    }
}

/// What the request path reads: one immutable value per install.
pub(crate) struct Snapshot {
    pub generation: u64,
    pub revisions: Vec<Arc<RevisionState>>,
    /// (revision index, weight) with weight > 0.
    pub default_route: Vec<(usize, u32)>,
    pub total_weight: u64,
    pub header_routes: Vec<CompiledHeaderRoute>,
    pub mirror: Option<(usize, f64)>,
    /// Revisions the table can route to (weight > 0 or a header route target), sorted.
    pub routable: Vec<Arc<str>>,
    /// Longest wait for a response head once the request is forwarded; None: no limit.
    pub response_timeout: Option<Duration>,
}

impl Snapshot {
    pub fn empty() -> Self {
        Self {
            generation: 0,
            revisions: Vec::new(),
            default_route: Vec::new(),
            total_weight: 0,
            header_routes: Vec::new(),
            mirror: None,
            routable: Vec::new(),
            response_timeout: None,
        }
    }

    pub fn backends(&self) -> impl Iterator<Item = &Arc<BackendState>> {
        self.revisions.iter().flat_map(|r| r.backends.iter())
    }
}

/// What building a snapshot needs from the service.
pub(crate) struct BuildContext<'a> {
    pub service: &'a str,
    pub metrics: &'a Metrics,
    pub notify: &'a Arc<Notify>,
    /// Parent of every backend's request token (cancelled at shutdown's deadline).
    pub cancel_root: &'a CancellationToken,
    /// Parent of every backend's upgrade token (cancelled when shutdown starts).
    pub upgrades_root: &'a CancellationToken,
    /// The response timeout of tables that set none.
    pub default_response_timeout: Duration,
}

/// Builds the next snapshot from `table`, reusing the backend state of every (revision,
/// address) pair that `previous` already had. Returns the snapshot and the backends that left.
pub(crate) fn build(
    table: &RouteTable,
    previous: &Snapshot,
    generation: u64,
    cx: &BuildContext<'_>,
) -> (Snapshot, Vec<Arc<BackendState>>) {
    let mut existing: BTreeMap<(&str, SocketAddr), &Arc<BackendState>> = previous
        .backends()
        .map(|b| ((&*b.revision, b.addr), b))
        .collect();
    // Only revisions the table routes or mirrors to are kept: one it lists backends for but
    // sends nothing to drains like a removed one, so `drained` covers every way out of service.
    let mut names: Vec<&str> = table
        .default_route
        .iter()
        .filter(|w| w.weight > 0)
        .map(|w| w.revision.as_str())
        .collect();
    names.extend(table.header_routes.iter().map(|h| h.revision.as_str()));
    names.extend(
        table
            .mirror
            .iter()
            .filter(|m| m.percent > 0.0)
            .map(|m| m.revision.as_str()),
    );
    names.sort_unstable();
    names.dedup();

    let mut revisions = Vec::with_capacity(names.len());
    for name in &names {
        let shared_name: Arc<str> = Arc::from(*name);
        let metrics = Arc::new(cx.metrics.revision(cx.service, name));
        let mut addrs = table.backends.get(*name).cloned().unwrap_or_default();
        addrs.sort_unstable();
        addrs.dedup();
        let backends = addrs
            .into_iter()
            .map(|addr| match existing.remove(&(*name, addr)) {
                Some(kept) => Arc::clone(kept),
                None => new_backend(addr, &shared_name, &metrics, cx),
            })
            .collect();
        revisions.push(Arc::new(RevisionState {
            name: shared_name,
            backends,
            next: AtomicUsize::new(0),
        }));
    }
    let index = |name: &str| names.binary_search(&name).ok();

    let default_route: Vec<(usize, u32)> = table
        .default_route
        .iter()
        .filter(|w| w.weight > 0)
        .filter_map(|w| Some((index(&w.revision)?, w.weight)))
        .collect();
    let total_weight = default_route.iter().map(|(_, w)| u64::from(*w)).sum();
    let header_routes: Vec<CompiledHeaderRoute> = table
        .header_routes
        .iter()
        .filter_map(|route| {
            let compiled = CompiledHeaderRoute::compile(route, index(&route.revision)?);
            if compiled.is_none() {
                tracing::warn!(service = cx.service, header = %route.header, "header route ignored: invalid header name");
            }
            compiled
        })
        .collect();
    let mirror = table
        .mirror
        .as_ref()
        .filter(|m| m.percent > 0.0)
        .and_then(|m| Some((index(&m.revision)?, m.percent.min(100.0))));
    let mut routable: Vec<Arc<str>> = default_route
        .iter()
        .map(|(i, _)| *i)
        .chain(header_routes.iter().map(|h| h.revision))
        .map(|i| Arc::clone(&revisions[i].name))
        .collect();
    routable.sort_unstable();
    routable.dedup();

    let removed = existing.into_values().cloned().collect();
    let snapshot = Snapshot {
        generation,
        revisions,
        default_route,
        total_weight,
        header_routes,
        mirror,
        routable,
        response_timeout: Some(
            table
                .response_timeout
                .unwrap_or(cx.default_response_timeout),
        )
        .filter(|t| !t.is_zero()),
    };
    (snapshot, removed)
}

fn new_backend(
    addr: SocketAddr,
    revision: &Arc<str>,
    metrics: &Arc<RevisionMetrics>,
    cx: &BuildContext<'_>,
) -> Arc<BackendState> {
    let authority = match http::uri::Authority::try_from(addr.to_string()) {
        Ok(authority) => authority,
        // A SocketAddr always formats as a valid authority; keep a harmless value otherwise.
        Err(_) => http::uri::Authority::from_static("127.0.0.1"),
    };
    Arc::new(BackendState {
        addr,
        authority,
        revision: Arc::clone(revision),
        metrics: Arc::clone(metrics),
        in_flight: AtomicUsize::new(0),
        draining: AtomicBool::new(false),
        ejected_until_ms: AtomicU64::new(0),
        cancel: cx.cancel_root.child_token(),
        upgrades: cx.upgrades_root.child_token(),
        notify: Arc::clone(cx.notify),
    })
}
