//! The PostgreSQL executor.
//!
//! Every statement runs under `lock_timeout` (default 500 ms): a DDL statement waiting behind a
//! long transaction would otherwise queue its ACCESS EXCLUSIVE request and block every reader
//! and writer that arrives after it. A timed-out group is rolled back and retried with jittered
//! exponential backoff. Runs are serialized by a session advisory lock, which PostgreSQL drops
//! by itself when the session dies, so a crash never leaves a stale lock behind.

mod backfill;
mod catalog;
mod exec;
mod lockwatch;

use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::plan::{Dialect, PhaseKind};
use crate::precheck::{Catalog, Wanted};
use crate::state::{Checkpoint, Forced, Phase, Record};
use crate::{Backend, Error, Options, PhaseRun, Report};

/// The state table, created on first use.
pub const STATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS cutover_migrations (
    name text PRIMARY KEY,
    checksum text NOT NULL,
    phase text NOT NULL CHECK (phase IN ('pending', 'expanded', 'backfilled', 'contracted', 'rolled_back')),
    running text,
    expanded_at timestamptz,
    backfilled_at timestamptz,
    contracted_at timestamptz,
    rolled_back_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    rows_backfilled bigint NOT NULL DEFAULT 0,
    checkpoint jsonb,
    forced_by text,
    forced_reason text,
    forced_gate text,
    forced_at timestamptz
)";

/// Key of the advisory lock that serializes `cutover migrate` runs on one database.
const ADVISORY_KEY: i64 = 0x0063_7574_6f76_6572; // "cutover" in ASCII

/// A connection to PostgreSQL.
pub struct Postgres {
    client: Client,
    locked: bool,
    /// Kept to open the backfill's lock-watching session.
    url: String,
}

pub(crate) fn pg_err(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let context = context.into();
    move |cause| Error::Postgres { context, cause }
}

fn is_lock_timeout(e: &Error) -> bool {
    matches!(e, Error::Postgres { cause, .. } if cause.code() == Some(&SqlState::LOCK_NOT_AVAILABLE))
}

/// Backoff before retry `attempt` (1-based): 100 ms doubling to 5 s, plus up to 50 % jitter so
/// several waiting tools do not retry in lockstep.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = 100u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(5000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    Duration::from_millis(base + nanos % (base / 2 + 1))
}

/// SQL string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn label(sql: &str) -> String {
    let first = sql.lines().next().unwrap_or_default();
    if first.len() > 72 {
        let cut = (0..=72)
            .rev()
            .find(|i| first.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}…", &first[..cut])
    } else {
        first.to_owned()
    }
}

impl Postgres {
    /// Connects (without TLS: cutover migrates over a local or private network) and sets the
    /// session's `lock_timeout`.
    pub async fn connect(url: &str, options: &Options) -> Result<Self, Error> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(pg_err("connecting"))?;
        tokio::spawn(async move {
            // The connection task ends when the client is dropped; an error here has already
            // surfaced to the caller as a failed query.
            let _ = connection.await;
        });
        let ms = options.lock_timeout.as_millis().max(1);
        client
            .batch_execute(&format!("SET lock_timeout = '{ms}ms'"))
            .await
            .map_err(pg_err("setting lock_timeout"))?;
        Ok(Self {
            client,
            locked: false,
            url: url.to_owned(),
        })
    }

    /// The underlying client (tests and benchmarks).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn lock(&mut self) -> Result<(), Error> {
        if self.locked {
            return Ok(());
        }
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&ADVISORY_KEY])
            .await
            .map_err(pg_err("taking the migration lock"))?;
        if !row.get::<_, bool>(0) {
            return Err(Error::Busy);
        }
        self.locked = true;
        self.client
            .batch_execute(STATE_TABLE)
            .await
            .map_err(pg_err("creating cutover_migrations"))
    }

    async fn mark_running(&mut self, run: &PhaseRun<'_>) -> Result<(), Error> {
        self.client
            .execute(
                "INSERT INTO cutover_migrations (name, checksum, phase, running) VALUES ($1, $2, 'pending', $3)
                 ON CONFLICT (name) DO UPDATE SET running = EXCLUDED.running, updated_at = now()",
                &[&run.migration.name, &run.migration.checksum, &run.phase.to_string()],
            )
            .await
            .map_err(pg_err("recording the start of the phase"))?;
        Ok(())
    }
}

/// Records the phase reached, inside the transaction that did the last of its work.
async fn record_phase(
    tx: &tokio_postgres::Transaction<'_>,
    run: &PhaseRun<'_>,
) -> Result<(), Error> {
    let column = match run.next {
        Phase::Expanded => "expanded_at",
        Phase::Backfilled => "backfilled_at",
        Phase::Contracted => "contracted_at",
        Phase::RolledBack => "rolled_back_at",
        Phase::Pending => "updated_at",
    };
    // A new expand starts a fresh history for the name (after a rollback, for instance).
    let reset = if run.next == Phase::Expanded {
        ", checksum = $2, rows_backfilled = 0, backfilled_at = NULL, contracted_at = NULL, rolled_back_at = NULL, forced_by = NULL, forced_reason = NULL, forced_gate = NULL, forced_at = NULL"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE cutover_migrations SET phase = $3, {column} = now(), updated_at = now(), running = NULL, checkpoint = NULL{reset}
         WHERE name = $1 AND $2::text IS NOT NULL"
    );
    tx.execute(
        &sql,
        &[
            &run.migration.name,
            &run.migration.checksum,
            &run.next.as_str(),
        ],
    )
    .await
    .map_err(pg_err("recording the phase"))?;
    if let Some(f) = run.forced {
        record_forced(tx, &run.migration.name, f).await?;
    }
    Ok(())
}

async fn record_forced(
    tx: &tokio_postgres::Transaction<'_>,
    name: &str,
    f: &Forced,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE cutover_migrations SET forced_by = $2, forced_reason = $3, forced_gate = $4, forced_at = now() WHERE name = $1",
        &[&name, &f.by, &f.reason, &f.gate],
    )
    .await
    .map_err(pg_err("recording the forced step"))?;
    Ok(())
}

/// A row as `row_to_json` writes it.
#[derive(Deserialize)]
struct Row {
    name: String,
    checksum: String,
    phase: String,
    expanded_at: Option<String>,
    backfilled_at: Option<String>,
    contracted_at: Option<String>,
    rolled_back_at: Option<String>,
    rows_backfilled: i64,
    checkpoint: Option<Checkpoint>,
    running: Option<String>,
    forced_by: Option<String>,
    forced_reason: Option<String>,
    forced_gate: Option<String>,
}

fn timestamp(text: Option<String>) -> Result<Option<jiff::Timestamp>, Error> {
    text.map(|t| {
        t.parse::<jiff::Timestamp>()
            .map_err(|e| Error::State(format!("timestamp {t}: {e}")))
    })
    .transpose()
}

impl Row {
    fn into_record(self) -> Result<Record, Error> {
        let phase = Phase::parse(&self.phase)
            .ok_or_else(|| Error::State(format!("phase `{}` of {}", self.phase, self.name)))?;
        Ok(Record {
            phase,
            expanded_at: timestamp(self.expanded_at)?,
            backfilled_at: timestamp(self.backfilled_at)?,
            contracted_at: timestamp(self.contracted_at)?,
            rolled_back_at: timestamp(self.rolled_back_at)?,
            rows_backfilled: self.rows_backfilled,
            checkpoint: self.checkpoint,
            forced: self.forced_by.map(|by| Forced {
                by,
                reason: self.forced_reason.unwrap_or_default(),
                gate: self.forced_gate.unwrap_or_default(),
            }),
            running: self.running,
            name: self.name,
            checksum: self.checksum,
        })
    }
}

impl Backend for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn records(&mut self) -> Result<Vec<Record>, Error> {
        let rows = self
            .client
            .query(
                "SELECT row_to_json(m)::text FROM cutover_migrations m
                 WHERE to_regclass('cutover_migrations') IS NOT NULL ORDER BY name",
                &[],
            )
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            // Not created yet: nothing has run on this database.
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(Vec::new()),
            Err(e) => return Err(pg_err("reading cutover_migrations")(e)),
        };
        rows.into_iter()
            .map(|r| {
                let text: String = r.get(0);
                serde_json::from_str::<Row>(&text)
                    .map_err(|e| Error::State(e.to_string()))
                    .and_then(Row::into_record)
            })
            .collect()
    }

    async fn catalog(&mut self, wanted: &Wanted) -> Result<Catalog, Error> {
        self.lock().await?;
        catalog::read(&self.client, wanted).await
    }

    async fn apply(&mut self, run: PhaseRun<'_>, options: &Options) -> Result<Report, Error> {
        self.lock().await?;
        self.mark_running(&run).await?;
        let mut report = Report::default();
        let mut applied = 0;
        match self
            .run_phase(&run, options, &mut report, &mut applied)
            .await
        {
            Ok(()) => Ok(report),
            Err((step, e)) => {
                // Said well enough by themselves: which statement waited, or that a Ctrl-C
                // stopped the backfill. Anything else is pointed at its operation.
                let failed = match e {
                    e @ (Error::Interrupted { .. } | Error::LockTimeout { .. }) => e,
                    e => Error::Step {
                        location: format!("step {step}"),
                        step,
                        cause: Box::new(e),
                        help: None,
                    },
                };
                if run.phase != PhaseKind::Expand {
                    return Err(failed);
                }
                Err(self.undo_expand(&run, applied, step, failed, options).await)
            }
        }
    }
}
