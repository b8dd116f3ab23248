//! Snapshots of the status written at the milestones of the seed's flow: initial deploy,
//! paused for promotion, post-promotion analysis, promoted, and an automatic rollback.

mod common;

use std::time::Duration;

use common::*;
use cutover_core::api::AnalysisPhase;
use cutover_core::fixtures::RolloutBuilder;
use cutover_core::plan::{AbortState, AnalysisKind, Decision, HoldReason, PostHold};

fn seed() -> RolloutBuilder {
    RolloutBuilder::new("my-app")
        .replicas(4)
        .revision_history_limit(2)
        .preview_replica_count(2)
        .manual_promotion()
        .scale_down_delay(30)
        .pre_analysis()
        .post_analysis()
}

#[test]
fn seed_flow_statuses() {
    let mut w = deployed(seed());
    insta::assert_yaml_snapshot!("1_initial_deploy", w.status());

    w.set_image("my-app:v2");
    until(&mut w, 20, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    w.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Successful);
    until(&mut w, 5, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    insta::assert_yaml_snapshot!("2_paused_for_promotion", w.status());

    w.promote(false);
    until(&mut w, 20, |p| {
        p.decision == Decision::PostPromotion(PostHold::AnalysisRunning)
    });
    insta::assert_yaml_snapshot!("3_post_promotion_analysis", w.status());

    w.finish_runs(AnalysisKind::PostPromotion, AnalysisPhase::Successful);
    until(&mut w, 5, |p| matches!(p.decision, Decision::Promoted(_)));
    insta::assert_yaml_snapshot!("4_promoted", w.status());

    w.advance(Duration::from_secs(60));
    w.set_image("my-app:v3");
    until(&mut w, 20, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    w.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Successful);
    until(&mut w, 5, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    w.promote(false);
    until(&mut w, 20, |p| {
        p.decision == Decision::PostPromotion(PostHold::AnalysisRunning)
    });
    w.finish_runs(AnalysisKind::PostPromotion, AnalysisPhase::Failed);
    until(&mut w, 5, |p| {
        p.decision == Decision::Aborted(AbortState::Done)
    });
    insta::assert_yaml_snapshot!("5_rolled_back", w.status());
}
