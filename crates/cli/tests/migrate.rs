//! `cutover migrate` end to end on a real PostgreSQL: a backfill killed mid-way resumes from its
//! checkpoint, the guards answer with exit code 3 and a reason, status prints the checklist.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod pg;

use pg::{fresh_database as database, sql};

/// A directory with the example migrations 000 and 001.
fn migrations() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/migrations");
    for name in ["000_create_users.yaml", "001_user_name_to_full_name.yaml"] {
        std::fs::copy(src.join(name), dir.path().join(name)).unwrap_or_else(|e| panic!("{e}"));
    }
    dir
}

fn cutover(dir: &Path, url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cutover"));
    c.arg("migrate")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .arg("--database-url")
        .arg(url)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null());
    c
}

fn ok(dir: &Path, url: &str, args: &[&str]) -> Output {
    let out = cutover(dir, url, args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "cutover migrate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn setup(prefix: &str, rows: u32) -> (String, tempfile::TempDir) {
    let url = database(prefix);
    let dir = migrations();
    for phase in ["expand", "backfill", "contract"] {
        ok(dir.path(), &url, &[phase]);
    }
    sql(
        &url,
        &format!("INSERT INTO users (user_name) SELECT 'u' || g FROM generate_series(1, {rows}) g"),
    );
    ok(dir.path(), &url, &["expand"]);
    (url, dir)
}

#[test]
fn killed_backfill_resumes_from_its_checkpoint() {
    let (url, dir) = setup("resume", 20_000);
    let mut child = cutover(
        dir.path(),
        &url,
        &["backfill", "--batch-size", "100", "--throttle", "20ms"],
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(1500));
    // SIGKILL: no chance to clean up, as in a crash.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0)),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    let state = sql(
        &url,
        "SELECT phase, rows_backfilled, checkpoint->>'last' FROM cutover_migrations WHERE name = '001_user_name_to_full_name'",
    );
    let row = &state[0];
    assert_eq!(row[0].as_deref(), Some("expanded"));
    let done: i64 = row[1].as_deref().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(
        done > 0 && done < 20_000,
        "killed mid-way, after {done} rows"
    );
    let filled = sql(
        &url,
        "SELECT count(*) FROM users WHERE full_name IS NOT NULL",
    );
    assert_eq!(filled[0][0].as_deref(), Some(done.to_string().as_str()));
    let status = ok(dir.path(), &url, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("interrupted after"), "{text}");
    // The rerun goes on from the checkpoint: every row once, none twice, none missed.
    let out = ok(dir.path(), &url, &["backfill"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("backfilled {} rows", 20_000 - done)),
        "{stderr}"
    );
    let state = sql(
        &url,
        "SELECT phase, rows_backfilled FROM cutover_migrations WHERE name = '001_user_name_to_full_name'",
    );
    assert_eq!(state[0][0].as_deref(), Some("backfilled"));
    assert_eq!(state[0][1].as_deref(), Some("20000"));
    let wrong = sql(
        &url,
        "SELECT count(*) FROM users WHERE full_name IS DISTINCT FROM user_name",
    );
    assert_eq!(wrong[0][0].as_deref(), Some("0"));
}

#[test]
fn guards_refuse_with_exit_3_and_status_shows_the_checklist() {
    let (url, dir) = setup("guards", 100);
    ok(dir.path(), &url, &["backfill"]);
    let state_file = |old: bool, promoted: &str| -> PathBuf {
        let p = dir.path().join(format!("state-{old}.json"));
        std::fs::write(
            &p,
            format!(r#"{{"oldRevisionRunning": {old}, "fullyPromotedAt": "{promoted}"}}"#),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        p
    };
    let now = jiff::Timestamp::now();
    let running = state_file(true, &now.to_string());
    let out = cutover(
        dir.path(),
        &url,
        &[
            "contract",
            "--rollout-state",
            &running.display().to_string(),
        ],
    )
    .output()
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("still runs an old revision"));
    let gone = state_file(false, &now.to_string());
    let gone = gone.display().to_string();
    let out = cutover(dir.path(), &url, &["contract", "--rollout-state", &gone])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bake period"));
    let status = ok(dir.path(), &url, &["status", "--rollout-state", &gone]);
    let text = String::from_utf8_lossy(&status.stdout);
    for want in [
        "add new column",
        "copy data",
        "switch to v2",
        "remove v1",
        "drop old column",
        "rollback possible now: yes",
    ] {
        assert!(text.contains(want), "{want} missing in:\n{text}");
    }
    // Forced, with who and why recorded.
    let out = ok(
        dir.path(),
        &url,
        &[
            "contract",
            "--rollout-state",
            &gone,
            "--force",
            "--reason",
            "test",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("FORCED"));
    let forced = sql(
        &url,
        "SELECT forced_reason, forced_gate FROM cutover_migrations WHERE name = '001_user_name_to_full_name'",
    );
    assert_eq!(forced[0][0].as_deref(), Some("test"));
    assert!(
        forced[0][1]
            .as_deref()
            .is_some_and(|g| g.starts_with("bake-period"))
    );
    let out = cutover(dir.path(), &url, &["rollback"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rollback refused"));
    let status = ok(dir.path(), &url, &["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("rollback possible now: no"));
}

#[test]
fn bad_file_is_exit_1_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("001_bad.yaml");
    std::fs::write(
        &file,
        "operations:\n  - drop_column:\n      table: users\n      colum: x\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["migrate", "plan", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("001_bad.yaml:4:7:") && err.contains("unknown field `colum`"),
        "{err}"
    );
}
