//! Argo Rollouts' blue/green semantics where cutover once differed: status counts, revision
//! numbers of revisions brought back, the rollback window, the progress deadline, full
//! promotion, role metadata, `status.duration`, and repairs of a world changed by hand.

mod common;

use std::time::Duration;

use common::*;
use cutover_core::api::{
    AnalysisPhase, ConditionType, PodTemplateMetadata, RollbackWindow, RolloutPhase,
    TrafficRouting, UpdateCompletion,
};
use cutover_core::fixtures::RolloutBuilder;
use cutover_core::plan::{
    Action, AnalysisKind, Decision, HoldReason, PromoteReason, RevisionRole, SwitchReason,
    TerminateReason, plan,
};
use cutover_core::sim::World;

fn app() -> RolloutBuilder {
    RolloutBuilder::new("my-app").replicas(2)
}

fn waiting_for_promotion(w: &mut World) {
    until(w, 20, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
}

/// Sets the image and plans once: the new revision's hash.
fn start_update(w: &mut World, image: &str) -> String {
    w.set_image(image);
    w.reconcile();
    current_hash(w)
}

fn promote_and_settle(w: &mut World) {
    w.promote(false);
    until(w, 20, |p| matches!(p.decision, Decision::Promoted(_)));
    w.settle(SECOND, 20);
}

#[test]
fn ready_replicas_counts_the_active_revision_only() {
    let mut w = deployed(app().manual_promotion().preview_replica_count(1));
    w.set_image("my-app:v2");
    waiting_for_promotion(&mut w);
    let s = w.status();
    // Argo while paused: (replicas, status.replicas, updated, ready, available) = (2,3,1,2,2).
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas
        ),
        (3, 1, 2, 2)
    );
}

#[test]
fn a_revision_brought_back_gets_the_next_number() {
    let mut w = deployed(app().manual_promotion().scale_down_delay(0));
    let v1 = stable_hash(&w);
    w.set_image("my-app:v2");
    waiting_for_promotion(&mut w);
    promote_and_settle(&mut w);
    assert!(w.undo(Some(1)));
    let p = w.reconcile();
    assert!(p.actions.contains(&Action::SetRevisionNumber {
        hash: v1.clone(),
        revision: 3,
        previous: 1
    }));
    waiting_for_promotion(&mut w);
    promote_and_settle(&mut w);
    let s = w.status();
    assert_eq!(s.stable_rs.as_deref(), Some(v1.as_str()));
    assert_eq!(s.current_revision, Some(3));
    assert_eq!(w.revisions[&v1].revision, 3);
    assert_eq!(w.revisions[&v1].created_revision, 1);
    assert_eq!(w.active.selector.as_deref(), Some(v1.as_str()));
}

#[test]
fn a_failed_revision_brought_back_runs_a_new_analysis() {
    // v2's pre-promotion run fails → v3 promoted → back to v2 (analysis fixed): a new run is
    // started under v2's new number; the old Failed run does not abort the update.
    let mut w = deployed(app().manual_promotion().pre_analysis().scale_down_delay(0));
    let v2 = start_update(&mut w, "my-app:v2");
    until(&mut w, 20, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    w.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Failed);
    until(&mut w, 10, |p| matches!(p.decision, Decision::Aborted(_)));
    w.set_image("my-app:v3");
    until(&mut w, 20, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    w.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Successful);
    waiting_for_promotion(&mut w);
    promote_and_settle(&mut w);
    w.set_image("my-app:v2");
    let p = w.reconcile();
    assert_eq!(current_hash(&w), v2);
    assert!(!matches!(p.decision, Decision::Aborted(_)), "{p:?}");
    until(&mut w, 20, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    let runs: Vec<&str> = w
        .runs
        .iter()
        .filter(|r| r.hash == v2)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(runs.len(), 2, "a new run for the new attempt: {runs:?}");
    assert_ne!(runs[0], runs[1], "run names are unique per attempt");
    assert!(runs[1].contains("-4-pre"), "{runs:?}");
    w.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Successful);
    waiting_for_promotion(&mut w);
}

#[test]
fn going_back_outside_the_rollback_window_runs_analysis_again() {
    let mut rollout = app()
        .manual_promotion()
        .pre_analysis()
        .scale_down_delay(0)
        .build();
    rollout.spec.rollback_window = Some(RollbackWindow { revisions: Some(1) });
    let mut w = World::new(rollout, t0());
    w.settle(SECOND, 100);
    for image in ["my-app:v2", "my-app:v3"] {
        w.set_image(image);
        until(&mut w, 20, |p| {
            p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
        });
        w.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Successful);
        waiting_for_promotion(&mut w);
        promote_and_settle(&mut w);
    }
    assert_eq!(w.runs.len(), 2);
    // Back to v1: v2 lies between v1 and the stable v3, so the window of 1 is full.
    assert!(w.undo(Some(1)));
    let p = w.reconcile();
    assert!(!p.status.blue_green.fast_rollback);
    until(&mut w, 20, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    assert_eq!(w.runs.len(), 3, "a new pre-promotion run");
}

#[test]
fn going_back_one_revision_inside_a_window_of_one_is_fast() {
    let mut rollout = app().manual_promotion().scale_down_delay(0).build();
    rollout.spec.rollback_window = Some(RollbackWindow { revisions: Some(1) });
    let mut w = World::new(rollout, t0());
    w.settle(SECOND, 100);
    w.set_image("my-app:v2");
    waiting_for_promotion(&mut w);
    promote_and_settle(&mut w);
    assert!(w.undo(None));
    let p = w.reconcile();
    assert!(p.status.blue_green.fast_rollback, "nothing lies between");
    let p = until(&mut w, 20, |p| matches!(p.decision, Decision::Promoted(_)));
    assert_eq!(p.decision, Decision::Promoted(PromoteReason::FastRollback));
}

#[test]
fn an_aborted_revision_without_pods_is_no_fast_rollback() {
    let mut w = deployed(
        app()
            .manual_promotion()
            .pre_analysis()
            .abort_scale_down_delay(1)
            .scale_down_delay(600),
    );
    let v2 = start_update(&mut w, "my-app:v2");
    until(&mut w, 20, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    w.abort();
    w.settle(SECOND, 30);
    assert_eq!(desired(&w, &v2), 0, "aborted revision scaled down");
    // A deadline in the future, but no pods: e.g. set by a later update's housekeeping.
    w.revisions.get_mut(&v2).expect("v2").deadline =
        Some(w.now + jiff::SignedDuration::from_secs(300));
    w.set_image("my-app:v3");
    w.settle(SECOND, 30);
    w.set_image("my-app:v2");
    let p = w.reconcile();
    assert!(!p.status.blue_green.fast_rollback, "{:?}", w.events);
    until(&mut w, 20, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
}

#[test]
fn promote_full_terminates_in_flight_pre_promotion_runs() {
    let mut w = deployed(app().manual_promotion().pre_analysis());
    w.set_image("my-app:v2");
    until(&mut w, 20, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    let run = w.runs.last().expect("run").name.clone();
    w.promote(true);
    let p = w.reconcile();
    assert!(
        p.actions.contains(&Action::TerminateAnalysis {
            name: run,
            reason: TerminateReason::PromotedFull
        }),
        "{:?}",
        p.actions
    );
    until(&mut w, 20, |p| matches!(p.decision, Decision::Promoted(_)));
    assert!(w.runs.iter().all(|r| r.phase.is_completed()));
}

#[test]
fn the_progress_deadline_degrades_once_and_stays_until_progress() {
    let mut w = deployed(app().progress_deadline(5, false));
    let v2 = start_update(&mut w, "my-app:v2");
    w.revisions.get_mut(&v2).expect("v2").broken = true;
    let mut phases = Vec::new();
    for _ in 0..40 {
        let p = w.reconcile();
        phases.push(p.status.phase);
        w.advance(Duration::from_millis(500));
    }
    let first_degraded = phases
        .iter()
        .position(|p| *p == Some(RolloutPhase::Degraded))
        .expect("degraded after the deadline");
    assert!(
        phases[first_degraded..]
            .iter()
            .all(|p| *p == Some(RolloutPhase::Degraded)),
        "no flapping: {phases:?}"
    );
    let events = w
        .events
        .iter()
        .filter(|e| e.starts_with("ProgressDeadlineExceeded"))
        .count();
    assert_eq!(events, 1, "{:?}", w.events);
    let message = w.status().message.unwrap_or_default();
    assert!(
        message.contains("simulated: pods crash at start"),
        "{message}"
    );
    // Progress (the pods come up) ends it.
    w.revisions.get_mut(&v2).expect("v2").broken = false;
    w.settle(SECOND, 30);
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
}

#[test]
fn progress_deadline_abort_has_argos_conditions_and_one_abort_event() {
    let mut w = deployed(app().progress_deadline(5, true));
    let v2 = start_update(&mut w, "my-app:v2");
    w.revisions.get_mut(&v2).expect("v2").broken = true;
    w.settle(SECOND, 30);
    let s = w.status();
    assert_eq!(s.phase, Some(RolloutPhase::Degraded));
    let mut types: Vec<ConditionType> = s.conditions.iter().map(|c| c.type_).collect();
    types.sort_by_key(|t| format!("{t:?}"));
    assert_eq!(
        types,
        [
            ConditionType::Available,
            ConditionType::Completed,
            ConditionType::Healthy,
            ConditionType::Progressing,
            // kstatus's, beside Argo's: Degraded is Stalled and not Ready.
            ConditionType::Ready,
            ConditionType::Stalled,
        ],
        "never paused: no Paused condition"
    );
    let aborts: Vec<&String> = w
        .events
        .iter()
        .filter(|e| e.starts_with("RolloutAborted"))
        .collect();
    assert_eq!(aborts.len(), 1, "{aborts:?}");
    assert!(aborts[0].contains("progress deadline"), "{aborts:?}");
}

#[test]
fn duration_records_start_manual_pauses_and_completion() {
    let mut w = deployed(app().manual_promotion());
    w.set_image("my-app:v2");
    w.reconcile();
    let started = w.status().duration.expect("duration").started_at.0;
    waiting_for_promotion(&mut w);
    let paused_at = w
        .status()
        .duration
        .and_then(|d| d.paused_at)
        .expect("paused");
    w.advance(Duration::from_secs(30));
    w.reconcile();
    w.promote(false);
    until(&mut w, 20, |p| matches!(p.decision, Decision::Promoted(_)));
    let d = w.status().duration.expect("duration");
    assert_eq!(d.revision, 2);
    assert_eq!(d.started_at.0, started);
    assert!(d.paused_at.is_none());
    assert!(d.paused_seconds >= 30.0, "{d:?}");
    assert!(paused_at.0 > started);
    assert_eq!(d.completion, Some(UpdateCompletion::Promoted));
    let finished = d.finished_at.expect("finished").0;
    let total = d.seconds.expect("seconds");
    let expected = (finished.as_millisecond() - started.as_millisecond()) as f64 / 1000.0;
    assert!((total - expected).abs() < 0.001);
}

#[test]
fn duration_of_an_aborted_update_and_its_retry() {
    let mut w = deployed(app().manual_promotion());
    w.set_image("my-app:v2");
    waiting_for_promotion(&mut w);
    w.abort();
    w.settle(SECOND, 10);
    let d = w.status().duration.expect("duration");
    assert_eq!(d.completion, Some(UpdateCompletion::Aborted));
    assert!(d.finished_at.is_some() && d.paused_at.is_none());
    w.retry();
    w.reconcile();
    let d = w.status().duration.expect("duration");
    assert_eq!(d.completion, None, "retried: open again");
}

#[test]
fn switch_times_keep_sub_second_precision_through_storage() {
    let mut w = deployed(app().manual_promotion());
    w.set_image("my-app:v2");
    waiting_for_promotion(&mut w);
    w.advance(Duration::from_millis(250));
    w.promote(false);
    until(&mut w, 20, |p| matches!(p.decision, Decision::Promoted(_)));
    let switch = w.status().blue_green.switch.expect("switch");
    // As an adapter stores it: through JSON.
    let stored: cutover_core::api::SwitchStatus =
        serde_json::from_value(serde_json::to_value(&switch).expect("json")).expect("json");
    assert_eq!(stored, switch, "no precision lost");
    assert_ne!(stored.started_at.0.subsec_millisecond(), 0, "{stored:?}");
}

#[test]
fn a_selector_edited_by_hand_is_set_back_and_does_not_promote() {
    let mut w = deployed(app().manual_promotion());
    let v1 = stable_hash(&w);
    w.set_image("my-app:v2");
    waiting_for_promotion(&mut w);
    let v2 = current_hash(&w);
    w.edit_active_selector_by_hand(&v2);
    w.advance(SECOND);
    let p = w.reconcile();
    assert_eq!(switches_active(&p), Some(v1.as_str()), "{:?}", p.actions);
    assert!(
        w.events
            .iter()
            .any(|e| e.starts_with("ServiceSelectorRepaired"))
    );
    w.settle(SECOND, 10);
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    assert_eq!(w.status().stable_rs.as_deref(), Some(v1.as_str()));
    assert_eq!(w.active.selector.as_deref(), Some(v1.as_str()));
}

#[test]
fn a_switch_whose_status_write_was_lost_is_recorded_from_the_service() {
    let mut w = deployed(app().manual_promotion());
    w.rollout.spec.strategy.blue_green.traffic_routing = Some(TrafficRouting {
        preview_weight: Some(10),
        ..TrafficRouting::default()
    });
    let v1 = stable_hash(&w);
    w.set_image("my-app:v2");
    waiting_for_promotion(&mut w);
    let v2 = current_hash(&w);
    w.promote(false);
    // The pass that switches the active Service fails after the switch (a mesh route's write
    // refused, the controller killed): its status never lands.
    let p = plan(&w.observe(), w.now);
    assert_eq!(switches_active(&p), Some(v2.as_str()));
    w.apply_losing_status(&p);
    assert_eq!(
        w.status().blue_green.active_selector.as_deref(),
        Some(v1.as_str())
    );
    w.advance(SECOND);
    let p = w.reconcile();
    assert_eq!(
        switches_active(&p),
        None,
        "the Service already selects {v2}"
    );
    assert_eq!(
        p.status.blue_green.active_selector.as_deref(),
        Some(v2.as_str())
    );
    let switch = p.status.blue_green.switch.clone().expect("switch recorded");
    assert_eq!((switch.from, switch.to), (Some(v1.clone()), v2.clone()));
    // Routes follow the status: the weighted share to the preview is over.
    let routes = cutover_core::traffic::routes(&w.rollout, true);
    assert_eq!(routes.active.weights, vec![(v2.clone(), 100)]);
    w.settle(SECOND, 20);
    assert_eq!(w.status().stable_rs.as_deref(), Some(v2.as_str()));
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
    let announced = w
        .events
        .iter()
        .filter(|e| e.starts_with("SwitchService"))
        .count();
    assert_eq!(
        announced, 2,
        "the initial deploy's switch and the lost one, each once"
    );
}

#[test]
fn a_deleted_stable_revision_is_replaced_by_a_ready_one() {
    let mut w = deployed(app().manual_promotion().scale_down_delay(600));
    w.set_image("my-app:v2");
    waiting_for_promotion(&mut w);
    promote_and_settle(&mut w);
    let v2 = stable_hash(&w);
    w.set_image("my-app:v3");
    waiting_for_promotion(&mut w);
    let v1 = w
        .revisions
        .iter()
        .find(|(_, r)| r.revision == 1)
        .map(|(h, _)| h.clone())
        .expect("v1 still warm");
    w.delete_revision_by_hand(&v2);
    let p = w.reconcile();
    assert!(w.events.iter().any(|e| e.starts_with("StableRevisionLost")));
    assert_eq!(
        switches_active(&p),
        Some(v1.as_str()),
        "the warm, once promoted revision serves"
    );
    w.settle(SECOND, 10);
    assert_eq!(
        w.status().phase,
        Some(RolloutPhase::Paused),
        "v3 still waits"
    );
}

#[test]
fn a_deleted_stable_revision_with_nothing_warm_hands_over_to_the_preview() {
    let mut w = deployed(app().manual_promotion().scale_down_delay(0));
    let v1 = stable_hash(&w);
    w.set_image("my-app:v2");
    waiting_for_promotion(&mut w);
    w.delete_revision_by_hand(&v1);
    let p = until(&mut w, 5, |p| switches_active(p).is_some());
    assert_eq!(switches_active(&p), Some(current_hash(&w).as_str()));
    w.settle(SECOND, 20);
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
}

fn metadata(label: &str, value: &str) -> PodTemplateMetadata {
    PodTemplateMetadata {
        labels: [(label.to_string(), value.to_string())].into(),
        annotations: Default::default(),
    }
}

#[test]
fn role_metadata_is_in_the_first_template_and_follows_spec_changes() {
    let mut rollout = app().manual_promotion().without_preview().build();
    rollout.spec.strategy.blue_green.active_metadata = Some(metadata("role", "active"));
    rollout.spec.strategy.blue_green.preview_metadata = Some(metadata("role", "preview"));
    let mut w = World::new(rollout, t0());
    let first = w.reconcile();
    assert!(
        first.actions.iter().any(|a| matches!(a,
            Action::CreateRevision { role: Some(RevisionRole::Active), metadata: Some(m), .. }
                if m.labels["role"] == "active")),
        "pods start with the active role's labels: {:?}",
        first.actions
    );
    w.settle(SECOND, 50);
    w.set_image("my-app:v2");
    let p = w.reconcile();
    assert!(
        p.actions.iter().any(|a| matches!(
            a,
            Action::CreateRevision {
                role: Some(RevisionRole::Preview),
                ..
            }
        )),
        "preview metadata without a preview Service: {:?}",
        p.actions
    );
    waiting_for_promotion(&mut w);
    let v2 = current_hash(&w);
    assert_eq!(w.revisions[&v2].role, Some(RevisionRole::Preview));
    // Changing the metadata in the spec reaches the running revisions.
    w.rollout.spec.strategy.blue_green.active_metadata = Some(metadata("role", "live"));
    let p = w.reconcile();
    assert!(
        p.actions.iter().any(|a| matches!(a,
            Action::SetRevisionRole { role: Some(RevisionRole::Active), metadata: Some(m), previous: Some(old), .. }
                if m.labels["role"] == "live" && old.labels["role"] == "active")),
        "{:?}",
        p.actions
    );
    promote_and_settle(&mut w);
    assert_eq!(
        w.revisions[&v2].role_metadata,
        Some(metadata("role", "live"))
    );
    let p = w.reconcile();
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::SetRevisionRole { .. })),
        "settled"
    );
}

#[test]
fn fast_rollback_to_the_warm_previous_revision_still_works() {
    let mut w = deployed(app().manual_promotion().scale_down_delay(600));
    w.set_image("my-app:v2");
    waiting_for_promotion(&mut w);
    promote_and_settle(&mut w);
    assert!(w.undo(None));
    let p = w.reconcile();
    assert!(p.status.blue_green.fast_rollback);
    let p = if switches_active(&p).is_some() {
        p
    } else {
        until(&mut w, 10, |p| switches_active(p).is_some())
    };
    assert_eq!(p.decision, Decision::Switch(SwitchReason::FastRollback));
}
