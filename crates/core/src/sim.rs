//! A simulated world for the decision core: revisions with pods that become ready after a
//! while, Services whose data plane follows a selector change after a lag, and AnalysisRuns
//! that end when told (or after a set time), and migrations whose runs take a set time and
//! fail when told. It executes plans the way an adapter would, so
//! tests and the walkthrough in `cutover demo` can drive whole rollouts through [`plan`]
//! without processes or a cluster. Time is simulated; nothing here sleeps.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::api::{AnalysisPhase, PodTemplateMetadata, Rollout, RolloutStatus};
use crate::fixtures::set_image;
use crate::plan::{
    Action, AnalysisKind, Observed, ObservedAnalysisRun, ObservedMigrations, ObservedRevision,
    ObservedService, Plan, RevisionRole, RunningMigration, ServiceRole, plan,
};

mod migrations;

pub use migrations::SimMigrations;

/// A simulated pod.
#[derive(Clone, Debug, PartialEq)]
pub struct SimPod {
    /// When it started.
    pub started_at: Timestamp,
    /// Forced unready (a failing readiness probe), whatever its age.
    pub unready: bool,
}

/// A simulated revision (ReplicaSet or process group).
#[derive(Clone, Debug, PartialEq)]
pub struct SimRevision {
    /// Revision number.
    pub revision: i64,
    /// Its number when created.
    pub created_revision: i64,
    /// Its pod template, for undo.
    pub template: PodTemplateSpec,
    /// Pods asked for.
    pub desired: i32,
    /// Its pods.
    pub pods: Vec<SimPod>,
    /// Scale-down deadline.
    pub deadline: Option<Timestamp>,
    /// Role metadata on its pods.
    pub role: Option<RevisionRole>,
    /// The metadata of that role put on its pods.
    pub role_metadata: Option<PodTemplateMetadata>,
    /// Pods of this revision never become ready (a broken build).
    pub broken: bool,
}

/// A simulated Service and its data plane.
#[derive(Clone, Debug, PartialEq)]
pub struct SimService {
    /// Name.
    pub name: String,
    /// Hash in the selector.
    pub selector: Option<String>,
    /// Hash selected before the last change.
    pub previous: Option<String>,
    /// When the selector last changed.
    pub changed_at: Timestamp,
    /// The hash cutover last wrote (a hand edit changes `selector` only).
    pub recorded: Option<String>,
}

/// A simulated AnalysisRun.
#[derive(Clone, Debug, PartialEq)]
pub struct SimRun {
    /// Name.
    pub name: String,
    /// Gate.
    pub kind: AnalysisKind,
    /// Revision analysed.
    pub hash: String,
    /// Phase.
    pub phase: AnalysisPhase,
    /// Created at.
    pub created_at: Timestamp,
    /// Asked to stop.
    pub terminated: bool,
    /// Revision number it was started for.
    pub revision: i64,
}

/// The whole simulated world of one rollout.
#[derive(Clone, Debug)]
pub struct World {
    /// The Rollout object, status included.
    pub rollout: Rollout,
    /// Revisions by hash.
    pub revisions: BTreeMap<String, SimRevision>,
    /// The active Service.
    pub active: SimService,
    /// The preview Service.
    pub preview: Option<SimService>,
    /// AnalysisRuns.
    pub runs: Vec<SimRun>,
    /// The simulated clock.
    pub now: Timestamp,
    /// A new pod becomes ready this long after it starts.
    pub pod_ready_after: Duration,
    /// The data plane follows a selector change after this long.
    pub serving_lag: Duration,
    /// Runs end by themselves with this phase after this long; None: they wait for
    /// [`World::finish_runs`].
    pub auto_analysis: Option<(Duration, AnalysisPhase)>,
    /// Events published so far, as `Reason: message`.
    pub events: Vec<String>,
    /// The migrations, when the rollout has `spec.migrations`.
    pub migrations: Option<SimMigrations>,
}

impl World {
    /// A world holding a Rollout and its Services, nothing running yet.
    pub fn new(rollout: Rollout, now: Timestamp) -> Self {
        let rollout_has_migrations = rollout.spec.migrations.is_some();
        let bg = &rollout.spec.strategy.blue_green;
        let service = |name: &str| SimService {
            name: name.to_string(),
            selector: None,
            previous: None,
            changed_at: now,
            recorded: None,
        };
        Self {
            active: service(&bg.active_service),
            preview: bg.preview_service.as_deref().map(service),
            rollout,
            revisions: BTreeMap::new(),
            runs: Vec::new(),
            now,
            pod_ready_after: Duration::from_secs(2),
            serving_lag: Duration::from_millis(500),
            auto_analysis: None,
            events: Vec::new(),
            migrations: rollout_has_migrations.then(|| SimMigrations {
                duration: Duration::from_secs(3),
                ..SimMigrations::default()
            }),
        }
    }

    /// The snapshot an adapter would observe now.
    pub fn observe(&self) -> Observed {
        let revisions = self
            .revisions
            .iter()
            .map(|(hash, r)| {
                let ready = r.pods.iter().filter(|p| self.pod_ready(r, p)).count() as i32;
                ObservedRevision {
                    hash: hash.clone(),
                    revision: r.revision,
                    created_revision: r.created_revision,
                    desired: r.desired,
                    replicas: r.pods.len() as i32,
                    ready,
                    available: ready,
                    scale_down_deadline: r.deadline,
                    oldest_pod_started_at: r.pods.iter().map(|p| p.started_at).min(),
                    role: r.role,
                    role_metadata: r.role_metadata.clone(),
                    unavailable_reason: (r.broken && !r.pods.is_empty())
                        .then(|| "simulated: pods crash at start".to_string()),
                }
            })
            .collect();
        Observed {
            rollout: self.rollout.clone(),
            revisions,
            active_service: Some(self.observe_service(&self.active)),
            preview_service: self.preview.as_ref().map(|s| self.observe_service(s)),
            analysis_runs: self
                .runs
                .iter()
                .map(|r| ObservedAnalysisRun {
                    name: r.name.clone(),
                    kind: r.kind,
                    hash: r.hash.clone(),
                    phase: r.phase,
                    message: None,
                    created_at: r.created_at,
                    terminated: r.terminated,
                    revision: Some(r.revision),
                })
                .collect(),
            migrations: self.migrations.as_ref().map(|m| ObservedMigrations {
                migrations: m.migrations.clone(),
                running: m.job.as_ref().map(|(req, since)| RunningMigration {
                    command: req.command,
                    migration: Some(req.migration.clone()),
                    since: *since,
                }),
                failure: m.failure.clone(),
                unreadable: None,
            }),
        }
    }

    fn pod_ready(&self, rev: &SimRevision, pod: &SimPod) -> bool {
        !rev.broken && !pod.unready && self.since(pod.started_at) >= self.pod_ready_after
    }

    fn since(&self, t: Timestamp) -> Duration {
        let ms = self.now.as_millisecond() - t.as_millisecond();
        Duration::from_millis(ms.max(0).unsigned_abs())
    }

    /// Endpoints follow the selector after `serving_lag`; before that both the old and the new
    /// revision's ready pods may be served.
    fn observe_service(&self, s: &SimService) -> ObservedService {
        let has_ready = |hash: &Option<String>| -> Option<String> {
            hash.clone().filter(|h| {
                self.revisions
                    .get(h)
                    .is_some_and(|r| r.pods.iter().any(|p| self.pod_ready(r, p)))
            })
        };
        let mut serving: Vec<String> = Vec::new();
        if let Some(h) = has_ready(&s.selector) {
            serving.push(h);
        }
        if self.since(s.changed_at) < self.serving_lag
            && let Some(h) = has_ready(&s.previous)
        {
            serving.push(h);
        }
        serving.sort();
        serving.dedup();
        ObservedService {
            name: s.name.clone(),
            selector_hash: s.selector.clone(),
            serving,
            recorded_selector: s.recorded.clone(),
        }
    }

    /// Plans once against the current world and executes the plan.
    pub fn reconcile(&mut self) -> Plan {
        let plan = plan(&self.observe(), self.now);
        self.apply(&plan);
        plan
    }

    /// Executes a plan's actions and writes its status, as an adapter does.
    pub fn apply(&mut self, plan: &Plan) {
        for action in &plan.actions {
            self.execute(action);
        }
        self.rollout.status = Some(plan.status.clone());
        for e in &plan.events {
            self.events.push(format!("{}: {}", e.reason, e.message));
        }
    }

    /// Executes a plan's actions but loses its status write and events: an adapter that
    /// crashed after changing the world, or whose later write of the same pass failed.
    pub fn apply_losing_status(&mut self, plan: &Plan) {
        for action in &plan.actions {
            self.execute(action);
        }
    }

    fn execute(&mut self, action: &Action) {
        match action {
            Action::CreateRevision {
                hash,
                revision,
                role,
                metadata,
            } => {
                self.revisions.insert(
                    hash.clone(),
                    SimRevision {
                        revision: *revision,
                        created_revision: *revision,
                        template: self.rollout.spec.template.clone(),
                        desired: 0,
                        pods: Vec::new(),
                        deadline: None,
                        role: *role,
                        role_metadata: metadata.clone(),
                        broken: false,
                    },
                );
            }
            Action::SetRevisionNumber { hash, revision, .. } => {
                if let Some(r) = self.revisions.get_mut(hash) {
                    r.revision = *revision;
                }
            }
            Action::ScaleRevision { hash, replicas, .. } => {
                let now = self.now;
                if let Some(r) = self.revisions.get_mut(hash) {
                    r.desired = *replicas;
                    let want = usize::try_from(*replicas).unwrap_or(0);
                    r.pods.truncate(want);
                    while r.pods.len() < want {
                        r.pods.push(SimPod {
                            started_at: now,
                            unready: false,
                        });
                    }
                }
            }
            Action::SetScaleDownDeadline { hash, deadline } => {
                if let Some(r) = self.revisions.get_mut(hash) {
                    r.deadline = *deadline;
                }
            }
            Action::SwitchService { role, to, .. } => {
                let now = self.now;
                let service = match role {
                    ServiceRole::Active => Some(&mut self.active),
                    ServiceRole::Preview => self.preview.as_mut(),
                };
                if let Some(s) = service {
                    s.previous = s.selector.replace(to.clone());
                    s.changed_at = now;
                    s.recorded = Some(to.clone());
                }
            }
            Action::StartAnalysis(req) => self.runs.push(SimRun {
                name: req.name.clone(),
                kind: req.kind,
                hash: req.hash.clone(),
                phase: AnalysisPhase::Running,
                created_at: self.now,
                terminated: false,
                revision: req.revision,
            }),
            Action::TerminateAnalysis { name, .. } => {
                for r in self.runs.iter_mut().filter(|r| &r.name == name) {
                    r.terminated = true;
                    if !r.phase.is_completed() {
                        r.phase = AnalysisPhase::Successful;
                    }
                }
            }
            Action::DeleteAnalysisRun { name } => self.runs.retain(|r| &r.name != name),
            Action::DeleteRevision { hash } => {
                self.revisions.remove(hash);
            }
            Action::SetRevisionRole {
                hash,
                role,
                metadata,
                ..
            } => {
                if let Some(r) = self.revisions.get_mut(hash) {
                    r.role = *role;
                    r.role_metadata = metadata.clone();
                }
            }
            Action::RunMigration(req) => self.start_migration(req),
            Action::RestartPods {
                hash,
                before,
                max_unavailable,
            } => {
                let now = self.now;
                if let Some(r) = self.revisions.get_mut(hash) {
                    let mut budget = *max_unavailable;
                    for pod in r.pods.iter_mut().filter(|p| p.started_at < *before) {
                        if budget == 0 {
                            break;
                        }
                        pod.started_at = now;
                        budget -= 1;
                    }
                }
            }
        }
    }

    /// Lets simulated time pass: pods become ready, the data plane catches up, runs end.
    pub fn advance(&mut self, by: Duration) {
        self.now = self
            .now
            .saturating_add(SignedDuration::try_from(by).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX);
        self.finish_due_migration();
        if let Some((after, phase)) = self.auto_analysis {
            let now = self.now;
            for r in self.runs.iter_mut().filter(|r| !r.phase.is_completed()) {
                let age = now.as_millisecond() - r.created_at.as_millisecond();
                if age >= i64::try_from(after.as_millis()).unwrap_or(i64::MAX) {
                    r.phase = phase;
                }
            }
        }
    }

    /// Reconciles and advances by `step` until a plan has no actions and no timer, at most
    /// `max_passes` times. Returns the plans made.
    pub fn settle(&mut self, step: Duration, max_passes: usize) -> Vec<Plan> {
        let mut plans = Vec::new();
        for _ in 0..max_passes {
            let plan = self.reconcile();
            let idle = plan.actions.is_empty();
            let wait = plan.requeue_after;
            plans.push(plan);
            if idle && wait.is_none() {
                break;
            }
            self.advance(wait.map_or(step, |w| w.clamp(Duration::from_millis(1), step)));
        }
        plans
    }

    /// Ends every running run of a gate with a phase.
    pub fn finish_runs(&mut self, kind: AnalysisKind, phase: AnalysisPhase) {
        for r in self
            .runs
            .iter_mut()
            .filter(|r| r.kind == kind && !r.phase.is_completed())
        {
            r.phase = phase;
        }
    }

    /// `set image`: every container gets `image`.
    pub fn set_image(&mut self, image: &str) {
        set_image(&mut self.rollout.spec, image);
        self.bump_generation();
    }

    /// `promote`: clears pause conditions (and `spec.paused`); `full` also skips the remaining
    /// gates.
    pub fn promote(&mut self, full: bool) {
        let status = self.status_mut();
        status.pause_conditions.clear();
        if full {
            status.promote_full = true;
        }
        self.rollout.spec.paused = None;
    }

    /// `abort`.
    pub fn abort(&mut self) {
        self.status_mut().abort = true;
    }

    /// `retry`.
    pub fn retry(&mut self) {
        self.status_mut().abort = false;
    }

    /// `pause` / `resume` (`spec.paused`).
    pub fn set_paused(&mut self, paused: bool) {
        self.rollout.spec.paused = paused.then_some(true);
        self.bump_generation();
    }

    /// `undo [--to-revision N]`: the template of revision N, or of the newest revision older
    /// than the current one. Returns false when there is no such revision.
    pub fn undo(&mut self, to_revision: Option<i64>) -> bool {
        let current = self
            .rollout
            .status
            .as_ref()
            .and_then(|s| s.current_revision)
            .unwrap_or(0);
        let target = self
            .revisions
            .values()
            .filter(|r| match to_revision {
                Some(n) => r.revision == n,
                None => r.revision < current,
            })
            .max_by_key(|r| r.revision)
            .map(|r| r.template.clone());
        match target {
            Some(template) => {
                self.rollout.spec.template = template;
                self.bump_generation();
                true
            }
            None => false,
        }
    }

    /// Someone edits the active Service's selector by hand (cutover's record stays).
    pub fn edit_active_selector_by_hand(&mut self, hash: &str) {
        self.active.previous = self.active.selector.replace(hash.to_string());
        self.active.changed_at = self.now;
    }

    /// Someone deletes a revision by hand, pods and all.
    pub fn delete_revision_by_hand(&mut self, hash: &str) {
        self.revisions.remove(hash);
    }

    /// The stored status.
    pub fn status(&self) -> RolloutStatus {
        self.rollout.status.clone().unwrap_or_default()
    }

    fn status_mut(&mut self) -> &mut RolloutStatus {
        self.rollout
            .status
            .get_or_insert_with(RolloutStatus::default)
    }

    fn bump_generation(&mut self) {
        let g = self.rollout.metadata.generation.unwrap_or(0);
        self.rollout.metadata.generation = Some(g + 1);
    }
}
