//! The migrations of `spec.migrations` in a pass: expand and backfill run before the new
//! revision gets pods, a failure blocks the update before any traffic moves, abort rolls back
//! what the aborted revision expanded, contract becomes due once the update is fully promoted,
//! the old revision is gone and the bake period has passed, and a revision older than a
//! contracted migration is refused.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    BlockReason, Decision, Event, EventReason, HoldReason, MigrationCommand, MigrationRequest,
    ObservedMigration, ObservedMigrations, Planner,
};
use crate::api::{
    ConditionStatus, ConditionType, ContractMode, MigrationPhase, MigrationStatus, RolloutCondition,
};

/// How often to look again while a migration runs, in case the executor's wake-up is missed.
const RUNNING_POLL: Duration = Duration::from_secs(1);

/// Called before the current revision (not yet switched to) gets pods. Returns the decision
/// that holds it back, or None when its migrations are all backfilled.
pub(super) fn before_preview(p: &mut Planner<'_>, current: &str) -> Option<Decision> {
    let set = p.observed.migrations.as_ref()?;
    let revision = p.current().created_revision;
    if let Some(m) = contracted_after(set, revision) {
        let reason = BlockReason::MigrationContracted {
            migration: m.name.clone(),
            introduced_by: m.revision.unwrap_or(0),
            revision,
        };
        warn_on_transition(
            p,
            "MigrationContracted",
            EventReason::MigrationContracted,
            &reason,
        );
        return Some(Decision::Blocked(reason));
    }
    if let Some(why) = &set.unreadable {
        p.requeue_in(RUNNING_POLL);
        return Some(Decision::Hold(HoldReason::MigrationStateUnknown(
            why.clone(),
        )));
    }
    if let Some(run) = &set.running {
        p.requeue_in(RUNNING_POLL);
        return Some(Decision::Hold(HoldReason::MigrationRunning {
            migration: run.migration.clone().unwrap_or_default(),
            command: run.command,
        }));
    }
    let next = set.next_pending()?;
    if let Some(failure) = fresh_failure(p, set, current)
        && failure.command != MigrationCommand::Rollback
    {
        let reason = BlockReason::MigrationFailed {
            migration: failure.migration.clone(),
            message: failure.message.clone(),
        };
        warn_on_transition(p, "MigrationFailed", EventReason::MigrationFailed, &reason);
        return Some(Decision::Blocked(reason));
    }
    if p.spec().is_paused() {
        return Some(Decision::Hold(HoldReason::RolloutPaused));
    }
    // One migration is open at a time: an earlier one with nothing to contract is closed
    // first (contract only records its phase).
    let (command, migration) = match closable(set) {
        Some(open) => (MigrationCommand::Contract, open.name.clone()),
        None => (MigrationCommand::ExpandAndBackfill, next.name.clone()),
    };
    request(p, command, &migration, None);
    Some(Decision::Hold(HoldReason::MigrationRunning {
        migration,
        command,
    }))
}

/// A backfilled migration whose contract phase is empty: contracting it drops nothing.
fn closable(set: &ObservedMigrations) -> Option<&ObservedMigration> {
    set.migrations
        .iter()
        .find(|m| m.phase == MigrationPhase::Backfilled && !m.has_contract)
}

/// Aborted: what the aborted revision expanded is rolled back (allowed: not contracted). A
/// run in progress finishes first; a failed rollback is reported, not retried.
pub(super) fn on_abort(p: &mut Planner<'_>, current: &str) {
    let Some(set) = p.observed.migrations.as_ref() else {
        return;
    };
    if set.running.is_some() {
        p.requeue_in(RUNNING_POLL);
        return;
    }
    let revision = p.current().created_revision;
    let Some(open) = set
        .migrations
        .iter()
        .find(|m| m.phase.is_open() && m.revision == Some(revision))
    else {
        return;
    };
    if fresh_failure(p, set, current).is_some_and(|f| f.command == MigrationCommand::Rollback) {
        return;
    }
    let migration = open.name.clone();
    request(p, MigrationCommand::Rollback, &migration, None);
}

/// The current revision is stable and healthy: with `contract: auto`, a due contract runs.
pub(super) fn when_stable(p: &mut Planner<'_>) {
    if p.observed
        .migrations
        .as_ref()
        .is_some_and(|set| set.running.is_some())
    {
        // Contract (or an operator's command) runs: look again when it should be over.
        p.requeue_in(RUNNING_POLL);
    }
    if let Some(set) = p.observed.migrations.as_ref()
        && set.running.is_none()
        && let Some(open) = closable(set)
        && !set.failure.as_ref().is_some_and(|f| {
            f.command == MigrationCommand::Contract && f.migration.as_ref() == Some(&open.name)
        })
    {
        let migration = open.name.clone();
        request(p, MigrationCommand::Contract, &migration, None);
        return;
    }
    let Some(state) = contract_state(p) else {
        return;
    };
    if !state.due() {
        if state.old_revisions.is_empty() {
            p.requeue_at(state.due_at);
        }
        return;
    }
    let auto = p
        .spec()
        .migrations
        .as_ref()
        .is_some_and(|m| m.contract_mode() == ContractMode::Auto);
    let Some(set) = p.observed.migrations.as_ref() else {
        return;
    };
    let failed = set.failure.as_ref().is_some_and(|f| {
        f.command == MigrationCommand::Contract && f.migration.as_deref() == Some(&state.migration)
    });
    if auto && set.running.is_none() && !failed {
        request(
            p,
            MigrationCommand::Contract,
            &state.migration,
            Some(state.verified_at),
        );
    }
}

/// Writes `status.migration` and the `MigrationContractDue` condition.
pub(super) fn write_status(p: &mut Planner<'_>) {
    let Some(set) = p.observed.migrations.as_ref() else {
        p.status.migration = None;
        p.status
            .conditions
            .retain(|c| c.type_ != ConditionType::MigrationContractDue);
        return;
    };
    let contract = contract_state(p);
    let current = p.current_hash.clone();
    let failure = fresh_failure(p, set, &current);
    let shown = set
        .running
        .as_ref()
        .and_then(|r| r.migration.as_deref())
        .or(failure.and_then(|f| f.migration.as_deref()))
        .or(contract.as_ref().map(|c| c.migration.as_str()))
        .and_then(|name| set.migrations.iter().find(|m| m.name == name))
        .or_else(|| set.migrations.iter().find(|m| m.phase.is_open()))
        .or_else(|| set.next_pending())
        .or_else(|| set.migrations.last());
    let message = if let Some(why) = &set.unreadable {
        Some(format!("cannot read the migration state: {why}"))
    } else if let Some(run) = &set.running {
        Some(format!("{} running since {}", run.command, run.since))
    } else if let Some(f) = failure {
        Some(format!("{} failed: {}", f.command, f.message))
    } else if let Some(c) = &contract {
        Some(c.message(p))
    } else {
        let stable = p.stable_hash() == Some(current.as_str());
        shown
            .filter(|m| m.phase.needs_work() && !stable)
            .map(|_| "runs before the new revision starts".to_string())
    };
    p.status.migration = match shown {
        Some(m) => Some(MigrationStatus {
            name: m.name.clone(),
            phase: m.phase,
            contract_due_at: contract
                .as_ref()
                .filter(|c| c.migration == m.name)
                .map(|c| Time(c.due_at)),
            message,
        }),
        None => message.map(|message| MigrationStatus {
            name: p
                .before
                .migration
                .as_ref()
                .map_or_else(String::new, |m| m.name.clone()),
            phase: MigrationPhase::Pending,
            contract_due_at: None,
            message: Some(message),
        }),
    };
    contract_condition(p, contract.as_ref());
}

fn contract_condition(p: &mut Planner<'_>, contract: Option<&ContractState>) {
    let due = contract.filter(|c| c.due());
    let prior = p
        .before
        .condition(ConditionType::MigrationContractDue)
        .cloned();
    p.status
        .conditions
        .retain(|c| c.type_ != ConditionType::MigrationContractDue);
    let Some(due) = due else {
        return;
    };
    let message = due.message(p);
    if prior.is_none() {
        p.events.push(Event::normal(
            EventReason::MigrationContractDue,
            format!("Migration {}: {message}", due.migration),
        ));
    }
    p.status.conditions.push(RolloutCondition {
        type_: ConditionType::MigrationContractDue,
        status: ConditionStatus::True,
        reason: "MigrationContractDue".to_string(),
        message: Some(message),
        last_transition_time: Some(
            prior
                .and_then(|c| c.last_transition_time)
                .unwrap_or(Time(p.now)),
        ),
        last_update_time: None,
    });
}

/// A backfilled migration that came with the stable revision (or an earlier one), once the
/// switch to it is verified.
struct ContractState {
    migration: String,
    verified_at: Timestamp,
    due_at: Timestamp,
    /// Revision numbers of other revisions that still want or have pods.
    old_revisions: Vec<i64>,
    now: Timestamp,
}

impl ContractState {
    fn due(&self) -> bool {
        self.old_revisions.is_empty() && self.now >= self.due_at
    }

    fn message(&self, p: &Planner<'_>) -> String {
        if let Some(old) = self.old_revisions.first() {
            return format!("contract waits: old revision {old} running");
        }
        if !self.due() {
            return format!("contract due at {} (bake period)", self.due_at);
        }
        let auto = p
            .spec()
            .migrations
            .as_ref()
            .is_some_and(|m| m.contract_mode() == ContractMode::Auto);
        if auto {
            "contract due: cutover runs it (contract: auto)".to_string()
        } else {
            format!(
                "contract due: run `cutover migrate contract --rollout {}`",
                p.rollout_name()
            )
        }
    }
}

fn contract_state(p: &Planner<'_>) -> Option<ContractState> {
    let set = p.observed.migrations.as_ref()?;
    let bake = p.spec().migrations.as_ref()?.bake();
    let current = p.current_hash.as_str();
    if p.stable_hash() != Some(current) {
        return None;
    }
    let stable_revision = p.current().created_revision;
    let open = set.migrations.iter().find(|m| {
        m.phase == MigrationPhase::Backfilled
            && m.has_contract
            && m.revision.is_some_and(|r| r <= stable_revision)
    })?;
    let verified_at = p
        .status
        .blue_green
        .switch
        .as_ref()
        .filter(|s| s.to == current)
        .and_then(|s| s.verified_at.as_ref())?
        .0;
    let mut old_revisions: Vec<i64> = p
        .revisions
        .values()
        .filter(|r| r.hash != current && (r.desired > 0 || r.replicas > 0))
        .map(|r| r.revision)
        .collect();
    old_revisions.sort_unstable();
    Some(ContractState {
        migration: open.name.clone(),
        verified_at,
        // Exactly as the library's contract gate counts it, so a due contract is never refused.
        due_at: jiff::SignedDuration::try_from(bake)
            .ok()
            .and_then(|b| verified_at.checked_add(b).ok())
            .unwrap_or(Timestamp::MAX),
        old_revisions,
        now: p.now,
    })
}

/// A contracted migration that came with a revision newer than `revision`.
fn contracted_after(set: &ObservedMigrations, revision: i64) -> Option<&ObservedMigration> {
    set.migrations.iter().find(|m| {
        m.phase == MigrationPhase::Contracted
            && m.has_contract
            && m.revision.is_some_and(|r| r > revision)
    })
}

/// The last failure, when it belongs to the current revision's attempt (not to one aborted
/// since: `retry` runs the command again).
fn fresh_failure<'a>(
    p: &Planner<'_>,
    set: &'a ObservedMigrations,
    current: &str,
) -> Option<&'a super::MigrationFailure> {
    let aborted_at = p.status.aborted_at.as_ref().map(|t| t.0);
    set.failure
        .as_ref()
        .filter(|f| f.hash == current && (p.status.abort || aborted_at.is_none_or(|at| f.at > at)))
}

fn request(
    p: &mut Planner<'_>,
    command: MigrationCommand,
    migration: &str,
    fully_promoted_at: Option<Timestamp>,
) {
    let bake = p
        .spec()
        .migrations
        .as_ref()
        .map_or(crate::api::DEFAULT_MIGRATION_BAKE, |m| m.bake());
    let revision = p.current().created_revision;
    p.actions
        .push(super::Action::RunMigration(MigrationRequest {
            command,
            migration: migration.to_string(),
            hash: p.current_hash.clone(),
            revision,
            fully_promoted_at,
            bake,
        }));
    p.events.push(Event::normal(
        EventReason::MigrationStarted,
        format!("Migration {migration}: {command} started for revision {revision}"),
    ));
    p.requeue_in(RUNNING_POLL);
}

fn warn_on_transition(
    p: &mut Planner<'_>,
    progress_reason: &str,
    event: EventReason,
    reason: &BlockReason,
) {
    let already = p
        .before
        .condition(ConditionType::Progressing)
        .is_some_and(|c| c.reason == progress_reason);
    if !already {
        p.events.push(Event::warning(event, reason.to_string()));
    }
}
