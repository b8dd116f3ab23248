//! The single-host backend under continuous load: initial deploy, update, preview, promote,
//! abort, undo and ten back-to-back switches, with real processes, the real daemon and CLI.
//! No request may fail, and once a switch is acknowledged no new request reaches the previous
//! revision.

mod e2e;

use std::net::SocketAddr;
use std::time::Instant;

use e2e::*;

#[test]
fn update_promote_abort_undo_and_ten_switches_lose_no_request() {
    let (services, active_port, preview_port) = services("web");
    let rollout = demo_rollout(
        "web",
        2,
        "      autoPromotionEnabled: false\n      scaleDownDelaySeconds: 3\n      previewReplicaCount: 1\n",
        r#""--fail-rate-for", "v3=1""#,
    );
    let d = Daemon::start(&format!("{services}{rollout}"));
    d.wait_healthy_on("web", "demo:v1");
    let active: SocketAddr = ([127, 0, 0, 1], active_port).into();
    let preview: SocketAddr = ([127, 0, 0, 1], preview_port).into();
    let load = Load::start(active, 4);

    // Update: the preview serves v2, production stays on v1 until promote.
    d.ok(&["set", "image", "web", "app=demo:v2"]);
    d.wait("web", "paused for promotion", |v| phase(v) == "Paused");
    let body = reqwest_get(preview);
    assert!(
        body.contains("\"version\":\"v2\""),
        "preview answers {body}"
    );
    d.ok(&["promote", "web"]);
    d.wait_healthy_on("web", "demo:v2");
    let ack = Instant::now();

    // A faulty v3 is aborted on the preview; production never sees it.
    d.ok(&["set", "image", "web", "app=demo:v3"]);
    d.wait("web", "paused for promotion", |v| phase(v) == "Paused");
    d.ok(&["abort", "web"]);
    let v = d.wait("web", "aborted", |v| phase(v) == "Degraded");
    assert_eq!(
        v["services"][0]["selector"],
        v["rollout"]["status"]["stableRS"]
    );
    d.ok(&["undo", "web"]);
    d.wait_healthy_on("web", "demo:v2");

    // Ten back-to-back switches with promote --full.
    let mut acks = vec![("v1".to_string(), ack)];
    let mut previous = "v2".to_string();
    for i in 0..10 {
        let version = format!("v{}", 4 + i);
        d.ok(&["set", "image", "web", &format!("app=demo:{version}")]);
        d.ok(&["promote", "web", "--full"]);
        d.wait_healthy_on("web", &format!("demo:{version}"));
        acks.push((previous.clone(), Instant::now()));
        previous = version;
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let samples = load.stop();
    assert_no_failures(&samples);
    for (old, ack) in &acks {
        assert_none_from_after(&samples, old, *ack);
    }
    assert!(
        !samples.iter().any(|s| s.version.as_deref() == Some("v3")),
        "v3 reached production"
    );
    assert!(
        samples.len() > 500,
        "only {} requests were sent",
        samples.len()
    );
    let metrics = d.ok(&["get", "rollout", "web"]);
    assert!(metrics.contains("Last switch"), "{metrics}");
}

fn reqwest_get(addr: SocketAddr) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        reqwest::get(format!("http://{addr}/"))
            .await
            .expect("get")
            .text()
            .await
            .expect("body")
    })
}
