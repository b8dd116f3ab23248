//! The CLI's shell habits: completion scripts that load in a real shell and complete verbs and
//! flags, manual pages generated from the CLI, and colour that follows `--no-color`, `NO_COLOR`
//! and whether the output is a terminal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e;

use std::path::Path;
use std::process::{Command, Output};

use e2e::{CUTOVER, Daemon, demo_rollout, services};

fn run(args: &[&str]) -> Output {
    Command::new(CUTOVER)
        .args(args)
        .output()
        .expect("run cutover")
}

fn stdout_of(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "cutover {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What bash's completion offers for the words typed so far (the last one is being typed).
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{}'\nCOMP_POINT=${{#COMP_LINE}}\n\
         _cutover cutover '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash failed to load or run the completion: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_bash_completion_loads_in_bash_and_completes_verbs_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cutover.bash");
    std::fs::write(&script, stdout_of(&["completion", "bash"])).unwrap();

    let verbs = bash_completes(&script, &["cutover", "pro"]);
    assert_eq!(verbs, ["promote"], "verbs starting with `pro`");
    let all = bash_completes(&script, &["cutover", ""]);
    for verb in ["get", "promote", "abort", "undo", "completion", "man"] {
        assert!(
            all.contains(&verb.to_string()),
            "{verb} missing from {all:?}"
        );
    }
    for hidden in ["data-plane", "demo-app"] {
        assert!(!all.contains(&hidden.to_string()), "{hidden} is internal");
    }
    // `ro` is also the verb's visible alias, so bash offers both.
    let what = bash_completes(&script, &["cutover", "get", "ro"]);
    assert!(what.contains(&"rollout".to_string()), "{what:?}");
    assert!(!what.contains(&"analysisrun".to_string()), "{what:?}");
    assert_eq!(
        bash_completes(&script, &["cutover", "promote", "--fu"]),
        ["--full"]
    );
    let shells = bash_completes(&script, &["cutover", "completion", ""]);
    assert!(shells.contains(&"zsh".to_string()), "{shells:?}");
}

#[test]
fn every_shell_gets_a_script_naming_the_verbs() {
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let script = stdout_of(&["completion", shell]);
        assert!(
            script.contains("promote") && script.contains("no-color"),
            "{shell}"
        );
    }
    // Syntax-check the scripts in the shells this machine has.
    for (shell, check) in [("zsh", ["zsh", "-n"]), ("fish", ["fish", "--no-execute"])] {
        if !have(shell) {
            eprintln!("SKIPPED: {shell} is not installed; its script was only generated");
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cutover");
        std::fs::write(&file, stdout_of(&["completion", shell])).unwrap();
        let out = Command::new(check[0])
            .arg(check[1])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error_naming_the_choices() {
    let out = run(&["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'tcsh'") && err.contains("bash"), "{err}");
}

#[test]
fn manual_pages_cover_every_visible_command() {
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH cutover 1"), "{page}");
    assert!(page.contains("promote"));

    let dir = tempfile::tempdir().unwrap();
    let out = run(&["man", "--output", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for expected in [
        "cutover.1",
        "cutover-promote.1",
        "cutover-get-rollout.1",
        "cutover-migrate-backfill.1",
        "cutover-completion.1",
    ] {
        assert!(
            pages.contains(&expected.to_string()),
            "{expected} in {pages:?}"
        );
    }
    assert!(
        !pages
            .iter()
            .any(|p| p.contains("data-plane") || p.contains("help"))
    );

    let sub = std::fs::read_to_string(dir.path().join("cutover-get-rollout.1")).unwrap();
    assert!(
        sub.contains("cutover get rollout"),
        "synopsis shows the typed words"
    );
    if !have("groff") {
        eprintln!("SKIPPED: groff is not installed; the pages were not rendered");
        return;
    }
    for page in &pages {
        let out = Command::new("groff")
            // -k: UTF-8 input through preconv, as man(1) reads pages.
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .arg(dir.path().join(page))
            .output()
            .unwrap();
        assert!(out.status.success(), "{page}: {out:?}");
        assert!(
            out.stderr.is_empty(),
            "{page} renders with warnings: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `cutover ARGS` under a pseudo-terminal (util-linux `script`), so colour is allowed unless
/// the flag or the variable says no.
fn on_a_terminal(dir: &Path, args: &str, no_color_env: bool) -> String {
    let line = format!("'{CUTOVER}' --state-dir '{}' {args}", dir.display());
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env_remove("NO_COLOR");
    if no_color_env {
        cmd.env("NO_COLOR", "1");
    }
    let out = cmd.output().expect("run script");
    assert!(out.status.success(), "{line}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colour_follows_the_terminal_the_flag_and_no_color() {
    if !have("script") {
        eprintln!("SKIPPED: util-linux `script` is not installed; no pseudo-terminal to test on");
        return;
    }
    let (svcs, _, _) = services("tint");
    let d = Daemon::start(&format!("{svcs}{}", demo_rollout("tint", 1, "", "")));
    d.wait_healthy_on("tint", "demo:v1");

    let escape = '\u{1b}';
    let plain = on_a_terminal(&d.dir, "get rollout tint", false);
    assert!(plain.contains(escape), "a terminal gets colour: {plain:?}");
    assert!(plain.contains("tint"));
    for (args, env) in [
        ("--no-color get rollout tint", false),
        ("get rollout tint", true),
    ] {
        let text = on_a_terminal(&d.dir, args, env);
        assert!(text.contains("tint"), "{text:?}");
        assert!(
            !text.contains(escape),
            "{args} (NO_COLOR={env}) printed escape sequences: {text:?}"
        );
    }
    let piped = d.ok(&["get", "rollout", "tint"]);
    assert!(!piped.contains(escape), "a pipe gets no colour");
    // The daemon's log is a file, not a terminal: no escape sequences in it.
    let log = d.log();
    assert!(log.contains("INFO"), "the daemon logged: {log}");
    assert!(!log.contains(escape), "escape sequences in the log file");
}
