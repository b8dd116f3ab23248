//! deploy/argocd's health check and actions, run by Debian's `lua5.1` against the Rollouts
//! `plan()` wrote in every phase (deploy/argocd/testdata, kept fresh by `gitops_fixtures.rs`),
//! and deploy/argocd/argocd-cm-patch.yaml kept equal to the scripts.

mod gitops;

use std::path::{Path, PathBuf};

use cutover_core::api::Rollout;
use cutover_core::ops::{Operation, merge_patches, nothing_to_act_on};
use gitops::fixture_dir;
use gitops::lua::{interpreter, merge_patch, normalised, run, scripts_dir};
use serde_json::Value;

/// Argo CD's verdict for each fixture, and words its message must hold.
const HEALTH: &[(&str, &str, &str)] = &[
    ("healthy", "Healthy", "serves the current revision"),
    ("not-observed", "Progressing", "observe generation 2"),
    ("progressing", "Progressing", "new revision"),
    ("analysis-running", "Progressing", "analysis"),
    ("paused", "Suspended", "BlueGreenPause"),
    ("paused-idle", "Suspended", "manually paused"),
    ("aborted", "Degraded", "RolloutAborted"),
    ("analysis-failed", "Degraded", "RolloutAborted"),
    ("deadline-exceeded", "Degraded", "ProgressDeadlineExceeded"),
    ("scale-up", "Progressing", "2 of 4 active pods available"),
    ("invalid-spec", "Degraded", "InvalidSpec"),
];

/// The actions, each with the operation `cutover` runs for it.
const ACTIONS: &[(&str, Operation)] = &[
    ("promote", Operation::Promote { full: false }),
    ("promote-full", Operation::Promote { full: true }),
    ("abort", Operation::Abort),
    ("retry", Operation::Retry),
    ("restart", Operation::Restart),
];

fn fixtures() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, ..) in HEALTH {
        let path = fixture_dir().join(format!("{name}.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push((name.to_string(), serde_json::from_str(&text).expect("JSON")));
    }
    out
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cutover-argocd-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

#[test]
fn health_check_reads_every_phase() {
    let Some(lua) = interpreter() else { return };
    let dir = scratch("health");
    let script = scripts_dir().join("health.lua");
    let fixtures = fixtures();
    assert_eq!(fixtures.len(), HEALTH.len());
    for ((name, obj), (_, status, words)) in fixtures.iter().zip(HEALTH) {
        let hs = run(&lua, &script, obj, &dir);
        assert_eq!(hs["status"], *status, "{name}: {hs}");
        let message = hs["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(words),
            "{name}: message {message:?} lacks {words:?}"
        );
    }
    // Nothing written yet: Argo CD waits rather than calling it healthy.
    let mut fresh = fixtures[0].1.clone();
    fresh.as_object_mut().expect("object").remove("status");
    assert_eq!(run(&lua, &script, &fresh, &dir)["status"], "Progressing");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn actions_are_offered_as_the_cli_would_act() {
    let Some(lua) = interpreter() else { return };
    let dir = scratch("discovery");
    let script = scripts_dir().join("actions/discovery.lua");
    let mut offered_somewhere = std::collections::BTreeSet::new();
    let mut refused_somewhere = std::collections::BTreeSet::new();
    for (name, obj) in fixtures() {
        let rollout: Rollout = serde_json::from_value(obj.clone()).expect("a Rollout");
        let actions = run(&lua, &script, &obj, &dir);
        for (action, op) in ACTIONS {
            let disabled = actions[action]["disabled"]
                .as_bool()
                .unwrap_or_else(|| panic!("{name}: discovery lacks {action}: {actions}"));
            let cli_acts = nothing_to_act_on(&rollout, op).is_none();
            assert_eq!(!disabled, cli_acts, "{name}: {action}");
            if disabled {
                refused_somewhere.insert(*action);
            } else {
                offered_somewhere.insert(*action);
            }
        }
    }
    // Each action is offered in some phase, and all but restart are refused in another.
    assert_eq!(offered_somewhere.len(), ACTIONS.len());
    assert_eq!(refused_somewhere.len(), ACTIONS.len() - 1);
    let _ = std::fs::remove_dir_all(dir);
}

/// The clock's time stands in as this in both the action's and the CLI's result.
const RESTART_TIME: &str = "2026-01-01T00:00:00Z";

fn apply_action(lua: &Path, dir: &Path, action: &str, obj: &Value) -> Value {
    let script = scripts_dir().join(format!("actions/{action}/action.lua"));
    let mut out = run(lua, &script, obj, dir);
    // The restart time is the clock's: check its form, then compare the rest.
    if let Some(at) = out["spec"].get_mut("restartAt") {
        let text = at.as_str().expect("restartAt is a string");
        assert!(
            text.parse::<jiff::Timestamp>().is_ok(),
            "restartAt {text:?}"
        );
        *at = RESTART_TIME.into();
    }
    out
}

#[test]
fn actions_change_the_rollout_as_the_cli_does() {
    let Some(lua) = interpreter() else { return };
    let dir = scratch("actions");
    let mut checked = 0;
    let mut manual = fixtures();
    // A manual pause as well, so that promote has `spec.paused` to clear.
    let mut paused_by_hand = manual[0].1.clone();
    paused_by_hand["spec"]["paused"] = true.into();
    manual.push(("paused-by-hand".into(), paused_by_hand));
    for (name, obj) in manual {
        let rollout: Rollout = serde_json::from_value(obj.clone()).expect("a Rollout");
        for (action, op) in ACTIONS {
            if nothing_to_act_on(&rollout, op).is_some() && *action != "restart" {
                continue;
            }
            // What `cutover <op>` patches on Kubernetes (crates/kube/src/ops.rs).
            let patches = merge_patches(&rollout, op, RESTART_TIME.parse().expect("a time"))
                .expect("a merge-patch operation");
            let mut expected = obj.clone();
            for patch in [patches.status, patches.spec].into_iter().flatten() {
                merge_patch(&mut expected, &patch);
            }
            let actual = apply_action(&lua, &dir, action, &obj);
            assert_eq!(
                normalised(&actual),
                normalised(&expected),
                "{name}: {action}"
            );
            assert_ne!(
                normalised(&actual),
                normalised(&obj),
                "{name}: {action} changed nothing"
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} action runs checked");
    let _ = std::fs::remove_dir_all(dir);
}

/// deploy/argocd/argocd-cm-patch.yaml: the scripts under the keys Argo CD reads.
fn argocd_cm_patch() -> String {
    let dir = scripts_dir();
    let read =
        |p: &str| std::fs::read_to_string(dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let indent = |text: &str, by: usize| -> String {
        text.lines()
            .map(|l| {
                if l.is_empty() {
                    "\n".to_string()
                } else {
                    format!("{}{l}\n", " ".repeat(by))
                }
            })
            .collect()
    };
    let mut actions = format!(
        "discovery.lua: |\n{}definitions:\n",
        indent(&read("actions/discovery.lua"), 2)
    );
    for (action, _) in ACTIONS {
        actions.push_str(&format!(
            "  - name: {action}\n    action.lua: |\n{}",
            indent(&read(&format!("actions/{action}/action.lua")), 6)
        ));
    }
    format!(
        "# Argo CD's settings for cutover.dev Rollouts: merge into the argocd-cm ConfigMap with\n\
         #   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file deploy/argocd/argocd-cm-patch.yaml\n\
         # Generated from deploy/argocd/cutover.dev/Rollout/ by\n\
         #   CUTOVER_BLESS=1 cargo test -p cutover-core --test argocd_lua\n\
         data:\n  resource.customizations.health.cutover.dev_Rollout: |\n{}  resource.customizations.actions.cutover.dev_Rollout: |\n{}",
        indent(&read("health.lua"), 4),
        indent(&actions, 4)
    )
}

#[test]
fn argocd_cm_patch_holds_the_scripts() {
    let path = scripts_dir().join("../../argocd-cm-patch.yaml");
    let fresh = argocd_cm_patch();
    if std::env::var_os("CUTOVER_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write argocd-cm-patch.yaml");
    }
    let committed = std::fs::read_to_string(&path).expect("read argocd-cm-patch.yaml");
    assert!(
        committed == fresh,
        "{} is stale; run CUTOVER_BLESS=1 cargo test -p cutover-core --test argocd_lua",
        path.display()
    );
    // Read back as Argo CD does: the health script verbatim, the actions as YAML.
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&committed).expect("YAML");
    let data = &doc["data"];
    let health = data["resource.customizations.health.cutover.dev_Rollout"]
        .as_str()
        .expect("the health key");
    assert_eq!(
        health,
        std::fs::read_to_string(scripts_dir().join("health.lua")).expect("health.lua")
    );
    let actions: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        data["resource.customizations.actions.cutover.dev_Rollout"]
            .as_str()
            .expect("the actions key"),
    )
    .expect("the actions are YAML");
    let names: Vec<&str> = actions["definitions"]
        .as_sequence()
        .expect("definitions")
        .iter()
        .map(|d| d["name"].as_str().expect("a name"))
        .collect();
    let expected: Vec<&str> = ACTIONS.iter().map(|(a, _)| *a).collect();
    assert_eq!(names, expected);
    for (i, (action, _)) in ACTIONS.iter().enumerate() {
        let script = actions["definitions"][i]["action.lua"]
            .as_str()
            .expect("action.lua");
        let file =
            std::fs::read_to_string(scripts_dir().join(format!("actions/{action}/action.lua")))
                .expect("action.lua");
        assert_eq!(script, file, "{action}");
    }
}
