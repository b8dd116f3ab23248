//! Builds the planner's [`Observed`] snapshot of one Rollout from the API: its ReplicaSets, its
//! pods, the active and preview Services with what their EndpointSlices serve, and its
//! AnalysisRuns. Facts only: nothing an earlier pass computed.

use std::collections::{BTreeMap, BTreeSet};

use cutover_core::api::{AnalysisPhase, AnalysisRun, POD_TEMPLATE_HASH_LABEL, Rollout};
use cutover_core::plan::{
    AnalysisKind, Observed, ObservedAnalysisRun, ObservedRevision, ObservedService, RevisionRole,
};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DynamicObject, ListParams};
use kube::{Resource, ResourceExt};

use crate::controller::Context;
use crate::error::Error;
use crate::{
    ANALYSIS_KIND_LABEL, REVISION_ANNOTATION, ROLE_ANNOTATION, ROLLOUT_LABEL,
    SCALE_DOWN_DEADLINE_ANNOTATION,
};

/// What one observation saw: the planner's snapshot plus the objects the executor acts on.
pub struct World {
    /// The snapshot handed to `plan()`.
    pub observed: Observed,
    /// The rollout's ReplicaSets by pod-template hash.
    pub replica_sets: BTreeMap<String, ReplicaSet>,
    /// The rollout's pods (not being deleted) by pod-template hash.
    pub pods: BTreeMap<String, Vec<Pod>>,
}

/// Observes `rollout` in namespace `ns`.
pub async fn observe(ctx: &Context, rollout: &Rollout, ns: &str) -> Result<World, Error> {
    let name = rollout.name_any();
    let owned = ListParams::default().labels(&format!("{ROLLOUT_LABEL}={name}"));
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let run_api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), ns);
    let (rs_list, pod_list, run_list) = futures::try_join!(
        async {
            rs_api
                .list(&owned)
                .await
                .map_err(|e| Error::kube(format!("list replicasets of {ns}/{name}"), e))
        },
        async {
            pod_api
                .list(&owned)
                .await
                .map_err(|e| Error::kube(format!("list pods of {ns}/{name}"), e))
        },
        async {
            run_api
                .list(&owned)
                .await
                .map_err(|e| Error::kube(format!("list analysisruns of {ns}/{name}"), e))
        },
    )?;
    let uid = rollout.meta().uid.clone();
    let owned_by_rollout =
        |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
            uid.is_none() || refs.iter().any(|r| Some(&r.uid) == uid.as_ref())
        };

    let mut pods: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    let mut pod_hash: BTreeMap<String, String> = BTreeMap::new();
    for pod in pod_list.items {
        let Some(hash) = pod.labels().get(POD_TEMPLATE_HASH_LABEL).cloned() else {
            continue;
        };
        pod_hash.insert(pod.name_any(), hash.clone());
        if pod.meta().deletion_timestamp.is_none() {
            pods.entry(hash).or_default().push(pod);
        }
    }

    let mut replica_sets = BTreeMap::new();
    let mut revisions = Vec::new();
    for rs in rs_list.items {
        if !owned_by_rollout(rs.owner_references()) || rs.meta().deletion_timestamp.is_some() {
            continue;
        }
        let Some(hash) = rs.labels().get(POD_TEMPLATE_HASH_LABEL).cloned() else {
            continue;
        };
        revisions.push(observe_revision(&rs, &hash, pods.get(&hash)));
        replica_sets.insert(hash, rs);
    }

    let bg = &rollout.spec.strategy.blue_green;
    let active_service = observe_service(ctx, ns, &bg.active_service, &pod_hash).await?;
    let preview_service = match &bg.preview_service {
        Some(p) => observe_service(ctx, ns, p, &pod_hash).await?,
        None => None,
    };
    let analysis_runs = run_list
        .items
        .iter()
        .filter(|r| owned_by_rollout(r.owner_references()))
        .filter_map(observe_run)
        .collect();
    Ok(World {
        observed: Observed {
            rollout: rollout.clone(),
            revisions,
            active_service,
            preview_service,
            analysis_runs,
            migrations: None,
        },
        replica_sets,
        pods,
    })
}

fn observe_revision(rs: &ReplicaSet, hash: &str, pods: Option<&Vec<Pod>>) -> ObservedRevision {
    let annotations = rs.annotations();
    let status = rs.status.as_ref();
    ObservedRevision {
        hash: hash.to_string(),
        revision: annotations
            .get(REVISION_ANNOTATION)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        desired: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        replicas: status.map_or(0, |s| s.replicas),
        ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        available: status.and_then(|s| s.available_replicas).unwrap_or(0),
        scale_down_deadline: annotations
            .get(SCALE_DOWN_DEADLINE_ANNOTATION)
            .and_then(|d| d.parse::<Timestamp>().ok()),
        oldest_pod_started_at: pods
            .into_iter()
            .flatten()
            .filter_map(|p| p.status.as_ref()?.start_time.as_ref().map(|t| t.0))
            .min(),
        role: annotations
            .get(ROLE_ANNOTATION)
            .and_then(|r| match r.as_str() {
                "active" => Some(RevisionRole::Active),
                "preview" => Some(RevisionRole::Preview),
                _ => None,
            }),
    }
}

/// A Service, its selector's hash, and the hashes of the pods behind the ready endpoints of its
/// EndpointSlices. An endpoint whose pod is unknown (another app's pod, or one already gone)
/// counts as a foreign serving hash, so a switch is never confirmed while it is listed.
async fn observe_service(
    ctx: &Context,
    ns: &str,
    name: &str,
    pod_hash: &BTreeMap<String, String>,
) -> Result<Option<ObservedService>, Error> {
    if name.is_empty() {
        return Ok(None);
    }
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let Some(svc) = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("get service {ns}/{name}"), e))?
    else {
        return Ok(None);
    };
    let selector_hash = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.get(POD_TEMPLATE_HASH_LABEL))
        .cloned();
    let slices: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), ns, &ctx.apis.endpoint_slices);
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
        .await
        .map_err(|e| Error::kube(format!("list endpointslices of service {ns}/{name}"), e))?;
    let mut serving = BTreeSet::new();
    for slice in &list.items {
        for pod in ready_endpoint_pods(slice) {
            serving.insert(
                pod_hash
                    .get(&pod)
                    .cloned()
                    .unwrap_or_else(|| format!("unknown-pod:{pod}")),
            );
        }
    }
    Ok(Some(ObservedService {
        name: name.to_string(),
        selector_hash,
        serving: serving.into_iter().collect(),
    }))
}

/// Pod names behind the ready endpoints of an EndpointSlice (v1 and v1beta1 share these
/// fields). A missing `ready` condition means ready, as the EndpointSlice API documents.
pub fn ready_endpoint_pods(slice: &DynamicObject) -> Vec<String> {
    let Some(endpoints) = slice.data.get("endpoints").and_then(|e| e.as_array()) else {
        return Vec::new();
    };
    endpoints
        .iter()
        .filter(|ep| {
            ep.pointer("/conditions/ready")
                .and_then(|r| r.as_bool())
                .unwrap_or(true)
        })
        .map(|ep| {
            ep.pointer("/targetRef/name")
                .and_then(|n| n.as_str())
                .map_or_else(|| "no-target".to_string(), str::to_string)
        })
        .collect()
}

fn observe_run(run: &AnalysisRun) -> Option<ObservedAnalysisRun> {
    let labels = run.labels();
    let kind = match labels.get(ANALYSIS_KIND_LABEL).map(String::as_str) {
        Some("pre") => AnalysisKind::PrePromotion,
        Some("post") => AnalysisKind::PostPromotion,
        _ => return None,
    };
    let status = run.status.as_ref();
    Some(ObservedAnalysisRun {
        name: run.name_any(),
        kind,
        hash: labels.get(POD_TEMPLATE_HASH_LABEL)?.clone(),
        phase: status
            .and_then(|s| s.phase)
            .unwrap_or(AnalysisPhase::Pending),
        message: status.and_then(|s| s.message.clone()),
        created_at: run
            .meta()
            .creation_timestamp
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        terminated: run.spec.terminate.unwrap_or(false),
    })
}
