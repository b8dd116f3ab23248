//! Fields that do nothing on the backend the manifests are for. `cutover lint --backend`
//! chooses it ([`Target`]); a warning says what the field would have done and where it works.

use std::str::FromStr;

use cutover_core::api::{Argument, Metric, Rollout};

use super::warn;
use crate::diag::Diagnostics;
use crate::path::FieldPath;
use crate::set::Located;

/// The backend manifests are checked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// Either backend: only what holds on both is reported.
    #[default]
    Any,
    /// The single-host backend (`cutover up`): processes, the built-in router, no cluster.
    Local,
    /// A Kubernetes cluster (`cutover controller`).
    Kubernetes,
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "any" => Ok(Target::Any),
            "local" => Ok(Target::Local),
            "kubernetes" | "kube" => Ok(Target::Kubernetes),
            other => Err(format!(
                "unknown backend `{other}`: use local, kubernetes or any"
            )),
        }
    }
}

/// Replicas above this on one host draw a warning: each is a supervised process with its own
/// port and probes, on the same machine as all the others.
pub const LOCAL_REPLICA_LIMIT: i32 = 64;

const FOR_KUBERNETES: &str = "keep it if the manifest is also for Kubernetes (`cutover lint --backend kubernetes` checks that), else remove it";

pub(super) fn check_rollout(r: &Located<Rollout>, target: Target, diags: &mut Diagnostics) {
    let spec = &r.value.spec;
    let bg = &spec.strategy.blue_green;
    let bg_path = FieldPath::parse("spec.strategy.blueGreen");
    let migrations = spec.migrations.as_ref();
    let url = FieldPath::parse("spec.migrations.databaseUrlFrom");
    let source = FieldPath::parse("spec.migrations.source");
    match target {
        Target::Any => {}
        Target::Local => {
            if spec.workload_ref.is_some() {
                let path = FieldPath::parse("spec.workloadRef");
                diags.push(super::err(
                    r,
                    &path,
                    "workloadRef applies only on Kubernetes: one host has no Deployment to take the pod template from".into(),
                    "give the Rollout its pod template under spec.template (copy the Deployment's spec.template and selector), or apply this Rollout to a cluster running `cutover controller`",
                ));
            }
            if let Some(n) = spec.replicas.filter(|n| *n > LOCAL_REPLICA_LIMIT) {
                diags.push(warn(
                    r,
                    &FieldPath::parse("spec.replicas"),
                    format!("{n} replicas on one host: each is a process of its own on this machine"),
                    &format!("use at most {LOCAL_REPLICA_LIMIT} on one host, or run this Rollout on Kubernetes"),
                ));
            }
            let pod_only = [
                (
                    "activeMetadata",
                    bg.active_metadata.is_some(),
                    "processes carry no labels or annotations",
                ),
                (
                    "previewMetadata",
                    bg.preview_metadata.is_some(),
                    "processes carry no labels or annotations",
                ),
                (
                    "antiAffinity",
                    bg.anti_affinity.is_some(),
                    "there are no nodes to spread pods over",
                ),
            ];
            for (name, set, why) in pod_only {
                if set {
                    diags.push(warn(
                        r,
                        &bg_path.key(name),
                        format!("does nothing on one host: {why}"),
                        FOR_KUBERNETES,
                    ));
                }
            }
            if migrations.is_some_and(|m| m.source.config_map_ref.is_some()) {
                diags.push(warn(
                    r,
                    &source.key("configMapRef"),
                    "does nothing on one host: migrations are read from `dir`".into(),
                    FOR_KUBERNETES,
                ));
            }
            if migrations.is_some_and(|m| m.database_url_from.secret_key_ref.is_some()) {
                diags.push(warn(
                    r,
                    &url.key("secretKeyRef"),
                    "does nothing on one host: the database URL is read from `env`".into(),
                    FOR_KUBERNETES,
                ));
            }
        }
        Target::Kubernetes => {
            let on_one_host = "keep it if the manifest is also for one host (`cutover lint --backend local` checks that), else remove it";
            if migrations.is_some_and(|m| m.source.dir.is_some()) {
                diags.push(warn(
                    r,
                    &source.key("dir"),
                    "does nothing on Kubernetes: migrations are read from `configMapRef`".into(),
                    on_one_host,
                ));
            }
            if migrations.is_some_and(|m| m.database_url_from.env.is_some()) {
                diags.push(warn(
                    r,
                    &url.key("env"),
                    "does nothing on Kubernetes: the database URL is read from `secretKeyRef`"
                        .into(),
                    on_one_host,
                ));
            }
        }
    }
}

/// Metrics and arguments of an AnalysisTemplate, ClusterAnalysisTemplate or AnalysisRun.
pub(super) fn check_analysis<T>(
    o: &Located<T>,
    metrics: &[Metric],
    args: &[Argument],
    target: Target,
    diags: &mut Diagnostics,
) {
    let spec = FieldPath::root().key("spec");
    for (i, m) in metrics.iter().enumerate() {
        let provider = spec.key("metrics").index(i).key("provider");
        if target == Target::Local && m.provider.job.is_some() {
            diags.push(warn(
                o,
                &provider.key("job"),
                "job metrics run only on Kubernetes: on one host each measurement is an Error"
                    .into(),
                "measure with a web, prometheus or builtin metric on one host",
            ));
        }
        if target == Target::Kubernetes && m.provider.builtin.is_some() {
            diags.push(warn(
                o,
                &provider.key("builtin"),
                "builtin metrics read the single-host router: on Kubernetes each measurement is an Error".into(),
                "measure with a prometheus, web or job metric on Kubernetes",
            ));
        }
    }
    if target != Target::Local {
        return;
    }
    for (i, a) in args.iter().enumerate() {
        if a.value_from
            .as_ref()
            .is_some_and(|v| v.secret_key_ref.is_some())
        {
            diags.push(warn(
                o,
                &spec.key("args").index(i).key("valueFrom").key("secretKeyRef"),
                "does nothing on one host: there are no Secrets, and a run that needs this argument fails".into(),
                "give the value in the Rollout's analysis args (`value:`) on one host",
            ));
        }
    }
}
