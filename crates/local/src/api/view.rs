//! What the API returns about a rollout: the object with its status, its revisions with their
//! processes, its Services with what they serve, and recent events.

use cutover_core::api::{AnalysisRunStatus, Rollout};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::store::{EventRow, StoreError};
use crate::supervisor::ReplicaPhase;

/// A rollout and everything around it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutView {
    /// The Rollout, status included.
    pub rollout: Rollout,
    /// Its revisions, newest first.
    pub revisions: Vec<RevisionView>,
    /// Its active and preview Services.
    pub services: Vec<ServiceView>,
    /// Recent events, oldest first.
    pub events: Vec<EventRow>,
    /// Its AnalysisRuns, oldest first.
    #[serde(default)]
    pub runs: Vec<RunView>,
    /// Its managed mesh or gateway routes, one line each (Kubernetes with `trafficRouting`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

/// An AnalysisRun and its measurements.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    /// Run name.
    pub name: String,
    /// Rollout it belongs to.
    pub rollout: String,
    /// "pre" or "post".
    pub kind: String,
    /// Revision analysed.
    pub hash: String,
    /// Phase.
    pub phase: String,
    /// Why it is in its phase.
    pub message: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Asked to stop.
    pub terminated: bool,
    /// The whole status: metrics and their measurements.
    pub status: Option<AnalysisRunStatus>,
}

/// A revision and its processes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionView {
    /// Pod-template hash.
    pub hash: String,
    /// Revision number.
    pub revision: i64,
    /// Images of its containers.
    pub images: Vec<String>,
    /// Replicas asked for.
    pub desired: i32,
    /// Scale-down deadline.
    pub deadline: Option<Timestamp>,
    /// When it was created (unknown for revisions made by an older cutover).
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// Its replicas.
    pub replicas: Vec<ReplicaView>,
}

/// One replica.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaView {
    /// Its name: the pod's on Kubernetes, `<rollout>-<hash>-<index>` on one host.
    #[serde(default)]
    pub name: String,
    /// Index within the revision.
    pub index: u32,
    /// Process id of its first container.
    pub pid: Option<u32>,
    /// Its port.
    pub port: u16,
    /// Starting, Running, CrashLoopBackOff, Terminating or Stopped.
    pub phase: String,
    /// Passes readiness.
    pub ready: bool,
    /// Restarts so far.
    pub restarts: u32,
    /// When it was created (the pod) or last started (the process group on one host).
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// Why it last exited.
    pub last_exit: Option<String>,
    /// Its log file.
    pub log_path: String,
}

/// A Service and its data plane.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    /// Service name.
    pub name: String,
    /// Where it listens.
    pub address: Option<String>,
    /// The revision it selects.
    pub selector: Option<String>,
    /// Revisions it sends traffic to right now.
    pub serving: Vec<String>,
    /// Its route table generation.
    pub generation: u64,
}

impl Engine {
    /// The view of one rollout, or None if it does not exist.
    pub fn view(&self, name: &str) -> Result<Option<RolloutView>, StoreError> {
        self.store.read(|tx| {
            let Some(rollout) = tx.rollout(name)? else {
                return Ok(None);
            };
            let created = tx.revision_created_at(name)?;
            let mut revisions: Vec<RevisionView> = tx
                .revisions(name)?
                .into_iter()
                .map(|row| RevisionView {
                    created_at: created.get(&row.hash).copied(),
                    images: row
                        .template
                        .spec
                        .as_ref()
                        .map(|p| {
                            p.containers
                                .iter()
                                .filter_map(|c| c.image.clone())
                                .collect()
                        })
                        .unwrap_or_default(),
                    replicas: self
                        .supervisor
                        .observe(name, &row.hash)
                        .into_iter()
                        .map(|r| ReplicaView {
                            name: format!("{name}-{}-{}", row.hash, r.index),
                            created_at: r.started_at,
                            index: r.index,
                            pid: r.pid,
                            port: r.port,
                            phase: phase_name(&r.phase),
                            ready: r.ready,
                            restarts: r.restarts,
                            last_exit: r.last_exit.clone(),
                            log_path: r.log_path.display().to_string(),
                        })
                        .collect(),
                    hash: row.hash,
                    revision: row.revision,
                    desired: row.desired,
                    deadline: row.deadline,
                })
                .collect();
            revisions.sort_by_key(|r| std::cmp::Reverse(r.revision));
            let bg = &rollout.spec.strategy.blue_green;
            let mut services = Vec::new();
            for service in std::iter::once(&bg.active_service).chain(bg.preview_service.iter()) {
                let handle = self.router.service(service);
                services.push(ServiceView {
                    name: service.clone(),
                    address: handle.as_ref().map(|h| h.local_addr().to_string()),
                    selector: tx.selector(service)?,
                    serving: handle.as_ref().map(|h| h.serving()).unwrap_or_default(),
                    generation: handle.as_ref().map_or(0, |h| h.generation()),
                });
            }
            let mut runs = Vec::new();
            for r in tx.runs(name)? {
                let status = tx
                    .run_state(&r.name)?
                    .and_then(|(_, _, status)| status)
                    .and_then(|s| serde_json::from_str(&s).ok());
                runs.push(RunView {
                    name: r.name,
                    rollout: name.to_string(),
                    kind: r.kind,
                    hash: r.hash,
                    phase: r.phase,
                    message: r.message,
                    created_at: r.created_at,
                    terminated: r.terminated,
                    status,
                });
            }
            Ok(Some(RolloutView {
                runs,
                events: tx.events(name, 30)?,
                rollout,
                revisions,
                services,
                // One host routes through the built-in router: the Services show it.
                routes: Vec::new(),
            }))
        })
    }
}

fn phase_name(phase: &ReplicaPhase) -> String {
    match phase {
        ReplicaPhase::Starting => "Starting".into(),
        ReplicaPhase::Running => "Running".into(),
        ReplicaPhase::CrashLoopBackOff { .. } => "CrashLoopBackOff".into(),
        ReplicaPhase::Terminating => "Terminating".into(),
        ReplicaPhase::Stopped => "Stopped".into(),
    }
}

impl Engine {
    /// One AnalysisRun by name, or None.
    pub fn run_view(&self, run: &str) -> Result<Option<RunView>, StoreError> {
        let Some((rollout, _, _)) = self.store.read(|tx| tx.run_state(run))? else {
            return Ok(None);
        };
        Ok(self
            .view(&rollout)?
            .and_then(|v| v.runs.into_iter().find(|r| r.name == run)))
    }
}
