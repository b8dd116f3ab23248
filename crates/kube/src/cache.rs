//! The controller's watch caches (kube-rs reflectors) of what a reconcile reads: ReplicaSets,
//! pods, AnalysisRuns, Services, EndpointSlices, for migrations Jobs and ConfigMaps, and for
//! `workloadRef` Deployments. A reconcile reads them instead of listing,
//! so its cost does not grow with API round trips, and each watch also triggers the Rollouts
//! it concerns.
//!
//! Cached objects are reduced to the fields the controller reads: ReplicaSets, pods, Services
//! and EndpointSlices are parsed into the compact forms of [`crate::cached`]; the other kinds
//! lose managedFields, Jobs keep their status, ConfigMaps their keys. With a thousand Rollouts
//! the caches are most of the controller's memory.

use std::sync::Arc;

use cutover_core::api::{AnalysisRun, Rollout};
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Resource;
use kube::api::Api;
use kube::core::ApiResource;
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};

use crate::ROLLOUT_LABEL;
use crate::cached::{CachedPod, CachedReplicaSet, CachedService, CachedSlice, Labelled};
use crate::cached_rollout::CachedRollout;

/// Label of the EndpointSlices of a Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Read handles of the caches.
#[derive(Clone)]
pub struct Caches {
    /// The Rollouts (the controller's own store), spec and status kept as JSON.
    pub rollouts: Store<CachedRollout>,
    /// ReplicaSets labelled with a Rollout.
    pub replica_sets: Store<CachedReplicaSet>,
    /// Pods labelled with a Rollout.
    pub pods: Store<CachedPod>,
    /// AnalysisRuns labelled with a Rollout.
    pub runs: Store<AnalysisRun>,
    /// All Services (a Rollout names its Services; they carry no label of ours).
    pub services: Store<CachedService>,
    /// EndpointSlices that belong to a Service.
    pub slices: Store<CachedSlice>,
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
    rollouts: Writer<CachedRollout>,
    replica_sets: Writer<CachedReplicaSet>,
    pods: Writer<CachedPod>,
    runs: Writer<AnalysisRun>,
    services: Writer<CachedService>,
    slices: Writer<CachedSlice>,
    jobs: Writer<Job>,
    config_maps: Writer<ConfigMap>,
    deployments: Writer<Deployment>,
}

/// A watch stream that fills a cache and yields the objects it touched.
pub type Touched<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The watch streams feeding the caches; the controller polls them as its triggers.
pub struct Streams {
    /// Rollouts.
    pub rollouts: Touched<CachedRollout>,
    /// ReplicaSets.
    pub replica_sets: Touched<CachedReplicaSet>,
    /// Pods.
    pub pods: Touched<CachedPod>,
    /// AnalysisRuns.
    pub runs: Touched<AnalysisRun>,
    /// Services.
    pub services: Touched<CachedService>,
    /// EndpointSlices.
    pub slices: Touched<CachedSlice>,
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
    pub(crate) fn replica_sets_mut(&mut self) -> &mut Writer<CachedReplicaSet> {
        &mut self.replica_sets
    }

    /// The watch streams over `client` (all namespaces, or `ns`) that fill the caches.
    pub fn streams(self, client: &kube::Client, ns: Option<&str>, slices: &ApiResource) -> Streams {
        let owned = || {
            watcher::Config::default()
                .labels(ROLLOUT_LABEL)
                .any_semantic()
        };
        let slice_api: Api<CachedSlice> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, slices),
            None => Api::all_with(client.clone(), slices),
        };
        Streams {
            rollouts: reflected(
                scoped(client, ns),
                watcher::Config::default().any_semantic(),
                // Pruned as it is parsed (`CachedRollout`'s `TryFrom<Rollout>`).
                kept_as_parsed,
                self.rollouts,
            ),
            replica_sets: reflected(
                scoped(client, ns),
                owned(),
                kept_as_parsed,
                self.replica_sets,
            ),
            pods: reflected(scoped(client, ns), owned(), kept_as_parsed, self.pods),
            runs: reflected(scoped(client, ns), owned(), prune_meta, self.runs),
            services: reflected(
                scoped(client, ns),
                watcher::Config::default().any_semantic(),
                kept_as_parsed,
                self.services,
            ),
            slices: reflected(
                slice_api,
                watcher::Config::default()
                    .labels(SERVICE_NAME_LABEL)
                    .any_semantic(),
                kept_as_parsed,
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
        .inspect_ok(|event| {
            if let watcher::Event::Apply(o)
            | watcher::Event::InitApply(o)
            | watcher::Event::Delete(o) = event
            {
                let meta = o.meta();
                tracing::trace!(
                    target: "cutover_kube::watch",
                    kind = std::any::type_name::<K>(),
                    namespace = ?meta.namespace,
                    name = ?meta.name,
                    version = ?meta.resource_version,
                    "watch event"
                );
            }
        })
        .reflect(writer)
        .touched_objects()
        .boxed()
}

/// For the [`crate::cached`] forms, which keep only what they read as they are parsed.
fn kept_as_parsed<K>(_: &mut K) {}

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

/// The cached objects of one kind labelled with Rollout `name` in `ns`.
pub fn owned_by<K>(store: &Store<K>, ns: &str, name: &str) -> Vec<Arc<K>>
where
    K: Resource + Labelled + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.state_filter(|o| {
        o.meta().namespace.as_deref() == Some(ns) && o.label(ROLLOUT_LABEL) == Some(name)
    })
}
