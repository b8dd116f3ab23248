//! `Rollout`: a workload updated blue/green, with active and preview Services.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::RolloutStatus;

/// Default of `spec.replicas`.
pub const DEFAULT_REPLICAS: i32 = 1;
/// Default of `spec.revisionHistoryLimit`.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
/// Default of `spec.progressDeadlineSeconds`.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// Default of `blueGreen.scaleDownDelaySeconds`.
pub const DEFAULT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;
/// Default of `blueGreen.abortScaleDownDelaySeconds`.
pub const DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS: i32 = 30;
/// Default of `analysis.successfulRunHistoryLimit` and `unsuccessfulRunHistoryLimit`.
pub const DEFAULT_ANALYSIS_RUN_HISTORY_LIMIT: i32 = 5;

/// Desired state of a Rollout.
// The printcolumn attributes repeat `type_ = "integer"`, which clippy takes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cutover.dev",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    status = "RolloutStatus",
    derive = "PartialEq",
    shortname = "ro",
    category = "cutover",
    doc = "A workload updated blue/green: a preview revision is checked, then traffic switches at once and the old revision stays warm for instant rollback.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.HPAReplicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Number of desired pods"
    ),
    printcolumn(
        name = "Current",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Total number of pods of all revisions"
    ),
    printcolumn(
        name = "Up-to-date",
        type_ = "integer",
        json_path = ".status.updatedReplicas",
        description = "Pods of the newest revision"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas",
        description = "Available pods serving the active Service"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Healthy, Progressing, Paused or Degraded"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.template) != has(self.workloadRef)",
    "message": "set exactly one of spec.template and spec.workloadRef"
}, {
    "rule": "has(self.selector) || has(self.workloadRef)",
    "message": "spec.selector is required unless spec.workloadRef names a Deployment to take it from"
}]))]
pub struct RolloutSpec {
    /// Number of pods the active revision runs. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Label selector of the Rollout's pods; must match the template's labels. With
    /// `workloadRef` it may be left out: the Deployment's selector is used.
    #[serde(default, skip_serializing_if = "selector_is_unset")]
    pub selector: LabelSelector,
    /// Pod template of the desired revision. A change here starts a blue/green update.
    /// Exactly one of `template` and `workloadRef` is set; with `workloadRef` the controller
    /// fills this in from the referenced Deployment before planning.
    #[serde(default, skip_serializing_if = "template_is_unset")]
    #[schemars(schema_with = "super::schema::preserve_unknown_object")]
    pub template: PodTemplateSpec,
    /// Take the pod template from an existing Deployment instead of `template` (Kubernetes
    /// only): a change of the Deployment's template starts an update, and the Deployment is
    /// scaled down as `scaleDown` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,
    /// Seconds a pod must be ready before it counts as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    /// Old revisions kept (scaled to zero) for `undo`. Defaults to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
    /// Halts switches, promotion and preview retargeting while true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Seconds an update may make no progress before it is reported Degraded. Defaults to 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// Also abort an update whose progress deadline passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_abort: Option<bool>,
    /// Pods started before this time are restarted, a few at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<Time>,
    /// Revisions among the last N that roll back fast (no pause, no analysis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_window: Option<RollbackWindow>,
    /// How many finished AnalysisRuns are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRunHistory>,
    /// How updates happen. cutover does blue/green.
    pub strategy: RolloutStrategy,
    /// Database migrations run with updates: expand and backfill before the new revision
    /// starts, contract once the old one is gone (docs/migrations.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<super::RolloutMigrations>,
}

/// True when a spec carries no template of its own (`workloadRef` names where it comes from).
pub fn template_is_unset(template: &PodTemplateSpec) -> bool {
    template.metadata.is_none() && template.spec.is_none()
}

/// True when a spec names no selector of its own (`workloadRef` names where it comes from).
pub fn selector_is_unset(selector: &LabelSelector) -> bool {
    selector.match_labels.is_none() && selector.match_expressions.is_none()
}

/// `spec.workloadRef`: the Deployment whose pod template the Rollout runs, as in Argo Rollouts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadRef {
    /// `apps/v1`.
    #[schemars(extend("enum" = ["apps/v1"]))]
    pub api_version: String,
    /// `Deployment`.
    #[schemars(extend("enum" = ["Deployment"]))]
    pub kind: String,
    /// Name of the Deployment, in the Rollout's namespace.
    pub name: String,
    /// What becomes of the Deployment's own pods. Defaults to `never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<WorkloadScaleDown>,
}

/// `workloadRef.scaleDown`: how the referenced Deployment gives way to the Rollout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadScaleDown {
    /// The Deployment keeps its replicas (users scale it down themselves).
    #[default]
    Never,
    /// The Deployment goes to zero once the Rollout is Healthy.
    OnSuccess,
    /// The Deployment loses one pod for each pod of the Rollout that becomes available.
    Progressively,
}

impl WorkloadRef {
    /// The scale-down mode, defaulted.
    pub fn scale_down(&self) -> WorkloadScaleDown {
        self.scale_down.unwrap_or_default()
    }
}

/// `spec.rollbackWindow`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackWindow {
    /// Number of most recent revisions within the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisions: Option<i32>,
}

/// `spec.analysis`: history limits of AnalysisRuns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisRunHistory {
    /// Successful runs kept. Defaults to 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_run_history_limit: Option<i32>,
    /// Failed, errored or inconclusive runs kept. Defaults to 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsuccessful_run_history_limit: Option<i32>,
}

/// `spec.strategy`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutStrategy {
    /// The blue/green strategy.
    pub blue_green: BlueGreenStrategy,
}

/// `spec.strategy.blueGreen`, with Argo Rollouts' field names and defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlueGreenStrategy {
    /// Service that receives production traffic; switched at promotion. Required.
    pub active_service: String,
    /// Service that always points at the newest revision, for testing before promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_service: Option<String>,
    /// Pods the preview revision runs until promotion. Unset: `spec.replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_replica_count: Option<i32>,
    /// Promote without a human once the preview is ready and analysis passed. Defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_enabled: Option<bool>,
    /// With auto-promotion, wait this many seconds in `BlueGreenPause` before promoting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_seconds: Option<i32>,
    /// Pods restarted at a time by `restart` (count or percentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// Seconds the old revision stays up after a verified switch. Defaults to 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i32>,
    /// How many old revisions may wait out their delay scaled up. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_revision_limit: Option<i32>,
    /// Seconds before an aborted preview is scaled down; 0 keeps it. Defaults to 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_scale_down_delay_seconds: Option<i32>,
    /// Analysis that must pass before the active Service switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
    /// Analysis that must pass after the switch before the revision becomes stable; a failure
    /// switches back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<RolloutAnalysis>,
    /// Labels and annotations put on preview pods while they are preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_metadata: Option<PodTemplateMetadata>,
    /// Labels and annotations put on active pods while they are active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_metadata: Option<PodTemplateMetadata>,
    /// Keep new pods off nodes that run the old revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<AntiAffinity>,
    /// How the active Service's traffic reaches the preview before promotion (cutover's
    /// extension): header routes, a weighted share, mirroring. The single-host router applies
    /// it; on Kubernetes it becomes Istio or Gateway API routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
}

/// `blueGreen.trafficRouting`: what the active Service sends to the preview revision while an
/// update waits for promotion. Everything returns to the active revision on abort and after
/// promotion.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficRouting {
    /// Requests matching any of these go to the preview revision (first match wins), e.g.
    /// `x-canary: true` for testers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header_routes: Vec<HeaderRoute>,
    /// Percentage (0-100) of the remaining active traffic sent to the preview once it is fully
    /// available, e.g. 10 for a 90/10 split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_weight: Option<i32>,
    /// Copy this share of active traffic to the preview; responses are discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorRoute>,
    /// On Kubernetes: carry these rules out in an Istio VirtualService and DestinationRule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioRouting>,
    /// On Kubernetes: carry these rules out in Gateway API HTTPRoutes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "gatewayAPI"
    )]
    pub gateway_api: Option<GatewayApiRouting>,
}

impl TrafficRouting {
    /// True when the rules need a router that can split traffic by weight or copy it, which
    /// plain Services on Kubernetes cannot.
    pub fn needs_weighting_router(&self) -> bool {
        self.preview_weight.is_some_and(|w| w > 0)
            || self.mirror.is_some()
            || !self.header_routes.is_empty()
    }
}

/// `trafficRouting.istio`: the VirtualService whose routes cutover weights and the
/// DestinationRule whose two subsets it points at revisions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioRouting {
    /// The VirtualService and the HTTP routes in it that cutover manages.
    pub virtual_service: IstioVirtualService,
    /// The DestinationRule with the two subsets.
    pub destination_rule: IstioDestinationRule,
}

/// A VirtualService in the Rollout's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioVirtualService {
    /// Its name.
    pub name: String,
    /// Names of the HTTP routes (`spec.http[].name`) whose destinations cutover weights. Empty:
    /// the VirtualService must have exactly one HTTP route, and that one is managed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

/// A DestinationRule in the Rollout's namespace with the two subsets blue/green takes turns
/// on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioDestinationRule {
    /// Its name.
    pub name: String,
    /// The subset production traffic starts on (the seed's `blue`). After the first promotion
    /// the two subsets take turns: an update goes into the subset that carries no production
    /// traffic.
    pub active_subset_name: String,
    /// The subset the first update goes into (the seed's `green`).
    pub preview_subset_name: String,
}

/// `trafficRouting.gatewayAPI`: HTTPRoutes (`gateway.networking.k8s.io/v1`) whose rules send
/// traffic to the active and preview Services.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayApiRouting {
    /// The HTTPRoutes, in the Rollout's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_routes: Vec<GatewayHttpRoute>,
}

/// One HTTPRoute and the rules in it that cutover manages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayHttpRoute {
    /// Its name.
    pub name: String,
    /// Names of the rules (`spec.rules[].name`) that cutover manages. Empty: every rule with a
    /// backendRef to the active Service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
}

/// A header condition, exactly one of `exact`, `prefix`, `regex` (a full match).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderRoute {
    /// Header name, case-insensitive.
    pub header: String,
    /// The value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The whole value matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Mirroring of active traffic to the preview.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorRoute {
    /// Share of requests copied, 0-100. Defaults to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
}

/// Labels and annotations for a role (`previewMetadata`, `activeMetadata`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTemplateMetadata {
    /// Labels to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `blueGreen.antiAffinity`: exactly one of the two forms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AntiAffinity {
    /// Prefer other nodes, with this weight (1-100).
    #[serde(
        rename = "preferredDuringSchedulingIgnoredDuringExecution",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub preferred: Option<PreferredAntiAffinity>,
    /// Require other nodes.
    #[serde(
        rename = "requiredDuringSchedulingIgnoredDuringExecution",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub required: Option<RequiredAntiAffinity>,
}

/// Preferred anti-affinity weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreferredAntiAffinity {
    /// Scheduling weight, 1-100.
    pub weight: i32,
}

/// Required anti-affinity (no settings).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequiredAntiAffinity {}

/// Analysis attached to a rollout step (`prePromotionAnalysis`, `postPromotionAnalysis`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutAnalysis {
    /// Templates whose metrics make up the run.
    #[serde(default)]
    pub templates: Vec<AnalysisTemplateRef>,
    /// Values for the templates' arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisRunArgument>,
    /// Metrics measured but not counted toward the run's result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<super::DryRun>,
    /// How many measurements each metric keeps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<super::MeasurementRetention>,
    /// Labels and annotations for the AnalysisRuns created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<PodTemplateMetadata>,
}

/// A reference to an `AnalysisTemplate` (or `ClusterAnalysisTemplate` with `clusterScope`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisTemplateRef {
    /// Name of the template.
    pub template_name: String,
    /// The template is a ClusterAnalysisTemplate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
}

/// An argument value given by a Rollout to its analysis templates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisRunArgument {
    /// Argument name, as declared by the template.
    pub name: String,
    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A value taken from the Rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ArgumentValueFrom>,
}

/// Where a Rollout-given argument takes its value from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgumentValueFrom {
    /// The pod-template hash of the stable or the latest revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash_value: Option<PodTemplateHashValue>,
    /// A field of the Rollout, e.g. `metadata.labels['app']`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
}

/// Which revision's hash an argument takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PodTemplateHashValue {
    /// The revision that currently serves as stable.
    Stable,
    /// The newest revision.
    Latest,
}

/// A path to a field of the Rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldRef {
    /// Field path, e.g. `metadata.name` or `metadata.labels['app']`.
    pub field_path: String,
}

impl RolloutSpec {
    /// `spec.replicas` with its default.
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(DEFAULT_REPLICAS).max(0)
    }
    /// `spec.revisionHistoryLimit` with its default.
    pub fn revision_history_limit(&self) -> i32 {
        self.revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT)
            .max(0)
    }
    /// `spec.progressDeadlineSeconds` with its default.
    pub fn progress_deadline_seconds(&self) -> i32 {
        self.progress_deadline_seconds
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS)
    }
    /// `spec.paused` with its default.
    pub fn is_paused(&self) -> bool {
        self.paused.unwrap_or(false)
    }
    /// `spec.minReadySeconds` with its default.
    pub fn min_ready_seconds(&self) -> i32 {
        self.min_ready_seconds.unwrap_or(0).max(0)
    }
}

impl BlueGreenStrategy {
    /// `autoPromotionEnabled` with its default (true).
    pub fn auto_promotion_enabled(&self) -> bool {
        self.auto_promotion_enabled.unwrap_or(true)
    }
    /// `autoPromotionSeconds`, 0 when unset.
    pub fn auto_promotion_seconds(&self) -> i32 {
        self.auto_promotion_seconds.unwrap_or(0).max(0)
    }
    /// `scaleDownDelaySeconds` with its default (30).
    pub fn scale_down_delay_seconds(&self) -> i32 {
        self.scale_down_delay_seconds
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY_SECONDS)
            .max(0)
    }
    /// `abortScaleDownDelaySeconds` with its default (30); 0 means never.
    pub fn abort_scale_down_delay_seconds(&self) -> i32 {
        self.abort_scale_down_delay_seconds
            .unwrap_or(DEFAULT_ABORT_SCALE_DOWN_DELAY_SECONDS)
            .max(0)
    }
}
