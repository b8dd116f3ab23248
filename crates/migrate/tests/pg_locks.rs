//! Lock safety on a real PostgreSQL: a DDL step behind a conflicting lock times out, retries,
//! and succeeds once the lock is released, while other writers are never blocked for long.

mod common;

use std::time::{Duration, Instant};

use common::request;
use cutover_migrate::{Options, PhaseKind, execute};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expand_waits_out_a_held_lock_without_blocking_writers() {
    let url = common::database("locks").await;
    let migrations = common::example_migrations(&["000", "001"]);
    let options = Options {
        lock_timeout: Duration::from_millis(100),
        ..common::options()
    };
    let mut pg = common::connect_with_users_table(&url, &migrations, &options).await;
    // Another session holds a lock that conflicts with ALTER TABLE for 1.5 s.
    let holder = common::client(&url).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN ROW EXCLUSIVE MODE")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        holder.batch_execute("COMMIT").await
    });
    // A writer keeps inserting meanwhile; its slowest insert shows whether the waiting DDL
    // queued an exclusive request in front of it.
    let writer_url = url.clone();
    let writer = tokio::spawn(async move {
        let db = common::client(&writer_url).await;
        let mut worst = Duration::ZERO;
        let end = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < end {
            let t = Instant::now();
            db.execute("INSERT INTO users (user_name) VALUES ('w')", &[])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            worst = worst.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        worst
    });
    let started = Instant::now();
    let out = execute(&mut pg, &migrations, &request(PhaseKind::Expand), &options)
        .await
        .unwrap_or_else(|e| panic!("expand: {e}"));
    let took = started.elapsed();
    release
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let worst = writer.await.unwrap_or_else(|e| panic!("{e}"));
    let attempts = out.report.steps.first().map_or(0, |s| s.attempts);
    assert!(attempts > 1, "expand retried: {:?}", out.report.steps);
    assert!(
        took >= Duration::from_millis(1400),
        "expand waited for the lock: {took:?}"
    );
    assert!(
        worst < Duration::from_millis(400),
        "a writer waited {worst:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_with_a_clear_error_when_the_lock_never_comes() {
    let url = common::database("locks_giveup").await;
    let migrations = common::example_migrations(&["000", "001"]);
    let options = Options {
        lock_timeout: Duration::from_millis(50),
        lock_attempts: 3,
        ..common::options()
    };
    let mut pg = common::connect_with_users_table(&url, &migrations, &options).await;
    let holder = common::client(&url).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE users IN SHARE MODE")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = execute(&mut pg, &migrations, &request(PhaseKind::Expand), &options).await;
    assert!(
        matches!(
            err,
            Err(cutover_migrate::Error::LockTimeout { attempts: 3, .. })
        ),
        "{err:?}"
    );
    holder
        .batch_execute("COMMIT")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Nothing half-done: the migration is still pending and can run now.
    execute(&mut pg, &migrations, &request(PhaseKind::Expand), &options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
