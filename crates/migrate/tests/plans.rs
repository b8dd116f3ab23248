//! Plans are data: these snapshots pin the SQL each phase runs, and the file errors.

use std::path::Path;

use cutover_migrate::{Dialect, Error, compile, file::parse, load_dir};

fn examples() -> Vec<cutover_migrate::Migration> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/migrations");
    load_dir(&dir).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn example_plans_postgres() {
    for m in examples() {
        let plan = compile(&m, Dialect::Postgres).unwrap_or_else(|e| panic!("{e}"));
        insta::assert_snapshot!(format!("pg_{}", m.name), plan.to_string());
    }
}

#[test]
fn example_plans_sqlite() {
    for m in examples() {
        match compile(&m, Dialect::Sqlite) {
            Ok(plan) => insta::assert_snapshot!(format!("sqlite_{}", m.name), plan.to_string()),
            Err(e) => insta::assert_snapshot!(format!("sqlite_{}", m.name), e.to_string()),
        }
    }
}

fn error(text: &str) -> String {
    match parse(Path::new("m/001_x.yaml"), text) {
        Err(e @ Error::File { .. }) => e.to_string(),
        other => panic!("expected a file error, got {other:?}"),
    }
}

#[test]
fn bad_files_name_file_and_line() {
    let cases = [
        // unknown operation
        "operations:\n  - add_colum:\n      table: users\n",
        // unknown field inside an operation
        "operations:\n  - add_column:\n      table: users\n      column: a\n      type: text\n      nulable: false\n",
        // an identifier that would need quoting
        "operations:\n  - drop_column:\n      table: users\n      column: \"a; DROP TABLE users\"\n",
        // NOT NULL without default or up
        "description: x\noperations:\n  - add_column:\n      table: users\n      column: a\n      type: text\n      nullable: false\n",
        // a volatile default rewrites the table
        "operations:\n  - add_column:\n      table: t\n      column: a\n      type: uuid\n      default: gen_random_uuid()\n",
        // YAML syntax
        "operations:\n  - raw_sql: {expand: \"x\"\n",
        // empty
        "operations: []\n",
    ];
    let got: Vec<String> = cases.iter().map(|c| error(c)).collect();
    insta::assert_snapshot!(got.join("\n"));
}
