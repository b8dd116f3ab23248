//! The seed's §5 on a real PostgreSQL 15: a v1 client reading and writing `user_name` and a v2
//! client reading and writing `full_name` run at the same time through expand → backfill →
//! rollback, and through expand → backfill → contract. Nothing may be lost, and at every quiet
//! point each row holds the last value written, in both columns.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cutover_migrate::pg::Postgres;
use cutover_migrate::{Error, PhaseKind, Refusal, Request, RolloutFacts, execute};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::RwLock;

type Expected = Arc<std::sync::Mutex<HashMap<i64, String>>>;

/// A client of one app version. It owns some rows (only it updates them, so the expected value
/// is never ambiguous), inserts new ones, and reads its own column back after each write.
struct App {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<u64, String>>,
}

fn spawn_app(
    url: String,
    column: &'static str,
    mut owned: Vec<i64>,
    expected: Expected,
    quiet: Arc<RwLock<()>>,
) -> App {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let db = common::client(&url).await;
        let mut n: u64 = 0;
        let mut seed: u64 = if column == "user_name" { 7 } else { 11 };
        while !flag.load(Ordering::SeqCst) {
            let _guard = quiet.read().await;
            n += 1;
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let value = format!("{column}-{n}");
            let id = if n.is_multiple_of(3) || owned.is_empty() {
                let row = db
                    .query_one(
                        &format!("INSERT INTO users ({column}) VALUES ($1) RETURNING id"),
                        &[&value],
                    )
                    .await
                    .map_err(|e| format!("{column} insert: {e}"))?;
                let id: i64 = row.get(0);
                owned.push(id);
                id
            } else {
                let idx = usize::try_from(seed >> 33).unwrap_or(0) % owned.len();
                let id = owned[idx];
                db.execute(
                    &format!("UPDATE users SET {column} = $1 WHERE id = $2"),
                    &[&value, &id],
                )
                .await
                .map_err(|e| format!("{column} update: {e}"))?;
                id
            };
            let got: Option<String> = db
                .query_one(&format!("SELECT {column} FROM users WHERE id = $1"), &[&id])
                .await
                .map_err(|e| format!("{column} read: {e}"))?
                .get(0);
            if got.as_deref() != Some(value.as_str()) {
                return Err(format!("{column}: row {id} reads {got:?}, wrote {value}"));
            }
            expected
                .lock()
                .map_err(|e| e.to_string())?
                .insert(id, value);
        }
        Ok(n)
    });
    App { stop, task }
}

async fn stop(app: App) -> u64 {
    app.stop.store(true, Ordering::SeqCst);
    match app.task.await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => panic!("client failed: {e}"),
        Err(e) => panic!("client task: {e}"),
    }
}

/// With the clients held still: every row exists and holds the expected value in `columns`.
async fn verify(url: &str, expected: &Expected, quiet: &RwLock<()>, columns: &[&str]) {
    let _hold = quiet.write().await;
    let db = common::client(url).await;
    let want = expected.lock().map(|m| m.clone()).unwrap_or_default();
    let sql = format!("SELECT id, {} FROM users", columns.join(", "));
    let rows = db.query(&sql, &[]).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), want.len(), "rows lost or invented");
    for row in rows {
        let id: i64 = row.get(0);
        for (i, c) in columns.iter().enumerate() {
            let got: Option<String> = row.get(i + 1);
            assert_eq!(got.as_ref(), want.get(&id), "row {id} column {c}");
        }
    }
}

fn request(command: PhaseKind) -> Request {
    Request {
        command,
        target: None,
        rollout: None,
        bake: SignedDuration::from_hours(14 * 24),
        force: None,
        now: Timestamp::now(),
    }
}

/// Creates the table, seeds 5000 v1 rows, starts v1 and expands + backfills 001 while v1 and,
/// once expanded, v2 write. Returns everything the scenarios continue with.
async fn through_backfill(prefix: &str) -> (String, Postgres, Expected, Arc<RwLock<()>>, App, App) {
    let url = common::database(prefix).await;
    let migrations = common::example_migrations(&["000", "001"]);
    let options = common::options();
    let mut pg = common::connect_with_users_table(&url, &migrations, &options).await;
    let db = common::client(&url).await;
    db.batch_execute(
        "INSERT INTO users (user_name) SELECT 'seed-' || g FROM generate_series(1, 5000) g",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let expected: Expected = Arc::new(std::sync::Mutex::new(
        (1..=5000).map(|i: i64| (i, format!("seed-{i}"))).collect(),
    ));
    let quiet = Arc::new(RwLock::new(()));
    let odd: Vec<i64> = (1..=5000).filter(|i| i % 2 == 1).collect();
    let even: Vec<i64> = (1..=5000).filter(|i| i % 2 == 0).collect();
    let v1 = spawn_app(
        url.clone(),
        "user_name",
        odd,
        expected.clone(),
        quiet.clone(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let out = execute(&mut pg, &migrations, &request(PhaseKind::Expand), &options)
        .await
        .unwrap_or_else(|e| panic!("expand: {e}"));
    assert_eq!(out.migration.as_deref(), Some("001_user_name_to_full_name"));
    let v2 = spawn_app(
        url.clone(),
        "full_name",
        even,
        expected.clone(),
        quiet.clone(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let out = execute(
        &mut pg,
        &migrations,
        &request(PhaseKind::Backfill),
        &options,
    )
    .await
    .unwrap_or_else(|e| panic!("backfill: {e}"));
    assert!(out.report.batches >= 5, "batches: {}", out.report.batches);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // After the backfill both columns agree on every row, whichever version wrote it.
    verify(&url, &expected, &quiet, &["user_name", "full_name"]).await;
    (url, pg, expected, quiet, v1, v2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_rename_then_rollback_with_v1_and_v2_writing() {
    let (url, mut pg, expected, quiet, v1, v2) = through_backfill("seed_rollback").await;
    let migrations = common::example_migrations(&["000", "001"]);
    // Abort the switch: green's traffic goes first, then the schema goes back; blue writes on.
    let writes_v2 = stop(v2).await;
    execute(
        &mut pg,
        &migrations,
        &request(PhaseKind::Rollback),
        &common::options(),
    )
    .await
    .unwrap_or_else(|e| panic!("rollback: {e}"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    verify(&url, &expected, &quiet, &["user_name"]).await;
    let writes_v1 = stop(v1).await;
    assert!(
        writes_v1 > 20 && writes_v2 > 20,
        "v1 {writes_v1}, v2 {writes_v2}"
    );
    let db = common::client(&url).await;
    let cols: i64 = db
        .query_one("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'full_name'", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    assert_eq!(cols, 0, "rollback drops full_name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_rename_then_contract_with_gates() {
    let (url, mut pg, expected, quiet, v1, v2) = through_backfill("seed_contract").await;
    let migrations = common::example_migrations(&["000", "001"]);
    let options = common::options();
    // No rollout state: refused.
    let err = execute(
        &mut pg,
        &migrations,
        &request(PhaseKind::Contract),
        &options,
    )
    .await;
    assert!(
        matches!(err, Err(Error::Refused(Refusal::NoRolloutState))),
        "{err:?}"
    );
    // The old revision still runs: refused.
    let mut req = request(PhaseKind::Contract);
    req.rollout = Some((
        "my-app".into(),
        RolloutFacts {
            old_revision_running: true,
            fully_promoted_at: None,
        },
    ));
    let err = execute(&mut pg, &migrations, &req, &options).await;
    assert!(
        matches!(err, Err(Error::Refused(Refusal::OldRevisionRunning { .. }))),
        "{err:?}"
    );
    // v1 is removed (§5.3 step 4); promoted an hour ago: the bake period has not passed.
    stop(v1).await;
    let promoted = Timestamp::now() - SignedDuration::from_hours(1);
    req.rollout = Some((
        "my-app".into(),
        RolloutFacts {
            old_revision_running: false,
            fully_promoted_at: Some(promoted),
        },
    ));
    let err = execute(&mut pg, &migrations, &req, &options).await;
    assert!(
        matches!(err, Err(Error::Refused(Refusal::BakeNotElapsed { .. }))),
        "{err:?}"
    );
    // Two weeks later, contract runs while v2 keeps writing.
    req.now = promoted + SignedDuration::from_hours(14 * 24 + 1);
    execute(&mut pg, &migrations, &req, &options)
        .await
        .unwrap_or_else(|e| panic!("contract: {e}"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    verify(&url, &expected, &quiet, &["full_name"]).await;
    stop(v2).await;
    // And now there is no way back.
    let err = execute(
        &mut pg,
        &migrations,
        &request(PhaseKind::Rollback),
        &options,
    )
    .await;
    assert!(
        matches!(
            err,
            Err(Error::Refused(Refusal::RollbackAfterContract { .. }))
        ),
        "{err:?}"
    );
}
