//! What the single-host executor keeps about a rollout's migrations besides the database's own
//! `cutover_migrations` table: which revision each migration was expanded for (so an undo
//! behind a contracted migration can be refused) and the last failed run (so a failure stays
//! reported across passes and restarts until the next run starts).

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, Tx};

/// The last failed migration run of a rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationFailureRow {
    /// `expand+backfill`, `contract` or `rollback`.
    pub command: String,
    /// The migration, when known.
    pub migration: Option<String>,
    /// Hash of the revision it ran for.
    pub hash: String,
    /// The error.
    pub message: String,
    /// When it failed.
    pub at: Timestamp,
}

/// Schema step 3: the two tables.
pub(super) fn create_tables(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "BEGIN;
         CREATE TABLE migration_revisions (
           rollout TEXT NOT NULL, name TEXT NOT NULL, hash TEXT NOT NULL,
           revision INTEGER NOT NULL, PRIMARY KEY (rollout, name));
         CREATE TABLE migration_failures (
           rollout TEXT PRIMARY KEY, command TEXT NOT NULL, migration TEXT, hash TEXT NOT NULL,
           message TEXT NOT NULL, at TEXT NOT NULL);
         PRAGMA user_version = 3;
         COMMIT;",
    )?;
    Ok(())
}

impl Tx<'_> {
    /// Migration name → number of the revision it was last expanded for.
    pub fn migration_revisions(&self, rollout: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self
            .0
            .prepare("SELECT name, revision FROM migration_revisions WHERE rollout = ?1")?;
        let rows = stmt.query_map([rollout], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that `name` is expanded for a revision.
    pub fn set_migration_revision(
        &self,
        rollout: &str,
        name: &str,
        hash: &str,
        revision: i64,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO migration_revisions (rollout, name, hash, revision) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(rollout, name) DO UPDATE SET hash = excluded.hash, revision = excluded.revision",
            params![rollout, name, hash, revision],
        )?;
        Ok(())
    }

    /// The last failed run, if any.
    pub fn migration_failure(
        &self,
        rollout: &str,
    ) -> Result<Option<MigrationFailureRow>, StoreError> {
        let row = self
            .0
            .query_row(
                "SELECT command, migration, hash, message, at FROM migration_failures WHERE rollout = ?1",
                [rollout],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()?;
        Ok(row.map(
            |(command, migration, hash, message, at)| MigrationFailureRow {
                command,
                migration,
                hash,
                message,
                at: at.parse().unwrap_or(Timestamp::UNIX_EPOCH),
            },
        ))
    }

    /// Records a failed run (Some) or clears the record when a new run starts (None).
    pub fn set_migration_failure(
        &self,
        rollout: &str,
        failure: Option<&MigrationFailureRow>,
    ) -> Result<(), StoreError> {
        match failure {
            None => {
                self.0.execute(
                    "DELETE FROM migration_failures WHERE rollout = ?1",
                    [rollout],
                )?;
            }
            Some(f) => {
                self.0.execute(
                    "INSERT INTO migration_failures (rollout, command, migration, hash, message, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(rollout) DO UPDATE SET command = excluded.command,
                       migration = excluded.migration, hash = excluded.hash,
                       message = excluded.message, at = excluded.at",
                    params![rollout, f.command, f.migration, f.hash, f.message, f.at.to_string()],
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn revisions_and_failures_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let failure = MigrationFailureRow {
            command: "expand+backfill".into(),
            migration: Some("001".into()),
            hash: "abc".into(),
            message: "syntax error".into(),
            at: "2026-01-01T00:00:00Z".parse().expect("time"),
        };
        store
            .write(|tx| {
                tx.set_migration_revision("app", "001", "abc", 2)?;
                tx.set_migration_revision("app", "001", "def", 3)?;
                tx.set_migration_failure("app", Some(&failure))
            })
            .expect("write");
        let (revisions, read) = store
            .read(|tx| Ok((tx.migration_revisions("app")?, tx.migration_failure("app")?)))
            .expect("read");
        assert_eq!(revisions, vec![("001".to_string(), 3)]);
        assert_eq!(read, Some(failure));
        store
            .write(|tx| tx.set_migration_failure("app", None))
            .expect("clear");
        assert_eq!(
            store.read(|tx| tx.migration_failure("app")).expect("read"),
            None
        );
    }
}
