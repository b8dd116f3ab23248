//! A throwaway PostgreSQL shared by one test binary, fresh databases on it, and plain SQL:
//! shared by the tests that run migrations end to end.
#![allow(dead_code)]

use std::sync::OnceLock;

use cutover_migrate::test_cluster::{self, Cluster};

/// The cluster, started on first use (or `DATABASE_URL`'s, see `test_cluster::start`).
pub fn cluster() -> &'static Cluster {
    static C: OnceLock<Result<Cluster, String>> = OnceLock::new();
    match C.get_or_init(test_cluster::start) {
        Ok(c) => c,
        Err(e) => panic!("cannot start PostgreSQL for the tests: {e}"),
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The URL of a new, empty database named after `prefix`.
pub fn fresh_database(prefix: &str) -> String {
    runtime()
        .block_on(test_cluster::fresh_database(&cluster().url, prefix))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `sql` (one or more statements) and returns the rows of its results as text.
pub fn sql(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(conn);
        let msgs = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        msgs.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()
    })
}
