//! Keeping the data plane converged: start (or replace) it when none answers, push the tables
//! that changed, long-poll its status, and push everything again to a new instance.

use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::time::Duration;

use hyper::Method;
use tokio::time::Instant;

use super::client::{self, CallError};
use super::protocol::{Hello, PROTOCOL, STATUS_WAIT, ServiceRequest, StatusReport, WireConfig};
use super::{CALL_TIMEOUT, DataPlane, DataPlaneError, DataPlaneMode, lock, server};

/// How long a data plane that was started may take to answer.
const START_LIMIT: Duration = Duration::from_secs(10);

/// Between attempts to reach or start a data plane that is gone.
const RETRY_MIN: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// A random value (the std hasher is seeded from the OS per process, then per state).
pub(super) fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

async fn hello(socket: &Path) -> Result<Hello, CallError> {
    client::call(socket, Method::GET, "/v1/hello", None::<&()>, CALL_TIMEOUT).await
}

/// Waits until nothing answers on `socket` and `pid` (if known) has exited, at most `limit`;
/// then kills `pid`.
pub(super) async fn wait_gone(socket: &Path, pid: Option<u32>, limit: Duration) {
    let deadline = Instant::now() + limit;
    let alive = |pid: u32| {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
        nix::sys::signal::kill(pid, None).is_ok()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
    };
    while Instant::now() < deadline {
        let answering = hello(socket).await.is_ok();
        if !answering && !pid.is_some_and(alive) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(pid) = pid.filter(|p| alive(*p)) {
        tracing::warn!(pid, "the data plane did not stop in time; killing it");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX)),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl DataPlane {
    /// Returns the data plane that answers on the socket, after starting one if none does (or
    /// replacing one that speaks another protocol).
    pub(super) async fn ensure_running(&self) -> Result<Hello, DataPlaneError> {
        let inner = &self.inner;
        match hello(&inner.socket).await {
            Ok(found) if found.protocol == PROTOCOL => {
                let wanted = WireConfig::from(&inner.config.router);
                if found.config != wanted {
                    tracing::warn!(
                        running = ?found.config,
                        wanted = ?wanted,
                        "the running data plane keeps the settings it started with; stop cutover up (Ctrl-C) and start it again to apply new ones"
                    );
                }
                return Ok(found);
            }
            Ok(found) => {
                tracing::warn!(
                    theirs = found.protocol,
                    ours = PROTOCOL,
                    version = %found.version,
                    "the running data plane speaks another protocol; replacing it (its listeners close for a moment)"
                );
                let _: Result<bytes::Bytes, CallError> = client::call_raw(
                    &inner.socket,
                    Method::POST,
                    "/v1/shutdown",
                    None,
                    CALL_TIMEOUT,
                )
                .await;
                let limit = Duration::from_millis(found.config.drain_timeout_ms) + RETRY_MAX;
                wait_gone(&inner.socket, Some(found.pid), limit).await;
            }
            Err(_) => {}
        }
        self.launch().await?;
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(found) = hello(&inner.socket).await {
                return Ok(found);
            }
            if Instant::now() >= deadline {
                return Err(DataPlaneError::NotStarted(START_LIMIT));
            }
            tokio::time::sleep(RETRY_MIN).await;
        }
    }

    /// Starts a data plane: a process in its own process group (so the terminal's Ctrl-C
    /// reaches only the daemon, which stops it in order), or a task.
    async fn launch(&self) -> Result<(), DataPlaneError> {
        let config = &self.inner.config;
        let dir = &config.state_dir;
        match &config.mode {
            DataPlaneMode::InProcess => {
                let bound = server::bind(dir, config.router.clone())?;
                let stop = tokio_util::sync::CancellationToken::new();
                let task = tokio::spawn(bound.serve(stop.clone()));
                *lock(&self.inner.in_process) = Some((stop, task));
            }
            DataPlaneMode::Process { program } => {
                let io = |what: &str, source| DataPlaneError::Io {
                    what: what.to_owned(),
                    source,
                };
                let logs = dir.join("logs");
                std::fs::create_dir_all(&logs).map_err(|e| io("creating logs/", e))?;
                let log = crate::private::open_append(&logs.join("data-plane.log"))
                    .map_err(|e| io("opening logs/data-plane.log", e))?;
                let settings = serde_json::to_string(&WireConfig::from(&config.router))
                    .map_err(|e| io("encoding settings", std::io::Error::other(e)))?;
                let mut child = tokio::process::Command::new(program)
                    .arg("--state-dir")
                    .arg(dir)
                    .arg("data-plane")
                    .arg("--settings")
                    .arg(settings)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(log)
                    .process_group(0)
                    .spawn()
                    .map_err(|e| io(&format!("starting {} data-plane", program.display()), e))?;
                tracing::info!(pid = ?child.id(), "data plane started");
                let plane = self.clone();
                // Reaps it, and reconnects at once when it dies rather than at the next poll.
                tokio::spawn(async move {
                    let ended = child.wait().await;
                    if !plane.inner.stop.is_cancelled() {
                        tracing::warn!(?ended, "the data plane exited; starting it again");
                    }
                    plane.inner.dirty.notify_one();
                });
            }
        }
        Ok(())
    }

    /// The sync task: runs until [`DataPlane::detach`] or [`DataPlane::shutdown`].
    pub(super) async fn sync(self) {
        let mut retry = RETRY_MIN;
        while !self.inner.stop.is_cancelled() {
            let found = tokio::select! {
                () = self.inner.stop.cancelled() => return,
                found = self.ensure_running() => found,
            };
            let found = match found {
                Ok(found) => found,
                Err(error) => {
                    tracing::warn!(%error, "data plane unavailable; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                    continue;
                }
            };
            retry = RETRY_MIN;
            let known = lock(&self.inner.current)
                .as_ref()
                .is_some_and(|h| h.instance == found.instance);
            if !known {
                tracing::info!(
                    pid = found.pid,
                    "new data plane: sending every Service and table"
                );
                for desired in lock(&self.inner.desired).values_mut() {
                    desired.acked = None;
                }
                *lock(&self.inner.current) = Some(found.clone());
            }
            if let Err(error) = self.converge(found.instance).await {
                tracing::warn!(%error, "lost the data plane; reconnecting");
            }
        }
    }

    /// Pushes and polls until the data plane goes away (an error) or the handle stops.
    async fn converge(&self, instance: u64) -> Result<(), CallError> {
        let mut after = 0;
        loop {
            self.push().await?;
            let path = format!("/v1/status?after={after}");
            let poll = client::call::<StatusReport>(
                &self.inner.socket,
                Method::GET,
                &path,
                None::<&()>,
                STATUS_WAIT + CALL_TIMEOUT,
            );
            tokio::select! {
                () = self.inner.stop.cancelled() => return Ok(()),
                () = self.inner.dirty.notified() => {}
                report = poll => {
                    let report = report?;
                    if report.instance != instance {
                        return Err(CallError::Status {
                            status: hyper::StatusCode::GONE,
                            message: "another data plane instance answered".into(),
                        });
                    }
                    after = report.version;
                    self.absorb(report);
                }
            }
        }
    }

    /// Sends every table the current data plane has not confirmed. A refusal (a port taken,
    /// a bad table) is logged and tried again on the next round; a broken connection ends the
    /// round.
    async fn push(&self) -> Result<(), CallError> {
        let pending: Vec<(String, ServiceRequest)> = lock(&self.inner.desired)
            .iter()
            .filter(|(_, d)| d.acked.is_none_or(|(acked, _)| acked < d.id))
            .map(|(name, d)| {
                let request = ServiceRequest {
                    addr: d.addr,
                    table: d.table.clone(),
                    table_id: d.id,
                };
                (name.clone(), request)
            })
            .collect();
        for (name, request) in pending {
            match self.put_service(&name, &request).await {
                Ok(status) => {
                    if let Some(d) = lock(&self.inner.desired).get_mut(&name) {
                        d.acked = Some((request.table_id, status.generation));
                        d.refused = None;
                    }
                }
                Err(CallError::Status { status, message }) => {
                    // Tried again every round; said again only when the reason changes.
                    let repeated = lock(&self.inner.desired).get_mut(&name).is_some_and(|d| {
                        d.refused.replace(message.clone()) == Some(message.clone())
                    });
                    if !repeated {
                        tracing::warn!(service = %name, %status, "data plane refused the table: {message}");
                    }
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// Takes in a status report: tables seen live are confirmed; a Service the data plane
    /// does not list is sent again.
    fn absorb(&self, report: StatusReport) {
        {
            let mut desired = lock(&self.inner.desired);
            for (name, d) in desired.iter_mut() {
                match report.services.iter().find(|s| &s.name == name) {
                    Some(live) if live.table_id == Some(d.id) => d.unconfirmed.clear(),
                    Some(_) => {}
                    None => d.acked = None,
                }
            }
        }
        self.inner.status.send_replace(report);
    }
}
