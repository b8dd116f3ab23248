//! The controller's watch caches (kube-rs reflectors) of what a reconcile reads: ReplicaSets,
//! pods, AnalysisRuns, Services, EndpointSlices, for migrations Jobs and ConfigMaps, and for
//! `workloadRef` Deployments. A reconcile reads them instead of listing,
//! so its cost does not grow with API round trips, and each watch also triggers the Rollouts
//! it concerns.
//!
//! Cached objects are pruned to the fields the controller reads (no managedFields, no pod
//! specs, no ReplicaSet pod templates, EndpointSlices reduced to the names of their ready
//! pods, Jobs to their status, ConfigMaps to their keys): with a thousand Rollouts this is
//! most of the controller's memory.

use std::sync::Arc;

use cutover_core::api::{AnalysisRun, Rollout};
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    Pod, PodCondition, PodStatus, Service, ServiceSpec,
};
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::{ROLLOUT_LABEL, TEMPLATE_ANNOTATION};

/// Label of the EndpointSlices of a Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Read handles of the caches.
#[derive(Clone)]
pub struct Caches {
    /// The Rollouts (the controller's own store).
    pub rollouts: Store<Rollout>,
    /// ReplicaSets labelled with a Rollout.
    pub replica_sets: Store<ReplicaSet>,
    /// Pods labelled with a Rollout.
    pub pods: Store<Pod>,
    /// AnalysisRuns labelled with a Rollout.
    pub runs: Store<AnalysisRun>,
    /// All Services (a Rollout names its Services; they carry no label of ours).
    pub services: Store<Service>,
    /// EndpointSlices that belong to a Service.
    pub slices: Store<DynamicObject>,
    /// Migration Jobs labelled with a Rollout.
    pub jobs: Store<Job>,
    /// All ConfigMaps, keys only (a Rollout names the one holding its migration files).
    pub config_maps: Store<ConfigMap>,
    /// All Deployments, replicas and cutover's annotations only (a Rollout may adopt one
    /// through `spec.workloadRef`).
    pub deployments: Store<Deployment>,
}

/// Write handles, consumed by [`Caches::streams`].
pub struct Writers {
    rollouts: Writer<Rollout>,
    replica_sets: Writer<ReplicaSet>,
    pods: Writer<Pod>,
    runs: Writer<AnalysisRun>,
    services: Writer<Service>,
    slices: Writer<DynamicObject>,
    jobs: Writer<Job>,
    config_maps: Writer<ConfigMap>,
    deployments: Writer<Deployment>,
}

/// A watch stream that fills a cache and yields the objects it touched.
pub type Touched<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The watch streams feeding the caches; the controller polls them as its triggers.
pub struct Streams {
    /// Rollouts.
    pub rollouts: Touched<Rollout>,
    /// ReplicaSets.
    pub replica_sets: Touched<ReplicaSet>,
    /// Pods.
    pub pods: Touched<Pod>,
    /// AnalysisRuns.
    pub runs: Touched<AnalysisRun>,
    /// Services.
    pub services: Touched<Service>,
    /// EndpointSlices.
    pub slices: Touched<DynamicObject>,
    /// Migration Jobs.
    pub jobs: Touched<Job>,
    /// ConfigMaps.
    pub config_maps: Touched<ConfigMap>,
    /// Deployments.
    pub deployments: Touched<Deployment>,
}

impl Caches {
    /// Empty caches and their writers. `slices` is the EndpointSlice version discovery found.
    pub fn new(slices: &ApiResource) -> (Self, Writers) {
        let (rollouts, rollout_writer) = reflector::store();
        let (replica_sets, rs_writer) = reflector::store();
        let (pods, pod_writer) = reflector::store();
        let (runs, run_writer) = reflector::store();
        let (services, svc_writer) = reflector::store();
        let slice_writer = Writer::new(slices.clone());
        let (jobs, job_writer) = reflector::store();
        let (config_maps, config_map_writer) = reflector::store();
        let (deployments, deployment_writer) = reflector::store();
        let caches = Self {
            rollouts,
            replica_sets,
            pods,
            runs,
            services,
            slices: slice_writer.as_reader(),
            jobs,
            config_maps,
            deployments,
        };
        let writers = Writers {
            rollouts: rollout_writer,
            replica_sets: rs_writer,
            pods: pod_writer,
            runs: run_writer,
            services: svc_writer,
            slices: slice_writer,
            jobs: job_writer,
            config_maps: config_map_writer,
            deployments: deployment_writer,
        };
        (caches, writers)
    }

    /// Waits until every cache holds its first full list, so no reconcile plans on a partial
    /// view (a missing ReplicaSet would look like a revision to create).
    pub async fn ready(&self) -> bool {
        futures::try_join!(
            self.rollouts.wait_until_ready(),
            self.replica_sets.wait_until_ready(),
            self.pods.wait_until_ready(),
            self.runs.wait_until_ready(),
            self.services.wait_until_ready(),
            self.slices.wait_until_ready(),
            self.jobs.wait_until_ready(),
            self.config_maps.wait_until_ready(),
            self.deployments.wait_until_ready(),
        )
        .is_ok()
    }
}

impl Writers {
    /// The ReplicaSet writer, for tests that fill a cache by hand.
    #[cfg(test)]
    pub(crate) fn replica_sets_mut(&mut self) -> &mut Writer<ReplicaSet> {
        &mut self.replica_sets
    }

    /// The watch streams over `client` (all namespaces, or `ns`) that fill the caches.
    pub fn streams(self, client: &kube::Client, ns: Option<&str>, slices: &ApiResource) -> Streams {
        let owned = || {
            watcher::Config::default()
                .labels(ROLLOUT_LABEL)
                .any_semantic()
        };
        let slice_api: Api<DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, slices),
            None => Api::all_with(client.clone(), slices),
        };
        Streams {
            rollouts: reflected(
                scoped(client, ns),
                watcher::Config::default().any_semantic(),
                prune_rollout,
                self.rollouts,
            ),
            replica_sets: reflected(
                scoped(client, ns),
                owned(),
                prune_replica_set,
                self.replica_sets,
            ),
            pods: reflected(scoped(client, ns), owned(), prune_pod, self.pods),
            runs: reflected(scoped(client, ns), owned(), prune_meta, self.runs),
            services: reflected(
                scoped(client, ns),
                watcher::Config::default().any_semantic(),
                prune_service,
                self.services,
            ),
            slices: reflected(
                slice_api,
                watcher::Config::default()
                    .labels(SERVICE_NAME_LABEL)
                    .any_semantic(),
                prune_slice,
                self.slices,
            ),
            jobs: reflected(scoped(client, ns), owned(), prune_job, self.jobs),
            config_maps: reflected(
                scoped(client, ns),
                watcher::Config::default().any_semantic(),
                prune_config_map,
                self.config_maps,
            ),
            // Every Deployment is cached (any may be adopted), but only a change a Rollout
            // plans on is passed on as a trigger.
            deployments: reflected(
                scoped(client, ns),
                watcher::Config::default().any_semantic(),
                crate::workload::prune_deployment,
                self.deployments,
            )
            .predicate_filter(
                crate::workload::deployment_change,
                kube::runtime::PredicateConfig::default(),
            )
            .boxed(),
        }
    }
}

fn scoped<K>(client: &kube::Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn reflected<K>(
    api: Api<K>,
    config: watcher::Config,
    prune: fn(&mut K),
    writer: Writer<K>,
) -> Touched<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    watcher(api, config)
        .default_backoff()
        .modify(prune)
        .reflect(writer)
        .touched_objects()
        .boxed()
}

fn prune_meta<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Drops what the controller never reads: managedFields and kubectl's copy of the last
/// applied manifest (as large as the Rollout itself).
pub fn prune_rollout(rollout: &mut Rollout) {
    prune_meta(rollout);
    if let Some(a) = rollout.meta_mut().annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Keeps what observation reads: labels, deletion, start time and readiness; for a
/// migration Job's pod its containers' termination messages (the Job's report); for any other
/// pod, only its containers that are not ready, with why (waiting reason, last exit), which
/// tells a crash loop from a slow start.
pub fn prune_pod(pod: &mut Pod) {
    prune_meta(pod);
    let meta = pod.meta_mut();
    meta.annotations = None;
    // Pods are found by the Rollout's label, never by owner, and named by their name.
    meta.owner_references = None;
    meta.generate_name = None;
    pod.spec = None;
    let migration = pod
        .labels()
        .contains_key(crate::migrations::MIGRATION_JOB_LABEL);
    pod.status = pod.status.take().map(|s| PodStatus {
        start_time: s.start_time,
        conditions: s.conditions.map(ready_condition_only),
        phase: s.phase,
        container_statuses: s.container_statuses.map(|statuses| {
            statuses
                .into_iter()
                .filter_map(|c| {
                    if migration {
                        Some(prune_container_status(c))
                    } else {
                        prune_unready_container(c)
                    }
                })
                .collect()
        }),
        ..PodStatus::default()
    });
}

/// Of a pod's conditions only Ready is read (to pace restarts), and only its status.
fn ready_condition_only(conditions: Vec<PodCondition>) -> Vec<PodCondition> {
    conditions
        .into_iter()
        .filter(|c| c.type_ == "Ready")
        .map(|c| PodCondition {
            type_: c.type_,
            status: c.status,
            ..PodCondition::default()
        })
        .collect()
}

/// The longest message kept from a container status: enough for a log line, bounded so a
/// chatty crash cannot grow the cache.
const KEPT_MESSAGE: usize = 512;

fn prune_unready_container(status: ContainerStatus) -> Option<ContainerStatus> {
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

fn prune_container_status(status: ContainerStatus) -> ContainerStatus {
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

/// Keeps a Job's metadata and conditions: its pod template is ours and never read back.
pub fn prune_job(job: &mut Job) {
    prune_meta(job);
    job.spec = None;
    job.status = job.status.take().map(|s| JobStatus {
        conditions: s.conditions,
        ..JobStatus::default()
    });
}

/// Keeps a ConfigMap's keys (the migration names), not its values: the Job mounts the files.
pub fn prune_config_map(config_map: &mut ConfigMap) {
    prune_meta(config_map);
    config_map.metadata.annotations = None;
    config_map.binary_data = None;
    if let Some(data) = config_map.data.as_mut() {
        data.values_mut().for_each(String::clear);
    }
}

/// Drops the pod template and the stored copy of the Rollout's template (read only by `undo`,
/// which gets the ReplicaSet itself).
pub fn prune_replica_set(rs: &mut ReplicaSet) {
    prune_meta(rs);
    if let Some(a) = rs.meta_mut().annotations.as_mut() {
        a.remove(TEMPLATE_ANNOTATION);
    }
    if let Some(spec) = rs.spec.as_mut() {
        spec.template = None;
    }
}

/// Keeps the selector and annotations: what a switch reads and writes (the annotation of the
/// selector cutover set tells a selector changed by hand).
pub fn prune_service(svc: &mut Service) {
    prune_meta(svc);
    svc.spec = svc.spec.take().map(|s| ServiceSpec {
        selector: s.selector,
        ..ServiceSpec::default()
    });
    svc.status = None;
}

/// Where a cached EndpointSlice keeps the names of the pods behind its ready endpoints.
pub const READY_PODS_FIELD: &str = "readyPods";

/// Reduces an EndpointSlice to `{readyPods: [name…]}` and its Service label: all a switch
/// reads of it is which pods serve, and one list of names is a fraction of the endpoints'
/// maps (an EndpointSlice per Service, two Services per Rollout).
pub fn prune_slice(slice: &mut DynamicObject) {
    prune_meta(slice);
    let meta = &mut slice.metadata;
    meta.annotations = None;
    meta.owner_references = None;
    meta.generate_name = None;
    if let Some(labels) = meta.labels.as_mut() {
        labels.retain(|key, _| key == SERVICE_NAME_LABEL);
    }
    let ready = crate::observe::ready_endpoint_pods(slice);
    slice.data = json!({ READY_PODS_FIELD: ready });
}

/// The cached objects of one kind labelled with Rollout `name` in `ns`.
pub fn owned_by<K>(store: &Store<K>, ns: &str, name: &str) -> Vec<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.state_filter(|o| {
        o.meta().namespace.as_deref() == Some(ns)
            && o.labels().get(ROLLOUT_LABEL).map(String::as_str) == Some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pruned_slice_keeps_its_ready_pods_and_service_only() {
        let mut slice: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": "s", "labels": {
                SERVICE_NAME_LABEL: "app",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io" } },
            "addressType": "IPv4",
            "endpoints": [
                { "addresses": ["10.0.0.1"], "conditions": { "ready": false },
                  "targetRef": { "kind": "Pod", "name": "app-1", "uid": "u" } },
                { "addresses": ["10.0.0.2"], "targetRef": { "kind": "Pod", "name": "app-2" } }
            ],
            "ports": [{ "port": 80 }]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            crate::observe::ready_endpoint_pods(&slice),
            vec!["app-2".to_string()]
        );
        prune_slice(&mut slice);
        assert_eq!(slice.data, json!({ READY_PODS_FIELD: ["app-2"] }));
        assert_eq!(
            slice.labels().keys().collect::<Vec<_>>(),
            vec![SERVICE_NAME_LABEL]
        );
        assert_eq!(
            crate::observe::cached_ready_pods(&slice),
            vec!["app-2".to_string()]
        );
    }
}
