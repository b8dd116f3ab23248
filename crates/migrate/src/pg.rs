//! The PostgreSQL executor.
//!
//! Every statement runs under `lock_timeout` (default 500 ms): a DDL statement waiting behind a
//! long transaction would otherwise queue its ACCESS EXCLUSIVE request and block every reader
//! and writer that arrives after it. A timed-out group is rolled back and retried with jittered
//! exponential backoff. Runs are serialized by a session advisory lock, which PostgreSQL drops
//! by itself when the session dies, so a crash never leaves a stale lock behind.

mod backfill;

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::plan::{Dialect, PhaseKind, Step};
use crate::state::{Checkpoint, Forced, Phase, Record};
use crate::{Backend, Error, Options, PhaseRun, Report, StepTiming};

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
}

pub(crate) fn pg_err(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let context = context.into();
    move |source| Error::Postgres { context, source }
}

fn is_lock_timeout(e: &Error) -> bool {
    matches!(e, Error::Postgres { source, .. } if source.code() == Some(&SqlState::LOCK_NOT_AVAILABLE))
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

    /// Runs `stmts` (and the phase update) in one transaction, retrying on lock timeouts.
    async fn group(
        &mut self,
        stmts: &[&str],
        finish: Option<&PhaseRun<'_>>,
        options: &Options,
    ) -> Result<StepTiming, Error> {
        let mut attempt = 1;
        loop {
            let start = Instant::now();
            match self.try_group(stmts, finish).await {
                Ok(()) => {
                    let mut label = stmts.first().map_or("record phase".into(), |s| label(s));
                    if stmts.len() > 1 {
                        label.push_str(&format!(" (+{} more)", stmts.len() - 1));
                    }
                    return Ok(StepTiming {
                        label,
                        millis: start.elapsed().as_secs_f64() * 1000.0,
                        attempts: attempt,
                    });
                }
                Err(e) if is_lock_timeout(&e) && attempt < options.lock_attempts => {
                    let wait = backoff(attempt);
                    eprintln!(
                        "lock not available ({} ms lock_timeout), attempt {attempt}/{}: retrying in {} ms",
                        options.lock_timeout.as_millis(),
                        options.lock_attempts,
                        wait.as_millis()
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) if is_lock_timeout(&e) => {
                    return Err(Error::LockTimeout {
                        attempts: attempt,
                        step: stmts.first().map_or(String::new(), |s| label(s)),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_group(
        &mut self,
        stmts: &[&str],
        finish: Option<&PhaseRun<'_>>,
    ) -> Result<(), Error> {
        let tx = self.client.transaction().await.map_err(pg_err("BEGIN"))?;
        for sql in stmts {
            tx.batch_execute(sql).await.map_err(pg_err(label(sql)))?;
        }
        if let Some(run) = finish {
            record_phase(&tx, run).await?;
        }
        tx.commit().await.map_err(pg_err("COMMIT"))
    }

    /// A statement that cannot run in a transaction, retried on lock timeouts. An index left
    /// INVALID by an interrupted build is dropped first: `IF NOT EXISTS` would keep it.
    async fn concurrent(
        &mut self,
        sql: &str,
        index: Option<&str>,
        options: &Options,
    ) -> Result<StepTiming, Error> {
        const INVALID: &str = "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = $1 AND NOT i.indisvalid";
        let mut attempt = 1;
        loop {
            if let Some(index) = index {
                let rows = self
                    .client
                    .query(INVALID, &[&index])
                    .await
                    .map_err(pg_err("looking for an invalid index"))?;
                for row in rows {
                    let name: String = row.get(0);
                    self.client
                        .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                        .await
                        .map_err(pg_err("dropping an invalid index"))?;
                }
            }
            let start = Instant::now();
            let result = self
                .client
                .batch_execute(sql)
                .await
                .map_err(pg_err(label(sql)));
            match result {
                Ok(()) => {
                    return Ok(StepTiming {
                        label: label(sql),
                        millis: start.elapsed().as_secs_f64() * 1000.0,
                        attempts: attempt,
                    });
                }
                Err(e) if is_lock_timeout(&e) && attempt < options.lock_attempts => {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
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

    async fn apply(&mut self, run: PhaseRun<'_>, options: &Options) -> Result<Report, Error> {
        self.lock().await?;
        self.mark_running(&run).await?;
        let mut report = Report::default();
        let steps = run.steps;
        let mut i = 0;
        let resume_step = run.resume.as_ref().map_or(0, |c| c.step);
        while i < steps.len() {
            match &steps[i] {
                Step::Ddl { .. } => {
                    // Consecutive DDL shares one transaction; the last group also records
                    // the phase, so a crash leaves either all of it or none.
                    let start = i;
                    while i < steps.len() && matches!(steps[i], Step::Ddl { .. }) {
                        i += 1;
                    }
                    let stmts: Vec<&str> = steps[start..i]
                        .iter()
                        .filter_map(|s| match s {
                            Step::Ddl { sql } => Some(sql.as_str()),
                            _ => None,
                        })
                        .collect();
                    let finish = (i == steps.len()).then_some(&run);
                    report
                        .steps
                        .push(self.group(&stmts, finish, options).await?);
                    if i == steps.len() {
                        return Ok(report);
                    }
                    continue;
                }
                Step::Validate { sql } => {
                    report.steps.push(self.group(&[sql], None, options).await?);
                }
                Step::Concurrent { sql, index } => {
                    report
                        .steps
                        .push(self.concurrent(sql, index.as_deref(), options).await?);
                }
                Step::Backfill {
                    table,
                    column,
                    expr,
                } if i >= resume_step => {
                    let resume = run.resume.as_ref().filter(|c| c.step == i);
                    let target = backfill::Target {
                        migration: &run.migration.name,
                        step: i,
                        table,
                        column,
                        expr,
                    };
                    backfill::run(&self.client, &target, resume, options, &mut report).await?;
                }
                Step::Backfill { .. } => {}
            }
            i += 1;
        }
        let timing = self.group(&[], Some(&run), options).await?;
        if run.phase != PhaseKind::Backfill || report.steps.is_empty() {
            report.steps.push(timing);
        }
        Ok(report)
    }
}
