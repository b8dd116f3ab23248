//! What the API returns about a rollout: the object with its status, its revisions with their
//! processes, its Services with what they serve, and recent events.

use cutover_core::api::{AnalysisRunSpec, AnalysisRunStatus, Metric, Rollout};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
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
    /// What each metric is measured against (its conditions and limits), so a view can draw
    /// measurements beside them. Empty for runs whose spec is not known yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSpecView>,
}

/// A metric's conditions and limits: never its provider's settings (queries, URLs, headers),
/// which may carry resolved secrets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricSpecView {
    /// Metric name.
    pub name: String,
    /// Provider kind: prometheus, web, job or builtin.
    pub provider: String,
    /// Expression that marks a measurement Successful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// Expression that marks a measurement Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<String>,
    /// Measurements planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<String>,
    /// Time between measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

impl MetricSpecView {
    /// The view of one metric of a run's spec.
    pub fn of(metric: &Metric) -> Self {
        let text = |v: &IntOrString| match v {
            IntOrString::Int(i) => i.to_string(),
            IntOrString::String(s) => s.clone(),
        };
        Self {
            name: metric.name.clone(),
            provider: metric.provider.kinds().join(","),
            success_condition: metric.success_condition.clone(),
            failure_condition: metric.failure_condition.clone(),
            failure_limit: metric.failure_limit.as_ref().map(text),
            count: metric.count.as_ref().map(text),
            interval: metric.interval.as_ref().map(|d| d.0.clone()),
        }
    }

    /// The views of a run's metrics.
    pub fn all(spec: &AnalysisRunSpec) -> Vec<Self> {
        spec.metrics.iter().map(Self::of).collect()
    }
}

/// Which revision holds which role: from status (stable, and the active and preview
/// selectors), as Argo reads them; before the first status the Services' own selectors stand
/// in. The CLI's tree and the dashboard tag revisions and images with these.
pub struct Roles {
    /// The last fully promoted revision.
    pub stable: Option<String>,
    /// The revision the active Service selects.
    pub active: Option<String>,
    /// The revision the preview Service selects.
    pub preview: Option<String>,
}

impl Roles {
    /// The roles in a view.
    pub fn of(view: &RolloutView) -> Self {
        let status = view.rollout.status.as_ref();
        let service = |i: usize| view.services.get(i).and_then(|v| v.selector.clone());
        Self {
            stable: status.and_then(|s| s.stable_rs.clone()),
            active: status
                .and_then(|s| s.blue_green.active_selector.clone())
                .or_else(|| service(0)),
            preview: status
                .and_then(|s| s.blue_green.preview_selector.clone())
                .or_else(|| service(1)),
        }
    }

    /// `stable`, then `active` or (only when not active) `preview`, as Argo tags them.
    pub fn tags(&self, hash: &str) -> Vec<&'static str> {
        let mut tags = Vec::new();
        if self.stable.as_deref() == Some(hash) {
            tags.push("stable");
        }
        if self.active.as_deref() == Some(hash) {
            tags.push("active");
        } else if self.preview.as_deref() == Some(hash) {
            tags.push("preview");
        }
        tags
    }
}

impl RolloutView {
    /// Images of the revisions that have or want pods, each with the roles of the revisions
    /// running it, sorted by image.
    pub fn images_with_roles(&self, roles: &Roles) -> Vec<(String, Vec<&'static str>)> {
        let mut by_image: std::collections::BTreeMap<&str, Vec<&'static str>> =
            std::collections::BTreeMap::new();
        for rev in self
            .revisions
            .iter()
            .filter(|v| v.desired > 0 || !v.replicas.is_empty())
        {
            for image in &rev.images {
                let tags = by_image.entry(image.as_str()).or_default();
                for tag in roles.tags(&rev.hash) {
                    if !tags.contains(&tag) {
                        tags.push(tag);
                    }
                }
            }
        }
        by_image
            .into_iter()
            .map(|(image, tags)| (image.to_string(), tags))
            .collect()
    }
}

/// kubectl's compact duration: `45s`, `3m20s`, `25m`, `5h10m`, `2d3h`, `1y20d`.
pub fn human_duration(seconds: i64) -> String {
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    let pair = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    match () {
        () if seconds < 120 => format!("{seconds}s"),
        () if minutes < 10 => pair(minutes, "m", seconds % 60, "s"),
        () if minutes < 180 => format!("{minutes}m"),
        () if hours < 8 => pair(hours, "h", minutes % 60, "m"),
        () if hours < 48 => format!("{hours}h"),
        () if hours < 24 * 8 => pair(days, "d", hours % 24, "h"),
        () if days < 365 * 2 => format!("{days}d"),
        () if days < 365 * 8 => pair(days / 365, "y", days % 365, "d"),
        () => format!("{}y", days / 365),
    }
}

/// The part of a stored run's resolved spec the view reads (the rest is the engine's).
#[derive(Deserialize)]
struct StoredSpec {
    spec: AnalysisRunSpec,
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
                let (spec, status) = tx
                    .run_state(&r.name)?
                    .map(|(_, spec, status)| (spec, status))
                    .unwrap_or_default();
                let status = status.and_then(|s| serde_json::from_str(&s).ok());
                let metrics = spec
                    .and_then(|s| serde_json::from_str::<StoredSpec>(&s).ok())
                    .map(|s| MetricSpecView::all(&s.spec))
                    .unwrap_or_default();
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
                    metrics,
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
