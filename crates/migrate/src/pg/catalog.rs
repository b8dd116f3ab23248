//! Reads what PostgreSQL holds of the names a migration uses, for the check before expand.
//! Names are resolved as the migration's own statements resolve them (`to_regclass`,
//! `to_regtype`, on the connection's search path) and passed as parameters, never spliced.

use tokio_postgres::Client;

use super::pg_err;
use crate::Error;
use crate::precheck::{Catalog, Table, Wanted};

const TABLE: &str = "SELECT c.relkind IN ('r', 'p'),
    coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}'),
    coalesce((SELECT array_agg(k.conname::text) FROM pg_constraint k WHERE k.conrelid = c.oid), '{}'),
    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnatts = 1)
  FROM pg_class c WHERE c.oid = to_regclass($1)";

/// Looks up every table, type and index name in `wanted`.
pub(super) async fn read(client: &Client, wanted: &Wanted) -> Result<Catalog, Error> {
    let mut catalog = Catalog::default();
    for table in &wanted.tables {
        let row = client
            .query_opt(TABLE, &[&table.quoted()])
            .await
            .map_err(pg_err(format!("reading the columns of {table}")))?;
        let found = row.map(|r| Table {
            is_table: r.get(0),
            columns: r.get(1),
            constraints: r.get(2),
            batch_key: r.get(3),
        });
        catalog.tables.insert(table.to_string(), found);
    }
    for ty in &wanted.types {
        // The type text comes from the type grammar, so to_regtype can only answer, not fail.
        let exists: bool = client
            .query_one("SELECT to_regtype($1) IS NOT NULL", &[&ty.as_str()])
            .await
            .map_err(pg_err(format!("looking up the type {ty}")))?
            .get(0);
        catalog.types.insert(ty.as_str().to_owned(), exists);
    }
    for index in &wanted.indexes {
        let taken: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&index.quoted()])
            .await
            .map_err(pg_err(format!("looking up the name {index}")))?
            .get(0);
        if taken {
            catalog.taken.insert(index.to_string());
        }
    }
    Ok(catalog)
}
