//! A column `type` is a type, never SQL: one holding a statement is refused when the file is
//! read, with its location, and the database is never reached.

mod common;

use common::request;
use cutover_migrate::pg::Postgres;
use cutover_migrate::{PhaseKind, execute, load_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_holding_sql_is_refused_when_the_file_is_read() {
    let url = common::database("type_sql").await;
    let db = common::client(&url).await;
    db.batch_execute("CREATE TABLE users (id bigserial PRIMARY KEY); CREATE TABLE canary (id int)")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let text = "operations:
  - add_column:
      table: users
      column: x
      type: 'text; DROP TABLE canary; --'
";
    std::fs::write(dir.path().join("001_type.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
    let loaded = load_dir(dir.path());
    if let Ok(migrations) = &loaded {
        // What the file would do if it were accepted.
        let options = common::options();
        let mut pg = Postgres::connect(&url, &options)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let out = execute(&mut pg, migrations, &request(PhaseKind::Expand), &options).await;
        let canary = db
            .query_one("SELECT to_regclass('canary') IS NOT NULL", &[])
            .await;
        panic!(
            "the file was accepted; expand: {:?}; canary still there: {:?}",
            out.map(|o| o.verdict),
            canary.map(|r| r.get::<_, bool>(0))
        );
    }
    let err = loaded.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("001_type.yaml:5:13: operations[0].add_column.type: `text; DROP TABLE canary; --` is not a column type: unexpected `;`"),
        "{err}"
    );
    assert!(err.contains("\n  help: write a type name"), "{err}");
}
