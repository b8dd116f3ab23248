//! Shared by the PostgreSQL tests: one throwaway cluster per test binary, a fresh database per
//! test, and the example migrations.
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cutover_migrate::pg::Postgres;
use cutover_migrate::test_cluster::{self, Cluster};
use cutover_migrate::{Migration, Options, PhaseKind, Request, execute};

/// The cluster; a missing PostgreSQL fails the test with the reason (never a silent skip).
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match CLUSTER.get_or_init(test_cluster::start) {
        Ok(c) => c,
        Err(e) => panic!("cannot start PostgreSQL for the tests: {e}"),
    }
}

/// A fresh database's URL.
pub async fn database(prefix: &str) -> String {
    test_cluster::fresh_database(&cluster().url, prefix)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/migrations")
}

/// The example migrations whose names start with one of `prefixes`.
pub fn example_migrations(prefixes: &[&str]) -> Vec<Migration> {
    cutover_migrate::load_dir(&examples())
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|m| prefixes.iter().any(|p| m.name.starts_with(p)))
        .collect()
}

pub fn options() -> Options {
    Options {
        batch_size: 500,
        ..Options::default()
    }
}

/// A plain client.
pub async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    tokio::spawn(conn);
    client
}

/// A request for `command` on the default migration, with no rollout state and no bake.
pub fn request(command: PhaseKind) -> Request {
    Request {
        command,
        target: None,
        rollout: None,
        bake: jiff::SignedDuration::ZERO,
        force: None,
        now: jiff::Timestamp::now(),
    }
}

/// Connects to `url` and runs the first migration of `migrations` (000, which creates the users
/// table) to its end: expand, backfill, contract. The scenarios start from there.
pub async fn connect_with_users_table(
    url: &str,
    migrations: &[Migration],
    options: &Options,
) -> Postgres {
    let mut pg = Postgres::connect(url, options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for c in [PhaseKind::Expand, PhaseKind::Backfill, PhaseKind::Contract] {
        execute(&mut pg, migrations, &request(c), options)
            .await
            .unwrap_or_else(|e| panic!("000 {c}: {e}"));
    }
    pg
}
