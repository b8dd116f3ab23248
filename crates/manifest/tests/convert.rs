//! `convert`: Argo Rollouts documents become cutover ones with only their apiVersion changed;
//! what cutover cannot carry fails the conversion with a located reason.

use cutover_core::api::WorkloadScaleDown;
use cutover_manifest::{Source, Target, convert, convert_all, load, load_for};
use insta::assert_snapshot;

fn example(name: &str) -> String {
    let path = format!("{}/../../examples/argo/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn refused(name: &str, text: &str) -> String {
    match convert(&Source::new(name, text)) {
        Ok(out) => panic!("converted unexpectedly:\n{}", out.text),
        Err(diags) => diags.to_string(),
    }
}

#[test]
fn blue_green_rollout_converts_and_lints_clean() {
    let text = example("rollout-bluegreen.yaml");
    let out = match convert(&Source::new("rollout-bluegreen.yaml", text.as_str())) {
        Ok(out) => out,
        Err(d) => panic!("{d}"),
    };
    // Only the apiVersion lines change; comments, quoting and layout stay.
    let changed: Vec<(&str, &str)> = text
        .lines()
        .zip(out.text.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed,
        [
            (
                "apiVersion: argoproj.io/v1alpha1",
                "apiVersion: cutover.dev/v1alpha1"
            ),
            (
                "apiVersion: \"argoproj.io/v1alpha1\"",
                "apiVersion: \"cutover.dev/v1alpha1\""
            ),
        ]
    );
    assert_eq!(text.lines().count(), out.text.lines().count());
    let kinds: Vec<String> = out
        .converted
        .iter()
        .map(|c| format!("{} {}", c.kind, c.name))
        .collect();
    assert_eq!(kinds, ["Rollout my-app", "AnalysisTemplate success-rate"]);
    let set = match load(&[Source::new("converted.yaml", out.text.as_str())]) {
        Ok(set) => set,
        Err(d) => panic!("{d}"),
    };
    assert!(set.warnings.is_empty(), "{}", set.warnings);
    assert_eq!(set.len(), 4);
    assert!(set.rollout("my-app").is_some());
}

#[test]
fn canary_rollout_is_refused() {
    assert_snapshot!(refused(
        "rollout-canary.yaml",
        &example("rollout-canary.yaml")
    ));
}

/// An Argo Rollout adopting a Deployment, as Argo's migration guide writes it (no selector:
/// the Deployment's is used).
const WORKLOAD_REF_ROLLOUT: &str = "\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 3
  workloadRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web
    scaleDown: progressively
  strategy:
    blueGreen:
      activeService: web
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - port: 80
";

#[test]
fn workload_ref_is_kept_and_lints_clean_for_kubernetes() {
    let out = match convert(&Source::new("rollout.yaml", WORKLOAD_REF_ROLLOUT)) {
        Ok(out) => out,
        Err(d) => panic!("{d}"),
    };
    assert_eq!(
        out.text,
        WORKLOAD_REF_ROLLOUT.replace("argoproj.io/v1alpha1", "cutover.dev/v1alpha1")
    );
    let sources = [Source::new("converted.yaml", out.text.as_str())];
    let set = match load_for(&sources, Target::Kubernetes) {
        Ok(set) => set,
        Err(d) => panic!("{d}"),
    };
    assert!(set.warnings.is_empty(), "{}", set.warnings);
    let rollout = set.rollout("web").map(|r| r.value.spec.clone());
    let reference = rollout.and_then(|s| s.workload_ref);
    assert_eq!(
        reference.map(|w| (w.scale_down(), w.name)),
        Some((WorkloadScaleDown::Progressively, "web".to_string()))
    );
}

#[test]
fn workload_ref_is_refused_on_one_host_with_its_location() {
    let text = WORKLOAD_REF_ROLLOUT.replace("argoproj.io/v1alpha1", "cutover.dev/v1alpha1");
    let sources = [Source::new("rollout.yaml", text.as_str())];
    let diags = match load_for(&sources, Target::Local) {
        Ok(_) => panic!("a workloadRef Rollout loaded for one host"),
        Err(d) => d.to_string(),
    };
    assert!(diags.contains("rollout.yaml:7:3"), "{diags}");
    assert!(
        diags.contains("workloadRef applies only on Kubernetes"),
        "{diags}"
    );
    assert!(diags.contains("spec.template"), "{diags}");
}

#[test]
fn workload_ref_to_anything_but_a_deployment_is_refused() {
    let text = WORKLOAD_REF_ROLLOUT.replace("kind: Deployment", "kind: ReplicaSet");
    let diags = refused("rollout.yaml", &text);
    assert!(diags.contains("rollout.yaml:9:5"), "{diags}");
    assert!(diags.contains("cutover adopts Deployments only"), "{diags}");
}

#[test]
fn unsupported_providers_and_auth_are_refused() {
    let text = "\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: checks
spec:
  metrics:
    - name: errors
      provider:
        datadog:
          query: sum:requests.error{*}
    - name: rate
      provider:
        prometheus:
          address: https://aps.example
          query: up
          authentication:
            sigv4:
              region: eu-west-1
    - name: judge
      provider:
        kayenta: {}
      unknownThing: 1
";
    assert_snapshot!(refused("template.yaml", text));
}

#[test]
fn argo_kind_without_twin_is_refused() {
    let text = "apiVersion: argoproj.io/v1alpha1\nkind: Experiment\nmetadata: {name: x}\n";
    assert_snapshot!(refused("experiment.yaml", text));
}

#[test]
fn cutover_documents_and_services_pass_through() {
    let text = "# keep me\napiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n";
    match convert(&Source::new("svc.yaml", text)) {
        Ok(out) => {
            assert_eq!(out.text, text);
            assert!(out.converted.is_empty());
        }
        Err(d) => panic!("{d}"),
    }
}

#[test]
fn syntax_errors_are_reported() {
    assert_snapshot!(refused(
        "broken.yaml",
        "apiVersion: argoproj.io/v1alpha1\nkind: [Rollout\n"
    ));
}

#[test]
fn trailing_comments_and_single_quotes_survive() {
    let text = "\
apiVersion: argoproj.io/v1alpha1 # was Argo
kind: AnalysisRun
metadata: {name: run}
spec:
  metrics:
    - name: ok
      provider: {web: {url: 'http://x'}}
---
apiVersion: 'argoproj.io/v1alpha1'
kind: ClusterAnalysisTemplate
metadata: {name: c}
spec:
  metrics:
    - name: ok
      provider: {web: {url: 'http://x'}}
";
    let out = match convert(&Source::new("t.yaml", text)) {
        Ok(out) => out,
        Err(d) => panic!("{d}"),
    };
    let expected = text
        .replace("argoproj.io/v1alpha1 # was", "cutover.dev/v1alpha1 # was")
        .replace("'argoproj.io/v1alpha1'", "'cutover.dev/v1alpha1'");
    assert_eq!(out.text, expected);
}

/// The blue/green example split as Argo users keep it: the Rollout and its Services in one
/// file, the analysis template in another.
fn split_example() -> (String, String) {
    let text = example("rollout-bluegreen.yaml");
    let docs: Vec<&str> = text.split("\n---\n").collect();
    let template = docs[1].to_string();
    let rest = [docs[0], docs[2], docs[3]].join("\n---\n");
    (rest, template)
}

#[test]
fn a_template_in_another_given_file_is_found() {
    let (rollout, template) = split_example();
    // Alone, the Rollout's template is missing: refused, as before.
    let alone = refused("rollout.yaml", &rollout);
    assert!(
        alone.contains("AnalysisTemplate `success-rate` not found"),
        "{alone}"
    );
    // Given together, both files convert, each keeping its own text.
    let sources = [
        Source::new("rollout.yaml", rollout.as_str()),
        Source::new("template.yaml", template.as_str()),
    ];
    let out = match convert_all(&sources) {
        Ok(out) => out,
        Err(d) => panic!("{d}"),
    };
    assert!(out.set.warnings.is_empty(), "{}", out.set.warnings);
    let files: Vec<(&str, usize)> = out
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.converted.len()))
        .collect();
    assert_eq!(files, [("rollout.yaml", 1), ("template.yaml", 1)]);
    assert_eq!(
        out.files[1].text,
        template.replace("argoproj.io/v1alpha1", "cutover.dev/v1alpha1")
    );
    assert!(out.set.analysis_template("success-rate", None).is_some());
}

#[test]
fn errors_of_every_file_refuse_all_of_them() {
    let (rollout, template) = split_example();
    let broken = template.replace("interval: 30s", "interval: 30 seconds");
    assert_ne!(broken, template, "the example has an interval");
    let sources = [
        Source::new("rollout.yaml", rollout.as_str()),
        Source::new("template.yaml", broken.as_str()),
    ];
    let diags = convert_all(&sources).err().map(|d| d.to_string());
    assert!(
        diags
            .as_deref()
            .is_some_and(|d| d.starts_with("template.yaml:") && d.contains("invalid duration")),
        "{diags:?}"
    );
}

#[test]
fn foreign_documents_pass_through_with_a_note() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/convert/mixed.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let text = text.as_str();
    let out = match convert(&Source::new("mixed.yaml", text)) {
        Ok(out) => out,
        Err(d) => panic!("{d}"),
    };
    assert_eq!(
        out.text,
        text.replacen("argoproj.io/v1alpha1", "cutover.dev/v1alpha1", 1)
    );
    assert_snapshot!(out.set.warnings.to_string());
    assert_eq!(out.set.warnings.notes().count(), 3);
    // Lint and apply still refuse them: only convert carries them.
    assert!(load(&[Source::new("mixed.yaml", out.text.as_str())]).is_err());
}
