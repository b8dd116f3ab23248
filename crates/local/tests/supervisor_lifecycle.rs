//! Scenario tests of the supervisor's life cycle with real processes: adoption after a daemon
//! crash, shutdown, rolling restarts and multi-container pods.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "supervisor_common.rs"]
mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_supervisor_adopts_running_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let s = demo_spec("jjj", "demo:v2", &[]);
    let first = supervisor(dir.path());
    first.scale(&s, 2).unwrap();
    let before = wait_for(&first, &s, Duration::from_secs(10), "ready", all_ready(2)).await;
    let records: Vec<_> = first.records("web", "jjj");
    assert_eq!(records.len(), 2);
    let json = serde_json::to_string(&records).unwrap();
    drop(first); // a daemon crash: no shutdown, processes keep running
    sleep(Duration::from_millis(300)).await;
    for r in &before {
        assert!(!gone(r.pid.unwrap()));
        assert_eq!(get(r.port, "/").0, 200);
    }

    let second = supervisor(dir.path());
    second.adopt(&s, &serde_json::from_str::<Vec<_>>(&json).unwrap());
    second.scale(&s, 2).unwrap();
    let after = wait_for(&second, &s, Duration::from_secs(10), "ready", all_ready(2)).await;
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(
            (a.pid, a.port, a.started_at, a.restarts),
            (b.pid, b.port, b.started_at, 0)
        );
        assert_eq!(get(a.port, "/").0, 200);
    }
    let log = std::fs::read_to_string(dir.path().join("web/jjj/0.log")).unwrap();
    assert_eq!(log.matches("listening on").count(), 1, "{log}");

    // A record whose pid is not this replica's (here: the test process itself) is neither
    // adopted nor signalled; the replica starts afresh.
    // Its port is held by someone else, so the replica gets a new one.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let stale = cutover_local::supervisor::ReplicaRecord {
        index: 2,
        pid: std::process::id(),
        port: taken,
        started_at: jiff::Timestamp::now(),
    };
    second.adopt(&s, &[stale]);
    let fresh = wait_for(
        &second,
        &s,
        Duration::from_secs(10),
        "fresh replica",
        all_ready(3),
    )
    .await;
    assert_ne!(fresh[2].pid, Some(std::process::id()));
    assert_ne!(fresh[2].port, taken);
    second.scale(&s, 2).unwrap();

    // The adopted processes are still supervised: a crash is noticed and restarted.
    let _ = get(after[1].port, "/crash");
    wait_for(&second, &s, Duration::from_secs(10), "restart", |s| {
        s[1].restarts == 1 && s[1].ready
    })
    .await;
    let pids: Vec<u32> = second
        .observe("web", "jjj")
        .iter()
        .filter_map(|r| r.pid)
        .collect();
    second.shutdown().await;
    for pid in pids {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !gone(pid) && Instant::now() < deadline {
            sleep(Duration::from_millis(50)).await;
        }
        assert!(gone(pid), "pid {pid} left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let child_pid_file = dir.path().join("grandchild.pid");
    let sup = supervisor(dir.path());
    let demo = demo_spec("kkk", "demo:v1", &[]);
    let shell = spec(
        "lll",
        json!({"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "tree",
            "command": ["sh", "-c", "sleep 300 & echo $! > \"$PIDFILE\"; wait"],
            "env": [{"name": "PIDFILE", "value": child_pid_file}],
        }]}),
    );
    sup.scale(&demo, 2).unwrap();
    sup.scale(&shell, 1).unwrap();
    let mut pids: Vec<u32> = wait_for(&sup, &demo, Duration::from_secs(10), "ready", all_ready(2))
        .await
        .iter()
        .filter_map(|r| r.pid)
        .collect();
    let tree = wait_for(&sup, &shell, Duration::from_secs(5), "ready", all_ready(1)).await;
    pids.extend(tree[0].pid);
    let deadline = Instant::now() + Duration::from_secs(5);
    let grandchild: u32 = loop {
        if let Some(pid) = std::fs::read_to_string(&child_pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the shell never wrote its child's pid"
        );
        sleep(Duration::from_millis(50)).await;
    };
    sup.shutdown().await;
    for pid in pids {
        assert!(
            kill(Pid::from_raw(pid as i32), None).is_err(),
            "pid {pid} left behind"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while !gone(grandchild) && Instant::now() < deadline {
        sleep(Duration::from_millis(50)).await;
    }
    assert!(gone(grandchild), "grandchild {grandchild} left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_before_rolls_one_replica_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let sup = supervisor(dir.path());
    let s = demo_spec("mmm", "demo:v1", &[]);
    sup.scale(&s, 3).unwrap();
    let before = wait_for(&sup, &s, Duration::from_secs(10), "ready", all_ready(3)).await;
    let cutoff = jiff::Timestamp::now();
    sup.restart_before("web", "mmm", cutoff, 1);
    sup.restart_before("web", "mmm", cutoff, 1); // a repeat changes nothing
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = sup.observe("web", "mmm");
        let unready = seen.iter().filter(|r| !r.ready).count();
        assert!(unready <= 1, "more than max_unavailable down: {seen:#?}");
        if seen.len() == 3
            && seen
                .iter()
                .all(|r| r.ready && r.started_at.is_some_and(|t| t > cutoff))
        {
            for (a, b) in seen.iter().zip(&before) {
                assert_ne!(a.pid, b.pid);
                assert_eq!((a.index, a.port, a.restarts), (b.index, b.port, 0));
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restart never finished: {seen:#?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_a_sidecar_runs_probes_restarts_and_adopts_per_container() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(
        "nnn",
        json!({"terminationGracePeriodSeconds": 2, "containers": [
            {
                "name": "app", "image": "demo:v1", "command": [demo_app()],
                "ports": [{"containerPort": 8080}],
                "startupProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 10},
                "readinessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 1},
            },
            {"name": "sidecar", "image": "busybox", "command": ["sleep", "300"]},
        ]}),
    );
    let first = supervisor(dir.path());
    first.scale(&s, 1).unwrap();
    let seen = wait_for(&first, &s, Duration::from_secs(10), "ready", all_ready(1)).await;
    let pids: Vec<u32> = seen[0].containers.iter().filter_map(|c| c.pid).collect();
    assert_eq!(pids.len(), 2, "{seen:#?}");
    assert_eq!(seen[0].pid, Some(pids[0]));

    // Killing the sidecar restarts the sidecar only.
    kill(Pid::from_raw(pids[1] as i32), Signal::SIGKILL).unwrap();
    let seen = wait_for(
        &first,
        &s,
        Duration::from_secs(10),
        "sidecar restarted",
        |s| s[0].ready && s[0].containers[1].restarts == 1,
    )
    .await;
    assert_eq!(seen[0].containers[0].pid, Some(pids[0]));
    assert_eq!(seen[0].containers[0].restarts, 0);
    assert!(
        seen[0]
            .last_exit
            .as_deref()
            .unwrap()
            .contains("container sidecar")
    );
    let pids: Vec<u32> = seen[0].containers.iter().filter_map(|c| c.pid).collect();

    let records = first.records("web", "nnn");
    drop(first);
    let second = supervisor(dir.path());
    second.adopt(&s, &records);
    let seen = wait_for(
        &second,
        &s,
        Duration::from_secs(10),
        "adopted",
        all_ready(1),
    )
    .await;
    let adopted: Vec<u32> = seen[0].containers.iter().filter_map(|c| c.pid).collect();
    assert_eq!(adopted, pids);
    second.shutdown().await;
    for pid in pids {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !gone(pid) && Instant::now() < deadline {
            sleep(Duration::from_millis(50)).await;
        }
        assert!(gone(pid), "pid {pid} left behind");
    }
}
