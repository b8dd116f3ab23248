//! The single-host backend when things break: the daemon killed with SIGKILL mid-rollout, a
//! replica crashing, a revision that never becomes ready, a bad manifest.

mod e2e;

use std::net::SocketAddr;
use std::time::Duration;

use e2e::*;

#[test]
fn daemon_killed_mid_rollout_resumes_without_moving_the_active_revision() {
    let (services, active_port, _) = services("app");
    let rollout = demo_rollout("app", 2, "      autoPromotionEnabled: false\n", "");
    let mut d = Daemon::start(&format!("{services}{rollout}"));
    d.wait_healthy_on("app", "demo:v1");
    d.ok(&["set", "image", "app", "app=demo:v2"]);
    let before = d.wait("app", "paused for promotion", |v| phase(v) == "Paused");
    let pids = |v: &serde_json::Value| -> Vec<u64> {
        let mut p: Vec<u64> = v["revisions"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["replicas"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["pid"].as_u64())
            .collect();
        p.sort_unstable();
        p
    };

    d.kill9();
    assert!(d.state_dir().join("state.db").exists());
    d.restart();
    let after = d.wait("app", "the restarted daemon to report", |v| {
        phase(v) == "Paused"
    });
    assert_eq!(
        after["services"][0]["selector"], before["services"][0]["selector"],
        "active moved"
    );
    assert_eq!(pids(&after), pids(&before), "processes were not re-adopted");
    let active: SocketAddr = ([127, 0, 0, 1], active_port).into();
    let load = Load::start(active, 2);
    d.ok(&["promote", "app"]);
    d.wait_healthy_on("app", "demo:v2");
    std::thread::sleep(Duration::from_millis(300));
    assert_no_failures(&load.stop());
}

#[test]
fn a_crashed_replica_restarts_and_a_never_ready_revision_degrades_without_touching_active() {
    let (services, active_port, _) = services("svc");
    let rollout = demo_rollout("svc", 2, "", "").replace(
        "  replicas: 2\n",
        "  replicas: 2\n  progressDeadlineSeconds: 5\n",
    );
    let d = Daemon::start(&format!("{services}{rollout}"));
    let v = d.wait_healthy_on("svc", "demo:v1");
    let port = v["revisions"][0]["replicas"][0]["port"]
        .as_u64()
        .unwrap_or_default();
    let _ = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/crash")])
        .output();
    let crash_port = port;
    let _ = crash(crash_port);
    d.wait("svc", "the crashed replica to restart and be ready", |v| {
        let r = &v["revisions"][0]["replicas"][0];
        r["restarts"].as_u64().unwrap_or(0) >= 1 && r["ready"] == true
    });

    // v2 never passes readiness: the deadline marks the rollout Degraded; active stays on v1.
    let broken = rollout
        .replace("image: demo:v1", "image: demo:v2")
        .replace("args: []", "args: [\"--unhealthy\"]");
    let path = d.state_dir().join("broken.yaml");
    std::fs::write(&path, format!("{services}{broken}")).expect("write");
    d.ok(&["apply", "-f", path.to_str().unwrap_or_default()]);
    let v = d.wait("svc", "Degraded by the progress deadline", |v| {
        phase(v) == "Degraded"
    });
    assert!(
        v["rollout"]["status"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("ProgressDeadlineExceeded"),
        "{}",
        v["rollout"]["status"]
    );
    let active: SocketAddr = ([127, 0, 0, 1], active_port).into();
    let load = Load::start(active, 2);
    std::thread::sleep(Duration::from_millis(500));
    let samples = load.stop();
    assert_no_failures(&samples);
    assert!(samples.iter().all(|s| s.version.as_deref() == Some("v1")));
}

#[test]
fn applying_a_bad_manifest_is_refused_and_changes_nothing() {
    let (services, _, _) = services("bad");
    let rollout = demo_rollout("bad", 1, "", "");
    let d = Daemon::start(&format!("{services}{rollout}"));
    d.wait_healthy_on("bad", "demo:v1");
    let generation = d.view("bad")["rollout"]["metadata"]["generation"].clone();
    let broken = rollout
        .replace("image: demo:v1", "image: demo:v2")
        .replace("activeService:", "activeServce:");
    let path = d.state_dir().join("broken.yaml");
    std::fs::write(&path, format!("{services}{broken}")).expect("write");
    let out = d.cli(&["apply", "-f", path.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.yaml:") && stderr.contains("did you mean `activeService`?"),
        "{stderr}"
    );
    assert_eq!(
        d.view("bad")["rollout"]["metadata"]["generation"],
        generation
    );
    assert_eq!(current_image(&d.view("bad")), "demo:v1");
}

fn crash(port: u64) -> Option<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/crash"))
            .await
            .ok()
    })?;
    Some(())
}
