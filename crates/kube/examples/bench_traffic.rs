//! Time from `promote` to the Istio route written and to the switch verified.
//!
//! `cargo run --release -p cutover-kube --example bench_traffic -- [PROMOTIONS]` (default 20)
//! starts the test control plane (`scripts/kube-test-env`), installs cutover's CRDs and the
//! Istio CRDs from ../shared/fixtures/crds, runs the controller in-process with the kubelet
//! stand-in, and for each promotion: sets a new image, waits until the rollout waits for
//! promotion with the preview's 10 % flowing, promotes (clears the pause), then polls every
//! 2 ms for the VirtualService showing 100 % on the new revision's subset ("written") and for
//! the rollout's switch `verifiedAt` ("verified"). Prints p50/p99 of both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use cutover_core::api::{Rollout, RolloutPhase};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use support::KubeEnv;
use support::kubelet::Kubelet;

const NS: &str = "bench";

fn template(version: u32) -> Value {
    json!({
        "metadata": { "labels": { "app": "app" } },
        "spec": { "containers": [{ "name": "app", "image": format!("app:{version}") }] },
    })
}

async fn setup(env: &KubeEnv) {
    for svc in ["app-active", "app-preview"] {
        env.apply(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": svc, "namespace": NS },
            "spec": { "selector": { "app": "app" }, "ports": [{ "port": 80 }] },
        }))
        .await;
    }
    env.apply(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": { "name": "app", "namespace": NS },
        "spec": { "host": "app", "subsets": [{ "name": "blue" }, { "name": "green" }] },
    }))
    .await;
    env.apply(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": { "name": "app", "namespace": NS },
        "spec": { "hosts": ["app"], "http": [{ "name": "primary", "route": [
            { "destination": { "host": "app", "subset": "blue" }, "weight": 100 },
        ] }] },
    }))
    .await;
    env.apply(json!({
        "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "app", "namespace": NS },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "app" } },
            "template": template(0),
            "strategy": { "blueGreen": {
                "activeService": "app-active", "previewService": "app-preview",
                "autoPromotionEnabled": false, "scaleDownDelaySeconds": 0,
                "trafficRouting": {
                    "headerRoutes": [{ "header": "x-canary", "exact": "true" }],
                    "previewWeight": 10,
                    "istio": {
                        "virtualService": { "name": "app", "routes": ["primary"] },
                        "destinationRule": { "name": "app", "activeSubsetName": "blue", "previewSubsetName": "green" },
                    },
                },
            } },
        },
    }))
    .await;
}

/// The subset holding `hash` and the weight the primary route gives it.
async fn weight_of(vs: &Api<DynamicObject>, dr: &Api<DynamicObject>, hash: &str) -> i64 {
    let dr = dr.get("app").await.unwrap().data;
    let vs = vs.get("app").await.unwrap().data;
    let subset = dr["spec"]["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["labels"]["rollouts-pod-template-hash"] == hash)
        .and_then(|s| s["name"].as_str().map(str::to_string));
    let Some(subset) = subset else { return 0 };
    vs["spec"]["http"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == "primary")
        .flat_map(|r| r["route"].as_array().cloned().unwrap_or_default())
        .find(|d| d["destination"]["subset"] == subset.as_str())
        .and_then(|d| d["weight"].as_i64())
        .unwrap_or(0)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let promotions: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let Some(env) = KubeEnv::installed(NS).await else {
        return;
    };
    if !env.install_route_crds().await {
        return;
    }
    let _kubelet = Kubelet::start(env.client.clone(), NS).await;
    let controller = support::start_controller(&env.client, NS);
    setup(&env).await;
    let rollouts: Api<Rollout> = Api::namespaced(env.client.clone(), NS);
    let istio_api = |ar| Api::<DynamicObject>::namespaced_with(env.client.clone(), NS, &ar);
    let vs = istio_api(cutover_kube::traffic::istio::virtual_service());
    let dr = istio_api(cutover_kube::traffic::istio::destination_rule());
    let status = |r: &Rollout| r.status.clone().unwrap_or_default();
    support::wait_for(120, "first revision healthy", || async {
        let r = rollouts.get("app").await.unwrap();
        (status(&r).phase == Some(RolloutPhase::Healthy)).then_some(())
    })
    .await;
    let (mut written, mut verified) = (Vec::new(), Vec::new());
    for n in 1..=promotions {
        let patch = json!({ "spec": { "template": template(n) } });
        rollouts
            .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let hash = support::wait_for(120, "waiting for promotion with 10 % flowing", || async {
            let r = rollouts.get("app").await.unwrap();
            let s = status(&r);
            let hash = s.current_pod_hash.clone()?;
            let paused =
                s.phase == Some(RolloutPhase::Paused) && s.stable_rs.as_ref() != Some(&hash);
            (paused && weight_of(&vs, &dr, &hash).await == 10).then_some(hash)
        })
        .await;
        let start = Instant::now();
        rollouts
            .patch_status(
                "app",
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": { "pauseConditions": null } })),
            )
            .await
            .unwrap();
        let mut route_at = None;
        loop {
            if route_at.is_none() && weight_of(&vs, &dr, &hash).await == 100 {
                route_at = Some(start.elapsed());
            }
            let s = status(&rollouts.get("app").await.unwrap());
            let done = s
                .blue_green
                .switch
                .as_ref()
                .is_some_and(|sw| sw.to == hash && sw.verified_at.is_some());
            if done {
                let v = start.elapsed();
                written.push(route_at.unwrap_or(v).as_secs_f64() * 1000.0);
                verified.push(v.as_secs_f64() * 1000.0);
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "promotion {n} not verified"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        eprintln!(
            "promotion {n}: route written {:.1} ms, verified {:.1} ms",
            written.last().unwrap(),
            verified.last().unwrap()
        );
    }
    controller.abort();
    for list in [&mut written, &mut verified] {
        list.sort_by(f64::total_cmp);
    }
    println!(
        "{promotions} promotions: promote → route written p50 {:.1} ms p99 {:.1} ms; promote → switch verified p50 {:.1} ms p99 {:.1} ms",
        quantile(&written, 0.5),
        quantile(&written, 0.99),
        quantile(&verified, 0.5),
        quantile(&verified, 0.99)
    );
}
