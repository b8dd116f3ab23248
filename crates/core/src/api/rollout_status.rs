//! `Rollout.status`: written whole by the controller (or the local engine) from `plan()`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::AnalysisPhase;

/// Observed state of a Rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Healthy, Progressing, Paused or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,
    /// Why the rollout is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pod-template hash of the desired (newest) revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pod_hash: Option<String>,
    /// Pod-template hash of the last fully promoted revision.
    #[serde(rename = "stableRS", default, skip_serializing_if = "Option::is_none")]
    pub stable_rs: Option<String>,
    /// Revision number of the desired revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<i64>,
    /// Blue/green bookkeeping.
    #[serde(default)]
    pub blue_green: BlueGreenStatus,
    /// Pauses waiting for a human or a timer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_conditions: Vec<PauseCondition>,
    /// The controller paused this update at least once; with no pause condition left it means a
    /// human (or the timer) released it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub controller_pause: bool,
    /// The update was aborted: active is back on stable.
    #[serde(default, skip_serializing_if = "is_false")]
    pub abort: bool,
    /// When the last abort happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<Time>,
    /// Skip pauses and analysis for the current update (`promote --full`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub promote_full: bool,
    /// The `spec.restartAt` last honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<Time>,
    /// Pods of all revisions.
    #[serde(default)]
    pub replicas: i32,
    /// Pods of the desired revision.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Ready pods of the active revision (Argo's `activeRS.status.readyReplicas`).
    #[serde(default)]
    pub ready_replicas: i32,
    /// Available pods of the active revision.
    #[serde(default)]
    pub available_replicas: i32,
    /// Pods of the active revision, for the `/scale` subresource.
    #[serde(rename = "HPAReplicas", default)]
    pub hpa_replicas: i32,
    /// Label selector of the active revision's pods, for the `/scale` subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Conditions in Kubernetes' convention.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RolloutCondition>,
    /// The database migration of `spec.migrations` the rollout is busy with or waits on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<super::MigrationStatus>,
    /// How long the current (or last) update took, and how much of it waited for a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<UpdateDuration>,
}

/// `status.duration`: the timing of the current (or last) update, from the pod-template change
/// to promotion or abort.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateDuration {
    /// Revision number of the update.
    pub revision: i64,
    /// When the update began (the template change was first planned).
    pub started_at: MicroTime,
    /// When the current manual pause began (waiting for `promote`, an inconclusive analysis,
    /// or `spec.paused`); absent while not paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<MicroTime>,
    /// Seconds spent in manual pauses that have ended.
    #[serde(default)]
    pub paused_seconds: f64,
    /// When the update ended (promoted or aborted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<MicroTime>,
    /// How it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<UpdateCompletion>,
    /// `finishedAt - startedAt` in seconds, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// How an update ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UpdateCompletion {
    /// The revision became stable.
    Promoted,
    /// The update was aborted; active serves the stable revision again.
    Aborted,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `status.phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutPhase {
    /// Fully promoted and available.
    Healthy,
    /// An update is under way.
    Progressing,
    /// Waiting for a human or a timer.
    Paused,
    /// Aborted, invalid, or past its progress deadline.
    Degraded,
}

/// `status.blueGreen`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStatus {
    /// Hash the active Service selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_selector: Option<String>,
    /// Hash the preview Service selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_selector: Option<String>,
    /// The preview was promoted and is being scaled from previewReplicaCount to full size.
    #[serde(default, skip_serializing_if = "is_false")]
    pub scale_up_preview_check_point: bool,
    /// The pre-promotion AnalysisRun of the current update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    /// The post-promotion AnalysisRun of the current update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    /// The current update rolls back to a warm or recent revision: no pause, no analysis.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fast_rollback: bool,
    /// The last switch of the active Service and how long the data plane took to confirm it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<SwitchStatus>,
}

/// A switch of the active Service, from the patch to the data plane's confirmation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchStatus {
    /// Hash the active Service was switched from (absent on the initial deploy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Hash the active Service was switched to.
    pub to: String,
    /// When the selector was changed (microseconds: switches take fractions of a second).
    pub started_at: MicroTime,
    /// When the data plane was seen serving only `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<MicroTime>,
    /// `verifiedAt - startedAt` in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// A Rollout's view of one of its AnalysisRuns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysisRunStatus {
    /// AnalysisRun name.
    pub name: String,
    /// Its phase.
    pub status: AnalysisPhase,
    /// Its message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A pause waiting for `promote` or a timer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    /// Why the rollout paused.
    pub reason: PauseReason,
    /// When it paused.
    pub start_time: Time,
}

/// Reasons a rollout pauses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PauseReason {
    /// Waiting for promotion (manual, or timed by autoPromotionSeconds).
    BlueGreenPause,
    /// An AnalysisRun was inconclusive; a human decides.
    InconclusiveAnalysisRun,
}

/// A condition in Kubernetes' convention.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutCondition {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: ConditionType,
    /// "True", "False" or "Unknown".
    pub status: ConditionStatus,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Last time the status flipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Last time the rollout made progress (Progressing only); the progress deadline counts
    /// from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
}

/// Condition types of a Rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionType {
    /// The active revision has at least `replicas` available pods.
    Available,
    /// The update advances; reason says where it is.
    Progressing,
    /// The rollout waits for a human or a timer.
    Paused,
    /// The rollout finished its last update.
    Completed,
    /// Everything is promoted and available.
    Healthy,
    /// The spec cannot be acted on.
    InvalidSpec,
    /// A backfilled migration may be contracted: the update is fully promoted, the old
    /// revision is scaled down and the bake period has passed.
    MigrationContractDue,
    /// The API server refused a write the rollout needs (an invalid pod template, a missing
    /// permission); the message is the API server's. Set and cleared by the Kubernetes
    /// controller, not by the planner.
    ReplicaFailure,
    /// kstatus's summary (Flux and other GitOps tools read it): True when nothing is in flight
    /// and nothing failed.
    Ready,
    /// kstatus's "work in flight": present and True while an update or scale advances or waits
    /// for a promotion; absent otherwise.
    Reconciling,
    /// kstatus's "cannot make progress without help": present and True while the rollout is
    /// Degraded (aborted, invalid spec, past its progress deadline, blocked); absent otherwise.
    Stalled,
}

/// Status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// It does not.
    False,
    /// Not known.
    Unknown,
}

impl RolloutStatus {
    /// The condition of a type, if present.
    pub fn condition(&self, type_: ConditionType) -> Option<&RolloutCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// The pause condition of a reason, if present.
    pub fn pause_condition(&self, reason: PauseReason) -> Option<&PauseCondition> {
        self.pause_conditions.iter().find(|p| p.reason == reason)
    }
}
