//! `plan(observed, now) -> Plan`: the whole blue/green state machine, pure.
//!
//! One pass reads the snapshot, decides, and returns actions, the status to write, events and a
//! requeue time. It never reads a clock or does I/O, so every decision can be replayed in a
//! table test. The passes are idempotent: planning the world that a plan's actions produced
//! yields no further actions once the rollout has converged.
//!
//! Order of a pass:
//! 1. spec and Service checks (nothing happens on an invalid spec);
//! 2. the current revision (created when missing) and the start of a new update;
//! 3. abort and retry bookkeeping;
//! 4. the flow: steady (current is stable), forward (gates, switch, verification, post-analysis,
//!    promotion) or aborted (switch back, delayed scale-down);
//! 5. common housekeeping: preview Service, old revisions' scale-down, history pruning, role
//!    metadata, restarts, progress deadline, status.

mod action;
mod decision;
mod duration;
mod flow;
mod housekeeping;
mod migrations;
mod observed;
mod status;

pub use action::*;
pub use decision::*;
pub use observed::*;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

use crate::api::{
    AnalysisPhase, BlueGreenStrategy, PauseCondition, PauseReason, PodTemplateMetadata,
    RolloutSpec, RolloutStatus, UpdateDuration,
};
use crate::hash::pod_template_hash;

/// Plans one pass over a rollout. Pure: the same `observed` and `now` give the same plan.
pub fn plan(observed: &Observed, now: Timestamp) -> Plan {
    let mut planner = Planner::new(observed, now);
    let decision = planner.run();
    planner.finish(decision)
}

/// The working state of one pass. It is local to `plan()`: nothing in it outlives the pass.
pub(crate) struct Planner<'a> {
    pub(crate) observed: &'a Observed,
    pub(crate) now: Timestamp,
    /// Status being built; starts as the stored one.
    pub(crate) status: RolloutStatus,
    /// The stored status, for transition checks.
    pub(crate) before: &'a RolloutStatus,
    pub(crate) actions: Vec<Action>,
    pub(crate) events: Vec<Event>,
    pub(crate) requeue: Option<Duration>,
    /// Revisions by hash, including one this pass creates.
    pub(crate) revisions: BTreeMap<String, ObservedRevision>,
    /// Pods each revision is to run, decided by the flow; absent = leave as is.
    pub(crate) targets: BTreeMap<String, (i32, ScaleReason)>,
    pub(crate) current_hash: String,
}

impl<'a> Planner<'a> {
    fn new(observed: &'a Observed, now: Timestamp) -> Self {
        let before = observed.rollout.status.as_ref().unwrap_or(&EMPTY_STATUS);
        let revisions = observed
            .revisions
            .iter()
            .map(|r| (r.hash.clone(), r.clone()))
            .collect();
        Self {
            observed,
            now,
            status: before.clone(),
            before,
            actions: Vec::new(),
            events: Vec::new(),
            requeue: None,
            revisions,
            targets: BTreeMap::new(),
            current_hash: pod_template_hash(&observed.rollout.spec.template, None),
        }
    }

    pub(crate) fn spec(&self) -> &'a RolloutSpec {
        &self.observed.rollout.spec
    }

    pub(crate) fn strategy(&self) -> &'a BlueGreenStrategy {
        &self.observed.rollout.spec.strategy.blue_green
    }

    pub(crate) fn rollout_name(&self) -> &'a str {
        self.observed
            .rollout
            .metadata
            .name
            .as_deref()
            .unwrap_or("rollout")
    }

    fn run(&mut self) -> Decision {
        self.status.observed_generation = self.observed.rollout.metadata.generation;
        if let Some(problem) = self.spec_problem() {
            return Decision::Invalid(problem);
        }
        self.ensure_current_revision();
        self.begin_update_if_template_changed();
        self.note_abort_and_retry();
        let decision = flow::run(self);
        self.preview_service();
        housekeeping::run(self);
        decision
    }

    fn finish(mut self, decision: Decision) -> Plan {
        migrations::write_status(&mut self);
        status::finalize(&mut self, &decision);
        self.targets_to_actions();
        sort_actions(&mut self.actions);
        Plan {
            actions: self.actions,
            status: self.status,
            events: self.events,
            requeue_after: self.requeue,
            decision,
        }
    }

    fn spec_problem(&self) -> Option<SpecProblem> {
        let bg = self.strategy();
        if bg.active_service.trim().is_empty() {
            return Some(SpecProblem::MissingActiveService);
        }
        if bg.preview_service.as_deref() == Some(bg.active_service.as_str()) {
            return Some(SpecProblem::PreviewEqualsActive(bg.active_service.clone()));
        }
        // The adapter fills the template in from the referenced Deployment; still empty
        // means there was none to read.
        if let Some(workload) = &self.spec().workload_ref
            && crate::api::template_is_unset(&self.spec().template)
        {
            return Some(SpecProblem::WorkloadNotFound(workload.name.clone()));
        }
        if self.observed.active_service.is_none() {
            return Some(SpecProblem::ServiceNotFound(bg.active_service.clone()));
        }
        if let Some(preview) = &bg.preview_service
            && self.observed.preview_service.is_none()
        {
            return Some(SpecProblem::ServiceNotFound(preview.clone()));
        }
        None
    }

    /// Adds the revision of the current template when it does not exist yet, and gives it the
    /// highest number when an older revision becomes current again (Argo renumbers a reused
    /// ReplicaSet the same way, so every update has its own number: run names carry it).
    fn ensure_current_revision(&mut self) {
        let highest_other = self
            .revisions
            .values()
            .filter(|r| r.hash != self.current_hash)
            .map(|r| r.revision)
            .max()
            .unwrap_or(0);
        if let Some(existing) = self.revisions.get_mut(&self.current_hash) {
            if existing.revision <= highest_other {
                let revision = highest_other + 1;
                self.actions.push(Action::SetRevisionNumber {
                    hash: self.current_hash.clone(),
                    revision,
                    previous: existing.revision,
                });
                existing.revision = revision;
            }
            return;
        }
        let revision = highest_other + 1;
        // The first revision starts active; an update's starts as the preview.
        let role = if self.status.stable_rs.is_none() {
            RevisionRole::Active
        } else {
            RevisionRole::Preview
        };
        let metadata = self.role_metadata(role).cloned();
        self.actions.push(Action::CreateRevision {
            hash: self.current_hash.clone(),
            revision,
            role: metadata.is_some().then_some(role),
            metadata: metadata.clone(),
        });
        self.revisions.insert(
            self.current_hash.clone(),
            ObservedRevision {
                hash: self.current_hash.clone(),
                revision,
                created_revision: revision,
                role: metadata.is_some().then_some(role),
                role_metadata: metadata,
                ..PLACEHOLDER_REVISION.clone()
            },
        );
    }

    /// The ephemeral metadata the strategy gives a role.
    pub(crate) fn role_metadata(&self, role: RevisionRole) -> Option<&'a PodTemplateMetadata> {
        let bg = self.strategy();
        match role {
            RevisionRole::Active => bg.active_metadata.as_ref(),
            RevisionRole::Preview => bg.preview_metadata.as_ref(),
        }
    }

    /// A new pod template starts a new update: per-update state is reset, a template change
    /// clears an abort, and runs analysing other revisions stop.
    fn begin_update_if_template_changed(&mut self) {
        if self.status.current_pod_hash.as_deref() == Some(self.current_hash.as_str()) {
            return;
        }
        let first = self.before.current_pod_hash.is_none() && self.before.stable_rs.is_none();
        let revision = self.current().revision;
        let fast_rollback = !first && self.is_fast_rollback_target();
        let s = &mut self.status;
        s.current_pod_hash = Some(self.current_hash.clone());
        s.current_revision = Some(revision);
        s.pause_conditions.clear();
        s.controller_pause = false;
        s.abort = false;
        s.promote_full = false;
        s.blue_green.scale_up_preview_check_point = false;
        s.blue_green.pre_promotion_analysis_run_status = None;
        s.blue_green.post_promotion_analysis_run_status = None;
        s.blue_green.fast_rollback = fast_rollback;
        s.duration = Some(UpdateDuration {
            revision,
            started_at: MicroTime(self.now),
            paused_at: None,
            paused_seconds: 0.0,
            finished_at: None,
            completion: None,
            seconds: None,
        });
        if !first {
            let how = if fast_rollback {
                " (fast rollback)"
            } else {
                ""
            };
            self.events.push(Event::normal(
                EventReason::RolloutUpdated,
                format!(
                    "Rollout updated to revision {revision} ({}){how}",
                    self.current_hash
                ),
            ));
        }
        let stale: Vec<String> = self
            .observed
            .analysis_runs
            .iter()
            .filter(|r| r.hash != self.current_hash && !r.phase.is_completed() && !r.terminated)
            .map(|r| r.name.clone())
            .collect();
        for name in stale {
            self.actions.push(Action::TerminateAnalysis {
                name,
                reason: TerminateReason::RevisionReplaced,
            });
        }
    }

    /// Going back to the stable revision, to a revision still warm (inside its scale-down
    /// delay with all its pods available), or to one inside `rollbackWindow` skips pauses and
    /// analysis.
    fn is_fast_rollback_target(&self) -> bool {
        if self.stable_hash().is_none() {
            return false;
        }
        // As observed: a renumbering in this pass does not change what the revision was.
        let Some(current) = self
            .observed
            .revisions
            .iter()
            .find(|r| r.hash == self.current_hash)
        else {
            return false;
        };
        // Warm means serving-ready now: a deadline alone (an aborted revision already scaled
        // down, or pods that never became ready) is no reason to skip the gates.
        let warm = current
            .scale_down_deadline
            .is_some_and(|deadline| deadline > self.now)
            && current.desired > 0
            && current.available >= current.desired;
        warm || self.in_rollback_window(current)
    }

    /// Argo's rule: the target was created before the stable revision, and fewer than
    /// `rollbackWindow.revisions` revisions were created strictly between the two.
    fn in_rollback_window(&self, target: &ObservedRevision) -> bool {
        let Some(window) = self
            .spec()
            .rollback_window
            .as_ref()
            .and_then(|w| w.revisions)
        else {
            return false;
        };
        let Some(stable) = self
            .stable_hash()
            .and_then(|h| self.observed.revisions.iter().find(|r| r.hash == h))
        else {
            return false;
        };
        if target.created_revision >= stable.created_revision {
            return false;
        }
        let between = self
            .observed
            .revisions
            .iter()
            .filter(|r| {
                r.created_revision > target.created_revision
                    && r.created_revision < stable.created_revision
            })
            .count();
        (between as i64) < i64::from(window.max(0))
    }

    /// Records a user's abort (they set `status.abort`) and a user's retry (they cleared it).
    fn note_abort_and_retry(&mut self) {
        let was_aborted = self
            .before
            .condition(crate::api::ConditionType::Progressing)
            .is_some_and(|c| c.reason == "RolloutAborted");
        let current_is_stable = self.stable_hash() == Some(self.current_hash.as_str());
        if self.status.abort && current_is_stable {
            // Nothing is in flight: there is nothing to abort.
            self.status.abort = false;
            return;
        }
        if self.status.abort && !was_aborted {
            self.abort(AbortCause::User);
        } else if !self.status.abort && was_aborted && !current_is_stable {
            let revision = self.current().revision;
            self.events.push(Event::normal(
                EventReason::RolloutRetry,
                format!("Retrying update to revision {revision}"),
            ));
        }
    }

    /// Aborts the current update: the flow then switches active back to stable.
    pub(crate) fn abort(&mut self, cause: AbortCause) {
        let revision = self.current().revision;
        let s = &mut self.status;
        s.abort = true;
        s.aborted_at = Some(Time(self.now));
        s.pause_conditions.clear();
        s.controller_pause = false;
        s.promote_full = false;
        s.blue_green.scale_up_preview_check_point = false;
        self.events.push(Event::warning(
            EventReason::RolloutAborted,
            format!("Rollout aborted update to revision {revision}: {cause}"),
        ));
    }

    pub(crate) fn current(&self) -> &ObservedRevision {
        // The current revision is inserted by `ensure_current_revision` before any use.
        self.revisions
            .get(&self.current_hash)
            .unwrap_or(&PLACEHOLDER_REVISION)
    }

    /// The stable revision, when one is recorded and still exists.
    pub(crate) fn stable_hash(&self) -> Option<&str> {
        self.status
            .stable_rs
            .as_deref()
            .filter(|h| self.revisions.contains_key(*h))
    }

    pub(crate) fn active(&self) -> &'a ObservedService {
        // `spec_problem` returned early when the active Service is missing.
        self.observed
            .active_service
            .as_ref()
            .unwrap_or(&PLACEHOLDER_SERVICE)
    }

    /// The revision the active Service selects, as cutover set it: a selector changed
    /// outside cutover is set back this pass (`flow::repair_foreign_selector`).
    pub(crate) fn active_selector(&self) -> Option<&'a str> {
        let active = self.active();
        match &active.recorded_selector {
            Some(recorded) if self.revisions.contains_key(recorded) => Some(recorded),
            _ => active.selector_hash.as_deref(),
        }
    }

    /// A pause was added and then released (by `promote` or the timer).
    pub(crate) fn pause_released(&self) -> bool {
        self.status.controller_pause && self.status.pause_conditions.is_empty()
    }

    pub(crate) fn add_pause(&mut self, reason: PauseReason) {
        if self.status.pause_condition(reason).is_some() {
            return;
        }
        self.status.pause_conditions.push(PauseCondition {
            reason,
            start_time: Time(self.now),
        });
        self.status.controller_pause = true;
        self.events.push(Event::normal(
            EventReason::RolloutPaused,
            format!("Rollout paused: {reason:?}"),
        ));
    }

    /// Gives a revision a scale-down deadline `delay_seconds` from now the first time, and
    /// scales it to zero once the deadline has passed.
    pub(crate) fn scale_down_after(
        &mut self,
        rev: &ObservedRevision,
        delay_seconds: i32,
        reason: ScaleReason,
    ) {
        match rev.scale_down_deadline {
            None => {
                let at = after(self.now, i64::from(delay_seconds));
                self.actions.push(Action::SetScaleDownDeadline {
                    hash: rev.hash.clone(),
                    deadline: Some(at),
                });
                self.requeue_at(at);
            }
            Some(at) if at <= self.now => self.set_target(&rev.hash, 0, reason),
            Some(at) => self.requeue_at(at),
        }
    }

    pub(crate) fn set_target(&mut self, hash: &str, replicas: i32, reason: ScaleReason) {
        self.targets.insert(hash.to_string(), (replicas, reason));
    }

    pub(crate) fn requeue_in(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    pub(crate) fn requeue_at(&mut self, at: Timestamp) {
        let secs = (at.as_millisecond() - self.now.as_millisecond()).max(0);
        self.requeue_in(Duration::from_millis(secs.unsigned_abs()));
    }

    /// The newest run of a gate for the current update that started after the last abort
    /// (runs from before an abort belong to the attempt that was aborted).
    pub(crate) fn fresh_run(&self, kind: AnalysisKind) -> Option<&'a ObservedAnalysisRun> {
        let aborted_at = self.status.aborted_at.as_ref().map(|t| t.0);
        let revision = self.current().revision;
        self.observed
            .analysis_runs
            .iter()
            .filter(|r| r.kind == kind && r.hash == self.current_hash)
            // A run of an earlier update of the same template (the revision came back) is not
            // this update's.
            .filter(|r| r.revision.is_none_or(|n| n == revision))
            .filter(|r| aborted_at.is_none_or(|at| r.created_at > at))
            .max_by_key(|r| r.created_at)
    }

    fn targets_to_actions(&mut self) {
        for (hash, (replicas, reason)) in std::mem::take(&mut self.targets) {
            let Some(rev) = self.revisions.get(&hash) else {
                continue;
            };
            if rev.desired != replicas {
                self.events.push(Event::normal(
                    EventReason::ScalingReplicaSet,
                    format!(
                        "Scaled revision {} ({hash}) from {} to {replicas}",
                        rev.revision, rev.desired
                    ),
                ));
                self.actions.push(Action::ScaleRevision {
                    hash,
                    replicas,
                    reason,
                });
            }
        }
    }
}

/// `t + seconds`, saturating at the end of time.
pub(crate) fn after(t: Timestamp, seconds: i64) -> Timestamp {
    t.saturating_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or(Timestamp::MAX)
}

/// Why an update was aborted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AbortCause {
    User,
    Analysis(AnalysisKind, AnalysisPhase, Option<String>),
    ProgressDeadline,
}

impl std::fmt::Display for AbortCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::User => f.write_str("aborted by user"),
            Self::Analysis(kind, phase, message) => {
                write!(f, "{} analysis {phase:?}", kind.suffix())?;
                if let Some(m) = message {
                    write!(f, ": {m}")?;
                }
                Ok(())
            }
            Self::ProgressDeadline => f.write_str("progress deadline exceeded"),
        }
    }
}

/// Actions in execution order: create, scale up, switch, then scale down and clean up, so that
/// capacity exists before traffic moves and goes away only after.
fn sort_actions(actions: &mut [Action]) {
    actions.sort_by_key(|a| match a {
        Action::CreateRevision { .. } | Action::SetRevisionNumber { .. } => 0,
        Action::ScaleRevision { reason, .. } => match reason {
            ScaleReason::ScaleDownDeadlinePassed
            | ScaleReason::RevisionLimitExceeded
            | ScaleReason::AbortedUpdate => 5,
            _ => 1,
        },
        Action::SetScaleDownDeadline { .. } => 2,
        Action::SwitchService { .. } => 3,
        Action::SetRevisionRole { .. } => 4,
        Action::StartAnalysis(_) | Action::TerminateAnalysis { .. } => 4,
        Action::RunMigration(_) => 4,
        Action::RestartPods { .. } => 6,
        Action::DeleteRevision { .. } | Action::DeleteAnalysisRun { .. } => 7,
    });
}

static EMPTY_STATUS: RolloutStatus = RolloutStatus {
    phase: None,
    message: None,
    observed_generation: None,
    current_pod_hash: None,
    stable_rs: None,
    current_revision: None,
    blue_green: crate::api::BlueGreenStatus {
        active_selector: None,
        preview_selector: None,
        scale_up_preview_check_point: false,
        pre_promotion_analysis_run_status: None,
        post_promotion_analysis_run_status: None,
        fast_rollback: false,
        switch: None,
    },
    pause_conditions: Vec::new(),
    controller_pause: false,
    abort: false,
    aborted_at: None,
    promote_full: false,
    restarted_at: None,
    replicas: 0,
    updated_replicas: 0,
    ready_replicas: 0,
    available_replicas: 0,
    hpa_replicas: 0,
    selector: None,
    conditions: Vec::new(),
    migration: None,
    duration: None,
};

static PLACEHOLDER_REVISION: ObservedRevision = ObservedRevision {
    hash: String::new(),
    revision: 0,
    created_revision: 0,
    desired: 0,
    replicas: 0,
    ready: 0,
    available: 0,
    scale_down_deadline: None,
    oldest_pod_started_at: None,
    role: None,
    role_metadata: None,
    unavailable_reason: None,
};

static PLACEHOLDER_SERVICE: ObservedService = ObservedService {
    name: String::new(),
    selector_hash: None,
    serving: Vec::new(),
    recorded_selector: None,
};
