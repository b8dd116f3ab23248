//! `cutover up`: the single-host daemon in the foreground. It applies the given manifests,
//! re-adopts what a previous daemon left running (the data plane with its listeners, and the
//! processes), runs the controller loop and the control API.
//!
//! Stopping: Ctrl-C (SIGINT) or SIGTERM stops everything, the data plane and every process it
//! supervises. SIGQUIT (Ctrl-\\) hands over instead: the daemon exits and leaves the data
//! plane serving and the processes running, for the next `cutover up` to adopt (an upgrade:
//! `cutover up --replace` sends it to the running daemon and takes over).

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cutover_manifest::Source;
use cutover_router::RouterConfig;
use nix::fcntl::{Flock, FlockArg};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiFile, serve};
use crate::dataplane::{DataPlane, DataPlaneConfig, DataPlaneError, DataPlaneMode};
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
    /// Where the data plane runs.
    pub data_plane: DataPlaneMode,
    /// Take over from a daemon running on the same state directory: it exits leaving the data
    /// plane and the processes running, and this one adopts them.
    pub replace: bool,
    /// The notification configuration file (`kind: NotificationConfig`), if any; its `$NAME`
    /// secrets come from the daemon's environment.
    pub notifications: Option<PathBuf>,
}

/// How long `--replace` waits for the running daemon to hand over.
const REPLACE_LIMIT: Duration = Duration::from_secs(60);

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
    /// The data plane could not be reached or started.
    #[error(transparent)]
    DataPlane(#[from] DataPlaneError),
    /// `--replace` found no daemon to take over from, or it did not hand over in time.
    #[error("replacing the daemon of {path}: {why}")]
    Replace {
        /// The state directory.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The notification configuration cannot be read or is wrong.
    #[error("notifications: {0}")]
    Notifications(String),
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
    // Read before anything starts: a wrong file stops the daemon with nothing changed.
    let notifications = config
        .notifications
        .as_deref()
        .map(load_notifications)
        .transpose()?;
    secure_state_dir(dir).map_err(state_err)?;
    let _lock = if config.replace {
        take_over(dir).await?
    } else {
        lock(dir)?
    };
    crate::dataplane::raise_open_files_limit();
    let store = Arc::new(Store::open(dir)?);
    for moved in store.quarantine_unreadable()? {
        tracing::error!(
            "state: {moved}; moved to the quarantine table of {}, the daemon runs the rest (re-apply the object to run it again)",
            dir.join("state.db").display()
        );
    }
    if !config.sources.is_empty() {
        let report = ops::apply(&store, &config.sources)?;
        for warning in &report.warnings {
            tracing::warn!("{warning}");
        }
        for line in &report.objects {
            tracing::info!("{line}");
        }
    }
    let data_plane = DataPlane::start(DataPlaneConfig {
        state_dir: dir.clone(),
        mode: config.data_plane.clone(),
        router: config.router.clone(),
    })
    .await?;
    let supervisor = Supervisor::new(SupervisorConfig::new(dir.join("logs")));
    let engine = Engine::new(
        store,
        supervisor.clone(),
        data_plane.clone(),
        EngineConfig {
            bind_address: config.bind_address,
            notifier: notifications.map(cutover_notify::Notifier::start),
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

    let hand_over = tokio::select! {
        () = stop.cancelled() => false,
        () = termination() => false,
        () = hand_over_signal() => true,
    };
    stop.cancel();
    let _ = loop_task.await;
    let _ = api.await;
    let _ = std::fs::remove_file(dir.join(crate::api::API_FILE));
    if hand_over {
        // The processes are left running (dropping the supervisor does not stop them) and the
        // data plane keeps serving with its last tables.
        tracing::info!(
            "handing over: the data plane keeps serving and the processes keep running; the next cutover up adopts them"
        );
        data_plane.detach();
        return Ok(());
    }
    tracing::info!("stopping: draining traffic and stopping processes");
    data_plane.shutdown().await;
    supervisor.shutdown().await;
    Ok(())
}

/// Reads and checks a notification configuration file, secrets from the environment.
fn load_notifications(path: &Path) -> Result<cutover_notify::NotificationConfig, DaemonError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        DaemonError::Notifications(format!(
            "cannot read {}: {e} (check the --notifications path)",
            path.display()
        ))
    })?;
    let config = cutover_notify::NotificationConfig::parse(
        &text,
        &path.display().to_string(),
        &cutover_notify::EnvSecrets,
        cutover_notify::config::Host::Single,
    )
    .map_err(|e| DaemonError::Notifications(e.to_string()))?;
    tracing::info!(
        services = config.services.len(),
        subscriptions = config.subscriptions.len(),
        "notifications configured from {}",
        path.display()
    );
    Ok(config)
}

/// Asks the daemon holding `dir` to hand over (SIGQUIT to the pid in `<dir>/lock`), then takes
/// the lock once it has exited.
async fn take_over(dir: &Path) -> Result<Flock<File>, DaemonError> {
    let replace_err = |why: String| DaemonError::Replace {
        path: dir.to_path_buf(),
        why,
    };
    if let Ok(lock) = lock(dir) {
        tracing::info!("--replace: no daemon runs on this state directory; starting");
        return Ok(lock);
    }
    let pid = locking_pid(dir).map_err(|e| {
        replace_err(format!(
            "cannot find the running daemon's pid in the lock file ({e}); stop it with Ctrl-\\ or kill -QUIT"
        ))
    })?;
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT)
        .map_err(|e| replace_err(format!("cannot signal daemon pid {pid}: {e}")))?;
    tracing::info!(%pid, "--replace: asked the running daemon to hand over");
    let deadline = tokio::time::Instant::now() + REPLACE_LIMIT;
    loop {
        if let Ok(lock) = lock(dir) {
            return Ok(lock);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(replace_err(format!(
                "daemon pid {pid} did not hand over within {REPLACE_LIMIT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Makes the state directory and everything in it owner-only, saying what was wider.
fn secure_state_dir(dir: &Path) -> std::io::Result<()> {
    let fixed = crate::private::secure_tree(dir)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(crate::private::DIR_MODE)
        .create(dir.join("logs"))?;
    if !fixed.is_empty() {
        tracing::warn!(
            "state directory {} was readable by other users; made owner-only: {}",
            dir.display(),
            fixed.join("; ")
        );
    }
    Ok(())
}

/// Holds an exclusive lock on `<dir>/lock` for the daemon's lifetime, with the daemon's pid
/// in it (what `--replace` signals).
fn lock(dir: &Path) -> Result<Flock<File>, DaemonError> {
    use std::io::Write as _;
    let state_err = |source| DaemonError::StateDir {
        path: dir.to_path_buf(),
        source,
    };
    // Opened without truncating: the file of a running daemon keeps its pid.
    let file = crate::private::open_write(&dir.join("lock")).map_err(state_err)?;
    let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| DaemonError::Locked(dir.to_path_buf()))?;
    lock.set_len(0).map_err(state_err)?;
    lock.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(state_err)?;
    Ok(lock)
}

/// The pid of the daemon holding `<dir>/lock`.
fn locking_pid(dir: &Path) -> std::io::Result<i32> {
    let text = std::fs::read_to_string(dir.join("lock"))?;
    text.trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("no pid in the lock file: {text:?}")))
}

/// A fresh random token (256 bits from the kernel's generator, hex).
fn token() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Resolves on SIGQUIT (Ctrl-\\): hand over rather than stop. Never, if it cannot be caught.
async fn hand_over_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::quit()) {
        Ok(mut quit) => {
            quit.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn termination() {
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
