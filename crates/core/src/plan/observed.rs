//! What an adapter saw of the world, as one immutable snapshot handed to [`super::plan`].

use jiff::Timestamp;

use crate::api::{AnalysisPhase, MigrationPhase, PodTemplateMetadata, Rollout};

use super::action::MigrationCommand;

/// Everything `plan()` may base a decision on. Adapters fill it from their own world (ReplicaSets
/// and EndpointSlices, or supervised processes and the router's table) and never add a fact that
/// an earlier step of theirs computed: a fact is observed, or it is not here.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The Rollout as stored: spec, metadata and the status the last plan wrote (plus what users
    /// patched into it: `abort`, `promoteFull`, cleared pause conditions).
    pub rollout: Rollout,
    /// Every revision (ReplicaSet or process group) the rollout owns.
    pub revisions: Vec<ObservedRevision>,
    /// The active Service.
    pub active_service: Option<ObservedService>,
    /// The preview Service, when the strategy names one.
    pub preview_service: Option<ObservedService>,
    /// AnalysisRuns the rollout created.
    pub analysis_runs: Vec<ObservedAnalysisRun>,
    /// The migrations of `spec.migrations` and what the executor is doing with them; None when
    /// the rollout has none.
    pub migrations: Option<ObservedMigrations>,
}

/// One revision of the rollout's pod template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedRevision {
    /// Its pod-template hash.
    pub hash: String,
    /// Its revision number (1, 2, …). A revision that becomes current again (undo, or the
    /// template set back) gets the next number, as Argo Rollouts does.
    pub revision: i64,
    /// The number it got when it was created; renumbering keeps it. It orders revisions by
    /// creation (the rollback window, migrations that a revision predates).
    pub created_revision: i64,
    /// Pods it is asked to run.
    pub desired: i32,
    /// Pods that exist.
    pub replicas: i32,
    /// Pods that pass readiness.
    pub ready: i32,
    /// Pods ready for at least `minReadySeconds`.
    pub available: i32,
    /// When it is to be scaled to zero, if a deadline is set.
    pub scale_down_deadline: Option<Timestamp>,
    /// Start time of its oldest running pod (for `restartAt`).
    pub oldest_pod_started_at: Option<Timestamp>,
    /// The role whose ephemeral metadata its pods carry now.
    pub role: Option<RevisionRole>,
    /// The ephemeral metadata last put on its pods for that role (None: none recorded).
    pub role_metadata: Option<PodTemplateMetadata>,
    /// Why its pods are not available, when the adapter can tell more than a count: a crash
    /// loop with the exit code and the last log line, an image that cannot be pulled, a
    /// template the API server refused.
    pub unavailable_reason: Option<String>,
}

/// A Service and what its data plane does now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedService {
    /// Service name.
    pub name: String,
    /// The hash its selector holds, if any.
    pub selector_hash: Option<String>,
    /// Hashes of the revisions whose endpoints the data plane routes to right now: on Kubernetes
    /// the ready endpoints of the Service's EndpointSlices, on one host the router's live table
    /// once the previous table has drained. Sorted, no duplicates.
    pub serving: Vec<String>,
    /// The hash cutover itself last wrote into the selector (Kubernetes: an annotation written
    /// with the selector). When the selector differs, someone else changed it.
    pub recorded_selector: Option<String>,
}

impl ObservedService {
    /// The data plane serves `hash` and nothing else.
    pub fn serves_only(&self, hash: &str) -> bool {
        !self.serving.is_empty() && self.serving.iter().all(|h| h == hash)
    }
}

/// Which analysis gate a run belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnalysisKind {
    /// Before the switch.
    PrePromotion,
    /// After the switch.
    PostPromotion,
}

impl AnalysisKind {
    /// Suffix of run names: `pre` or `post`.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::PrePromotion => "pre",
            Self::PostPromotion => "post",
        }
    }
}

/// An AnalysisRun the rollout created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedAnalysisRun {
    /// Run name.
    pub name: String,
    /// Gate it belongs to.
    pub kind: AnalysisKind,
    /// Hash of the revision it analyses.
    pub hash: String,
    /// Current phase.
    pub phase: AnalysisPhase,
    /// Message of the run.
    pub message: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// It was asked to stop.
    pub terminated: bool,
    /// Number of the revision it was started for (None: recorded before revisions were
    /// renumbered; it then matches any number of its hash).
    pub revision: Option<i64>,
}

/// A role a revision plays, with its ephemeral metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevisionRole {
    /// Selected by the active Service.
    Active,
    /// Selected by the preview Service only.
    Preview,
}

/// The migration set of a rollout: the files in order with their recorded phase (one read of
/// `cutover_migrations`), and the executor's run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedMigrations {
    /// Every migration file, in application order, with its state.
    pub migrations: Vec<ObservedMigration>,
    /// A run in progress (one at a time per rollout).
    pub running: Option<RunningMigration>,
    /// The last run that failed, kept until the next run starts.
    pub failure: Option<MigrationFailure>,
    /// The files or the state table could not be read (or not yet): why. While this is set
    /// nothing about the migrations is known, so no new revision starts.
    pub unreadable: Option<String>,
}

impl ObservedMigrations {
    /// The first migration that still needs expand or backfill before a new revision may take
    /// traffic.
    pub fn next_pending(&self) -> Option<&ObservedMigration> {
        self.migrations.iter().find(|m| m.phase.needs_work())
    }
}

/// One migration file and its row in `cutover_migrations`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedMigration {
    /// File name without extension.
    pub name: String,
    /// Recorded phase (`Pending` without a row).
    pub phase: MigrationPhase,
    /// When the backfill finished.
    pub backfilled_at: Option<Timestamp>,
    /// When contract finished.
    pub contracted_at: Option<Timestamp>,
    /// Number of the revision cutover last ran expand for; None when it never did (e.g. an
    /// operator ran `cutover migrate` by hand).
    pub revision: Option<i64>,
    /// Its contract phase changes the schema. Without one (e.g. only `create_index`), contract
    /// just closes the migration: nothing is dropped, so it is never gated and runs at once.
    pub has_contract: bool,
}

/// A migration command the executor is running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningMigration {
    /// What runs.
    pub command: MigrationCommand,
    /// Target migration, when known.
    pub migration: Option<String>,
    /// When it started.
    pub since: Timestamp,
}

/// A migration command that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationFailure {
    /// What ran.
    pub command: MigrationCommand,
    /// Target migration, when known.
    pub migration: Option<String>,
    /// Hash of the revision it ran for.
    pub hash: String,
    /// The error (the last line of what the command reported).
    pub message: String,
    /// When it failed.
    pub at: Timestamp,
}
