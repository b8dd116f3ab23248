//! One test per migration transition of the planner (`spec.migrations`), driven through the
//! simulated world: expand + backfill before the preview, failure, abort, contract, undo.

mod common;

use std::time::Duration;

use common::*;
use cutover_core::api::{ConditionType, ContractMode, MigrationPhase, RolloutPhase};
use cutover_core::fixtures::RolloutBuilder;
use cutover_core::plan::{
    Action, BlockReason, Decision, HoldReason, MigrationCommand, MigrationRequest, Plan, plan,
};
use cutover_core::sim::World;

fn app(bake_seconds: u64, contract: ContractMode) -> RolloutBuilder {
    RolloutBuilder::new("my-app")
        .replicas(2)
        .scale_down_delay(30)
        .migrations(bake_seconds, contract)
}

fn migration_request(plan: &Plan) -> Option<&MigrationRequest> {
    plan.actions.iter().find_map(|a| match a {
        Action::RunMigration(req) => Some(req),
        _ => None,
    })
}

/// v1 deployed and stable, then a release v2 that ships migration `001_full_name`.
fn updated_with_migration(bake_seconds: u64, contract: ContractMode) -> World {
    let mut w = deployed(app(bake_seconds, contract));
    w.add_migration("001_full_name");
    w.set_image("my-app:v2");
    w
}

#[test]
fn a_pending_migration_runs_before_the_new_revision_gets_pods() {
    let mut w = updated_with_migration(60, ContractMode::Manual);
    let stable = stable_hash(&w);
    let p = w.reconcile();
    let new = current_hash(&w);
    assert_eq!(
        p.decision,
        Decision::Hold(HoldReason::MigrationRunning {
            migration: "001_full_name".into(),
            command: MigrationCommand::ExpandAndBackfill,
        })
    );
    let req = migration_request(&p).expect("expand + backfill requested");
    assert_eq!(req.command, MigrationCommand::ExpandAndBackfill);
    assert_eq!((req.hash.as_str(), req.revision), (new.as_str(), 2));
    assert_eq!(desired(&w, &new), 0, "no pods before the schema is ready");
    assert_eq!(w.active.selector.as_deref(), Some(stable.as_str()));

    // While it runs: no second request, still no pods.
    w.advance(SECOND);
    let p = w.reconcile();
    assert!(migration_request(&p).is_none(), "{:?}", p.actions);
    assert_eq!(desired(&w, &new), 0);
    let status = w.status().migration.expect("status.migration");
    assert_eq!(status.name, "001_full_name");
    assert!(status.message.unwrap_or_default().contains("running"));

    // Backfilled: the preview comes up.
    w.advance(Duration::from_secs(3));
    let p = w.reconcile();
    assert_eq!(
        w.migration_phase("001_full_name"),
        Some(MigrationPhase::Backfilled)
    );
    assert!(
        matches!(
            p.decision,
            Decision::Hold(HoldReason::PreviewNotAvailable { .. })
        ),
        "{:?}",
        p.decision
    );
    assert_eq!(desired(&w, &new), 2);
}

#[test]
fn the_initial_deploy_also_waits_for_its_migrations() {
    let mut w = World::new(app(60, ContractMode::Manual).build(), t0());
    w.add_migration("001_create");
    let p = w.reconcile();
    assert!(matches!(
        p.decision,
        Decision::Hold(HoldReason::MigrationRunning { .. })
    ));
    assert_eq!(desired(&w, &current_hash(&w)), 0);
    w.settle(SECOND, 100);
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
    assert_eq!(
        w.migration_phase("001_create"),
        Some(MigrationPhase::Backfilled)
    );
}

#[test]
fn a_failed_migration_blocks_the_update_before_any_traffic_moves() {
    let mut w = updated_with_migration(60, ContractMode::Manual);
    let stable = stable_hash(&w);
    w.reconcile();
    w.fail_migration();
    let p = w.reconcile();
    let new = current_hash(&w);
    assert_eq!(
        p.decision,
        Decision::Blocked(BlockReason::MigrationFailed {
            migration: Some("001_full_name".into()),
            message: "simulated failure".into(),
        })
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.reason.to_string() == "MigrationFailed")
    );
    let status = w.status();
    assert_eq!(status.phase, Some(RolloutPhase::Degraded));
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("MigrationFailed: ") && m.contains("simulated failure")),
        "{:?}",
        status.message
    );
    let progressing = status
        .condition(ConditionType::Progressing)
        .expect("condition");
    assert_eq!(progressing.reason, "MigrationFailed");
    // It stays blocked: no retry by itself, no pods, active on stable, no second warning.
    for _ in 0..5 {
        w.advance(SECOND);
        let p = w.reconcile();
        assert!(migration_request(&p).is_none());
        assert!(p.events.is_empty(), "{:?}", p.events);
    }
    assert_eq!(desired(&w, &new), 0);
    assert_eq!(w.active.selector.as_deref(), Some(stable.as_str()));
}

#[test]
fn abort_rolls_back_what_the_aborted_revision_expanded_and_retry_runs_it_again() {
    let mut w = updated_with_migration(60, ContractMode::Manual);
    w.reconcile();
    w.fail_migration();
    w.reconcile();
    assert_eq!(
        w.migration_phase("001_full_name"),
        Some(MigrationPhase::Expanded)
    );
    w.abort();
    let p = w.reconcile();
    let req = migration_request(&p).expect("rollback requested");
    assert_eq!(req.command, MigrationCommand::Rollback);
    assert_eq!(req.migration, "001_full_name");
    w.settle(SECOND, 20);
    assert_eq!(w.status().phase, Some(RolloutPhase::Degraded));
    assert_eq!(
        w.migration_phase("001_full_name"),
        Some(MigrationPhase::RolledBack)
    );

    w.retry();
    let p = w.reconcile();
    assert_eq!(
        migration_request(&p).map(|r| r.command),
        Some(MigrationCommand::ExpandAndBackfill),
        "retry runs expand + backfill again"
    );
    w.settle(SECOND, 200);
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
    assert_eq!(
        w.migration_phase("001_full_name"),
        Some(MigrationPhase::Backfilled)
    );
}

#[test]
fn abort_with_a_backfilled_migration_and_a_running_preview_rolls_it_back() {
    let mut w = deployed(app(60, ContractMode::Manual).manual_promotion());
    w.add_migration("001_full_name");
    w.set_image("my-app:v2");
    until(&mut w, 30, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    w.abort();
    until(&mut w, 10, |p| {
        migration_request(p).is_some_and(|r| r.command == MigrationCommand::Rollback)
    });
    let stable = stable_hash(&w);
    w.settle(SECOND, 10);
    assert_eq!(
        w.migration_phase("001_full_name"),
        Some(MigrationPhase::RolledBack)
    );
    assert_eq!(w.active.selector.as_deref(), Some(stable.as_str()));
    assert_eq!(w.status().phase, Some(RolloutPhase::Degraded));
}

/// v2 with its migration promoted; returns the time the switch was verified.
fn promoted(w: &mut World) -> jiff::Timestamp {
    until(w, 40, |p| matches!(p.decision, Decision::Promoted(_)));
    w.status()
        .blue_green
        .switch
        .and_then(|s| s.verified_at)
        .expect("verified switch")
        .0
}

#[test]
fn contract_becomes_due_after_promotion_old_revision_scale_down_and_bake() {
    let mut w = updated_with_migration(600, ContractMode::Manual);
    let verified = promoted(&mut w);
    let due_at = verified + jiff::SignedDuration::from_secs(600);
    let status = w.status().migration.expect("status.migration");
    assert_eq!(status.phase, MigrationPhase::Backfilled);
    assert_eq!(status.contract_due_at.map(|t| t.0), Some(due_at));
    assert_eq!(
        status.message.as_deref(),
        Some("contract waits: old revision 1 running")
    );
    // The old revision goes after scaleDownDelaySeconds; the bake still runs.
    w.advance(Duration::from_secs(31));
    w.reconcile();
    w.advance(SECOND);
    let p = w.reconcile();
    assert!(
        w.status()
            .condition(ConditionType::MigrationContractDue)
            .is_none()
    );
    assert!(p.requeue_after.is_some(), "wakes up when the bake ends");
    let message = w
        .status()
        .migration
        .and_then(|m| m.message)
        .unwrap_or_default();
    assert!(message.starts_with("contract due at"), "{message}");

    w.now = due_at;
    let p = w.reconcile();
    let due = w
        .status()
        .condition(ConditionType::MigrationContractDue)
        .cloned()
        .expect("contract due");
    assert!(
        due.message
            .unwrap_or_default()
            .contains("cutover migrate contract --rollout my-app")
    );
    assert!(
        migration_request(&p).is_none(),
        "manual: an operator runs it"
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.reason.to_string() == "MigrationContractDue")
    );
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
}

#[test]
fn auto_contract_runs_once_due_and_never_while_the_old_revision_runs() {
    let mut w = updated_with_migration(0, ContractMode::Auto);
    let verified = promoted(&mut w);
    // Bake 0, but the old revision still has pods: no contract.
    let p = w.reconcile();
    assert!(migration_request(&p).is_none());
    w.advance(Duration::from_secs(31));
    let p = until(&mut w, 5, |p| migration_request(p).is_some());
    let req = migration_request(&p).expect("contract");
    assert_eq!(req.command, MigrationCommand::Contract);
    assert_eq!(req.fully_promoted_at, Some(verified));
    assert!(
        w.revisions
            .values()
            .all(|r| r.revision == 2 || r.desired == 0)
    );
    w.settle(SECOND, 20);
    assert_eq!(
        w.migration_phase("001_full_name"),
        Some(MigrationPhase::Contracted)
    );
    assert!(
        w.status()
            .condition(ConditionType::MigrationContractDue)
            .is_none()
    );
}

#[test]
fn undo_behind_a_contracted_migration_is_refused() {
    let mut w = updated_with_migration(0, ContractMode::Auto);
    promoted(&mut w);
    w.advance(Duration::from_secs(31));
    w.settle(SECOND, 40);
    assert_eq!(
        w.migration_phase("001_full_name"),
        Some(MigrationPhase::Contracted)
    );
    let stable = stable_hash(&w);
    assert!(w.undo(Some(1)));
    let p = w.reconcile();
    assert_eq!(
        p.decision,
        Decision::Blocked(BlockReason::MigrationContracted {
            migration: "001_full_name".into(),
            introduced_by: 2,
            revision: 1,
        })
    );
    assert!(
        p.decision
            .to_string()
            .contains("undo to revision 2 or later")
    );
    assert_eq!(w.status().phase, Some(RolloutPhase::Degraded));
    assert_eq!(desired(&w, &current_hash(&w)), 0, "revision 1 gets no pods");
    assert_eq!(w.active.selector.as_deref(), Some(stable.as_str()));
    // Back to revision 2: healthy again.
    assert!(w.undo(Some(2)));
    let p = w.reconcile();
    assert_eq!(p.decision, Decision::Healthy);
}

#[test]
fn unreadable_migration_state_holds_the_new_revision() {
    let mut w = updated_with_migration(60, ContractMode::Manual);
    let mut observed = w.observe();
    if let Some(m) = observed.migrations.as_mut() {
        m.unreadable = Some("environment variable DATABASE_URL is not set".into());
    }
    let p = plan(&observed, w.now);
    assert!(matches!(
        p.decision,
        Decision::Hold(HoldReason::MigrationStateUnknown(_))
    ));
    assert!(migration_request(&p).is_none());
    assert!(
        p.status
            .migration
            .and_then(|m| m.message)
            .is_some_and(|m| m.contains("DATABASE_URL"))
    );
    // Read again: the update goes on.
    let p = w.reconcile();
    assert!(migration_request(&p).is_some());
}

#[test]
fn a_rollout_without_migrations_writes_no_migration_status() {
    let w = deployed(RolloutBuilder::new("plain"));
    assert!(w.status().migration.is_none());
}

#[test]
fn a_migration_with_nothing_to_contract_is_closed_before_the_next_expands() {
    let mut w = World::new(app(600, ContractMode::Manual).build(), t0());
    w.add_migration_without_contract("000_create_users");
    w.add_migration("001_full_name");
    w.settle(SECOND, 100);
    // 000 was expanded, closed by an empty contract, then 001 ran: both before revision 1.
    assert_eq!(
        w.migration_phase("000_create_users"),
        Some(MigrationPhase::Contracted)
    );
    assert_eq!(
        w.migration_phase("001_full_name"),
        Some(MigrationPhase::Backfilled)
    );
    assert_eq!(w.status().phase, Some(RolloutPhase::Healthy));
    let status = w.status().migration.expect("status.migration");
    assert_eq!(status.name, "001_full_name");
    assert!(status.contract_due_at.is_some(), "{status:?}");
}
