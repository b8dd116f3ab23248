//! Typed decisions: where a rollout stands and why. Each carries the reason that reaches the
//! `Progressing` condition, the status message and events — never a string or a bool that means
//! "no".

use std::fmt;

use super::action::MigrationCommand;
use super::observed::AnalysisKind;

/// Where the rollout stands after a planning pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The spec cannot be acted on; nothing was changed.
    Invalid(SpecProblem),
    /// The current revision is being brought up and checked before the switch.
    Hold(HoldReason),
    /// The active Service is switched to the current revision by this plan.
    Switch(SwitchReason),
    /// The active Service selects the current revision; waiting for the data plane to confirm.
    AwaitingSwitchVerification,
    /// The switch is confirmed; waiting for the post-promotion gate.
    PostPromotion(PostHold),
    /// The current revision became stable in this plan.
    Promoted(PromoteReason),
    /// The update was aborted; active serves the stable revision.
    Aborted(AbortState),
    /// The update cannot go on until a human acts; no traffic moves and the new revision
    /// gets no pods.
    Blocked(BlockReason),
    /// The current revision is stable and serves production traffic.
    Healthy,
}

/// Why the spec cannot be acted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecProblem {
    /// `activeService` is empty.
    MissingActiveService,
    /// `previewService` names the active Service.
    PreviewEqualsActive(String),
    /// A Service the strategy names does not exist.
    ServiceNotFound(String),
    /// `workloadRef` names a Deployment the adapter could not read a pod template from (it
    /// does not exist).
    WorkloadNotFound(String),
}

/// Why the switch waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldReason {
    /// `spec.paused` is set.
    RolloutPaused,
    /// The current revision's pods are not all available yet.
    PreviewNotAvailable {
        /// Available pods.
        available: i32,
        /// Pods wanted.
        desired: i32,
        /// What the adapter knows of why (a crash loop with its exit code and last log line).
        why: Option<String>,
    },
    /// The pre-promotion AnalysisRun is running.
    PrePromotionAnalysisRunning,
    /// An AnalysisRun was inconclusive: a human promotes or aborts.
    InconclusiveAnalysis(AnalysisKind),
    /// Waiting for `promote` (autoPromotionEnabled is false).
    WaitingForPromotion,
    /// Promotes by itself after the given seconds (autoPromotionSeconds).
    AutoPromotionIn {
        /// Seconds left.
        seconds: i64,
    },
    /// A migration of `spec.migrations` runs before the new revision may start.
    MigrationRunning {
        /// The migration.
        migration: String,
        /// What runs.
        command: MigrationCommand,
    },
    /// The migration files or their state could not be read: nothing is known about them, so
    /// the new revision waits.
    MigrationStateUnknown(String),
    /// Promoted: the preview is scaled from previewReplicaCount to full size before the switch.
    ScalingUpPreview {
        /// Available pods.
        available: i32,
        /// Pods wanted.
        desired: i32,
    },
}

/// Why an update is blocked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockReason {
    /// Expand or backfill failed: fix the migration, then `abort` (rolls back what was
    /// expanded) and `retry`, or set a new image.
    MigrationFailed {
        /// The migration, when known.
        migration: Option<String>,
        /// The error.
        message: String,
    },
    /// The revision predates a contracted migration (an undo too far back): the old version
    /// cannot run against the contracted schema.
    MigrationContracted {
        /// The contracted migration.
        migration: String,
        /// Revision number that introduced it.
        introduced_by: i64,
        /// Revision number asked for.
        revision: i64,
    },
}

/// Why the active Service switches now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchReason {
    /// First revision: nothing to check against.
    InitialDeploy,
    /// Every configured gate passed.
    GatesPassed,
    /// `promote --full` skipped pauses and analysis.
    PromoteFull,
    /// Undo to a revision that is stable or still warm: no pause, no analysis.
    FastRollback,
}

/// Why the switched revision is not stable yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostHold {
    /// The post-promotion AnalysisRun is running.
    AnalysisRunning,
    /// The post-promotion AnalysisRun was inconclusive: a human decides.
    Inconclusive,
    /// `spec.paused` is set.
    RolloutPaused,
}

/// Why the current revision became stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromoteReason {
    /// First revision of the rollout.
    InitialDeploy,
    /// Post-promotion analysis passed.
    PostPromotionAnalysisPassed,
    /// No post-promotion analysis is configured.
    SwitchVerified,
    /// `promote --full`.
    PromoteFull,
    /// Undo to a warm revision.
    FastRollback,
    /// A human promoted past an inconclusive post-promotion analysis.
    InconclusiveAnalysisPromoted,
}

/// Where an aborted update is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortState {
    /// Active is being switched back to the stable revision.
    SwitchingBack,
    /// Active serves stable; the aborted revision waits to be scaled down.
    Done,
    /// Nothing stable to return to (the first revision was aborted).
    NoStableRevision,
}

impl Decision {
    /// The reason written to the `Progressing` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "InvalidSpec",
            Self::Hold(HoldReason::RolloutPaused)
            | Self::PostPromotion(PostHold::RolloutPaused) => "RolloutPaused",
            Self::Hold(HoldReason::PreviewNotAvailable { .. }) => "ReplicaSetUpdated",
            Self::Hold(HoldReason::PrePromotionAnalysisRunning) => "PrePromotionAnalysisRunning",
            Self::Hold(HoldReason::InconclusiveAnalysis(_))
            | Self::PostPromotion(PostHold::Inconclusive) => "InconclusiveAnalysisRun",
            Self::Hold(HoldReason::WaitingForPromotion) => "BlueGreenPause",
            Self::Hold(HoldReason::AutoPromotionIn { .. }) => "AutoPromotionPending",
            Self::Hold(HoldReason::ScalingUpPreview { .. }) => "ScalingUpPreview",
            Self::Switch(_) => "SwitchingActiveService",
            Self::AwaitingSwitchVerification => "VerifyingSwitch",
            Self::PostPromotion(PostHold::AnalysisRunning) => "PostPromotionAnalysisRunning",
            Self::Promoted(_) | Self::Healthy => "NewReplicaSetAvailable",
            Self::Aborted(_) => "RolloutAborted",
            Self::Hold(HoldReason::MigrationRunning { .. }) => "MigrationRunning",
            Self::Hold(HoldReason::MigrationStateUnknown(_)) => "MigrationStateUnknown",
            Self::Blocked(BlockReason::MigrationFailed { .. }) => "MigrationFailed",
            Self::Blocked(BlockReason::MigrationContracted { .. }) => "MigrationContracted",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(p) => write!(f, "{p}"),
            Self::Hold(h) => write!(f, "{h}"),
            Self::Switch(SwitchReason::InitialDeploy) => {
                f.write_str("switching active service: initial deploy")
            }
            Self::Switch(SwitchReason::GatesPassed) => {
                f.write_str("switching active service: all gates passed")
            }
            Self::Switch(SwitchReason::PromoteFull) => {
                f.write_str("switching active service: full promotion requested")
            }
            Self::Switch(SwitchReason::FastRollback) => {
                f.write_str("switching active service: fast rollback to a warm revision")
            }
            Self::AwaitingSwitchVerification => {
                f.write_str("active service cutover pending: waiting for the data plane to serve only the new revision")
            }
            Self::PostPromotion(PostHold::AnalysisRunning) => {
                f.write_str("waiting for post-promotion analysis to complete")
            }
            Self::PostPromotion(PostHold::Inconclusive) => f.write_str(
                "post-promotion analysis was inconclusive: promote to accept or abort to switch back",
            ),
            Self::PostPromotion(PostHold::RolloutPaused) => f.write_str("manually paused"),
            Self::Promoted(r) => write!(f, "revision promoted to stable: {r}"),
            Self::Aborted(AbortState::SwitchingBack) => {
                f.write_str("update aborted: switching active back to the stable revision")
            }
            Self::Aborted(AbortState::Done) => {
                f.write_str("update aborted: active serves the stable revision")
            }
            Self::Aborted(AbortState::NoStableRevision) => {
                f.write_str("update aborted: there is no stable revision to return to")
            }
            Self::Healthy => f.write_str("rollout is healthy"),
            Self::Blocked(b) => write!(f, "{b}"),
        }
    }
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingActiveService => f.write_str(
                "spec.strategy.blueGreen.activeService is empty: name the Service that receives production traffic",
            ),
            Self::PreviewEqualsActive(name) => write!(
                f,
                "previewService and activeService are both {name:?}: the preview needs its own Service"
            ),
            Self::ServiceNotFound(name) => write!(f, "service {name:?} not found: create it"),
            Self::WorkloadNotFound(name) => write!(
                f,
                "spec.workloadRef: Deployment {name:?} not found in the Rollout's namespace: create it, or give the Rollout a spec.template instead"
            ),
        }
    }
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RolloutPaused => f.write_str("manually paused"),
            Self::PreviewNotAvailable {
                available,
                desired,
                why,
            } => {
                write!(
                    f,
                    "waiting for the new revision: {available} of {desired} pods available"
                )?;
                match why {
                    Some(why) => write!(f, ": {why}"),
                    None => Ok(()),
                }
            }
            Self::PrePromotionAnalysisRunning => {
                f.write_str("waiting for pre-promotion analysis to complete")
            }
            Self::InconclusiveAnalysis(kind) => write!(
                f,
                "{} analysis was inconclusive: promote to continue or abort",
                match kind {
                    AnalysisKind::PrePromotion => "pre-promotion",
                    AnalysisKind::PostPromotion => "post-promotion",
                }
            ),
            Self::WaitingForPromotion => {
                f.write_str("preview ready: waiting for promote (BlueGreenPause)")
            }
            Self::AutoPromotionIn { seconds } => {
                write!(f, "preview ready: promoting automatically in {seconds}s")
            }
            Self::MigrationRunning { migration, command } => write!(
                f,
                "migration {migration}: {command} runs before the new revision starts"
            ),
            Self::MigrationStateUnknown(why) => write!(
                f,
                "waiting to read the migration state before the new revision starts: {why}"
            ),
            Self::ScalingUpPreview { available, desired } => write!(
                f,
                "promoted: scaling the preview to full size before the switch, {available} of {desired} pods available"
            ),
        }
    }
}

impl fmt::Display for PromoteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InitialDeploy => "initial deploy",
            Self::PostPromotionAnalysisPassed => "post-promotion analysis passed",
            Self::SwitchVerified => "switch verified",
            Self::PromoteFull => "full promotion",
            Self::FastRollback => "fast rollback",
            Self::InconclusiveAnalysisPromoted => "promoted past inconclusive analysis",
        })
    }
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MigrationFailed { migration, message } => {
                f.write_str("migration ")?;
                if let Some(m) = migration {
                    write!(f, "{m} ")?;
                }
                write!(
                    f,
                    "failed: {message}; no traffic moved. Fix it, then abort (rolls back what was expanded) and retry"
                )
            }
            Self::MigrationContracted {
                migration,
                introduced_by,
                revision,
            } => write!(
                f,
                "revision {revision} refused: migration {migration} came with revision {introduced_by} and is contracted, so revision {revision} cannot run against the database any more; undo to revision {introduced_by} or later"
            ),
        }
    }
}
