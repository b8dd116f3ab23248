//! `cutover dashboard` on one host, over HTTP: a real `cutover up` with real processes, a
//! builtin pre-promotion analysis on the preview under load, and the dashboard as its own
//! process. Every page and action: list, rollout page (revisions, Services, traffic,
//! analysis chart, events), live stream, set image, promote, promote --full, abort, retry,
//! undo, pause, resume, restart; and the refusals: no token (401, nothing changed), a foreign
//! Origin, --read-only, nothing to act on, bad requests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dashboard;
mod e2e;

use std::net::SocketAddr;
use std::time::Duration;

use dashboard::{Dash, SECRET, local_manifest, marks, summary_phase};
use e2e::*;
use serde_json::json;

fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

const PAGE: &str = "rollouts/default/web";

async fn wait_phase(dash: &Dash, phase: &str) -> String {
    dash.wait_page(PAGE, phase, |p| summary_phase(p) == phase)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_action_works_on_one_host() {
    let (manifest, _, preview) = local_manifest("web", 4);
    let d = Daemon::start(&manifest);
    d.wait_healthy_on("web", "demo:v1");
    // The builtin analysis measures the preview's own traffic.
    let load = Load::start(addr(preview), 2);
    let state = d.dir.to_str().unwrap().to_string();
    let dash = Dash::start(&["--state-dir", &state], &[]);
    assert_eq!(
        dash.token.len(),
        64,
        "a fresh token is printed with the URL"
    );
    let read_only = Dash::start(&["--state-dir", &state], &["--read-only"]);

    let (status, list) = dash.page("").await;
    assert_eq!(status, 200);
    assert!(
        list.contains("id=\"row-default--web\"") && list.contains("Healthy"),
        "{list}"
    );
    assert!(list.contains("single host, state"));
    let (status, page) = dash.page(PAGE).await;
    assert_eq!(status, 200);
    for part in [
        "Summary",
        "Conditions",
        "Revisions",
        "Services",
        "Traffic rules",
        "Analysis",
        "Events",
        "Actions",
    ] {
        assert!(page.contains(&format!(">{part}</h2>")), "section {part}");
    }
    assert!(page.contains("web-active") && page.contains("Header <code>x-canary</code>"));
    assert!(!page.contains(SECRET), "the environment reached the page");
    let (status, _) = dash.page("rollouts/default/nope").await;
    assert_eq!(status, 404);

    // An update watched live: the analysis measures, the rollout pauses for promotion.
    let mut live = dash.open_live(PAGE).await;
    let said = dash
        .ok(
            "default",
            "web",
            json!({"op": "setImage", "container": "app", "image": "demo:v2"}),
        )
        .await;
    assert!(said.contains("image updated"), "{said}");
    dash.live_until(&mut live, "a measurement in the chart", |t| {
        t.contains("<g class=\"mark ok\"")
    })
    .await;
    let page = wait_phase(&dash, "Paused").await;
    assert!(marks(&page, "ok") >= 4, "measurements plotted");
    assert!(page.contains("class=\"threshold success\""));
    let v = d.view("web");
    let stable = v["services"][0]["selector"].clone();

    // Refused, and nothing changed: no token, a foreign origin, read-only.
    dash.assert_refusals(&read_only, "default", "web").await;
    let promote = json!({"op": "promote"});
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v = d.view("web");
    assert_eq!(phase(&v), "Paused", "a refused promote changed nothing");
    assert_eq!(v["services"][0]["selector"], stable);

    // Promote from the dashboard: the live page turns Healthy on v2.
    let said = dash.ok("default", "web", promote.clone()).await;
    assert!(said.contains("promoted"), "{said}");
    dash.live_until(&mut live, "Healthy on v2", |t| {
        t.contains("Healthy")
            && t.contains("demo:v2</code> <span class=\"role stable\">stable</span>")
    })
    .await;
    d.wait_healthy_on("web", "demo:v2");
    let (status, answer) = dash.act("default", "web", promote.clone()).await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("nothing to promote")
    );

    // Abort, retry, promote --full.
    dash.ok(
        "default",
        "web",
        json!({"op": "setImage", "container": "app", "image": "demo:v3"}),
    )
    .await;
    wait_phase(&dash, "Paused").await;
    assert!(
        dash.ok("default", "web", json!({"op": "abort"}))
            .await
            .contains("aborted")
    );
    wait_phase(&dash, "Degraded").await;
    let (status, answer) = dash.act("default", "web", json!({"op": "abort"})).await;
    assert_eq!(status, 409, "{answer}");
    dash.ok("default", "web", json!({"op": "retry"})).await;
    wait_phase(&dash, "Paused").await;
    dash.ok("default", "web", json!({"op": "promote", "full": true}))
        .await;
    d.wait_healthy_on("web", "demo:v3");

    // Undo to the first revision, still warm.
    dash.ok("default", "web", json!({"op": "undo", "to_revision": 1}))
        .await;
    d.wait_healthy_on("web", "demo:v1");
    let (status, answer) = dash
        .act("default", "web", json!({"op": "undo", "to_revision": 99}))
        .await;
    assert_eq!(status, 422, "{answer}");

    // Pause and resume, restart.
    dash.ok("default", "web", json!({"op": "pause"})).await;
    wait_phase(&dash, "Paused").await;
    dash.ok("default", "web", json!({"op": "resume"})).await;
    wait_phase(&dash, "Healthy").await;
    assert!(
        dash.ok("default", "web", json!({"op": "restart"}))
            .await
            .contains("restart")
    );

    let (status, answer) = dash
        .act(
            "default",
            "web",
            json!({"op": "setImage", "container": "nope", "image": "x:1"}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("has no container"),
        "{answer}"
    );
    let page = dash.page(PAGE).await.1;
    assert!(page.contains("SwitchVerified"), "events on the page");
    assert!(
        page.contains("Finished") && page.contains("promoted after"),
        "status.duration"
    );
    load.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_the_dashboard_during_its_cycle() {
    use std::io::{BufRead as _, BufReader};
    let mut child = std::process::Command::new(CUTOVER)
        .args([
            "demo",
            "--clients",
            "2",
            "--dashboard",
            "--dashboard-address",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the demo");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("cutover dashboard: ").map(str::to_string))
        .expect("the demo prints the dashboard's URL");
    let (base, token) = url.split_once("#token=").expect("URL with its token");
    assert_eq!(token.len(), 64);
    // The rest of the demo's output, read so that it never blocks on a full pipe.
    let rest =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let page = reqwest::get(base).await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"row-default--demo\""), "{page}");
    let status = child.wait().unwrap();
    let said = rest.join().unwrap();
    assert!(status.success(), "{said}");
    assert!(said.contains("OK: no request failed"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_up_serves_the_dashboard_beside_the_daemon() {
    let (manifest, _, _) = local_manifest("up", 2);
    let d = Daemon::start_opts(
        &manifest,
        &[],
        &["--dashboard", "--dashboard-address", "127.0.0.1:0"],
        None,
    );
    d.wait_healthy_on("up", "demo:v1");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let url = loop {
        let log = d.log();
        if let Some(url) = log
            .lines()
            .find_map(|l| l.strip_prefix("cutover dashboard: "))
        {
            break url.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no dashboard URL: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (base, token) = url.split_once("#token=").expect("URL with its token");
    assert_eq!(token.len(), 64);
    let page = reqwest::get(base).await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"row-default--up\""), "{page}");
    // Changes need the token printed with the URL, and then act on the daemon.
    let act = |token: Option<&str>| {
        let mut request = reqwest::Client::new()
            .post(format!("{base}rollouts/default/up/actions"))
            .header("origin", base.trim_end_matches('/'))
            .json(&json!({"op": "pause"}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(act(None).await.unwrap().status(), 401);
    assert_ne!(d.view("up")["rollout"]["spec"]["paused"], json!(true));
    let done = act(Some(token)).await.unwrap();
    assert_eq!(done.status(), 200, "{:?}", done.text().await);
    d.wait("up", "paused", |v| {
        v["rollout"]["spec"]["paused"] == json!(true)
    });
}
