//! The seed's dashboard workflow in a real browser (headless Debian Chromium over
//! chromedriver), on both backends, with auth on: open the list with the token the dashboard
//! printed, open the rollout, watch an update and its pre-promotion measurements arrive,
//! promote with confirmation, watch the switch to Healthy — without a reload. On one host the
//! dashboard is also restarted under the open page, which says the connection was lost and
//! then that it is live again.
//!
//! Screenshots of the list, the rollout page and the analysis chart go to
//! `<target>/tmp/dashboard-screenshots/`; with `CUTOVER_DASHBOARD_SHOTS=docs/dashboard` they
//! are also written there (the PNGs committed for the README). Without chromium or
//! chromedriver the tests say so loudly and pass; scripts/prepare-test-env installs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dashboard;
mod e2e;
#[path = "dashboard/kube.rs"]
mod fixture;
#[path = "../../kube/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::Command;

use dashboard::browser::{Browser, seed_workflow, tools};
use dashboard::{CUTOVER, Dash, local_manifest};
use e2e::{Daemon, Load};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_workflow_in_a_browser_on_one_host() {
    let Some((chromium, driver)) = tools() else {
        return;
    };
    let (manifest, _, preview) = local_manifest("shop", 8);
    let d = Daemon::start(&manifest);
    d.wait_healthy_on("shop", "demo:v1");
    let load = Load::start(SocketAddr::from(([127, 0, 0, 1], preview)), 2);
    let state = d.dir.to_str().unwrap().to_string();
    let mut dash = Dash::start(&["--state-dir", &state], &[]);
    let b = Browser::start(&chromium, &driver, "local").await;
    let url = format!("{}#token={}", dash.base, dash.token);
    seed_workflow(&b, &url, "default", "shop", "demo:v2", || {
        d.ok(&["set", "image", "shop", "app=demo:v2"]);
    })
    .await;

    // The dashboard goes away under the open page, and comes back on the same address.
    let address = dash.address();
    dash.stop();
    b.wait_for(
        "the page to say the connection is lost",
        30,
        "return document.getElementById('conn').textContent.indexOf('Connection lost') >= 0;",
    )
    .await;
    let _again = Dash::start_at(&["--state-dir", &state], &address, &[]);
    b.wait_for(
        "the page to say it is live again",
        30,
        "return document.getElementById('conn').textContent === 'Live again (reconnected)';",
    )
    .await;
    b.close().await;
    load.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seed_workflow_in_a_browser_on_kubernetes() {
    let Some((chromium, driver)) = tools() else {
        return;
    };
    let Some(env) = support::KubeEnv::installed(fixture::NS).await else {
        return;
    };
    let client = env.client.clone();
    let _kubelet = support::kubelet::Kubelet::start(client.clone(), fixture::NS).await;
    let controller = support::start_controller(&env.controller_client().await, fixture::NS);
    let web = e2e::argo::json_ok_server();
    fixture::install_web(&env, &format!("http://{web}/ok"), 8).await;
    let kubeconfig = env.dir().join("kubeconfig");
    let kc = kubeconfig.to_str().unwrap().to_string();
    let dash = Dash::start(&["--kubeconfig", &kc, "-n", fixture::NS], &[]);
    let b = Browser::start(&chromium, &driver, "kubernetes").await;
    let url = format!("{}#token={}", dash.base, dash.token);
    seed_workflow(&b, &url, fixture::NS, "web", "web:v2", || {
        let out = Command::new(CUTOVER)
            .args([
                "--kubeconfig",
                &kc,
                "-n",
                fixture::NS,
                "set",
                "image",
                "web",
                "app=web:v2",
            ])
            .output()
            .expect("set image");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await;
    b.close().await;
    controller.abort();
}
