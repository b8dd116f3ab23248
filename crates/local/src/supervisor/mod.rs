//! The single-host process supervisor: runs each revision of a Rollout as local processes, one
//! "pod" per replica, with Kubernetes' probe, restart and termination semantics.
//!
//! Every replica gets its own port on 127.0.0.1 (passed as `PORT`), its containers run as
//! separate process groups whose output is appended to `<log_dir>/<rollout>/<hash>/<index>.log`,
//! and the supervisor announces every change of phase or readiness on [`Supervisor::changes`] so
//! the engine can re-plan at once. It decides nothing about rollouts: it only makes the asked
//! number of replicas run and reports what it sees.

mod error;
mod probe;
mod process;
mod replica;
mod spec;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub use error::SupervisorError;
use replica::{Control, ReplicaCtx, ReplicaState, lock};

/// Where logs go and how restarts back off.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Root of the replica logs: `<log_dir>/<rollout>/<hash>/<index>.log`.
    pub log_dir: PathBuf,
    /// First wait before restarting a container that exited (doubles each time).
    pub backoff_initial: Duration,
    /// Longest wait between restarts.
    pub backoff_max: Duration,
}

impl SupervisorConfig {
    /// Kubernetes-like defaults: backoff from 1 s doubling up to 5 min.
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        SupervisorConfig {
            log_dir: log_dir.into(),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

impl Default for SupervisorConfig {
    /// Logs under the system's temporary directory; the daemon passes its own state directory.
    fn default() -> Self {
        SupervisorConfig::new(std::env::temp_dir().join("cutover").join("logs"))
    }
}

/// What one revision runs: its identity and pod template.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionSpec {
    pub rollout: String,
    pub hash: String,
    pub revision: i64,
    pub template: PodTemplateSpec,
}

/// The life-cycle phase of a replica (or of one of its containers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaPhase {
    /// Being started (or waiting for the replica it replaces to stop).
    Starting,
    /// Every container's process is running (readiness is reported separately).
    Running,
    /// A container exited or failed liveness and will be started again at `retry_at`.
    CrashLoopBackOff { retry_at: Timestamp },
    /// Being stopped: SIGTERM sent, SIGKILL follows after the grace period.
    Terminating,
    /// All processes have ended; the replica disappears from the next observation.
    Stopped,
}

/// What one container of a replica is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    pub pid: Option<u32>,
    pub phase: ReplicaPhase,
    pub ready: bool,
    pub restarts: u32,
    pub last_exit: Option<String>,
}

/// What one replica is doing, as observed now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub index: u32,
    /// The pid of the first container's process.
    pub pid: Option<u32>,
    pub port: u16,
    /// Where the replica serves: 127.0.0.1:`port`.
    pub addr: SocketAddr,
    pub phase: ReplicaPhase,
    /// Running and every container's readiness probe passing.
    pub ready: bool,
    pub ready_since: Option<Timestamp>,
    /// When the replica's pod was last started (container restarts do not change it, as a
    /// Kubernetes pod's start time does not change).
    pub started_at: Option<Timestamp>,
    /// Container restarts, summed over the pod's containers.
    pub restarts: u32,
    /// How the last process of this replica ended, or why it could not start.
    pub last_exit: Option<String>,
    pub log_path: PathBuf,
    pub containers: Vec<ContainerStatus>,
}

impl ReplicaStatus {
    /// What the engine persists so that a restarted daemon can adopt this replica; `None` while
    /// the first container has no running process.
    pub fn record(&self) -> Option<ReplicaRecord> {
        Some(ReplicaRecord {
            index: self.index,
            pid: self.pid?,
            port: self.port,
            started_at: self.started_at?,
        })
    }
}

/// A running replica as persisted by the engine, for [`Supervisor::adopt`]. The pids of a pod's
/// other containers are kept by the supervisor itself, beside the replica's log
/// (`<index>.pids`), so this record stays the same whatever the pod holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub index: u32,
    /// The pid of the first container (also its process group id).
    pub pid: u32,
    pub port: u16,
    pub started_at: Timestamp,
}

/// Runs revisions as supervised local processes. Cheap to clone; dropping the last clone aborts
/// the supervision tasks but leaves the processes running (so a new supervisor can adopt them);
/// call [`Supervisor::shutdown`] to stop them.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    config: SupervisorConfig,
    inherited: Arc<Vec<(String, String)>>,
    changes: watch::Sender<u64>,
    revisions: Mutex<BTreeMap<Key, BTreeMap<u32, Replica>>>,
    /// At most one rolling restart per revision.
    restarts: Mutex<BTreeMap<Key, RollingRestart>>,
}

/// A revision: (rollout, pod-template hash).
type Key = (String, String);

struct RollingRestart {
    /// The `before` it was asked for: a repeat with the same or an earlier one is a no-op.
    before: Timestamp,
    task: AbortOnDropHandle<()>,
}

struct Replica {
    ctx: Arc<ReplicaCtx>,
    stop: CancellationToken,
    restart: Arc<Notify>,
    task: AbortOnDropHandle<()>,
}

impl Replica {
    fn status(&self) -> ReplicaStatus {
        lock(&self.ctx.state).status(self.ctx.index)
    }

    fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}

impl Supervisor {
    pub fn new(config: SupervisorConfig) -> Self {
        Supervisor {
            inner: Arc::new(Inner {
                config,
                inherited: Arc::new(spec::inherited_env()),
                changes: watch::Sender::new(0),
                revisions: Mutex::new(BTreeMap::new()),
                restarts: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Makes `replicas` replicas of the revision run: starts missing ones (indexes 0..n) and stops
    /// those at index n and above, highest first. Idempotent; returns at once, processes start
    /// and stop in the background. Fails, without changing anything, on a template the
    /// single-host backend cannot run.
    pub fn scale(&self, spec: &RevisionSpec, replicas: u32) -> Result<(), SupervisorError> {
        self.prepare(spec, "scale")?;
        let key = (spec.rollout.clone(), spec.hash.clone());
        let spec_arc = Arc::new(spec.clone());
        {
            let mut revisions = lock(&self.inner.revisions);
            prune(&mut revisions);
            let pods = revisions.entry(key.clone()).or_default();
            for index in 0..replicas {
                if pods.get(&index).is_some_and(|r| !r.stopping()) {
                    continue;
                }
                let previous = pods.remove(&index);
                let replica = self.start_replica(&spec_arc, index, previous, None)?;
                pods.insert(index, replica);
            }
            for replica in pods.range(replicas..).rev().map(|(_, r)| r) {
                if !replica.stopping() {
                    replica.ctx.update(|s| s.terminating = true);
                    replica.stop.cancel();
                }
            }
            if pods.is_empty() {
                revisions.remove(&key);
            }
        }
        self.bump();
        Ok(())
    }

    /// The state of every replica of a revision, by index.
    pub fn observe(&self, rollout: &str, hash: &str) -> Vec<ReplicaStatus> {
        let mut revisions = lock(&self.inner.revisions);
        prune(&mut revisions);
        revisions
            .get(&(rollout.to_owned(), hash.to_owned()))
            .map(|pods| pods.values().map(Replica::status).collect())
            .unwrap_or_default()
    }

    /// All revisions that have replicas (running or stopping) for a rollout: hash -> replicas.
    pub fn revisions(&self, rollout: &str) -> BTreeMap<String, Vec<ReplicaStatus>> {
        let mut revisions = lock(&self.inner.revisions);
        prune(&mut revisions);
        revisions
            .iter()
            .filter(|((r, _), _)| r == rollout)
            .map(|((_, hash), pods)| (hash.clone(), pods.values().map(Replica::status).collect()))
            .collect()
    }

    /// The records to persist for adopting this revision's running replicas after a restart.
    pub fn records(&self, rollout: &str, hash: &str) -> Vec<ReplicaRecord> {
        self.observe(rollout, hash)
            .iter()
            .filter(|s| s.phase == ReplicaPhase::Running)
            .filter_map(ReplicaStatus::record)
            .collect()
    }

    /// Restarts (stops, then starts again on the same index and, where free, port) the replicas
    /// whose pod started before `before`, never letting more than `max_unavailable` (at least 1)
    /// of the revision's replicas be unready at once: a replica counts as unavailable from the
    /// restart request until it is ready again. Returns at once; calling it again with the same
    /// `before` while a restart runs changes nothing.
    pub fn restart_before(
        &self,
        rollout: &str,
        hash: &str,
        before: Timestamp,
        max_unavailable: u32,
    ) {
        let key = (rollout.to_owned(), hash.to_owned());
        let mut restarts = lock(&self.inner.restarts);
        restarts.retain(|_, r| !r.task.is_finished());
        if restarts.get(&key).is_some_and(|r| r.before >= before) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                rollout,
                hash,
                "restart_before called outside a tokio runtime; nothing restarted"
            );
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let task = runtime.spawn(rolling_restart(
            weak,
            key.clone(),
            before,
            max_unavailable.max(1),
        ));
        let task = AbortOnDropHandle::new(task);
        restarts.insert(key, RollingRestart { before, task });
    }

    /// Re-adopts replicas that survived a daemon crash, from records the engine persisted: each
    /// one whose processes are still alive, still carry this revision's identity and still serve
    /// their port is supervised again (same pids, logs keep appending); the others are started
    /// afresh (after stopping leftovers that are provably theirs). Indexes already supervised are
    /// left alone. A template that cannot run is logged and adopts nothing: the
    /// [`Supervisor::scale`] that follows reports it.
    pub fn adopt(&self, spec: &RevisionSpec, records: &[ReplicaRecord]) {
        if let Err(e) = self.try_adopt(spec, records) {
            tracing::error!(rollout = %spec.rollout, hash = %spec.hash, "cannot adopt replicas: {e}");
        }
    }

    fn try_adopt(
        &self,
        spec: &RevisionSpec,
        records: &[ReplicaRecord],
    ) -> Result<(), SupervisorError> {
        self.prepare(spec, "adopt")?;
        let spec_arc = Arc::new(spec.clone());
        {
            let mut revisions = lock(&self.inner.revisions);
            prune(&mut revisions);
            let pods = revisions
                .entry((spec.rollout.clone(), spec.hash.clone()))
                .or_default();
            for record in records {
                if pods.get(&record.index).is_some_and(|r| !r.stopping()) {
                    continue;
                }
                let previous = pods.remove(&record.index);
                let replica =
                    self.start_replica(&spec_arc, record.index, previous, Some(record.clone()))?;
                pods.insert(record.index, replica);
            }
        }
        self.bump();
        Ok(())
    }

    /// Stops every replica (SIGTERM, SIGKILL after each pod's terminationGracePeriodSeconds) and
    /// waits until all their processes have ended.
    pub async fn shutdown(&self) {
        lock(&self.inner.restarts).clear();
        let all: Vec<Replica> = {
            let mut revisions = lock(&self.inner.revisions);
            std::mem::take(&mut *revisions)
                .into_values()
                .flat_map(BTreeMap::into_values)
                .collect()
        };
        for replica in &all {
            replica.ctx.update(|s| s.terminating = true);
            replica.stop.cancel();
        }
        for replica in all {
            let _ = replica.task.await;
        }
        self.bump();
    }

    /// A receiver whose value changes whenever any replica's phase, readiness, pids or restart
    /// count changes, or replicas are added or removed.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    fn bump(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Checks the template and the runtime, and makes the revision's log directory.
    fn prepare(&self, spec: &RevisionSpec, operation: &'static str) -> Result<(), SupervisorError> {
        tokio::runtime::Handle::try_current()
            .map_err(|_| SupervisorError::NoRuntime { operation })?;
        spec::plan_pod(spec, 0, 1, &self.inner.inherited)?;
        let dir = self.log_dir(spec)?;
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(crate::private::DIR_MODE)
                .create(&dir)
        }
        .map_err(|source| SupervisorError::LogDir { path: dir, source })
    }

    /// `<log_dir>/<rollout>/<hash>`: names that are not one plain path component are refused,
    /// so no name leads outside the log directory.
    fn log_dir(&self, spec: &RevisionSpec) -> Result<PathBuf, SupervisorError> {
        Ok(crate::private::inside(
            &self.inner.config.log_dir,
            &[&spec.rollout, &spec.hash],
        )?)
    }

    fn start_replica(
        &self,
        spec: &Arc<RevisionSpec>,
        index: u32,
        previous: Option<Replica>,
        adopted: Option<ReplicaRecord>,
    ) -> Result<Replica, SupervisorError> {
        let port = match (&adopted, &previous) {
            (Some(record), _) => record.port,
            (None, Some(previous)) => lock(&previous.ctx.state).port,
            (None, None) => process::free_port().map_err(|source| SupervisorError::Port {
                rollout: spec.rollout.clone(),
                hash: spec.hash.clone(),
                index,
                source,
            })?,
        };
        let log_path = self.log_dir(spec)?.join(format!("{index}.log"));
        let config = &self.inner.config;
        let ctx = Arc::new(ReplicaCtx {
            spec: spec.clone(),
            index,
            inherited: self.inner.inherited.clone(),
            backoff_initial: config.backoff_initial,
            backoff_max: config.backoff_max.max(config.backoff_initial),
            state: Mutex::new(ReplicaState::new(port, log_path)),
            changes: self.inner.changes.clone(),
        });
        let stop = CancellationToken::new();
        let restart = Arc::new(Notify::new());
        let control = Control {
            stop: stop.clone(),
            restart: restart.clone(),
        };
        let task = tokio::spawn(replica::run(
            ctx.clone(),
            control,
            previous.map(|p| p.task),
            adopted,
        ));
        Ok(Replica {
            ctx,
            stop,
            restart,
            task: AbortOnDropHandle::new(task),
        })
    }
}

/// Forgets replicas whose processes have all ended, and revisions left without replicas.
fn prune(revisions: &mut BTreeMap<Key, BTreeMap<u32, Replica>>) {
    for pods in revisions.values_mut() {
        pods.retain(|_, r| !lock(&r.ctx.state).stopped);
    }
    revisions.retain(|_, pods| !pods.is_empty());
}

/// Restarts a revision's replicas started before `before`, one by one, keeping at most
/// `max_unavailable` of them unready. Holds the supervisor weakly so that it ends with it.
async fn rolling_restart(inner: Weak<Inner>, key: Key, before: Timestamp, max_unavailable: u32) {
    let Some(mut changes) = inner.upgrade().map(|i| i.changes.subscribe()) else {
        return;
    };
    loop {
        {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let revisions = lock(&inner.revisions);
            let Some(pods) = revisions.get(&key) else {
                return;
            };
            let live: Vec<&Replica> = pods.values().filter(|r| !r.stopping()).collect();
            let due: Vec<&Replica> = live
                .iter()
                .copied()
                .filter(|r| {
                    let s = lock(&r.ctx.state);
                    !s.restart_pending && s.started_at.is_some_and(|t| t < before)
                })
                .collect();
            if due.is_empty() {
                return;
            }
            let unavailable = live.iter().filter(|r| !r.status().ready).count();
            let room = usize::try_from(max_unavailable)
                .unwrap_or(usize::MAX)
                .saturating_sub(unavailable);
            for replica in due.into_iter().take(room) {
                replica.ctx.update(|s| s.restart_pending = true);
                replica.restart.notify_one();
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}
