//! The Rollouts GitOps tools see, produced by `plan()` in every phase, kept as JSON fixtures
//! under deploy/argocd/testdata/ (the Argo CD Lua scripts are tested against them, see
//! `argocd_lua.rs`), and what Flux's kstatus computes from each.
//!
//! The committed fixtures must be what the planner writes today: regenerate them with
//! `CUTOVER_BLESS=1 cargo test -p cutover-core --test gitops_fixtures`.

mod common;
mod gitops;

use std::time::Duration;

use common::*;
use cutover_core::api::{AnalysisPhase, ConditionStatus, ConditionType, RolloutPhase};
use cutover_core::fixtures::RolloutBuilder;
use cutover_core::plan::{AbortState, AnalysisKind, Decision, HoldReason};
use cutover_core::sim::World;
use gitops::{KstatusStatus, fixture_dir, kstatus};

fn app() -> RolloutBuilder {
    RolloutBuilder::new("my-app")
        .replicas(2)
        .manual_promotion()
        .scale_down_delay(30)
        .pre_analysis()
}

/// One named world per phase the issue lists, each with the kstatus result it must give.
fn scenarios() -> Vec<(&'static str, World, KstatusStatus)> {
    let mut out = Vec::new();

    let healthy = deployed(app());
    out.push(("healthy", healthy.clone(), KstatusStatus::Current));

    // The spec changed and the controller has not written status for it yet.
    let mut not_observed = healthy.clone();
    not_observed.set_image("my-app:v2");
    out.push(("not-observed", not_observed, KstatusStatus::InProgress));

    // The preview revision's pods are starting.
    let mut progressing = healthy.clone();
    progressing.set_image("my-app:v2");
    until(&mut progressing, 3, |p| {
        matches!(
            p.decision,
            Decision::Hold(HoldReason::ScalingUpPreview { .. })
                | Decision::Hold(HoldReason::PreviewNotAvailable { .. })
        )
    });
    out.push(("progressing", progressing, KstatusStatus::InProgress));

    let mut analysing = healthy.clone();
    analysing.set_image("my-app:v2");
    until(&mut analysing, 20, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    out.push((
        "analysis-running",
        analysing.clone(),
        KstatusStatus::InProgress,
    ));

    let mut paused = analysing.clone();
    paused.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Successful);
    until(&mut paused, 5, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    out.push(("paused", paused.clone(), KstatusStatus::InProgress));

    // Paused by hand with nothing in flight: nothing waits, so kstatus is done.
    let mut paused_idle = healthy.clone();
    paused_idle.set_paused(true);
    paused_idle.settle(SECOND, 20);
    out.push(("paused-idle", paused_idle, KstatusStatus::Current));

    let mut aborted = paused.clone();
    aborted.abort();
    until(&mut aborted, 20, |p| {
        p.decision == Decision::Aborted(AbortState::Done)
    });
    out.push(("aborted", aborted, KstatusStatus::Failed));

    let mut analysis_failed = analysing;
    analysis_failed.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Failed);
    until(&mut analysis_failed, 20, |p| {
        p.decision == Decision::Aborted(AbortState::Done)
    });
    out.push(("analysis-failed", analysis_failed, KstatusStatus::Failed));

    // The new revision's pods never become ready: past the progress deadline.
    let mut deadline = deployed(app().progress_deadline(10, false));
    deadline.set_image("my-app:v2");
    deadline.reconcile();
    let v2 = current_hash(&deadline);
    deadline.revisions.get_mut(&v2).expect("v2 created").broken = true;
    for _ in 0..30 {
        deadline.reconcile();
        deadline.advance(SECOND);
    }
    deadline.reconcile();
    out.push(("deadline-exceeded", deadline, KstatusStatus::Failed));

    // More replicas asked of a stable rollout; the new pods are not available yet.
    let mut scale_up = healthy;
    scale_up.rollout.spec.replicas = Some(4);
    bump_generation(&mut scale_up);
    scale_up.reconcile();
    out.push(("scale-up", scale_up, KstatusStatus::InProgress));

    let mut bad = app().build();
    bad.spec.strategy.blue_green.preview_service = Some("my-app-active".into());
    let mut invalid = World::new(bad, t0());
    invalid.reconcile();
    out.push(("invalid-spec", invalid, KstatusStatus::Failed));

    out
}

fn bump_generation(w: &mut World) {
    let generation = w.rollout.metadata.generation.unwrap_or(0);
    w.rollout.metadata.generation = Some(generation + 1);
}

/// The object as the API server serves it: apiVersion, kind, metadata, spec and status.
fn rendered(w: &World) -> String {
    let mut value = serde_json::to_value(&w.rollout).expect("a Rollout serialises");
    value["metadata"]["namespace"] = "shop".into();
    let mut text = serde_json::to_string_pretty(&value).expect("JSON serialises");
    text.push('\n');
    text
}

#[test]
fn committed_fixtures_are_what_plan_writes() {
    let dir = fixture_dir();
    let bless = std::env::var_os("CUTOVER_BLESS").is_some();
    let scenarios = scenarios();
    assert!(scenarios.len() >= 10, "every phase has a fixture");
    for (name, world, _) in &scenarios {
        let path = dir.join(format!("{name}.json"));
        let fresh = rendered(world);
        if bless {
            std::fs::create_dir_all(&dir).expect("create the fixture directory");
            std::fs::write(&path, &fresh).expect("write a fixture");
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run CUTOVER_BLESS=1 cargo test -p cutover-core --test gitops_fixtures",
                path.display()
            )
        });
        assert!(
            committed == fresh,
            "{} is stale: plan() now writes a different status; run CUTOVER_BLESS=1 cargo test -p cutover-core --test gitops_fixtures",
            path.display()
        );
    }
    let names: Vec<_> = scenarios
        .iter()
        .map(|(n, ..)| format!("{n}.json"))
        .collect();
    for entry in std::fs::read_dir(&dir).expect("read the fixture directory") {
        let file = entry.expect("a directory entry").file_name();
        let file = file.to_string_lossy();
        if file.ends_with(".json") && !names.iter().any(|n| *n == file) {
            panic!("{file} in {} has no scenario; delete it", dir.display());
        }
    }
}

#[test]
fn every_phase_is_covered() {
    let phases: Vec<_> = scenarios()
        .iter()
        .filter_map(|(_, w, _)| w.status().phase)
        .collect();
    for phase in [
        RolloutPhase::Healthy,
        RolloutPhase::Progressing,
        RolloutPhase::Paused,
        RolloutPhase::Degraded,
    ] {
        assert!(phases.contains(&phase), "no fixture in phase {phase:?}");
    }
}

#[test]
fn kstatus_reads_each_phase_right() {
    for (name, world, expected) in scenarios() {
        let value = serde_json::to_value(&world.rollout).expect("a Rollout serialises");
        let result = kstatus(&value);
        assert_eq!(
            result.status,
            expected,
            "{name}: kstatus says {result:?}; status: {:#?}",
            world.status()
        );
    }
}

#[test]
fn ready_reconciling_and_stalled_follow_the_phase() {
    for (name, world, _) in scenarios() {
        let status = world.status();
        let Some(phase) = status.phase else {
            // Not reconciled yet: no conditions at all.
            assert!(status.conditions.is_empty(), "{name}");
            continue;
        };
        let holds = |t: ConditionType| {
            status
                .condition(t)
                .is_some_and(|c| c.status == ConditionStatus::True)
        };
        let ready = status
            .condition(ConditionType::Ready)
            .unwrap_or_else(|| panic!("{name}: no Ready condition"));
        assert_eq!(
            holds(ConditionType::Stalled),
            phase == RolloutPhase::Degraded,
            "{name}"
        );
        assert!(
            !(holds(ConditionType::Stalled) && holds(ConditionType::Reconciling)),
            "{name}: Stalled and Reconciling at once"
        );
        let done = !holds(ConditionType::Stalled) && !holds(ConditionType::Reconciling);
        assert_eq!(ready.status == ConditionStatus::True, done, "{name}");
        // Absent rather than False, as kstatus's convention asks.
        for t in [ConditionType::Stalled, ConditionType::Reconciling] {
            assert!(
                status
                    .condition(t)
                    .is_none_or(|c| c.status == ConditionStatus::True),
                "{name}: {t:?} present but not True"
            );
        }
    }
}

#[test]
fn retry_clears_stalled_and_promotion_makes_ready() {
    let mut w = deployed(app());
    w.set_image("my-app:v2");
    until(&mut w, 20, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    w.abort();
    until(&mut w, 20, |p| {
        p.decision == Decision::Aborted(AbortState::Done)
    });
    assert!(w.status().condition(ConditionType::Stalled).is_some());
    w.retry();
    w.reconcile();
    let status = w.status();
    assert!(status.condition(ConditionType::Stalled).is_none());
    assert!(status.condition(ConditionType::Reconciling).is_some());
    w.promote(true);
    w.settle(SECOND, 100);
    w.advance(Duration::from_secs(60));
    w.settle(SECOND, 100);
    let status = w.status();
    assert_eq!(status.phase, Some(RolloutPhase::Healthy));
    assert!(status.condition(ConditionType::Reconciling).is_none());
    let value = serde_json::to_value(&w.rollout).expect("a Rollout serialises");
    assert_eq!(kstatus(&value).status, KstatusStatus::Current);
}
