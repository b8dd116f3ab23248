//! What `plan()` returns: actions for an adapter to execute, the status to write, events to
//! publish, and when to look again.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;

use super::decision::Decision;
use super::observed::{AnalysisKind, RevisionRole};
use crate::api::{RolloutAnalysis, RolloutStatus};

/// The result of one planning pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Changes to make, in the order given (creations before scaling before switches).
    pub actions: Vec<Action>,
    /// The whole status to write.
    pub status: RolloutStatus,
    /// Events for transitions made by this plan.
    pub events: Vec<Event>,
    /// Plan again after this long even if nothing changes (timers: scale-down deadlines,
    /// timed promotion, progress deadline).
    pub requeue_after: Option<Duration>,
    /// Where the rollout stands and why.
    pub decision: Decision,
}

/// One change to the world.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create the revision of the current pod template, with zero pods.
    CreateRevision {
        /// Its pod-template hash.
        hash: String,
        /// Its revision number.
        revision: i64,
    },
    /// Set the number of pods a revision runs.
    ScaleRevision {
        /// The revision.
        hash: String,
        /// Pods wanted.
        replicas: i32,
        /// Why.
        reason: ScaleReason,
    },
    /// Set or clear when a revision is scaled to zero.
    SetScaleDownDeadline {
        /// The revision.
        hash: String,
        /// The deadline, or None to clear it.
        deadline: Option<Timestamp>,
    },
    /// Point a Service's selector at a revision.
    SwitchService {
        /// Which Service.
        role: ServiceRole,
        /// Its name.
        service: String,
        /// The hash it selects now, if any.
        from: Option<String>,
        /// The hash it is to select.
        to: String,
    },
    /// Start an AnalysisRun.
    StartAnalysis(AnalysisRunRequest),
    /// Ask a running AnalysisRun to stop.
    TerminateAnalysis {
        /// Run name.
        name: String,
    },
    /// Delete a finished AnalysisRun beyond the history limits.
    DeleteAnalysisRun {
        /// Run name.
        name: String,
    },
    /// Delete a scaled-down revision beyond `revisionHistoryLimit`.
    DeleteRevision {
        /// The revision.
        hash: String,
    },
    /// Put a role's ephemeral metadata on a revision's pods (None removes it).
    SetRevisionRole {
        /// The revision.
        hash: String,
        /// Its role now.
        role: Option<RevisionRole>,
    },
    /// Restart pods started before `before`, at most `max_unavailable` at a time.
    RestartPods {
        /// The revision.
        hash: String,
        /// Pods started before this time are restarted.
        before: Timestamp,
        /// Pods that may be down at once.
        max_unavailable: i32,
    },
    /// Run a phase of the rollout's migrations (one host: a background task; Kubernetes: a
    /// Job running `cutover migrate`). At most one runs per rollout.
    RunMigration(MigrationRequest),
}

/// A migration command, backend-neutral: what `cutover migrate` is to run, and for whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationRequest {
    /// The phase(s).
    pub command: MigrationCommand,
    /// The migration (file name without extension).
    pub migration: String,
    /// Hash of the revision it runs for.
    pub hash: String,
    /// Number of that revision (recorded, so an undo behind a contract can be refused).
    pub revision: i64,
    /// For contract: when the switch to the revision was verified (`fullyPromotedAt` of
    /// `cutover migrate contract --rollout-state`; the planner checked that no old revision
    /// runs).
    pub fully_promoted_at: Option<Timestamp>,
    /// For contract: the bake period.
    pub bake: Duration,
}

/// The commands the planner asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MigrationCommand {
    /// `cutover migrate expand` then `backfill` (which resumes from its checkpoint).
    ExpandAndBackfill,
    /// `cutover migrate contract`.
    Contract,
    /// `cutover migrate rollback`.
    Rollback,
}

impl fmt::Display for MigrationCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ExpandAndBackfill => "expand + backfill",
            Self::Contract => "contract",
            Self::Rollback => "rollback",
        })
    }
}

/// The two Services of a blue/green rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceRole {
    /// Production traffic.
    Active,
    /// The newest revision, for testing.
    Preview,
}

impl fmt::Display for ServiceRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Active => "active",
            Self::Preview => "preview",
        })
    }
}

/// Why a revision is scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleReason {
    /// First revision of the rollout: full size.
    InitialDeploy,
    /// The preview revision, at `previewReplicaCount` or full size.
    Preview,
    /// The preview was promoted: full size before the switch.
    PromotionScaleUp,
    /// The active and stable revision follows `spec.replicas`.
    Stable,
    /// Its scale-down deadline passed.
    ScaleDownDeadlinePassed,
    /// More old revisions are up than `scaleDownDelayRevisionLimit` allows.
    RevisionLimitExceeded,
    /// An aborted update's revision, after `abortScaleDownDelaySeconds`.
    AbortedUpdate,
}

/// What an AnalysisRun is to measure. The adapter resolves templates and arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisRunRequest {
    /// Run name: `<rollout>-<hash>-<revision>-<pre|post>`, with `.N` after a retry.
    pub name: String,
    /// Gate.
    pub kind: AnalysisKind,
    /// Revision analysed.
    pub hash: String,
    /// Its revision number.
    pub revision: i64,
    /// The rollout's analysis block (templates, args, dry run, retention).
    pub analysis: RolloutAnalysis,
    /// Hash of the stable revision, for `podTemplateHashValue: Stable`.
    pub stable_hash: Option<String>,
}

/// An event on a transition.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Normal or Warning.
    pub severity: EventSeverity,
    /// Machine-readable reason.
    pub reason: EventReason,
    /// What happened.
    pub message: String,
}

/// Event severity, as Kubernetes' event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventSeverity {
    /// Expected progress.
    Normal,
    /// Something needs attention.
    Warning,
}

/// Reasons of events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventReason {
    /// A new revision was created for a changed pod template.
    RolloutUpdated,
    /// A revision was scaled.
    ScalingReplicaSet,
    /// A Service's selector was changed.
    SwitchService,
    /// The data plane confirmed the switch.
    SwitchVerified,
    /// An AnalysisRun was started.
    AnalysisRunStarted,
    /// An AnalysisRun passed.
    AnalysisRunSuccessful,
    /// An AnalysisRun failed.
    AnalysisRunFailed,
    /// An AnalysisRun could not measure.
    AnalysisRunError,
    /// An AnalysisRun was inconclusive.
    AnalysisRunInconclusive,
    /// The rollout paused.
    RolloutPaused,
    /// The rollout resumed.
    RolloutResumed,
    /// The update was aborted.
    RolloutAborted,
    /// An aborted update is tried again.
    RolloutRetry,
    /// The revision became stable.
    RolloutCompleted,
    /// No progress within `progressDeadlineSeconds`.
    ProgressDeadlineExceeded,
    /// The spec cannot be acted on.
    InvalidSpec,
    /// A migration command was started.
    MigrationStarted,
    /// A migration command failed.
    MigrationFailed,
    /// A migration may be contracted now.
    MigrationContractDue,
    /// An undo was refused: a contracted migration came with a newer revision.
    MigrationContracted,
}

impl fmt::Display for EventReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Event {
    pub(crate) fn normal(reason: EventReason, message: impl Into<String>) -> Self {
        Self {
            severity: EventSeverity::Normal,
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn warning(reason: EventReason, message: impl Into<String>) -> Self {
        Self {
            severity: EventSeverity::Warning,
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CreateRevision { hash, revision } => {
                write!(f, "create revision {revision} ({hash})")
            }
            Self::ScaleRevision {
                hash,
                replicas,
                reason,
            } => write!(f, "scale {hash} to {replicas} ({reason:?})"),
            Self::SetScaleDownDeadline {
                hash,
                deadline: Some(at),
            } => write!(f, "scale {hash} down at {at}"),
            Self::SetScaleDownDeadline {
                hash,
                deadline: None,
            } => write!(f, "keep {hash} (deadline cleared)"),
            Self::SwitchService {
                role, service, to, ..
            } => write!(f, "point {role} service {service} at {to}"),
            Self::StartAnalysis(req) => write!(f, "start analysis {}", req.name),
            Self::TerminateAnalysis { name } => write!(f, "terminate analysis {name}"),
            Self::DeleteAnalysisRun { name } => write!(f, "delete analysis run {name}"),
            Self::DeleteRevision { hash } => write!(f, "delete revision {hash}"),
            Self::SetRevisionRole { hash, role } => match role {
                Some(role) => write!(f, "label {hash} pods {role:?}"),
                None => write!(f, "remove role labels from {hash} pods"),
            },
            Self::RestartPods {
                hash,
                max_unavailable,
                ..
            } => write!(f, "restart {hash} pods, {max_unavailable} at a time"),
            Self::RunMigration(req) => write!(
                f,
                "migrate {}: {} for revision {}",
                req.migration, req.command, req.revision
            ),
        }
    }
}
