//! `cutover lint --backend`, `cutover convert` with several files and foreign documents, and
//! hostile manifests through lint, `apply` (to a running daemon, which keeps running) and `up`:
//! each refused with its location, by the same checks.

mod e2e;

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn cutover(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .env_remove("CUTOVER_BACKEND")
        .env_remove("CUTOVER_STATE_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("running cutover: {e}"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
}

/// The seed example in a temporary directory, its Rollout edited by `edit`.
fn seed(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for name in ["rollout.yaml", "services.yaml", "analysis-template.yaml"] {
        let text = std::fs::read_to_string(repo("examples/seed").join(name)).unwrap_or_default();
        let text = if name == "rollout.yaml" {
            edit(text)
        } else {
            text
        };
        write(dir.path(), name, &text);
    }
    dir
}

fn with_active_metadata(text: String) -> String {
    text.replace(
        "      autoPromotionEnabled: false\n",
        "      autoPromotionEnabled: false\n      activeMetadata: {labels: {role: active}}\n",
    )
}

#[test]
fn lint_backend_defaults_to_the_verbs_backend_and_can_be_chosen() {
    let dir = seed(with_active_metadata);
    let warning = "spec.strategy.blueGreen.activeMetadata: does nothing on one host";
    // Default: the single-host backend, as for `apply`.
    let out = cutover(&["lint", "-f", "."], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains(warning), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ok: 4 objects in 3 files, 1 warning (checked for one host)"),
        "{}",
        stderr(&out)
    );
    // Kubernetes when the other verbs would act there.
    for (args, env) in [
        (
            vec!["lint", "-f", "."],
            vec![("CUTOVER_BACKEND", "kubernetes")],
        ),
        (vec!["lint", "-f", ".", "--backend", "kubernetes"], vec![]),
        (vec!["lint", "-f", ".", "-n", "prod"], vec![]),
    ] {
        let out = cutover(&args, dir.path(), &env);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("0 warnings (checked for Kubernetes)"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = cutover(&["lint", "-f", ".", "--backend", "any"], dir.path(), &[]);
    assert!(
        stderr(&out).contains("0 warnings (checked for both backends)"),
        "{}",
        stderr(&out)
    );
    let out = cutover(&["lint", "-f", ".", "--backend", "mars"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
}

/// The blue/green Argo example split in two files: Rollout and Services, and the template.
fn split_argo_example(dir: &Path) {
    let text =
        std::fs::read_to_string(repo("examples/argo/rollout-bluegreen.yaml")).unwrap_or_default();
    let docs: Vec<&str> = text.split("\n---\n").collect();
    write(
        dir,
        "rollout.yaml",
        &[docs[0], docs[2], docs[3]].join("\n---\n"),
    );
    write(dir, "template.yaml", docs[1]);
}

#[test]
fn convert_takes_several_files_and_finds_templates_across_them() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    split_argo_example(dir.path());
    // One file alone: its template is elsewhere.
    let out = cutover(&["convert", "-f", "rollout.yaml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("AnalysisTemplate `success-rate` not found"));
    // Both: converted, to stdout one after the other.
    let args = ["convert", "-f", "rollout.yaml", "-f", "template.yaml"];
    let out = cutover(&args, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("---\n# Source: rollout.yaml\n")
            && text.contains("---\n# Source: template.yaml\n")
            && !text.contains("argoproj.io"),
        "{text}"
    );
    assert!(
        stderr(&out)
            .contains("converted 2 documents: Rollout my-app, AnalysisTemplate success-rate"),
        "{}",
        stderr(&out)
    );
    // The joined output lints clean.
    write(dir.path(), "all.yaml", &text);
    let out = cutover(
        &["lint", "-f", "all.yaml", "--backend", "any"],
        dir.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // With -o, a directory receives each file under its name.
    let args = [
        "convert",
        "-f",
        "rollout.yaml",
        "-f",
        "template.yaml",
        "-o",
        "out",
    ];
    let out = cutover(&args, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for name in ["rollout.yaml", "template.yaml"] {
        let text = std::fs::read_to_string(dir.path().join("out").join(name)).unwrap_or_default();
        assert!(text.contains("cutover.dev/v1alpha1"), "{name}: {text}");
    }
}

#[test]
fn convert_passes_foreign_documents_through_with_a_note() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let fixture = repo("crates/manifest/tests/fixtures/convert/mixed.yaml");
    let text = std::fs::read_to_string(fixture).unwrap_or_default();
    let text = text.as_str();
    write(dir.path(), "mixed.yaml", text);
    let out = cutover(&["convert", "-f", "mixed.yaml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        text.replacen("argoproj.io/v1alpha1", "cutover.dev/v1alpha1", 1)
    );
    let err = stderr(&out);
    assert!(
        err.contains("mixed.yaml:12:7: note: Secret (v1) passed through unchanged")
            && err.contains(
                "converted 1 document: AnalysisRun run; 3 other documents passed through unchanged"
            ),
        "{err}"
    );
}

#[test]
fn convert_locates_an_experiment_at_its_kind() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(
        dir.path(),
        "experiment.yaml",
        "# an experiment\napiVersion: argoproj.io/v1alpha1\nkind: Experiment\nmetadata: {name: e}\n",
    );
    let out = cutover(&["convert", "-f", "experiment.yaml"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "experiment.yaml:3:7: Argo Rollouts kind `Experiment` has no cutover equivalent"
        ),
        "{}",
        stderr(&out)
    );
}

/// The deep inputs of the reliability report: a 250 KB and a 500 KB document of nested
/// brackets, and a condition of 3,000 nested parentheses.
fn hostile(dir: &Path) {
    let head = "apiVersion: cutover.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: deep}\nspec:\n  metrics:\n    - name: m\n      provider:\n        web:\n          url: http://127.0.0.1/x\n          jsonBody: ";
    for kb in [250, 500] {
        let n = (kb * 1024 - head.len()) / 2;
        let text = format!("{head}{}{}\n", "[".repeat(n), "]".repeat(n));
        write(dir, &format!("deep-{kb}k.yaml"), &text);
    }
    let cond = format!("{}result{} > 1", "(".repeat(3000), ")".repeat(3000));
    let text = head.replace(
        "          jsonBody: ",
        &format!("      successCondition: \"{cond}\"\n"),
    );
    write(dir, "condition.yaml", &text);
}

#[test]
fn hostile_manifests_are_refused_at_once_by_lint_apply_and_up() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    hostile(dir.path());
    let cases = [
        (
            "deep-250k.yaml",
            "deep-250k.yaml:10:",
            "YAML nested deeper than 64 levels",
        ),
        (
            "deep-500k.yaml",
            "deep-500k.yaml:10:",
            "YAML nested deeper than 64 levels",
        ),
        (
            "condition.yaml",
            "condition.yaml:10:7:",
            "invalid condition",
        ),
    ];
    let state = dir.path().join("state");
    let state = state.to_string_lossy();
    let (services, _, _) = e2e::services("calm");
    let daemon = e2e::Daemon::start(&services);
    for (file, at, what) in cases {
        for verb in ["lint", "up"] {
            let out = cutover(&[verb, "-f", file, "--state-dir", &state], dir.path(), &[]);
            refused(&out, &format!("{verb} {file}"), at, what);
        }
        let path = dir.path().join(file);
        let out = daemon.cli(&["apply", "-f", path.to_str().unwrap_or_default()]);
        refused(&out, &format!("apply {file}"), file, what);
    }
    // The daemon that refused them still serves.
    daemon.ok(&["list"]);
}

/// The command was refused (not killed) with `at` and `what` in its error.
fn refused(out: &Output, what_ran: &str, at: &str, what: &str) {
    let err = stderr(out);
    assert_ne!(out.status.code(), Some(0), "{what_ran}: {err}");
    assert!(out.status.code().is_some(), "{what_ran}: killed: {err}");
    assert!(err.contains(at) && err.contains(what), "{what_ran}: {err}");
}

#[test]
fn a_path_as_a_name_is_refused_by_lint_apply_and_up() {
    let dir = seed(|t| t.replace("name: my-app\n", "name: ../../../../tmp/x\n"));
    let state = dir.path().join("state");
    let state = state.to_string_lossy();
    let expected = "metadata.name: name `../../../../tmp/x` is not a DNS-1123 subdomain";
    for verb in ["lint", "up"] {
        let out = cutover(&[verb, "-f", ".", "--state-dir", &state], dir.path(), &[]);
        refused(&out, verb, "rollout.yaml:6:9:", expected);
    }
    let (services, _, _) = e2e::services("calm");
    let daemon = e2e::Daemon::start(&services);
    let out = daemon.cli(&["apply", "-f", dir.path().to_str().unwrap_or_default()]);
    refused(&out, "apply", "rollout.yaml:6:9:", expected);
    daemon.ok(&["list"]);
}
