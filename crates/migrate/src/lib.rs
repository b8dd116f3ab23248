//! cutover-migrate: expand/contract database migrations for blue/green deployments.
//!
//! Blue and green share one database. A migration therefore runs in phases: **expand** adds what
//! the new version needs without breaking the old one (new columns, sync triggers, indexes built
//! concurrently, constraints `NOT VALID`); **backfill** copies data in small key batches;
//! **contract** drops the old shape once the old version is gone and a bake period has passed;
//! **rollback** undoes expand while contract has not run. See docs/migrations.md.
//!
//! Layout: [`file`] reads migration files, [`plan`] compiles them into steps (data), [`state`]
//! holds the rules between phases, [`pg`] and [`sqlite`] execute, [`execute`] ties them.

pub mod file;
pub mod names;
pub mod pacing;
pub mod pg;
pub mod plan;
pub mod precheck;
pub mod sqlite;
pub mod sqltype;
pub mod state;
pub mod test_cluster;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

pub use file::{Migration, load_dir};
pub use pacing::{Pacing, PacingReport};
pub use plan::{Dialect, PhaseKind, Plan, Step, compile};
pub use state::{Phase, Record, Refusal, RolloutFacts};

/// Everything that can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A migration file is invalid, or does not fit the database it is for (a table or column
    /// it names does not exist, a name it would create is taken).
    #[error("{path}:{line}:{column}: {message}{}", help_line(.help))]
    File {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The field and what is wrong with it.
        message: String,
        /// What to do about it.
        help: Option<String>,
    },
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The database cannot do an operation without blocking (SQLite).
    #[error("{migration}: cannot be done online on SQLite: {why}")]
    NotOnline {
        /// The migration.
        migration: String,
        /// What and why.
        why: String,
    },
    /// A rule between phases refused the command.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// No such migration in the directory.
    #[error("no migration named `{0}` in the directory")]
    UnknownMigration(String),
    /// Another `cutover migrate` holds the migration lock.
    #[error("another `cutover migrate` is running against this database; wait for it to finish")]
    Busy,
    /// The lock stayed unavailable through every retry.
    #[error(
        "gave up after {attempts} attempts: a lock stayed unavailable for {step} (another session holds it; find it in pg_stat_activity)"
    )]
    LockTimeout {
        /// Attempts made.
        attempts: u32,
        /// The statement.
        step: String,
    },
    /// The operator interrupted the backfill; it resumes from its checkpoint.
    #[error(
        "backfill interrupted after {rows} rows; run `cutover migrate backfill` again to resume from the checkpoint"
    )]
    Interrupted {
        /// Rows written before the interruption.
        rows: i64,
    },
    /// A table has no usable key for batches.
    #[error("{table}: the backfill needs a single-column primary key to walk in batches")]
    NoKey {
        /// The table.
        table: String,
    },
    /// PostgreSQL said no.
    #[error("postgres: {context}: {}", db_text(.cause))]
    Postgres {
        /// What was being done.
        context: String,
        /// The cause (its SQLSTATE and detail). Not a `source`: the message already says it.
        cause: tokio_postgres::Error,
    },
    /// SQLite said no.
    #[error("sqlite: {context}: {source}")]
    Sqlite {
        /// What was being done.
        context: String,
        /// The cause.
        source: rusqlite::Error,
    },
    /// A step of a phase failed; [`execute`] names the operation of the file it comes from
    /// and what the failure left.
    #[error("{location}: {cause}{}", help_line(.help))]
    Step {
        /// `file:line:column: operations[i].kind`, or the step's index until [`execute`] knows.
        location: String,
        /// Index of the step in its phase.
        step: usize,
        /// The cause (not a `source`: the message already says it).
        cause: Box<Error>,
        /// What the failure left, and what to do.
        help: Option<String>,
    },
    /// Expand failed, and what it had applied could not all be undone.
    #[error(
        "{cause}\n  and undoing what expand had applied failed: {why}\n  help: fix the cause and run `cutover migrate expand` again (it completes what is there), then `cutover migrate rollback` to remove it"
    )]
    UndoFailed {
        /// Why expand failed.
        cause: Box<Error>,
        /// Why the undo failed, or what could not be undone.
        why: String,
    },
    /// A stored state row could not be read.
    #[error("cutover_migrations holds an unreadable row: {0}")]
    State(String),
}

/// PostgreSQL's message and detail (the driver's own text says only "db error").
fn db_text(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return e.to_string();
    };
    let mut text = db.message().to_owned();
    for extra in [db.detail(), db.hint()].into_iter().flatten() {
        text.push_str(&format!(" ({extra})"));
    }
    text
}

fn help_line(help: &Option<String>) -> String {
    help.as_ref()
        .map(|h| format!("\n  help: {h}"))
        .unwrap_or_default()
}

/// How the executor behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// `lock_timeout` for every lock-taking statement.
    pub lock_timeout: Duration,
    /// Attempts per statement group before giving up on a lock.
    pub lock_attempts: u32,
    /// Rows per backfill batch (with adaptive pacing: the first and the largest batch).
    pub batch_size: u32,
    /// How batches are paced: adaptive (the default) or a fixed pause between batches.
    pub pacing: Pacing,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
    /// Set (by a Ctrl-C handler) to stop the backfill after the batch in flight.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_millis(500),
            lock_attempts: 20,
            batch_size: 1000,
            pacing: Pacing::default(),
            progress: false,
            stop: None,
        }
    }
}

/// Timing of one transaction (the longest a lock from it can have been held).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StepTiming {
    /// The first statement, shortened.
    pub label: String,
    /// Milliseconds from BEGIN to COMMIT of the successful attempt.
    pub millis: f64,
    /// Attempts (more than 1 after lock timeouts).
    pub attempts: u32,
}

/// What a phase did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// Each transaction or statement.
    pub steps: Vec<StepTiming>,
    /// Rows the backfill wrote in this run.
    pub rows: i64,
    /// Backfill batches in this run.
    pub batches: u64,
    /// Seconds the backfill took in this run.
    pub backfill_seconds: f64,
    /// The longest batch transaction, in milliseconds.
    pub max_batch_millis: f64,
    /// What the pacing saw and decided.
    pub pacing: PacingReport,
}

/// One phase to apply.
pub struct PhaseRun<'a> {
    /// The migration.
    pub migration: &'a Migration,
    /// The phase.
    pub phase: PhaseKind,
    /// Its steps.
    pub steps: &'a [Step],
    /// The phase recorded once they succeed.
    pub next: Phase,
    /// A gate overridden.
    pub forced: Option<&'a state::Forced>,
    /// The previous run's backfill checkpoint.
    pub resume: Option<state::Checkpoint>,
    /// The operation each step comes from (see [`Plan::origin`]).
    pub origin: &'a [usize],
    /// Expand only: per operation, the steps undoing it, for a failure part-way.
    pub undo: &'a [Vec<Step>],
}

/// A database cutover can migrate.
#[allow(async_fn_in_trait)] // used with concrete types only; no Send bound needed
pub trait Backend {
    /// The SQL dialect to compile for.
    fn dialect(&self) -> Dialect;
    /// Every stored record (creating the state table when missing).
    async fn records(&mut self) -> Result<Vec<Record>, Error>;
    /// What the database holds of the names a migration uses, for the check before expand.
    async fn catalog(&mut self, wanted: &precheck::Wanted) -> Result<precheck::Catalog, Error>;
    /// Applies one phase and records its outcome.
    async fn apply(&mut self, run: PhaseRun<'_>, options: &Options) -> Result<Report, Error>;
}

/// A command for [`execute`].
#[derive(Clone, Debug)]
pub struct Request {
    /// The phase to run.
    pub command: PhaseKind,
    /// The migration (default: the open one, or for expand the next pending).
    pub target: Option<String>,
    /// The rollout's state, for the contract gate.
    pub rollout: Option<(String, RolloutFacts)>,
    /// The bake period before contract.
    pub bake: SignedDuration,
    /// `--force` with who and why.
    pub force: Option<(String, String)>,
    /// Current time.
    pub now: Timestamp,
}

/// What [`execute`] did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The migration acted on (None: nothing to do).
    pub migration: Option<String>,
    /// Whether it ran or was already done.
    pub verdict: state::Verdict,
    /// Timings.
    pub report: Report,
    /// A gate overridden.
    pub forced: Option<state::Forced>,
}

/// Picks the migration a command applies to.
pub fn target<'a>(
    migrations: &'a [Migration],
    records: &[Record],
    command: PhaseKind,
    name: Option<&str>,
) -> Result<Option<&'a Migration>, Error> {
    if let Some(name) = name {
        return migrations
            .iter()
            .find(|m| m.name == name)
            .map(Some)
            .ok_or_else(|| Error::UnknownMigration(name.to_owned()));
    }
    let phase = |m: &Migration| {
        records
            .iter()
            .find(|r| r.name == m.name)
            .map_or(Phase::Pending, |r| r.phase)
    };
    if let Some(open) = migrations
        .iter()
        .find(|m| matches!(phase(m), Phase::Expanded | Phase::Backfilled))
    {
        return Ok(Some(open));
    }
    Ok(match command {
        PhaseKind::Expand => migrations.iter().find(|m| phase(m) == Phase::Pending),
        // Rolling back with nothing open means the latest contracted one: refused with why.
        PhaseKind::Rollback => migrations
            .iter()
            .rev()
            .find(|m| phase(m) == Phase::Contracted),
        _ => None,
    })
}

/// The check before expand: refuses, with the file location of the field at fault, a
/// migration that does not fit the database (see [`precheck`]). Touches nothing.
pub async fn precheck_expand<B: Backend>(
    backend: &mut B,
    m: &Migration,
    records: &[Record],
) -> Result<(), Error> {
    let catalog = backend.catalog(&precheck::wanted(m)).await?;
    // A record still marked running: an expand of this migration was cut short, and what it
    // created may be there already.
    let resuming = records
        .iter()
        .any(|r| r.name == m.name && r.running.as_deref() == Some("expand"));
    precheck::check(m, &catalog, resuming)
}

/// Points a failed step at the operation of the file it comes from; a failed check at the
/// expression it checked, as an error of the file.
fn locate(m: &Migration, plan: &Plan, phase: PhaseKind, e: Error) -> Error {
    match e {
        Error::Step { step, cause, .. } => {
            if let Some(Step::Check { field, .. }) = plan.steps(phase).get(step) {
                return m.error_at(
                    &cutover_manifest::FieldPath::parse(field),
                    format!("the expression fails: {}", database_message(&cause)),
                    Some("write an expression over the table's columns (as in `UPDATE table SET column = (expression)`), of the column's type".into()),
                );
            }
            let op = plan.origin(phase).get(step).copied();
            let location = match op.and_then(|i| m.spec.operations.get(i).map(|o| (i, o))) {
                Some((i, o)) => {
                    let field = file::op_field(i, o, "");
                    let pos = m.locations.locate(&field);
                    format!("{}:{}:{}: {field}", m.path.display(), pos.line, pos.column)
                }
                None => format!("{}: step {step}", m.path.display()),
            };
            let help = match phase {
                PhaseKind::Expand => {
                    "nothing of this expand is left in the database: fix the operation (or the data it needs) and run expand again"
                }
                PhaseKind::Backfill => {
                    "the backfill resumes from its last committed batch: fix the cause and run backfill again, or roll back"
                }
                PhaseKind::Contract => {
                    "contract changed nothing (its validations run first, its changes in one transaction): fix the cause and run contract again"
                }
                PhaseKind::Rollback => {
                    "run rollback again once the cause is fixed: cutover's own steps can run twice (a raw_sql rollback should too)"
                }
            };
            Error::Step {
                location,
                step,
                cause,
                help: Some(help.into()),
            }
        }
        Error::UndoFailed { cause, why } => {
            // Its own help says what to do; the step's would claim nothing is left.
            let cause = match locate(m, plan, phase, *cause) {
                Error::Step {
                    location,
                    step,
                    cause,
                    ..
                } => Error::Step {
                    location,
                    step,
                    cause,
                    help: None,
                },
                e => e,
            };
            Error::UndoFailed {
                cause: Box::new(cause),
                why,
            }
        }
        e => e,
    }
}

/// PostgreSQL's (or SQLite's) own words, without the statement cutover labelled it with.
fn database_message(e: &Error) -> String {
    match e {
        Error::Postgres { cause, .. } => db_text(cause),
        Error::Sqlite { source, .. } => source.to_string(),
        e => e.to_string(),
    }
}

/// Runs one command: checks the rules, then applies the phase.
pub async fn execute<B: Backend>(
    backend: &mut B,
    migrations: &[Migration],
    req: &Request,
    options: &Options,
) -> Result<Outcome, Error> {
    let records = backend.records().await?;
    let Some(m) = target(migrations, &records, req.command, req.target.as_deref())? else {
        return Ok(Outcome {
            migration: None,
            verdict: state::Verdict::Done,
            report: Report::default(),
            forced: None,
        });
    };
    let record = records.iter().find(|r| r.name == m.name);
    let earlier: Vec<(String, Option<Phase>)> = migrations
        .iter()
        .take_while(|o| o.name != m.name)
        .map(|o| {
            let p = records.iter().find(|r| r.name == o.name).map(|r| r.phase);
            (o.name.clone(), p)
        })
        .collect();
    let verdict = state::check(req.command, &m.name, &m.checksum, record, &earlier)?;
    let done = |forced| Outcome {
        migration: Some(m.name.clone()),
        verdict,
        report: Report::default(),
        forced,
    };
    if verdict == state::Verdict::Done {
        return Ok(done(None));
    }
    let plan = compile(m, backend.dialect())?;
    let mut forced = None;
    // Only a contract that destroys something waits for the rollout and the bake.
    if req.command == PhaseKind::Contract
        && !plan.contract.is_empty()
        && let Some(record) = record
    {
        let rollout = req.rollout.as_ref().map(|(n, f)| (n.as_str(), f));
        if let Err(refusal) = state::contract_gate(record, rollout, req.bake, req.now) {
            match &req.force {
                Some((by, reason)) if refusal.forcible() => {
                    forced = Some(state::Forced {
                        by: by.clone(),
                        reason: reason.clone(),
                        gate: format!("{}: {refusal}", refusal.gate()),
                    });
                }
                _ => return Err(refusal.into()),
            }
        }
    }
    let next = match req.command {
        PhaseKind::Expand => Phase::Expanded,
        PhaseKind::Backfill => Phase::Backfilled,
        PhaseKind::Contract => Phase::Contracted,
        PhaseKind::Rollback => Phase::RolledBack,
    };
    let resume = record
        .filter(|_| req.command == PhaseKind::Backfill)
        .and_then(|r| r.checkpoint.clone());
    if req.command == PhaseKind::Expand {
        precheck_expand(backend, m, &records).await?;
    }
    let undo: &[Vec<Step>] = if req.command == PhaseKind::Expand {
        &plan.undo
    } else {
        &[]
    };
    let report = backend
        .apply(
            PhaseRun {
                migration: m,
                phase: req.command,
                steps: plan.steps(req.command),
                next,
                forced: forced.as_ref(),
                resume,
                origin: plan.origin(req.command),
                undo,
            },
            options,
        )
        .await
        .map_err(|e| locate(m, &plan, req.command, e))?;
    Ok(Outcome {
        report,
        ..done(forced)
    })
}
