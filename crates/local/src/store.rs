//! The single-host state: one SQLite file (WAL) under the state directory holding the applied
//! objects, each Rollout's status, its revisions (template, size, scale-down deadline), the
//! replica records needed to re-adopt processes after a crash, AnalysisRuns and events.
//!
//! Everything one controller pass changes is written in one transaction, so a crash leaves
//! either the state before the pass or after it; the next pass re-observes and re-plans.

mod migrations;
mod outbox;
mod quarantine;

pub use migrations::MigrationFailureRow;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use cutover_core::api::{Rollout, RolloutStatus};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

/// Schema version written to `PRAGMA user_version`; bump with a migration step in `migrate`.
const SCHEMA_VERSION: i64 = 5;

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused an operation (corrupt file, disk full, locked by another daemon).
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored object no longer parses (written by an incompatible version).
    #[error("state database holds an unreadable {what}: {source}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The state file was written by a newer cutover.
    #[error(
        "state database schema {found} is newer than this cutover understands ({SCHEMA_VERSION}): upgrade cutover"
    )]
    TooNew {
        /// The version found.
        found: i64,
    },
    /// No such rollout.
    #[error("rollout {0:?} not found: apply its manifest first (`cutover apply -f FILE`)")]
    NotFound(String),
    /// The state file could not be created or opened.
    #[error("state database {path}: {source}; check that the state directory is writable")]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A revision as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionRow {
    /// Pod-template hash.
    pub hash: String,
    /// Revision number.
    pub revision: i64,
    /// Its pod template (for starting processes and for undo).
    pub template: PodTemplateSpec,
    /// Pods asked for.
    pub desired: i32,
    /// Scale-down deadline.
    pub deadline: Option<Timestamp>,
    /// Role whose metadata it carries ("Active", "Preview" or none).
    pub role: Option<String>,
    /// The number it was created with (renumbering keeps it).
    pub created_revision: i64,
    /// The role's metadata last recorded for it (JSON).
    pub role_metadata: Option<String>,
}

/// An AnalysisRun as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRow {
    /// Run name.
    pub name: String,
    /// "pre" or "post".
    pub kind: String,
    /// Revision analysed.
    pub hash: String,
    /// Phase name (`AnalysisPhase` as text).
    pub phase: String,
    /// Message.
    pub message: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Asked to stop.
    pub terminated: bool,
    /// Number of the revision (update) it analyses; None for runs stored before numbers were
    /// recorded.
    pub revision: Option<i64>,
}

/// A run's rollout, resolved spec (JSON) and status (JSON).
pub type RunState = (String, Option<String>, Option<String>);

/// A stored event.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventRow {
    /// When.
    pub at: Timestamp,
    /// "Normal" or "Warning".
    pub severity: String,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
}

/// The state database.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) `<dir>/state.db`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("state.db");
        // Made owner-only before SQLite sees it: SQLite gives its WAL and shared-memory files
        // the database file's permissions.
        crate::private::open_append(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one transaction, committed when it returns Ok and rolled back otherwise.
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.conn();
        let tx = Tx(conn.transaction().map_err(StoreError::from)?);
        let out = f(&tx)?;
        tx.0.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// Reads inside one (read) transaction, for a consistent snapshot.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        let tx = Tx(conn.transaction()?);
        f(&tx)
    }
}

/// A transaction over the state.
pub struct Tx<'c>(Transaction<'c>);

impl Tx<'_> {
    /// Every rollout, by name.
    pub fn rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        let mut stmt = self
            .0
            .prepare("SELECT object FROM rollouts ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|text| parse(&text?, "rollout")).collect()
    }

    /// One rollout.
    pub fn rollout(&self, name: &str) -> Result<Option<Rollout>, StoreError> {
        let text: Option<String> = self
            .0
            .query_row("SELECT object FROM rollouts WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        text.map(|t| parse(&t, "rollout")).transpose()
    }

    /// Inserts or replaces a rollout (spec, metadata and status together).
    pub fn put_rollout(&self, rollout: &Rollout) -> Result<(), StoreError> {
        let name = rollout.metadata.name.clone().unwrap_or_default();
        self.0.execute(
            "INSERT INTO rollouts (name, object) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET object = excluded.object",
            params![name, to_json(rollout)],
        )?;
        Ok(())
    }

    /// Writes a rollout's status, keeping its spec.
    pub fn put_status(&self, name: &str, status: &RolloutStatus) -> Result<(), StoreError> {
        let mut rollout = self
            .rollout(name)?
            .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        rollout.status = Some(status.clone());
        self.put_rollout(&rollout)
    }

    /// Every Service.
    pub fn services(&self) -> Result<Vec<Service>, StoreError> {
        let mut stmt = self
            .0
            .prepare("SELECT object FROM services ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|text| parse(&text?, "service")).collect()
    }

    /// Inserts or replaces a Service.
    pub fn put_service(&self, service: &Service) -> Result<(), StoreError> {
        let name = service.metadata.name.clone().unwrap_or_default();
        self.0.execute(
            "INSERT INTO services (name, object) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET object = excluded.object",
            params![name, to_json(service)],
        )?;
        Ok(())
    }

    /// Inserts or replaces another applied object (analysis templates) by kind and name.
    pub fn put_object(&self, kind: &str, name: &str, json: &str) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO objects (kind, name, object) VALUES (?1, ?2, ?3)
             ON CONFLICT(kind, name) DO UPDATE SET object = excluded.object",
            params![kind, name, json],
        )?;
        Ok(())
    }

    /// Revisions of a rollout, oldest first.
    pub fn revisions(&self, rollout: &str) -> Result<Vec<RevisionRow>, StoreError> {
        let mut stmt = self.0.prepare(
            "SELECT hash, revision, template, desired, deadline, role, created_revision,
                    role_metadata FROM revisions
             WHERE rollout = ?1 ORDER BY revision",
        )?;
        let rows = stmt.query_map([rollout], |r| {
            Ok((
                (
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i32>(3)?,
                ),
                (
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ),
            ))
        })?;
        rows.map(|row| {
            let ((hash, revision, template, desired), (deadline, role, created, role_metadata)) =
                row?;
            Ok(RevisionRow {
                hash,
                revision,
                template: parse(&template, "revision template")?,
                desired,
                deadline: deadline.and_then(|d| d.parse().ok()),
                role,
                created_revision: created.unwrap_or(revision),
                role_metadata,
            })
        })
        .collect()
    }

    /// Adds a revision.
    pub fn insert_revision(&self, rollout: &str, row: &RevisionRow) -> Result<(), StoreError> {
        self.0.execute(
            // The creation time is display-only bookkeeping (AGE), so the database's clock is
            // good enough and the planner's `now` need not travel here.
            "INSERT OR IGNORE INTO revisions (rollout, hash, revision, template, desired, deadline,
               role, created_revision, role_metadata, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            params![
                rollout,
                row.hash,
                row.revision,
                to_json(&row.template),
                row.desired,
                row.deadline.map(|d| d.to_string()),
                row.role,
                row.created_revision,
                row.role_metadata
            ],
        )?;
        Ok(())
    }

    /// Gives a revision a new number (it became current again); its creation number stays.
    pub fn set_revision_number(
        &self,
        rollout: &str,
        hash: &str,
        revision: i64,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE revisions SET revision = ?3 WHERE rollout = ?1 AND hash = ?2",
            params![rollout, hash, revision],
        )?;
        Ok(())
    }

    /// When each revision of a rollout was created (hash → time); revisions stored before the
    /// time was kept are missing.
    pub fn revision_created_at(
        &self,
        rollout: &str,
    ) -> Result<BTreeMap<String, Timestamp>, StoreError> {
        let mut stmt = self.0.prepare(
            "SELECT hash, created_at FROM revisions WHERE rollout = ?1 AND created_at IS NOT NULL",
        )?;
        let rows = stmt.query_map([rollout], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (hash, at) = row?;
            if let Ok(at) = at.parse() {
                out.insert(hash, at);
            }
        }
        Ok(out)
    }

    /// Sets a revision's size.
    pub fn set_desired(&self, rollout: &str, hash: &str, desired: i32) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE revisions SET desired = ?3 WHERE rollout = ?1 AND hash = ?2",
            params![rollout, hash, desired],
        )?;
        Ok(())
    }

    /// Sets or clears a revision's scale-down deadline.
    pub fn set_deadline(
        &self,
        rollout: &str,
        hash: &str,
        deadline: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE revisions SET deadline = ?3 WHERE rollout = ?1 AND hash = ?2",
            params![rollout, hash, deadline.map(|d| d.to_string())],
        )?;
        Ok(())
    }

    /// Sets a revision's role.
    pub fn set_role(
        &self,
        rollout: &str,
        hash: &str,
        role: Option<&str>,
        metadata: Option<&str>,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE revisions SET role = ?3, role_metadata = ?4 WHERE rollout = ?1 AND hash = ?2",
            params![rollout, hash, role, metadata],
        )?;
        Ok(())
    }

    /// Deletes a revision and its replica records.
    pub fn delete_revision(&self, rollout: &str, hash: &str) -> Result<(), StoreError> {
        self.0.execute(
            "DELETE FROM revisions WHERE rollout = ?1 AND hash = ?2",
            params![rollout, hash],
        )?;
        Ok(())
    }

    /// The replica records (JSON) of a revision, for re-adoption after a crash.
    pub fn replica_records(&self, rollout: &str, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .0
            .query_row(
                "SELECT replicas FROM revisions WHERE rollout = ?1 AND hash = ?2",
                params![rollout, hash],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }

    /// Saves the replica records (JSON) of a revision.
    pub fn set_replica_records(
        &self,
        rollout: &str,
        hash: &str,
        json: &str,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE revisions SET replicas = ?3 WHERE rollout = ?1 AND hash = ?2",
            params![rollout, hash, json],
        )?;
        Ok(())
    }

    /// Appends events.
    pub fn add_events(&self, rollout: &str, events: &[EventRow]) -> Result<(), StoreError> {
        let mut stmt = self.0.prepare(
            "INSERT INTO events (rollout, at, severity, reason, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for e in events {
            stmt.execute(params![
                rollout,
                e.at.to_string(),
                e.severity,
                e.reason,
                e.message
            ])?;
        }
        // Keep the newest 1000 events of a rollout.
        self.0.execute(
            "DELETE FROM events WHERE rollout = ?1 AND id NOT IN
               (SELECT id FROM events WHERE rollout = ?1 ORDER BY id DESC LIMIT 1000)",
            [rollout],
        )?;
        Ok(())
    }

    /// The newest `limit` events of a rollout, oldest first.
    pub fn events(&self, rollout: &str, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self.0.prepare(
            "SELECT at, severity, reason, message FROM
               (SELECT * FROM events WHERE rollout = ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![rollout, limit], |r| {
            Ok(EventRow {
                at: r
                    .get::<_, String>(0)?
                    .parse()
                    .unwrap_or(Timestamp::UNIX_EPOCH),
                severity: r.get(1)?,
                reason: r.get(2)?,
                message: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// AnalysisRuns of a rollout.
    pub fn runs(&self, rollout: &str) -> Result<Vec<RunRow>, StoreError> {
        let mut stmt = self.0.prepare(
            "SELECT name, kind, hash, phase, message, created_at, terminated, revision FROM runs
             WHERE rollout = ?1 ORDER BY created_at",
        )?;
        let rows = stmt.query_map([rollout], |r| {
            Ok(RunRow {
                name: r.get(0)?,
                kind: r.get(1)?,
                hash: r.get(2)?,
                phase: r.get(3)?,
                message: r.get(4)?,
                created_at: r
                    .get::<_, String>(5)?
                    .parse()
                    .unwrap_or(Timestamp::UNIX_EPOCH),
                terminated: r.get(6)?,
                revision: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds or updates an AnalysisRun.
    pub fn put_run(&self, rollout: &str, run: &RunRow) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO runs (name, rollout, kind, hash, phase, message, created_at, terminated,
               revision)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(name) DO UPDATE SET phase = excluded.phase, message = excluded.message,
               terminated = excluded.terminated",
            params![
                run.name,
                rollout,
                run.kind,
                run.hash,
                run.phase,
                run.message,
                run.created_at.to_string(),
                run.terminated,
                run.revision
            ],
        )?;
        Ok(())
    }

    /// Stores a run's resolved spec and status (JSON), with its phase and message.
    pub fn set_run_state(
        &self,
        name: &str,
        phase: &str,
        message: Option<&str>,
        spec: Option<&str>,
        status: Option<&str>,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE runs SET phase = ?2, message = ?3, spec = COALESCE(?4, spec),
               status = COALESCE(?5, status) WHERE name = ?1",
            params![name, phase, message, spec, status],
        )?;
        Ok(())
    }

    /// A run's rollout, resolved spec and status (JSON), if stored.
    pub fn run_state(&self, name: &str) -> Result<Option<RunState>, StoreError> {
        Ok(self
            .0
            .query_row(
                "SELECT rollout, spec, status FROM runs WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?)
    }

    /// Names of runs in a phase, with their rollouts (for resuming after a restart).
    pub fn runs_in_phase(&self, phase: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .0
            .prepare("SELECT name, rollout FROM runs WHERE phase = ?1 ORDER BY created_at")?;
        let rows = stmt.query_map([phase], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every applied object of a kind (analysis templates), as JSON, by name.
    pub fn objects(&self, kind: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .0
            .prepare("SELECT object FROM objects WHERE kind = ?1 ORDER BY name")?;
        let rows = stmt.query_map([kind], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Another applied object (an analysis template) by kind and name, as JSON.
    pub fn object(&self, kind: &str, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .0
            .query_row(
                "SELECT object FROM objects WHERE kind = ?1 AND name = ?2",
                params![kind, name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Deletes an AnalysisRun.
    pub fn delete_run(&self, name: &str) -> Result<(), StoreError> {
        self.0.execute("DELETE FROM runs WHERE name = ?1", [name])?;
        Ok(())
    }

    /// The selector hash the router applies to a Service, and since when.
    pub fn selector(&self, service: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .0
            .query_row(
                "SELECT hash FROM selectors WHERE service = ?1",
                [service],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Points a Service's selector at a hash.
    pub fn set_selector(&self, service: &str, hash: &str) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO selectors (service, hash) VALUES (?1, ?2)
             ON CONFLICT(service) DO UPDATE SET hash = excluded.hash",
            params![service, hash],
        )?;
        Ok(())
    }
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew { found: version });
    }
    if version < 1 {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE rollouts (name TEXT PRIMARY KEY, object TEXT NOT NULL);
             CREATE TABLE services (name TEXT PRIMARY KEY, object TEXT NOT NULL);
             CREATE TABLE objects (kind TEXT NOT NULL, name TEXT NOT NULL, object TEXT NOT NULL,
                                   PRIMARY KEY (kind, name));
             CREATE TABLE revisions (
               rollout TEXT NOT NULL, hash TEXT NOT NULL, revision INTEGER NOT NULL,
               template TEXT NOT NULL, desired INTEGER NOT NULL DEFAULT 0,
               deadline TEXT, role TEXT, replicas TEXT,
               PRIMARY KEY (rollout, hash));
             CREATE TABLE selectors (service TEXT PRIMARY KEY, hash TEXT NOT NULL);
             CREATE TABLE runs (
               name TEXT PRIMARY KEY, rollout TEXT NOT NULL, kind TEXT NOT NULL,
               hash TEXT NOT NULL, phase TEXT NOT NULL, message TEXT,
               created_at TEXT NOT NULL, terminated INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE events (
               id INTEGER PRIMARY KEY AUTOINCREMENT, rollout TEXT NOT NULL, at TEXT NOT NULL,
               severity TEXT NOT NULL, reason TEXT NOT NULL, message TEXT NOT NULL);
             CREATE INDEX events_by_rollout ON events (rollout, id);
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    if version < 2 {
        // The analysis engine keeps each run's resolved spec (metrics after argument
        // substitution) and its whole AnalysisRunStatus, so a restarted daemon resumes it.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE runs ADD COLUMN spec TEXT;
             ALTER TABLE runs ADD COLUMN status TEXT;
             PRAGMA user_version = 2;
             COMMIT;",
        )?;
    }
    if version < 3 {
        migrations::create_tables(conn)?;
    }
    if version < 4 {
        // Revisions brought back get a new number; the creation number orders them (the
        // rollback window) and is what migrations record. Runs remember their update's number.
        // When each revision was created is kept for the AGE column of `get rollout`
        // (revisions made before this step have none).
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE revisions ADD COLUMN created_revision INTEGER;
             UPDATE revisions SET created_revision = revision;
             ALTER TABLE revisions ADD COLUMN role_metadata TEXT;
             ALTER TABLE runs ADD COLUMN revision INTEGER;
             ALTER TABLE revisions ADD COLUMN created_at TEXT;
             PRAGMA user_version = 4;
             COMMIT;",
        )?;
    }
    if version < 5 {
        outbox::create_table(conn)?;
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Plain data types always serialize.
    serde_json::to_string(value).unwrap_or_default()
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &'static str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_core::fixtures::RolloutBuilder;

    #[test]
    fn rollouts_revisions_and_events_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rollout = RolloutBuilder::new("app").build();
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .write(|tx| {
                    tx.put_rollout(&rollout)?;
                    tx.insert_revision(
                        "app",
                        &RevisionRow {
                            hash: "h1".into(),
                            revision: 1,
                            template: rollout.spec.template.clone(),
                            desired: 3,
                            deadline: None,
                            role: None,
                            created_revision: 1,
                            role_metadata: None,
                        },
                    )?;
                    tx.set_selector("app-active", "h1")?;
                    tx.add_events(
                        "app",
                        &[EventRow {
                            at: Timestamp::UNIX_EPOCH,
                            severity: "Normal".into(),
                            reason: "RolloutUpdated".into(),
                            message: "m".into(),
                        }],
                    )
                })
                .expect("write");
        }
        let store = Store::open(dir.path()).expect("reopen");
        store
            .read(|tx| {
                assert_eq!(tx.rollout("app")?, Some(rollout.clone()));
                assert_eq!(tx.revisions("app")?[0].desired, 3);
                assert_eq!(tx.selector("app-active")?.as_deref(), Some("h1"));
                assert_eq!(tx.events("app", 10)?.len(), 1);
                Ok(())
            })
            .expect("read");
    }

    #[test]
    fn a_failed_transaction_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let result: Result<(), StoreError> = store.write(|tx| {
            tx.put_rollout(&RolloutBuilder::new("app").build())?;
            Err(StoreError::NotFound("boom".into()))
        });
        assert!(result.is_err());
        assert_eq!(store.read(|tx| tx.rollouts()).expect("read").len(), 0);
    }
}
