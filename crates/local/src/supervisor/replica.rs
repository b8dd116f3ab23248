//! One replica ("pod"): a task that starts the pod's containers, restarts them with backoff when
//! they exit or fail liveness, tracks readiness, and stops them on request.

use std::future::pending;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::probe::{Verdict, run_loop};
use super::process::{self, Proc};
use super::spec::{ContainerPlan, PodPlan, plan_pod};
use super::{ContainerStatus, ReplicaPhase, ReplicaRecord, ReplicaStatus, RevisionSpec};

/// A container that ran this long without trouble starts its next backoff from the beginning.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// What a replica's task needs; it holds no reference to the supervisor itself, so dropping the
/// supervisor (a simulated or real daemon crash) aborts the tasks without touching the processes.
pub(crate) struct ReplicaCtx {
    pub spec: Arc<RevisionSpec>,
    pub index: u32,
    pub inherited: Arc<Vec<(String, String)>>,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub state: Mutex<ReplicaState>,
    pub changes: watch::Sender<u64>,
}

/// The mutable state behind [`ReplicaStatus`].
pub(crate) struct ReplicaState {
    pub port: u16,
    pub log_path: PathBuf,
    pub started_at: Option<Timestamp>,
    pub ready_since: Option<Timestamp>,
    pub terminating: bool,
    pub stopped: bool,
    /// A restart was asked for and has not begun: counts as unavailable at once, so a rolling
    /// restart never takes down more replicas than allowed.
    pub restart_pending: bool,
    pub last_exit: Option<String>,
    pub containers: Vec<ContainerStatus>,
}

/// How the supervisor steers a replica's task.
pub(crate) struct Control {
    pub stop: CancellationToken,
    pub restart: Arc<Notify>,
}

impl ReplicaState {
    pub fn new(port: u16, log_path: PathBuf) -> Self {
        ReplicaState {
            port,
            log_path,
            started_at: None,
            ready_since: None,
            terminating: false,
            stopped: false,
            restart_pending: false,
            last_exit: None,
            containers: Vec::new(),
        }
    }

    fn phase(&self) -> ReplicaPhase {
        if self.stopped {
            return ReplicaPhase::Stopped;
        }
        if self.terminating {
            return ReplicaPhase::Terminating;
        }
        let retry_at = self
            .containers
            .iter()
            .filter_map(|c| match c.phase {
                ReplicaPhase::CrashLoopBackOff { retry_at } => Some(retry_at),
                _ => None,
            })
            .min();
        if let Some(retry_at) = retry_at {
            return ReplicaPhase::CrashLoopBackOff { retry_at };
        }
        let running = !self.containers.is_empty()
            && self
                .containers
                .iter()
                .all(|c| c.phase == ReplicaPhase::Running);
        if running {
            ReplicaPhase::Running
        } else {
            ReplicaPhase::Starting
        }
    }

    fn ready(&self) -> bool {
        self.phase() == ReplicaPhase::Running
            && !self.restart_pending
            && self.containers.iter().all(|c| c.ready)
    }

    pub fn status(&self, index: u32) -> ReplicaStatus {
        ReplicaStatus {
            index,
            pid: self.containers.first().and_then(|c| c.pid),
            port: self.port,
            addr: std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, self.port)),
            phase: self.phase(),
            ready: self.ready(),
            ready_since: self.ready_since,
            started_at: self.started_at,
            restarts: self.containers.iter().map(|c| c.restarts).sum(),
            last_exit: self.last_exit.clone(),
            log_path: self.log_path.clone(),
            containers: self.containers.clone(),
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent even if a holder panicked: every update is a few assignments.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ReplicaCtx {
    /// Applies `f` and announces the change if the phase, readiness, pids or restarts moved.
    pub fn update(&self, f: impl FnOnce(&mut ReplicaState)) {
        let changed = {
            let mut s = lock(&self.state);
            let before = s.status(self.index);
            f(&mut s);
            let ready = s.ready();
            if !ready {
                s.ready_since = None;
            } else if s.ready_since.is_none() {
                s.ready_since = Some(Timestamp::now());
            }
            let after = s.status(self.index);
            (
                before.phase,
                before.ready,
                before.restarts,
                before.port,
                before.containers.iter().map(|c| c.pid).collect::<Vec<_>>(),
            ) != (
                after.phase,
                after.ready,
                after.restarts,
                after.port,
                after.containers.iter().map(|c| c.pid).collect(),
            )
        };
        if changed {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn container(&self, ci: usize, f: impl FnOnce(&mut ContainerStatus)) {
        self.update(|s| {
            if let Some(c) = s.containers.get_mut(ci) {
                f(c);
            }
        });
    }

    fn where_(&self) -> String {
        format!("{}/{}/{}", self.spec.rollout, self.spec.hash, self.index)
    }
}

/// The replica's task: waits for the replica it replaces (same index) to finish stopping, then
/// runs pods until told to stop, starting a fresh pod whenever a restart is requested.
pub(crate) async fn run(
    ctx: Arc<ReplicaCtx>,
    control: Control,
    previous: Option<AbortOnDropHandle<()>>,
    mut adopted: Option<ReplicaRecord>,
) {
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    loop {
        if control.stop.is_cancelled() {
            ctx.update(|s| s.stopped = true);
            return;
        }
        let record = adopted.take();
        let mut port = choose_port(&ctx, record.is_some());
        let mut pids = None;
        if let Some(record) = &record {
            pids = adoptable(&ctx, record).await;
            if pids.is_none() {
                // Not adopted: the recorded port may now belong to someone else.
                port = choose_port(&ctx, false);
            }
        }
        let plan = match plan_pod(&ctx.spec, ctx.index, port, &ctx.inherited) {
            Ok(plan) => Arc::new(plan),
            Err(e) => {
                // The template was checked when the replica was created; only a change of port
                // could get here, and waiting for a stop is all that is left to do.
                ctx.update(|s| s.last_exit = Some(e.to_string()));
                control.stop.cancelled().await;
                ctx.update(|s| s.stopped = true);
                return;
            }
        };
        let started_at = match (&record, &pids) {
            (Some(record), Some(_)) => record.started_at,
            _ => Timestamp::now(),
        };
        ctx.update(|s| {
            s.port = port;
            s.started_at = Some(started_at);
            s.terminating = false;
            s.restart_pending = false;
            let old = std::mem::take(&mut s.containers);
            s.containers = plan
                .containers
                .iter()
                .map(|c| {
                    let prev = old.iter().find(|o| o.name == c.name);
                    ContainerStatus {
                        name: c.name.clone(),
                        pid: None,
                        phase: ReplicaPhase::Starting,
                        ready: false,
                        restarts: prev.map_or(0, |p| p.restarts),
                        last_exit: prev.and_then(|p| p.last_exit.clone()),
                    }
                })
                .collect();
        });
        let pod = control.stop.child_token();
        let mut containers = JoinSet::new();
        for ci in 0..plan.containers.len() {
            let pid = pids.as_ref().and_then(|p| p.get(ci).copied());
            containers.spawn(run_container(
                ctx.clone(),
                plan.clone(),
                ci,
                pod.clone(),
                pid,
            ));
        }
        let restart = tokio::select! {
            _ = control.stop.cancelled() => false,
            _ = control.restart.notified() => true,
        };
        ctx.update(|s| s.terminating = true);
        pod.cancel();
        while containers.join_next().await.is_some() {}
        if !restart {
            ctx.update(|s| {
                s.terminating = false;
                s.stopped = true;
            });
            return;
        }
        tracing::info!(replica = %ctx.where_(), "restarting replica");
    }
}

/// Keeps the replica's port across pod restarts when it is still free, so its address stays put.
fn choose_port(ctx: &ReplicaCtx, adopting: bool) -> u16 {
    let current = lock(&ctx.state).port;
    if adopting || process::port_free(current) {
        return current;
    }
    match process::free_port() {
        Ok(port) => port,
        // Keep the old port: the pod then fails to bind and retries with backoff.
        Err(_) => current,
    }
}

/// The pids to adopt for a recorded replica, when its processes are still alive, are ours and
/// still serve its port. Processes that are ours but unfit to keep are stopped.
async fn adoptable(ctx: &ReplicaCtx, record: &ReplicaRecord) -> Option<Vec<u32>> {
    // The port does not matter here: only the container count and grace period are used.
    let plan = plan_pod(&ctx.spec, ctx.index, record.port, &ctx.inherited).ok()?;
    let mut pids = vec![record.pid];
    if plan.containers.len() > 1 {
        let saved = read_pids(&lock(&ctx.state).log_path);
        if saved.first() == Some(&record.pid) {
            pids = saved;
        }
    }
    let identity = |pid: u32| process::pid_identity_matches(pid, &ctx.spec.hash, ctx.index);
    // Where /proc cannot tell (`None`), a live pid serving the recorded port is taken as ours.
    let all_ours = pids
        .iter()
        .all(|p| process::pid_alive(*p) && identity(*p) != Some(false));
    if all_ours && pids.len() == plan.containers.len() && process::port_listening(record.port).await
    {
        tracing::info!(replica = %ctx.where_(), ?pids, "adopted running replica");
        return Some(pids);
    }
    tracing::warn!(replica = %ctx.where_(), ?pids, "recorded replica is not fit to adopt; starting it again");
    // Only processes proven ours are stopped: a recycled pid may belong to anything.
    for pid in pids
        .into_iter()
        .filter(|p| process::pid_alive(*p) && identity(*p) == Some(true))
    {
        process::terminate_pid(pid, plan.grace).await;
    }
    None
}

/// Where a multi-container replica's pids are kept for adoption: beside its log.
fn pids_path(log_path: &std::path::Path) -> PathBuf {
    log_path.with_extension("pids")
}

/// Saves the pids of every container of the replica (0 for one not running), so a restarted daemon
/// can adopt the sidecars as well as the first container named in the engine's record.
fn save_pids(ctx: &ReplicaCtx) {
    let (path, pids) = {
        let s = lock(&ctx.state);
        let pids: Vec<u32> = s.containers.iter().map(|c| c.pid.unwrap_or(0)).collect();
        (pids_path(&s.log_path), pids)
    };
    let text = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    if let Err(e) = std::fs::write(&path, text) {
        tracing::warn!(path = %path.display(), "could not save replica pids (adoption after a daemon crash will restart the sidecars): {e}");
    }
}

fn read_pids(log_path: &std::path::Path) -> Vec<u32> {
    std::fs::read_to_string(pids_path(log_path))
        .map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one container until the pod is stopped, restarting it with exponential backoff.
async fn run_container(
    ctx: Arc<ReplicaCtx>,
    plan: Arc<PodPlan>,
    ci: usize,
    pod: CancellationToken,
    mut adopted: Option<u32>,
) {
    let Some(c) = plan.containers.get(ci) else {
        return;
    };
    let label = |why: &str| {
        if plan.containers.len() > 1 {
            format!("container {}: {why}", c.name)
        } else {
            why.to_owned()
        }
    };
    let mut backoff = ctx.backoff_initial;
    loop {
        let began = Instant::now();
        let was_adopted = adopted.is_some();
        let log_path = lock(&ctx.state).log_path.clone();
        let spawned = match adopted.take() {
            Some(pid) => Ok(Proc::Adopted { pid }),
            None => process::spawn(c, &log_path),
        };
        let why = match spawned {
            Err(why) => why,
            Ok(mut proc) => {
                let pid = proc.pid();
                ctx.container(ci, |s| {
                    s.pid = Some(pid);
                    s.phase = ReplicaPhase::Running;
                    s.ready = false;
                });
                if plan.containers.len() > 1 {
                    save_pids(&ctx);
                }
                match supervise(&ctx, ci, c, &mut proc, &pod, plan.grace, was_adopted).await {
                    Ok(ended) => {
                        ctx.update(|s| {
                            s.last_exit = Some(label(&ended));
                            if let Some(cs) = s.containers.get_mut(ci) {
                                cs.pid = None;
                                cs.ready = false;
                                cs.phase = ReplicaPhase::Stopped;
                                cs.last_exit = Some(ended);
                            }
                        });
                        return;
                    }
                    Err(why) => why,
                }
            }
        };
        if began.elapsed() >= BACKOFF_RESET_AFTER {
            backoff = ctx.backoff_initial;
        }
        let retry_at = Timestamp::now()
            .checked_add(backoff)
            .unwrap_or_else(|_| Timestamp::now());
        tracing::warn!(replica = %ctx.where_(), container = %c.name, %why, ?backoff, "container ended; restarting after backoff");
        ctx.update(|s| {
            s.last_exit = Some(label(&why));
            if let Some(cs) = s.containers.get_mut(ci) {
                cs.pid = None;
                cs.ready = false;
                cs.phase = ReplicaPhase::CrashLoopBackOff { retry_at };
                cs.last_exit = Some(why);
            }
        });
        tokio::select! {
            _ = sleep(backoff) => {}
            _ = pod.cancelled() => {
                ctx.container(ci, |s| s.phase = ReplicaPhase::Stopped);
                return;
            }
        }
        backoff = backoff.saturating_mul(2).min(ctx.backoff_max);
        ctx.container(ci, |s| {
            s.restarts += 1;
            s.phase = ReplicaPhase::Starting;
        });
    }
}

/// Watches a running container. `Ok(how it ended)` when the pod was stopped; `Err(why)` when the
/// container exited or failed a probe and must be restarted.
async fn supervise(
    ctx: &ReplicaCtx,
    ci: usize,
    c: &ContainerPlan,
    proc: &mut Proc,
    pod: &CancellationToken,
    grace: Duration,
    adopted: bool,
) -> Result<String, String> {
    let pid = proc.pid();
    tokio::select! {
        ended = proc.wait() => {
            process::kill_leftovers(pid);
            Err(ended)
        }
        why = watch_probes(ctx, ci, c, adopted) => {
            let ended = process::terminate(proc, grace).await;
            Err(format!("{why}; {ended}"))
        }
        _ = pod.cancelled() => {
            ctx.container(ci, |s| s.ready = false);
            Ok(process::terminate(proc, grace).await)
        }
    }
}

/// Runs the container's probes; returns only when the container must be restarted (startup or
/// liveness failure). Readiness is written to the replica state as it changes.
async fn watch_probes(ctx: &ReplicaCtx, ci: usize, c: &ContainerPlan, adopted: bool) -> String {
    if let Some(startup) = &c.startup {
        let mut failed = None;
        run_loop(startup, c, adopted, |v| {
            if let Verdict::Failed(why) = v {
                failed = Some(why);
            }
            true
        })
        .await;
        if let Some(why) = failed {
            return format!("startup probe failed: {why}");
        }
    }
    let readiness = async {
        match &c.readiness {
            // Like Kubernetes: without a readiness probe a running container is ready.
            None => ctx.container(ci, |s| s.ready = true),
            Some(probe) => {
                run_loop(probe, c, adopted, |v| {
                    ctx.container(ci, |s| s.ready = matches!(v, Verdict::Passed));
                    false
                })
                .await
            }
        }
        pending::<String>().await
    };
    let liveness = async {
        let Some(probe) = &c.liveness else {
            return pending::<String>().await;
        };
        let mut failed = String::new();
        run_loop(probe, c, adopted, |v| match v {
            Verdict::Failed(why) => {
                failed = why;
                true
            }
            Verdict::Passed => false,
        })
        .await;
        format!("liveness probe failed: {failed}")
    };
    tokio::select! {
        why = readiness => why,
        why = liveness => why,
    }
}
