//! The compact forms in which the controller caches the objects it has most of: ReplicaSets,
//! pods, Services and EndpointSlices (two, one, two and two per Rollout).
//!
//! A k8s-openapi object is as large as every field its kind can have, set or not (a
//! `ReplicaSet` is 2,360 bytes before any of its strings, a `Pod` 2,464), and each label or
//! annotation map is a `BTreeMap` whose first node holds eleven entries. The heap profile of the
//! controller at 1,000 Rollouts put 39 % of the heap in such bodies and 28 % in such nodes
//! (docs/benchmarks.md). These types deserialize only the fields observation and execution
//! read, and keep the few labels and annotations they read as a sorted vector; the rest of each
//! object is skipped by the parser and never allocated.
//!
//! Each type is listed and watched through `Api<Self>` like the kind it stands for (it takes
//! the kind's API group, version and path; for EndpointSlices the version discovery found),
//! so writes still go through the full type.

use std::borrow::Cow;
use std::collections::BTreeMap;

use cutover_core::api::POD_TEMPLATE_HASH_LABEL;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
    PodCondition, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::{ApiResource, DynamicResourceScope};
use serde::Deserialize;

use crate::cache::SERVICE_NAME_LABEL;
use crate::migrations::MIGRATION_JOB_LABEL;
use crate::{
    MANAGED_BY_ANNOTATION, REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION, ROLE_ANNOTATION,
    ROLE_METADATA_ANNOTATION, ROLLOUT_LABEL, SCALE_DOWN_DEADLINE_ANNOTATION, SELECTOR_ANNOTATION,
};

/// The labels or annotations a cached object keeps: the keys cutover reads, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keys(Vec<(String, String)>);

impl Keys {
    /// The entries of `map` whose key is one of `kept`.
    fn keep(map: Option<BTreeMap<String, String>>, kept: &[&str]) -> Self {
        let mut entries: Vec<(String, String)> = map
            .into_iter()
            .flatten()
            .filter(|(k, _)| kept.contains(&k.as_str()))
            .collect();
        // From a BTreeMap: already sorted; the vector is sized to what it holds.
        entries.shrink_to_fit();
        Self(entries)
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }
}

/// What a cached object answers about the Rollout it belongs to.
pub trait Labelled {
    /// The value of label `key`, when cutover reads that label of this kind.
    fn label(&self, key: &str) -> Option<&str>;
}

/// A kind cached whole: its labels map.
fn label_of<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

impl Labelled for cutover_core::api::AnalysisRun {
    fn label(&self, key: &str) -> Option<&str> {
        label_of(&self.metadata, key)
    }
}

impl Labelled for k8s_openapi::api::batch::v1::Job {
    fn label(&self, key: &str) -> Option<&str> {
        label_of(&self.metadata, key)
    }
}

/// The metadata a cached object keeps: identity, version and deletion. Labels and
/// annotations go to [`Keys`]; managedFields and the rest are dropped.
fn identity(meta: ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        deletion_timestamp: meta.deletion_timestamp,
        ..ObjectMeta::default()
    }
}

/// Implements the k8s-openapi traits (and so `kube::Resource`) for a cached form with the API
/// coordinates of the kind it stands for.
macro_rules! stands_for {
    ($cached:ty, $kind:ty) => {
        impl k8s_openapi::Resource for $cached {
            const API_VERSION: &'static str = <$kind as k8s_openapi::Resource>::API_VERSION;
            const GROUP: &'static str = <$kind as k8s_openapi::Resource>::GROUP;
            const KIND: &'static str = <$kind as k8s_openapi::Resource>::KIND;
            const VERSION: &'static str = <$kind as k8s_openapi::Resource>::VERSION;
            const URL_PATH_SEGMENT: &'static str =
                <$kind as k8s_openapi::Resource>::URL_PATH_SEGMENT;
            type Scope = <$kind as k8s_openapi::Resource>::Scope;
        }

        impl k8s_openapi::Metadata for $cached {
            type Ty = ObjectMeta;

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// A ReplicaSet of a Rollout: its revision's counts and cutover's annotations.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "wire::ReplicaSet")]
pub struct CachedReplicaSet {
    /// Identity, version, deletion and owners (the Rollout).
    pub metadata: ObjectMeta,
    /// The Rollout label and the pod-template hash.
    pub labels: Keys,
    /// Revision, history, role, role metadata and scale-down deadline.
    pub annotations: Keys,
    /// `spec.replicas` (Kubernetes' default is 1).
    pub desired: Option<i32>,
    /// `status.replicas`.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// Why the ReplicaSet cannot create pods (a `ReplicaFailure` condition that is true): its
    /// message, else its reason.
    pub replica_failure: Option<String>,
}

stands_for!(CachedReplicaSet, ReplicaSet);

impl Labelled for CachedReplicaSet {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key)
    }
}

/// A pod of a Rollout or of a migration Job: start, readiness and what its containers say.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "wire::Pod")]
pub struct CachedPod {
    /// Identity, version and deletion.
    pub metadata: ObjectMeta,
    /// The Rollout label, the pod-template hash and the migration Job label.
    pub labels: Keys,
    /// `status.startTime`.
    pub started_at: Option<Time>,
    /// Whether the Ready condition is true.
    pub ready: bool,
    /// For a migration Job's pod, its containers' terminations (the Job's report); for any
    /// other pod, its containers that are not ready, with why (waiting reason, last exit),
    /// which tells a crash loop from a slow start.
    pub containers: Vec<ContainerStatus>,
}

stands_for!(CachedPod, Pod);

impl Labelled for CachedPod {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key)
    }
}

/// A Service: the revision its selector names and cutover's record of it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "wire::Service")]
pub struct CachedService {
    /// Identity and version.
    pub metadata: ObjectMeta,
    /// The selector cutover recorded and the Rollout that manages it.
    pub annotations: Keys,
    /// The `rollouts-pod-template-hash` of the selector.
    pub selector_hash: Option<String>,
}

stands_for!(CachedService, Service);

/// An EndpointSlice of a Service: which pods serve behind its ready endpoints.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "wire::EndpointSlice")]
pub struct CachedSlice {
    /// Identity and version.
    pub metadata: ObjectMeta,
    /// The Service it belongs to (its `kubernetes.io/service-name` label).
    pub service: Option<String>,
    /// The names of the pods behind its ready endpoints; an endpoint without a pod counts as
    /// `no-target`, so a switch is never confirmed while it is listed.
    pub ready_pods: Vec<String>,
}

/// EndpointSlices are served as `discovery.k8s.io/v1` or, before Kubernetes 1.21, `v1beta1`
/// (both have the fields read here): the version is the one discovery found.
impl kube::Resource for CachedSlice {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The longest message kept from a container status: enough for a log line, bounded so a
/// chatty crash cannot grow the cache.
const KEPT_MESSAGE: usize = 512;

/// The shapes parsed off the wire: only the fields kept, so the parser skips the rest of each
/// object without allocating it.
mod wire {
    use super::*;

    #[derive(Deserialize)]
    pub struct ReplicaSet {
        #[serde(default)]
        metadata: ObjectMeta,
        #[serde(default)]
        spec: Option<ReplicaSetSpec>,
        #[serde(default)]
        status: Option<ReplicaSetStatus>,
    }

    #[derive(Deserialize)]
    struct ReplicaSetSpec {
        #[serde(default)]
        replicas: Option<i32>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ReplicaSetStatus {
        #[serde(default)]
        replicas: i32,
        #[serde(default)]
        ready_replicas: Option<i32>,
        #[serde(default)]
        available_replicas: Option<i32>,
        #[serde(default)]
        conditions: Option<Vec<ReplicaSetCondition>>,
    }

    impl From<ReplicaSet> for super::CachedReplicaSet {
        fn from(mut rs: ReplicaSet) -> Self {
            let labels = Keys::keep(
                rs.metadata.labels.take(),
                &[ROLLOUT_LABEL, POD_TEMPLATE_HASH_LABEL],
            );
            let annotations = Keys::keep(
                rs.metadata.annotations.take(),
                &[
                    REVISION_ANNOTATION,
                    REVISION_HISTORY_ANNOTATION,
                    ROLE_ANNOTATION,
                    ROLE_METADATA_ANNOTATION,
                    SCALE_DOWN_DEADLINE_ANNOTATION,
                ],
            );
            let status = rs.status;
            let replica_failure = status.as_ref().and_then(|s| {
                s.conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                    .map(|c| {
                        c.message
                            .clone()
                            .or_else(|| c.reason.clone())
                            .unwrap_or_else(|| "ReplicaFailure".to_string())
                    })
            });
            // A ReplicaSet's owner is checked against the Rollout (and triggers it); other
            // kinds are found by label or name.
            let owners = rs.metadata.owner_references.take();
            Self {
                metadata: ObjectMeta {
                    owner_references: owners,
                    ..identity(rs.metadata)
                },
                labels,
                annotations,
                desired: rs.spec.and_then(|s| s.replicas),
                replicas: status.as_ref().map_or(0, |s| s.replicas),
                ready: status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
                available: status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0),
                replica_failure,
            }
        }
    }

    #[derive(Deserialize)]
    pub struct Pod {
        #[serde(default)]
        metadata: ObjectMeta,
        #[serde(default)]
        status: Option<PodStatus>,
    }

    #[derive(Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PodStatus {
        #[serde(default)]
        start_time: Option<Time>,
        #[serde(default)]
        conditions: Option<Vec<PodCondition>>,
        #[serde(default)]
        container_statuses: Option<Vec<ContainerStatus>>,
    }

    impl From<Pod> for super::CachedPod {
        fn from(mut pod: Pod) -> Self {
            let labels = Keys::keep(
                pod.metadata.labels.take(),
                &[ROLLOUT_LABEL, POD_TEMPLATE_HASH_LABEL, MIGRATION_JOB_LABEL],
            );
            let migration = labels.get(MIGRATION_JOB_LABEL).is_some();
            let status = pod.status.unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let mut containers: Vec<ContainerStatus> = status
                .container_statuses
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    if migration {
                        Some(super::termination_only(c))
                    } else {
                        super::unready_only(c)
                    }
                })
                .collect();
            containers.shrink_to_fit();
            Self {
                metadata: identity(pod.metadata),
                labels,
                started_at: status.start_time,
                ready,
                containers,
            }
        }
    }

    #[derive(Deserialize)]
    pub struct Service {
        #[serde(default)]
        metadata: ObjectMeta,
        #[serde(default)]
        spec: Option<ServiceSpec>,
    }

    #[derive(Deserialize)]
    struct ServiceSpec {
        #[serde(default)]
        selector: Option<BTreeMap<String, String>>,
    }

    impl From<Service> for super::CachedService {
        fn from(mut svc: Service) -> Self {
            let annotations = Keys::keep(
                svc.metadata.annotations.take(),
                &[SELECTOR_ANNOTATION, MANAGED_BY_ANNOTATION],
            );
            Self {
                metadata: identity(svc.metadata),
                annotations,
                selector_hash: svc
                    .spec
                    .and_then(|s| s.selector)
                    .and_then(|mut s| s.remove(POD_TEMPLATE_HASH_LABEL)),
            }
        }
    }

    #[derive(Deserialize)]
    pub struct EndpointSlice {
        #[serde(default)]
        metadata: ObjectMeta,
        #[serde(default)]
        endpoints: Option<Vec<Endpoint>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Endpoint {
        #[serde(default)]
        conditions: Option<EndpointConditions>,
        #[serde(default)]
        target_ref: Option<TargetRef>,
    }

    #[derive(Deserialize)]
    struct EndpointConditions {
        #[serde(default)]
        ready: Option<bool>,
    }

    #[derive(Deserialize)]
    struct TargetRef {
        #[serde(default)]
        name: Option<String>,
    }

    impl From<EndpointSlice> for super::CachedSlice {
        fn from(mut slice: EndpointSlice) -> Self {
            let service = slice
                .metadata
                .labels
                .take()
                .and_then(|mut l| l.remove(SERVICE_NAME_LABEL));
            // A missing `ready` condition means ready, as the EndpointSlice API documents.
            let mut ready_pods: Vec<String> = slice
                .endpoints
                .into_iter()
                .flatten()
                .filter(|ep| ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
                .map(|ep| {
                    ep.target_ref
                        .and_then(|t| t.name)
                        .unwrap_or_else(|| "no-target".to_string())
                })
                .collect();
            ready_pods.shrink_to_fit();
            Self {
                metadata: identity(slice.metadata),
                service,
                ready_pods,
            }
        }
    }
}

/// A container that is not ready, with its waiting reason and last exit; none when ready.
fn unready_only(status: ContainerStatus) -> Option<ContainerStatus> {
    if status.ready {
        return None;
    }
    let cut = |m: Option<String>| m.map(|m| m.chars().take(KEPT_MESSAGE).collect::<String>());
    let waiting = status
        .state
        .and_then(|s| s.waiting)
        .map(|w| ContainerStateWaiting {
            reason: w.reason,
            message: cut(w.message),
        });
    let last = status
        .last_state
        .and_then(|s| s.terminated)
        .map(|t| ContainerStateTerminated {
            exit_code: t.exit_code,
            reason: t.reason,
            message: cut(t.message),
            ..ContainerStateTerminated::default()
        });
    Some(ContainerStatus {
        name: status.name,
        restart_count: status.restart_count,
        state: Some(ContainerState {
            waiting,
            ..ContainerState::default()
        }),
        last_state: last.map(|t| ContainerState {
            terminated: Some(t),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    })
}

/// A migration container's termination: exit code, message (the report) and reason.
fn termination_only(status: ContainerStatus) -> ContainerStatus {
    let terminated = status
        .state
        .and_then(|s| s.terminated)
        .map(|t| ContainerStateTerminated {
            exit_code: t.exit_code,
            message: t.message,
            reason: t.reason,
            finished_at: t.finished_at,
            ..ContainerStateTerminated::default()
        });
    ContainerStatus {
        name: status.name,
        state: Some(ContainerState {
            terminated,
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;
    use serde_json::json;

    fn parse<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn each_form_is_listed_and_watched_at_the_path_of_its_kind() {
        assert_eq!(
            CachedReplicaSet::url_path(&(), Some("ns")),
            "/apis/apps/v1/namespaces/ns/replicasets"
        );
        assert_eq!(CachedPod::url_path(&(), None), "/api/v1/pods");
        assert_eq!(
            CachedService::url_path(&(), Some("ns")),
            "/api/v1/namespaces/ns/services"
        );
        assert_eq!(CachedReplicaSet::kind(&()), "ReplicaSet");
    }

    #[test]
    fn a_replica_set_keeps_its_counts_and_cutovers_keys_only() {
        let rs: CachedReplicaSet = parse(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": "app-abc", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "labels": { "app": "web", ROLLOUT_LABEL: "app", POD_TEMPLATE_HASH_LABEL: "abc" },
                "annotations": {
                    REVISION_ANNOTATION: "3", REVISION_HISTORY_ANNOTATION: "1",
                    "rollout.cutover.dev/template": "{…}", "note": "x" },
                "ownerReferences": [{ "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
                    "name": "app", "uid": "r1", "controller": true }],
                "managedFields": [{ "manager": "cutover", "operation": "Update" }]
            },
            "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "web" } },
                "template": { "spec": { "containers": [{ "name": "c", "image": "i" }] } } },
            "status": { "replicas": 3, "readyReplicas": 2, "availableReplicas": 1,
                "conditions": [{ "type": "ReplicaFailure", "status": "True",
                    "reason": "FailedCreate", "message": "quota exceeded" }] }
        }));
        assert_eq!(rs.label(ROLLOUT_LABEL), Some("app"));
        assert_eq!(rs.label(POD_TEMPLATE_HASH_LABEL), Some("abc"));
        assert_eq!(
            rs.label("app"),
            None,
            "labels cutover does not read are dropped"
        );
        assert_eq!(rs.annotations.get(REVISION_ANNOTATION), Some("3"));
        assert_eq!(rs.annotations.get(REVISION_HISTORY_ANNOTATION), Some("1"));
        assert_eq!(rs.annotations.get("note"), None);
        assert_eq!(rs.annotations.get("rollout.cutover.dev/template"), None);
        assert_eq!(
            (rs.desired, rs.replicas, rs.ready, rs.available),
            (Some(3), 3, 2, 1)
        );
        assert_eq!(rs.replica_failure.as_deref(), Some("quota exceeded"));
        let meta = rs.meta();
        assert_eq!(meta.name.as_deref(), Some("app-abc"));
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert_eq!(meta.owner_references.as_ref().map(Vec::len), Some(1));
        assert!(meta.managed_fields.is_none() && meta.labels.is_none());
    }

    #[test]
    fn a_replica_set_without_spec_or_status_reads_as_empty() {
        let rs: CachedReplicaSet = parse(json!({
            "metadata": { "name": "a", "labels": null }, "status": { "conditions": null }
        }));
        assert_eq!((rs.desired, rs.replicas, rs.ready), (None, 0, 0));
        assert_eq!(rs.replica_failure, None);
        assert_eq!(rs.labels, Keys::default());
    }

    #[test]
    fn a_pod_keeps_readiness_start_and_its_unready_containers() {
        let pod: CachedPod = parse(json!({
            "metadata": { "name": "app-abc-1", "namespace": "ns",
                "labels": { ROLLOUT_LABEL: "app", POD_TEMPLATE_HASH_LABEL: "abc", "app": "web" },
                "annotations": { "a": "b" } },
            "spec": { "containers": [{ "name": "c", "image": "i" }] },
            "status": { "phase": "Running", "startTime": "2026-12-07T10:00:00Z",
                "conditions": [{ "type": "Ready", "status": "False" }],
                "containerStatuses": [
                    { "name": "ok", "ready": true, "restartCount": 0, "image": "i", "imageID": "" },
                    { "name": "bad", "ready": false, "restartCount": 4, "image": "i", "imageID": "",
                      "state": { "waiting": { "reason": "CrashLoopBackOff", "message": "back-off" } },
                      "lastState": { "terminated": { "exitCode": 3, "message": "boom" } } }
                ] }
        }));
        assert!(!pod.ready);
        assert!(pod.started_at.is_some());
        assert_eq!(pod.label(POD_TEMPLATE_HASH_LABEL), Some("abc"));
        assert_eq!(pod.label("app"), None);
        assert_eq!(pod.containers.len(), 1);
        let bad = &pod.containers[0];
        assert_eq!(bad.name, "bad");
        assert_eq!(bad.restart_count, 4);
        let waiting = bad.state.as_ref().and_then(|s| s.waiting.as_ref());
        assert_eq!(
            waiting.and_then(|w| w.reason.as_deref()),
            Some("CrashLoopBackOff")
        );
        let last = bad.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        assert_eq!(last.map(|t| t.exit_code), Some(3));
    }

    #[test]
    fn a_migration_pod_keeps_its_containers_report() {
        let pod: CachedPod = parse(json!({
            "metadata": { "name": "m-1", "labels": { MIGRATION_JOB_LABEL: "job-1" } },
            "status": { "conditions": [{ "type": "Ready", "status": "True" }],
                "containerStatuses": [{ "name": "migrate", "ready": true, "restartCount": 0,
                    "image": "i", "imageID": "",
                    "state": { "terminated": { "exitCode": 0, "message": "{\"migrations\":[]}" } } }] }
        }));
        assert!(pod.ready);
        let message = pod.containers[0]
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.message.as_deref());
        assert_eq!(message, Some("{\"migrations\":[]}"));
    }

    #[test]
    fn a_service_keeps_its_selected_revision_and_cutovers_record() {
        let svc: CachedService = parse(json!({
            "metadata": { "name": "active", "namespace": "ns", "resourceVersion": "9",
                "annotations": { SELECTOR_ANNOTATION: "abc", MANAGED_BY_ANNOTATION: "app",
                    "kubectl.kubernetes.io/last-applied-configuration": "{…}" } },
            "spec": { "selector": { "app": "web", POD_TEMPLATE_HASH_LABEL: "abc" },
                "ports": [{ "port": 80 }], "clusterIP": "10.0.0.1" }
        }));
        assert_eq!(svc.selector_hash.as_deref(), Some("abc"));
        assert_eq!(svc.annotations.get(SELECTOR_ANNOTATION), Some("abc"));
        assert_eq!(svc.annotations.get(MANAGED_BY_ANNOTATION), Some("app"));
        assert_eq!(
            svc.annotations
                .get("kubectl.kubernetes.io/last-applied-configuration"),
            None
        );
        let plain: CachedService = parse(json!({ "metadata": { "name": "s" }, "spec": {} }));
        assert_eq!(plain.selector_hash, None);
    }

    #[test]
    fn a_slice_keeps_the_pods_behind_its_ready_endpoints_and_its_service() {
        let slice: CachedSlice = parse(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": "s", "namespace": "ns", "labels": {
                SERVICE_NAME_LABEL: "app",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io" } },
            "addressType": "IPv4",
            "endpoints": [
                { "addresses": ["10.0.0.1"], "conditions": { "ready": false },
                  "targetRef": { "kind": "Pod", "name": "app-1", "uid": "u" } },
                { "addresses": ["10.0.0.2"], "targetRef": { "kind": "Pod", "name": "app-2" } },
                { "addresses": ["10.0.0.3"], "conditions": { "ready": true } }
            ],
            "ports": [{ "port": 80 }]
        }));
        assert_eq!(slice.service.as_deref(), Some("app"));
        assert_eq!(slice.ready_pods, vec!["app-2", "no-target"]);
        assert!(slice.metadata.labels.is_none());
        let v1beta1 = ApiResource {
            group: "discovery.k8s.io".into(),
            version: "v1beta1".into(),
            api_version: "discovery.k8s.io/v1beta1".into(),
            kind: "EndpointSlice".into(),
            plural: "endpointslices".into(),
        };
        assert_eq!(
            CachedSlice::url_path(&v1beta1, Some("ns")),
            "/apis/discovery.k8s.io/v1beta1/namespaces/ns/endpointslices"
        );
        let empty: CachedSlice = parse(json!({ "metadata": { "name": "e" }, "endpoints": null }));
        assert!(empty.ready_pods.is_empty());
    }

    #[test]
    fn a_cached_form_is_a_fraction_of_the_kind_it_stands_for() {
        // What the change is for; a regression (a full object kept) shows here first.
        assert!(std::mem::size_of::<CachedReplicaSet>() * 4 < std::mem::size_of::<ReplicaSet>());
        assert!(std::mem::size_of::<CachedPod>() * 4 < std::mem::size_of::<Pod>());
        assert!(std::mem::size_of::<CachedService>() * 2 < std::mem::size_of::<Service>());
    }
}
