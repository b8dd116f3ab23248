//! `AnalysisTemplate` and `ClusterAnalysisTemplate`: metrics that decide whether a revision may
//! be promoted (types only; the engine that runs them is `cutover-analysis`).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AnalysisTemplateRef, DurationString};

/// Default of a metric's `failureLimit`.
pub const DEFAULT_FAILURE_LIMIT: i32 = 0;
/// Default of a metric's `inconclusiveLimit`.
pub const DEFAULT_INCONCLUSIVE_LIMIT: i32 = 0;
/// Default of a metric's `consecutiveErrorLimit`.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i32 = 4;
/// Default of a web metric's `timeoutSeconds`.
pub const DEFAULT_WEB_TIMEOUT_SECONDS: i64 = 10;

/// Metrics and arguments of an analysis, shared by both template kinds.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cutover.dev",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    shortname = "at",
    category = "cutover",
    doc = "Metrics and conditions that decide whether a revision may be promoted."
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisTemplateSpec {
    /// The metrics measured.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Arguments, referenced in metrics as `{{args.NAME}}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    /// Metrics measured but not counted toward the run's result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// How many measurements each metric keeps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
    /// Other templates whose metrics and args are included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<AnalysisTemplateRef>,
}

/// The cluster-scoped twin of [`AnalysisTemplateSpec`], same fields.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cutover.dev",
    version = "v1alpha1",
    kind = "ClusterAnalysisTemplate",
    derive = "PartialEq",
    derive = "Default",
    shortname = "cat",
    category = "cutover",
    doc = "A cluster-wide AnalysisTemplate, referenced with clusterScope: true."
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterAnalysisTemplateSpec {
    /// The metrics measured.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Arguments, referenced in metrics as `{{args.NAME}}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    /// Metrics measured but not counted toward the run's result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// How many measurements each metric keeps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
    /// Other templates whose metrics and args are included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<AnalysisTemplateRef>,
}

impl From<ClusterAnalysisTemplateSpec> for AnalysisTemplateSpec {
    fn from(c: ClusterAnalysisTemplateSpec) -> Self {
        Self {
            metrics: c.metrics,
            args: c.args,
            dry_run: c.dry_run,
            measurement_retention: c.measurement_retention,
            templates: c.templates,
        }
    }
}

/// A declared argument with an optional default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Argument {
    /// Name, referenced as `{{args.NAME}}`.
    pub name: String,
    /// Default value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A value read when the run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<TemplateValueFrom>,
}

/// Where a template argument reads its value from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateValueFrom {
    /// A key of a Secret (Kubernetes backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// A field of the Rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<super::FieldRef>,
}

/// A key of a Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key in the Secret.
    pub key: String,
}

/// A metric measured by dry run only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DryRun {
    /// Metric name, or a regular expression of names (`.*` for all).
    pub metric_name: String,
}

/// How many measurements a metric keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeasurementRetention {
    /// Metric name, or a regular expression of names.
    pub metric_name: String,
    /// Measurements kept.
    pub limit: i32,
}

/// One metric of an analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metric {
    /// Metric name, unique in the analysis.
    pub name: String,
    /// Time between measurements. No interval and no count: one measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<DurationString>,
    /// Wait before the first measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<DurationString>,
    /// Number of measurements; more than one needs an interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<IntOrString>,
    /// Expression over `result` that marks a measurement Successful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// Expression over `result` that marks a measurement Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated (default 0; -1 disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<IntOrString>,
    /// Inconclusive measurements tolerated (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<IntOrString>,
    /// Consecutive errors tolerated (default 4: the 5th is an Error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<IntOrString>,
    /// Successes in a row that end the metric as Successful (default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_success_limit: Option<IntOrString>,
    /// Where the value comes from: exactly one provider.
    pub provider: MetricProvider,
}

/// The source of a metric's value: exactly one field is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricProvider {
    /// A Prometheus query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    /// An HTTP request whose JSON answer is the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebMetric>,
    /// A Kubernetes Job whose success or failure is the measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobMetric>,
    /// cutover's own router counters (single-host backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinMetric>,
}

impl MetricProvider {
    /// Names of the providers set, in declaration order.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if self.prometheus.is_some() {
            kinds.push("prometheus");
        }
        if self.web.is_some() {
            kinds.push("web");
        }
        if self.job.is_some() {
            kinds.push("job");
        }
        if self.builtin.is_some() {
            kinds.push("builtin");
        }
        kinds
    }
}

/// `provider.prometheus`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusMetric {
    /// Base URL of the Prometheus server, e.g. `http://prometheus.monitoring:9090`.
    pub address: String,
    /// PromQL query; may use `{{args.NAME}}`.
    pub query: String,
    /// Query timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<WebMetricHeader>,
    /// Credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<PrometheusAuth>,
    /// Run a range query instead of an instant query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_query: Option<PrometheusRangeQuery>,
}

/// Prometheus credentials: basic or bearer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusAuth {
    /// HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// A bearer token sent as `Authorization: Bearer …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
}

/// HTTP basic credentials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A Prometheus range query window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusRangeQuery {
    /// Start, e.g. `now() - duration("1h")`.
    pub start: String,
    /// End, e.g. `now()`.
    pub end: String,
    /// Resolution step, e.g. `1m`.
    pub step: String,
}

/// A request header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebMetricHeader {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: String,
}

/// `provider.web`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebMetric {
    /// GET (default), POST or PUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<WebMetricMethod>,
    /// URL; may use `{{args.NAME}}`.
    pub url: String,
    /// Request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<WebMetricHeader>,
    /// Request body as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Request body as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::any_value")]
    pub json_body: Option<serde_json::Value>,
    /// Request timeout in seconds (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// JSONPath selecting the value from the answer (default `{$}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
}

/// HTTP methods a web metric may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum WebMetricMethod {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
}

/// `provider.job`: a Kubernetes Job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobMetric {
    /// Labels and annotations of the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<super::PodTemplateMetadata>,
    /// A batch/v1 JobSpec.
    #[schemars(schema_with = "super::schema::preserve_unknown_object")]
    pub spec: k8s_openapi::api::batch::v1::JobSpec,
}

/// `provider.builtin`: counters cutover's own router keeps per revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuiltinMetric {
    /// What to compute.
    pub query: BuiltinQuery,
    /// Window the value covers, e.g. `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<DurationString>,
    /// Quantile for `LatencyQuantile`, e.g. 0.99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    /// Service whose traffic is measured (e.g. `{{args.service-name}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Revision hash measured (e.g. `{{args.hash}}`); unset: the revision under analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    // No label filter: the router counts per Service, revision and status class only, and a
    // field that narrowed nothing would measure more traffic than its author meant.
}

/// Values the builtin provider computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BuiltinQuery {
    /// Share of responses that are not 5xx, 0.0-1.0.
    SuccessRate,
    /// A latency quantile in seconds.
    LatencyQuantile,
    /// Requests per second.
    RequestRate,
}
