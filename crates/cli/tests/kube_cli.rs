//! The CLI against Kubernetes: a real kube-apiserver (scripts/kube-test-env), the controller
//! in-process, a kubelet stand-in, and the `cutover` binary run with `--kubeconfig -n` and as
//! the kubectl plugin `kubectl-cutover`: get, list, status, set image, promote, abort, retry,
//! undo, pause, resume; and, on a second rollout measured by a web metric against a local HTTP
//! server, get analysisrun, the AnalysisRun rows of the rollout tree, terminate analysisrun.
//! And that they read as Argo Rollouts' CLI (issue 11): `-o json` is the Rollout object, the
//! tree has icons, AGE and revisions newest first, `list` alone lists, `status` and the verbs
//! with nothing to act on exit with their documented codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Only the `argo` helpers of the daemon fixture are used here.
mod e2e;
#[path = "../../kube/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use e2e::argo::{cells, check_tree_layout, is_age, json_ok_server};
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
        &["get", "rollout", rollout, "-o", "view-json"],
    ))
    .expect("json")
}

/// Runs `args`, expects exit `code` and `said` in stderr.
fn expect(kc: &Path, args: &[&str], code: i32, said: &str) {
    let out = cutover(Path::new(CUTOVER), kc, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "cutover {args:?}: {err}");
    assert!(err.contains(said), "cutover {args:?}: {err}");
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
    env.blue_green_services(NS, "web").await;
    let controller = support::start_controller(&env.controller_client().await, NS);
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
    let web = json_ok_server();
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
    let out = cutover(bin, kc, &["status", "web", "--timeout", "30s"]);
    assert_eq!(out.status.code(), Some(0));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.lines().all(|l| !l.trim_end().ends_with(" -")),
        "dangling dash: {said}"
    );
    expect(
        kc,
        &["status", "nope", "--timeout", "1s"],
        3,
        "rollout cli/nope: not found",
    );
    expect(kc, &["get", "rollout", "nope"], 3, "not found");

    // -o json|yaml: the Rollout as kubectl prints it (managedFields hidden).
    let object: Value =
        serde_json::from_str(&ok(bin, kc, &["get", "rollout", "web", "-o", "json"])).expect("json");
    assert_eq!(object["kind"], "Rollout");
    assert_eq!(object["status"]["phase"], "Healthy", "{object}");
    assert!(object["metadata"]["managedFields"].is_null(), "{object}");
    let yaml: Value =
        serde_yaml_ng::from_str(&ok(bin, kc, &["get", "rollout", "web", "-o", "yaml"]))
            .expect("yaml");
    assert_eq!(yaml["metadata"]["namespace"], NS);

    // Nothing to act on: said, exit 4, nothing patched.
    expect(
        kc,
        &["abort", "web"],
        4,
        "nothing to abort: rollout is Healthy",
    );
    expect(
        kc,
        &["retry", "rollout", "web"],
        4,
        "nothing to retry: rollout is Healthy",
    );
    expect(
        kc,
        &["promote", "web"],
        4,
        "nothing to promote: rollout is Healthy",
    );
    let table = ok(bin, kc, &["list"]);
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..3], ["web", "BlueGreen", "Healthy"], "{table}");

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
    expect(kc, &["status", "web", "--timeout", "1s"], 2, "timed out");
    expect(kc, &["retry", "rollout", "web"], 4, "not aborted");
    ok(bin, kc, &["abort", "web"]);
    let v = wait(kc, "aborted", |v| phase(v) == "Degraded");
    assert_eq!(active_selector(&v), v2);
    expect(kc, &["abort", "web"], 4, "already aborted");
    expect(
        kc,
        &["status", "web", "--timeout", "30s"],
        1,
        "degraded state",
    );
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
    check_tree(&ok(bin, kc, &["get", "rollout", "web"]));

    expect(kc, &["promote", "nope"], 3, "not found");
    let out = cutover(bin, kc, &["logs", "web"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("kubectl logs"));
}

/// A Rollout `api` whose pre-promotion analysis reads `url` once a minute until terminated,
/// so a run stays Running with one measurement while the CLI looks at it.
async fn analysed_rollout(env: &KubeEnv, url: &str) {
    env.blue_green_services(NS, "api").await;
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
    assert_eq!(
        run_row(&tree, &run),
        ["AnalysisRun", "◌", "Running", "✔", "1"],
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
    assert_eq!(
        run_row(&tree, &run)[..3],
        ["AnalysisRun", "✔", "Successful"],
        "{tree}"
    );
    let said = ok(bin, kc, &["terminate", "analysisrun", &run]);
    assert!(said.contains("already finished (Successful)"), "{said}");
    wait_on(kc, "api", "api Healthy on v2", |v| healthy_on(v, "api:v2"));

    for verb in ["get", "terminate"] {
        let out = cutover(bin, kc, &[verb, "analysisrun", "nope"]);
        assert_eq!(out.status.code(), Some(3), "{verb}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("analysisrun cli/nope: not found"),
            "{verb}: {err}"
        );
    }
}

/// The cells of the tree row of `run` after its name, without the AGE: kind, icon, status,
/// then the measurement counts.
fn run_row<'a>(tree: &'a str, run: &str) -> Vec<&'a str> {
    let row = tree
        .lines()
        .filter_map(|l| cells(l, "α"))
        .find(|c| c.first() == Some(&run))
        .unwrap_or_else(|| panic!("no row for {run} in:\n{tree}"));
    assert!(row.len() >= 5 && is_age(row[4]), "AGE in {row:?}");
    row[1..4].iter().chain(&row[5..]).copied().collect()
}

/// The tree as `kubectl argo rollouts get rollout` draws it: icons, AGE, no stray leading
/// spaces, no `()` after an image without a role, revisions newest first.
fn check_tree(tree: &str) {
    let lines: Vec<&str> = tree.lines().collect();
    assert!(
        lines.iter().any(|l| l.ends_with("web:v4 (stable, active)")),
        "{tree}"
    );
    let revisions = check_tree_layout(tree, "web");
    assert!(
        revisions.len() >= 2 && revisions.windows(2).all(|w| w[0] > w[1]),
        "revisions newest first: {revisions:?}\n{tree}"
    );
    let pods: Vec<Vec<&str>> = lines.iter().filter_map(|l| cells(l, "□")).collect();
    assert!(!pods.is_empty(), "{tree}");
    for pod in pods {
        assert_eq!(pod[1..4], ["Pod", "✔", "Running"], "{tree}");
        assert!(is_age(pod[4]), "AGE in {pod:?}");
        assert_eq!(pod.get(5), Some(&"ready:1/1"), "{tree}");
    }
}
