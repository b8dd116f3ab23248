//! Runs the built `cutover` binary on files in a temporary directory: exit codes, messages and
//! output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn cutover(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running cutover: {e}"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A temporary directory holding the seed example, with `rollout.yaml` edited by `edit`.
fn seed_with(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for name in ["rollout.yaml", "services.yaml", "analysis-template.yaml"] {
        let text = std::fs::read_to_string(repo("examples/seed").join(name)).unwrap_or_default();
        let text = if name == "rollout.yaml" {
            edit(text)
        } else {
            text
        };
        std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("write: {e}"));
    }
    dir
}

/// Lints the edited seed set and returns (exit code, stderr, edited rollout text).
fn lint_seed(edit: impl Fn(String) -> String) -> (Option<i32>, String, String) {
    let dir = seed_with(edit);
    let out = cutover(&["lint", "-f", "."], dir.path());
    let text = std::fs::read_to_string(dir.path().join("rollout.yaml")).unwrap_or_default();
    (out.status.code(), stderr(&out), text)
}

/// The 1-based line of the first line of `text` that contains `needle`, so expectations follow
/// edits of the example instead of hard-coding its line numbers.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(0, |i| i + 1)
}

#[test]
fn lint_passes_the_seed_example() {
    let out = cutover(&["lint", "-f", "examples/seed"], &repo(""));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ok: 4 objects in 3 files, 0 warnings"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn lint_reports_missing_active_service() {
    let (code, err, text) = lint_seed(|t| t.replace("      activeService: my-app-active\n", ""));
    assert_eq!(code, Some(1));
    let expected = format!(
        "./rollout.yaml:{}:5: spec.strategy.blueGreen.activeService: required\n  help: add `activeService: <name of the Service that receives production traffic>`",
        line_of(&text, "blueGreen:")
    );
    assert!(err.contains(&expected), "{err}");
    assert!(
        err.contains("invalid: 1 error, 0 warnings in 3 files"),
        "{err}"
    );
}

#[test]
fn lint_reports_equal_active_and_preview() {
    let (code, err, text) = lint_seed(|t| {
        t.replace(
            "previewService: my-app-preview",
            "previewService: my-app-active",
        )
    });
    assert_eq!(code, Some(1));
    let expected = format!(
        "./rollout.yaml:{}:7: spec.strategy.blueGreen.previewService: must differ from activeService (both are `my-app-active`)",
        line_of(&text, "previewService:")
    );
    assert!(err.contains(&expected), "{err}");
}

#[test]
fn lint_reports_a_bad_duration() {
    let dir = seed_with(|t| t);
    let path = dir.path().join("analysis-template.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .replace("interval: 30s", "interval: 30sec");
    std::fs::write(&path, &text).unwrap_or_else(|e| panic!("write: {e}"));
    let out = cutover(
        &[
            "lint",
            "-f",
            "analysis-template.yaml",
            "-f",
            "rollout.yaml",
            "-f",
            "services.yaml",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let expected = format!(
        "analysis-template.yaml:{}:17: spec.metrics[0].interval: invalid duration \"30sec\"",
        line_of(&text, "interval:")
    );
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
}

#[test]
fn lint_reports_unknown_fields_with_a_suggestion() {
    let (code, err, text) =
        lint_seed(|t| t.replace("scaleDownDelaySeconds: 30", "scaleDownDelaySecond: 30"));
    assert_eq!(code, Some(1));
    let expected = format!(
        "./rollout.yaml:{}:7: spec.strategy.blueGreen.scaleDownDelaySecond: unknown field\n  help: did you mean `scaleDownDelaySeconds`?",
        line_of(&text, "scaleDownDelaySecond:")
    );
    assert!(err.contains(&expected), "{err}");
}

#[test]
fn lint_reports_a_yaml_syntax_error() {
    let (code, err, text) = lint_seed(|t| t.replace("  replicas: 4", "  replicas: [4"));
    assert_eq!(code, Some(1));
    // The parser notices at the next key; it names where the open bracket was.
    let expected = format!(
        "./rollout.yaml:{}:3: YAML syntax error: did not find expected ',' or ']', while parsing a flow sequence at line {} column 13",
        line_of(&text, "revisionHistoryLimit:"),
        line_of(&text, "replicas: [4")
    );
    assert!(err.contains(&expected), "{err}");
}

#[test]
fn lint_reports_a_dangling_template_reference() {
    let (code, err, text) =
        lint_seed(|t| t.replacen("templateName: success-rate", "templateName: sucess-rate", 1));
    assert_eq!(code, Some(1));
    let expected = format!(
        "./rollout.yaml:{}:13: spec.strategy.blueGreen.prePromotionAnalysis.templates[0].templateName: AnalysisTemplate `sucess-rate` not found",
        line_of(&text, "sucess-rate")
    );
    assert!(err.contains(&expected), "{err}");
}

#[test]
fn lint_reads_stdin() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["lint", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(b"apiVersion: v1\nkind: Servic\n")
            .unwrap_or_else(|e| panic!("stdin: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait: {e}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("<stdin>:1:13: unsupported document: apiVersion `v1`, kind `Servic`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unreadable_file_is_exit_2_with_path() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let out = cutover(&["lint", "-f", "missing.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: missing.yaml: No such file or directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_error_is_exit_2() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    assert_eq!(cutover(&["lint"], dir.path()).status.code(), Some(2));
    assert_eq!(cutover(&["frobnicate"], dir.path()).status.code(), Some(2));
}

#[test]
fn convert_blue_green_then_lint_clean() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let src = repo("examples/argo/rollout-bluegreen.yaml");
    let out_path = dir.path().join("converted.yaml");
    let out = cutover(
        &[
            "convert",
            "-f",
            &src.to_string_lossy(),
            "-o",
            "converted.yaml",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("converted 2 documents: Rollout my-app, AnalysisTemplate success-rate")
    );
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(text.contains("apiVersion: cutover.dev/v1alpha1") && !text.contains("argoproj.io"));
    assert!(text.contains("# production traffic"), "comments are kept");
    let lint = cutover(&["lint", "-f", "converted.yaml"], dir.path());
    assert_eq!(lint.status.code(), Some(0), "{}", stderr(&lint));

    // Without -o the result goes to stdout.
    let out = cutover(&["convert", "-f", &src.to_string_lossy()], dir.path());
    assert_eq!(stdout(&out), text);
}

#[test]
fn convert_canary_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let src = repo("examples/argo/rollout-canary.yaml");
    let out = cutover(
        &["convert", "-f", &src.to_string_lossy(), "-o", "out.yaml"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("rollout-canary.yaml:20:5: spec.strategy.canary: canary strategy is not supported: cutover does blue/green only"), "{err}");
    assert!(
        err.contains("not converted: 1 error; out.yaml left unchanged"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
    assert!(!dir.path().join("out.yaml").exists());
}

#[test]
fn crds_parse_back_as_custom_resource_definitions() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let out = cutover(&["crds"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let mut names = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let crd = CustomResourceDefinition::deserialize(doc).unwrap_or_else(|e| panic!("{e}"));
        names.push(crd.metadata.name.unwrap_or_default());
    }
    assert_eq!(
        names,
        [
            "rollouts.cutover.dev",
            "analysistemplates.cutover.dev",
            "clusteranalysistemplates.cutover.dev",
            "analysisruns.cutover.dev"
        ]
    );

    let out = cutover(&["crds", "-o", "json"], dir.path());
    let list: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(list["kind"], "List");
    let items: Vec<CustomResourceDefinition> =
        serde_json::from_value(list["items"].clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(items.len(), 4);
}

#[test]
fn version_names_the_api_version() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let out = cutover(&["version"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.starts_with(concat!("cutover ", env!("CARGO_PKG_VERSION"), " (commit ")),
        "{text}"
    );
    assert!(text.contains("API version: cutover.dev/v1alpha1"), "{text}");
}
