//! Argo Rollouts' semantics on one host, with real processes: the progress deadline with a
//! crash-looping preview (Degraded once, with why), `progressDeadlineAbort` (Argo's conditions,
//! one abort event), revision numbers of a revision brought back, and `status.duration`.

mod e2e;

use std::time::Duration;

use e2e::*;
use serde_json::Value;

fn events(v: &Value, reason: &str) -> Vec<String> {
    v["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == reason)
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A preview whose process exits at start, after logging why.
fn crash_looping(rollout: &str) -> String {
    rollout.replace("image: demo:v1", "image: demo:v2").replace(
        &format!("command: [\"{CUTOVER}\", \"demo-app\"]"),
        "command: [\"sh\", \"-c\", \"echo starting; echo 'panic: missing DATABASE_URL'; exit 3\"]",
    )
}

#[test]
fn a_crash_looping_preview_degrades_once_and_says_why() {
    let (services, _, _) = services("crash");
    let rollout = demo_rollout("crash", 2, "", "").replace(
        "  replicas: 2\n",
        "  replicas: 2\n  progressDeadlineSeconds: 5\n",
    );
    let d = Daemon::start(&format!("{services}{rollout}"));
    d.wait_healthy_on("crash", "demo:v1");
    let path = d.state_dir().join("v2.yaml");
    std::fs::write(&path, format!("{services}{}", crash_looping(&rollout))).expect("write");
    d.ok(&["apply", "-f", path.to_str().unwrap_or_default()]);
    let v = d.wait("crash", "Degraded by the progress deadline", |v| {
        phase(v) == "Degraded"
    });
    let message = v["rollout"]["status"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("ProgressDeadlineExceeded")
            && message.contains("crash-looping")
            && message.contains("exited with code 3")
            && message.contains("panic: missing DATABASE_URL"),
        "{message}"
    );
    // It stays Degraded, with one event, however long it waits.
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(phase(&d.view("crash")), "Degraded");
    }
    let v = d.view("crash");
    assert_eq!(
        events(&v, "ProgressDeadlineExceeded").len(),
        1,
        "{}",
        v["events"]
    );
}

#[test]
fn progress_deadline_abort_has_argos_conditions_and_one_abort_event() {
    let (services, _, _) = services("pda");
    let rollout = demo_rollout("pda", 1, "", "").replace(
        "  replicas: 1\n",
        "  replicas: 1\n  progressDeadlineSeconds: 3\n  progressDeadlineAbort: true\n",
    );
    let d = Daemon::start(&format!("{services}{rollout}"));
    d.wait_healthy_on("pda", "demo:v1");
    let path = d.state_dir().join("v2.yaml");
    std::fs::write(&path, format!("{services}{}", crash_looping(&rollout))).expect("write");
    d.ok(&["apply", "-f", path.to_str().unwrap_or_default()]);
    let v = d.wait("pda", "aborted by the progress deadline", |v| {
        v["rollout"]["status"]["abort"] == true
    });
    std::thread::sleep(Duration::from_secs(2));
    let v2 = d.view("pda");
    let mut types: Vec<String> = v2["rollout"]["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["type"].as_str().unwrap_or_default().to_string())
        .collect();
    types.sort();
    // Argo's four, plus the kstatus conditions GitOps tools read (docs/argo-differences.md).
    assert_eq!(
        types,
        [
            "Available",
            "Completed",
            "Healthy",
            "Progressing",
            "Ready",
            "Stalled"
        ]
    );
    let status_of = |kind: &str| {
        v2["rollout"]["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind)
            .map(|c| c["status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(status_of("Stalled").as_deref(), Some("True"));
    assert_eq!(status_of("Ready").as_deref(), Some("False"));
    let aborts = events(&v2, "RolloutAborted");
    assert_eq!(aborts.len(), 1, "{aborts:?}");
    assert!(aborts[0].contains("progress deadline"), "{aborts:?}");
    let _ = v;
}

#[test]
fn a_revision_brought_back_gets_the_next_number_and_durations_are_kept() {
    let (services, _, _) = services("num");
    let rollout = demo_rollout(
        "num",
        1,
        "      autoPromotionEnabled: false\n      scaleDownDelaySeconds: 0\n",
        "",
    );
    let d = Daemon::start(&format!("{services}{rollout}"));
    d.wait_healthy_on("num", "demo:v1");
    d.ok(&["set", "image", "num", "app=demo:v2"]);
    d.wait("num", "paused for promotion", |v| phase(v) == "Paused");
    let v = d.view("num");
    let duration = &v["rollout"]["status"]["duration"];
    assert!(duration["startedAt"].as_str().is_some(), "{duration}");
    assert!(duration["pausedAt"].as_str().is_some(), "{duration}");
    let tree = d.ok(&["get", "rollout", "num"]);
    assert!(
        tree.contains("Update:          revision 2: running for ") && tree.contains("paused for "),
        "{tree}"
    );
    d.ok(&["promote", "num"]);
    let v = d.wait_healthy_on("num", "demo:v2");
    let duration = &v["rollout"]["status"]["duration"];
    assert_eq!(duration["completion"], "Promoted", "{duration}");
    let tree = d.ok(&["get", "rollout", "num"]);
    assert!(
        tree.contains("Update:          revision 2: promoted after "),
        "{tree}"
    );
    assert!(
        duration["pausedSeconds"].as_f64().is_some_and(|s| s > 0.0),
        "{duration}"
    );
    d.ok(&["set", "image", "num", "app=demo:v1"]);
    d.wait("num", "paused for promotion again", |v| {
        phase(v) == "Paused"
    });
    d.ok(&["promote", "num"]);
    let v = d.wait_healthy_on("num", "demo:v1");
    assert_eq!(v["rollout"]["status"]["currentRevision"], 3);
    let revisions: Vec<i64> = v["revisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["revision"].as_i64())
        .collect();
    assert!(
        revisions.contains(&3) && !revisions.contains(&1),
        "{revisions:?}"
    );
}
