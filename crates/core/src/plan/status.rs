//! The status a pass writes: replica counts, progress deadline, conditions and phase.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{AbortCause, Action, Decision, Event, EventReason, HoldReason, Planner, PostHold};
use crate::api::{ConditionStatus, ConditionType, RolloutCondition, RolloutPhase};

pub(super) fn finalize(p: &mut Planner<'_>, decision: &Decision) {
    replica_counts(p);
    let deadline_exceeded = progress_deadline(p, decision);
    conditions(p, decision, deadline_exceeded);
    phase(p, decision, deadline_exceeded);
    kstatus_conditions(p);
    super::duration::update(p);
}

/// Argo's counts: `replicas` of every revision, `updatedReplicas` of the current one, and
/// `readyReplicas`/`availableReplicas` of the active one only (what serves production).
fn replica_counts(p: &mut Planner<'_>) {
    let s = &mut p.status;
    s.replicas = p.revisions.values().map(|r| r.replicas).sum();
    s.updated_replicas = p.revisions.get(&p.current_hash).map_or(0, |r| r.replicas);
    let active = s
        .blue_green
        .active_selector
        .as_ref()
        .and_then(|h| p.revisions.get(h));
    s.ready_replicas = active.map_or(0, |r| r.ready);
    s.available_replicas = active.map_or(0, |r| r.available);
    s.hpa_replicas = active.map_or(0, |r| r.replicas);
    let selector = s.blue_green.active_selector.clone();
    p.status.selector = selector.map(|hash| selector_string(p, &hash));
}

/// `app=my-app,rollouts-pod-template-hash=<hash>`: the active revision's pods, for `/scale`.
fn selector_string(p: &Planner<'_>, hash: &str) -> String {
    let mut parts: Vec<String> = p
        .spec()
        .selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.push(format!("{}={hash}", crate::api::POD_TEMPLATE_HASH_LABEL));
    parts.join(",")
}

/// The progress deadline runs while an update advances by itself: not while paused, aborted,
/// waiting for analysis, or once complete. Progress (anything the update did) restarts it.
fn progress_deadline(p: &mut Planner<'_>, decision: &Decision) -> bool {
    let counts = matches!(
        decision,
        Decision::Hold(HoldReason::PreviewNotAvailable { .. })
            | Decision::Hold(HoldReason::ScalingUpPreview { .. })
            | Decision::AwaitingSwitchVerification
    ) && !p.status.abort;
    let previous = p.before.condition(ConditionType::Progressing);
    // Once exceeded, the condition's reason says so until the rollout moves again; that
    // reason is not itself a change of where the rollout stands.
    let reason_changed =
        previous.is_none_or(|c| c.reason != decision.reason() && c.reason != DEADLINE_EXCEEDED);
    // Argo's signals of progress: the current revision's pod count changes, old pods go
    // away, the active revision gains ready or available pods, selectors or the stable
    // revision move; plus any action that moves the update.
    let (before, after) = (p.before, &p.status);
    let progressed = reason_changed
        || progress_signature(before) != progress_signature(after)
        || before.updated_replicas != after.updated_replicas
        || after.replicas - after.updated_replicas < before.replicas - before.updated_replicas
        || after.ready_replicas > before.ready_replicas
        || after.available_replicas > before.available_replicas
        || p.actions.iter().any(Action::is_progress);
    let since = match previous.and_then(|c| c.last_update_time.as_ref()) {
        Some(t) if !progressed => t.0,
        _ => p.now,
    };
    p.status
        .conditions
        .retain(|c| c.type_ != ConditionType::Progressing);
    // Stash the progress mark on a temporary condition; `conditions` rewrites it in place.
    p.status.conditions.push(RolloutCondition {
        type_: ConditionType::Progressing,
        status: ConditionStatus::True,
        reason: String::new(),
        message: None,
        last_transition_time: previous.and_then(|c| c.last_transition_time.clone()),
        last_update_time: Some(Time(since)),
    });
    if !counts {
        return false;
    }
    let limit = i64::from(p.spec().progress_deadline_seconds().max(0));
    let due = super::after(since, limit);
    if p.now < due {
        p.requeue_at(due);
        return false;
    }
    let already = previous.is_some_and(|c| c.reason == DEADLINE_EXCEEDED);
    if !already {
        p.events.push(Event::warning(
            EventReason::ProgressDeadlineExceeded,
            format!("Rollout made no progress for {limit}s: {decision}"),
        ));
        if p.spec().progress_deadline_abort == Some(true) {
            p.abort(AbortCause::ProgressDeadline);
            // The abort flow runs on the next pass, right away.
            p.requeue_in(Duration::ZERO);
        }
    }
    true
}

const DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

fn progress_signature(s: &crate::api::RolloutStatus) -> impl PartialEq + use<> {
    (
        s.current_pod_hash.clone(),
        s.stable_rs.clone(),
        s.blue_green.active_selector.clone(),
        s.blue_green.preview_selector.clone(),
        s.pause_conditions.len(),
        s.abort,
    )
}

fn conditions(p: &mut Planner<'_>, decision: &Decision, deadline_exceeded: bool) {
    let current_is_stable = p.status.stable_rs.as_deref() == Some(p.current_hash.as_str());
    let paused = p.spec().is_paused() || !p.status.pause_conditions.is_empty();
    let replicas = p.spec().replicas();
    let available = p.status.available_replicas >= replicas && p.status.selector.is_some();
    let healthy = matches!(decision, Decision::Healthy | Decision::Promoted(_)) && available;
    // An abort is the strongest statement, also in the pass where the progress deadline
    // caused it: the next pass must see this update as aborted already.
    let aborted = matches!(decision, Decision::Aborted(_)) || p.status.abort;
    let (progressing_status, progressing_reason) = if aborted {
        (ConditionStatus::False, "RolloutAborted")
    } else if deadline_exceeded {
        (ConditionStatus::False, DEADLINE_EXCEEDED)
    } else if matches!(decision, Decision::Invalid(_)) {
        (ConditionStatus::False, "InvalidSpec")
    } else if matches!(decision, Decision::Blocked(_)) {
        (ConditionStatus::False, decision.reason())
    } else {
        (ConditionStatus::True, decision.reason())
    };
    let message = decision.to_string();
    let before = p.before;
    let available_replicas = p.status.available_replicas;
    set_condition(
        p,
        ConditionType::Progressing,
        progressing_status,
        progressing_reason,
        &message,
    );
    set_condition(
        p,
        ConditionType::Available,
        bool_status(available),
        if available {
            "AvailableReason"
        } else {
            "NotAvailable"
        },
        &format!("{available_replicas} of {replicas} active pods available"),
    );
    // As Argo: a rollout that never paused has no Paused condition; one that did says when
    // it resumed.
    if paused || before.condition(ConditionType::Paused).is_some() {
        set_condition(
            p,
            ConditionType::Paused,
            bool_status(paused),
            if paused {
                "RolloutPaused"
            } else {
                "RolloutResumed"
            },
            "",
        );
    }
    set_condition(
        p,
        ConditionType::Completed,
        bool_status(current_is_stable),
        if current_is_stable {
            "RolloutCompleted"
        } else {
            "RolloutNotCompleted"
        },
        "",
    );
    set_condition(
        p,
        ConditionType::Healthy,
        bool_status(healthy),
        if healthy {
            "RolloutHealthy"
        } else {
            "RolloutNotHealthy"
        },
        "",
    );
    if let Decision::Invalid(problem) = decision {
        set_condition(
            p,
            ConditionType::InvalidSpec,
            ConditionStatus::True,
            "InvalidSpec",
            &problem.to_string(),
        );
    } else {
        p.status
            .conditions
            .retain(|c| c.type_ != ConditionType::InvalidSpec);
    }
    if let Decision::Invalid(problem) = decision
        && before.condition(ConditionType::InvalidSpec).is_none()
    {
        p.events.push(Event::warning(
            EventReason::InvalidSpec,
            problem.to_string(),
        ));
    }
}

/// Writes one condition; its transition time moves only when its status flips.
fn set_condition(
    p: &mut Planner<'_>,
    type_: ConditionType,
    status: ConditionStatus,
    reason: &str,
    message: &str,
) {
    let prior = p.before.condition(type_);
    let flipped = prior.is_none_or(|c| c.status != status);
    let transition = if flipped {
        Some(Time(p.now))
    } else {
        prior.and_then(|c| c.last_transition_time.clone())
    };
    let slot = p.status.conditions.iter_mut().find(|c| c.type_ == type_);
    let last_update_time = slot.as_ref().and_then(|c| c.last_update_time.clone());
    let condition = RolloutCondition {
        type_,
        status,
        reason: reason.to_string(),
        message: (!message.is_empty()).then(|| message.to_string()),
        last_transition_time: transition,
        last_update_time,
    };
    match slot {
        Some(c) => *c = condition,
        None => p.status.conditions.push(condition),
    }
}

fn bool_status(b: bool) -> ConditionStatus {
    if b {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    }
}

/// Phase precedence: Degraded (invalid, aborted, deadline) > Paused > Progressing > Healthy.
fn phase(p: &mut Planner<'_>, decision: &Decision, deadline_exceeded: bool) {
    let revision = p.status.current_revision.unwrap_or(0);
    let (phase, message) = match decision {
        Decision::Invalid(problem) => (RolloutPhase::Degraded, format!("InvalidSpec: {problem}")),
        Decision::Aborted(_) => (
            RolloutPhase::Degraded,
            format!("RolloutAborted: Rollout aborted update to revision {revision}"),
        ),
        Decision::Blocked(_) => (
            RolloutPhase::Degraded,
            format!("{}: {decision}", decision.reason()),
        ),
        _ if deadline_exceeded => (
            RolloutPhase::Degraded,
            format!("ProgressDeadlineExceeded: {decision}"),
        ),
        _ if p.spec().is_paused() => (RolloutPhase::Paused, "manually paused".to_string()),
        _ if !p.status.pause_conditions.is_empty() => {
            let reasons: Vec<String> = p
                .status
                .pause_conditions
                .iter()
                .map(|c| format!("{:?}", c.reason))
                .collect();
            (RolloutPhase::Paused, reasons.join(", "))
        }
        Decision::Healthy | Decision::Promoted(_) => (RolloutPhase::Healthy, String::new()),
        Decision::PostPromotion(PostHold::RolloutPaused) => {
            (RolloutPhase::Paused, "manually paused".to_string())
        }
        other => (RolloutPhase::Progressing, other.to_string()),
    };
    p.status.phase = Some(phase);
    p.status.message = (!message.is_empty()).then_some(message);
}

/// Ready, Reconciling and Stalled, the conditions kstatus (Flux, and other tools that wait for
/// applied objects) reads, derived from the phase so that they can never disagree with it:
/// Degraded is Stalled; Progressing, and Paused with an update in flight, are Reconciling
/// (the spec is not realised yet: a promotion is due), and so is a Healthy rollout whose
/// active revision has fewer available pods than asked (a scale-up under way); otherwise the
/// rollout is Ready. As
/// kstatus's convention asks, Reconciling and Stalled are removed when they do not hold.
/// Runs last of the condition writers, so it also puts every condition in its fixed order.
fn kstatus_conditions(p: &mut Planner<'_>) {
    let phase = p.status.phase.unwrap_or(RolloutPhase::Progressing);
    let in_flight = p.status.stable_rs.as_deref() != Some(p.current_hash.as_str());
    let replicas = p.spec().replicas();
    let short_of_pods = p.status.available_replicas < replicas;
    let message = match p.status.message.clone() {
        Some(m) => m,
        None if short_of_pods => format!(
            "{} of {replicas} active pods available",
            p.status.available_replicas
        ),
        None => String::new(),
    };
    // The phase message starts with its reason for Degraded ("RolloutAborted: ...").
    let reason = message
        .split_once(':')
        .map_or(format!("{phase:?}"), |(r, _)| r.to_string());
    let stalled = phase == RolloutPhase::Degraded;
    let reconciling = match phase {
        RolloutPhase::Progressing => true,
        RolloutPhase::Paused => in_flight,
        RolloutPhase::Healthy => short_of_pods,
        RolloutPhase::Degraded => false,
    };
    let keep = |p: &mut Planner<'_>, type_: ConditionType, holds: bool, reason: &str| {
        if holds {
            set_condition(p, type_, ConditionStatus::True, reason, &message);
        } else {
            p.status.conditions.retain(|c| c.type_ != type_);
        }
    };
    keep(p, ConditionType::Stalled, stalled, &reason);
    let reconciling_reason = match phase {
        RolloutPhase::Healthy => "ScalingUp".to_string(),
        other => format!("{other:?}"),
    };
    keep(
        p,
        ConditionType::Reconciling,
        reconciling,
        &reconciling_reason,
    );
    let ready = !stalled && !reconciling;
    let (ready_reason, ready_message) = if ready {
        ("RolloutReady", String::new())
    } else if stalled {
        (reason.as_str(), message.clone())
    } else {
        ("RolloutInProgress", message.clone())
    };
    set_condition(
        p,
        ConditionType::Ready,
        bool_status(ready),
        ready_reason,
        &ready_message,
    );
    p.status.conditions.sort_by_key(|c| c.type_ as u8);
}
