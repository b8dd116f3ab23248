//! SQLite, for the embedded single-host demo: a reduced mode. SQLite has one writer at a time
//! and no online table rebuilds, so cutover offers what it can do without blocking: new
//! columns (nullable or with a constant default), two-column sync with AFTER triggers, batched
//! backfill by rowid, DROP COLUMN at contract. NOT NULL on an existing column and new
//! constraints need a table rebuild there and are refused with the reason.

use std::path::Path;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};

use crate::file::{AddColumn, DualWrite};
use crate::pacing::{BatchSignal, Pacer};
use crate::plan::{Dialect, Plan, Step, ddl, trigger_name};
use crate::precheck::{Catalog, Table, Wanted};
use crate::state::{Checkpoint, Forced, Phase, Record};
use crate::{Backend, Error, Options, PhaseRun, Report, StepTiming};

/// While this table has a row, the sync triggers stand still: the backfill and the triggers'
/// own updates insert one inside their write transaction, which no other connection can see.
const PAUSE: &str = "_cutover_sync_pause";

fn paused(body: &str) -> String {
    format!("INSERT INTO {PAUSE} VALUES (1); {body}; DELETE FROM {PAUSE};")
}

/// Compiles `rename_column`/`change_type` for SQLite.
pub(crate) fn dual_write(d: &DualWrite, plan: &mut Plan, rb: &mut Vec<Step>) {
    let table = d.table.quoted();
    let (from, to) = (d.from.quoted(), d.to.quoted());
    let up = d.up.as_ref().map_or(d.from.to_string(), |u| u.to_string());
    let down = d.down.as_ref().map_or(d.to.to_string(), |u| u.to_string());
    let base = trigger_name("sync", &d.table, &d.to);
    let idle = format!("NOT EXISTS (SELECT 1 FROM {PAUSE})");
    let names = ["i", "f", "t"].map(|s| format!("\"{}_{s}\"", base.as_str()));
    plan.expand.push(ddl(format!(
        "ALTER TABLE {table} ADD COLUMN {to} {}",
        d.sql_type
    )));
    plan.expand.push(ddl(format!(
        "CREATE TRIGGER IF NOT EXISTS {} AFTER INSERT ON {table} WHEN {idle} BEGIN {} END",
        names[0],
        paused(&format!(
            "UPDATE {table} SET {to} = CASE WHEN NEW.{to} IS NULL THEN ({up}) ELSE {to} END, {from} = CASE WHEN NEW.{from} IS NULL THEN ({down}) ELSE {from} END WHERE rowid = NEW.rowid"
        ))
    )));
    plan.expand.push(ddl(format!(
        "CREATE TRIGGER IF NOT EXISTS {} AFTER UPDATE OF {from} ON {table} WHEN {idle} AND NEW.{from} IS NOT OLD.{from} AND NEW.{to} IS OLD.{to} BEGIN {} END",
        names[1],
        paused(&format!(
            "UPDATE {table} SET {to} = ({up}) WHERE rowid = NEW.rowid"
        ))
    )));
    plan.expand.push(ddl(format!(
        "CREATE TRIGGER IF NOT EXISTS {} AFTER UPDATE OF {to} ON {table} WHEN {idle} AND NEW.{to} IS NOT OLD.{to} AND NEW.{from} IS OLD.{from} BEGIN {} END",
        names[2],
        paused(&format!(
            "UPDATE {table} SET {from} = ({down}) WHERE rowid = NEW.rowid"
        ))
    )));
    plan.backfill.push(Step::Backfill {
        table: d.table.clone(),
        column: d.to.clone(),
        expr: up,
    });
    for n in &names {
        plan.contract
            .push(ddl(format!("DROP TRIGGER IF EXISTS {n}")));
        rb.push(ddl(format!("DROP TRIGGER IF EXISTS {n}")));
    }
    plan.contract
        .push(ddl(format!("ALTER TABLE {table} DROP COLUMN {from}")));
    rb.push(ddl(format!("ALTER TABLE {table} DROP COLUMN {to}")));
}

/// A nullable column filled by `up` on insert and by the backfill.
pub(crate) fn fill_on_insert(a: &AddColumn, up: &str, plan: &mut Plan, rb: &mut Vec<Step>) {
    let table = a.table.quoted();
    let col = a.column.quoted();
    let name = trigger_name("fill", &a.table, &a.column).quoted();
    plan.expand.push(ddl(format!(
        "CREATE TRIGGER IF NOT EXISTS {name} AFTER INSERT ON {table} WHEN NEW.{col} IS NULL AND NOT EXISTS (SELECT 1 FROM {PAUSE}) BEGIN {} END",
        paused(&format!("UPDATE {table} SET {col} = ({up}) WHERE rowid = NEW.rowid"))
    )));
    plan.backfill.push(Step::Backfill {
        table: a.table.clone(),
        column: a.column.clone(),
        expr: up.to_owned(),
    });
    plan.contract
        .push(ddl(format!("DROP TRIGGER IF EXISTS {name}")));
    rb.insert(0, ddl(format!("DROP TRIGGER IF EXISTS {name}")));
}

/// A SQLite database file.
pub struct Sqlite {
    conn: Connection,
}

fn sq(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
    let context = context.into();
    move |source| Error::Sqlite { context, source }
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

impl Sqlite {
    /// Opens (or creates) the file, in WAL mode so readers never wait for the migration.
    pub fn open(path: &Path, options: &Options) -> Result<Self, Error> {
        let conn = Connection::open(path).map_err(sq(format!("opening {}", path.display())))?;
        // busy_timeout is SQLite's lock_timeout: how long to wait for the single writer lock.
        conn.busy_timeout(options.lock_timeout)
            .map_err(sq("setting busy_timeout"))?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS {PAUSE} (x INTEGER);
             CREATE TABLE IF NOT EXISTS cutover_migrations (
               name TEXT PRIMARY KEY, checksum TEXT NOT NULL, phase TEXT NOT NULL, running TEXT,
               expanded_at TEXT, backfilled_at TEXT, contracted_at TEXT, rolled_back_at TEXT,
               updated_at TEXT, rows_backfilled INTEGER NOT NULL DEFAULT 0, checkpoint TEXT,
               forced_by TEXT, forced_reason TEXT, forced_gate TEXT, forced_at TEXT)"
        ))
        .map_err(sq("creating cutover_migrations"))?;
        Ok(Self { conn })
    }

    /// The connection (tests).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Runs the steps at `indexes` (and the phase update) in one write transaction, retried
    /// while another writer holds the lock. Generated statements go through `execute`, which
    /// takes one statement; a `raw_sql` script as written; a check is only prepared.
    fn group(
        &mut self,
        steps: &[Step],
        indexes: &[usize],
        finish: Option<&PhaseRun<'_>>,
        options: &Options,
    ) -> Result<StepTiming, (usize, Error)> {
        let start = Instant::now();
        let mut attempt = 1;
        loop {
            match self.try_group(steps, indexes, finish) {
                Ok(()) => break,
                Err((
                    _,
                    Error::Sqlite {
                        source: rusqlite::Error::SqliteFailure(f, _),
                        ..
                    },
                )) if f.code == rusqlite::ErrorCode::DatabaseBusy
                    && attempt < options.lock_attempts =>
                {
                    std::thread::sleep(crate::pg::backoff(attempt));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(StepTiming {
            label: indexes
                .first()
                .and_then(|i| steps.get(*i))
                .map_or("record phase".into(), |s| {
                    s.sql()
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .chars()
                        .take(72)
                        .collect()
                }),
            millis: start.elapsed().as_secs_f64() * 1000.0,
            attempts: attempt,
        })
    }

    fn try_group(
        &mut self,
        steps: &[Step],
        indexes: &[usize],
        finish: Option<&PhaseRun<'_>>,
    ) -> Result<(), (usize, Error)> {
        let last = indexes.last().copied().unwrap_or(steps.len());
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| (last, sq("BEGIN IMMEDIATE")(e)))?;
        for &i in indexes {
            let Some(step) = steps.get(i) else { continue };
            let result = match step {
                Step::Script { sql } => tx.execute_batch(sql),
                Step::Check { sql, .. } => tx.prepare(sql).map(drop),
                Step::Backfill { .. } => Ok(()),
                _ => tx.execute(step.sql(), []).map(drop),
            };
            result.map_err(|e| (i, sq(step.sql().to_string())(e)))?;
        }
        if let Some(run) = finish {
            record_phase(&tx, run).map_err(|e| (last, e))?;
        }
        tx.commit().map_err(|e| (last, sq("COMMIT")(e)))
    }

    fn backfill(
        &mut self,
        run: &PhaseRun<'_>,
        step: usize,
        target: (&str, &str, &str),
        options: &Options,
        report: &mut Report,
    ) -> Result<(), Error> {
        let (table, col, expr) = target;
        let resume = run.resume.as_ref().filter(|c| c.step == step);
        let max: Option<i64> = match resume.and_then(|c| c.max.as_ref()) {
            Some(m) => m.parse().ok(),
            None => self
                .conn
                .query_row(&format!("SELECT max(rowid) FROM {table}"), [], |r| r.get(0))
                .map_err(sq("reading the highest rowid"))?,
        };
        let Some(max) = max else { return Ok(()) };
        let mut last: i64 = resume
            .and_then(|c| c.last.as_ref())
            .and_then(|l| l.parse().ok())
            .unwrap_or(i64::MIN);
        // SQLite has no view of other sessions' lock waits: the adaptive pacing goes by batch
        // latency and busy waits alone.
        let mut pacer = Pacer::new(&options.pacing, options.batch_size, &mut report.pacing);
        let started = Instant::now();
        loop {
            let keys = pacer.batch_size().max(1);
            let batch = Instant::now();
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sq("BEGIN IMMEDIATE"))?;
            tx.execute(&format!("INSERT INTO {PAUSE} VALUES (1)"), [])
                .map_err(sq("pausing the sync triggers"))?;
            let ids: Vec<i64> = {
                let mut stmt = tx
                    .prepare(&format!(
                        "UPDATE {table} SET {col} = ({expr}) WHERE rowid IN (SELECT rowid FROM {table} WHERE {col} IS NULL AND rowid > ?1 AND rowid <= ?2 ORDER BY rowid LIMIT ?3) RETURNING rowid"
                    ))
                    .map_err(sq("preparing the backfill"))?;
                let rows = stmt
                    .query_map(params![last, max, keys], |r| r.get(0))
                    .map_err(sq("backfilling"))?;
                rows.collect::<Result<_, _>>().map_err(sq("backfilling"))?
            };
            tx.execute(&format!("DELETE FROM {PAUSE}"), [])
                .map_err(sq("resuming the sync triggers"))?;
            let Some(newest) = ids.iter().max().copied() else {
                break;
            };
            let checkpoint = Checkpoint {
                step,
                last: Some(newest.to_string()),
                max: Some(max.to_string()),
            };
            let ck = serde_json::to_string(&checkpoint).map_err(|e| Error::State(e.to_string()))?;
            let n = i64::try_from(ids.len()).unwrap_or(i64::MAX);
            tx.execute(
                "UPDATE cutover_migrations SET checkpoint = ?2, rows_backfilled = rows_backfilled + ?3 WHERE name = ?1",
                params![run.migration.name, ck, n],
            )
            .map_err(sq("saving the checkpoint"))?;
            tx.commit().map_err(sq("COMMIT"))?;
            last = newest;
            report.rows += n;
            report.batches += 1;
            let millis = batch.elapsed().as_secs_f64() * 1000.0;
            report.max_batch_millis = report.max_batch_millis.max(millis);
            if newest >= max {
                // The last row is done: no pause, and no empty transaction to find that out.
                break;
            }
            let signal = BatchSignal {
                rows: u64::from(keys),
                millis,
                ..BatchSignal::default()
            };
            let pause = pacer.after_batch(&signal, &mut report.pacing);
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
        report.backfill_seconds += started.elapsed().as_secs_f64();
        Ok(())
    }
}

fn record_phase(tx: &rusqlite::Transaction<'_>, run: &PhaseRun<'_>) -> Result<(), Error> {
    let column = match run.next {
        Phase::Expanded => "expanded_at",
        Phase::Backfilled => "backfilled_at",
        Phase::Contracted => "contracted_at",
        Phase::RolledBack => "rolled_back_at",
        Phase::Pending => "updated_at",
    };
    let reset = if run.next == Phase::Expanded {
        ", checksum = ?2, rows_backfilled = 0, backfilled_at = NULL, contracted_at = NULL, rolled_back_at = NULL, forced_by = NULL, forced_reason = NULL, forced_gate = NULL, forced_at = NULL"
    } else {
        ""
    };
    tx.execute(
        &format!("UPDATE cutover_migrations SET phase = ?3, {column} = ?4, updated_at = ?4, running = NULL, checkpoint = NULL{reset} WHERE name = ?1 AND ?2 IS NOT NULL"),
        params![run.migration.name, run.migration.checksum, run.next.as_str(), now()],
    )
    .map_err(sq("recording the phase"))?;
    if let Some(Forced { by, reason, gate }) = run.forced {
        tx.execute(
            "UPDATE cutover_migrations SET forced_by = ?2, forced_reason = ?3, forced_gate = ?4, forced_at = ?5 WHERE name = ?1",
            params![run.migration.name, by, reason, gate, now()],
        )
        .map_err(sq("recording the forced step"))?;
    }
    Ok(())
}

fn parse_time(t: Option<String>) -> Option<jiff::Timestamp> {
    t.and_then(|t| t.parse().ok())
}

impl Backend for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn records(&mut self) -> Result<Vec<Record>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, checksum, phase, expanded_at, backfilled_at, contracted_at, rolled_back_at, rows_backfilled, checkpoint, forced_by, forced_reason, forced_gate, running FROM cutover_migrations ORDER BY name")
            .map_err(sq("reading cutover_migrations"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    (
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ),
                    (r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?),
                    (
                        r.get::<_, i64>(7)?,
                        r.get::<_, Option<String>>(8)?,
                        r.get::<_, Option<String>>(12)?,
                    ),
                    (
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, Option<String>>(10)?,
                        r.get::<_, Option<String>>(11)?,
                    ),
                ))
            })
            .map_err(sq("reading cutover_migrations"))?;
        let mut out = Vec::new();
        for row in rows {
            let ((name, checksum, phase), (e, b, c, r), (n, ck, running), (by, reason, gate)) =
                row.map_err(sq("reading cutover_migrations"))?;
            let phase = Phase::parse(&phase)
                .ok_or_else(|| Error::State(format!("phase `{phase}` of {name}")))?;
            out.push(Record {
                name,
                checksum,
                phase,
                expanded_at: parse_time(e),
                backfilled_at: parse_time(b),
                contracted_at: parse_time(c),
                rolled_back_at: parse_time(r),
                rows_backfilled: n,
                checkpoint: ck.and_then(|c| serde_json::from_str(&c).ok()),
                forced: by.map(|by| Forced {
                    by,
                    reason: reason.unwrap_or_default(),
                    gate: gate.unwrap_or_default(),
                }),
                running,
            });
        }
        Ok(out)
    }

    async fn catalog(&mut self, wanted: &Wanted) -> Result<Catalog, Error> {
        let mut catalog = Catalog::default();
        for table in &wanted.tables {
            let schema = table.schema.as_ref().map_or("main", |s| s.as_str());
            let args = params![table.name.as_str(), schema];
            let kind: Option<String> = self
                .conn
                .query_row(
                    "SELECT type FROM pragma_table_list(?1) WHERE schema = ?2",
                    args,
                    |r| r.get(0),
                )
                .optional()
                .map_err(sq(format!("looking up {table}")))?;
            let found = match kind {
                Some(kind) => {
                    let mut stmt = self
                        .conn
                        .prepare("SELECT name FROM pragma_table_info(?1, ?2) ORDER BY cid")
                        .map_err(sq(format!("reading the columns of {table}")))?;
                    let columns = stmt
                        .query_map(args, |r| r.get(0))
                        .and_then(|rows| rows.collect::<Result<Vec<String>, _>>())
                        .map_err(sq(format!("reading the columns of {table}")))?;
                    // The backfill walks rowids, which every table but WITHOUT ROWID ones has.
                    Some(Table {
                        is_table: kind == "table",
                        columns,
                        constraints: Vec::new(),
                        batch_key: true,
                    })
                }
                None => None,
            };
            catalog.tables.insert(table.to_string(), found);
        }
        for index in &wanted.indexes {
            let schema = index
                .schema
                .as_ref()
                .map_or("\"main\"".into(), |s| s.quoted());
            let taken: bool = self
                .conn
                .query_row(
                    &format!("SELECT count(*) > 0 FROM {schema}.sqlite_master WHERE name = ?1"),
                    [index.name.as_str()],
                    |r| r.get(0),
                )
                .map_err(sq(format!("looking up the name {index}")))?;
            if taken {
                catalog.taken.insert(index.to_string());
            }
        }
        Ok(catalog)
    }

    async fn apply(&mut self, run: PhaseRun<'_>, options: &Options) -> Result<Report, Error> {
        self.conn
            .execute(
                "INSERT INTO cutover_migrations (name, checksum, phase, running, updated_at) VALUES (?1, ?2, 'pending', ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET running = excluded.running, updated_at = excluded.updated_at",
                params![run.migration.name, run.migration.checksum, run.phase.to_string(), now()],
            )
            .map_err(sq("recording the start of the phase"))?;
        let step_error = |(step, e): (usize, Error)| Error::Step {
            location: format!("step {step}"),
            step,
            cause: Box::new(e),
            help: None,
        };
        let mut report = Report::default();
        // Every statement but the backfill's goes into one transaction per stretch: expand is
        // a single transaction here (SQLite builds indexes in it too), all or nothing.
        let mut pending = Vec::new();
        for (i, step) in run.steps.iter().enumerate() {
            let Step::Backfill {
                table,
                column,
                expr,
            } = step
            else {
                pending.push(i);
                continue;
            };
            if !pending.is_empty() {
                let timing = self.group(run.steps, &pending, None, options);
                report.steps.push(timing.map_err(step_error)?);
                pending.clear();
            }
            let skip = run.resume.as_ref().is_some_and(|c| c.step > i);
            if !skip {
                let target = (table.quoted(), column.quoted(), expr.clone());
                self.backfill(
                    &run,
                    i,
                    (&target.0, &target.1, &target.2),
                    options,
                    &mut report,
                )
                .map_err(|e| step_error((i, e)))?;
            }
        }
        let timing = self.group(run.steps, &pending, Some(&run), options);
        report.steps.push(timing.map_err(step_error)?);
        Ok(report)
    }
}
