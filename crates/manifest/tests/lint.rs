//! `load` on broken manifests: each case must name file:line:column, the field path, the
//! problem and the fix. Snapshots hold the exact rendering.

mod common;

use common::{ROLLOUT, SERVICES, TEMPLATE, lint, lint_rollout, rollout_with};
use insta::assert_snapshot;

#[test]
fn valid_set_loads() {
    assert_eq!(lint_rollout(ROLLOUT), "ok");
}

#[test]
fn seed_example_loads() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed");
    let mut files = Vec::new();
    for name in ["analysis-template.yaml", "rollout.yaml", "services.yaml"] {
        let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap_or_default();
        files.push((name, text));
    }
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    assert_eq!(lint(&files), "ok");
}

#[test]
fn missing_active_service() {
    let text = rollout_with("      activeService: my-app-active\n", "");
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn empty_active_service() {
    let text = rollout_with("activeService: my-app-active", "activeService: \"\"");
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn equal_active_and_preview() {
    let text = rollout_with(
        "previewService: my-app-preview",
        "previewService: my-app-active",
    );
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn bad_duration() {
    let template = TEMPLATE.replace("interval: 30s", "interval: 30 seconds");
    assert_snapshot!(lint(&[
        ("rollout.yaml", ROLLOUT),
        ("services.yaml", SERVICES),
        ("analysis-template.yaml", &template)
    ]));
}

#[test]
fn templated_duration_is_accepted() {
    let template = TEMPLATE
        .replace("interval: 30s", "interval: \"{{args.interval}}\"")
        .replace(
            "    - name: service-name\n",
            "    - name: service-name\n    - name: interval\n      value: 30s\n",
        );
    assert_eq!(
        lint(&[
            ("rollout.yaml", ROLLOUT),
            ("services.yaml", SERVICES),
            ("analysis-template.yaml", &template)
        ]),
        "ok"
    );
}

#[test]
fn unknown_fields_with_suggestions() {
    let text = rollout_with("activeService:", "activeServce:")
        .replace(
            "image: my-app:1.1.0",
            "image: my-app:1.1.0\n          imagePullPolicyy: Always",
        )
        .replace(
            "      containers:",
            "      containres: []\n      containers:",
        );
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn yaml_syntax_error() {
    let text = rollout_with("  replicas: 4", "  replicas: [4");
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn dangling_template_reference() {
    let text = rollout_with("templateName: success-rate", "templateName: success-rat");
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn cluster_template_needs_cluster_scope() {
    let cluster = TEMPLATE.replace("kind: AnalysisTemplate", "kind: ClusterAnalysisTemplate");
    assert_snapshot!(lint(&[
        ("rollout.yaml", ROLLOUT),
        ("services.yaml", SERVICES),
        ("cluster.yaml", &cluster)
    ]));
}

#[test]
fn missing_template_argument() {
    let text = rollout_with(
        "        args:\n          - name: service-name\n            value: my-app-preview\n",
        "",
    );
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn dangling_service_is_an_error_when_services_are_loaded() {
    let text = rollout_with(
        "previewService: my-app-preview",
        "previewService: my-app-previw",
    );
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn unknown_service_is_a_warning_without_service_files() {
    assert_snapshot!(lint(&[
        ("rollout.yaml", ROLLOUT),
        ("analysis-template.yaml", TEMPLATE)
    ]));
}

#[test]
fn numbers_and_selector() {
    let text = rollout_with("      app: my-app\n  template", "      app: my-ap\n  template")
        .replace("autoPromotionEnabled: false", "autoPromotionEnabled: false\n      autoPromotionSeconds: 30\n      scaleDownDelaySeconds: -1\n      scaleDownDelayRevisionLimit: 3\n      previewReplicaCount: 5");
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn wrong_type_and_later_problems_are_all_reported() {
    let text = rollout_with("replicas: 4", "replicas: four")
        .replace("      activeService: my-app-active\n", "");
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn metric_checks() {
    let template = TEMPLATE.replace(
        "  metrics:\n",
        "  metrics:
    - name: latency
      count: 3
      failureLimit: -2
      provider:
        web: {url: \"http://x/{{args.nope}}\"}
        builtin: {query: LatencyQuantile, window: 1m}
    - name: latency
      provider: {}
",
    );
    assert_snapshot!(lint(&[
        ("rollout.yaml", ROLLOUT),
        ("services.yaml", SERVICES),
        ("analysis-template.yaml", &template)
    ]));
}

#[test]
fn unsupported_documents() {
    let text = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
---
apiVersion: cutover.dev/v1alpha1
kind: Rolout
metadata: {name: web}
---
kind: Service
";
    assert_snapshot!(lint(&[("mixed.yaml", text)]));
}

#[test]
fn errors_of_all_files_are_sorted_by_file_then_line() {
    let a = rollout_with(
        "previewService: my-app-preview",
        "previewService: my-app-active",
    );
    let b = TEMPLATE
        .replace("interval: 30s", "interval: soon")
        .replace("count: 5", "count: 5\n      bogus: 1");
    assert_snapshot!(lint(&[
        ("b-template.yaml", &b),
        ("a-rollout.yaml", &a),
        ("services.yaml", SERVICES)
    ]));
}

#[test]
fn traffic_routing_is_checked() {
    let text = rollout_with(
        "previewService: my-app-preview",
        "previewService: my-app-preview
      trafficRouting:
        headerRoutes:
          - header: x-canary
            exact: \"true\"
            prefix: \"t\"
          - header: x-user
            regex: \"(unclosed\"
        previewWeight: 120
        mirror: {percent: 100}",
    );
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn valid_traffic_routing_loads() {
    let text = rollout_with(
        "previewService: my-app-preview",
        "previewService: my-app-preview
      trafficRouting:
        headerRoutes: [{header: x-canary, exact: \"true\"}]
        previewWeight: 10
        mirror: {percent: 50}",
    );
    assert_eq!(lint_rollout(&text), "ok");
}

const WORKLOAD_REF: &str = "  workloadRef:
    apiVersion: apps/v1
    kind: Deployment
    name: my-app
    scaleDown: onsuccess
";

#[test]
fn workload_ref_instead_of_a_template_loads() {
    let start = ROLLOUT.find("  template:").unwrap_or(0);
    let end = ROLLOUT.find("  strategy:").unwrap_or(0);
    let text = format!("{}{WORKLOAD_REF}{}", &ROLLOUT[..start], &ROLLOUT[end..]);
    assert_eq!(lint_rollout(&text), "ok");
}

#[test]
fn template_and_workload_ref_together_are_refused_where_the_reference_is() {
    let text = rollout_with("  strategy:\n", &format!("{WORKLOAD_REF}  strategy:\n"));
    let out = lint_rollout(&text);
    assert!(out.contains("rollout.yaml:19:3: spec.workloadRef"), "{out}");
    assert!(
        out.contains("set exactly one of spec.template and spec.workloadRef"),
        "{out}"
    );
}

#[test]
fn neither_template_nor_workload_ref_is_refused() {
    let start = ROLLOUT.find("  template:").unwrap_or(0);
    let end = ROLLOUT.find("  strategy:").unwrap_or(0);
    let text = format!("{}{}", &ROLLOUT[..start], &ROLLOUT[end..]);
    let out = lint_rollout(&text);
    assert!(
        out.contains("rollout.yaml:") && out.contains("spec.template: required"),
        "{out}"
    );
    assert!(out.contains("spec.workloadRef"), "{out}");
}

#[test]
fn workload_ref_to_a_replica_set_is_refused_at_its_kind() {
    let start = ROLLOUT.find("  template:").unwrap_or(0);
    let end = ROLLOUT.find("  strategy:").unwrap_or(0);
    let reference = WORKLOAD_REF.replace("kind: Deployment", "kind: ReplicaSet");
    let text = format!("{}{reference}{}", &ROLLOUT[..start], &ROLLOUT[end..]);
    let out = lint_rollout(&text);
    assert!(
        out.contains("rollout.yaml:13:5: spec.workloadRef.kind"),
        "{out}"
    );
    assert!(out.contains("cutover adopts Deployments only"), "{out}");
}
