//! The check before expand over a hand-made catalog: what it refuses, where it points, and
//! what it lets through (columns added by earlier operations; anything after a raw_sql).

use std::path::Path;

use cutover_migrate::file::parse;
use cutover_migrate::precheck::{Catalog, Table, check, wanted};

/// users(id, user_name, email) with a primary key and a constraint; a view; `mood` exists.
fn catalog() -> Catalog {
    let mut c = Catalog::default();
    let users = Table {
        is_table: true,
        columns: vec!["id".into(), "user_name".into(), "email".into()],
        constraints: vec!["users_pkey".into()],
        batch_key: true,
    };
    let logs = Table {
        is_table: true,
        columns: vec!["line".into()],
        constraints: Vec::new(),
        batch_key: false,
    };
    let view = Table {
        is_table: false,
        columns: vec!["id".into()],
        ..Table::default()
    };
    c.tables.insert("users".into(), Some(users));
    c.tables.insert("logs".into(), Some(logs));
    c.tables.insert("users_view".into(), Some(view));
    c.tables.insert("nope".into(), None);
    for (ty, exists) in [("text", true), ("mood", true), ("moood", false)] {
        c.types.insert(ty.into(), exists);
    }
    c.taken.insert("users_pkey".into());
    c
}

fn outcome(ops: &str, resuming: bool) -> Result<(), String> {
    let text = format!("operations:\n{ops}");
    let m = parse(Path::new("m/001.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));
    check(&m, &catalog(), resuming).map_err(|e| e.to_string())
}

fn refused(ops: &str) -> String {
    outcome(ops, false)
        .err()
        .unwrap_or_else(|| panic!("accepted:\n{ops}"))
}

#[test]
fn refuses_what_does_not_fit_and_points_at_the_field() {
    // `«` marks where the error must point; it is removed before parsing.
    let cases = [
        (
            "  - add_column: {table: «nope, column: a, type: text}\n",
            "operations[0].add_column.table: table `nope` does not exist",
        ),
        (
            "  - add_column: {table: «users_view, column: a, type: text}\n",
            "operations[0].add_column.table: `users_view` is not a table",
        ),
        (
            "  - add_column: {table: users, column: «email, type: text}\n",
            "operations[0].add_column.column: column `email` already exists in `users`",
        ),
        (
            "  - add_column: {table: users, column: m, type: «moood}\n",
            "operations[0].add_column.type: type `moood` does not exist in the database",
        ),
        (
            "  - add_column: {table: «logs, column: n, type: text, up: \"1\"}\n",
            "operations[0].add_column.table: `logs` has no single-column primary key",
        ),
        (
            "  - rename_column: {table: users, from: «nope, to: b, type: text}\n",
            "operations[0].rename_column.from: column `nope` does not exist in `users` (its columns: id, user_name, email)",
        ),
        (
            "  - change_type: {table: users, from: email, to: «user_name, type: text}\n",
            "operations[0].change_type.to: column `user_name` already exists",
        ),
        (
            "  - drop_column: {table: users, column: «gone}\n",
            "operations[0].drop_column.column: column `gone` does not exist",
        ),
        (
            "  - create_index: {name: i, table: users, columns: [id, «nickname]}\n",
            "operations[0].create_index.columns[1]: column `nickname` does not exist",
        ),
        (
            "  - create_index: {name: «users_pkey, table: users, columns: [id]}\n",
            "operations[0].create_index.name: `users_pkey` is already the name of an index or table",
        ),
        (
            "  - add_constraint: {table: users, name: «users_pkey, check: id > 0}\n",
            "operations[0].add_constraint.name: `users` already has a constraint `users_pkey`",
        ),
        (
            "  - add_constraint:\n      table: users\n      name: fk\n      foreign_key: {columns: [email], references: «nope, referenced_columns: [id]}\n",
            "operations[0].add_constraint.foreign_key.references: table `nope` does not exist",
        ),
        (
            "  - add_constraint:\n      table: users\n      name: fk\n      foreign_key: {columns: [email], references: logs, referenced_columns: [«id]}\n",
            "operations[0].add_constraint.foreign_key.referenced_columns[0]: column `id` does not exist in `logs`",
        ),
    ];
    for (marked, want) in cases {
        let at = position(&format!("operations:\n{marked}"));
        let got = refused(&marked.replace('«', ""));
        let want = format!("m/001.yaml:{at}: {want}");
        assert!(
            got.starts_with(&want),
            "{marked}\n got: {got}\nwant: {want}…"
        );
        assert!(got.contains("\n  help: "), "{got}");
    }
}

/// `line:column` of the `«` marker.
fn position(text: &str) -> String {
    text.lines()
        .enumerate()
        .find_map(|(i, l)| {
            l.find('«')
                .map(|c| format!("{}:{}", i + 1, l[..c].chars().count() + 1))
        })
        .unwrap_or_else(|| panic!("no marker in {text}"))
}

#[test]
fn follows_earlier_operations_and_stops_judging_after_raw_sql() {
    // A column added (or renamed to) by an earlier operation exists for the later ones.
    let added = "  - add_column: {table: users, column: nickname, type: text}
  - rename_column: {table: users, from: nickname, to: handle, type: mood}
  - create_index: {name: users_handle_idx, table: users, columns: [handle]}
";
    assert_eq!(outcome(added, false), Ok(()));
    // …and cannot be added twice.
    let twice = "  - add_column: {table: users, column: nickname, type: text}
  - add_column: {table: users, column: nickname, type: text}
";
    assert!(refused(twice).starts_with("m/001.yaml:3:40: operations[1].add_column.column"));
    // raw_sql may create anything: missing names after it are not refused.
    let raw = "  - raw_sql: {expand: CREATE TABLE nope (id int primary key)}
  - add_column: {table: nope, column: a, type: moood}
";
    assert_eq!(outcome(raw, false), Ok(()));
    // Re-running an interrupted expand finds its own columns and index already there.
    let again = "  - add_column: {table: users, column: email, type: text}
  - create_index: {name: users_pkey, table: users, columns: [id]}
";
    assert_eq!(outcome(again, true), Ok(()));
}

#[test]
fn wanted_lists_each_table_once_with_referenced_ones() {
    let text = "operations:
  - add_column: {table: users, column: a, type: text}
  - add_constraint:
      table: users
      name: fk
      foreign_key: {columns: [a], references: app.accounts, referenced_columns: [id]}
  - create_index: {name: i, table: app.accounts, columns: [id]}
";
    let m = parse(Path::new("m/001.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
    let w = wanted(&m);
    let tables: Vec<String> = w.tables.iter().map(ToString::to_string).collect();
    assert_eq!(tables, ["users", "app.accounts"]);
    let indexes: Vec<String> = w.indexes.iter().map(ToString::to_string).collect();
    assert_eq!(indexes, ["app.i"]);
}
