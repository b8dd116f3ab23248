//! Traffic rules through the daemon: before promotion, testers with `x-canary: true` reach the
//! preview through the active Service, a share of other traffic goes there too, and a mirror
//! copies requests to it; after promotion everything is on the new revision. Also the read
//! verbs: status, list, logs.

mod e2e;

use std::net::SocketAddr;

use e2e::*;

#[test]
fn header_route_weight_and_mirror_reach_the_preview_until_promotion() {
    let (services, active_port, _) = services("shop");
    let rollout = demo_rollout(
        "shop",
        2,
        "      autoPromotionEnabled: false\n      trafficRouting:\n        headerRoutes: [{header: x-canary, exact: \"true\"}]\n        previewWeight: 20\n        mirror: {percent: 100}\n",
        "",
    );
    let d = Daemon::start(&format!("{services}{rollout}"));
    d.wait_healthy_on("shop", "demo:v1");
    let out = d.cli(&["status", "shop", "--timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(d.ok(&["list", "rollouts"]).contains("shop"));
    assert!(d.ok(&["logs", "shop"]).contains("listening on"));

    d.ok(&["set", "image", "shop", "app=demo:v2"]);
    d.wait("shop", "paused for promotion", |v| phase(v) == "Paused");
    let active: SocketAddr = ([127, 0, 0, 1], active_port).into();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let (canary, plain) = rt.block_on(async {
        let http = reqwest::Client::new();
        let mut canary = Vec::new();
        let mut plain = Vec::new();
        for _ in 0..400 {
            let r = http
                .get(format!("http://{active}/"))
                .header("x-canary", "true")
                .send()
                .await
                .expect("get");
            canary.push(r.headers()["x-version"].to_str().unwrap_or("").to_string());
        }
        for i in 0..1000 {
            // A different sticky key per request, so the split is sampled, not pinned.
            let r = http
                .get(format!("http://{active}/"))
                .header("x-cutover-key", format!("client-{i}"))
                .send()
                .await
                .expect("get");
            plain.push(r.headers()["x-version"].to_str().unwrap_or("").to_string());
        }
        (canary, plain)
    });
    assert!(
        canary.iter().all(|v| v == "v2"),
        "header route missed the preview"
    );
    let to_preview = plain.iter().filter(|v| *v == "v2").count();
    assert!(
        (120..=280).contains(&to_preview),
        "{to_preview} of 1000 went to the preview (expected ~200)"
    );
    let metrics = metrics(&d);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cutover_mirror_requests_total")
                && l.contains("outcome=\"sent\"")
                && !l.ends_with(" 0")),
        "no mirrored request in:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("mirror"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    d.ok(&["promote", "shop"]);
    d.wait_healthy_on("shop", "demo:v2");
    let after: Vec<String> = rt.block_on(async {
        let mut seen = Vec::new();
        for _ in 0..50 {
            let r = reqwest::get(format!("http://{active}/"))
                .await
                .expect("get");
            seen.push(r.headers()["x-version"].to_str().unwrap_or("").to_string());
        }
        seen
    });
    assert!(after.iter().all(|v| v == "v2"));
}

fn metrics(d: &Daemon) -> String {
    let api: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.state_dir().join("api.json")).expect("api.json"),
    )
    .expect("json");
    let addr = api["address"].as_str().unwrap_or_default().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    })
}
