//! Adaptive backfill pacing on a real PostgreSQL: a writer holds a row lock inside the
//! backfill's key range, so the backfill waits on it while a second writer queues behind the
//! rows the backfill already locked. The backfill must see both waits, back off, and still fill
//! every row.

mod common;

use std::time::{Duration, Instant};

use common::request;
use cutover_migrate::pacing::Harm;
use cutover_migrate::{Options, Pacing, PhaseKind, execute};

/// Polls `sql` (one boolean) until it is true; panics with `what` after 60 s.
async fn wait_until(db: &tokio_postgres::Client, sql: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = db
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if row.get::<_, bool>(0) {
            return;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adaptive_backfill_backs_off_when_writers_wait_and_still_fills_every_row() {
    let url = common::database("pacing").await;
    let migrations = common::example_migrations(&["000", "001"]);
    // A long lock_timeout: the backfill waits for the holder instead of retrying, so the
    // second writer really queues behind it.
    let options = Options {
        batch_size: 500,
        lock_timeout: Duration::from_secs(60),
        pacing: Pacing::default(),
        ..common::options()
    };
    let mut pg = common::connect_with_users_table(&url, &migrations, &options).await;
    let admin = common::client(&url).await;
    admin
        .batch_execute(
            "INSERT INTO users (user_name) SELECT 'user-' || g FROM generate_series(1, 3000) g",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    execute(&mut pg, &migrations, &request(PhaseKind::Expand), &options)
        .await
        .unwrap_or_else(|e| panic!("expand: {e}"));

    // Writer A holds row 1200 (in the backfill's third batch) until told to commit.
    let holder = common::client(&url).await;
    holder
        .batch_execute("BEGIN; UPDATE users SET email = 'held' WHERE id = 1200")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);

    let backfill = tokio::spawn(async move {
        let out = execute(
            &mut pg,
            &migrations,
            &request(PhaseKind::Backfill),
            &options,
        )
        .await;
        out.map(|o| o.report)
    });

    // The backfill reaches row 1200 and waits on A.
    wait_until(
        &admin,
        &format!(
            "SELECT count(*) > 0 FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND {holder_pid} = ANY(pg_blocking_pids(pid))"
        ),
        "the backfill waiting on the held row",
    )
    .await;
    // Writer B touches rows the backfill's batch already updated and queues behind it.
    let writer_url = url.clone();
    let writer = tokio::spawn(async move {
        let db = common::client(&writer_url).await;
        db.execute(
            "UPDATE users SET email = 'b' WHERE id BETWEEN 1001 AND 1199",
            &[],
        )
        .await
    });
    wait_until(
        &admin,
        &format!(
            "SELECT count(*) > 0 FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE users SET email = ''b''%'
               AND cardinality(pg_blocking_pids(pid)) > 0
               AND NOT {holder_pid} = ANY(pg_blocking_pids(pid))"
        ),
        "writer B waiting on the backfill",
    )
    .await;
    // Leave the watcher (it looks every 10 ms) time to see B queued, then let everything go.
    tokio::time::sleep(Duration::from_millis(500)).await;
    holder
        .batch_execute("COMMIT")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let updated = writer
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("writer B: {e}"));
    assert_eq!(updated, 199);
    let report = backfill
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("backfill: {e}"));
    let pacing = &report.pacing;
    assert_eq!(pacing.mode, "adaptive");
    assert!(pacing.watched_locks, "{pacing:?}");
    assert!(pacing.batches_waiting >= 1, "{pacing:?}");
    assert!(pacing.batches_blocking_writers >= 1, "{pacing:?}");
    assert!(pacing.backoffs >= 1, "{pacing:?}");
    assert!(
        pacing
            .first_harms
            .iter()
            .any(|h| matches!(h, Harm::WritersBlocked { sessions } if *sessions >= 1)),
        "{pacing:?}"
    );
    assert!(pacing.smallest_batch < 500, "{pacing:?}");
    // Smaller batches after the backoff: more batches than 3000 rows / 500.
    assert!(report.batches > 6, "{report:?}");

    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE full_name IS NULL),
                    count(*) FILTER (WHERE full_name IS DISTINCT FROM user_name),
                    count(*)
             FROM users",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (missing, different, total): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((missing, different, total), (0, 0, 3000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fixed_throttle_keeps_the_batch_size() {
    let url = common::database("fixedpace").await;
    let migrations = common::example_migrations(&["000", "001"]);
    let options = Options {
        batch_size: 400,
        pacing: Pacing::Fixed(Duration::from_millis(1)),
        ..common::options()
    };
    let mut pg = common::connect_with_users_table(&url, &migrations, &options).await;
    let admin = common::client(&url).await;
    admin
        .batch_execute(
            "INSERT INTO users (user_name) SELECT 'user-' || g FROM generate_series(1, 2000) g",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for c in [PhaseKind::Expand, PhaseKind::Backfill] {
        let out = execute(&mut pg, &migrations, &request(c), &options)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if c == PhaseKind::Backfill {
            let pacing = &out.report.pacing;
            assert_eq!(pacing.mode, "fixed");
            assert!(!pacing.watched_locks);
            assert_eq!((pacing.smallest_batch, pacing.last_batch), (400, 400));
            assert_eq!(out.report.batches, 5);
            assert_eq!(out.report.rows, 2000);
        }
    }
}
