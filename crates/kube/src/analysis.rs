//! AnalysisRun objects for the planner's analysis gates: the Rollout controller creates runs
//! from the templates (the Rollout's own arguments resolved here; a template's
//! `valueFrom.secretKeyRef` is left for the measuring side), reads their phase, stops and
//! deletes them. Measuring them is the AnalysisRun controller's job ([`crate::analysisrun`]),
//! which writes their status.

use std::collections::BTreeMap;

use cutover_core::api::{
    AnalysisRun, AnalysisRunSpec, AnalysisTemplate, AnalysisTemplateSpec, Argument,
    ClusterAnalysisTemplate, POD_TEMPLATE_HASH_LABEL, PodTemplateHashValue, Rollout,
};
use cutover_core::plan::AnalysisRunRequest;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::controller::Context;
use crate::error::{Error, is_conflict, is_not_found};
use crate::{
    ANALYSIS_KIND_LABEL, ANALYSIS_REVISION_LABEL, ROLLOUT_LABEL, TERMINATE_REASON_ANNOTATION,
};

/// Creates the AnalysisRun a plan asked for, with the templates' metrics and the arguments
/// resolved from the Rollout. Nested template references inside templates are not followed.
pub async fn start(
    ctx: &Context,
    rollout: &Rollout,
    ns: &str,
    req: &AnalysisRunRequest,
) -> Result<(), Error> {
    let mut spec = AnalysisRunSpec::default();
    for t in &req.analysis.templates {
        let tmpl: AnalysisTemplateSpec = if t.cluster_scope.unwrap_or(false) {
            let api: Api<ClusterAnalysisTemplate> = Api::all(ctx.client.clone());
            api.get(&t.template_name)
                .await
                .map_err(|e| {
                    Error::kube(
                        format!("get clusteranalysistemplate {}", t.template_name),
                        e,
                    )
                })?
                .spec
                .into()
        } else {
            let api: Api<AnalysisTemplate> = Api::namespaced(ctx.client.clone(), ns);
            api.get(&t.template_name)
                .await
                .map_err(|e| {
                    Error::kube(format!("get analysistemplate {ns}/{}", t.template_name), e)
                })?
                .spec
        };
        spec.metrics.extend(tmpl.metrics);
        for arg in tmpl.args {
            if !spec.args.iter().any(|a| a.name == arg.name) {
                spec.args.push(arg);
            }
        }
        spec.dry_run.extend(tmpl.dry_run);
        spec.measurement_retention
            .extend(tmpl.measurement_retention);
    }
    spec.dry_run.extend(req.analysis.dry_run.iter().cloned());
    spec.measurement_retention
        .extend(req.analysis.measurement_retention.iter().cloned());
    for given in &req.analysis.args {
        let value = given.value.clone().or_else(|| {
            let from = given.value_from.as_ref()?;
            match from.pod_template_hash_value {
                Some(PodTemplateHashValue::Stable) => req.stable_hash.clone(),
                Some(PodTemplateHashValue::Latest) => Some(req.hash.clone()),
                None => from
                    .field_ref
                    .as_ref()
                    .and_then(|f| field(rollout, &f.field_path)),
            }
        });
        match spec.args.iter_mut().find(|a| a.name == given.name) {
            Some(a) => {
                a.value = value;
                a.value_from = None;
            }
            None => spec.args.push(Argument {
                name: given.name.clone(),
                value,
                value_from: None,
            }),
        }
    }
    let meta = req
        .analysis
        .analysis_run_metadata
        .clone()
        .unwrap_or_default();
    let mut labels: BTreeMap<String, String> = meta.labels;
    labels.insert(ROLLOUT_LABEL.into(), rollout.name_any());
    labels.insert(POD_TEMPLATE_HASH_LABEL.into(), req.hash.clone());
    labels.insert(ANALYSIS_KIND_LABEL.into(), req.kind.suffix().into());
    labels.insert(ANALYSIS_REVISION_LABEL.into(), req.revision.to_string());
    let run = AnalysisRun {
        metadata: ObjectMeta {
            name: Some(req.name.clone()),
            namespace: Some(ns.to_string()),
            labels: Some(labels),
            annotations: (!meta.annotations.is_empty()).then_some(meta.annotations),
            owner_references: rollout.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    };
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), ns);
    match api.create(&PostParams::default(), &run).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(Error::kube(
            format!("create analysisrun {ns}/{}", req.name),
            e,
        )),
    }
}

/// The simple field paths Argo documents for arguments: `metadata.name`, `metadata.namespace`,
/// `metadata.labels['k']`, `metadata.annotations['k']`.
fn field(rollout: &Rollout, path: &str) -> Option<String> {
    let key = |prefix: &str| {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_string)
    };
    match path {
        "metadata.name" => rollout.metadata.name.clone(),
        "metadata.namespace" => rollout.metadata.namespace.clone(),
        _ => {
            if let Some(k) = key("metadata.labels['") {
                rollout.labels().get(&k).cloned()
            } else {
                rollout
                    .annotations()
                    .get(&key("metadata.annotations['")?)
                    .cloned()
            }
        }
    }
}

/// Asks a run to stop (`spec.terminate`).
pub async fn terminate(ctx: &Context, ns: &str, name: &str, reason: &str) -> Result<(), Error> {
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "metadata": { "annotations": { TERMINATE_REASON_ANNOTATION: reason } },
        "spec": { "terminate": true },
    });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::kube(format!("terminate analysisrun {ns}/{name}"), e)),
    }
}

/// Deletes a finished run beyond the history limits.
pub async fn delete(ctx: &Context, ns: &str, name: &str) -> Result<(), Error> {
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), ns);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::kube(format!("delete analysisrun {ns}/{name}"), e)),
    }
}
