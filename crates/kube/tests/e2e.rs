//! End to end against a real kube-apiserver and kube-controller-manager (1.20, built by
//! scripts/kube-test-env), with a kubelet stand-in making pods ready and the controller running
//! in-process. One test walks the scenarios in order, sharing one server to keep time down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use cutover_core::api::{POD_TEMPLATE_HASH_LABEL, Rollout, RolloutPhase};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::kubelet::Kubelet;
use support::{KubeEnv, hash_of, template, wait_for};

const NS: &str = "e2e";
const APP: &str = "app";

struct Cluster {
    client: Client,
    /// The controller's identity: deploy/install.yaml's ServiceAccount and RBAC.
    controller_client: Client,
    rollouts: Api<Rollout>,
    services: Api<Service>,
    replica_sets: Api<ReplicaSet>,
    pods: Api<Pod>,
    slices: Api<DynamicObject>,
}

fn rollout_manifest(image: &str) -> Value {
    json!({
        "apiVersion": "cutover.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": APP, "namespace": NS },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": APP } },
            "template": template(APP, image),
            "strategy": { "blueGreen": {
                "activeService": "app-active",
                "previewService": "app-preview",
                "autoPromotionEnabled": false,
                "previewReplicaCount": 1,
                "scaleDownDelaySeconds": 3,
                "abortScaleDownDelaySeconds": 0,
                "activeMetadata": { "labels": { "role": "active" } },
                "previewMetadata": { "labels": { "role": "preview" } },
            }},
        },
    })
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "namespace": NS },
        "spec": {
            "selector": { "app": APP },
            "ports": [{ "name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP" }],
        },
    })
}

fn start_controller(client: &Client) -> tokio::task::JoinHandle<()> {
    support::start_controller(client, NS)
}

impl Cluster {
    async fn rollout(&self) -> Rollout {
        self.rollouts.get(APP).await.unwrap()
    }

    async fn selector(&self, svc: &str) -> Option<String> {
        let s = self.services.get(svc).await.unwrap();
        s.spec?.selector?.get(POD_TEMPLATE_HASH_LABEL).cloned()
    }

    async fn rs_replicas(&self, hash: &str) -> Option<i32> {
        let rs = self
            .replica_sets
            .get_opt(&format!("{APP}-{hash}"))
            .await
            .unwrap()?;
        rs.spec?.replicas
    }

    /// Hashes of the pods behind ready endpoints of a Service's EndpointSlices.
    async fn serving(&self, svc: &str) -> Vec<String> {
        let slices = self
            .slices
            .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={svc}")))
            .await
            .unwrap();
        let pods = self.pods.list(&ListParams::default()).await.unwrap();
        let mut out: Vec<String> = slices
            .items
            .iter()
            .flat_map(ready_endpoint_pods)
            .map(|p| {
                pods.items
                    .iter()
                    .find(|x| x.name_any() == p)
                    .and_then(|x| x.labels().get(POD_TEMPLATE_HASH_LABEL).cloned())
                    .unwrap_or(format!("unknown:{p}"))
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    async fn wait_phase(&self, phase: RolloutPhase, secs: u64) -> Rollout {
        wait_for(secs, &format!("phase {phase:?}"), || async {
            let r = self.rollout().await;
            let s = r.status.as_ref()?;
            (s.phase == Some(phase)).then_some(r)
        })
        .await
    }

    /// Healthy with `hash` as the stable revision.
    async fn wait_stable(&self, hash: &str, secs: u64) -> Rollout {
        wait_for(secs, &format!("{hash} stable and Healthy"), || async {
            let r = self.rollout().await;
            let s = r.status.as_ref()?;
            (s.phase == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref() == Some(hash))
                .then_some(r)
        })
        .await
    }

    async fn wait_selector(&self, svc: &str, hash: &str, secs: u64) {
        wait_for(secs, &format!("{svc} selecting {hash}"), || async {
            (self.selector(svc).await.as_deref() == Some(hash)).then_some(())
        })
        .await
    }

    async fn set_image(&self, image: &str) {
        let patch = json!({ "spec": { "template": template(APP, image) } });
        self.rollouts
            .patch(APP, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    async fn patch_spec(&self, bg: Value) {
        let patch = json!({ "spec": { "strategy": { "blueGreen": bg } } });
        self.rollouts
            .patch(APP, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// As the CLI does it: a merge patch of the status subresource.
    async fn patch_status(&self, status: Value) {
        self.rollouts
            .patch_status(
                APP,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await
            .unwrap();
    }

    /// Promotes and checks that the switch is confirmed only once the active Service's
    /// EndpointSlices hold the new revision's pods alone.
    async fn promote_and_verify(&self, hash: &str) -> f64 {
        self.patch_status(json!({ "pauseConditions": null })).await;
        let seconds = wait_for(60, "switch verified", || async {
            let r = self.rollout().await;
            let sw = r.status?.blue_green.switch?;
            if sw.to != hash || sw.verified_at.is_none() {
                return None;
            }
            let serving = self.serving("app-active").await;
            assert_eq!(
                serving,
                vec![hash.to_string()],
                "switch marked verified while the active EndpointSlices serve {serving:?}"
            );
            sw.seconds
        })
        .await;
        assert_eq!(self.selector("app-active").await.as_deref(), Some(hash));
        seconds
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blue_green_against_a_real_api_server() {
    let started = std::time::Instant::now();
    let Some(env) = KubeEnv::installed(NS).await else {
        return;
    };
    let client = env.client.clone();
    let slice_version = if client
        .list_api_group_resources("discovery.k8s.io/v1")
        .await
        .is_ok()
    {
        "v1"
    } else {
        "v1beta1"
    };
    let ar = ApiResource {
        group: "discovery.k8s.io".into(),
        version: slice_version.into(),
        api_version: format!("discovery.k8s.io/{slice_version}"),
        kind: "EndpointSlice".into(),
        plural: "endpointslices".into(),
    };
    let c = Cluster {
        client: client.clone(),
        controller_client: env.controller_client().await,
        rollouts: Api::namespaced(client.clone(), NS),
        services: Api::namespaced(client.clone(), NS),
        replica_sets: Api::namespaced(client.clone(), NS),
        pods: Api::namespaced(client.clone(), NS),
        slices: Api::namespaced_with(client.clone(), NS, &ar),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dump_client = client.clone();
    let _ = support::DUMP.set(Box::new(move || {
        let client = dump_client.clone();
        Box::pin(async move { dump(client).await })
    }));
    let kubelet = Kubelet::start(client.clone(), NS).await;
    env.apply(service("app-active")).await;
    env.apply(service("app-preview")).await;
    let mut controller = start_controller(&c.controller_client);
    scenarios(&env, &c, &kubelet, &mut controller).await;
    controller.abort();
    eprintln!("e2e scenarios took {:.1}s", started.elapsed().as_secs_f64());
}

async fn scenarios(
    env: &KubeEnv,
    c: &Cluster,
    kubelet: &Kubelet,
    controller: &mut tokio::task::JoinHandle<()>,
) {
    let (h1, h2, h3) = (
        hash_of(APP, "app:1"),
        hash_of(APP, "app:2"),
        hash_of(APP, "app:3"),
    );

    // 1. Initial deploy: full size at once, both Services point at it, Healthy.
    env.apply(rollout_manifest("app:1")).await;
    let r = c.wait_phase(RolloutPhase::Healthy, 60).await;
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(h1.as_str())
    );
    c.wait_selector("app-active", &h1, 10).await;
    c.wait_selector("app-preview", &h1, 10).await;
    assert_eq!(c.rs_replicas(&h1).await, Some(2));
    assert!(r.finalizers().iter().any(|f| f == cutover_kube::FINALIZER));
    eprintln!("ok: initial deploy");

    // 2. Set image: a new ReplicaSet at previewReplicaCount behind the preview Service; the
    //    active Service stays; the rollout pauses for promotion.
    c.set_image("app:2").await;
    c.wait_selector("app-preview", &h2, 30).await;
    c.wait_phase(RolloutPhase::Paused, 60).await;
    assert_eq!(c.rs_replicas(&h2).await, Some(1));
    assert_eq!(c.selector("app-active").await.as_deref(), Some(h1.as_str()));
    let pod = c
        .pods
        .list(&ListParams::default().labels(&format!("{POD_TEMPLATE_HASH_LABEL}={h2}")))
        .await
        .unwrap();
    wait_for(10, "preview role label", || async {
        let p = c.pods.get(&pod.items[0].name_any()).await.ok()?;
        (p.labels().get("role").map(String::as_str) == Some("preview")).then_some(())
    })
    .await;
    eprintln!("ok: set image → preview");

    // 3. Promote: scaled to full size, switched, confirmed on EndpointSlices.
    let secs = c.promote_and_verify(&h2).await;
    assert_eq!(c.rs_replicas(&h2).await, Some(2));
    c.wait_stable(&h2, 30).await;
    eprintln!("ok: promote, switch confirmed after {secs:.3}s");

    // 4. The old revision goes to zero after scaleDownDelaySeconds (3 s) from confirmation.
    let rs = c.replica_sets.get(&format!("{APP}-{h1}")).await.unwrap();
    assert!(
        rs.annotations()
            .contains_key(cutover_kube::SCALE_DOWN_DEADLINE_ANNOTATION)
    );
    wait_for(20, "old revision scaled to zero", || async {
        (c.rs_replicas(&h1).await == Some(0)).then_some(())
    })
    .await;
    eprintln!("ok: scale-down after delay");

    // 5. Abort: the update to app:3 is abandoned, active stays on stable, Degraded.
    c.set_image("app:3").await;
    c.wait_phase(RolloutPhase::Paused, 60).await;
    c.patch_status(json!({ "abort": true })).await;
    c.wait_phase(RolloutPhase::Degraded, 30).await;
    assert_eq!(c.selector("app-active").await.as_deref(), Some(h2.as_str()));
    assert_eq!(
        c.selector("app-preview").await.as_deref(),
        Some(h3.as_str())
    );
    eprintln!("ok: abort");

    // 6. Retry: the update runs again and pauses for promotion.
    c.patch_status(json!({ "abort": false })).await;
    c.wait_phase(RolloutPhase::Paused, 60).await;
    eprintln!("ok: retry");

    // 7. Undo to a warm revision is a fast rollback: promote app:3 with a long delay so app:2
    //    stays warm, then go back to app:2: active switches at once, no pause.
    c.patch_spec(json!({ "scaleDownDelaySeconds": 120 })).await;
    c.promote_and_verify(&h3).await;
    c.wait_stable(&h3, 30).await;
    wait_for(10, "app:2 warm with a scale-down deadline", || async {
        let rs = c.replica_sets.get(&format!("{APP}-{h2}")).await.ok()?;
        rs.annotations()
            .contains_key(cutover_kube::SCALE_DOWN_DEADLINE_ANNOTATION)
            .then_some(())
    })
    .await;
    assert_eq!(c.rs_replicas(&h2).await, Some(2), "app:2 stays warm");
    let before = tokio::time::Instant::now();
    c.set_image("app:2").await;
    c.wait_selector("app-active", &h2, 30).await;
    let r = c.wait_stable(&h2, 30).await;
    // The flag lives only while the update is in flight; the event tells it afterwards.
    let _ = r;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.client.clone(), NS);
    wait_for(10, "a fast-rollback event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("fast rollback"))
            })
            .then_some(())
    })
    .await;
    eprintln!(
        "ok: undo to warm revision, fast rollback in {:.2}s",
        before.elapsed().as_secs_f64()
    );
    c.patch_spec(json!({ "scaleDownDelaySeconds": 3 })).await;

    // 8. autoPromotionSeconds: the pause ends by itself.
    c.patch_spec(json!({ "autoPromotionEnabled": null, "autoPromotionSeconds": 2 }))
        .await;
    let h4 = hash_of(APP, "app:4");
    c.set_image("app:4").await;
    c.wait_selector("app-active", &h4, 60).await;
    c.wait_stable(&h4, 30).await;
    eprintln!("ok: autoPromotionSeconds");
    c.patch_spec(json!({ "autoPromotionEnabled": false, "autoPromotionSeconds": null }))
        .await;

    // 9. Pods going unready mid-rollout: the preview never pauses for promotion while its pods
    //    are not ready, and the active Service does not move.
    let h5 = hash_of(APP, "app:5");
    kubelet.hold_new_pods(true);
    c.set_image("app:5").await;
    c.wait_selector("app-preview", &h5, 30).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = c.rollout().await;
    assert_eq!(
        r.status.as_ref().unwrap().phase,
        Some(RolloutPhase::Progressing)
    );
    assert_eq!(c.selector("app-active").await.as_deref(), Some(h4.as_str()));
    kubelet.hold_new_pods(false);
    c.wait_phase(RolloutPhase::Paused, 60).await;
    eprintln!("ok: unready pods hold the rollout");

    // 10. Controller restart mid-rollout: promote while no controller runs; a new one converges.
    controller.abort();
    let _ = (&mut *controller).await;
    c.patch_status(json!({ "pauseConditions": null })).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.selector("app-active").await.as_deref(), Some(h4.as_str()));
    *controller = start_controller(&c.controller_client);
    c.wait_selector("app-active", &h5, 60).await;
    c.wait_stable(&h5, 60).await;
    eprintln!("ok: controller restart converges");

    // 11. restartAt: the pods are evicted (the Eviction API of the server's version, found by
    //     discovery) a few at a time and replaced, until none predates it.
    let before: Vec<String> = c
        .pods
        .list(&ListParams::default().labels(&format!("{POD_TEMPLATE_HASH_LABEL}={h5}")))
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert!(!before.is_empty());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let restart_at = jiff::Timestamp::now().to_string();
    let patch = json!({ "spec": { "restartAt": restart_at } });
    c.rollouts
        .patch(APP, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for(60, "pods restarted", || async {
        let r = c.rollout().await;
        r.status.as_ref()?.restarted_at.as_ref()?;
        let now: Vec<String> = c
            .pods
            .list(&ListParams::default().labels(&format!("{POD_TEMPLATE_HASH_LABEL}={h5}")))
            .await
            .ok()?
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        (now.len() == before.len() && now.iter().all(|p| !before.contains(p))).then_some(())
    })
    .await;
    c.wait_stable(&h5, 60).await;
    eprintln!("ok: restartAt evicts and replaces the pods");

    // 12. Deleting the Rollout gives both Services their plain selectors back.
    c.rollouts
        .delete(APP, &DeleteParams::default())
        .await
        .unwrap();
    wait_for(30, "rollout deleted", || async {
        c.rollouts
            .get_opt(APP)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    for svc in ["app-active", "app-preview"] {
        let s = c.services.get(svc).await.unwrap();
        assert_eq!(
            c.selector(svc).await,
            None,
            "{svc} still selects a revision"
        );
        assert!(
            !s.annotations()
                .contains_key(cutover_kube::MANAGED_BY_ANNOTATION)
        );
        assert_eq!(
            s.spec
                .unwrap()
                .selector
                .unwrap()
                .get("app")
                .map(String::as_str),
            Some(APP)
        );
    }
    eprintln!("ok: deletion restores selectors");
}

/// The Rollout, its ReplicaSets and Services, for a failed wait.
async fn dump(client: Client) -> String {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), NS);
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, NS);
    let mut out = String::new();
    for e in events
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        out += &format!("event {:?}: {:?}\n", e.reason, e.note);
    }
    if let Ok(r) = rollouts.get(APP).await {
        out += &format!(
            "rollout status: {}\n",
            serde_json::to_string_pretty(&r.status).unwrap()
        );
    }
    for r in rs
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        out += &format!(
            "rs {} spec={:?} status={:?} ann={:?}\n",
            r.name_any(),
            r.spec.as_ref().and_then(|s| s.replicas),
            r.status
                .as_ref()
                .map(|s| (s.replicas, s.ready_replicas, s.available_replicas)),
            r.annotations()
        );
    }
    for s in svcs
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        out += &format!(
            "svc {} selector={:?}\n",
            s.name_any(),
            s.spec.and_then(|s| s.selector)
        );
    }
    out
}

/// Pod names behind the ready endpoints of an EndpointSlice (v1 and v1beta1 share these
/// fields). A missing `ready` condition means ready, as the EndpointSlice API documents.
fn ready_endpoint_pods(slice: &DynamicObject) -> Vec<String> {
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
