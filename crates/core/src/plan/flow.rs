//! The three flows of a pass: steady (current is stable), forward (gates → switch →
//! verification → post-analysis → stable) and aborted (back to stable, delayed scale-down).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use super::{
    AbortCause, AbortState, Action, AnalysisKind, AnalysisRunRequest, Decision, Event, EventReason,
    HoldReason, Planner, PostHold, PromoteReason, ScaleReason, ServiceRole, SwitchReason,
    TerminateReason,
};
use crate::api::{
    AnalysisPhase, PauseReason, RolloutAnalysis, RolloutAnalysisRunStatus, SwitchStatus,
};

/// How often to look again while waiting for the data plane, in case the adapter's watch
/// misses the change.
const VERIFY_POLL: std::time::Duration = std::time::Duration::from_secs(1);

pub(super) fn run(p: &mut Planner<'_>) -> Decision {
    repair_foreign_selector(p);
    record_unrecorded_switch(p);
    rescue_lost_stable(p);
    let current = p.current_hash.clone();
    let stable = p.stable_hash().map(str::to_string);
    if stable.as_deref() == Some(current.as_str()) {
        return steady(p, &current);
    }
    keep_stable_size(p, stable.as_deref());
    if p.status.abort {
        super::migrations::on_abort(p, &current);
        return aborted(p, &current, stable.as_deref());
    }
    let decision = forward(p, &current, stable.as_deref());
    if p.status.abort {
        // A gate failed in this pass: act on the abort right away.
        super::migrations::on_abort(p, &current);
        return aborted(p, &current, stable.as_deref());
    }
    decision
}

/// Current is stable: it runs `spec.replicas` and active must select it. Reached after an
/// update completed, or at once when an undo or abort returns to the stable revision.
fn steady(p: &mut Planner<'_>, current: &str) -> Decision {
    let replicas = p.spec().replicas();
    p.set_target(current, replicas, ScaleReason::Stable);
    if p.active_selector() != Some(current) {
        switch_active(p, current);
        return Decision::Switch(SwitchReason::FastRollback);
    }
    if !verify_switch(p, current) {
        return Decision::AwaitingSwitchVerification;
    }
    super::migrations::when_stable(p);
    Decision::Healthy
}

/// The stable revision keeps the size it has while an update is in flight: `spec.replicas`
/// changes reach only the new revision until promotion, and stable is never scaled down before
/// the switch away from it is verified.
fn keep_stable_size(p: &mut Planner<'_>, stable: Option<&str>) {
    let Some(stable) = stable else { return };
    let desired = p.revisions.get(stable).map_or(0, |r| r.desired);
    if desired == 0 {
        // Stable lost its pods (e.g. adopted state): bring it back to full size.
        let replicas = p.spec().replicas();
        p.set_target(stable, replicas, ScaleReason::Stable);
    }
}

fn forward(p: &mut Planner<'_>, current: &str, stable: Option<&str>) -> Decision {
    let replicas = p.spec().replicas();
    // Nothing was ever promoted: the first revision has nothing to be checked against.
    let initial = p.status.stable_rs.is_none();
    let skip_gates = initial || p.status.promote_full || p.status.blue_green.fast_rollback;
    let switched = p.active_selector() == Some(current);
    if p.status.promote_full {
        terminate_runs(p, current, TerminateReason::PromotedFull);
    }
    if !switched && let Some(hold) = super::migrations::before_preview(p, current) {
        // The schema comes first: the revision gets no pods until its migrations are backfilled.
        return hold;
    }
    let full_size = skip_gates || switched || p.status.blue_green.scale_up_preview_check_point;
    let target = if full_size {
        replicas
    } else {
        p.strategy()
            .preview_replica_count
            .unwrap_or(replicas)
            .max(0)
    };
    let reason = if initial {
        ScaleReason::InitialDeploy
    } else if p.status.blue_green.scale_up_preview_check_point {
        ScaleReason::PromotionScaleUp
    } else {
        ScaleReason::Preview
    };
    p.set_target(current, target, reason);

    if switched {
        return after_switch(p, current, skip_gates, initial);
    }
    if p.spec().is_paused() {
        return Decision::Hold(HoldReason::RolloutPaused);
    }
    let rev = p.current();
    let (available, desired) = (rev.available, rev.desired);
    if desired != target || available < target {
        return if p.status.blue_green.scale_up_preview_check_point {
            Decision::Hold(HoldReason::ScalingUpPreview {
                available,
                desired: target,
            })
        } else {
            Decision::Hold(HoldReason::PreviewNotAvailable {
                available,
                desired: target,
                why: p.current().unavailable_reason.clone(),
            })
        };
    }
    if skip_gates {
        let reason = if initial {
            SwitchReason::InitialDeploy
        } else if p.status.promote_full {
            SwitchReason::PromoteFull
        } else {
            SwitchReason::FastRollback
        };
        switch_active(p, current);
        return Decision::Switch(reason);
    }
    if let Some(hold) = pre_promotion_gate(p, current, stable) {
        return hold;
    }
    if let Some(hold) = pause_gate(p) {
        return hold;
    }
    if target < replicas {
        // Promoted with a reduced preview: bring it to full size before traffic moves.
        p.status.blue_green.scale_up_preview_check_point = true;
        p.set_target(current, replicas, ScaleReason::PromotionScaleUp);
        return Decision::Hold(HoldReason::ScalingUpPreview {
            available,
            desired: replicas,
        });
    }
    switch_active(p, current);
    Decision::Switch(SwitchReason::GatesPassed)
}

/// Pre-promotion analysis: started once the preview is ready; Failed or Error aborts;
/// Inconclusive pauses for a human. Returns the hold, or None when the gate is passed.
fn pre_promotion_gate(
    p: &mut Planner<'_>,
    current: &str,
    stable: Option<&str>,
) -> Option<Decision> {
    let analysis = p.strategy().pre_promotion_analysis.as_ref()?;
    match analysis_gate(p, AnalysisKind::PrePromotion, analysis, current, stable) {
        GateState::Passed => None,
        GateState::Running => Some(Decision::Hold(HoldReason::PrePromotionAnalysisRunning)),
        GateState::Inconclusive => Some(Decision::Hold(HoldReason::InconclusiveAnalysis(
            AnalysisKind::PrePromotion,
        ))),
        GateState::Aborted => Some(Decision::Aborted(AbortState::SwitchingBack)),
    }
}

/// The promotion pause: manual when autoPromotionEnabled is false, timed when
/// autoPromotionSeconds is set. A released pause (promote, or the timer) lets the switch go.
fn pause_gate(p: &mut Planner<'_>) -> Option<Decision> {
    let bg = p.strategy();
    let manual = !bg.auto_promotion_enabled();
    let timed_seconds = if manual {
        0
    } else {
        bg.auto_promotion_seconds()
    };
    if (!manual && timed_seconds == 0) || p.pause_released() {
        return None;
    }
    let Some(started) = p
        .status
        .pause_condition(PauseReason::BlueGreenPause)
        .map(|c| c.start_time.0)
    else {
        p.add_pause(PauseReason::BlueGreenPause);
        if manual {
            return Some(Decision::Hold(HoldReason::WaitingForPromotion));
        }
        p.requeue_in(std::time::Duration::from_secs(
            timed_seconds.unsigned_abs().into(),
        ));
        return Some(Decision::Hold(HoldReason::AutoPromotionIn {
            seconds: i64::from(timed_seconds),
        }));
    };
    if manual {
        return Some(Decision::Hold(HoldReason::WaitingForPromotion));
    }
    let due = super::after(started, i64::from(timed_seconds));
    if p.now >= due {
        p.status
            .pause_conditions
            .retain(|c| c.reason != PauseReason::BlueGreenPause);
        p.events.push(Event::normal(
            EventReason::RolloutResumed,
            format!("Rollout resumed: autoPromotionSeconds ({timed_seconds}s) elapsed"),
        ));
        return None;
    }
    p.requeue_at(due);
    let left = due.as_second() - p.now.as_second();
    Some(Decision::Hold(HoldReason::AutoPromotionIn {
        seconds: left,
    }))
}

/// Active selects current: confirm the data plane, then run the post-promotion gate, then make
/// current stable.
fn after_switch(p: &mut Planner<'_>, current: &str, skip_gates: bool, initial: bool) -> Decision {
    if !verify_switch(p, current) {
        return Decision::AwaitingSwitchVerification;
    }
    let reason = if initial {
        PromoteReason::InitialDeploy
    } else if p.status.promote_full {
        PromoteReason::PromoteFull
    } else if p.status.blue_green.fast_rollback {
        PromoteReason::FastRollback
    } else {
        PromoteReason::SwitchVerified
    };
    if skip_gates {
        promote(p, current, reason);
        return Decision::Promoted(reason);
    }
    if p.spec().is_paused() {
        return Decision::PostPromotion(PostHold::RolloutPaused);
    }
    let stable = p.stable_hash().map(str::to_string);
    if let Some(analysis) = p.strategy().post_promotion_analysis.as_ref() {
        match analysis_gate(
            p,
            AnalysisKind::PostPromotion,
            analysis,
            current,
            stable.as_deref(),
        ) {
            GateState::Running => return Decision::PostPromotion(PostHold::AnalysisRunning),
            GateState::Inconclusive => return Decision::PostPromotion(PostHold::Inconclusive),
            GateState::Aborted => return Decision::Aborted(AbortState::SwitchingBack),
            GateState::Passed => {
                let reason = match p.fresh_run(AnalysisKind::PostPromotion).map(|r| r.phase) {
                    Some(AnalysisPhase::Inconclusive) => {
                        PromoteReason::InconclusiveAnalysisPromoted
                    }
                    _ => PromoteReason::PostPromotionAnalysisPassed,
                };
                promote(p, current, reason);
                return Decision::Promoted(reason);
            }
        }
    }
    promote(p, current, PromoteReason::SwitchVerified);
    Decision::Promoted(PromoteReason::SwitchVerified)
}

fn promote(p: &mut Planner<'_>, current: &str, reason: PromoteReason) {
    let revision = p.current().revision;
    let s = &mut p.status;
    s.stable_rs = Some(current.to_string());
    s.pause_conditions.clear();
    s.controller_pause = false;
    s.promote_full = false;
    s.blue_green.scale_up_preview_check_point = false;
    s.blue_green.fast_rollback = false;
    let replicas = p.spec().replicas();
    p.set_target(current, replicas, ScaleReason::Stable);
    p.events.push(Event::normal(
        EventReason::RolloutCompleted,
        format!("Rollout completed update to revision {revision} ({current}): {reason}"),
    ));
}

/// Aborted: active returns to stable at once; the aborted revision stays up as preview until
/// stable is fully available again and `abortScaleDownDelaySeconds` passed (0 keeps it).
fn aborted(p: &mut Planner<'_>, current: &str, stable: Option<&str>) -> Decision {
    terminate_runs(p, current, TerminateReason::UpdateAborted);
    // The aborted revision is not scaled further up, nor down before its delay.
    p.targets.remove(current);
    let Some(stable) = stable else {
        return Decision::Aborted(AbortState::NoStableRevision);
    };
    let decision = if p.active_selector() != Some(stable) {
        switch_active(p, stable);
        Decision::Aborted(AbortState::SwitchingBack)
    } else if !verify_switch(p, stable) {
        Decision::Aborted(AbortState::SwitchingBack)
    } else {
        Decision::Aborted(AbortState::Done)
    };
    let stable_rev = p.revisions.get(stable).cloned();
    let stable_ready = stable_rev.is_some_and(|r| r.desired > 0 && r.available >= r.desired);
    let delay = p.strategy().abort_scale_down_delay_seconds();
    let rev = p.current().clone();
    if stable_ready && delay > 0 && rev.desired > 0 {
        p.scale_down_after(&rev, delay, ScaleReason::AbortedUpdate);
    }
    decision
}

/// Asks the in-flight runs of a revision to stop.
fn terminate_runs(p: &mut Planner<'_>, hash: &str, reason: TerminateReason) {
    for run in &p.observed.analysis_runs {
        if run.hash == hash && !run.phase.is_completed() && !run.terminated {
            p.actions.push(Action::TerminateAnalysis {
                name: run.name.clone(),
                reason,
            });
        }
    }
}

/// The active Service's selector was changed outside cutover (by hand, or by another tool):
/// the selector cutover last wrote is the truth. Put it back and say so.
fn repair_foreign_selector(p: &mut Planner<'_>) {
    let active = p.active();
    let Some(recorded) = active.recorded_selector.clone() else {
        return;
    };
    if active.selector_hash.as_deref() == Some(recorded.as_str())
        || !p.revisions.contains_key(&recorded)
    {
        return;
    }
    let found = active.selector_hash.clone();
    p.actions.push(Action::SwitchService {
        role: ServiceRole::Active,
        service: active.name.clone(),
        from: found.clone(),
        to: recorded.clone(),
    });
    p.events.push(Event::warning(
        EventReason::ServiceSelectorRepaired,
        format!(
            "Service '{}' selected '{}', changed outside cutover: set back to '{recorded}'; use promote, abort or undo to move traffic",
            active.name,
            found.as_deref().unwrap_or("(nothing)")
        ),
    ));
}

/// The stable revision is gone (its ReplicaSet deleted by hand) while active still points at
/// it: no pod serves production. Restore service from the newest revision whose pods are all
/// available, preferring an older one (it was promoted once) over the update in flight; with
/// none, the update in flight takes traffic as soon as it is available, as a first deploy
/// would.
fn rescue_lost_stable(p: &mut Planner<'_>) {
    let Some(lost) = p.status.stable_rs.clone() else {
        return;
    };
    if p.revisions.contains_key(&lost) {
        return;
    }
    let ready = |r: &super::ObservedRevision| r.desired > 0 && r.available >= r.desired;
    let newest_ready = |current_too: bool| {
        p.revisions
            .values()
            .filter(|r| ready(r) && (current_too || r.hash != p.current_hash))
            .max_by_key(|r| r.revision)
            .map(|r| (r.hash.clone(), r.revision))
    };
    let rescue = newest_ready(false).or_else(|| newest_ready(true));
    let message = match &rescue {
        Some((hash, revision)) => format!(
            "stable revision '{lost}' is gone (its ReplicaSet was deleted): active switched to revision {revision} ('{hash}'), the newest with all pods available"
        ),
        None => format!(
            "stable revision '{lost}' is gone (its ReplicaSet was deleted) and no revision has all pods available: the current revision takes traffic as soon as it is available"
        ),
    };
    p.events
        .push(Event::warning(EventReason::StableRevisionLost, message));
    p.status.stable_rs = rescue.as_ref().map(|(hash, _)| hash.clone());
    if let Some((hash, _)) = rescue
        && p.active_selector() != Some(hash.as_str())
    {
        switch_active(p, &hash);
    }
}

/// Result of an analysis gate.
enum GateState {
    Passed,
    Running,
    Inconclusive,
    Aborted,
}

fn analysis_gate(
    p: &mut Planner<'_>,
    kind: AnalysisKind,
    analysis: &RolloutAnalysis,
    current: &str,
    stable: Option<&str>,
) -> GateState {
    let Some(run) = p.fresh_run(kind) else {
        let request = run_request(p, kind, analysis, current, stable);
        record_run(p, kind, &request.name, AnalysisPhase::Pending, None);
        p.events.push(Event::normal(
            EventReason::AnalysisRunStarted,
            format!("{} analysis {} started", kind.suffix(), request.name),
        ));
        p.actions.push(Action::StartAnalysis(request));
        return GateState::Running;
    };
    let transition = p.run_status(kind).map(|s| s.status) != Some(run.phase);
    record_run(p, kind, &run.name, run.phase, run.message.clone());
    if transition && run.phase.is_completed() {
        let (reason, warn) = match run.phase {
            AnalysisPhase::Failed => (EventReason::AnalysisRunFailed, true),
            AnalysisPhase::Error => (EventReason::AnalysisRunError, true),
            AnalysisPhase::Inconclusive => (EventReason::AnalysisRunInconclusive, true),
            _ => (EventReason::AnalysisRunSuccessful, false),
        };
        let message = format!("{} analysis {} {:?}", kind.suffix(), run.name, run.phase);
        p.events.push(if warn {
            Event::warning(reason, message)
        } else {
            Event::normal(reason, message)
        });
    }
    match run.phase {
        AnalysisPhase::Successful => GateState::Passed,
        AnalysisPhase::Pending | AnalysisPhase::Running => GateState::Running,
        AnalysisPhase::Failed | AnalysisPhase::Error => {
            p.abort(AbortCause::Analysis(kind, run.phase, run.message.clone()));
            GateState::Aborted
        }
        AnalysisPhase::Inconclusive => {
            if p.pause_released() {
                GateState::Passed
            } else {
                p.add_pause(PauseReason::InconclusiveAnalysisRun);
                GateState::Inconclusive
            }
        }
    }
}

fn run_request(
    p: &Planner<'_>,
    kind: AnalysisKind,
    analysis: &RolloutAnalysis,
    current: &str,
    stable: Option<&str>,
) -> AnalysisRunRequest {
    let revision = p.current().revision;
    let base = format!(
        "{}-{current}-{revision}-{}",
        p.rollout_name(),
        kind.suffix()
    );
    // Runs of an aborted attempt keep their names; a retry gets the next free suffix.
    let taken = |name: &str| p.observed.analysis_runs.iter().any(|r| r.name == name);
    let mut name = base.clone();
    let mut n = 1;
    while taken(&name) {
        name = format!("{base}.{n}");
        n += 1;
    }
    AnalysisRunRequest {
        name,
        kind,
        hash: current.to_string(),
        revision,
        analysis: analysis.clone(),
        stable_hash: stable.map(str::to_string),
    }
}

fn record_run(
    p: &mut Planner<'_>,
    kind: AnalysisKind,
    name: &str,
    phase: AnalysisPhase,
    message: Option<String>,
) {
    let entry = Some(RolloutAnalysisRunStatus {
        name: name.to_string(),
        status: phase,
        message,
    });
    match kind {
        AnalysisKind::PrePromotion => p.status.blue_green.pre_promotion_analysis_run_status = entry,
        AnalysisKind::PostPromotion => {
            p.status.blue_green.post_promotion_analysis_run_status = entry
        }
    }
}

/// Points the active Service at `to` and starts timing the switch.
pub(super) fn switch_active(p: &mut Planner<'_>, to: &str) {
    let from = p.active_selector().map(str::to_string);
    p.actions.push(Action::SwitchService {
        role: ServiceRole::Active,
        service: p.active().name.clone(),
        from: from.clone(),
        to: to.to_string(),
    });
    record_switch(p, from, to);
}

/// The active Service selects a revision the stored status does not name: a pass switched it
/// and its status write was lost (the adapter crashed, or a later write of that pass, such as
/// a mesh route, failed). The status follows the Service, as Argo's `activeSelector` does, so
/// that everything derived from it (routes, `/scale`'s selector, the counts) names what serves.
/// The switch is timed from now: when it really started was in the lost write.
fn record_unrecorded_switch(p: &mut Planner<'_>) {
    let Some(selected) = p.active_selector() else {
        return;
    };
    let stored = p.status.blue_green.active_selector.clone();
    if stored.as_deref() == Some(selected) || !p.revisions.contains_key(selected) {
        return;
    }
    record_switch(p, stored, selected);
}

/// The status and event of a switch of the active Service from `from` to `to`.
fn record_switch(p: &mut Planner<'_>, from: Option<String>, to: &str) {
    let active = p.active();
    p.events.push(Event::normal(
        EventReason::SwitchService,
        format!(
            "Switched selector for service '{}' from '{}' to '{to}'",
            active.name,
            from.as_deref().unwrap_or("")
        ),
    ));
    p.status.blue_green.active_selector = Some(to.to_string());
    p.status.blue_green.switch = Some(SwitchStatus {
        from,
        to: to.to_string(),
        started_at: MicroTime(p.now),
        verified_at: None,
        seconds: None,
    });
    // A pause released before this switch is used up: a post-promotion pause needs its own
    // promote.
    p.status.controller_pause = false;
    p.status.pause_conditions.clear();
}

/// True once the active Service's data plane serves only `hash`. Records the confirmation and
/// the switch latency the first time.
fn verify_switch(p: &mut Planner<'_>, hash: &str) -> bool {
    if !p.active().serves_only(hash) {
        p.requeue_in(VERIFY_POLL);
        return false;
    }
    let now = p.now;
    let switch = p
        .status
        .blue_green
        .switch
        .get_or_insert_with(|| SwitchStatus {
            // Adopted without a recorded switch: the confirmation is all there is to record.
            from: None,
            to: hash.to_string(),
            started_at: MicroTime(now),
            verified_at: None,
            seconds: None,
        });
    if switch.to != hash {
        *switch = SwitchStatus {
            from: None,
            to: hash.to_string(),
            started_at: MicroTime(now),
            verified_at: None,
            seconds: None,
        };
    }
    if switch.verified_at.is_none() {
        let seconds = (now.as_millisecond() - switch.started_at.0.as_millisecond()) as f64 / 1000.0;
        switch.verified_at = Some(MicroTime(now));
        switch.seconds = Some(seconds);
        let service = p.active().name.clone();
        p.events.push(Event::normal(
            EventReason::SwitchVerified,
            format!(
                "Service '{service}' serves only '{hash}': switch confirmed after {seconds:.3}s"
            ),
        ));
    }
    true
}

impl Planner<'_> {
    fn run_status(&self, kind: AnalysisKind) -> Option<&RolloutAnalysisRunStatus> {
        match kind {
            AnalysisKind::PrePromotion => self
                .before
                .blue_green
                .pre_promotion_analysis_run_status
                .as_ref(),
            AnalysisKind::PostPromotion => self
                .before
                .blue_green
                .post_promotion_analysis_run_status
                .as_ref(),
        }
    }
}
