//! cutover's Kubernetes backend: a controller that observes Rollouts, their ReplicaSets, pods,
//! Services and EndpointSlices, asks [`cutover_core::plan::plan`] what to do, executes the
//! returned actions and writes the status. It decides nothing itself.
//!
//! Layout after kube-rs's controller-rs: [`controller`] holds `reconcile` → `finalizer` →
//! `apply` / `cleanup` and the error policy; [`cache`] holds the watch caches a reconcile reads
//! and [`expect`] the writes they must show first; [`observe`] builds the planner's snapshot;
//! [`execute`] turns actions into API calls; [`run_controller`] wires watches, leader election
//! and the metrics/health server.

pub mod allocator;
mod analysis;
pub mod analysisrun;
pub mod cache;
pub mod cached;
pub mod cached_rollout;
pub mod cli;
pub mod controller;
mod error;
pub mod events;
pub mod execute;
pub mod expect;
mod lease;
pub mod metrics;
pub mod migrations;
pub mod notifications;
pub mod observe;
pub mod ops;
pub mod outbox;
mod run;
mod server;
pub mod traffic;
pub mod workload;

pub use controller::{Config, Context, DataPlaneApis};
pub use error::Error;
pub use lease::LeaseConfig;
pub use run::{RunConfig, client, run_controller, run_with_client};

/// Label on ReplicaSets, pods and AnalysisRuns naming the Rollout they belong to.
pub const ROLLOUT_LABEL: &str = "cutover.dev/rollout";
/// ReplicaSet annotation: the revision number.
pub const REVISION_ANNOTATION: &str = "rollout.cutover.dev/revision";
/// ReplicaSet annotation: when the revision is scaled to zero (RFC 3339). The key is Argo's own.
pub const TEMPLATE_ANNOTATION: &str = "rollout.cutover.dev/template";
/// Scale-down deadline annotation (RFC3339), the key Argo Rollouts uses.
pub const SCALE_DOWN_DEADLINE_ANNOTATION: &str = "scale-down-deadline";
/// ReplicaSet annotation: the role (`active`, `preview`) whose ephemeral metadata its pods carry.
pub const ROLE_ANNOTATION: &str = "rollout.cutover.dev/role";
/// ReplicaSet annotation: the role's metadata last put on its pods (JSON), so that keys the
/// spec no longer names can be removed.
pub const ROLE_METADATA_ANNOTATION: &str = "rollout.cutover.dev/role-metadata";
/// ReplicaSet annotation: the numbers the revision had before (comma-separated, oldest first),
/// as Deployments keep `deployment.kubernetes.io/revision-history`. The first is the number it
/// was created with.
pub const REVISION_HISTORY_ANNOTATION: &str = "rollout.cutover.dev/revision-history";
/// Service annotation: the hash cutover last wrote into the selector. A selector that differs
/// was changed by someone else and is set back.
pub const SELECTOR_ANNOTATION: &str = "rollout.cutover.dev/selector";
/// AnalysisRun label: the number of the revision (update) it analyses.
pub const ANALYSIS_REVISION_LABEL: &str = "cutover.dev/revision";
/// AnalysisRun annotation: why cutover terminated the run, for the run's message.
pub const TERMINATE_REASON_ANNOTATION: &str = "analysis.cutover.dev/terminate-reason";
/// Service annotation: the Rollout that manages the Service's selector.
pub const MANAGED_BY_ANNOTATION: &str = "rollout.cutover.dev/managed-by";
/// AnalysisRun label: the gate (`pre`, `post`).
pub const ANALYSIS_KIND_LABEL: &str = "cutover.dev/analysis";
/// Finalizer that gives the Services their selectors back when a Rollout is deleted.
pub const FINALIZER: &str = "cutover.dev/service-selectors";
/// Field manager of every write the controller makes.
pub const FIELD_MANAGER: &str = "cutover";

/// `text` in lower-case letters, digits and dashes (everything else a dash): the characters
/// every Kubernetes name kind accepts.
pub(crate) fn dns_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}
