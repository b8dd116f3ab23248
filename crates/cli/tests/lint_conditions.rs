//! `cutover lint` compiles every analysis condition and reports a malformed one at its
//! location.

use std::process::Command;

#[test]
fn lint_rejects_a_malformed_condition_with_its_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/seed");
    for name in ["rollout.yaml", "services.yaml", "analysis-template.yaml"] {
        let text = std::fs::read_to_string(format!("{seed}/{name}")).expect("seed file");
        let text = text.replace(
            "successCondition: result[0] >= 0.95",
            "successCondition: result[0] >= ** 2",
        );
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .current_dir(dir.path())
        .args(["lint", "-f", "."])
        .output()
        .expect("run cutover");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let text = std::fs::read_to_string(dir.path().join("analysis-template.yaml")).expect("read");
    let line = text
        .lines()
        .position(|l| l.contains("successCondition"))
        .expect("line")
        + 1;
    assert!(
        stderr.contains(&format!("analysis-template.yaml:{line}:"))
            && stderr.contains("spec.metrics[0].successCondition: invalid condition"),
        "{stderr}"
    );
    // The seed itself is valid.
    let ok = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["lint", "-f", seed])
        .output()
        .expect("run cutover");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
