//! The resource vocabulary cutover reads and writes: `Rollout`, `AnalysisTemplate`,
//! `ClusterAnalysisTemplate` and `AnalysisRun` in `cutover.dev/v1alpha1`.
//!
//! Field names and defaults follow Argo Rollouts' `blueGreen` strategy and analysis, so an Argo
//! manifest works after changing its `apiVersion`. Optional fields stay `Option` on the wire (so a
//! round-trip never adds defaults to a user's object); the documented defaults are applied by
//! accessor methods such as [`RolloutSpec::replicas`].

mod analysis;
mod analysis_run;
mod duration;
mod migrations;
mod rollout;
mod rollout_status;
mod schema;

pub use analysis::*;
pub use analysis_run::*;
pub use duration::{DurationError, DurationString};
pub use migrations::*;
pub use rollout::*;
pub use rollout_status::*;

/// API group of every cutover resource.
pub const GROUP: &str = "cutover.dev";
/// API version of every cutover resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` value of every cutover resource.
pub const API_VERSION: &str = "cutover.dev/v1alpha1";
/// Label carrying a revision's pod-template hash on revisions, pods and Service selectors.
/// It is the label Argo Rollouts uses, so users can move between the two tools.
pub const POD_TEMPLATE_HASH_LABEL: &str = "rollouts-pod-template-hash";
