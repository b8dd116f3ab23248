//! The CLI against Kubernetes: a real kube-apiserver (scripts/kube-test-env), the controller
//! in-process, a kubelet stand-in, and the `cutover` binary run with `--kubeconfig -n` and as
//! the kubectl plugin `kubectl-cutover`: get, list, status, set image, promote, abort, retry,
//! undo, pause, resume; and, on a second rollout measured by a web metric against a local HTTP
//! server, get analysisrun, the AnalysisRun lines of the rollout tree, terminate analysisrun.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kube/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use support::KubeEnv;
use support::kubelet::Kubelet;

const NS: &str = "cli";
const CUTOVER: &str = env!("CARGO_BIN_EXE_cutover");

fn cutover(bin: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", NS])
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run cutover")
}

fn ok(bin: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let out = cutover(bin, kubeconfig, args);
    assert!(
        out.status.success(),
        "cutover {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn view_of(kubeconfig: &Path, rollout: &str) -> Value {
    serde_json::from_str(&ok(
        Path::new(CUTOVER),
        kubeconfig,
        &["get", "rollout", rollout, "-o", "json"],
    ))
    .expect("json")
}

fn wait(kubeconfig: &Path, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_on(kubeconfig, "web", what, done)
}

fn wait_on(kubeconfig: &Path, rollout: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        let v = view_of(kubeconfig, rollout);
        if done(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}: {}\nrevisions: {}\ntemplate: {}\nruns: {}",
            v["rollout"]["status"],
            v["revisions"],
            v["rollout"]["spec"]["template"],
            v["runs"]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn phase(v: &Value) -> &str {
    v["rollout"]["status"]["phase"].as_str().unwrap_or("")
}

fn current_image(v: &Value) -> String {
    let hash = v["rollout"]["status"]["currentPodHash"]
        .as_str()
        .unwrap_or("");
    v["revisions"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["hash"] == hash))
        .and_then(|r| r["images"][0].as_str())
        .unwrap_or("")
        .to_string()
}

fn healthy_on(v: &Value, image: &str) -> bool {
    phase(v) == "Healthy"
        && current_image(v) == image
        && v["rollout"]["status"]["observedGeneration"] == v["rollout"]["metadata"]["generation"]
}

fn active_selector(v: &Value) -> Value {
    v["services"][0]["selector"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_verbs_work_against_kubernetes_and_as_a_kubectl_plugin() {
    let Some(env) = KubeEnv::start().await else {
        return;
    };
    env.install().await;
    env.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))
        .await;
    let client = env.client.clone();
    let _kubelet = Kubelet::start(client.clone(), NS).await;
    for name in ["web-active", "web-preview"] {
        env.apply(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        }))
        .await;
    }
    let controller = support::start_controller(&client, NS);
    env.apply(json!({
        "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "app", "image": "web:v1"}]}},
            "strategy": {"blueGreen": {"activeService": "web-active", "previewService": "web-preview",
                                       "autoPromotionEnabled": false, "scaleDownDelaySeconds": 30}},
        },
    }))
    .await;
    let web = web_metric_server();
    analysed_rollout(&env, &format!("http://{web}/ok")).await;
    let kubeconfig = env.dir().join("kubeconfig");
    // The two rollouts are independent: their scenarios run side by side.
    let kc = kubeconfig.clone();
    let verbs = tokio::task::spawn_blocking(move || scenario(&kc));
    let kc = kubeconfig.clone();
    let analysis = tokio::task::spawn_blocking(move || analysis_scenario(&kc));
    verbs.await.expect("scenario");
    analysis.await.expect("analysis scenario");

    // As a kubectl plugin: the program name selects Kubernetes, KUBECONFIG the cluster.
    let plugin = env.dir().join("kubectl-cutover");
    std::os::unix::fs::symlink(CUTOVER, &plugin).expect("symlink");
    let out = Command::new(&plugin)
        .args(["get", "rollout", "web", "-n", NS])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("run plugin");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Name:            web") && text.contains("web:v4"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&plugin)
        .args(["list", "rollouts", "-A"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("plugin list");
    assert!(String::from_utf8_lossy(&out.stdout).contains("web"));
    controller.abort();
}

fn scenario(kc: &Path) {
    let bin = Path::new(CUTOVER);
    let v = wait(kc, "Healthy on v1", |v| healthy_on(v, "web:v1"));
    let stable = active_selector(&v);
    assert_eq!(
        cutover(bin, kc, &["status", "web", "--timeout", "30s"])
            .status
            .code(),
        Some(0)
    );

    ok(bin, kc, &["set", "image", "web", "app=web:v2"]);
    let v = wait(kc, "paused for promotion", |v| phase(v) == "Paused");
    assert_eq!(active_selector(&v), stable, "active moved before promote");
    ok(bin, kc, &["promote", "web"]);
    let v = wait(kc, "Healthy on v2", |v| healthy_on(v, "web:v2"));
    let v2 = active_selector(&v);
    assert_ne!(v2, stable);
    assert!(v["rollout"]["status"]["blueGreen"]["switch"]["verifiedAt"].is_string());

    ok(bin, kc, &["set", "image", "web", "app=web:v3"]);
    wait(kc, "paused for promotion", |v| phase(v) == "Paused");
    ok(bin, kc, &["abort", "web"]);
    let v = wait(kc, "aborted", |v| phase(v) == "Degraded");
    assert_eq!(active_selector(&v), v2);
    ok(bin, kc, &["retry", "rollout", "web"]);
    wait(kc, "paused again after retry", |v| phase(v) == "Paused");

    // v1 is still warm (30 s scale-down delay): undo to it is a fast rollback.
    ok(bin, kc, &["undo", "web", "--to-revision", "1"]);
    let v = wait(kc, "Healthy on v1 again", |v| healthy_on(v, "web:v1"));
    assert_eq!(active_selector(&v), stable);

    ok(bin, kc, &["pause", "web"]);
    wait(kc, "manually paused", |v| phase(v) == "Paused");
    ok(bin, kc, &["resume", "web"]);
    wait(kc, "resumed", |v| phase(v) == "Healthy");
    ok(bin, kc, &["set", "image", "web", "app=web:v4"]);
    wait(kc, "paused", |v| phase(v) == "Paused");
    ok(bin, kc, &["promote", "web", "--full"]);
    wait(kc, "Healthy on v4", |v| healthy_on(v, "web:v4"));

    let out = cutover(bin, kc, &["promote", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = cutover(bin, kc, &["logs", "web"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("kubectl logs"));
}

/// An HTTP server answering every request with `{"ok": true}`: the web metric's target.
fn web_metric_server() -> std::net::SocketAddr {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let body = r#"{"ok":true}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// A Rollout `api` whose pre-promotion analysis reads `url` once a minute until terminated,
/// so a run stays Running with one measurement while the CLI looks at it.
async fn analysed_rollout(env: &KubeEnv, url: &str) {
    for name in ["api-active", "api-preview"] {
        env.apply(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        }))
        .await;
    }
    env.apply(json!({
        "apiVersion": "cutover.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "api-health", "namespace": NS},
        "spec": {"metrics": [{
            "name": "health", "interval": "1m", "successCondition": "result == true",
            "provider": {"web": {"url": url, "jsonPath": "{$.ok}"}},
        }]},
    }))
    .await;
    env.apply(json!({
        "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "api", "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api"}},
                         "spec": {"containers": [{"name": "app", "image": "api:v1"}]}},
            "strategy": {"blueGreen": {"activeService": "api-active", "previewService": "api-preview",
                                       "scaleDownDelaySeconds": 0,
                                       "prePromotionAnalysis": {"templates": [{"templateName": "api-health"}]}}},
        },
    }))
    .await;
}

fn analysis_scenario(kc: &Path) {
    let bin = Path::new(CUTOVER);
    wait_on(kc, "api", "api Healthy on v1", |v| healthy_on(v, "api:v1"));
    ok(bin, kc, &["set", "image", "api", "app=api:v2"]);
    let v = wait_on(kc, "api", "a pre-promotion run with a measurement", |v| {
        v["runs"][0]["status"]["metricResults"][0]["successful"].as_i64() >= Some(1)
    });
    let run = v["runs"][0]["name"].as_str().expect("run name").to_string();
    let hash = v["runs"][0]["hash"].as_str().expect("run hash").to_string();
    assert_eq!(v["runs"][0]["kind"], "pre", "{}", v["runs"]);
    assert_eq!(v["runs"][0]["phase"], "Running", "{}", v["runs"]);

    let text = ok(bin, kc, &["get", "analysisrun", &run]);
    for expected in [
        format!("Name:       {run}"),
        format!("Rollout:    api (pre-promotion, revision {hash})"),
        "Status:     Running".to_string(),
        "Measured:   ✔ 1 ✖ 0 ? 0 ⚠ 0".to_string(),
        "Metric health: Running".to_string(),
    ] {
        assert!(text.contains(&expected), "{expected:?} not in:\n{text}");
    }
    let json: Value =
        serde_json::from_str(&ok(bin, kc, &["get", "analysisrun", &run, "-o", "json"]))
            .expect("json");
    assert_eq!(json["name"], run.as_str());
    assert_eq!(json["rollout"], "api");
    assert_eq!(json["terminated"], false);
    assert_eq!(json["status"]["metricResults"][0]["name"], "health");

    let tree = ok(bin, kc, &["get", "rollout", "api"]);
    let line = run_line(&tree, &run);
    assert!(
        line.contains(" pre ") && line.contains("Running") && line.contains("✔ 1 ✖ 0 ? 0 ⚠ 0"),
        "{tree}"
    );

    let said = ok(bin, kc, &["terminate", "analysisrun", &run]);
    assert!(
        said.contains(&format!("analysisrun '{run}' terminated")),
        "{said}"
    );
    // The controller stops measuring and writes the final phase; the gate then passes.
    let v = wait_on(kc, "api", "the terminated run Successful", |v| {
        v["runs"][0]["phase"] == "Successful"
    });
    assert_eq!(v["runs"][0]["terminated"], true);
    let tree = ok(bin, kc, &["get", "rollout", "api"]);
    assert!(run_line(&tree, &run).contains("Successful"), "{tree}");
    let said = ok(bin, kc, &["terminate", "analysisrun", &run]);
    assert!(said.contains("already finished (Successful)"), "{said}");
    wait_on(kc, "api", "api Healthy on v2", |v| healthy_on(v, "api:v2"));

    for verb in ["get", "terminate"] {
        let out = cutover(bin, kc, &[verb, "analysisrun", "nope"]);
        assert_eq!(out.status.code(), Some(1), "{verb}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("analysisrun cli/nope: not found"),
            "{verb}: {err}"
        );
    }
}

/// The line of the rollout tree's AnalysisRuns section naming `run`.
fn run_line<'a>(tree: &'a str, run: &str) -> &'a str {
    tree.split_once("AnalysisRuns:")
        .and_then(|(_, runs)| runs.lines().find(|l| l.contains(run)))
        .unwrap_or_else(|| panic!("no line for {run} in:\n{tree}"))
}
