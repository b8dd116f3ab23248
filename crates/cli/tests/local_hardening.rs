//! The single-host daemon against its own bad luck: a bug while planning one rollout marks that
//! rollout Degraded and leaves the others (and their traffic) alone; a state file with an object
//! that no longer reads still starts, with that object quarantined; the state directory and
//! everything in it is readable by its owner only.

mod e2e;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::*;

fn two_rollouts() -> (String, u16) {
    let (s1, a1, _) = services("calm");
    let (s2, _, _) = services("buggy");
    (
        format!(
            "{s1}---\n{s2}{}{}",
            demo_rollout("calm", 1, "", ""),
            demo_rollout("buggy", 1, "", "")
        ),
        a1,
    )
}

#[test]
fn a_panic_in_one_rollouts_pass_degrades_it_and_spares_the_rest() {
    let (manifest, calm_port) = two_rollouts();
    let mut d = Daemon::start(&manifest);
    d.wait_healthy_on("calm", "demo:v1");
    d.wait_healthy_on("buggy", "demo:v1");
    d.kill9();
    // The same state, now with a planner that panics on `buggy`.
    d.restart_with_env(&[("CUTOVER_FAULT_PANIC_IN_PLAN", "buggy")]);
    let v = d.wait("buggy", "Degraded by the internal error", |v| {
        phase(v) == "Degraded"
    });
    let message = v["rollout"]["status"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("InternalError") && message.contains("injected fault"),
        "{message}"
    );
    // The other rollout goes on: serves, updates and promotes.
    let load = Load::start(SocketAddr::from(([127, 0, 0, 1], calm_port)), 2);
    d.ok(&["set", "image", "calm", "app=demo:v2"]);
    d.wait_healthy_on("calm", "demo:v2");
    let samples = load.stop();
    assert_no_failures(&samples);
    // The daemon still answers, and the fault is one event, not one per pass.
    std::thread::sleep(Duration::from_secs(2));
    let v = d.view("buggy");
    let errors = v["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == "InternalError")
        .count();
    assert_eq!(errors, 1, "{}", v["events"]);
}

fn sqlite(db: &Path, sql: &str) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()",
        ])
        .arg(db)
        .arg(sql)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_stored_object_that_no_longer_reads_is_quarantined_and_the_daemon_starts() {
    let (manifest, _) = two_rollouts();
    let mut d = Daemon::start(&manifest);
    d.wait_healthy_on("calm", "demo:v1");
    d.wait_healthy_on("buggy", "demo:v1");
    d.kill9();
    sqlite(
        &d.state_dir().join("state.db"),
        "UPDATE rollouts SET object = '{\"spec\": 3}' WHERE name = 'buggy'",
    );
    d.restart();
    d.wait_healthy_on("calm", "demo:v1");
    let log = d.log();
    assert!(
        log.contains("Rollout/buggy") && log.contains("quarantine"),
        "the daemon says what it moved aside: {log}"
    );
    let list = d.ok(&["list"]);
    assert!(list.contains("calm") && !list.contains("buggy"), "{list}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_state_directory_is_owner_only_and_fixed_at_start() {
    let (services, _, _) = services("priv");
    let manifest = format!("{services}{}", demo_rollout("priv", 1, "", ""));
    let mut d = Daemon::start(&manifest);
    d.wait_healthy_on("priv", "demo:v1");
    let dir = d.state_dir().to_path_buf();
    let check = |dir: &Path| {
        assert_eq!(mode(dir), 0o700, "state directory");
        for f in ["state.db", "api.json"] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        let logs = dir.join("logs");
        assert_eq!(mode(&logs), 0o700, "logs");
        let mut files = 0;
        for entry in walk(&logs) {
            let want = if entry.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode(&entry), want, "{}", entry.display());
            files += usize::from(entry.is_file());
        }
        assert!(files > 0, "the app's logs are there");
    };
    check(&dir);
    // Someone opened it up while the daemon was down: the next start closes it again.
    d.kill9();
    for p in walk(&dir) {
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d.restart();
    d.wait_healthy_on("priv", "demo:v1");
    check(&dir);
    assert!(
        d.log().contains("readable by other users"),
        "the daemon says what it fixed: {}",
        d.log()
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
