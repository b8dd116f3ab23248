//! What users do to a Rollout on Kubernetes, as the same patches the single-host backend makes
//! in its store: promote and abort/retry patch the status subresource, pause/resume/restart/
//! set image/undo patch the spec; terminating an AnalysisRun patches its `spec.terminate`. The
//! controllers act on them in their next reconcile. Also the read side: a Rollout with its
//! ReplicaSets, pods, Services and AnalysisRuns, for `get rollout`, and one AnalysisRun, for
//! `get analysisrun`.

use cutover_core::api::{AnalysisRun, POD_TEMPLATE_HASH_LABEL, Rollout};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::error::Error;
use crate::{REVISION_ANNOTATION, ROLLOUT_LABEL};

pub use cutover_core::ops::Operation;

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Refused(String),
    /// The object named does not exist (`rollout NS/NAME: not found`).
    #[error("{0}")]
    NotFound(String),
    /// The operation has nothing to act on ("nothing to abort: rollout is Healthy"); nothing
    /// was patched.
    #[error("{0}")]
    NothingToDo(String),
    /// The API server failed.
    #[error(transparent)]
    Api(#[from] Error),
}

fn api_err(what: String) -> impl FnOnce(kube::Error) -> OpError {
    move |source| {
        if let kube::Error::Api(ref status) = source
            && status.code == 404
        {
            return OpError::NotFound(format!("{what}: not found"));
        }
        OpError::Api(Error::Kube { what, source })
    }
}

/// Applies an operation; returns a message for the user.
pub async fn operate(
    client: &Client,
    namespace: &str,
    name: &str,
    op: &Operation,
) -> Result<String, OpError> {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    let what = format!("rollout {namespace}/{name}");
    let rollout = rollouts.get(name).await.map_err(api_err(what.clone()))?;
    if let Some(why) = cutover_core::ops::nothing_to_act_on(&rollout, op) {
        return Err(OpError::NothingToDo(why));
    }
    let merge = PatchParams::default();
    let status_patch = |body: serde_json::Value| {
        let rollouts = rollouts.clone();
        let what = what.clone();
        async move {
            rollouts
                .patch_status(name, &merge_params(), &Patch::Merge(body))
                .await
                .map(|_| ())
                .map_err(api_err(what))
        }
    };
    let spec_patch = |body: serde_json::Value| {
        let rollouts = rollouts.clone();
        let what = what.clone();
        let merge = merge.clone();
        async move {
            rollouts
                .patch(name, &merge, &Patch::Merge(body))
                .await
                .map(|_| ())
                .map_err(api_err(what))
        }
    };
    // The same merge patches Argo CD's actions make (deploy/argocd): status first, so a
    // promote releases the pause before a manual pause in the spec goes.
    if let Some(patches) = cutover_core::ops::merge_patches(&rollout, op, Timestamp::now()) {
        if let Some(body) = patches.status {
            status_patch(body).await?;
        }
        if let Some(body) = patches.spec {
            spec_patch(body).await?;
        }
    }
    match op {
        Operation::Promote { full } => Ok(format!(
            "rollout '{name}' promoted{}",
            if *full { " (full)" } else { "" }
        )),
        Operation::Abort => Ok(format!("rollout '{name}' aborted")),
        Operation::Retry => Ok(format!("rollout '{name}' retried")),
        Operation::Pause => Ok(format!("rollout '{name}' paused")),
        Operation::Resume => Ok(format!("rollout '{name}' resumed")),
        Operation::Restart => Ok(format!("rollout '{name}' restarts")),
        Operation::SetImage { container, image } => {
            let mut template = rollout.spec.template.clone();
            cutover_core::ops::set_image(&mut template, container, image, name)
                .map_err(OpError::Refused)?;
            spec_patch(json!({ "spec": { "template": template } })).await?;
            Ok(format!("rollout '{name}' image updated"))
        }
        Operation::Undo { to_revision } => {
            let snapshot = snapshot(client, namespace, name).await?;
            let current = rollout
                .status
                .as_ref()
                .and_then(|s| s.current_revision)
                .unwrap_or(0);
            let target = snapshot
                .replica_sets
                .iter()
                .filter_map(|rs| revision_of(rs).map(|r| (r, rs)))
                .filter(|(r, _)| match to_revision {
                    Some(n) => r == n,
                    None => *r < current,
                })
                .max_by_key(|(r, _)| *r)
                .ok_or_else(|| {
                    OpError::Refused(match to_revision {
                        Some(n) => format!("rollout '{name}' has no revision {n}"),
                        None => format!(
                            "rollout '{name}' has no revision before {current} to go back to"
                        ),
                    })
                })?;
            let template = original_template(target.1).ok_or_else(|| {
                OpError::Refused(format!("revision {} has no pod template", target.0))
            })?;
            // Replace the template whole: a merge patch would keep fields the old revision
            // does not have.
            let patch: json_patch::Patch = serde_json::from_value(json!([
                { "op": "replace", "path": "/spec/template", "value": template }
            ]))
            .map_err(|e| OpError::Refused(format!("building the undo patch: {e}")))?;
            rollouts
                .patch(name, &merge, &Patch::Json::<()>(patch))
                .await
                .map_err(api_err(what.clone()))?;
            Ok(format!("rollout '{name}' undo to revision {}", target.0))
        }
    }
}

fn merge_params() -> PatchParams {
    PatchParams::default()
}

/// The Rollout template a ReplicaSet was made from: its annotation, else its own template
/// without the labels the controller adds.
fn original_template(rs: &ReplicaSet) -> Option<k8s_openapi::api::core::v1::PodTemplateSpec> {
    if let Some(t) = rs
        .annotations()
        .get(crate::TEMPLATE_ANNOTATION)
        .and_then(|json| serde_json::from_str(json).ok())
    {
        return Some(t);
    }
    let mut template = rs.spec.as_ref()?.template.clone()?;
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
        labels.remove(ROLLOUT_LABEL);
    }
    Some(template)
}

/// The revision number of a ReplicaSet.
pub fn revision_of(rs: &ReplicaSet) -> Option<i64> {
    rs.annotations().get(REVISION_ANNOTATION)?.parse().ok()
}

/// A Rollout with what it owns, for display.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The Rollout.
    pub rollout: Rollout,
    /// Its ReplicaSets.
    pub replica_sets: Vec<ReplicaSet>,
    /// Its pods.
    pub pods: Vec<Pod>,
    /// Its active and preview Services (those that exist).
    pub services: Vec<Service>,
    /// Its AnalysisRuns (labelled with its name), oldest first.
    pub analysis_runs: Vec<AnalysisRun>,
}

/// Reads a Rollout and what it owns.
pub async fn snapshot(client: &Client, namespace: &str, name: &str) -> Result<Snapshot, OpError> {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    let rollout = rollouts
        .get(name)
        .await
        .map_err(api_err(format!("rollout {namespace}/{name}")))?;
    let selector = ListParams::default().labels(&format!("{ROLLOUT_LABEL}={name}"));
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), namespace)
        .list(&selector)
        .await
        .map_err(api_err(format!("list replicasets of {namespace}/{name}")))?
        .items;
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&selector)
        .await
        .map_err(api_err(format!("list pods of {namespace}/{name}")))?
        .items;
    let services_api = Api::<Service>::namespaced(client.clone(), namespace);
    let bg = &rollout.spec.strategy.blue_green;
    let mut services = Vec::new();
    for service in std::iter::once(&bg.active_service).chain(bg.preview_service.iter()) {
        if let Some(s) = services_api
            .get_opt(service)
            .await
            .map_err(api_err(format!("service {namespace}/{service}")))?
        {
            services.push(s);
        }
    }
    let analysis_runs = analysis_runs_of(client, namespace, name).await?;
    Ok(Snapshot {
        rollout,
        replica_sets,
        pods,
        services,
        analysis_runs,
    })
}

/// Rollouts of a namespace, or of all namespaces.
pub async fn list(client: &Client, namespace: Option<&str>) -> Result<Vec<Rollout>, OpError> {
    let api: Api<Rollout> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(api_err("list rollouts".to_string()))?
        .items)
}

/// The AnalysisRuns of a Rollout (labelled `cutover.dev/rollout=<name>`), oldest first.
pub async fn analysis_runs_of(
    client: &Client,
    namespace: &str,
    rollout: &str,
) -> Result<Vec<AnalysisRun>, OpError> {
    let selector = ListParams::default().labels(&format!("{ROLLOUT_LABEL}={rollout}"));
    let mut runs = Api::<AnalysisRun>::namespaced(client.clone(), namespace)
        .list(&selector)
        .await
        .map_err(api_err(format!(
            "list analysisruns of {namespace}/{rollout}"
        )))?
        .items;
    runs.sort_by_key(|r| (r.metadata.creation_timestamp.clone(), r.name_any()));
    Ok(runs)
}

/// One AnalysisRun; a missing one is refused, naming namespace and name.
pub async fn analysis_run(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<AnalysisRun, OpError> {
    Api::<AnalysisRun>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(api_err(format!("analysisrun {namespace}/{name}")))
}

/// Asks the controller to stop measuring an AnalysisRun (`spec.terminate: true`, as Argo's
/// `terminate analysisrun`); returns a message for the user. A finished run is left alone.
pub async fn terminate_analysis_run(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<String, OpError> {
    let run = analysis_run(client, namespace, name).await?;
    if let Some(phase) = run
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .filter(|p| p.is_completed())
    {
        return Ok(format!(
            "analysisrun '{name}' already finished ({phase:?}); nothing to terminate"
        ));
    }
    if run.spec.terminate == Some(true) {
        return Ok(format!("analysisrun '{name}' is already terminating"));
    }
    Api::<AnalysisRun>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "terminate": true } })),
        )
        .await
        .map_err(api_err(format!("analysisrun {namespace}/{name}")))?;
    Ok(format!("analysisrun '{name}' terminated"))
}
