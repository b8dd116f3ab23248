//! A failing expand on a real PostgreSQL 15 while the running (v1) app writes: the app's
//! INSERTs and UPDATEs must all succeed across the failure, and the schema afterwards must be
//! exactly what it was, whether the expand is refused up front (a column that does not exist),
//! fails in its transaction (an expression that does not compile), or fails after a
//! `CREATE INDEX CONCURRENTLY` was already built (a unique index over duplicates).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use common::request;
use cutover_migrate::pg::Postgres;
use cutover_migrate::{Migration, PhaseKind, execute, load_dir};

/// v1's table: 2000 rows, `email` holding duplicates (so a unique index over it fails).
async fn database(prefix: &str) -> String {
    let url = common::database(prefix).await;
    let db = common::client(&url).await;
    db.batch_execute(
        "CREATE TABLE users (id bigserial PRIMARY KEY, user_name varchar(255) NOT NULL, email text);
         INSERT INTO users (user_name, email)
           SELECT 'user ' || g, 'u' || (g % 1000) || '@example.com' FROM generate_series(1, 2000) g;
         CREATE TABLE canary (id int);",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    url
}

/// The running app: inserts and updates `users` through v1's columns until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, Vec<String>)>,
}

fn start_writer(url: String) -> Writer {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let db = common::client(&url).await;
        let (mut ok, mut errors) = (0u64, Vec::new());
        let mut n: i64 = 0;
        while !flag.load(Ordering::SeqCst) {
            n += 1;
            let result = if n % 2 == 0 {
                db.execute(
                    "INSERT INTO users (user_name, email) VALUES ($1, $2)",
                    &[&format!("w{n}"), &format!("w{n}@writer")],
                )
                .await
            } else {
                db.execute(
                    "UPDATE users SET user_name = $1 WHERE id = $2",
                    &[&format!("u{n}"), &(n % 2000 + 1)],
                )
                .await
            };
            match result {
                Ok(_) => ok += 1,
                Err(e) => errors.push(format!("{e:?}")),
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (ok, errors)
    });
    Writer { stop, task }
}

async fn stop_writer(w: Writer) -> (u64, Vec<String>) {
    w.stop.store(true, Ordering::SeqCst);
    w.task.await.unwrap_or_else(|e| panic!("writer: {e}"))
}

/// Everything expand could leave on `users`: columns, indexes (with validity), constraints,
/// triggers and cutover's trigger functions.
async fn schema(url: &str) -> Vec<String> {
    let db = common::client(url).await;
    let rows = db
        .query(
            "SELECT 'column ' || attname || ' ' || format_type(atttypid, atttypmod)
               FROM pg_attribute WHERE attrelid = 'users'::regclass AND attnum > 0 AND NOT attisdropped
             UNION ALL SELECT 'index ' || c.relname || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'users'::regclass
             UNION ALL SELECT 'constraint ' || conname FROM pg_constraint WHERE conrelid = 'users'::regclass
             UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid = 'users'::regclass AND NOT tgisinternal
             UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE proname LIKE '\\_cutover%'
             UNION ALL SELECT 'table ' || relname FROM pg_class WHERE relname = 'canary'
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    rows.iter().map(|r| r.get(0)).collect()
}

/// `line:column` (1-based) of the first `needle` on the first line containing `line_has`.
fn position(text: &str, line_has: &str, needle: &str) -> String {
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(line_has))
        .unwrap_or_else(|| panic!("no line with {line_has}"));
    let col = line
        .find(needle)
        .unwrap_or_else(|| panic!("no {needle} in {line}"));
    format!("{}:{}", i + 1, line[..col].chars().count() + 1)
}

/// A fresh database (see [`database`]) and a directory holding the one migration `name`.
async fn setup(prefix: &str, name: &str, text: &str) -> (String, TempDir, Vec<Migration>) {
    let url = database(prefix).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("{e}"));
    let migrations = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (url, dir, migrations)
}

/// Runs expand (and, as a rollout does, the backfill when expand claims success) while v1
/// writes; returns expand's error and what the writer saw. Prints the figures.
async fn failing_expand(url: &str, migrations: &[Migration], label: &str) -> String {
    let options = common::options();
    let mut pg = Postgres::connect(url, &options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = schema(url).await;
    let writer = start_writer(url.to_owned());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expand = execute(&mut pg, migrations, &request(PhaseKind::Expand), &options).await;
    if expand.is_ok() {
        let backfill = execute(&mut pg, migrations, &request(PhaseKind::Backfill), &options).await;
        eprintln!("{label}: expand claimed success; backfill: {backfill:?}");
    }
    // The app keeps writing after the failure too: nothing of the failed expand may remain.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (ok, errors) = stop_writer(writer).await;
    let after = schema(url).await;
    eprintln!(
        "{label}: writer {ok} ok, {} errors{}",
        errors.len(),
        errors
            .first()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    assert!(ok > 50, "{label}: the writer ran ({ok} writes)");
    let err = match expand {
        Ok(out) => panic!("{label}: expand succeeded: {:?}", out.report.steps),
        Err(e) => e.to_string(),
    };
    eprintln!("{label}: expand failed with\n{err}");
    assert!(
        errors.is_empty(),
        "{label}: the app's writes failed: {errors:?}"
    );
    assert_eq!(before, after, "{label}: expand left the schema changed");
    let db = common::client(url).await;
    let phase: Vec<String> = db
        .query(
            "SELECT phase || coalesce(' running ' || running, '') FROM cutover_migrations",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default();
    assert!(
        phase.iter().all(|p| p == "pending"),
        "{label}: recorded as {phase:?}"
    );
    err
}

/// Expand of the migration `name` fails (see [`failing_expand`]) with an error pointing at
/// `needle` on the first line holding `line_has`; returns the error.
async fn fails_at(prefix: &str, name: &str, text: &str, line_has: &str, needle: &str) -> String {
    let (url, _dir, migrations) = setup(prefix, name, text).await;
    let err = failing_expand(&url, &migrations, prefix).await;
    let at = format!("{name}:{}", position(text, line_has, needle));
    assert!(err.contains(&at), "{err}\nexpected the location {at}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_column_that_does_not_exist_is_refused_before_expand_touches_anything() {
    let text = "description: rename a column v1 does not have
operations:
  - add_column:
      table: users
      column: nickname
      type: text
  - create_index:
      name: users_nickname_idx
      table: users
      columns: [nickname]
  - rename_column:
      table: users
      from: nope
      to: full_name
      type: varchar(255)
";
    let err = fails_at(
        "fail_missing",
        "001_rename.yaml",
        text,
        "from: nope",
        "nope",
    )
    .await;
    assert!(err.contains("nope") && err.contains("help:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn an_expression_that_does_not_compile_fails_expand_after_an_index_and_leaves_nothing() {
    let text = "description: an up expression calling a function that does not exist
operations:
  - create_index:
      name: users_email_idx
      table: users
      columns: [email]
  - add_column:
      table: users
      column: score
      type: integer
      up: no_such_function(user_name)
";
    fails_at(
        "fail_expr",
        "001_score.yaml",
        text,
        "up: no_such",
        "no_such",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_unique_index_failing_after_other_steps_undoes_the_whole_expand() {
    let text = "description: a NOT NULL column, its index, then a unique index over duplicates
operations:
  - add_column:
      table: users
      column: signup_source
      type: text
      nullable: false
      up: \"'legacy'\"
  - create_index:
      name: users_signup_source_idx
      table: users
      columns: [signup_source]
  - create_index:
      name: users_email_key
      table: users
      columns: [email]
      unique: true
";
    let (url, _dir, migrations) = setup("fail_unique", "001_unique.yaml", text).await;
    let err = failing_expand(&url, &migrations, "unique index over duplicates").await;
    assert!(err.contains("users_email_key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn an_expression_cannot_add_a_statement_of_its_own() {
    // `default` is SQL written by the migration's author, but one expression: cutover sends
    // each statement it builds alone, so a second statement fails the whole expand.
    let text = "operations:
  - create_index:
      name: users_email_idx
      table: users
      columns: [email]
  - add_column:
      table: users
      column: flag
      type: integer
      default: 0; DROP TABLE canary
";
    let err = fails_at(
        "fail_smuggle",
        "001_flag.yaml",
        text,
        "add_column",
        "add_column",
    )
    .await;
    assert!(err.contains("multiple commands"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_expand_runs_again_over_what_it_left() {
    let text = "operations:
  - add_column: {table: users, column: nickname, type: text}
  - create_index: {name: users_nickname_idx, table: users, columns: [nickname]}
";
    let (url, _dir, migrations) = setup("resume", "001_nick.yaml", text).await;
    let options = common::options();
    let mut pg = Postgres::connect(&url, &options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let db = common::client(&url).await;
    // The column exists but nothing says cutover made it: refused, it may be v1's.
    db.batch_execute("ALTER TABLE users ADD COLUMN nickname text")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = execute(&mut pg, &migrations, &request(PhaseKind::Expand), &options).await;
    let err = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("already exists"), "{err}");
    // The same after an expand of this migration was cut short (a crash after its first
    // transaction): expand runs again and completes.
    db.execute(
        "INSERT INTO cutover_migrations (name, checksum, phase, running) VALUES ($1, $2, 'pending', 'expand')",
        &[&migrations[0].name, &migrations[0].checksum],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    execute(&mut pg, &migrations, &request(PhaseKind::Expand), &options)
        .await
        .unwrap_or_else(|e| panic!("resumed expand: {e}"));
    assert!(
        schema(&url)
            .await
            .contains(&"index users_nickname_idx".to_owned())
    );
}
