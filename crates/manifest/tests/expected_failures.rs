//! The faults of Argo Rollouts' own "expected failure" e2e manifests
//! (`test/e2e/expectedfailures/malformed-*.yaml`), written again as cutover fixtures under
//! `tests/fixtures/expected-failures/`: lint refuses each, at the faulty line. Snapshots hold
//! the exact rendering. The same faults written with Argo's apiVersion are refused by
//! `convert` too, since it loads what it converts.

use cutover_manifest::{Source, convert, load};
use insta::assert_snapshot;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/expected-failures/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn lint(name: &str) -> String {
    let file = format!("{name}.yaml");
    match load(&[Source::new(file, fixture(name))]) {
        Ok(set) => format!("accepted, {} warnings", set.warnings.len()),
        Err(diags) => diags.to_string(),
    }
}

#[test]
fn malformed_rollout() {
    assert_snapshot!(lint("malformed-rollout"));
}

#[test]
fn malformed_rollout_ephemeral() {
    assert_snapshot!(lint("malformed-rollout-ephemeral"));
}

#[test]
fn malformed_analysisrun() {
    assert_snapshot!(lint("malformed-analysisrun"));
}

#[test]
fn malformed_analysistemplate() {
    assert_snapshot!(lint("malformed-analysistemplate"));
}

#[test]
fn malformed_clusteranalysistemplate() {
    assert_snapshot!(lint("malformed-clusteranalysistemplate"));
}

#[test]
fn malformed_experiment() {
    assert_snapshot!(lint("malformed-experiment"));
}

#[test]
fn argo_versions_are_refused_by_convert_at_the_same_lines() {
    for name in [
        "malformed-rollout",
        "malformed-rollout-ephemeral",
        "malformed-analysisrun",
        "malformed-analysistemplate",
        "malformed-clusteranalysistemplate",
        "malformed-experiment",
    ] {
        let text = fixture(name).replace("cutover.dev/v1alpha1", "argoproj.io/v1alpha1");
        let file = format!("{name}.yaml");
        let refused = convert(&Source::new(file.clone(), text))
            .err()
            .unwrap_or_else(|| panic!("{name} converted"));
        let linted = lint(name);
        let first = |s: &str| s.lines().next().unwrap_or_default().to_string();
        let lines_of = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| !l.starts_with("  help:"))
                .map(|l| l.split(": ").next().unwrap_or_default().to_string())
                .collect()
        };
        // Every place lint names, convert names too (convert words the Experiment its own way).
        let converted = refused.to_string();
        assert_eq!(
            lines_of(&converted),
            lines_of(&linted),
            "{name}:\n{converted}\n{linted}"
        );
        assert!(!first(&converted).is_empty());
    }
}
