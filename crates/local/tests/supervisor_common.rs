//! Helpers shared by the supervisor scenario tests (included with `#[path]` by each of them;
//! built on its own too, as every file under tests/ is, where it holds no test).

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
pub use std::path::{Path, PathBuf};
use std::sync::OnceLock;
pub use std::time::Duration;

pub use cutover_local::supervisor::{
    ReplicaPhase, ReplicaStatus, RevisionSpec, Supervisor, SupervisorConfig,
};
pub use nix::sys::signal::{Signal, kill, killpg};
pub use nix::unistd::Pid;
pub use serde_json::json;
pub use tokio::time::{Instant, sleep};

/// The demo app binary: `CUTOVER_DEMO_APP`, or built once with cargo into the target dir.
pub fn demo_app() -> String {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(path) = std::env::var_os("CUTOVER_DEMO_APP") {
            return PathBuf::from(path);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        let status = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args(["build", "--quiet", "-p", "cutover-demo-app"])
            .current_dir(&workspace)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("run cargo build for the demo app");
        assert!(status.success(), "building cutover-demo-app failed");
        target.join("debug").join("cutover-demo-app")
    })
    .display()
    .to_string()
}

/// A supervisor that kills its processes if the test panics, so a failing test leaves nothing
/// running (a test that passes stops them with `shutdown`, or hands them to another supervisor).
pub struct Sup(pub Supervisor);

impl std::ops::Deref for Sup {
    type Target = Supervisor;
    fn deref(&self) -> &Supervisor {
        &self.0
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for replicas in self.0.revisions("web").into_values() {
            for pid in replicas
                .iter()
                .flat_map(|r| r.containers.iter().filter_map(|c| c.pid))
            {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

pub fn supervisor(dir: &Path) -> Sup {
    Sup(Supervisor::new(config(dir)))
}

pub fn config(dir: &Path) -> SupervisorConfig {
    SupervisorConfig {
        log_dir: dir.to_path_buf(),
        backoff_initial: Duration::from_secs(1),
        backoff_max: Duration::from_secs(4),
    }
}

pub fn spec(hash: &str, pod_spec: serde_json::Value) -> RevisionSpec {
    RevisionSpec {
        rollout: "web".into(),
        hash: hash.into(),
        revision: 1,
        template: serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": pod_spec,
        }))
        .unwrap(),
    }
}

/// A demo app pod with an HTTP readiness probe on the mapped containerPort.
pub fn demo_spec(hash: &str, image: &str, args: &[&str]) -> RevisionSpec {
    spec(
        hash,
        json!({
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "app",
                "image": image,
                "command": [demo_app()],
                "args": args,
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 1},
            }]
        }),
    )
}

/// Polls the revision until `pred` holds, failing with the last observation after `within`.
pub async fn wait_for(
    sup: &Supervisor,
    spec: &RevisionSpec,
    within: Duration,
    what: &str,
    pred: impl Fn(&[ReplicaStatus]) -> bool,
) -> Vec<ReplicaStatus> {
    let deadline = Instant::now() + within;
    loop {
        let seen = sup.observe(&spec.rollout, &spec.hash);
        if pred(&seen) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last seen: {seen:#?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

pub fn all_ready(n: usize) -> impl Fn(&[ReplicaStatus]) -> bool {
    move |s| s.len() == n && s.iter().all(|r| r.ready)
}

/// A plain HTTP/1.1 GET to 127.0.0.1:port; returns (status, headers and body as text).
pub fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Whether a process is gone (a zombie that only waits to be reaped counts as gone).
pub fn gone(pid: u32) -> bool {
    if kill(Pid::from_raw(pid as i32), None).is_err() {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
