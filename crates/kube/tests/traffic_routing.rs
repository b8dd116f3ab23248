//! Traffic routing through Istio and Gateway API on a real kube-apiserver with the real CRDs
//! (../shared/fixtures/crds): the seed's §4 flow on a DestinationRule and VirtualService, the
//! same on an HTTPRoute with a gateway-controller stand-in, a gateway that refuses the route,
//! and a user's own routes and fields kept through a whole cycle. Every write cutover makes
//! goes through the CRDs' schemas; a refused write would fail the rollout, not pass silently.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use cutover_core::api::{Rollout, RolloutPhase};
use cutover_kube::traffic::{gateway, istio};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use serde_json::{Value, json};
use support::gateway::GatewayStandIn;
use support::kubelet::Kubelet;
use support::{KubeEnv, template, wait_for};

const NS: &str = "traffic";

fn hash_of(app: &str, version: u32) -> String {
    support::hash_of(app, &format!("{app}:{version}"))
}

struct Subject {
    name: String,
    rollouts: Api<Rollout>,
}

impl Subject {
    async fn create(env: &KubeEnv, name: &str, routing: Value) -> Self {
        for svc in [format!("{name}-active"), format!("{name}-preview")] {
            env.apply(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": svc, "namespace": NS },
                "spec": { "selector": { "app": name }, "ports": [{ "port": 80, "targetPort": 8080 }] },
            }))
            .await;
        }
        let mut traffic = json!({
            "headerRoutes": [{ "header": "x-canary", "exact": "true" }],
            "previewWeight": 10,
            "mirror": { "percent": 100.0 },
        });
        for (k, v) in routing.as_object().unwrap() {
            traffic[k] = v.clone();
        }
        env.apply(json!({
            "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": name, "namespace": NS },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": name } },
                "template": template(name, &format!("{name}:1")),
                "strategy": { "blueGreen": {
                    "activeService": format!("{name}-active"),
                    "previewService": format!("{name}-preview"),
                    "autoPromotionEnabled": false,
                    "scaleDownDelaySeconds": 600,
                    "abortScaleDownDelaySeconds": 0,
                    "trafficRouting": traffic,
                } },
            },
        }))
        .await;
        Self {
            name: name.into(),
            rollouts: Api::namespaced(env.client.clone(), NS),
        }
    }

    async fn wait(&self, what: &str, ok: impl Fn(&Rollout) -> bool) -> Rollout {
        wait_for(90, &format!("{}: {what}", self.name), || async {
            let r = self.rollouts.get(&self.name).await.unwrap();
            ok(&r).then_some(r)
        })
        .await
    }

    async fn wait_stable(&self, version: u32) -> Rollout {
        let hash = hash_of(&self.name, version);
        self.wait(&format!("healthy on {hash}"), |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref() == Some(&hash)
        })
        .await
    }

    async fn set_version(&self, version: u32) {
        let t = template(&self.name, &format!("{}:{version}", self.name));
        let patch = json!({ "spec": { "template": t } });
        self.rollouts
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    async fn patch_status(&self, status: Value) {
        self.rollouts
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await
            .unwrap();
    }

    /// Promotes once the rollout waits for promotion (a promote before the pause is set would
    /// be a no-op).
    async fn promote(&self) {
        self.wait("waiting for promotion", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| !s.pause_conditions.is_empty())
        })
        .await;
        self.patch_status(json!({ "pauseConditions": null })).await;
    }

    async fn delete(&self) {
        self.rollouts
            .delete(&self.name, &DeleteParams::default())
            .await
            .unwrap();
        wait_for(60, &format!("{} deleted", self.name), || async {
            self.rollouts
                .get_opt(&self.name)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        })
        .await;
    }
}

async fn get(env: &KubeEnv, ar: &ApiResource, name: &str) -> Value {
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), NS, ar);
    api.get(name).await.unwrap().data
}

/// Waits until the object satisfies `ok`; returns it.
async fn wait_object(
    env: &KubeEnv,
    ar: &ApiResource,
    name: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(90, &format!("{} {name}: {what}", ar.kind), || async {
        let v = get(env, ar, name).await;
        ok(&v).then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traffic_routing_against_real_crds() {
    let Some(env) = KubeEnv::installed(NS).await else {
        return;
    };
    if !env.install_route_crds().await {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let _kubelet = Kubelet::start(env.client.clone(), NS).await;
    let stand_in = GatewayStandIn::start(env.client.clone(), NS);
    let controller = support::start_controller(&env.controller_client().await, NS);
    istio_seed_flow(&env).await;
    gateway_api_flow(&env, &stand_in).await;
    controller.abort();
}

/// The seed's DestinationRule and VirtualService (host `my-app`), with a user's extra route and
/// fields. The subsets' `version` labels are left out: the pods carry the revision's hash.
async fn istio_seed_objects(env: &KubeEnv) {
    env.apply(json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
        "metadata": { "name": "my-app", "namespace": NS },
        "spec": {
            "host": "my-app",
            "trafficPolicy": { "connectionPool": { "http": { "http1MaxPendingRequests": 100 } } },
            "subsets": [
                { "name": "blue", "labels": { "app": "my-app" } },
                { "name": "green", "labels": { "app": "my-app" } },
                { "name": "canary-old", "labels": { "track": "old" } },
            ],
        },
    }))
    .await;
    env.apply(json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": { "name": "my-app", "namespace": NS },
        "spec": {
            "hosts": ["my-app", "my-app.example.com"],
            "gateways": ["my-app-gateway"],
            "http": [
                {
                    "name": "legacy",
                    "match": [{ "uri": { "prefix": "/legacy" } }],
                    "route": [{ "destination": { "host": "legacy", "port": { "number": 8080 } } }],
                    "retries": { "attempts": 3, "perTryTimeout": "2s" },
                },
                {
                    "name": "primary",
                    "timeout": "5s",
                    "route": [
                        { "destination": { "host": "my-app", "subset": "blue", "port": { "number": 80 } }, "weight": 100 },
                        { "destination": { "host": "my-app", "subset": "green", "port": { "number": 80 } }, "weight": 0 },
                    ],
                },
            ],
        },
    }))
    .await;
}

fn route<'a>(vs: &'a Value, name: &str) -> &'a Value {
    vs["spec"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("route {name} in {vs}"))
}

/// `subset=weight` of the primary route, in order.
fn weights(vs: &Value) -> Vec<(String, i64)> {
    route(vs, "primary")["route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["destination"]["subset"].as_str().unwrap().to_string(),
                d["weight"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

fn w(blue: i64, green: i64) -> Vec<(String, i64)> {
    vec![("blue".into(), blue), ("green".into(), green)]
}

fn route_names(vs: &Value) -> Vec<String> {
    vs["spec"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("").to_string())
        .collect()
}

fn subset_hash(dr: &Value, subset: &str) -> Option<String> {
    dr["spec"]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == subset)?["labels"]["rollouts-pod-template-hash"]
        .as_str()
        .map(str::to_string)
}

/// The VirtualService with the parts cutover manages taken out: the primary route's
/// destinations and mirror, and inserted routes.
fn unmanaged(vs: &Value) -> Value {
    let mut spec = vs["spec"].clone();
    let http: Vec<Value> = spec["http"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            !r["name"]
                .as_str()
                .unwrap_or("")
                .starts_with("cutover-header-")
        })
        .map(|r| {
            let mut r = r.clone();
            if r["name"] == "primary" {
                let m = r.as_object_mut().unwrap();
                for k in ["route", "mirror", "mirrorPercentage"] {
                    m.remove(k);
                }
            }
            r
        })
        .collect();
    spec["http"] = json!(http);
    spec
}

async fn istio_seed_flow(env: &KubeEnv) {
    istio_seed_objects(env).await;
    let vs_ar = istio::virtual_service();
    let dr_ar = istio::destination_rule();
    let original = get(env, &vs_ar, "my-app").await;
    let original_dr = get(env, &dr_ar, "my-app").await;
    let s = Subject::create(
        env,
        "my-app",
        json!({ "istio": {
            "virtualService": { "name": "my-app", "routes": ["primary"] },
            "destinationRule": { "name": "my-app", "activeSubsetName": "blue", "previewSubsetName": "green" },
        } }),
    )
    .await;
    let (h1, h2, h3) = (
        hash_of("my-app", 1),
        hash_of("my-app", 2),
        hash_of("my-app", 3),
    );

    // Step 1 of the seed: 100 % blue.
    s.wait_stable(1).await;
    let dr = get(env, &dr_ar, "my-app").await;
    assert_eq!(subset_hash(&dr, "blue"), Some(h1.clone()));
    let vs = get(env, &vs_ar, "my-app").await;
    assert_eq!(weights(&vs), w(100, 0));
    assert_eq!(route_names(&vs), ["legacy", "primary"]);
    assert_eq!(unmanaged(&vs), unmanaged(&original));
    eprintln!("ok: istio 100/0 on the first revision");

    // Step 2: the update gets green, the header route and a mirror, then 10 % once available.
    s.set_version(2).await;
    let vs = wait_object(env, &vs_ar, "my-app", "90/10", |v| weights(v) == w(90, 10)).await;
    let dr = get(env, &dr_ar, "my-app").await;
    assert_eq!(subset_hash(&dr, "blue"), Some(h1.clone()));
    assert_eq!(subset_hash(&dr, "green"), Some(h2.clone()));
    let names = route_names(&vs);
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[0], "legacy");
    assert!(names[1].starts_with("cutover-header-"), "{names:?}");
    assert_eq!(names[2], "primary");
    let header = &vs["spec"]["http"][1];
    assert_eq!(
        header["match"][0]["headers"]["x-canary"],
        json!({ "exact": "true" })
    );
    assert_eq!(header["route"][0]["destination"]["subset"], "green");
    assert_eq!(header["route"][0]["destination"]["host"], "my-app");
    let primary = route(&vs, "primary");
    assert_eq!(primary["mirror"]["subset"], "green");
    assert_eq!(primary["mirrorPercentage"]["value"].as_f64(), Some(100.0));
    assert_eq!(unmanaged(&vs), unmanaged(&original));
    s.wait("paused for promotion", |r| {
        r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Paused)
    })
    .await;
    eprintln!("ok: istio 90/10 with header route and mirror while waiting for promotion");

    // Step 3: promotion moves everything to green; header route and mirror go.
    s.promote().await;
    s.wait_stable(2).await;
    let vs = get(env, &vs_ar, "my-app").await;
    assert_eq!(weights(&vs), w(0, 100));
    assert_eq!(route_names(&vs), ["legacy", "primary"]);
    assert!(route(&vs, "primary").get("mirror").is_none());
    let dr = get(env, &dr_ar, "my-app").await;
    assert_eq!(subset_hash(&dr, "green"), Some(h2.clone()));
    eprintln!("ok: istio 0/100 after promotion, verified");

    // The next update goes into blue, the subset without production traffic; abort returns
    // everything to green.
    s.set_version(3).await;
    wait_object(env, &vs_ar, "my-app", "10 % to blue", |v| {
        weights(v) == w(10, 90)
    })
    .await;
    let dr = get(env, &dr_ar, "my-app").await;
    assert_eq!(subset_hash(&dr, "blue"), Some(h3.clone()));
    s.patch_status(json!({ "abort": true })).await;
    s.wait("aborted", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.abort && s.phase == Some(RolloutPhase::Degraded))
    })
    .await;
    let vs = wait_object(env, &vs_ar, "my-app", "all back on green", |v| {
        weights(v) == w(0, 100) && route_names(v).len() == 2
    })
    .await;
    assert!(route(&vs, "primary").get("mirror").is_none());
    eprintln!("ok: istio abort returns all traffic to the stable subset");

    // Delete: 100 % on the stable subset, cutover's labels gone, the rest as the user wrote it.
    s.delete().await;
    let vs = get(env, &vs_ar, "my-app").await;
    assert_eq!(weights(&vs), w(0, 100));
    assert_eq!(unmanaged(&vs), unmanaged(&original));
    let dr = get(env, &dr_ar, "my-app").await;
    assert_eq!(
        dr["spec"], original_dr["spec"],
        "subsets as the user wrote them"
    );
    eprintln!("ok: istio delete restores");
}

/// An HTTPRoute with the managed rule and a user's other rule and fields.
async fn gateway_objects(env: &KubeEnv) -> Value {
    env.apply(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "shop", "namespace": NS },
        "spec": {
            "parentRefs": [{ "name": "public", "sectionName": "http" }],
            "hostnames": ["shop.example.com"],
            "rules": [
                {
                    "name": "static",
                    "matches": [{ "path": { "type": "PathPrefix", "value": "/static" } }],
                    "backendRefs": [{ "name": "static-files", "port": 80 }],
                },
                {
                    "name": "main",
                    "matches": [{ "path": { "type": "PathPrefix", "value": "/" } }],
                    "backendRefs": [{ "name": "shop-active", "port": 80 }],
                    "timeouts": { "request": "10s" },
                },
            ],
        },
    }))
    .await;
    get(env, &gateway::http_route(), "shop").await
}

fn rule<'a>(route: &'a Value, name: &str) -> &'a Value {
    route["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("rule {name} in {route}"))
}

fn backend_weights(route: &Value) -> Vec<(String, i64)> {
    rule(route, "main")["backendRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["weight"].as_i64().unwrap_or(1),
            )
        })
        .collect()
}

fn bw(active: i64, preview: i64) -> Vec<(String, i64)> {
    vec![
        ("shop-active".into(), active),
        ("shop-preview".into(), preview),
    ]
}

fn rule_names(route: &Value) -> Vec<String> {
    route["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn gateway_api_flow(env: &KubeEnv, stand_in: &GatewayStandIn) {
    let original = gateway_objects(env).await;
    let ar = gateway::http_route();
    let s = Subject::create(
        env,
        "shop",
        json!({ "gatewayAPI": { "httpRoutes": [{ "name": "shop", "rules": ["main"] }] } }),
    )
    .await;
    s.wait_stable(1).await;
    let route = get(env, &ar, "shop").await;
    assert_eq!(backend_weights(&route), bw(100, 0));
    assert_eq!(rule(&route, "static"), rule(&original, "static"));
    assert_eq!(
        rule(&route, "main")["timeouts"],
        json!({ "request": "10s" })
    );
    eprintln!("ok: gateway 100/0, verified by Accepted");

    s.set_version(2).await;
    let route = wait_object(env, &ar, "shop", "90/10", |r| {
        backend_weights(r) == bw(90, 10)
    })
    .await;
    let names = rule_names(&route);
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[0], "static");
    assert!(names[1].starts_with("cutover-header-"), "{names:?}");
    let header = &route["spec"]["rules"][1];
    assert_eq!(
        header["matches"][0],
        json!({
            "path": { "type": "PathPrefix", "value": "/" },
            "headers": [{ "type": "Exact", "name": "x-canary", "value": "true" }],
        })
    );
    assert_eq!(header["backendRefs"][0]["name"], "shop-preview");
    let filters = rule(&route, "main")["filters"].as_array().unwrap().clone();
    assert_eq!(filters.len(), 1);
    assert_eq!(filters[0]["type"], "RequestMirror");
    assert_eq!(
        filters[0]["requestMirror"]["backendRef"]["name"],
        "shop-preview"
    );
    assert_eq!(filters[0]["requestMirror"]["percent"], 100);
    eprintln!("ok: gateway 90/10 with header rule and RequestMirror");

    s.promote().await;
    s.wait_stable(2).await;
    let route = get(env, &ar, "shop").await;
    assert_eq!(backend_weights(&route), bw(100, 0));
    assert_eq!(rule_names(&route), ["static", "main"]);
    assert!(rule(&route, "main").get("filters").is_none());
    eprintln!("ok: gateway promoted, 100/0 on the switched active Service");

    // The status write of the pass that switched was lost (a route write refused, the
    // controller killed): the next pass records the switch from the Service, and the route,
    // derived from the status, stays 100/0.
    let (h1, h2) = (hash_of("shop", 1), hash_of("shop", 2));
    s.patch_status(json!({ "blueGreen": { "activeSelector": h1 } }))
        .await;
    s.wait("activeSelector recorded from the Service", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.blue_green.active_selector.as_deref() == Some(h2.as_str()))
    })
    .await;
    let route = get(env, &ar, "shop").await;
    assert_eq!(backend_weights(&route), bw(100, 0));
    assert_eq!(rule_names(&route), ["static", "main"]);
    eprintln!("ok: gateway a lost status write is recovered, route stays 100/0");

    // A gateway that refuses the route: the rollout says so and the switch is not verified.
    stand_in.accept(false);
    s.set_version(3).await;
    let r = s
        .wait("degraded naming the route", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Some(RolloutPhase::Degraded)
                    && s.message
                        .as_deref()
                        .unwrap_or("")
                        .contains("HTTPRoute traffic/shop")
            })
        })
        .await;
    let message = r.status.unwrap().message.unwrap();
    assert!(message.contains("NotAllowedByListeners"), "{message}");
    s.promote().await;
    let h3 = hash_of("shop", 3);
    let r = s
        .wait("switch written, not verified", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.blue_green.active_selector.as_deref() == Some(h3.as_str()))
        })
        .await;
    let status = r.status.unwrap();
    assert_ne!(
        status.stable_rs.as_deref(),
        Some(h3.as_str()),
        "not promoted while refused"
    );
    assert!(
        status
            .blue_green
            .switch
            .as_ref()
            .is_none_or(|sw| sw.verified_at.is_none()),
        "{status:?}"
    );
    eprintln!("ok: gateway refusal blocks the switch: {message}");
    stand_in.accept(true);
    // The next write (a new generation) is accepted; nudge one by touching the route.
    let routes: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), NS, &ar);
    let touch = json!({ "spec": { "hostnames": ["shop.example.com", "www.shop.example.com"] } });
    routes
        .patch("shop", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    s.wait_stable(3).await;
    eprintln!("ok: gateway accepted again, switch verified");

    s.delete().await;
    let route = get(env, &ar, "shop").await;
    assert_eq!(rule_names(&route), ["static", "main"]);
    assert_eq!(rule(&route, "main")["backendRefs"][0]["weight"], 100);
    assert!(rule(&route, "main").get("filters").is_none());
    assert_eq!(rule(&route, "static"), rule(&original, "static"));
    eprintln!("ok: gateway delete restores");
}
