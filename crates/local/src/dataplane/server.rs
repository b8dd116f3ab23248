//! The data plane's side of the protocol (see [`super::protocol`]): a [`Router`] served over the
//! Unix socket, in its own process (`cutover data-plane`, started by the daemon) or, for tests
//! and the demo, as a task in the daemon.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router as Routes};
use cutover_router::{Router, RouterConfig, RouterError, ServiceHandle};
use nix::fcntl::{Flock, FlockArg};
use serde::Deserialize;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use super::DataPlaneError;
use super::protocol::{
    ErrorBody, Hello, INFO_FILE, LOCK_FILE, PROTOCOL, SOCKET_FILE, STATUS_WAIT, ServiceRequest,
    ServiceStatus, StatusReport, SwitchRecord, TableId, WireConfig,
};

#[derive(Clone)]
struct AppState {
    router: Router,
    instance: u64,
    /// The identity of each Service's live table; held while installing, so a status never
    /// pairs a new generation with an old identity.
    tables: Arc<Mutex<HashMap<String, TableId>>>,
    stop: CancellationToken,
}

/// A data plane bound to its state directory: lock held, socket listening.
pub struct Bound {
    router: Router,
    listener: UnixListener,
    instance: u64,
    dir: PathBuf,
    _lock: Flock<std::fs::File>,
}

/// A random value per data-plane start (the std hasher is seeded from the OS).
fn instance_id() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Takes `<dir>/data-plane.lock`, listens on `<dir>/data-plane.sock` (mode 0600) and writes
/// `<dir>/data-plane.json`. Fails when another data plane holds the directory.
pub fn bind(dir: &Path, config: RouterConfig) -> Result<Bound, DataPlaneError> {
    let io = |what: &str, source| DataPlaneError::Io {
        what: format!("{what} in {}", dir.display()),
        source,
    };
    let file = crate::private::open_write(&dir.join(LOCK_FILE)).map_err(|e| io(LOCK_FILE, e))?;
    let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| DataPlaneError::AlreadyRunning(dir.to_path_buf()))?;
    let socket = dir.join(SOCKET_FILE);
    // Ours now that we hold the lock: whatever is there was left by a data plane that died.
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(|e| io(SOCKET_FILE, e))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io(SOCKET_FILE, e))?;
    }
    let instance = instance_id();
    let info = serde_json::json!({
        "pid": std::process::id(),
        "protocol": PROTOCOL,
        "version": env!("CARGO_PKG_VERSION"),
        "instance": instance,
    });
    super::write_private(&dir.join(INFO_FILE), info.to_string().as_bytes())
        .map_err(|e| io(INFO_FILE, e))?;
    Ok(Bound {
        router: Router::new(config),
        listener,
        instance,
        dir: dir.to_path_buf(),
        _lock: lock,
    })
}

impl Bound {
    /// Serves until `stop` is cancelled or a client asks for `/v1/shutdown`, then drains the
    /// router (in-flight requests finish until the drain timeout) and removes the socket.
    pub async fn serve(self, stop: CancellationToken) {
        let state = AppState {
            router: self.router.clone(),
            instance: self.instance,
            tables: Arc::default(),
            stop: stop.clone(),
        };
        let app = Routes::new()
            .route("/v1/hello", get(hello))
            .route("/v1/services/{name}", put(put_service))
            .route("/v1/status", get(status))
            .route("/v1/metrics", get(metrics))
            .route("/v1/switches", post(switch))
            .route("/v1/shutdown", post(shutdown))
            .with_state(state);
        let shutdown = stop.clone();
        if let Err(error) = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
        {
            tracing::error!(%error, "data-plane control socket failed");
        }
        tracing::info!("data plane stopping: draining traffic");
        self.router.shutdown().await;
        let _ = std::fs::remove_file(self.dir.join(SOCKET_FILE));
        let _ = std::fs::remove_file(self.dir.join(INFO_FILE));
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

async fn hello(State(state): State<AppState>) -> Json<Hello> {
    Json(Hello {
        protocol: PROTOCOL,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        instance: state.instance,
        config: WireConfig::from(state.router.config()),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A map of identities: consistent whatever a panicking holder was doing.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn describe(handle: &ServiceHandle, tables: &HashMap<String, TableId>) -> ServiceStatus {
    ServiceStatus {
        name: handle.name().to_owned(),
        addr: Some(handle.local_addr()),
        generation: handle.generation(),
        table_id: tables.get(handle.name()).copied(),
        serving: handle.serving(),
        pending_drains: handle.pending_drains(),
        connections: handle.open_connections(),
    }
}

async fn put_service(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    Json(request): Json<ServiceRequest>,
) -> Response {
    let table = match request.table.to_table() {
        Ok(table) => table,
        Err(why) => return error(StatusCode::BAD_REQUEST, format!("service {name}: {why}")),
    };
    if state.router.service(&name).is_none() {
        match state
            .router
            .bind_with(&name, request.addr, Some(table.clone()))
            .await
        {
            Ok(handle) => {
                let mut tables = lock(&state.tables);
                tables.insert(name.clone(), request.table_id);
                return Json(describe(&handle, &tables)).into_response();
            }
            // A concurrent request bound it first: install below like any update.
            Err(RouterError::AlreadyBound(_)) => {}
            Err(e) => return error(StatusCode::CONFLICT, e.to_string()),
        }
    }
    let Some(handle) = state.router.service(&name) else {
        return error(
            StatusCode::CONFLICT,
            format!("service {name} has no listener and cannot get one"),
        );
    };
    let mut tables = lock(&state.tables);
    handle.install(table);
    tables.insert(name, request.table_id);
    Json(describe(&handle, &tables)).into_response()
}

#[derive(Deserialize)]
struct StatusQuery {
    #[serde(default)]
    after: u64,
}

async fn status(
    State(state): State<AppState>,
    Query(query): Query<StatusQuery>,
) -> Json<StatusReport> {
    let mut changes = state.router.changes();
    // A change between this check and the wait still wakes the wait (the receiver marks it).
    if *changes.borrow_and_update() <= query.after {
        let _ = tokio::time::timeout(STATUS_WAIT, changes.changed()).await;
    }
    // The version first: a change while the services are read shows in the next report.
    let version = *changes.borrow();
    let tables = lock(&state.tables);
    let services = state
        .router
        .services()
        .iter()
        .map(|h| describe(h, &tables))
        .collect();
    Json(StatusReport {
        instance: state.instance,
        version,
        services,
    })
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.router.metrics_text(),
    )
        .into_response()
}

async fn switch(State(state): State<AppState>, Json(record): Json<SwitchRecord>) -> StatusCode {
    state.router.record_switch(&record.service, record.seconds);
    StatusCode::NO_CONTENT
}

async fn shutdown(State(state): State<AppState>) -> StatusCode {
    tracing::info!("shutdown requested by the daemon");
    state.stop.cancel();
    StatusCode::ACCEPTED
}

/// `cutover data-plane`: raises the open-files limit, binds the state directory, serves until
/// asked to stop (by the daemon, SIGTERM or SIGINT), drains, exits.
pub async fn run_process(dir: &Path, config: RouterConfig) -> Result<(), DataPlaneError> {
    super::raise_open_files_limit();
    let bound = bind(dir, config)?;
    tracing::info!(
        pid = std::process::id(),
        connection_budget = bound.router.connection_budget(),
        "data plane serving"
    );
    let stop = CancellationToken::new();
    let signalled = stop.clone();
    tokio::spawn(async move {
        crate::daemon::termination().await;
        signalled.cancel();
    });
    bound.serve(stop).await;
    Ok(())
}
