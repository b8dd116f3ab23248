//! The scripts that build and run third-party tools for tests (scripts/kube-test-env,
//! scripts/pg-test-env) start them with a clean environment. A test process carries cargo's
//! variables, and Kubernetes' Makefile reads OUT_DIR as its own output directory: on a fresh
//! machine the API server build failed from inside `cargo test` for that reason.

use std::path::PathBuf;
use std::process::Command;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(name)
}

/// What a tool started by kube-test-env sees, given a polluted environment.
fn tool_environment() -> Vec<(String, String)> {
    let out = Command::new(script("kube-test-env"))
        .arg("tool-env")
        .env("OUT_DIR", "/nonexistent/cutover-cli-0123/out")
        .env("CARGO_TARGET_DIR", "/nonexistent/target")
        .env("CARGO_PKG_NAME", "cutover-cli")
        .env("RUSTFLAGS", "-Cdebuginfo=2")
        .env("TARGET", "x86_64-unknown-linux-gnu")
        .env("PROFILE", "debug")
        .env("CUTOVER_KUBE_VERSION", "v1.20.2")
        .output()
        .expect("run scripts/kube-test-env tool-env");
    assert!(
        out.status.success(),
        "kube-test-env tool-env failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn tools_never_see_cargo_variables() {
    let env = tool_environment();
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    for leaked in ["OUT_DIR", "RUSTFLAGS", "TARGET", "PROFILE"] {
        assert!(
            !names.contains(&leaked),
            "{leaked} reached the tools: {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.starts_with("CARGO")),
        "cargo variables reached the tools: {names:?}"
    );
    // What tools need, and the script's own knobs, are kept.
    assert!(names.contains(&"PATH"), "PATH missing: {names:?}");
    assert!(
        env.contains(&("CUTOVER_KUBE_VERSION".into(), "v1.20.2".into())),
        "CUTOVER_* knobs must pass: {names:?}"
    );
}

#[test]
fn this_test_process_really_has_cargo_variables() {
    // The check above means something only if tests do run with cargo's environment.
    assert!(std::env::vars().any(|(k, _)| k.starts_with("CARGO_")));
}
