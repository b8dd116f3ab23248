//! The embedded demo's SQLite mode: the seed's rename with old and new writers interleaved on
//! separate connections, and honest refusals for what SQLite cannot do online.

use std::path::Path;

use cutover_migrate::sqlite::Sqlite;
use cutover_migrate::{Error, Options, PhaseKind, Request, RolloutFacts, execute, load_dir};
use rusqlite::Connection;

fn req(command: PhaseKind) -> Request {
    Request {
        command,
        target: None,
        rollout: Some((
            "my-app".into(),
            RolloutFacts {
                old_revision_running: false,
                fully_promoted_at: None,
            },
        )),
        bake: jiff::SignedDuration::ZERO,
        force: None,
        now: jiff::Timestamp::now(),
    }
}

#[tokio::test]
async fn seed_rename_on_sqlite_with_both_versions_writing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db_path = dir.path().join("app.db");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/migrations");
    let all = load_dir(&examples).unwrap_or_else(|e| panic!("{e}"));
    // 000's `bigserial` is PostgreSQL's; SQLite gets its own table (INTEGER PRIMARY KEY).
    let migrations: Vec<_> = all
        .into_iter()
        .filter(|m| m.name.starts_with("001"))
        .collect();
    let options = Options {
        batch_size: 300,
        ..Options::default()
    };
    let mut db = Sqlite::open(&db_path, &options).unwrap_or_else(|e| panic!("{e}"));
    let v1 = Connection::open(&db_path).unwrap_or_else(|e| panic!("{e}"));
    let v2 = Connection::open(&db_path).unwrap_or_else(|e| panic!("{e}"));
    let run = |c: &Connection, sql: &str| {
        c.execute_batch(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    run(
        &v1,
        "CREATE TABLE users (id INTEGER PRIMARY KEY, user_name TEXT NOT NULL, email TEXT)",
    );
    run(
        &v1,
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 1000) INSERT INTO users (user_name) SELECT 'u' || n FROM g",
    );
    execute(&mut db, &migrations, &req(PhaseKind::Expand), &options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    run(&v1, "INSERT INTO users (user_name) VALUES ('from-v1')");
    run(
        &v1,
        "UPDATE users SET user_name = 'v1-updated' WHERE id = 2",
    );
    run(
        &v2,
        "INSERT INTO users (user_name, full_name) VALUES ('from-v2', 'from-v2')",
    );
    run(
        &v2,
        "UPDATE users SET full_name = 'v2-updated' WHERE id = 3",
    );
    let out = execute(&mut db, &migrations, &req(PhaseKind::Backfill), &options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.report.batches >= 3, "{:?}", out.report);
    let check = |c: &Connection, id: i64| -> (String, String) {
        c.query_row(
            "SELECT user_name, full_name FROM users WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(check(&v2, 2), ("v1-updated".into(), "v1-updated".into()));
    assert_eq!(check(&v1, 3), ("v2-updated".into(), "v2-updated".into()));
    assert_eq!(check(&v2, 1001), ("from-v1".into(), "from-v1".into()));
    let mismatched: i64 = v1
        .query_row(
            "SELECT count(*) FROM users WHERE full_name IS NOT user_name",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mismatched, 0);
    execute(&mut db, &migrations, &req(PhaseKind::Contract), &options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let n: i64 = v2
        .query_row("SELECT count(full_name) FROM users", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 1002);
    let err = execute(&mut db, &migrations, &req(PhaseKind::Rollback), &options).await;
    assert!(matches!(err, Err(Error::Refused(_))), "{err:?}");
}

#[tokio::test]
async fn sqlite_says_what_it_cannot_do_online() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options = Options::default();
    let mut db = Sqlite::open(&dir.path().join("x.db"), &options).unwrap_or_else(|e| panic!("{e}"));
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/migrations");
    let migrations = load_dir(&examples).unwrap_or_else(|e| panic!("{e}"));
    let mut request = req(PhaseKind::Expand);
    request.target = Some("002_add_signup_source".into());
    // Earlier ones done first, so the refusal is SQLite's and not the phase order.
    for name in ["000_create_users", "001_user_name_to_full_name"] {
        for c in [PhaseKind::Expand, PhaseKind::Backfill, PhaseKind::Contract] {
            let mut r = req(c);
            r.target = Some(name.into());
            execute(&mut db, &migrations, &r, &options)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let err = execute(&mut db, &migrations, &request, &options).await;
    match err {
        Err(e @ Error::NotOnline { .. }) => {
            assert!(e.to_string().contains("cannot be done online on SQLite"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_column_that_does_not_exist_is_refused_before_expand_on_sqlite() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db_path = dir.path().join("app.db");
    let options = Options::default();
    let mut db = Sqlite::open(&db_path, &options).unwrap_or_else(|e| panic!("{e}"));
    let app = Connection::open(&db_path).unwrap_or_else(|e| panic!("{e}"));
    app.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, user_name TEXT NOT NULL)")
        .unwrap_or_else(|e| panic!("{e}"));
    let text =
        "operations:\n  - rename_column: {table: users, from: nope, to: full_name, type: text}\n";
    std::fs::write(dir.path().join("001_x.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
    let migrations: Vec<_> = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let err = execute(&mut db, &migrations, &req(PhaseKind::Expand), &options).await;
    let err = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains(
            "001_x.yaml:2:41: operations[0].rename_column.from: column `nope` does not exist"
        ),
        "{err}"
    );
    // Untouched: no new column, no trigger; v1 writes as before.
    let columns: i64 = app
        .query_row("SELECT count(*) FROM pragma_table_info('users')", [], |r| {
            r.get(0)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let triggers: i64 = app
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((columns, triggers), (2, 0));
    app.execute_batch(
        "INSERT INTO users (user_name) VALUES ('v1'); UPDATE users SET user_name = 'v1b'",
    )
    .unwrap_or_else(|e| panic!("{e}"));
}
