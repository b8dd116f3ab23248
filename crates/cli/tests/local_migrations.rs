//! A Rollout's migrations on the single-host backend, with real processes, the real daemon and
//! CLI and a real PostgreSQL: expand + backfill run before the new revision starts and contract
//! becomes due after promotion; a failing migration stops the update before any traffic moves,
//! and one that does not fit the schema never touches the running version's writes; abort rolls
//! back what was expanded.

mod e2e;
mod pg;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::*;
use pg::{fresh_database, runtime, sql};
use serde_json::Value;

/// A fresh database holding v1's schema: users(id, user_name) with `rows` rows.
fn database(prefix: &str, rows: u32) -> String {
    let url = fresh_database(prefix);
    sql(
        &url,
        &format!(
            "CREATE TABLE users (id bigserial PRIMARY KEY, user_name varchar(255) NOT NULL, email text);
             INSERT INTO users (user_name) SELECT 'user ' || g FROM generate_series(1, {rows}) g;"
        ),
    );
    url
}

fn one(url: &str, query: &str) -> String {
    sql(url, query)
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .unwrap_or_default()
}

/// The seed's migration 001 (user_name → full_name), copied from examples/migrations.
fn add_seed_migration(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/migrations/001_user_name_to_full_name.yaml");
    std::fs::copy(src, dir.join("001_user_name_to_full_name.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Services and a demo-app Rollout whose migrations come from `dir` and `$DATABASE_URL`, with
/// a bake period of one hour and manual contract.
fn manifest(name: &str, dir: &Path) -> (String, u16, u16) {
    manifest_with(name, dir, "    bake: 1h\n")
}

fn manifest_with(name: &str, dir: &Path, settings: &str) -> (String, u16, u16) {
    let (services, active, preview) = services(name);
    let rollout = demo_rollout(
        name,
        1,
        "      autoPromotionEnabled: false\n      scaleDownDelaySeconds: 2\n",
        "",
    );
    let migrations = format!(
        "  migrations:\n    source: {{dir: {}}}\n    databaseUrlFrom: {{env: DATABASE_URL}}\n{settings}",
        dir.display()
    );
    (format!("{services}{rollout}{migrations}"), active, preview)
}

fn migration(v: &Value) -> &Value {
    &v["rollout"]["status"]["migration"]
}

/// Processes of a revision (by number) that are not stopped.
fn live_replicas(v: &Value, revision: i64) -> usize {
    v["revisions"]
        .as_array()
        .and_then(|revs| revs.iter().find(|r| r["revision"] == revision))
        .and_then(|r| r["replicas"].as_array())
        .map_or(0, |reps| {
            reps.iter().filter(|p| p["phase"] != "Stopped").count()
        })
}

#[test]
fn expand_and_backfill_run_before_the_preview_then_contract_becomes_due() {
    let url = database("mig_ok", 5000);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (manifest, _, _) = manifest("shop", dir.path());
    let d = Daemon::start_with_env(&manifest, &[("DATABASE_URL", &url)]);
    d.wait_healthy_on("shop", "demo:v1");

    add_seed_migration(dir.path());
    d.ok(&["set", "image", "shop", "app=demo:v2"]);
    // The preview never runs before the migration is backfilled.
    let paused = d.wait("shop", "preview ready, waiting for promotion", |v| {
        if live_replicas(v, 2) > 0 {
            assert_eq!(
                migration(v)["phase"],
                "backfilled",
                "revision 2 started before its migration was backfilled: {}",
                v["rollout"]["status"]
            );
        }
        phase(v) == "Paused"
    });
    assert_eq!(migration(&paused)["name"], "001_user_name_to_full_name");
    assert_eq!(
        one(
            &url,
            "SELECT count(*) FROM users WHERE full_name IS DISTINCT FROM user_name"
        ),
        "0",
        "every row backfilled"
    );
    let events = paused["events"].to_string();
    assert!(events.contains("MigrationStarted"), "{events}");

    d.ok(&["promote", "shop"]);
    d.wait_healthy_on("shop", "demo:v2");
    let v = d.wait("shop", "revision 1 scaled down", |v| {
        live_replicas(v, 1) == 0
            && migration(v)["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("contract due at"))
    });
    let m = migration(&v);
    assert_eq!(m["phase"], "backfilled");
    let verified: jiff::Timestamp = v["rollout"]["status"]["blueGreen"]["switch"]["verifiedAt"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("verified switch: {}", v["rollout"]["status"]));
    let due: jiff::Timestamp = m["contractDueAt"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("contractDueAt: {m}"));
    // contractDueAt is kept to the second; the switch's verification to the microsecond.
    assert_eq!(
        due.as_second(),
        (verified + jiff::SignedDuration::from_hours(1)).as_second()
    );
    let text = d.ok(&["get", "rollout", "shop"]);
    assert!(
        text.contains("Migration:       001_user_name_to_full_name backfilled")
            && text.contains("Contract due:"),
        "{text}"
    );
}

#[test]
fn a_failing_migration_stops_the_update_before_any_traffic_moves() {
    let url = database("mig_bad", 10);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (manifest, active_port, _) = manifest("cart", dir.path());
    let d = Daemon::start_with_env(&manifest, &[("DATABASE_URL", &url)]);
    d.wait_healthy_on("cart", "demo:v1");
    let active: SocketAddr = ([127, 0, 0, 1], active_port).into();
    let load = Load::start(active, 2);

    std::fs::write(
        dir.path().join("001_bad.yaml"),
        "description: refers to a table that does not exist\noperations:\n  - raw_sql:\n      expand: ALTER TABLE no_such_table ADD COLUMN x int\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    d.ok(&["set", "image", "cart", "app=demo:v2"]);
    let v = d.wait("cart", "Degraded", |v| phase(v) == "Degraded");
    let message = v["rollout"]["status"]["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("MigrationFailed: migration 001_bad failed")
            && message.contains("no_such_table"),
        "{message}"
    );
    // Still blocked a moment later: the preview never started, active still selects v1.
    std::thread::sleep(Duration::from_millis(1500));
    let v = d.view("cart");
    assert_eq!(phase(&v), "Degraded");
    assert_eq!(live_replicas(&v, 2), 0, "the new revision never started");
    assert_eq!(
        v["services"][0]["selector"],
        v["rollout"]["status"]["stableRS"]
    );
    let samples = load.stop();
    assert_no_failures(&samples);
    assert!(samples.len() > 20, "only {} requests", samples.len());
    assert!(
        samples.iter().all(|s| s.version.as_deref() == Some("v1")),
        "a request was answered by another version than v1"
    );
}

/// v1's writes straight to the database, until `stop`: (writes that succeeded, errors).
fn spawn_v1_writer(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            tokio::spawn(conn);
            let (mut ok, mut errors) = (0u64, Vec::new());
            let mut n: i64 = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let name = format!("v1-{n}");
                let result = if n % 2 == 0 {
                    db.execute("INSERT INTO users (user_name) VALUES ($1)", &[&name])
                        .await
                } else {
                    db.execute(
                        "UPDATE users SET user_name = $1 WHERE id = $2",
                        &[&name, &(n % 50 + 1)],
                    )
                    .await
                };
                match result {
                    Ok(_) => ok += 1,
                    Err(e) => errors.push(format!("{e:?}")),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ok, errors)
        })
    })
}

#[test]
fn an_expand_that_does_not_fit_the_schema_never_touches_the_running_apps_writes() {
    let url = database("mig_nope", 50);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (manifest, _, _) = manifest("till", dir.path());
    let d = Daemon::start_with_env(&manifest, &[("DATABASE_URL", &url)]);
    d.wait_healthy_on("till", "demo:v1");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = spawn_v1_writer(url.clone(), stop.clone());

    std::fs::write(
        dir.path().join("001_rename.yaml"),
        "description: renames a column v1 does not have\noperations:\n  - rename_column:\n      table: users\n      from: nope\n      to: full_name\n      type: varchar(255)\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    d.ok(&["set", "image", "till", "app=demo:v2"]);
    let v = d.wait("till", "Degraded", |v| phase(v) == "Degraded");
    let message = v["rollout"]["status"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(
            "001_rename.yaml:5:13: operations[0].rename_column.from: column `nope` does not exist"
        ) && message.contains("help:"),
        "{message}"
    );
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, errors) = writer.join().unwrap_or_else(|_| panic!("writer panicked"));
    assert!(ok > 20, "only {ok} writes");
    assert!(errors.is_empty(), "v1's writes failed: {errors:?}");
    assert_eq!(
        one(
            &url,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'users'::regclass AND NOT tgisinternal"
        ),
        "0",
        "no trigger installed"
    );
    assert_eq!(
        one(
            &url,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'full_name'"
        ),
        "0"
    );
    assert_eq!(
        live_replicas(&d.view("till"), 2),
        0,
        "the new revision never started"
    );
}

#[test]
fn abort_after_expand_rolls_the_migration_back() {
    let url = database("mig_abort", 100);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (manifest, _, _) = manifest("blog", dir.path());
    let d = Daemon::start_with_env(&manifest, &[("DATABASE_URL", &url)]);
    d.wait_healthy_on("blog", "demo:v1");

    add_seed_migration(dir.path());
    d.ok(&["set", "image", "blog", "app=demo:v2"]);
    d.wait("blog", "preview ready", |v| phase(v) == "Paused");
    assert_eq!(
        one(
            &url,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'full_name'"
        ),
        "1"
    );
    d.ok(&["abort", "blog"]);
    let v = d.wait("blog", "migration rolled back", |v| {
        migration(v)["phase"] == "rolled_back"
    });
    assert_eq!(phase(&v), "Degraded");
    assert_eq!(
        v["services"][0]["selector"],
        v["rollout"]["status"]["stableRS"]
    );
    assert_eq!(
        one(
            &url,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'full_name'"
        ),
        "0",
        "full_name dropped by the rollback"
    );
}

#[test]
fn a_backfill_cut_by_a_daemon_crash_resumes_from_its_checkpoint() {
    let url = database("mig_crash", 200_000);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (manifest, _, _) = manifest("feed", dir.path());
    let mut d = Daemon::start_with_env(&manifest, &[("DATABASE_URL", &url)]);
    d.wait_healthy_on("feed", "demo:v1");

    add_seed_migration(dir.path());
    d.ok(&["set", "image", "feed", "app=demo:v2"]);
    // Once expand is committed, a writer takes row 150000: the backfill commits its batches up
    // to it, then waits for the lock. (Its batch sizes adapt, so the checkpoint it stops at is
    // somewhere in the last 1000 rows before 150000.)
    let phase_in_db = || {
        if one(&url, "SELECT to_regclass('cutover_migrations') IS NOT NULL") != "t" {
            return String::new();
        }
        one(&url, "SELECT phase FROM cutover_migrations")
    };
    let start = Instant::now();
    while phase_in_db() != "expanded" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no expand: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let rt = runtime();
    let holder = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(conn);
        client
            .batch_execute("BEGIN; SELECT 1 FROM users WHERE id = 150000 FOR UPDATE")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        client
    });
    let rows = || one(&url, "SELECT rows_backfilled FROM cutover_migrations");
    let waiting_at_the_lock = || {
        let done: u64 = rows().parse().unwrap_or(0);
        (149_000..150_000).contains(&done)
            && one(
                &url,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
            ) != "0"
    };
    while !waiting_at_the_lock() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "backfill stopped at {} rows: {}",
            rows(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.kill9();
    assert_eq!(phase_in_db(), "expanded");
    rt.block_on(holder.batch_execute("COMMIT"))
        .unwrap_or_else(|e| panic!("{e}"));

    d.restart_with_env(&[("DATABASE_URL", &url)]);
    let v = d.wait("feed", "preview ready after the resumed backfill", |v| {
        phase(v) == "Paused"
    });
    assert_eq!(migration(&v)["phase"], "backfilled");
    assert_eq!(
        rows(),
        "200000",
        "the resumed run wrote only the rows after the checkpoint"
    );
    assert_eq!(
        one(
            &url,
            "SELECT count(*) FROM users WHERE full_name IS DISTINCT FROM user_name"
        ),
        "0"
    );
}

#[test]
fn on_sqlite_contract_runs_automatically_and_an_undo_behind_it_is_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap_or_else(|e| panic!("{e}"));
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/migrations");
    std::fs::copy(
        examples.join("000_create_users.yaml"),
        migrations.join("000_create_users.yaml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("sqlite:{}", dir.path().join("app.db").display());
    let (manifest, _, _) = manifest_with("mail", &migrations, "    bake: 1s\n    contract: auto\n");
    let d = Daemon::start_with_env(&manifest, &[("DATABASE_URL", &url)]);
    // 000 runs before revision 1 starts, and is closed at once: it has nothing to contract.
    let v = d.wait_healthy_on("mail", "demo:v1");
    let first = v["events"].to_string();
    assert!(
        first.contains("000_create_users: expand + backfill started"),
        "{first}"
    );

    add_seed_migration(&migrations);
    d.ok(&["set", "image", "mail", "app=demo:v2"]);
    d.wait("mail", "preview ready", |v| phase(v) == "Paused");
    d.ok(&["promote", "mail"]);
    d.wait_healthy_on("mail", "demo:v2");
    let v = d.wait("mail", "contract done", |v| {
        migration(v)["phase"] == "contracted"
    });
    assert_eq!(migration(&v)["name"], "001_user_name_to_full_name");
    assert_eq!(
        live_replicas(&v, 1),
        0,
        "contract ran after revision 1 was gone"
    );

    d.ok(&["undo", "mail", "--to-revision", "1"]);
    let v = d.wait("mail", "undo refused", |v| phase(v) == "Degraded");
    let message = v["rollout"]["status"]["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("MigrationContracted: revision 1 refused"),
        "{message}"
    );
    assert_eq!(live_replicas(&v, 1), 0, "revision 1 stays down");
    assert_eq!(
        v["services"][0]["selector"],
        v["rollout"]["status"]["stableRS"]
    );
}
