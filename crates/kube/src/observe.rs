//! Builds the planner's [`Observed`] snapshot of one Rollout from the API: its ReplicaSets, its
//! pods, the active and preview Services with what their EndpointSlices serve, and its
//! AnalysisRuns. Facts only: nothing an earlier pass computed. It reads the watch caches
//! ([`crate::cache`]), so it makes no API call.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cutover_core::api::{AnalysisPhase, AnalysisRun, POD_TEMPLATE_HASH_LABEL, Rollout};
use cutover_core::plan::{
    AnalysisKind, Observed, ObservedAnalysisRun, ObservedRevision, ObservedService, RevisionRole,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use crate::cache::{Caches, owned_by};
use crate::cached::{CachedPod, CachedReplicaSet, CachedService, Keys, Labelled};
use crate::{
    ANALYSIS_KIND_LABEL, ANALYSIS_REVISION_LABEL, REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION,
    ROLE_ANNOTATION, ROLE_METADATA_ANNOTATION, SCALE_DOWN_DEADLINE_ANNOTATION, SELECTOR_ANNOTATION,
};

/// What one observation saw: the planner's snapshot plus the objects the executor acts on.
pub struct World {
    /// The snapshot handed to `plan()`.
    pub observed: Observed,
    /// The rollout's ReplicaSets by pod-template hash (as cached).
    pub replica_sets: BTreeMap<String, Arc<CachedReplicaSet>>,
    /// The rollout's pods (not being deleted) by pod-template hash.
    pub pods: BTreeMap<String, Vec<Arc<CachedPod>>>,
    /// The active and preview Services as cached, by name.
    pub services: BTreeMap<String, Arc<CachedService>>,
    /// The rollout's AnalysisRuns as cached, by name.
    pub runs: BTreeMap<String, Arc<AnalysisRun>>,
}

/// Observes `rollout` in namespace `ns` from the controller's watch caches: no API calls.
pub fn observe(caches: &Caches, rollout: &Rollout, ns: &str) -> World {
    let name = rollout.name_any();
    let uid = rollout.meta().uid.clone();
    let owned_by_rollout = |refs: &[OwnerReference]| {
        uid.is_none() || refs.iter().any(|r| Some(&r.uid) == uid.as_ref())
    };

    let mut pods: BTreeMap<String, Vec<Arc<CachedPod>>> = BTreeMap::new();
    let mut pod_hash: BTreeMap<String, String> = BTreeMap::new();
    for pod in owned_by(&caches.pods, ns, &name) {
        let Some(hash) = pod.label(POD_TEMPLATE_HASH_LABEL).map(str::to_string) else {
            continue;
        };
        pod_hash.insert(pod.name_any(), hash.clone());
        if pod.meta().deletion_timestamp.is_none() {
            pods.entry(hash).or_default().push(pod);
        }
    }
    // The store is a hash map: sort so that actions over pods run in a stable order.
    for list in pods.values_mut() {
        list.sort_by_key(|p| p.name_any());
    }

    let mut replica_sets = BTreeMap::new();
    let mut revisions = Vec::new();
    for rs in owned_by(&caches.replica_sets, ns, &name) {
        if !owned_by_rollout(rs.owner_references()) || rs.meta().deletion_timestamp.is_some() {
            continue;
        }
        let Some(hash) = rs.label(POD_TEMPLATE_HASH_LABEL).map(str::to_string) else {
            continue;
        };
        revisions.push(observe_revision(&rs, &hash, pods.get(&hash)));
        replica_sets.insert(hash, rs);
    }
    revisions.sort_by(|a, b| a.revision.cmp(&b.revision).then(a.hash.cmp(&b.hash)));

    let bg = &rollout.spec.strategy.blue_green;
    let mut services = BTreeMap::new();
    let mut observe_named = |service: Option<&str>| {
        let svc = service
            .filter(|s| !s.is_empty())
            .and_then(|s| caches.services.get(&ObjectRef::new(s).within(ns)))?;
        let observed = observe_service(caches, ns, &svc, &pod_hash);
        services.insert(svc.name_any(), svc);
        Some(observed)
    };
    let active_service = observe_named(Some(&bg.active_service));
    let preview_service = observe_named(bg.preview_service.as_deref());

    let mut runs = BTreeMap::new();
    let mut analysis_runs = Vec::new();
    for run in owned_by(&caches.runs, ns, &name) {
        if !owned_by_rollout(run.owner_references()) {
            continue;
        }
        analysis_runs.extend(observe_run(&run));
        runs.insert(run.name_any(), run);
    }
    analysis_runs.sort_by(|a: &ObservedAnalysisRun, b| a.name.cmp(&b.name));
    World {
        observed: Observed {
            rollout: rollout.clone(),
            revisions,
            active_service,
            preview_service,
            analysis_runs,
            migrations: crate::migrations::observe(caches, rollout, ns),
        },
        replica_sets,
        pods,
        services,
        runs,
    }
}

fn observe_revision(
    rs: &CachedReplicaSet,
    hash: &str,
    pods: Option<&Vec<Arc<CachedPod>>>,
) -> ObservedRevision {
    let annotations = &rs.annotations;
    let revision = annotations
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    ObservedRevision {
        hash: hash.to_string(),
        revision,
        created_revision: created_revision(annotations, revision),
        desired: rs.desired.unwrap_or(1),
        replicas: rs.replicas,
        ready: rs.ready,
        available: rs.available,
        scale_down_deadline: annotations
            .get(SCALE_DOWN_DEADLINE_ANNOTATION)
            .and_then(|d| d.parse::<Timestamp>().ok()),
        oldest_pod_started_at: pods
            .into_iter()
            .flatten()
            .filter_map(|p| p.started_at.as_ref().map(|t| t.0))
            .min(),
        role: annotations.get(ROLE_ANNOTATION).and_then(|r| match r {
            "active" => Some(RevisionRole::Active),
            "preview" => Some(RevisionRole::Preview),
            _ => None,
        }),
        role_metadata: annotations
            .get(ROLE_METADATA_ANNOTATION)
            .and_then(|m| serde_json::from_str(m).ok()),
        unavailable_reason: unavailable_reason(rs, pods.map(Vec::as_slice).unwrap_or_default()),
    }
}

/// The number the revision was created with: the first of its revision history, or its
/// number when it never changed.
fn created_revision(annotations: &Keys, revision: i64) -> i64 {
    annotations
        .get(REVISION_HISTORY_ANNOTATION)
        .and_then(|h| h.split(',').next())
        .and_then(|first| first.trim().parse().ok())
        .unwrap_or(revision)
}

/// Waiting reasons of a container that will not become ready by waiting longer.
const STUCK_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Why a revision's pods are not available, when the cluster says more than a count: the
/// ReplicaSet cannot create pods (quota, admission, an invalid template), or a container is
/// stuck (crash loop with its last exit code and message, an image that cannot be pulled).
fn unavailable_reason(rs: &CachedReplicaSet, pods: &[Arc<CachedPod>]) -> Option<String> {
    if let Some(failure) = &rs.replica_failure {
        return Some(format!("cannot create pods: {failure}"));
    }
    pods.iter().find_map(|pod| {
        pod.containers.iter().find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.as_deref()?;
            if !STUCK_REASONS.contains(&reason) {
                return None;
            }
            let mut text = format!("pod {} container {}: {reason}", pod.name_any(), c.name);
            if let Some(last) = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
                text.push_str(&format!(
                    " (exit code {}, {} restarts)",
                    last.exit_code, c.restart_count
                ));
                if let Some(m) = last.message.as_deref().filter(|m| !m.trim().is_empty()) {
                    text.push_str(&format!(": {}", last_line(m)));
                }
            } else if let Some(m) = waiting.message.as_deref() {
                text.push_str(&format!(": {}", last_line(m)));
            }
            Some(text)
        })
    })
}

fn last_line(text: &str) -> &str {
    text.trim_end().lines().last().unwrap_or_default()
}

/// A Service, its selector's hash, and the hashes of the pods behind the ready endpoints of its
/// EndpointSlices. An endpoint whose pod is unknown (another app's pod, or one already gone)
/// counts as a foreign serving hash, so a switch is never confirmed while it is listed.
fn observe_service(
    caches: &Caches,
    ns: &str,
    svc: &CachedService,
    pod_hash: &BTreeMap<String, String>,
) -> ObservedService {
    let name = svc.name_any();
    let selector_hash = svc.selector_hash.clone();
    let slices = caches.slices.state_filter(|slice| {
        slice.metadata.namespace.as_deref() == Some(ns)
            && slice.service.as_deref() == Some(name.as_str())
    });
    let mut serving = BTreeSet::new();
    for pod in slices.iter().flat_map(|slice| &slice.ready_pods) {
        serving.insert(
            pod_hash
                .get(pod)
                .cloned()
                .unwrap_or_else(|| format!("unknown-pod:{pod}")),
        );
    }
    ObservedService {
        name,
        selector_hash,
        serving: serving.into_iter().collect(),
        recorded_selector: svc.annotations.get(SELECTOR_ANNOTATION).map(str::to_string),
    }
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
        revision: labels
            .get(ANALYSIS_REVISION_LABEL)
            .and_then(|r| r.parse().ok()),
    })
}
