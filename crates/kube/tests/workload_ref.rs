//! `spec.workloadRef` against a real kube-apiserver and kube-controller-manager: a Rollout takes
//! its pod template from an existing Deployment and scales that Deployment down per
//! `scaleDown`, with the controller running in-process under deploy/install.yaml's RBAC and the
//! kubelet stand-in making pods ready. One test walks the scenarios on one server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use cutover_core::api::{ConditionType, Rollout, RolloutPhase};
use cutover_core::ops::Operation;
use cutover_kube::workload::{ADOPTED_BY_ANNOTATION, ORIGINAL_REPLICAS_ANNOTATION};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::kubelet::Kubelet;
use support::{KubeEnv, template, wait_for};

const NS: &str = "workload";

fn deployment(app: &str, image: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": app, "namespace": NS },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": app } },
            "template": template(app, image),
        },
    })
}

fn rollout(app: &str, replicas: i32, scale_down: &str) -> Value {
    json!({
        "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": app, "namespace": NS },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": app } },
            "workloadRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": app,
                             "scaleDown": scale_down },
            "strategy": { "blueGreen": {
                "activeService": format!("{app}-active"),
                "previewService": format!("{app}-preview"),
                "autoPromotionEnabled": false,
                "scaleDownDelaySeconds": 1,
            }},
        },
    })
}

struct World {
    client: Client,
    rollouts: Api<Rollout>,
    deployments: Api<Deployment>,
    replica_sets: Api<ReplicaSet>,
    pods: Api<Pod>,
}

impl World {
    async fn rollout(&self, app: &str) -> Rollout {
        self.rollouts.get(app).await.unwrap()
    }

    async fn deployment_replicas(&self, app: &str) -> i32 {
        let d = self.deployments.get(app).await.unwrap();
        d.spec.and_then(|s| s.replicas).unwrap()
    }

    async fn wait_deployment_replicas(&self, app: &str, replicas: i32, why: &str) {
        wait_for(
            60,
            &format!("deployment {app} at {replicas} ({why})"),
            || async { (self.deployment_replicas(app).await == replicas).then_some(()) },
        )
        .await;
    }

    /// Healthy with a stable revision other than `not`; returns the stable hash.
    async fn wait_healthy(&self, app: &str, not: Option<&str>) -> String {
        wait_for(60, &format!("{app} Healthy"), || async {
            let s = self.rollout(app).await.status?;
            let stable = s.stable_rs.clone()?;
            (s.phase == Some(RolloutPhase::Healthy) && Some(stable.as_str()) != not)
                .then_some(stable)
        })
        .await
    }

    /// The image of the Rollout's ReplicaSet of revision `hash`.
    async fn image_of(&self, app: &str, hash: &str) -> String {
        let rs = self
            .replica_sets
            .get(&format!("{app}-{hash}"))
            .await
            .unwrap();
        rs.spec.unwrap().template.unwrap().spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    }

    async fn set_image(&self, app: &str, image: &str) {
        let patch = json!({ "spec": { "template": { "spec": {
            "containers": [{ "name": "app", "image": image }] } } } });
        self.deployments
            .patch(app, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .unwrap();
    }

    async fn annotations(&self, app: &str) -> (Option<String>, Option<String>) {
        let d = self.deployments.get(app).await.unwrap();
        let a = d.annotations();
        (
            a.get(ORIGINAL_REPLICAS_ANNOTATION).cloned(),
            a.get(ADOPTED_BY_ANNOTATION).cloned(),
        )
    }

    /// The Rollout's own pods (not the Deployment's), not being deleted.
    async fn rollout_pods(&self, app: &str) -> Vec<Pod> {
        let selector = format!("cutover.dev/rollout={app}");
        let list = self
            .pods
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap();
        let mut pods: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        pods.sort_by_key(ResourceExt::name_any);
        pods
    }
}

fn running_unready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    status.phase.as_deref() == Some("Running") && !ready
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_adopts_an_existing_deployment() {
    let Some(env) = KubeEnv::installed(NS).await else {
        return;
    };
    support::init_tracing();
    let client = env.client.clone();
    let w = World {
        client: client.clone(),
        rollouts: Api::namespaced(client.clone(), NS),
        deployments: Api::namespaced(client.clone(), NS),
        replica_sets: Api::namespaced(client.clone(), NS),
        pods: Api::namespaced(client.clone(), NS),
    };
    let dump_client = client.clone();
    let _ = support::DUMP.set(Box::new(move || {
        let client = dump_client.clone();
        Box::pin(async move { dump(client).await })
    }));
    let kubelet = Kubelet::start(client.clone(), NS).await;
    let controller = support::start_controller(&env.controller_client().await, NS);

    on_success_update_and_delete(&env, &w).await;
    progressively_then_reference_removed(&env, &w, &kubelet).await;
    never_keeps_the_deployment(&env, &w).await;
    missing_deployment_then_created(&env, &w).await;
    both_template_and_reference_refused(&w).await;
    controller.abort();
}

/// (1) onsuccess: Healthy with the Deployment's template, the Deployment scaled to 0 after;
/// (2) a template change in the Deployment starts an update: preview, then promote;
/// (5) deleting the Rollout gives the Deployment its replicas back.
async fn on_success_update_and_delete(env: &KubeEnv, w: &World) {
    let app = "web";
    env.blue_green_services(NS, app).await;
    env.apply(deployment(app, "web:v1", 3)).await;
    env.apply(rollout(app, 2, "onsuccess")).await;
    let stable = w.wait_healthy(app, None).await;
    assert_eq!(w.image_of(app, &stable).await, "web:v1");
    w.wait_deployment_replicas(app, 0, "onsuccess after Healthy")
        .await;
    assert_eq!(
        w.annotations(app).await,
        (Some("3".into()), Some(app.into())),
        "the original replicas and the adopting Rollout are recorded on the Deployment"
    );
    // The Rollout's own spec still names no template: it is read from the Deployment.
    let stored = w.rollout(app).await;
    assert!(cutover_core::api::template_is_unset(&stored.spec.template));

    w.set_image(app, "web:v2").await;
    let preview = wait_for(60, "update paused for promotion", || async {
        let s = w.rollout(app).await.status?;
        let current = s.current_pod_hash.clone()?;
        (current != stable && s.phase == Some(RolloutPhase::Paused)).then_some(current)
    })
    .await;
    assert_eq!(w.image_of(app, &preview).await, "web:v2");
    assert_eq!(
        w.rollout(app).await.status.unwrap().stable_rs.as_deref(),
        Some(stable.as_str()),
        "the old revision stays stable until promotion"
    );
    cutover_kube::ops::operate(&w.client, NS, app, &Operation::Promote { full: false })
        .await
        .unwrap();
    let promoted = w.wait_healthy(app, Some(&stable)).await;
    assert_eq!(promoted, preview);
    assert_eq!(w.deployment_replicas(app).await, 0);

    w.rollouts
        .delete(app, &DeleteParams::default())
        .await
        .unwrap();
    w.wait_deployment_replicas(app, 3, "Rollout deleted").await;
    wait_for(30, "hold annotations removed", || async {
        (w.annotations(app).await == (None, None)).then_some(())
    })
    .await;
    wait_for(30, "rollout gone", || async {
        w.rollouts
            .get_opt(app)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

/// (3) progressively: the Deployment loses a pod for each available pod of the Rollout;
/// (5) removing the reference gives its replicas back.
async fn progressively_then_reference_removed(env: &KubeEnv, w: &World, kubelet: &Kubelet) {
    let app = "prog";
    env.blue_green_services(NS, app).await;
    env.apply(deployment(app, "prog:v1", 3)).await;
    kubelet.hold_new_pods(true);
    env.apply(rollout(app, 3, "progressively")).await;
    // Held by the stand-in kubelet: running, not ready (released one at a time below).
    let pods = wait_for(60, "three running, unready Rollout pods", || async {
        let pods = w.rollout_pods(app).await;
        (pods.len() == 3 && pods.iter().all(running_unready))
            .then(|| pods.iter().map(ResourceExt::name_any).collect::<Vec<_>>())
    })
    .await;
    // Nothing is available yet: the Deployment keeps all it had (and is now held).
    wait_for(60, "deployment held at 3", || async {
        (w.annotations(app).await.0.as_deref() == Some("3")).then_some(())
    })
    .await;
    assert_eq!(w.deployment_replicas(app).await, 3);
    let mut seen = Vec::new();
    for (ready, pod) in pods.iter().enumerate() {
        kubelet.set_unready(pod, false);
        let want = 3 - i32::try_from(ready).unwrap() - 1;
        w.wait_deployment_replicas(app, want, "one more Rollout pod available")
            .await;
        seen.push(want);
    }
    assert_eq!(seen, vec![2, 1, 0]);
    kubelet.hold_new_pods(false);
    w.wait_healthy(app, None).await;
    assert_eq!(w.deployment_replicas(app).await, 0);

    let patch = json!({ "spec": { "workloadRef": null, "template": template(app, "prog:v1") } });
    w.rollouts
        .patch(app, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    w.wait_deployment_replicas(app, 3, "reference removed")
        .await;
    assert_eq!(w.annotations(app).await, (None, None));
}

/// (4) never: the Deployment keeps its replicas; switching the same Rollout to onsuccess shows
/// the controller does act on it.
async fn never_keeps_the_deployment(env: &KubeEnv, w: &World) {
    let app = "keep";
    env.blue_green_services(NS, app).await;
    env.apply(deployment(app, "keep:v1", 2)).await;
    env.apply(rollout(app, 1, "never")).await;
    w.wait_healthy(app, None).await;
    // A new generation observed after Healthy proves later passes ran over this Rollout and
    // its Deployment (the Deployment is scaled in the same pass that writes the status).
    let patch = json!({ "spec": { "minReadySeconds": 0 } });
    w.rollouts
        .patch(app, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let generation = w.rollout(app).await.metadata.generation;
    wait_for(60, "the new generation observed", || async {
        let s = w.rollout(app).await.status?;
        (s.observed_generation == generation).then_some(())
    })
    .await;
    assert_eq!(w.deployment_replicas(app).await, 2);
    assert_eq!(w.annotations(app).await, (None, None));

    let patch = json!({ "spec": { "workloadRef": { "scaleDown": "onsuccess" } } });
    w.rollouts
        .patch(app, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    w.wait_deployment_replicas(app, 0, "switched to onsuccess")
        .await;
}

/// (6) a missing Deployment: Degraded with InvalidSpec saying so; recovers when it is created,
/// taking the Deployment's selector too.
async fn missing_deployment_then_created(env: &KubeEnv, w: &World) {
    let app = "late";
    env.blue_green_services(NS, app).await;
    // As Argo's migration guide writes it: no selector, the Deployment's is used.
    let mut manifest = rollout(app, 1, "onsuccess");
    manifest["spec"]
        .as_object_mut()
        .and_then(|spec| spec.remove("selector"))
        .expect("the manifest has a selector to leave out");
    env.apply(manifest).await;
    let message = wait_for(60, "Degraded for the missing Deployment", || async {
        let s = w.rollout(app).await.status?;
        let c = s.condition(ConditionType::InvalidSpec)?;
        (s.phase == Some(RolloutPhase::Degraded)).then(|| c.message.clone().unwrap_or_default())
    })
    .await;
    assert!(
        message.contains("Deployment \"late\" not found") && message.contains("create it"),
        "{message}"
    );
    env.apply(deployment(app, "late:v1", 2)).await;
    let stable = w.wait_healthy(app, None).await;
    assert_eq!(w.image_of(app, &stable).await, "late:v1");
    assert!(
        w.rollout(app)
            .await
            .status
            .unwrap()
            .condition(ConditionType::InvalidSpec)
            .is_none()
    );
    w.wait_deployment_replicas(app, 0, "onsuccess after recovery")
        .await;
}

/// The CRD's validation rule refuses a Rollout with both a template and a reference.
async fn both_template_and_reference_refused(w: &World) {
    let mut manifest = rollout("both", 1, "never");
    manifest["spec"]["template"] = template("both", "both:v1");
    let both: Rollout = serde_json::from_value(manifest).unwrap();
    let refused = w.rollouts.create(&PostParams::default(), &both).await;
    let message = match refused {
        Ok(_) => panic!("the API server stored a Rollout with template and workloadRef"),
        Err(e) => e.to_string(),
    };
    assert!(
        message.contains("set exactly one of spec.template and spec.workloadRef"),
        "{message}"
    );
}

/// Every object of a kind in the namespace; none when listing fails (this only feeds `dump`).
async fn all<K>(client: &Client) -> Vec<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), NS);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// What a timed-out wait prints: each Rollout's status, each Deployment's scale and each pod's
/// readiness.
async fn dump(client: Client) -> String {
    let mut out = String::new();
    for r in all::<Rollout>(&client).await {
        let status = serde_json::to_string(&r.status).unwrap_or_default();
        out += &format!("rollout {}: {status}\n", r.name_any());
    }
    for d in all::<Deployment>(&client).await {
        let replicas = d.spec.as_ref().and_then(|s| s.replicas);
        out += &format!(
            "deployment {}: replicas {replicas:?} {:?}\n",
            d.name_any(),
            d.annotations()
        );
    }
    for p in all::<Pod>(&client).await {
        out += &format!("pod {} unready {}\n", p.name_any(), running_unready(&p));
    }
    out
}
