//! One Service: its live snapshot, installs, drains, and the read-outs the planner verifies with.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::RouterConfig;
use crate::metrics::{Metrics, ServiceLabels};
use crate::state::{BackendState, BuildContext, Snapshot, build};
use crate::table::RouteTable;

/// State shared by all services of one router.
pub(crate) struct Shared {
    pub config: RouterConfig,
    pub client: crate::proxy::Client,
    pub metrics: Metrics,
    /// Reference point for passive-health ejection times.
    pub epoch: Instant,
    /// Client connections open on all listeners of this router.
    pub connections: AtomicUsize,
    /// How many client connections the open-files budget allows (all listeners together).
    pub connection_budget: usize,
    /// Refusals being answered right now; each holds a descriptor for a moment.
    pub refusals: Arc<Semaphore>,
    /// Bumped on every install and every finished drain: what status watchers wait on.
    pub changes: watch::Sender<u64>,
}

impl Shared {
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn changed(&self) {
        self.changes.send_modify(|v| *v += 1);
    }
}

/// Lets one log line through per period and counts the ones held back, so a flood of refused
/// connections is reported without flooding the log.
#[derive(Default)]
pub(crate) struct LogLimiter {
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// `Some(held back since the last line)` when a line may be written now.
    pub fn allow(&self, now_ms: u64, period_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms + period_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Backends removed by one install, draining together.
struct Drain {
    generation: u64,
    backends: Vec<Arc<BackendState>>,
    /// Cancelled once the drain is over (all finished, or the deadline cancelled the rest).
    done: CancellationToken,
}

pub(crate) struct ServiceInner {
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub snapshot: ArcSwap<Snapshot>,
    /// Serialises installs (control path only; the request path never takes it).
    install_lock: Mutex<()>,
    drains: Mutex<Vec<Drain>>,
    notify: Arc<Notify>,
    pub cancel_root: CancellationToken,
    pub upgrades_root: CancellationToken,
    pub mirror_slots: Arc<Semaphore>,
    /// Client connections open on this listener.
    pub connections: AtomicUsize,
    /// Rate limit of the "connection refused" warning.
    pub refusal_log: LogLimiter,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked: every update is one push,
    // retain or swap.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ServiceInner {
    pub fn new(
        name: &str,
        addr: SocketAddr,
        shared: Arc<Shared>,
        cancel_root: CancellationToken,
        upgrades_root: CancellationToken,
    ) -> Self {
        let mirror_slots = Arc::new(Semaphore::new(shared.config.mirror_max_in_flight));
        Self {
            name: Arc::from(name),
            addr,
            shared,
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            install_lock: Mutex::new(()),
            drains: Mutex::new(Vec::new()),
            notify: Arc::new(Notify::new()),
            cancel_root,
            upgrades_root,
            mirror_slots,
            connections: AtomicUsize::new(0),
            refusal_log: LogLimiter::default(),
        }
    }
}

/// Handle to one Service's listener and route table. Cheap to clone.
#[derive(Clone)]
pub struct ServiceHandle {
    pub(crate) inner: Arc<ServiceInner>,
}

impl std::fmt::Debug for ServiceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHandle")
            .field("name", &self.inner.name)
            .field("addr", &self.inner.addr)
            .field("generation", &self.generation())
            .finish()
    }
}

impl ServiceHandle {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Atomically replaces the table and returns the new generation. Backends that left the
    /// table (a revision removed, or one address of a kept revision) start draining at once:
    /// no new request reaches them, upgraded connections on them are closed, and in-flight
    /// requests may finish until `drain_timeout`, after which they are cancelled. A revision
    /// the new table lists backends for but neither routes nor mirrors to (weight 0, no header
    /// route) counts as removed: otherwise a request that read the old table could still reach
    /// it after `drained` returned.
    pub fn install(&self, table: RouteTable) -> u64 {
        let inner = &self.inner;
        let _serialised = lock(&inner.install_lock);
        let previous = inner.snapshot.load_full();
        let generation = previous.generation + 1;
        let cx = BuildContext {
            service: &inner.name,
            metrics: &inner.shared.metrics,
            notify: &inner.notify,
            cancel_root: &inner.cancel_root,
            upgrades_root: &inner.upgrades_root,
            default_response_timeout: inner.shared.config.response_timeout,
        };
        let (snapshot, removed) = build(&table, &previous, generation, &cx);
        inner.snapshot.store(Arc::new(snapshot));
        inner
            .shared
            .metrics
            .generation
            .get_or_create(&ServiceLabels {
                service: inner.name.to_string(),
            })
            .set(generation as i64);
        if !removed.is_empty() {
            self.start_drain(generation, removed);
        }
        inner.shared.changed();
        tracing::debug!(service = %inner.name, generation, "route table installed");
        generation
    }

    fn start_drain(&self, generation: u64, backends: Vec<Arc<BackendState>>) {
        for backend in &backends {
            backend.start_draining();
        }
        let done = CancellationToken::new();
        let deadline = Instant::now() + self.inner.shared.config.drain_timeout;
        {
            let mut drains = lock(&self.inner.drains);
            drains
                .retain(|d| !d.done.is_cancelled() || d.backends.iter().any(|b| b.in_flight() > 0));
            drains.push(Drain {
                generation,
                backends: backends.clone(),
                done: done.clone(),
            });
        }
        let notify = Arc::clone(&self.inner.notify);
        let shared = Arc::clone(&self.inner.shared);
        tokio::spawn(async move {
            wait_drained(backends, deadline, notify, done).await;
            shared.changed();
        });
    }

    /// The generation currently live (0 before the first install).
    pub fn generation(&self) -> u64 {
        self.inner.snapshot.load().generation
    }

    /// Revisions this Service still sends traffic to, sorted: those the live table routes to
    /// that have a backend, plus any revision (live or draining) with requests in flight.
    pub fn serving(&self) -> Vec<String> {
        let snapshot = self.inner.snapshot.load_full();
        let mut serving: Vec<String> = snapshot
            .revisions
            .iter()
            .filter(|r| !r.backends.is_empty() && snapshot.routable.binary_search(&r.name).is_ok())
            .map(|r| r.name.to_string())
            .collect();
        serving.extend(
            self.in_flight()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(r, _)| r),
        );
        serving.sort_unstable();
        serving.dedup();
        serving
    }

    /// In-flight requests (and upgraded connections) per revision, live and draining.
    pub fn in_flight(&self) -> BTreeMap<String, usize> {
        let snapshot = self.inner.snapshot.load_full();
        let mut counts = BTreeMap::new();
        for revision in &snapshot.revisions {
            let n: usize = revision.backends.iter().map(|b| b.in_flight()).sum();
            *counts.entry(revision.name.to_string()).or_insert(0) += n;
        }
        for drain in lock(&self.inner.drains).iter() {
            for backend in &drain.backends {
                *counts.entry(backend.revision.to_string()).or_insert(0) += backend.in_flight();
            }
        }
        counts
    }

    /// Generations whose drain has not finished yet, oldest first.
    pub fn pending_drains(&self) -> Vec<u64> {
        lock(&self.inner.drains)
            .iter()
            .filter(|d| !d.done.is_cancelled())
            .map(|d| d.generation)
            .collect()
    }

    /// Client connections open on this Service's listener now.
    pub fn open_connections(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Resolves once nothing removed at or before `generation` is still in flight, or the drain
    /// deadline passed and the stragglers were cancelled.
    pub async fn drained(&self, generation: u64) {
        let pending: Vec<CancellationToken> = lock(&self.inner.drains)
            .iter()
            .filter(|d| d.generation <= generation)
            .map(|d| d.done.clone())
            .collect();
        for done in pending {
            done.cancelled().await;
        }
    }
}

/// Waits until every backend of a drain is idle, or cancels what is left at `deadline`.
async fn wait_drained(
    backends: Vec<Arc<BackendState>>,
    deadline: Instant,
    notify: Arc<Notify>,
    done: CancellationToken,
) {
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        // Registered before the check, so a release between check and await still wakes us.
        notified.as_mut().enable();
        if backends.iter().all(|b| b.in_flight() == 0) {
            break;
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {
                for backend in &backends {
                    backend.cancel.cancel();
                }
                break;
            }
        }
    }
    done.cancel();
}
