//! Migration state and the rules between phases: which command may run when, the contract gate,
//! and the checklist `status` shows. Pure: the backends read and write records, this decides.

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::plan::PhaseKind;

/// Where a migration stands (the `phase` column of `cutover_migrations`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not started.
    Pending,
    /// Expand applied: both versions work.
    Expanded,
    /// Data copied: the new version can take all traffic.
    Backfilled,
    /// Old shape dropped: no way back.
    Contracted,
    /// Expand undone.
    RolledBack,
}

impl Phase {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Expanded => "expanded",
            Self::Backfilled => "backfilled",
            Self::Contracted => "contracted",
            Self::RolledBack => "rolled_back",
        }
    }

    /// Reads a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Expanded,
            Self::Backfilled,
            Self::Contracted,
            Self::RolledBack,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A forced step: who overrode a gate, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forced {
    /// The operator (`$USER`, else the database user).
    pub by: String,
    /// The `--reason` given.
    pub reason: String,
    /// The gate that was overridden.
    pub gate: String,
}

/// Backfill progress committed with each batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Index of the backfill step in progress.
    pub step: usize,
    /// The last key done, as text.
    pub last: Option<String>,
    /// The highest key when the step started: later rows were written with the triggers on.
    pub max: Option<String>,
}

/// One row of `cutover_migrations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Migration name.
    pub name: String,
    /// Checksum of the file when expand ran.
    pub checksum: String,
    /// Phase.
    pub phase: Phase,
    /// When expand finished.
    pub expanded_at: Option<Timestamp>,
    /// When the backfill finished.
    pub backfilled_at: Option<Timestamp>,
    /// When contract finished.
    pub contracted_at: Option<Timestamp>,
    /// When rollback finished.
    pub rolled_back_at: Option<Timestamp>,
    /// Rows the backfill has written.
    pub rows_backfilled: i64,
    /// Where an interrupted backfill resumes.
    pub checkpoint: Option<Checkpoint>,
    /// A gate overridden with `--force`.
    pub forced: Option<Forced>,
    /// The phase in progress, or one that was interrupted (a crash, or a failed expand whose
    /// undo failed too).
    #[serde(default)]
    pub running: Option<String>,
}

/// Facts about the Rollout that declared a migration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutFacts {
    /// An old revision still has processes or replicas: the old version may still write.
    pub old_revision_running: bool,
    /// When the new revision became the only one serving.
    #[serde(default)]
    pub fully_promoted_at: Option<Timestamp>,
}

/// Why a command was refused. Each message says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The migration is not in a phase this command applies to.
    #[error("{migration} is {phase}; {command} needs it {needs}")]
    WrongPhase {
        /// Migration.
        migration: String,
        /// Its phase.
        phase: Phase,
        /// The command.
        command: PhaseKind,
        /// What it needs.
        needs: &'static str,
    },
    /// An earlier migration is still open.
    #[error(
        "{earlier} is {phase}: finish it (contract or rollback) before expanding {migration}; one migration is open at a time"
    )]
    EarlierOpen {
        /// The target.
        migration: String,
        /// The open one.
        earlier: String,
        /// Its phase.
        phase: Phase,
    },
    /// The file changed after expand ran.
    #[error(
        "{migration} changed since it was expanded (checksum {was} → {now}); restore the file, or roll back and expand again"
    )]
    Changed {
        /// Migration.
        migration: String,
        /// Stored checksum (prefix).
        was: String,
        /// Current checksum (prefix).
        now: String,
    },
    /// Contract while the old version may still use the old shape.
    #[error(
        "contract refused: rollout {rollout} still runs an old revision, which reads and writes the old columns; wait until it is scaled down (or --force --reason TEXT)"
    )]
    OldRevisionRunning {
        /// Rollout name.
        rollout: String,
    },
    /// Contract without knowing whether the old version is gone.
    #[error(
        "contract refused: no rollout state, so cutover cannot tell whether the old version is gone; pass --rollout NAME or --rollout-state FILE (or --force --reason TEXT)"
    )]
    NoRolloutState,
    /// Contract before the bake period.
    #[error(
        "contract refused: the bake period ({bake}) has not passed since {since}; due at {due} (or --bake, or --force --reason TEXT)"
    )]
    BakeNotElapsed {
        /// Configured bake.
        bake: String,
        /// Start of the bake.
        since: Timestamp,
        /// When contract becomes due.
        due: Timestamp,
    },
    /// Rollback after contract.
    #[error(
        "rollback refused: {migration} was contracted at {at}; the old shape is gone, so the old version cannot run against this database any more (§5.3 step 5: no rollback)"
    )]
    RollbackAfterContract {
        /// Migration.
        migration: String,
        /// When.
        at: String,
    },
}

impl Refusal {
    /// Whether `--force --reason` may override it: only the waiting gates, never phase order.
    pub fn forcible(&self) -> bool {
        matches!(
            self,
            Self::OldRevisionRunning { .. } | Self::NoRolloutState | Self::BakeNotElapsed { .. }
        )
    }

    /// The gate's short name, recorded with a forced step.
    pub fn gate(&self) -> &'static str {
        match self {
            Self::OldRevisionRunning { .. } => "old-revision-running",
            Self::NoRolloutState => "no-rollout-state",
            Self::BakeNotElapsed { .. } => "bake-period",
            _ => "phase",
        }
    }
}

/// What the command would do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Run the phase.
    Run,
    /// Already done: nothing to do.
    Done,
}

/// Whether `command` may run for `m` given the records of every migration (`None` = pending).
pub fn check(
    command: PhaseKind,
    name: &str,
    checksum: &str,
    record: Option<&Record>,
    earlier: &[(String, Option<Phase>)],
) -> Result<Verdict, Refusal> {
    let phase = record.map_or(Phase::Pending, |r| r.phase);
    let wrong = |needs| Refusal::WrongPhase {
        migration: name.to_owned(),
        phase,
        command,
        needs,
    };
    if let Some(r) = record
        && matches!(phase, Phase::Expanded | Phase::Backfilled)
        && r.checksum != checksum
        && command != PhaseKind::Rollback
    {
        return Err(Refusal::Changed {
            migration: name.to_owned(),
            was: r.checksum.chars().take(12).collect(),
            now: checksum.chars().take(12).collect(),
        });
    }
    match (command, phase) {
        (PhaseKind::Expand, Phase::Pending | Phase::RolledBack) => {
            if let Some((open, p)) = earlier
                .iter()
                .find(|(_, p)| !matches!(p, Some(Phase::Contracted | Phase::RolledBack)))
            {
                return Err(Refusal::EarlierOpen {
                    migration: name.to_owned(),
                    earlier: open.clone(),
                    phase: p.unwrap_or(Phase::Pending),
                });
            }
            Ok(Verdict::Run)
        }
        (PhaseKind::Expand, _) => Ok(Verdict::Done),
        (PhaseKind::Backfill, Phase::Expanded) => Ok(Verdict::Run),
        (PhaseKind::Backfill, Phase::Backfilled | Phase::Contracted) => Ok(Verdict::Done),
        (PhaseKind::Backfill, _) => Err(wrong("expanded (run expand first)")),
        (PhaseKind::Contract, Phase::Backfilled) => Ok(Verdict::Run),
        (PhaseKind::Contract, Phase::Contracted) => Ok(Verdict::Done),
        (PhaseKind::Contract, _) => Err(wrong("backfilled (run expand and backfill first)")),
        (PhaseKind::Rollback, Phase::Expanded | Phase::Backfilled) => Ok(Verdict::Run),
        (PhaseKind::Rollback, Phase::Contracted) => Err(Refusal::RollbackAfterContract {
            migration: name.to_owned(),
            at: record
                .and_then(|r| r.contracted_at)
                .map_or_else(|| "an unknown time".to_owned(), |t| t.to_string()),
        }),
        (PhaseKind::Rollback, Phase::Pending | Phase::RolledBack) => Ok(Verdict::Done),
    }
}

/// The contract gate: the old revision is gone, and `bake` has passed since the new version
/// took all traffic (or, without that time, since the backfill finished).
pub fn contract_gate(
    record: &Record,
    rollout: Option<(&str, &RolloutFacts)>,
    bake: SignedDuration,
    now: Timestamp,
) -> Result<(), Refusal> {
    let Some((name, facts)) = rollout else {
        return Err(Refusal::NoRolloutState);
    };
    if facts.old_revision_running {
        return Err(Refusal::OldRevisionRunning {
            rollout: name.to_owned(),
        });
    }
    let since = facts
        .fully_promoted_at
        .or(record.backfilled_at)
        .unwrap_or(now);
    let due = since.checked_add(bake).unwrap_or(since);
    if now < due {
        return Err(Refusal::BakeNotElapsed {
            bake: format!("{bake:#}"),
            since,
            due,
        });
    }
    Ok(())
}

/// One line of the seed's §5.3 checklist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChecklistRow {
    /// 1 to 5.
    pub step: u8,
    /// What happens.
    pub work: &'static str,
    /// What the old version (blue) does.
    pub blue: &'static str,
    /// What the new version (green) does.
    pub green: &'static str,
    /// Whether a rollback is possible after this step.
    pub rollback: &'static str,
    /// Where this migration stands on this step.
    pub state: String,
}

/// The checklist for one migration.
pub fn checklist(
    record: Option<&Record>,
    rollout: Option<&RolloutFacts>,
    contract_due: Option<Timestamp>,
) -> Vec<ChecklistRow> {
    let phase = record.map_or(Phase::Pending, |r| r.phase);
    let at = |t: Option<Timestamp>| t.map_or_else(String::new, |t| format!(" at {t:.0}"));
    let expanded = matches!(
        phase,
        Phase::Expanded | Phase::Backfilled | Phase::Contracted
    );
    let backfilled = matches!(phase, Phase::Backfilled | Phase::Contracted);
    let step1 = if expanded {
        format!("done{}", at(record.and_then(|r| r.expanded_at)))
    } else if phase == Phase::RolledBack {
        format!("rolled back{}", at(record.and_then(|r| r.rolled_back_at)))
    } else {
        "pending: cutover migrate expand".into()
    };
    let step2 = if backfilled {
        format!(
            "done, {} rows{}",
            record.map_or(0, |r| r.rows_backfilled),
            at(record.and_then(|r| r.backfilled_at))
        )
    } else if phase == Phase::Expanded && record.is_some_and(|r| r.checkpoint.is_some()) {
        format!(
            "interrupted after {} rows: cutover migrate backfill resumes",
            record.map_or(0, |r| r.rows_backfilled)
        )
    } else if phase == Phase::Expanded {
        "pending: cutover migrate backfill".into()
    } else {
        "pending".into()
    };
    let (step3, step4) = match rollout {
        Some(f) => (
            f.fully_promoted_at
                .map_or_else(|| "not yet".to_owned(), |t| format!("done at {t:.0}")),
            if f.old_revision_running {
                "old revision still running".to_owned()
            } else {
                "done: no old revision running".to_owned()
            },
        ),
        None => ("unknown (no rollout state)".into(), "unknown".into()),
    };
    let step5 = match (phase, contract_due) {
        (Phase::Contracted, _) => {
            let forced = record
                .and_then(|r| r.forced.as_ref())
                .map(|f| format!(" (forced by {}: {})", f.by, f.reason))
                .unwrap_or_default();
            format!("done{}{forced}", at(record.and_then(|r| r.contracted_at)))
        }
        (Phase::Backfilled, Some(due)) => format!("due at {due:.0}"),
        (Phase::Backfilled, None) => "waiting for the old revision to go".into(),
        _ => "pending".into(),
    };
    let row = |step, work, blue, green, rollback, state| ChecklistRow {
        step,
        work,
        blue,
        green,
        rollback,
        state,
    };
    vec![
        row(
            1,
            "add new column",
            "ignores it",
            "reads/writes",
            "yes",
            step1,
        ),
        row(2, "copy data", "ignores it", "reads/writes", "yes", step2),
        row(3, "switch to v2", "-", "active", "yes", step3),
        row(4, "remove v1", "removed", "active", "risky", step4),
        row(5, "drop old column", "-", "active", "no", step5),
    ]
}
