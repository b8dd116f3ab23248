//! One test per transition of the blue/green state machine, driven through the simulated world.

mod common;

use std::time::Duration;

use common::*;
use cutover_core::api::{AnalysisPhase, ConditionType, PauseReason, RolloutPhase};
use cutover_core::fixtures::RolloutBuilder;
use cutover_core::plan::{
    AbortState, Action, AnalysisKind, Decision, HoldReason, PostHold, PromoteReason, ScaleReason,
    ServiceRole, SpecProblem, SwitchReason, plan,
};
use cutover_core::sim::World;

fn app() -> RolloutBuilder {
    RolloutBuilder::new("my-app").replicas(3)
}

#[test]
fn initial_deploy_scales_fully_points_both_services_and_skips_gates() {
    let mut w = World::new(
        app()
            .manual_promotion()
            .pre_analysis()
            .post_analysis()
            .preview_replica_count(1)
            .build(),
        t0(),
    );
    let first = w.reconcile();
    let hash = current_hash(&w);
    assert!(matches!(
        first.actions[0],
        Action::CreateRevision { revision: 1, .. }
    ));
    assert!(first.actions.contains(&Action::ScaleRevision {
        hash: hash.clone(),
        replicas: 3,
        reason: ScaleReason::InitialDeploy,
    }));
    assert!(first.actions.iter().any(|a| matches!(a,
        Action::SwitchService { role: ServiceRole::Preview, to, .. } if *to == hash)));
    assert_eq!(
        switches_active(&first),
        None,
        "active waits for available pods"
    );
    let switch = until(&mut w, 10, |p| switches_active(p).is_some());
    assert_eq!(
        switch.decision,
        Decision::Switch(SwitchReason::InitialDeploy)
    );
    let done = until(&mut w, 10, |p| matches!(p.decision, Decision::Promoted(_)));
    assert_eq!(
        done.decision,
        Decision::Promoted(PromoteReason::InitialDeploy)
    );
    assert!(w.runs.is_empty(), "no analysis on the initial deploy");
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
}

#[test]
fn update_creates_revision_at_zero_points_preview_then_scales_to_preview_count() {
    let mut w = deployed(app().preview_replica_count(1).manual_promotion());
    let stable = stable_hash(&w);
    w.set_image("my-app:v2");
    let p = w.reconcile();
    let new = current_hash(&w);
    assert_ne!(new, stable);
    let create = p
        .actions
        .iter()
        .position(|a| matches!(a, Action::CreateRevision { revision: 2, .. }));
    let scale = p.actions.iter().position(|a| {
        *a == Action::ScaleRevision {
            hash: new.clone(),
            replicas: 1,
            reason: ScaleReason::Preview,
        }
    });
    assert!(
        create.is_some() && scale.is_some() && create < scale,
        "{:?}",
        p.actions
    );
    assert_eq!(
        w.preview.as_ref().and_then(|s| s.selector.clone()),
        Some(new.clone())
    );
    assert_eq!(w.active.selector, Some(stable.clone()), "active untouched");
    assert_eq!(desired(&w, &stable), 3);
    assert_eq!(
        p.decision,
        Decision::Hold(HoldReason::PreviewNotAvailable {
            available: 0,
            desired: 1,
            why: None,
        })
    );
}

#[test]
fn update_without_preview_count_scales_preview_to_replicas() {
    let mut w = deployed(app().manual_promotion());
    w.set_image("my-app:v2");
    w.reconcile();
    assert_eq!(desired(&w, &current_hash(&w)), 3);
}

#[test]
fn pre_promotion_analysis_starts_when_preview_is_available() {
    let mut w = deployed(app().pre_analysis());
    w.set_image("my-app:v2");
    let p = until(&mut w, 10, |p| {
        p.actions
            .iter()
            .any(|a| matches!(a, Action::StartAnalysis(_)))
    });
    let new = current_hash(&w);
    assert!(w.revisions[&new].pods.len() == 3);
    assert_eq!(
        p.decision,
        Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    );
    let Some(Action::StartAnalysis(req)) = p
        .actions
        .iter()
        .find(|a| matches!(a, Action::StartAnalysis(_)))
    else {
        unreachable!()
    };
    assert_eq!(req.name, format!("my-app-{new}-2-pre"));
    assert_eq!(req.stable_hash.as_deref(), Some(stable_hash(&w).as_str()));
    // Still running: no switch, however long it takes.
    w.advance(Duration::from_secs(120));
    assert_eq!(switches_active(&w.reconcile()), None);
    w.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Successful);
    let p = w.reconcile();
    assert_eq!(switches_active(&p), Some(new.as_str()));
    assert_eq!(p.decision, Decision::Switch(SwitchReason::GatesPassed));
}

#[test]
fn manual_promotion_pauses_with_blue_green_pause_until_promote() {
    let mut w = deployed(app().manual_promotion());
    w.set_image("my-app:v2");
    let p = until(&mut w, 10, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    assert!(
        p.status
            .pause_condition(PauseReason::BlueGreenPause)
            .is_some()
    );
    assert!(p.status.controller_pause);
    assert_eq!(p.status.phase, Some(RolloutPhase::Paused));
    w.advance(Duration::from_secs(3600));
    assert_eq!(
        switches_active(&w.reconcile()),
        None,
        "a manual pause never times out"
    );
    w.promote(false);
    let p = w.reconcile();
    assert_eq!(switches_active(&p), Some(current_hash(&w).as_str()));
}

#[test]
fn timed_promotion_switches_after_auto_promotion_seconds() {
    let mut w = deployed(app().auto_promotion_seconds(60));
    w.set_image("my-app:v2");
    let p = until(&mut w, 10, |p| {
        matches!(
            p.decision,
            Decision::Hold(HoldReason::AutoPromotionIn { .. })
        )
    });
    assert_eq!(
        p.decision,
        Decision::Hold(HoldReason::AutoPromotionIn { seconds: 60 })
    );
    assert_eq!(p.requeue_after, Some(Duration::from_secs(60)));
    w.advance(Duration::from_secs(59));
    let p = w.reconcile();
    assert_eq!(
        p.decision,
        Decision::Hold(HoldReason::AutoPromotionIn { seconds: 1 })
    );
    w.advance(Duration::from_secs(1));
    let p = w.reconcile();
    assert_eq!(switches_active(&p), Some(current_hash(&w).as_str()));
}

#[test]
fn auto_promotion_seconds_is_ignored_when_auto_promotion_is_disabled() {
    let mut w = deployed(app().manual_promotion().auto_promotion_seconds(5));
    w.set_image("my-app:v2");
    until(&mut w, 10, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    w.advance(Duration::from_secs(60));
    assert_eq!(
        w.reconcile().decision,
        Decision::Hold(HoldReason::WaitingForPromotion)
    );
}

#[test]
fn promote_scales_reduced_preview_to_full_before_switching() {
    let mut w = deployed(app().preview_replica_count(1).manual_promotion());
    w.set_image("my-app:v2");
    until(&mut w, 10, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    w.promote(false);
    let p = w.reconcile();
    let new = current_hash(&w);
    assert_eq!(
        p.decision,
        Decision::Hold(HoldReason::ScalingUpPreview {
            available: 1,
            desired: 3
        })
    );
    assert!(p.status.blue_green.scale_up_preview_check_point);
    assert!(p.actions.contains(&Action::ScaleRevision {
        hash: new.clone(),
        replicas: 3,
        reason: ScaleReason::PromotionScaleUp
    }));
    assert_eq!(switches_active(&p), None);
    let p = until(&mut w, 10, |p| switches_active(p).is_some());
    assert_eq!(switches_active(&p), Some(new.as_str()));
    assert!(w.revisions[&new].pods.len() == 3);
}

#[test]
fn switch_counts_only_when_the_data_plane_serves_only_the_new_revision() {
    let mut w = deployed(app());
    w.serving_lag = Duration::from_secs(10);
    let old = stable_hash(&w);
    w.set_image("my-app:v2");
    until(&mut w, 10, |p| switches_active(p).is_some());
    let new = current_hash(&w);
    for _ in 0..9 {
        w.advance(SECOND);
        let p = w.reconcile();
        assert_eq!(p.decision, Decision::AwaitingSwitchVerification);
        assert_eq!(stable_hash(&w), old, "not stable before confirmation");
        assert_eq!(desired(&w, &old), 3, "old revision keeps its pods");
        assert!(
            !p.actions
                .iter()
                .any(|a| matches!(a, Action::SetScaleDownDeadline { hash, .. } if *hash == old))
        );
    }
    w.advance(SECOND);
    let p = w.reconcile();
    assert_eq!(
        p.decision,
        Decision::Promoted(PromoteReason::SwitchVerified)
    );
    let switch = p.status.blue_green.switch.expect("switch recorded");
    assert_eq!(switch.to, new);
    assert_eq!(switch.seconds, Some(10.0));
}

#[test]
fn old_revision_gets_a_deadline_after_verified_switch_and_scales_down_when_it_passes() {
    let mut w = deployed(app().scale_down_delay(30));
    let old = stable_hash(&w);
    w.set_image("my-app:v2");
    let p = until(&mut w, 20, |p| matches!(p.decision, Decision::Promoted(_)));
    let deadline = p.actions.iter().find_map(|a| match a {
        Action::SetScaleDownDeadline {
            hash,
            deadline: Some(d),
        } if *hash == old => Some(*d),
        _ => None,
    });
    assert_eq!(
        deadline.map(|d| d.as_second() - w.now.as_second()),
        Some(30)
    );
    assert_eq!(p.requeue_after, Some(Duration::from_secs(30)));
    w.advance(Duration::from_secs(29));
    assert_eq!(desired(&w, &old), 3);
    assert!(w.reconcile().actions.is_empty());
    w.advance(SECOND);
    let p = w.reconcile();
    assert!(p.actions.contains(&Action::ScaleRevision {
        hash: old.clone(),
        replicas: 0,
        reason: ScaleReason::ScaleDownDeadlinePassed
    }));
}

#[test]
fn scale_down_delay_revision_limit_scales_older_revisions_at_once() {
    let mut w = deployed(
        app()
            .scale_down_delay(300)
            .scale_down_delay_revision_limit(1),
    );
    let v1 = stable_hash(&w);
    w.set_image("my-app:v2");
    until(&mut w, 20, |p| matches!(p.decision, Decision::Promoted(_)));
    let v2 = stable_hash(&w);
    w.set_image("my-app:v3");
    until(&mut w, 20, |p| matches!(p.decision, Decision::Promoted(_)));
    let p = w.reconcile();
    assert_eq!(
        desired(&w, &v2),
        3,
        "newest old revision waits out its delay"
    );
    assert_eq!(desired(&w, &v1), 0, "{:?}", p.actions);
}

#[test]
fn revision_history_limit_prunes_scaled_down_revisions() {
    let mut w = deployed(app().scale_down_delay(0).revision_history_limit(1));
    for v in 2..=4 {
        w.set_image(&format!("my-app:v{v}"));
        w.settle(SECOND, 50);
    }
    assert_eq!(
        w.revisions.len(),
        2,
        "current + one old revision: {:?}",
        w.revisions.keys()
    );
    assert!(w.revisions.values().any(|r| r.revision == 3));
}

#[test]
fn abort_returns_active_to_stable_and_scales_preview_down_after_delay() {
    let mut w = deployed(app().post_analysis().abort_scale_down_delay(30));
    let stable = stable_hash(&w);
    w.set_image("my-app:v2");
    until(&mut w, 20, |p| {
        p.decision == Decision::PostPromotion(PostHold::AnalysisRunning)
    });
    let new = current_hash(&w);
    assert_eq!(w.active.selector.as_deref(), Some(new.as_str()));
    w.abort();
    let p = w.reconcile();
    assert_eq!(switches_active(&p), Some(stable.as_str()));
    assert_eq!(p.decision, Decision::Aborted(AbortState::SwitchingBack));
    assert_eq!(p.status.phase, Some(RolloutPhase::Degraded));
    assert_eq!(
        p.status.message.as_deref(),
        Some("RolloutAborted: Rollout aborted update to revision 2")
    );
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::TerminateAnalysis { .. }))
    );
    assert_eq!(
        w.preview.as_ref().and_then(|s| s.selector.clone()),
        Some(new.clone()),
        "preview stays"
    );
    let p = until(&mut w, 5, |p| {
        p.decision == Decision::Aborted(AbortState::Done)
    });
    let _ = p;
    assert_eq!(desired(&w, &new), 3);
    w.advance(Duration::from_secs(30));
    let p = w.reconcile();
    assert!(
        p.actions.contains(&Action::ScaleRevision {
            hash: new.clone(),
            replicas: 0,
            reason: ScaleReason::AbortedUpdate
        }),
        "{:?}",
        p.actions
    );
    assert_eq!(desired(&w, &stable), 3);
}

#[test]
fn abort_scale_down_waits_for_stable_to_be_fully_available() {
    let mut w = deployed(app().manual_promotion());
    let stable = stable_hash(&w);
    w.set_image("my-app:v2");
    until(&mut w, 10, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    for pod in &mut w.revisions.get_mut(&stable).expect("stable").pods {
        pod.unready = true;
    }
    w.abort();
    w.advance(Duration::from_secs(120));
    let p = w.reconcile();
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::SetScaleDownDeadline { .. }))
    );
    assert_eq!(desired(&w, &current_hash(&w)), 3);
}

#[test]
fn abort_scale_down_delay_zero_keeps_the_aborted_revision() {
    let mut w = deployed(app().manual_promotion().abort_scale_down_delay(0));
    w.set_image("my-app:v2");
    until(&mut w, 10, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    w.abort();
    w.settle(SECOND, 200);
    assert_eq!(desired(&w, &current_hash(&w)), 3);
}

#[test]
fn retry_runs_the_update_again_with_new_analysis_runs() {
    let mut w = deployed(app().pre_analysis());
    w.set_image("my-app:v2");
    until(&mut w, 10, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    w.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Failed);
    let p = w.reconcile();
    assert!(p.status.abort);
    assert!(matches!(p.decision, Decision::Aborted(_)));
    w.advance(SECOND);
    w.retry();
    let p = until(&mut w, 10, |p| {
        p.actions
            .iter()
            .any(|a| matches!(a, Action::StartAnalysis(_)))
    });
    let Some(Action::StartAnalysis(req)) = p
        .actions
        .iter()
        .find(|a| matches!(a, Action::StartAnalysis(_)))
    else {
        unreachable!()
    };
    assert!(req.name.ends_with("-pre.1"), "{}", req.name);
    assert!(w.events.iter().any(|e| e.starts_with("RolloutRetry")));
    w.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Successful);
    until(&mut w, 10, |p| matches!(p.decision, Decision::Promoted(_)));
}

#[test]
fn undo_to_a_warm_revision_is_a_fast_rollback() {
    let mut w = deployed(
        app()
            .manual_promotion()
            .pre_analysis()
            .scale_down_delay(300),
    );
    let v1 = stable_hash(&w);
    w.set_image("my-app:v2");
    until(&mut w, 10, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    w.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Successful);
    until(&mut w, 10, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    w.promote(false);
    until(&mut w, 10, |p| matches!(p.decision, Decision::Promoted(_)));
    assert!(w.revisions[&v1].deadline.is_some(), "v1 is warm");
    assert!(w.undo(None));
    let p = w.reconcile();
    assert_eq!(current_hash(&w), v1);
    assert!(p.status.blue_green.fast_rollback);
    let p = if switches_active(&p).is_some() {
        p
    } else {
        until(&mut w, 5, |p| switches_active(p).is_some())
    };
    assert_eq!(p.decision, Decision::Switch(SwitchReason::FastRollback));
    assert!(
        !w.runs.iter().any(|r| r.hash == v1),
        "no analysis on fast rollback"
    );
    until(&mut w, 5, |p| {
        p.decision == Decision::Promoted(PromoteReason::FastRollback)
    });
}

#[test]
fn undo_to_a_cold_revision_runs_the_full_flow() {
    let mut w = deployed(app().manual_promotion().scale_down_delay(0));
    w.set_image("my-app:v2");
    until(&mut w, 10, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    w.promote(false);
    w.settle(SECOND, 50);
    assert!(w.undo(Some(1)));
    let p = w.reconcile();
    assert!(!p.status.blue_green.fast_rollback);
    until(&mut w, 10, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
}

#[test]
fn undo_during_an_update_to_the_stable_revision_returns_at_once() {
    let mut w = deployed(app().post_analysis());
    let v1 = stable_hash(&w);
    w.set_image("my-app:v2");
    until(&mut w, 20, |p| {
        p.decision == Decision::PostPromotion(PostHold::AnalysisRunning)
    });
    assert!(w.undo(Some(1)));
    let p = w.reconcile();
    assert_eq!(switches_active(&p), Some(v1.as_str()));
    assert_eq!(p.decision, Decision::Switch(SwitchReason::FastRollback));
}

#[test]
fn spec_paused_halts_preview_retargeting_and_switching() {
    let mut w = deployed(app());
    let stable = stable_hash(&w);
    w.set_paused(true);
    w.set_image("my-app:v2");
    w.settle(SECOND, 20);
    assert_eq!(
        w.preview.as_ref().and_then(|s| s.selector.clone()),
        Some(stable.clone())
    );
    assert_eq!(w.active.selector, Some(stable));
    assert_eq!(w.status().phase, Some(RolloutPhase::Paused));
    w.set_paused(false);
    until(&mut w, 20, |p| matches!(p.decision, Decision::Promoted(_)));
}

#[test]
fn promote_full_skips_pauses_analysis_and_preview_count() {
    let mut w = deployed(
        app()
            .manual_promotion()
            .pre_analysis()
            .post_analysis()
            .preview_replica_count(1),
    );
    w.set_image("my-app:v2");
    until(&mut w, 10, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    w.promote(true);
    let p = w.reconcile();
    assert!(
        p.actions.contains(&Action::ScaleRevision {
            hash: current_hash(&w),
            replicas: 3,
            reason: ScaleReason::Preview
        }) || desired(&w, &current_hash(&w)) == 3
    );
    let p2 = until(&mut w, 10, |p| switches_active(p).is_some());
    assert_eq!(p2.decision, Decision::Switch(SwitchReason::PromoteFull));
    let p3 = until(&mut w, 5, |p| matches!(p.decision, Decision::Promoted(_)));
    assert_eq!(p3.decision, Decision::Promoted(PromoteReason::PromoteFull));
    assert!(!p3.status.promote_full, "cleared once promoted");
    let _ = p;
}

#[test]
fn progress_deadline_marks_degraded_and_aborts_when_asked() {
    for abort in [false, true] {
        let mut w = deployed(app().progress_deadline(60, abort));
        w.set_image("my-app:v2");
        let new = current_hash(&{
            w.reconcile();
            w.clone()
        });
        w.revisions.get_mut(&new).expect("new revision").broken = true;
        w.advance(SECOND);
        let waiting = w.reconcile();
        assert!(waiting.requeue_after <= Some(Duration::from_secs(60)));
        w.advance(Duration::from_secs(59));
        let p = w.reconcile();
        assert_eq!(p.status.phase, Some(RolloutPhase::Progressing), "not yet");
        w.advance(Duration::from_secs(2));
        let p = w.reconcile();
        let progressing = p
            .status
            .condition(ConditionType::Progressing)
            .expect("condition");
        // Argo: an abort (here caused by the deadline) outranks the deadline reason.
        let expected = if abort {
            "RolloutAborted"
        } else {
            "ProgressDeadlineExceeded"
        };
        assert_eq!(progressing.reason, expected);
        assert_eq!(
            p.status.phase,
            Some(cutover_core::api::RolloutPhase::Degraded)
        );
        assert_eq!(p.status.abort, abort);
    }
}

#[test]
fn failed_post_promotion_analysis_switches_back_to_stable() {
    let mut w = deployed(app().post_analysis());
    let stable = stable_hash(&w);
    w.set_image("my-app:v2");
    until(&mut w, 20, |p| {
        p.decision == Decision::PostPromotion(PostHold::AnalysisRunning)
    });
    w.finish_runs(AnalysisKind::PostPromotion, AnalysisPhase::Error);
    let p = w.reconcile();
    assert_eq!(switches_active(&p), Some(stable.as_str()));
    assert!(p.status.abort);
    assert_eq!(stable_hash(&w), stable);
}

#[test]
fn inconclusive_analysis_pauses_for_a_human_and_promote_continues() {
    let mut w = deployed(app().pre_analysis());
    w.set_image("my-app:v2");
    until(&mut w, 10, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    w.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Inconclusive);
    let p = w.reconcile();
    assert_eq!(
        p.decision,
        Decision::Hold(HoldReason::InconclusiveAnalysis(AnalysisKind::PrePromotion))
    );
    assert!(
        p.status
            .pause_condition(PauseReason::InconclusiveAnalysisRun)
            .is_some()
    );
    w.advance(Duration::from_secs(600));
    assert_eq!(switches_active(&w.reconcile()), None);
    w.promote(false);
    assert!(switches_active(&w.reconcile()).is_some());
}

#[test]
fn replicas_change_reaches_only_the_preview_until_promotion() {
    let mut w = deployed(app().manual_promotion());
    let stable = stable_hash(&w);
    w.set_image("my-app:v2");
    until(&mut w, 10, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    let new = current_hash(&w);
    w.rollout.spec.replicas = Some(5);
    w.reconcile();
    assert_eq!(desired(&w, &new), 5);
    assert_eq!(desired(&w, &stable), 3, "active keeps its size");
    w.rollout.spec.replicas = Some(2);
    w.reconcile();
    assert_eq!(desired(&w, &new), 2);
    assert_eq!(
        desired(&w, &stable),
        3,
        "stable never shrinks before the switch"
    );
    w.promote(false);
    until(&mut w, 20, |p| matches!(p.decision, Decision::Promoted(_)));
    w.rollout.spec.replicas = Some(4);
    w.reconcile();
    assert_eq!(
        desired(&w, &new),
        4,
        "once stable, the active revision follows spec.replicas"
    );
}

#[test]
fn missing_service_or_bad_strategy_is_invalid_and_changes_nothing() {
    let w = World::new(app().build(), t0());
    let mut observed = w.observe();
    observed.preview_service = None;
    let p = plan(&observed, t0());
    assert_eq!(
        p.decision,
        Decision::Invalid(SpecProblem::ServiceNotFound("my-app-preview".into()))
    );
    assert!(p.actions.is_empty());
    assert_eq!(p.status.phase, Some(RolloutPhase::Degraded));

    let mut bad = app().build();
    bad.spec.strategy.blue_green.preview_service = Some("my-app-active".into());
    let p = plan(&World::new(bad, t0()).observe(), t0());
    assert_eq!(
        p.decision,
        Decision::Invalid(SpecProblem::PreviewEqualsActive("my-app-active".into()))
    );
    assert!(p.actions.is_empty());
}

#[test]
fn restart_at_restarts_old_pods_a_few_at_a_time() {
    let mut w = deployed(app());
    let stable = stable_hash(&w);
    w.advance(Duration::from_secs(100));
    w.rollout.spec.restart_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(w.now));
    w.advance(SECOND);
    let p = w.reconcile();
    assert!(p.actions.contains(&Action::RestartPods {
        hash: stable.clone(),
        before: w.now - jiff::SignedDuration::from_secs(1),
        max_unavailable: 1
    }));
    w.settle(SECOND, 20);
    assert!(w.status().restarted_at.is_some());
}

#[test]
fn role_metadata_follows_active_and_preview() {
    let mut builder = app().manual_promotion();
    let mut rollout = builder.clone().build();
    rollout.spec.strategy.blue_green.active_metadata = Some(Default::default());
    rollout.spec.strategy.blue_green.preview_metadata = Some(Default::default());
    builder = builder.replicas(3);
    let _ = builder;
    let mut w = World::new(rollout, t0());
    w.settle(SECOND, 50);
    let v1 = stable_hash(&w);
    assert_eq!(
        w.revisions[&v1].role,
        Some(cutover_core::plan::RevisionRole::Active)
    );
    w.set_image("my-app:v2");
    until(&mut w, 10, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    let v2 = current_hash(&w);
    assert_eq!(
        w.revisions[&v2].role,
        Some(cutover_core::plan::RevisionRole::Preview)
    );
    w.promote(false);
    until(&mut w, 20, |p| matches!(p.decision, Decision::Promoted(_)));
    w.reconcile();
    assert_eq!(
        w.revisions[&v2].role,
        Some(cutover_core::plan::RevisionRole::Active)
    );
    assert_eq!(w.revisions[&v1].role, None);
}
