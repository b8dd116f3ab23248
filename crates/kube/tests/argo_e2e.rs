//! Argo Rollouts' semantics on a real kube-apiserver and kube-controller-manager, with the
//! kubelet stand-in and the controller in-process: the progress deadline with a crash-looping
//! preview, a stable ReplicaSet deleted by hand, a selector edited by hand, a template the API
//! server refuses, role metadata, revision numbers and status counts. One test walks the
//! scenarios, each on its own Rollout, to share one server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use cutover_core::api::{ConditionType, POD_TEMPLATE_HASH_LABEL, Rollout, RolloutPhase};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::kubelet::Kubelet;
use support::{KubeEnv, hash_of, template, wait_for};

const NS: &str = "argo";

/// One Rollout under test, with its two Services.
struct Subject {
    name: String,
    rollouts: Api<Rollout>,
    services: Api<Service>,
    replica_sets: Api<ReplicaSet>,
    pods: Api<Pod>,
    events: Api<DynamicObject>,
}

impl Subject {
    async fn create(env: &KubeEnv, name: &str, blue_green: Value, extra_spec: Value) -> Self {
        for svc in [format!("{name}-active"), format!("{name}-preview")] {
            env.apply(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": svc, "namespace": NS },
                "spec": { "selector": { "app": name },
                          "ports": [{ "port": 80, "targetPort": 8080 }] },
            }))
            .await;
        }
        let mut bg = json!({
            "activeService": format!("{name}-active"),
            "previewService": format!("{name}-preview"),
            "autoPromotionEnabled": false,
            "scaleDownDelaySeconds": 600,
        });
        merge(&mut bg, blue_green);
        let mut spec = json!({
            "replicas": 2,
            "selector": { "matchLabels": { "app": name } },
            "template": template(name, &format!("{name}:1")),
            "strategy": { "blueGreen": bg },
        });
        merge(&mut spec, extra_spec);
        env.apply(json!({
            "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": name, "namespace": NS },
            "spec": spec,
        }))
        .await;
        let client = env.client.clone();
        let events = Api::namespaced_with(
            client.clone(),
            NS,
            &ApiResource::from_gvk(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event")),
        );
        Self {
            name: name.into(),
            rollouts: Api::namespaced(client.clone(), NS),
            services: Api::namespaced(client.clone(), NS),
            replica_sets: Api::namespaced(client.clone(), NS),
            pods: Api::namespaced(client, NS),
            events,
        }
    }

    fn hash(&self, version: u32) -> String {
        hash_of(&self.name, &self.image(version))
    }

    fn image(&self, version: u32) -> String {
        format!("{}:{version}", self.name)
    }

    async fn rollout(&self) -> Rollout {
        self.rollouts.get(&self.name).await.unwrap()
    }

    async fn wait(&self, secs: u64, what: &str, ok: impl Fn(&Rollout) -> bool) -> Rollout {
        wait_for(secs, &format!("{}: {what}", self.name), || async {
            let r = self.rollout().await;
            ok(&r).then_some(r)
        })
        .await
    }

    async fn wait_phase(&self, phase: RolloutPhase, secs: u64) -> Rollout {
        self.wait(secs, &format!("phase {phase:?}"), |r| {
            r.status.as_ref().and_then(|s| s.phase) == Some(phase)
        })
        .await
    }

    async fn set_template(&self, template: Value) {
        let patch = json!({ "spec": { "template": template } });
        self.rollouts
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    async fn set_image(&self, image: &str) {
        self.set_template(template(&self.name, image)).await;
    }

    async fn promote(&self) {
        self.rollouts
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": { "pauseConditions": null } })),
            )
            .await
            .unwrap();
    }

    async fn selector(&self, role: &str) -> Option<String> {
        let svc = self
            .services
            .get(&format!("{}-{role}", self.name))
            .await
            .unwrap();
        svc.spec?.selector?.get(POD_TEMPLATE_HASH_LABEL).cloned()
    }

    async fn wait_selector(&self, role: &str, hash: &str, secs: u64) {
        wait_for(
            secs,
            &format!("{} {role} selecting {hash}", self.name),
            || async { (self.selector(role).await.as_deref() == Some(hash)).then_some(()) },
        )
        .await;
    }

    async fn replica_set(&self, hash: &str) -> ReplicaSet {
        self.replica_sets
            .get(&format!("{}-{hash}", self.name))
            .await
            .unwrap()
    }

    async fn pods_of(&self, hash: &str) -> Vec<Pod> {
        self.pods
            .list(&ListParams::default().labels(&format!("{POD_TEMPLATE_HASH_LABEL}={hash}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// `reason: note` of the Rollout's events.
    async fn events(&self) -> Vec<String> {
        let list = self.events.list(&ListParams::default()).await.unwrap();
        list.items
            .iter()
            .filter(|e| {
                e.data.pointer("/regarding/name").and_then(Value::as_str) == Some(&self.name)
            })
            .map(|e| {
                format!(
                    "{}: {}",
                    e.data["reason"].as_str().unwrap_or_default(),
                    e.data["note"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }

    async fn wait_event(&self, reason: &str, secs: u64) -> String {
        wait_for(secs, &format!("{}: event {reason}", self.name), || async {
            self.events()
                .await
                .into_iter()
                .find(|e| e.starts_with(&format!("{reason}:")))
        })
        .await
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn argo_semantics_against_a_real_api_server() {
    let started = std::time::Instant::now();
    let Some(env) = KubeEnv::installed(NS).await else {
        return;
    };
    let client = env.client.clone();
    let dump_client = client.clone();
    let _ = support::DUMP.set(Box::new(move || {
        let client = dump_client.clone();
        Box::pin(async move { dump(client).await })
    }));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let _kubelet = Kubelet::start(client.clone(), NS).await;
    let controller = support::start_controller(&env.controller_client().await, NS);
    progress_deadline_with_a_crash_looping_preview(&env).await;
    a_deleted_stable_replica_set_is_replaced(&env).await;
    a_selector_edited_by_hand_is_set_back(&env).await;
    a_template_the_api_server_refuses_is_reported(&env).await;
    role_metadata_reaches_pods(&env).await;
    revision_numbers_and_counts(&env, &client).await;
    controller.abort();
    a_namespaced_install_runs_a_rollout(&env).await;
    a_missing_permission_is_reported_not_a_silent_stall(&env).await;
    eprintln!("argo e2e took {:.1}s", started.elapsed().as_secs_f64());
}

async fn progress_deadline_with_a_crash_looping_preview(env: &KubeEnv) {
    let s = Subject::create(
        env,
        "deadline",
        json!({}),
        json!({ "progressDeadlineSeconds": 5 }),
    )
    .await;
    s.wait_phase(RolloutPhase::Healthy, 60).await;
    s.set_image("deadline:crashloop").await;
    let r = s.wait_phase(RolloutPhase::Degraded, 60).await;
    let message = r
        .status
        .as_ref()
        .and_then(|st| st.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("ProgressDeadlineExceeded")
            && message.contains("CrashLoopBackOff")
            && message.contains("exit code 1")
            && message.contains("panic: missing DATABASE_URL"),
        "{message}"
    );
    // It stays Degraded (no flapping back to Progressing) and says so once.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let phase = s.rollout().await.status.and_then(|st| st.phase);
        assert_eq!(phase, Some(RolloutPhase::Degraded));
    }
    let deadline_events = s
        .events()
        .await
        .into_iter()
        .filter(|e| e.starts_with("ProgressDeadlineExceeded"))
        .count();
    assert_eq!(deadline_events, 1);
    eprintln!("ok: progress deadline with a crash-looping preview");
}

async fn a_deleted_stable_replica_set_is_replaced(env: &KubeEnv) {
    let s = Subject::create(
        env,
        "lost",
        json!({ "previewReplicaCount": 1, "scaleDownDelaySeconds": 0 }),
        json!({}),
    )
    .await;
    let (h1, h2) = (s.hash(1), s.hash(2));
    s.wait_phase(RolloutPhase::Healthy, 60).await;
    s.set_image(&s.image(2)).await;
    s.wait_phase(RolloutPhase::Paused, 60).await;
    s.replica_sets
        .delete(&format!("lost-{h1}"), &DeleteParams::foreground())
        .await
        .unwrap();
    let event = s.wait_event("StableRevisionLost", 30).await;
    assert!(event.contains(&h1), "{event}");
    s.wait_selector("active", &h2, 30).await;
    let r = s.wait_phase(RolloutPhase::Healthy, 60).await;
    assert_eq!(r.status.unwrap().stable_rs.as_deref(), Some(h2.as_str()));
    eprintln!("ok: deleted stable ReplicaSet replaced");
}

async fn a_selector_edited_by_hand_is_set_back(env: &KubeEnv) {
    let s = Subject::create(env, "edit", json!({}), json!({})).await;
    let (h1, h2) = (s.hash(1), s.hash(2));
    s.wait_phase(RolloutPhase::Healthy, 60).await;
    s.set_image(&s.image(2)).await;
    s.wait_phase(RolloutPhase::Paused, 60).await;
    s.services
        .patch(
            "edit-active",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "selector": { POD_TEMPLATE_HASH_LABEL: h2 } } })),
        )
        .await
        .unwrap();
    let event = s.wait_event("ServiceSelectorRepaired", 30).await;
    assert!(event.contains(&h2) && event.contains(&h1), "{event}");
    s.wait_selector("active", &h1, 30).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let st = s.rollout().await.status.unwrap();
        assert_eq!(
            st.phase,
            Some(RolloutPhase::Paused),
            "not promoted by the edit"
        );
        assert_eq!(st.stable_rs.as_deref(), Some(h1.as_str()));
    }
    eprintln!("ok: hand-edited selector set back");
}

async fn a_template_the_api_server_refuses_is_reported(env: &KubeEnv) {
    let s = Subject::create(env, "refused", json!({}), json!({})).await;
    s.wait_phase(RolloutPhase::Healthy, 60).await;
    let mut bad = template("refused", "refused:2");
    bad["spec"]["containers"][0]["resources"] = json!({ "limits": { "memory": "lots" } });
    s.set_template(bad).await;
    let r = s
        .wait(60, "refusal in status", |r| {
            r.status
                .as_ref()
                .and_then(|st| st.condition(ConditionType::ReplicaFailure))
                .is_some()
        })
        .await;
    let st = r.status.unwrap();
    assert_eq!(st.phase, Some(RolloutPhase::Degraded));
    let message = st.message.unwrap_or_default();
    assert!(
        message.contains("refused") && message.contains("quantities must match"),
        "{message}"
    );
    let event = s.wait_event("ApiServerRefused", 30).await;
    assert!(event.contains("quantities must match"), "{event}");
    // Fixed: the update goes on and the report is gone.
    s.set_image("refused:2").await;
    let r = s.wait_phase(RolloutPhase::Paused, 60).await;
    assert!(
        r.status
            .unwrap()
            .condition(ConditionType::ReplicaFailure)
            .is_none()
    );
    eprintln!("ok: refused template reported");
}

async fn role_metadata_reaches_pods(env: &KubeEnv) {
    let s = Subject::create(
        env,
        "meta",
        json!({
            "previewService": null,
            "activeMetadata": { "labels": { "role": "active" } },
            "previewMetadata": { "labels": { "role": "preview" } },
        }),
        json!({}),
    )
    .await;
    let (h1, h2) = (s.hash(1), s.hash(2));
    s.wait_phase(RolloutPhase::Healthy, 60).await;
    let rs = s.replica_set(&h1).await;
    let labels = rs
        .spec
        .unwrap()
        .template
        .unwrap()
        .metadata
        .unwrap()
        .labels
        .unwrap();
    assert_eq!(
        labels.get("role").map(String::as_str),
        Some("active"),
        "created with it"
    );
    for pod in s.pods_of(&h1).await {
        assert_eq!(pod.labels().get("role").map(String::as_str), Some("active"));
    }
    s.set_image(&s.image(2)).await;
    s.wait_phase(RolloutPhase::Paused, 60).await;
    let previews = s.pods_of(&h2).await;
    assert!(!previews.is_empty());
    for pod in previews {
        assert_eq!(
            pod.labels().get("role").map(String::as_str),
            Some("preview"),
            "preview metadata without a preview Service"
        );
    }
    // A change of the metadata reaches running pods.
    s.rollouts
        .patch(
            "meta",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "strategy": { "blueGreen": {
                "activeMetadata": { "labels": { "role": "live" } } } } } })),
        )
        .await
        .unwrap();
    wait_for(30, "active pods relabelled", || async {
        let pods = s.pods_of(&h1).await;
        pods.iter()
            .all(|p| p.labels().get("role").map(String::as_str) == Some("live"))
            .then_some(())
    })
    .await;
    eprintln!("ok: role metadata");
}

async fn revision_numbers_and_counts(env: &KubeEnv, client: &Client) {
    let s = Subject::create(env, "renum", json!({ "previewReplicaCount": 1 }), json!({})).await;
    let (h1, h2) = (s.hash(1), s.hash(2));
    s.wait_phase(RolloutPhase::Healthy, 60).await;
    s.set_image(&s.image(2)).await;
    let r = s
        .wait(60, "paused with the preview ready", |r| {
            r.status.as_ref().is_some_and(|st| {
                st.phase == Some(RolloutPhase::Paused) && st.updated_replicas == 1
            })
        })
        .await;
    let st = r.status.unwrap();
    // Argo while paused: (replicas, status.replicas, updated, ready, available) = (2,3,1,2,2).
    assert_eq!(
        (
            st.replicas,
            st.updated_replicas,
            st.ready_replicas,
            st.available_replicas
        ),
        (3, 1, 2, 2)
    );
    let started = std::time::Instant::now();
    s.promote().await;
    let r = s
        .wait(60, "v2 stable", |r| {
            r.status
                .as_ref()
                .is_some_and(|st| st.stable_rs.as_deref() == Some(h2.as_str()))
        })
        .await;
    let switch = r.status.unwrap().blue_green.switch.unwrap();
    let recorded = switch.seconds.unwrap();
    let verified = switch.verified_at.clone().unwrap();
    let span = verified.0.as_millisecond() - switch.started_at.0.as_millisecond();
    assert_eq!(
        recorded,
        span as f64 / 1000.0,
        "seconds = verifiedAt - startedAt"
    );
    let text = serde_json::to_string(&switch).unwrap();
    assert!(
        text.contains(".") && text.contains("startedAt"),
        "sub-second times: {text}"
    );
    eprintln!(
        "switch recorded {recorded:.3}s; promote to stable observed by the test {:.3}s",
        started.elapsed().as_secs_f64()
    );
    // Back to v1: its ReplicaSet is reused and gets the next number, 3.
    s.set_image(&s.image(1)).await;
    s.wait(60, "current revision 3", |r| {
        r.status.as_ref().and_then(|st| st.current_revision) == Some(3)
    })
    .await;
    let rs = s.replica_set(&h1).await;
    let annotations = rs.annotations();
    assert_eq!(
        annotations
            .get(cutover_kube::REVISION_ANNOTATION)
            .map(String::as_str),
        Some("3")
    );
    assert_eq!(
        annotations
            .get(cutover_kube::REVISION_HISTORY_ANNOTATION)
            .map(String::as_str),
        Some("1")
    );
    let _ = client;
    eprintln!("ok: revision numbers and counts");
}

/// A Rollout in namespace `ns`, its Services, and a controller watching only `ns` as the
/// namespaced install's ServiceAccount there.
async fn in_namespace(
    env: &KubeEnv,
    ns: &str,
    edit: impl Fn(&mut Value),
) -> (Api<Rollout>, Kubelet, tokio::task::JoinHandle<()>) {
    env.install_namespaced(ns, edit).await;
    env.blue_green_services(ns, "web").await;
    let kubelet = Kubelet::start(env.client.clone(), ns).await;
    let client = env.service_account_client(ns, "cutover-controller").await;
    let controller = support::start_controller(&client, ns);
    env.apply(json!({
        "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "web", "namespace": ns },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": template("web", "web:1"),
            "strategy": { "blueGreen": {
                "activeService": "web-active", "previewService": "web-preview",
                "autoPromotionEnabled": false,
            } },
        },
    }))
    .await;
    (Api::namespaced(env.client.clone(), ns), kubelet, controller)
}

async fn a_namespaced_install_runs_a_rollout(env: &KubeEnv) {
    let (rollouts, _kubelet, controller) = in_namespace(env, "team", |_| {}).await;
    let phase = |want: RolloutPhase| {
        let rollouts = rollouts.clone();
        async move {
            wait_for(60, &format!("team/web {want:?}"), || async {
                let r = rollouts.get("web").await.ok()?;
                (r.status?.phase == Some(want)).then_some(())
            })
            .await
        }
    };
    phase(RolloutPhase::Healthy).await;
    rollouts
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "template": template("web", "web:2") } })),
        )
        .await
        .unwrap();
    phase(RolloutPhase::Paused).await;
    rollouts
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": { "pauseConditions": null } })),
        )
        .await
        .unwrap();
    wait_for(60, "team/web promoted", || async {
        let s = rollouts.get("web").await.ok()?.status?;
        (s.phase == Some(RolloutPhase::Healthy)
            && s.stable_rs.as_deref() == Some(hash_of("web", "web:2").as_str()))
        .then_some(())
    })
    .await;
    controller.abort();
    eprintln!("ok: namespaced install (Role, RoleBinding, one namespace)");
}

async fn a_missing_permission_is_reported_not_a_silent_stall(env: &KubeEnv) {
    // The namespaced Role without `patch` on Services: no selector can move.
    let without_service_patch = |v: &mut Value| {
        if v["kind"] == "Role" && v["metadata"]["name"] == "cutover-controller" {
            for rule in v["rules"].as_array_mut().into_iter().flatten() {
                if rule["resources"] == json!(["services"]) {
                    rule["verbs"] = json!(["get", "list", "watch"]);
                }
            }
        }
    };
    let (rollouts, _kubelet, controller) = in_namespace(env, "locked", without_service_patch).await;
    let status = wait_for(60, "the refusal in status", || async {
        let s = rollouts.get("web").await.ok()?.status?;
        s.condition(ConditionType::ReplicaFailure)
            .is_some()
            .then_some(s)
    })
    .await;
    let message = status.message.unwrap_or_default();
    assert_eq!(status.phase, Some(RolloutPhase::Degraded));
    assert!(
        message.contains("forbidden") && message.contains("services"),
        "{message}"
    );
    let events: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        "locked",
        &ApiResource::from_gvk(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event")),
    );
    wait_for(30, "an ApiServerRefused event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.data["reason"] == "ApiServerRefused")
            .then_some(())
    })
    .await;
    controller.abort();
    eprintln!("ok: a missing RBAC rule shows as Forbidden in status and events");
}

/// Every Rollout's status and every ReplicaSet's counts, for a failed wait.
async fn dump(client: Client) -> String {
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), NS);
    let sets: Api<ReplicaSet> = Api::namespaced(client, NS);
    let mut out = String::from("---- rollouts\n");
    for r in rollouts.list(&ListParams::default()).await.unwrap().items {
        out.push_str(&format!(
            "{}: {}\n",
            r.name_any(),
            serde_json::to_string(&r.status).unwrap()
        ));
    }
    out.push_str("---- replicasets\n");
    for rs in sets.list(&ListParams::default()).await.unwrap().items {
        out.push_str(&format!(
            "{} {:?} {}\n",
            rs.name_any(),
            rs.annotations(),
            serde_json::to_string(&rs.status).unwrap()
        ));
    }
    out
}
