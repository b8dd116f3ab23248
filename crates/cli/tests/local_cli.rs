//! The CLI on one host reads as Argo Rollouts' CLI (issue 11, "CLI"), against a real
//! `cutover up` with real processes:
//! - `get rollout -o json|yaml` prints the Rollout object (`.status.phase`), `-o view-json` the
//!   composite view; `list` alone lists rollouts;
//! - the tree: status icons, an AGE column, no stray leading spaces, no `()` after an image
//!   without a role, revisions newest first;
//! - `status` prints no dangling ` - ` and exits 0 Healthy, 1 Degraded, 2 timeout, 3 not found;
//! - `abort`/`retry`/`promote` with nothing to act on say so and exit 4;
//! - `apply` of a Rollout alone resolves its AnalysisTemplate against what the daemon holds,
//!   and the run shows in the tree under its revision; a Rollout with `workloadRef` is
//!   refused with its location.

mod e2e;

use std::process::Output;

use e2e::argo::{cells, check_tree_layout, is_age, json_ok_server};
use e2e::*;
use serde_json::Value;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `args`, expects exit `code` and `said` in stderr.
fn expect(d: &Daemon, args: &[&str], code: i32, said: &str) {
    let out = d.cli(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "cutover {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(said),
        "cutover {args:?}: {}",
        stderr(&out)
    );
}

#[test]
fn get_list_status_and_verbs_read_as_argo_rollouts_cli() {
    let (services, _, _) = services("web");
    // One old revision stays warm: v2 keeps its pods after v3, v1 is scaled down.
    let extra = "      autoPromotionEnabled: false\n      scaleDownDelaySeconds: 300\n      scaleDownDelayRevisionLimit: 1\n";
    let d = Daemon::start(&format!("{services}{}", demo_rollout("web", 2, extra, "")));
    d.wait_healthy_on("web", "demo:v1");

    // -o json|yaml: the object, as kubectl prints it; the view is -o view-json.
    let object: Value =
        serde_json::from_str(&d.ok(&["get", "rollout", "web", "-o", "json"])).expect("json");
    assert_eq!(object["kind"], "Rollout", "{object}");
    assert_eq!(object["metadata"]["name"], "web");
    assert_eq!(object["status"]["phase"], "Healthy");
    let yaml: Value =
        serde_yaml_ng::from_str(&d.ok(&["get", "rollout", "web", "-o", "yaml"])).expect("yaml");
    assert_eq!(yaml["status"]["phase"], "Healthy");
    assert!(d.view("web")["revisions"].is_array());

    // Nothing to act on: said, exit 4, nothing changed.
    expect(
        &d,
        &["abort", "web"],
        4,
        "nothing to abort: rollout is Healthy",
    );
    expect(
        &d,
        &["retry", "rollout", "web"],
        4,
        "nothing to retry: rollout is Healthy",
    );
    expect(
        &d,
        &["promote", "web"],
        4,
        "nothing to promote: rollout is Healthy",
    );
    expect(&d, &["promote", "web", "--full"], 4, "nothing to promote");
    assert_ne!(d.view("web")["rollout"]["status"]["abort"], true);

    let out = d.cli(&["status", "web", "--timeout", "10s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_no_dangling_dash(&stdout(&out));
    expect(
        &d,
        &["status", "nope", "--timeout", "1s"],
        3,
        "\"nope\" not found",
    );
    expect(&d, &["get", "rollout", "nope"], 3, "not found");

    d.ok(&["set", "image", "web", "app=demo:v2"]);
    d.wait("web", "paused for promotion", |v| phase(v) == "Paused");
    expect(&d, &["status", "web", "--timeout", "1s"], 2, "timed out");
    expect(
        &d,
        &["retry", "rollout", "web"],
        4,
        "nothing to retry: rollout is Paused, not aborted",
    );
    d.ok(&["abort", "web"]);
    d.wait("web", "aborted", |v| phase(v) == "Degraded");
    expect(&d, &["abort", "web"], 4, "already aborted");
    expect(
        &d,
        &["status", "web", "--timeout", "10s"],
        1,
        "degraded state",
    );
    d.ok(&["retry", "rollout", "web"]);
    d.wait("web", "paused again", |v| phase(v) == "Paused");
    d.ok(&["promote", "web"]);
    d.wait_healthy_on("web", "demo:v2");
    d.ok(&["set", "image", "web", "app=demo:v3"]);
    d.wait("web", "paused for v3", |v| phase(v) == "Paused");
    d.ok(&["promote", "web"]);
    d.wait_healthy_on("web", "demo:v3");
    d.wait("web", "v1 scaled down", |v| {
        v["revisions"].as_array().is_some_and(|revs| {
            revs.iter()
                .any(|r| r["revision"] == 1 && r["replicas"].as_array().is_some_and(Vec::is_empty))
        })
    });

    let tree = d.ok(&["get", "rollout", "web"]);
    eprintln!("{tree}");
    check_tree(&tree);

    // `list` alone lists rollouts, in Argo's columns; -o json is a List of Rollout objects.
    let table = d.ok(&["list"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STRATEGY",
            "STATUS",
            "STEP",
            "SET-WEIGHT",
            "READY",
            "DESIRED",
            "UP-TO-DATE",
            "AVAILABLE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..3], ["web", "BlueGreen", "Healthy"], "{table}");
    let list: Value = serde_json::from_str(&d.ok(&["list", "-o", "json"])).expect("list json");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["status"]["phase"], "Healthy", "{list}");
}

fn assert_no_dangling_dash(text: &str) {
    for line in text.lines() {
        assert!(
            !line.trim_end().ends_with(" -"),
            "dangling dash in {line:?}"
        );
    }
}

/// The tree after v1 → v2 → v3 with v2 still warm (scale-down delay 300 s).
fn check_tree(tree: &str) {
    let lines: Vec<&str> = tree.lines().collect();
    let revisions = check_tree_layout(tree, "web");
    assert!(
        lines.contains(&"Images:          demo:v2"),
        "v2 runs without a role:\n{tree}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("demo:v3 (stable, active)")),
        "{tree}"
    );
    assert_eq!(revisions, [3, 2, 1], "revisions newest first:\n{tree}");
    let replica_sets: Vec<Vec<&str>> = lines.iter().filter_map(|l| cells(l, "⧉")).collect();
    assert_eq!(replica_sets.len(), 3, "{tree}");
    for (rs, (status, info)) in replica_sets.iter().zip([
        ("Healthy", Some("stable,active")),
        ("Healthy", None),
        ("ScaledDown", None),
    ]) {
        assert_eq!(rs[1..4], ["ReplicaSet", icon(status), status], "{tree}");
        assert!(is_age(rs[4]), "AGE of {rs:?}\n{tree}");
        if let Some(info) = info {
            assert_eq!(rs.get(5), Some(&info), "{tree}");
        }
    }
    let pods: Vec<Vec<&str>> = lines.iter().filter_map(|l| cells(l, "□")).collect();
    assert_eq!(pods.len(), 4, "two pods of v3, two of warm v2:\n{tree}");
    for pod in &pods {
        assert_eq!(pod[1..4], ["Pod", "✔", "Running"], "{tree}");
        assert!(is_age(pod[4]) && pod[5].starts_with("ready:1/1"), "{tree}");
    }
}

fn icon(status: &str) -> &'static str {
    if status == "Healthy" { "✔" } else { "•" }
}

#[test]
fn a_rollout_applied_alone_uses_the_analysis_template_the_daemon_holds() {
    let (services, _, _) = services("api");
    let template = format!(
        "---\napiVersion: cutover.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata: {{name: api-ok}}\nspec:\n  metrics:\n    - name: ok\n      successCondition: \"result == true\"\n      provider:\n        web: {{url: \"http://{}/\", jsonPath: \"{{$.ok}}\"}}\n",
        json_ok_server()
    );
    let analysis = "      prePromotionAnalysis:\n        templates: [{templateName: api-ok}]\n";
    let rollout = demo_rollout("api", 1, analysis, "");
    let d = Daemon::start(&format!("{services}{template}{rollout}"));
    d.wait_healthy_on("api", "demo:v1");

    let alone = d.state_dir().join("rollout.yaml");
    std::fs::write(&alone, rollout.replace("image: demo:v1", "image: demo:v2")).expect("write");
    // `antiAffinity` means nothing to processes on one host: applied, with a located warning.
    let pinned = rollout.replace("image: demo:v1", "image: demo:v2")
        + "      antiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: {weight: 1}}\n";
    std::fs::write(&alone, pinned).expect("write");
    let given = alone.to_str().unwrap_or_default();
    let out = d.cli(&["apply", "-f", given]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("Rollout/api configured"), "{said}");
    assert!(
        stderr(&out).contains(&format!("{given}:"))
            && stderr(&out).contains("warning")
            && stderr(&out).contains("antiAffinity"),
        "{}",
        stderr(&out)
    );
    let v = d.wait_healthy_on("api", "demo:v2");
    assert_eq!(v["runs"][0]["phase"], "Successful", "{}", v["runs"]);

    // A template the daemon does not hold either is still refused, at the user's path.
    let unknown = d.state_dir().join("unknown.yaml");
    std::fs::write(
        &unknown,
        rollout
            .replace("templateName: api-ok", "templateName: nope")
            .replace("image: demo:v1", "image: demo:v3"),
    )
    .expect("write");
    let given = unknown.to_str().unwrap_or_default();
    let out = d.cli(&["apply", "-f", given]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("AnalysisTemplate `nope` not found")
            && stderr(&out).contains(&format!("{given}:")),
        "{}",
        stderr(&out)
    );

    // `workloadRef` has no Deployment to read on one host: refused where it is written.
    let adopting = d.state_dir().join("adopting.yaml");
    let start = rollout.find("  template:\n").unwrap_or(0);
    let end = rollout.find("  strategy:\n").unwrap_or(0);
    let reference = "  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: api}\n";
    let text = format!("{}{reference}{}", &rollout[..start], &rollout[end..]);
    std::fs::write(&adopting, text).expect("write");
    let given = adopting.to_str().unwrap_or_default();
    let out = d.cli(&["apply", "-f", given]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{given}:"))
            && stderr(&out).contains("workloadRef applies only on Kubernetes")
            && stderr(&out).contains("spec.template"),
        "{}",
        stderr(&out)
    );

    // The run is in the tree under the revision it analysed, as Argo draws it.
    let tree = d.ok(&["get", "rollout", "api"]);
    eprintln!("{tree}");
    let at = tree
        .lines()
        .position(|l| l.contains("# revision:2"))
        .unwrap_or_else(|| panic!("{tree}"));
    let run = tree
        .lines()
        .skip(at)
        .find_map(|l| cells(l, "α"))
        .unwrap_or_else(|| panic!("no run row:\n{tree}"));
    assert!(run.len() >= 7 && run[0].ends_with("-pre"), "{tree}");
    assert_eq!(run[1..4], ["AnalysisRun", "✔", "Successful"], "{tree}");
    assert!(is_age(run[4]), "{tree}");
    assert_eq!(run[5..], ["✔", "1"], "{tree}");
}

/// Argo's "Ready" is the active revision's ready pods (`status.readyReplicas`); while v2's
/// preview (previewReplicaCount 1) waits beside v1's 2 pods, Argo shows
/// (desired, current, updated, ready, available) = (2, 3, 1, 2, 2).
#[test]
fn ready_counts_the_active_revision_as_argo_does() {
    let (services, _, _) = services("rdy");
    let extra = "      autoPromotionEnabled: false\n      previewReplicaCount: 1\n";
    let d = Daemon::start(&format!("{services}{}", demo_rollout("rdy", 2, extra, "")));
    d.wait_healthy_on("rdy", "demo:v1");
    d.ok(&["set", "image", "rdy", "app=demo:v2"]);
    d.wait("rdy", "v2's preview ready and paused", |v| {
        phase(v) == "Paused" && v["rollout"]["status"]["updatedReplicas"] == 1
    });
    let tree = d.ok(&["get", "rollout", "rdy"]);
    for expected in [
        "  Desired:       2",
        "  Current:       3",
        "  Updated:       1",
        "  Ready:         2",
        "  Available:     2",
    ] {
        assert!(
            tree.lines().any(|l| l == expected),
            "{expected:?} in:\n{tree}"
        );
    }
}
