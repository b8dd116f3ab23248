//! Scenario tests of the process supervisor with real processes: scaling, readiness, probes,
//! restarts, variables, logs and termination. The demo app serves as the workload, with a few
//! standard tools (sh, test) where a behaviour needs a process the demo app is not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "supervisor_common.rs"]
mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_and_down_highest_index_first() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(dir.path());
    let s = demo_spec("aaa", "demo:v1", &[]);
    let mut changes = sup.changes();
    sup.scale(&s, 3).unwrap();
    sup.scale(&s, 3).unwrap(); // idempotent
    let seen = wait_for(&sup, &s, Duration::from_secs(20), "3 ready", all_ready(3)).await;
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();
    let mut ports: Vec<u16> = seen.iter().map(|r| r.port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "distinct ports: {seen:#?}");
    assert_eq!(seen.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1, 2]);
    for r in &seen {
        assert_eq!(r.phase, ReplicaPhase::Running);
        assert!(r.ready_since.is_some() && r.started_at.is_some());
        let (status, body) = get(r.port, "/");
        assert_eq!(status, 200);
        assert!(
            body.contains(r#"{"version":"v1","color":"blue"}"#),
            "{body}"
        );
    }
    let pids: Vec<u32> = seen.iter().map(|r| r.pid.unwrap()).collect();

    sup.scale(&s, 1).unwrap();
    let now = sup.observe("web", "aaa");
    assert!(
        now.iter()
            .filter(|r| r.index > 0)
            .all(|r| r.phase == ReplicaPhase::Terminating),
        "{now:#?}"
    );
    let seen = wait_for(&sup, &s, Duration::from_secs(10), "1 left", |s| {
        s.len() == 1
    })
    .await;
    assert_eq!(seen[0].index, 0);
    assert_eq!(seen[0].pid, Some(pids[0]));
    assert!(changes.has_changed().unwrap());
    assert!(kill(Pid::from_raw(pids[1] as i32), None).is_err());
    assert!(kill(Pid::from_raw(pids[2] as i32), None).is_err());
    assert_eq!(sup.revisions("web").len(), 1);
    sup.shutdown().await;
    assert!(sup.revisions("web").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_gates_until_the_probe_passes() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(dir.path());
    let s = demo_spec("bbb", "demo:v2", &["--ready-after", "2"]);
    sup.scale(&s, 1).unwrap();
    let seen = wait_for(&sup, &s, Duration::from_secs(10), "running", |s| {
        s.first().is_some_and(|r| r.phase == ReplicaPhase::Running)
    })
    .await;
    assert!(!seen[0].ready);
    sleep(Duration::from_millis(1000)).await;
    assert!(
        !sup.observe("web", "bbb")[0].ready,
        "ready before --ready-after passed"
    );
    let started = Instant::now();
    wait_for(&sup, &s, Duration::from_secs(10), "ready", all_ready(1)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_restarts_with_backoff_on_the_same_index_and_port() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(dir.path());
    let s = demo_spec("ccc", "demo:v1", &[]);
    sup.scale(&s, 1).unwrap();
    let before = wait_for(&sup, &s, Duration::from_secs(10), "ready", all_ready(1)).await;
    let _ = get(before[0].port, "/crash");
    let backoff = wait_for(&sup, &s, Duration::from_secs(5), "backoff", |s| {
        matches!(s[0].phase, ReplicaPhase::CrashLoopBackOff { .. })
    })
    .await;
    assert!(!backoff[0].ready);
    assert!(
        backoff[0]
            .last_exit
            .as_deref()
            .unwrap()
            .contains("exited with code 1"),
        "{backoff:#?}"
    );
    let after = wait_for(&sup, &s, Duration::from_secs(10), "ready again", |s| {
        s[0].ready && s[0].restarts == 1
    })
    .await;
    assert_eq!(after[0].index, 0);
    assert_eq!(after[0].port, before[0].port);
    assert_ne!(after[0].pid, before[0].pid);
    assert_eq!(
        after[0].started_at, before[0].started_at,
        "a container restart is not a new pod"
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_liveness_failure_restarts_the_container() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(dir.path());
    let s = spec(
        "ddd",
        json!({"containers": [{
            "name": "app", "image": "demo:v1", "command": [demo_app(), "--unhealthy"],
            "ports": [{"containerPort": 8080}],
            "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2},
        }]}),
    );
    sup.scale(&s, 1).unwrap();
    let seen = wait_for(&sup, &s, Duration::from_secs(15), "a restart", |s| {
        s[0].restarts >= 1
    })
    .await;
    let why = seen[0].last_exit.clone().unwrap();
    assert!(
        why.contains("liveness probe failed") && why.contains("503"),
        "{why}"
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_probe_gates_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ready-flag");
    let sup = supervisor(dir.path());
    let s = spec(
        "eee",
        json!({"containers": [{
            "name": "app", "image": "demo:v1", "command": [demo_app()],
            "readinessProbe": {"exec": {"command": ["test", "-f", flag]}, "periodSeconds": 1},
        }]}),
    );
    sup.scale(&s, 1).unwrap();
    wait_for(&sup, &s, Duration::from_secs(10), "running", |s| {
        s[0].phase == ReplicaPhase::Running
    })
    .await;
    sleep(Duration::from_millis(1500)).await;
    assert!(!sup.observe("web", "eee")[0].ready);
    std::fs::write(&flag, "").unwrap();
    wait_for(&sup, &s, Duration::from_secs(5), "ready", all_ready(1)).await;
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_crash_loops_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(dir.path());
    let s = spec(
        "fff",
        json!({"containers": [{"name": "app", "command": ["/nonexistent/cutover-no-such-program"]}]}),
    );
    sup.scale(&s, 1).unwrap();
    let seen = wait_for(&sup, &s, Duration::from_secs(5), "backoff", |s| {
        matches!(s[0].phase, ReplicaPhase::CrashLoopBackOff { .. })
    })
    .await;
    let why = seen[0].last_exit.clone().unwrap();
    assert!(
        why.contains("could not start") && why.contains("cutover-no-such-program"),
        "{why}"
    );
    // A template without a command is refused before anything starts.
    let bad = spec(
        "ggg",
        json!({"containers": [{"name": "app", "image": "demo:v1"}]}),
    );
    let err = sup.scale(&bad, 1).unwrap_err().to_string();
    assert!(err.contains("no `command`"), "{err}");
    assert!(sup.observe("web", "ggg").is_empty());
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_expand_and_the_image_reaches_the_process_and_logs_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(dir.path());
    let s = spec(
        "hhh",
        json!({"containers": [{
            "name": "app", "image": "registry.local:5000/demo:v3",
            "command": [demo_app(), "--color=$(COLOR)"],
            "env": [
                {"name": "COLOR", "value": "purple-$(CUTOVER_REPLICA)-$$(PORT)"},
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
        }]}),
    );
    sup.scale(&s, 1).unwrap();
    let seen = wait_for(&sup, &s, Duration::from_secs(10), "ready", all_ready(1)).await;
    let port = seen[0].port;
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let (status, body) = get(port, "/");
        if status == 200 || Instant::now() > deadline {
            break body;
        }
        sleep(Duration::from_millis(50)).await;
    };
    assert!(
        body.contains(r#"{"version":"v3","color":"purple-0-$(PORT)"}"#),
        "{body}"
    );
    let log = std::fs::read_to_string(dir.path().join("web/hhh/0.log")).unwrap();
    assert!(
        log.contains(&format!("listening on 127.0.0.1:{port} version v3")),
        "{log}"
    );
    assert_eq!(seen[0].log_path, dir.path().join("web/hhh/0.log"));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_follows_sigterm_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(dir.path());
    let s = spec(
        "iii",
        json!({"terminationGracePeriodSeconds": 2, "containers": [{
            "name": "stubborn", "command": ["sh", "-c", "trap '' TERM; echo started; sleep 100"],
        }]}),
    );
    sup.scale(&s, 1).unwrap();
    let seen = wait_for(&sup, &s, Duration::from_secs(5), "ready", all_ready(1)).await;
    let pid = seen[0].pid.unwrap();
    let started = Instant::now();
    sup.scale(&s, 0).unwrap();
    sleep(Duration::from_millis(1000)).await;
    assert!(
        !gone(pid),
        "SIGTERM is ignored, so the process is still there within the grace period"
    );
    assert_eq!(
        sup.observe("web", "iii")[0].phase,
        ReplicaPhase::Terminating
    );
    wait_for(&sup, &s, Duration::from_secs(5), "stopped", |s| {
        s.is_empty()
    })
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(gone(pid));
    sup.shutdown().await;
}
