//! `cutover dashboard` on Kubernetes, over HTTP: a real kube-apiserver (scripts/kube-test-env),
//! the controller in-process acting as deploy/install.yaml's ServiceAccount, a kubelet
//! stand-in, a web metric measuring the pre-promotion analysis, and the dashboard as its own
//! process with `--kubeconfig -n`. Every page and
//! action, the refusals (no token, a foreign Origin, --read-only, nothing to act on), and a
//! user whose kubeconfig may read but not patch: the API server's Forbidden is shown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dashboard;
mod e2e;
#[path = "dashboard/kube.rs"]
mod fixture;
#[path = "../../kube/tests/support/mod.rs"]
mod support;

use std::path::Path;

use dashboard::{Dash, SECRET, marks, summary_phase};
use fixture::{NS, install_web, viewer_kubeconfig};
use serde_json::json;
use support::KubeEnv;
use support::kubelet::Kubelet;

const PAGE: &str = "rollouts/dash/web";

async fn wait_phase(dash: &Dash, phase: &str) -> String {
    dash.wait_page(PAGE, phase, |p| summary_phase(p) == phase)
        .await
}

fn kube_args(kubeconfig: &Path) -> Vec<String> {
    vec![
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "-n".into(),
        NS.into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_page_and_action_works_on_kubernetes() {
    let Some(env) = KubeEnv::installed(NS).await else {
        return;
    };
    let client = env.client.clone();
    let _kubelet = Kubelet::start(client.clone(), NS).await;
    let controller = support::start_controller(&env.controller_client().await, NS);
    let web = e2e::argo::json_ok_server();
    install_web(&env, &format!("http://{web}/ok"), 4).await;
    let kubeconfig = env.dir().join("kubeconfig");
    let args = kube_args(&kubeconfig);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dash = Dash::start(&args, &[]);
    let read_only = Dash::start(&args, &["--read-only"]);

    let list = dash
        .wait_page("", "web Healthy in the list", |p| {
            p.contains("id=\"row-dash--web\"") && p.contains("✔</span> Healthy")
        })
        .await;
    assert!(list.contains("Kubernetes, namespace dash"), "{list}");
    let page = wait_phase(&dash, "Healthy").await;
    for part in [
        "Summary",
        "Conditions",
        "Revisions",
        "Services",
        "Analysis",
        "Events",
        "Actions",
    ] {
        assert!(page.contains(&format!(">{part}</h2>")), "section {part}");
    }
    assert!(
        page.contains("web-active") && page.contains("ready"),
        "{page}"
    );
    assert!(!page.contains(SECRET), "the environment reached the page");
    let (status, missing) = dash.page("rollouts/dash/nope").await;
    assert_eq!(status, 404);
    assert!(
        missing.contains("rollout dash/nope: not found"),
        "{missing}"
    );

    // An update watched live: measurements arrive, the rollout pauses for promotion.
    let mut live = dash.open_live(PAGE).await;
    dash.ok(
        NS,
        "web",
        json!({"op": "setImage", "container": "app", "image": "web:v2"}),
    )
    .await;
    dash.live_until(&mut live, "a measurement in the chart", |t| {
        t.contains("<g class=\"mark ok\"")
    })
    .await;
    let page = wait_phase(&dash, "Paused").await;
    assert!(marks(&page, "ok") >= 4, "measurements plotted");

    // Refusals change nothing.
    dash.assert_refusals(&read_only, NS, "web").await;
    let promote = json!({"op": "promote"});

    // The viewer reads everything and may patch nothing: the API server's Forbidden is shown.
    let viewer = viewer_kubeconfig(&env).await;
    let viewer_args = kube_args(&viewer);
    let viewer_args: Vec<&str> = viewer_args.iter().map(String::as_str).collect();
    let as_viewer = Dash::start(&viewer_args, &[]);
    let (status, page) = as_viewer.page(PAGE).await;
    assert_eq!(status, 200, "{page}");
    let (status, answer) = as_viewer.act(NS, "web", promote.clone()).await;
    assert_eq!(status, 403, "{answer}");
    let error = answer["error"].as_str().unwrap_or("");
    assert!(
        error.contains("forbidden") && error.contains("dash-viewer"),
        "{error}"
    );
    assert_eq!(
        summary_phase(&dash.page(PAGE).await.1),
        "Paused",
        "nothing changed"
    );

    // Promote: the live page turns Healthy on v2.
    assert!(
        dash.ok(NS, "web", promote.clone())
            .await
            .contains("promoted")
    );
    dash.live_until(&mut live, "Healthy on v2", |t| {
        t.contains("Healthy")
            && t.contains("web:v2</code> <span class=\"role stable\">stable</span>")
    })
    .await;
    let (status, answer) = dash.act(NS, "web", promote.clone()).await;
    assert_eq!(status, 409, "{answer}");

    // Abort, retry, promote --full; undo; pause, resume; restart.
    dash.ok(
        NS,
        "web",
        json!({"op": "setImage", "container": "app", "image": "web:v3"}),
    )
    .await;
    wait_phase(&dash, "Paused").await;
    dash.ok(NS, "web", json!({"op": "abort"})).await;
    wait_phase(&dash, "Degraded").await;
    dash.ok(NS, "web", json!({"op": "retry"})).await;
    wait_phase(&dash, "Paused").await;
    dash.ok(NS, "web", json!({"op": "promote", "full": true}))
        .await;
    healthy_on(&dash, "web:v3").await;
    dash.ok(NS, "web", json!({"op": "undo", "to_revision": 1}))
        .await;
    healthy_on(&dash, "web:v1").await;
    dash.ok(NS, "web", json!({"op": "pause"})).await;
    wait_phase(&dash, "Paused").await;
    dash.ok(NS, "web", json!({"op": "resume"})).await;
    wait_phase(&dash, "Healthy").await;
    assert!(
        dash.ok(NS, "web", json!({"op": "restart"}))
            .await
            .contains("restart")
    );
    let (status, answer) = dash
        .act(
            NS,
            "web",
            json!({"op": "setImage", "container": "nope", "image": "x:1"}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    let page = dash.page(PAGE).await.1;
    assert!(
        !page.contains("No events recorded."),
        "the controller's Events are shown"
    );
    controller.abort();
}

/// Waits until the page shows the rollout Healthy with `image` stable and active.
async fn healthy_on(dash: &Dash, image: &str) {
    let tag = format!(
        "{image}</code> <span class=\"role stable\">stable</span> <span class=\"role active\">active</span>"
    );
    dash.wait_page(PAGE, &format!("Healthy on {image}"), |p| {
        summary_phase(p) == "Healthy" && p.contains(&tag)
    })
    .await;
}
