//! `spec.migrations` in `cutover lint`: each problem names file:line:column, the field and the
//! fix. Snapshots hold the exact rendering.

mod common;

use common::{ROLLOUT, lint, lint_rollout};
use insta::assert_snapshot;

/// The directory of the example migrations, absolute (the fixture's file has no directory).
fn examples_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/migrations").to_string()
}

fn with_migrations(block: &str) -> String {
    format!("{ROLLOUT}  migrations:\n{block}")
}

fn valid_block() -> String {
    format!(
        "    source: {{dir: {}}}\n    databaseUrlFrom: {{env: DATABASE_URL}}\n    bake: 336h\n    contract: manual\n",
        examples_dir()
    )
}

#[test]
fn valid_migrations_load() {
    assert_eq!(lint_rollout(&with_migrations(&valid_block())), "ok");
}

#[test]
fn unknown_contract_mode() {
    let block = valid_block().replace("contract: manual", "contract: sometimes");
    assert_snapshot!(lint_rollout(&with_migrations(&block)));
}

#[test]
fn bad_bake_duration() {
    let block = valid_block().replace("bake: 336h", "bake: 14 days");
    assert_snapshot!(lint_rollout(&with_migrations(&block)));
}

#[test]
fn missing_migration_directory() {
    let block = valid_block().replace(&examples_dir(), "./no-such-migrations");
    assert_snapshot!(lint_rollout(&with_migrations(&block)));
}

#[test]
fn source_and_url_need_exactly_one_form() {
    let block = format!(
        "    source: {{dir: {}, configMapRef: {{name: m}}}}\n    databaseUrlFrom: {{}}\n",
        examples_dir()
    );
    assert_snapshot!(lint_rollout(&with_migrations(&block)).replace(&examples_dir(), "<dir>"));
}

#[test]
fn kubernetes_forms_load() {
    let block = "    source: {configMapRef: {name: my-app-migrations}}\n    databaseUrlFrom: {secretKeyRef: {name: my-app-db, key: url}}\n    contract: auto\n";
    assert_eq!(lint_rollout(&with_migrations(block)), "ok");
}

#[test]
fn the_migrations_example_lints() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/migrations/rollout"
    );
    let path = format!("{dir}/my-app.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(lint(&[(path.as_str(), text.as_str())]), "ok");
}
