//! The single-host data plane as the daemon sees it: a [`Router`](cutover_router::Router) in a
//! process of its own (`cutover data-plane`), which keeps its listeners and last route tables
//! while the daemon restarts, so a crash or an upgrade of the control plane costs no request.
//!
//! - The daemon finds it through `<state-dir>/data-plane.sock`; if nothing answers it starts
//!   one (its own process group, so Ctrl-C in the terminal reaches only the daemon; stderr to
//!   `<state-dir>/logs/data-plane.log`). If it answers with another protocol version, the
//!   daemon replaces it.
//! - The daemon keeps the desired state (each Service's address and latest table) and a sync
//!   task converges the data plane to it: it pushes tables that changed, long-polls the status
//!   (generation, what each Service serves, pending drains), and after a data plane restart
//!   pushes everything again, binding each listener with its table before it accepts.
//! - [`DataPlane::service`] answers from the last status, widened with the revisions of tables
//!   sent but not yet seen live, so the planner never reads "not serving" too early.
//!
//! The protocol is in [`protocol`]; the data plane's side in [`server`].

mod client;
pub mod protocol;
pub mod server;
mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cutover_router::{RevisionCounters, RouteTable, RouterConfig};
use hyper::Method;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

pub use client::{CallError, call_raw};
use protocol::{
    Hello, SOCKET_FILE, ServiceRequest, ServiceStatus, StatusReport, SwitchRecord, TableId,
    WireTable,
};

/// How long one ordinary call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the data plane runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataPlaneMode {
    /// A process of its own (`PROGRAM --state-dir DIR data-plane`) that outlives the daemon.
    Process {
        /// The cutover binary.
        program: PathBuf,
    },
    /// A task in the daemon, gone with it (the demo and library tests).
    InProcess,
}

/// Settings of the data plane.
#[derive(Clone, Debug)]
pub struct DataPlaneConfig {
    /// The state directory (socket, lock, logs).
    pub state_dir: PathBuf,
    /// Where it runs.
    pub mode: DataPlaneMode,
    /// The router's settings (fixed for a data plane's lifetime).
    pub router: RouterConfig,
}

/// Why the data plane could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    /// A file of the state directory could not be used.
    #[error("{what}: {source}")]
    Io {
        /// Which file, where.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another data plane holds the state directory (its socket did not answer).
    #[error(
        "another data plane holds {0} but does not answer on its socket; stop it (its pid is in data-plane.json) and start again"
    )]
    AlreadyRunning(PathBuf),
    /// The data plane did not come up.
    #[error("the data plane did not start within {0:?}; see <state-dir>/logs/data-plane.log")]
    NotStarted(Duration),
    /// A Service's listener could not be bound.
    #[error("{0}")]
    Bind(String),
    /// A call failed.
    #[error(transparent)]
    Call(#[from] CallError),
}

/// What the daemon wants one Service to be.
struct Desired {
    addr: SocketAddr,
    table: WireTable,
    id: TableId,
    /// The newest table the current data plane confirmed installing, and its generation.
    acked: Option<(TableId, u64)>,
    /// Revisions of tables sent but not yet seen live in a status: counted as served.
    unconfirmed: BTreeSet<String>,
    /// Why the data plane last refused this Service's table, while it does.
    refused: Option<String>,
}

struct Inner {
    config: DataPlaneConfig,
    socket: PathBuf,
    /// Random per daemon start: tells this daemon's tables from a previous daemon's.
    session: u64,
    seq: AtomicU64,
    desired: Mutex<BTreeMap<String, Desired>>,
    status: watch::Sender<StatusReport>,
    /// Set when the desired state changed: the sync task pushes.
    dirty: Notify,
    /// Stops the sync task (shutdown or detach).
    stop: CancellationToken,
    /// The data plane this daemon last reached.
    current: Mutex<Option<Hello>>,
    /// The in-process data plane, when [`DataPlaneMode::InProcess`].
    in_process: Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
}

/// The daemon's handle on the data plane. Cheap to clone.
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
}

/// One Service as the planner and the views read it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceState {
    name: String,
    addr: SocketAddr,
    generation: u64,
    serving: Vec<String>,
}

impl ServiceState {
    /// Service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the Service listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Generation of the live table.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Revisions the Service still sends traffic to (sorted): what the live table routes to,
    /// what drains, and what tables on their way name.
    pub fn serving(&self) -> Vec<String> {
        self.serving.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single insert or assignment.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Raises the soft open-files limit to the hard one and logs the outcome (the daemon and the
/// data plane both do, at start).
pub fn raise_open_files_limit() {
    match cutover_router::raise_fd_limit() {
        Ok(limit) => tracing::info!(
            soft = limit.soft,
            hard = limit.hard,
            raised_from = ?limit.raised_from,
            "open-files limit"
        ),
        Err(error) => tracing::warn!(%error, "cannot raise the open-files limit"),
    }
}

/// Writes `bytes` to `path` readable by its owner only, atomically (temp file and rename).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(tmp, path)
}

impl DataPlane {
    /// Reaches the data plane of `config.state_dir`, starting it when none answers, and starts
    /// keeping it converged.
    pub async fn start(config: DataPlaneConfig) -> Result<Self, DataPlaneError> {
        let socket = config.state_dir.join(SOCKET_FILE);
        let inner = Arc::new(Inner {
            socket,
            session: sync::random_u64(),
            seq: AtomicU64::new(0),
            desired: Mutex::default(),
            status: watch::Sender::new(StatusReport::default()),
            dirty: Notify::new(),
            stop: CancellationToken::new(),
            current: Mutex::default(),
            in_process: Mutex::default(),
            config,
        });
        let plane = Self { inner };
        let hello = plane.ensure_running().await?;
        tracing::info!(
            pid = hello.pid,
            version = %hello.version,
            protocol = hello.protocol,
            "data plane reached"
        );
        *lock(&plane.inner.current) = Some(hello);
        tokio::spawn(plane.clone().sync());
        Ok(plane)
    }

    fn next_id(&self) -> TableId {
        TableId {
            session: self.inner.session,
            seq: self
                .inner
                .seq
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1,
        }
    }

    /// Gives `service` a listener on `addr` whose first table is `table`, installed before it
    /// accepts. A Service the data plane already serves (it outlived the daemon) keeps its
    /// listener and gets `table`. Returns the address it listens on.
    pub async fn bind(
        &self,
        service: &str,
        addr: SocketAddr,
        table: &RouteTable,
    ) -> Result<SocketAddr, DataPlaneError> {
        let wire = WireTable::from(table);
        let id = self.next_id();
        let request = ServiceRequest {
            addr,
            table: wire.clone(),
            table_id: id,
        };
        let status = match self.put_service(service, &request).await {
            Ok(status) => status,
            Err(CallError::Status { message, .. }) => return Err(DataPlaneError::Bind(message)),
            Err(e) => return Err(e.into()),
        };
        let bound = status.addr.unwrap_or(addr);
        lock(&self.inner.desired).insert(
            service.to_owned(),
            Desired {
                addr: bound,
                unconfirmed: wire.routable().into_iter().collect(),
                table: wire,
                id,
                acked: Some((id, status.generation)),
                refused: None,
            },
        );
        self.inner.status.send_modify(|report| {
            report.services.retain(|s| s.name != service);
            report.services.push(status);
        });
        Ok(bound)
    }

    /// `PUT /v1/services/{service}`: binds it if it has no listener, installs the table.
    async fn put_service(
        &self,
        service: &str,
        request: &ServiceRequest,
    ) -> Result<ServiceStatus, CallError> {
        let path = format!("/v1/services/{service}");
        client::call(
            &self.inner.socket,
            Method::PUT,
            &path,
            Some(request),
            CALL_TIMEOUT,
        )
        .await
    }

    /// Sends `table` to `service` (bound before) in the background and returns its identity,
    /// or None when the Service has no listener.
    pub fn install(&self, service: &str, table: &RouteTable) -> Option<TableId> {
        let wire = WireTable::from(table);
        let id = {
            let mut desired = lock(&self.inner.desired);
            let entry = desired.get_mut(service)?;
            if entry.table == wire {
                return Some(entry.id);
            }
            let id = self.next_id();
            entry.unconfirmed.extend(wire.routable());
            entry.table = wire;
            entry.id = id;
            id
        };
        self.inner.dirty.notify_one();
        Some(id)
    }

    /// The Service as last reported, or None when it has no listener.
    pub fn service(&self, name: &str) -> Option<ServiceState> {
        let desired = lock(&self.inner.desired);
        let wanted = desired.get(name)?;
        let report = self.inner.status.borrow();
        let live = report.services.iter().find(|s| s.name == name);
        let mut serving: Vec<String> = live.map(|s| s.serving.clone()).unwrap_or_default();
        serving.extend(wanted.unconfirmed.iter().cloned());
        serving.sort();
        serving.dedup();
        Some(ServiceState {
            name: name.to_owned(),
            addr: live.and_then(|s| s.addr).unwrap_or(wanted.addr),
            generation: live.map_or(0, |s| s.generation),
            serving,
        })
    }

    /// Resolves once `id` (or a later table) of `service` is live and every drain it started
    /// is over, or when this handle stops.
    pub async fn drained(&self, service: &str, id: TableId) {
        let mut status = self.inner.status.subscribe();
        loop {
            let done = {
                let acked = lock(&self.inner.desired)
                    .get(service)
                    .and_then(|d| d.acked)
                    .filter(|(acked, _)| *acked >= id);
                let report = status.borrow_and_update();
                match (acked, report.services.iter().find(|s| s.name == service)) {
                    (Some((_, generation)), Some(live)) => {
                        live.table_id.is_some_and(|t| t >= id)
                            && live.pending_drains.iter().all(|g| *g > generation)
                    }
                    _ => false,
                }
            };
            if done {
                return;
            }
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return },
                () = self.inner.stop.cancelled() => return,
            }
        }
    }

    /// The router's OpenMetrics text (empty, with a warning, when the data plane cannot be
    /// reached).
    pub async fn metrics_text(&self) -> String {
        match client::call_raw(
            &self.inner.socket,
            Method::GET,
            "/v1/metrics",
            None,
            CALL_TIMEOUT,
        )
        .await
        {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) => {
                tracing::warn!(%error, "cannot read the data plane's metrics");
                String::new()
            }
        }
    }

    /// Cumulative counters of one revision behind one Service, or None.
    pub async fn revision_counters(
        &self,
        service: &str,
        revision: &str,
    ) -> Option<RevisionCounters> {
        let text = self.metrics_text().await;
        cutover_router::Router::counters_from_metrics(&text, service, revision)
    }

    /// Records a measured switch latency in the data plane's histogram (in the background).
    pub fn record_switch(&self, service: &str, seconds: f64) {
        let socket = self.inner.socket.clone();
        let record = SwitchRecord {
            service: service.to_owned(),
            seconds,
        };
        tokio::spawn(async move {
            let sent: Result<bytes::Bytes, CallError> = client::call_raw(
                &socket,
                Method::POST,
                "/v1/switches",
                serde_json::to_vec(&record).ok(),
                CALL_TIMEOUT,
            )
            .await;
            if let Err(error) = sent {
                tracing::debug!(%error, "switch latency not recorded");
            }
        });
    }

    /// Leaves the data plane running with its listeners and tables (an upgrade of the
    /// daemon, or a stop that keeps traffic flowing); stops only this handle's sync task.
    pub fn detach(&self) {
        self.inner.stop.cancel();
    }

    /// Stops the data plane: it stops accepting, lets in-flight requests finish until its
    /// drain timeout, and exits. Returns once it is gone.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        let pid = lock(&self.inner.current).as_ref().map(|h| h.pid);
        let asked: Result<bytes::Bytes, CallError> = client::call_raw(
            &self.inner.socket,
            Method::POST,
            "/v1/shutdown",
            None,
            CALL_TIMEOUT,
        )
        .await;
        if let Err(error) = asked {
            tracing::warn!(%error, "cannot ask the data plane to stop");
        }
        let in_process = lock(&self.inner.in_process).take();
        if let Some((stop, task)) = in_process {
            stop.cancel();
            let _ = task.await;
            return;
        }
        let limit = self.inner.config.router.drain_timeout + Duration::from_secs(5);
        sync::wait_gone(&self.inner.socket, pid, limit).await;
    }
}
