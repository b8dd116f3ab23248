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
        // SQL in a type: refused when the file is read, pointing at the value
        "operations:\n  - add_column:\n      table: canary\n      column: x\n      type: 'text; DROP TABLE canary; --'\n",
        // serial adds a volatile default
        "operations:\n  - rename_column: {table: t, from: a, to: b, type: bigserial}\n",
        // ON DELETE is a keyword from a list, not SQL
        "operations:\n  - add_constraint:\n      table: t\n      name: fk\n      foreign_key:\n        columns: [a]\n        references: u\n        referenced_columns: [id]\n        on_delete: cascade; DROP TABLE u\n",
    ];
    let got: Vec<String> = cases.iter().map(|c| error(c)).collect();
    insta::assert_snapshot!(got.join("\n"));
}

#[test]
fn sqlite_refuses_types_it_does_not_have_with_the_location() {
    let text =
        "operations:\n  - add_column:\n      table: t\n      column: tags\n      type: text[]\n";
    let m = parse(Path::new("m/001_tags.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
    let err = compile(&m, Dialect::Sqlite)
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err("m/001_tags.yaml:5:13: operations[0].add_column.type: `text[]`: SQLite has no array types\n  help: use one of SQLite's type names (integer, text, real, blob, numeric), or store the value as text (e.g. JSON)".to_owned())
    );
    assert!(compile(&m, Dialect::Postgres).is_ok());
}
