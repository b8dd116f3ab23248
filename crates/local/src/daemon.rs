//! `cutover up`: the single-host daemon in the foreground. It applies the given manifests,
//! re-adopts what a previous daemon left running, runs the controller loop, the router and the
//! control API, and on Ctrl-C (or SIGTERM) stops every process it supervises.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cutover_manifest::Source;
use cutover_router::{Router, RouterConfig};
use nix::fcntl::{Flock, FlockArg};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiFile, serve};
use crate::engine::{Engine, EngineConfig, EngineError};
use crate::ops::{self, OpError};
use crate::store::{Store, StoreError};
use crate::supervisor::{Supervisor, SupervisorConfig};

/// Settings of `cutover up`.
#[derive(Clone, Debug)]
pub struct UpConfig {
    /// Where state, logs and `api.json` live.
    pub state_dir: PathBuf,
    /// Manifests to apply before starting.
    pub sources: Vec<Source>,
    /// Address Services listen on.
    pub bind_address: IpAddr,
    /// Address of the control API (port 0: any free port).
    pub api_address: SocketAddr,
    /// Router settings.
    pub router: RouterConfig,
}

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state directory cannot be used.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon holds the state directory.
    #[error(
        "another cutover daemon is running on state directory {0}: stop it first, or pass another --state-dir"
    )]
    Locked(PathBuf),
    /// The manifests were refused; nothing was applied.
    #[error(transparent)]
    Apply(#[from] OpError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine could not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The control API could not listen.
    #[error("control API on {address}: {source}")]
    Api {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the daemon until Ctrl-C or SIGTERM, or until `stop` is cancelled. `ready` is called
/// once the API listens, with its address.
pub async fn run(
    config: UpConfig,
    stop: CancellationToken,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), DaemonError> {
    let dir = &config.state_dir;
    let state_err = |source| DaemonError::StateDir {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir.join("logs")).map_err(state_err)?;
    let _lock = lock(dir)?;
    let store = Arc::new(Store::open(dir)?);
    if !config.sources.is_empty() {
        let report = ops::apply(&store, &config.sources)?;
        for line in &report.objects {
            tracing::info!("{line}");
        }
    }
    let router = Router::new(config.router.clone());
    let supervisor = Supervisor::new(SupervisorConfig::new(dir.join("logs")));
    let engine = Engine::new(
        store,
        supervisor.clone(),
        router.clone(),
        EngineConfig {
            bind_address: config.bind_address,
        },
    );
    engine.start().await?;

    let listener = TcpListener::bind(config.api_address)
        .await
        .map_err(|source| DaemonError::Api {
            address: config.api_address,
            source,
        })?;
    let address = listener.local_addr().map_err(|source| DaemonError::Api {
        address: config.api_address,
        source,
    })?;
    let token = token().map_err(state_err)?;
    ApiFile {
        address,
        token: token.clone(),
        pid: std::process::id(),
    }
    .write(dir)
    .map_err(state_err)?;
    let api = tokio::spawn(serve(engine.clone(), listener, token, stop.clone()));
    let loop_task = tokio::spawn(engine.clone().run(stop.clone()));
    ready(address);

    tokio::select! {
        () = stop.cancelled() => {}
        () = termination() => stop.cancel(),
    }
    tracing::info!("stopping: draining traffic and stopping processes");
    let _ = loop_task.await;
    let _ = api.await;
    router.shutdown().await;
    supervisor.shutdown().await;
    let _ = std::fs::remove_file(dir.join(crate::api::API_FILE));
    Ok(())
}

/// Holds an exclusive lock on `<dir>/lock` for the daemon's lifetime.
fn lock(dir: &Path) -> Result<Flock<File>, DaemonError> {
    let file = File::create(dir.join("lock")).map_err(|source| DaemonError::StateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| DaemonError::Locked(dir.to_path_buf()))
}

/// A fresh random token (256 bits from the kernel's generator, hex).
fn token() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn termination() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
