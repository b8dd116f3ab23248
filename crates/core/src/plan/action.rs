//! What `plan()` returns: actions for an adapter to execute, the status to write, events to
//! publish, and when to look again.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;

use super::decision::Decision;
use super::observed::{AnalysisKind, RevisionRole};
use crate::api::{PodTemplateMetadata, RolloutAnalysis, RolloutStatus};

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
        /// The role its pods start in, with that role's ephemeral metadata in their template
        /// (active for the first revision, preview for an update).
        role: Option<RevisionRole>,
        /// That metadata, when the strategy sets one for the role.
        metadata: Option<PodTemplateMetadata>,
    },
    /// Give an existing revision a new number: it became current again (undo, or the template
    /// set back), and the current revision always has the highest number.
    SetRevisionNumber {
        /// The revision.
        hash: String,
        /// Its number now.
        revision: i64,
        /// Its number before.
        previous: i64,
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
        /// Why, for the run's message.
        reason: TerminateReason,
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
        /// The role's metadata to put on its pods (None: the role has none).
        metadata: Option<PodTemplateMetadata>,
        /// The metadata put on them before, whose keys go unless `metadata` keeps them.
        previous: Option<PodTemplateMetadata>,
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
    /// The number that revision got when it was created (recorded, so that an undo to a
    /// revision created before a contracted migration can be refused; renumbering keeps it).
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

/// Why a run is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminateReason {
    /// The pod template changed: the run analyses a revision that is no longer current.
    RevisionReplaced,
    /// The update was aborted.
    UpdateAborted,
    /// `promote --full` skipped the remaining analysis.
    PromotedFull,
}

impl fmt::Display for TerminateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RevisionReplaced => "terminated: the rollout moved on to another revision",
            Self::UpdateAborted => "terminated: the update was aborted",
            Self::PromotedFull => "terminated: promote --full skipped the remaining analysis",
        })
    }
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
    /// The stable revision disappeared (its ReplicaSet was deleted by hand).
    StableRevisionLost,
    /// A Service's selector was changed by someone else and set back.
    ServiceSelectorRepaired,
    /// The API server refused a write the rollout needs (reported by the Kubernetes
    /// controller).
    ApiServerRefused,
}

impl fmt::Display for EventReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Event {
    /// A Normal event.
    pub fn normal(reason: EventReason, message: impl Into<String>) -> Self {
        Self {
            severity: EventSeverity::Normal,
            reason,
            message: message.into(),
        }
    }

    /// A Warning event.
    pub fn warning(reason: EventReason, message: impl Into<String>) -> Self {
        Self {
            severity: EventSeverity::Warning,
            reason,
            message: message.into(),
        }
    }
}

impl Action {
    /// The action moves an update forward (for the progress deadline): creating, renumbering
    /// or scaling a revision, switching a Service, starting an analysis or a migration.
    /// Housekeeping (role metadata, deadlines, deletions, restarts) is not progress.
    pub fn is_progress(&self) -> bool {
        matches!(
            self,
            Self::CreateRevision { .. }
                | Self::SetRevisionNumber { .. }
                | Self::ScaleRevision { .. }
                | Self::SwitchService { .. }
                | Self::StartAnalysis(_)
                | Self::RunMigration(_)
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CreateRevision { hash, revision, .. } => {
                write!(f, "create revision {revision} ({hash})")
            }
            Self::SetRevisionNumber {
                hash,
                revision,
                previous,
            } => write!(f, "renumber revision {previous} ({hash}) to {revision}"),
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
            Self::TerminateAnalysis { name, reason } => {
                write!(f, "terminate analysis {name} ({reason})")
            }
            Self::DeleteAnalysisRun { name } => write!(f, "delete analysis run {name}"),
            Self::DeleteRevision { hash } => write!(f, "delete revision {hash}"),
            Self::SetRevisionRole { hash, role, .. } => match role {
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
