//! `cutover migrate`: expand/contract database migrations.
//!
//! Exit codes: 0 done (or nothing to do), 1 invalid migration files (or files that do not fit
//! the database: checked before expand), 2 a usage, I/O or database error, 3 refused by a
//! safety rule (contract gate, rollback after contract, phase order).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use cutover_migrate::pg::Postgres;
use cutover_migrate::sqlite::Sqlite;
use cutover_migrate::state::{self, RolloutFacts};
use cutover_migrate::{
    Backend, Dialect, Error, Migration, Options, Outcome, Pacing, PhaseKind, Record, Request,
};
use jiff::{SignedDuration, Timestamp};

/// Arguments of `cutover migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    command: MigrateCommand,
    /// `postgres://…`, or `sqlite:PATH` for the embedded demo.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Directory of migration files (`*.yaml`, applied in file-name order).
    #[arg(long, default_value = "migrations", global = true)]
    dir: PathBuf,
    /// Write the outcome as JSON to this file when the command ends: every migration's phase
    /// and the error, if any. On Kubernetes the migration Job passes its termination-message
    /// file, which the controller reads instead of connecting to the database.
    #[arg(long, value_name = "FILE", global = true)]
    report: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum MigrateCommand {
    /// Print what each phase of a migration runs (no database needed).
    Plan {
        /// Migration name (default: all).
        name: Option<String>,
        /// SQL dialect.
        #[arg(long, value_enum, default_value_t = DialectArg::Postgres)]
        dialect: DialectArg,
    },
    /// Each migration's phase and the §5.3 checklist: what blue and green do, whether a
    /// rollback is still possible.
    Status {
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Add the new shape beside the old one (columns, sync triggers, indexes, NOT VALID checks).
    Expand {
        #[command(flatten)]
        run: Run,
        /// Backfill the same migration right after (what a rollout runs before its new revision
        /// starts).
        #[arg(long)]
        and_backfill: bool,
    },
    /// Copy data into the new shape in key batches; resumes after an interruption.
    Backfill {
        #[command(flatten)]
        run: Run,
        /// Rows per batch transaction (adaptive pacing: the first and the largest batch).
        #[arg(long, default_value_t = 1000)]
        batch_size: u32,
        /// A fixed pause between batches (e.g. 10ms) instead of the adaptive pacing, which
        /// shrinks batches and lengthens pauses while the application's writers wait on the
        /// backfill's locks or batches slow down, and grows them back once that stops.
        #[arg(long, value_parser = parse_duration, conflicts_with = "max_rate")]
        throttle: Option<Duration>,
        /// Adaptive pacing: never backfill faster than this many rows per second.
        #[arg(long, value_name = "ROWS_PER_SECOND")]
        max_rate: Option<u32>,
    },
    /// Drop the old shape. Refused while the rollout's old revision runs and before the bake
    /// period has passed.
    Contract {
        #[command(flatten)]
        run: Run,
        #[command(flatten)]
        gate: GateArgs,
        /// Override the rollout and bake gates (needs --reason; recorded).
        #[arg(long, requires = "reason")]
        force: bool,
        /// Why the gate is overridden.
        #[arg(long, requires = "force")]
        reason: Option<String>,
    },
    /// Undo expand. Refused once the migration is contracted.
    Rollback(Run),
}

#[derive(Debug, clap::Args)]
struct Run {
    /// Migration name (default: the open one; for expand, the next pending).
    name: Option<String>,
    /// Print the SQL instead of running it.
    #[arg(long)]
    dry_run: bool,
    /// lock_timeout for every statement (e.g. 500ms, 2s).
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    lock_timeout: Duration,
    /// Attempts before giving up on a lock.
    #[arg(long, default_value_t = 20)]
    lock_attempts: u32,
}

#[derive(Debug, Default, clap::Args)]
struct GateArgs {
    /// The rollout's state as JSON ({"oldRevisionRunning": bool, "fullyPromotedAt": RFC 3339}),
    /// a file or `-`.
    #[arg(long, value_name = "FILE", conflicts_with = "rollout_state_json")]
    rollout_state: Option<PathBuf>,
    /// The same rollout state given inline, for callers without a file or stdin (the
    /// Kubernetes controller's contract Job).
    #[arg(long, value_name = "JSON")]
    rollout_state_json: Option<String>,
    /// Ask the single-host daemon about this rollout (default: the migration's `rollout:`).
    #[arg(long, value_name = "NAME")]
    rollout: Option<String>,
    /// The daemon's state directory (default: as for `cutover --state-dir`).
    #[arg(long, value_name = "DIR")]
    rollout_state_dir: Option<PathBuf>,
    /// How long the new version must have served alone before contract.
    #[arg(long, value_parser = parse_duration, default_value = "14d")]
    bake: Duration,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DialectArg {
    Postgres,
    Sqlite,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Some(days) = text.strip_suffix('d')
        && let Ok(n) = days.parse::<u64>()
    {
        return Ok(Duration::from_secs(n * 86_400));
    }
    crate::parse_duration(text)
}

/// Runs `cutover migrate`.
pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let report = args.report.clone();
    let migrations = match cutover_migrate::load_dir(&args.dir) {
        Ok(m) => m,
        Err(e @ Error::File { .. }) => {
            eprintln!("{e}");
            write_report(report.as_deref(), None, Some(e.to_string()))?;
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            write_report(report.as_deref(), None, Some(e.to_string()))?;
            return Err(e.into());
        }
    };
    if let MigrateCommand::Plan { name, dialect } = &args.command {
        let dialect = match dialect {
            DialectArg::Postgres => Dialect::Postgres,
            DialectArg::Sqlite => Dialect::Sqlite,
        };
        for m in migrations
            .iter()
            .filter(|m| name.as_ref().is_none_or(|n| *n == m.name))
        {
            print!("{}", cutover_migrate::compile(m, dialect)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(url) = args.database_url.clone() else {
        let why = "no database: pass --database-url or set DATABASE_URL";
        write_report(report.as_deref(), None, Some(why.to_string()))?;
        anyhow::bail!(why);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let options = options(&args.command);
        let report = report.as_deref();
        if let Some(path) = url.strip_prefix("sqlite:") {
            match Sqlite::open(Path::new(path.trim_start_matches("//")), &options) {
                Ok(mut db) => {
                    let ended = command(&mut db, &migrations, args.command, options).await;
                    finish(&mut db, &migrations, report, ended).await
                }
                Err(e) => unreachable_database(report, e),
            }
        } else {
            match Postgres::connect(&url, &options).await {
                Ok(mut db) => {
                    let ended = command(&mut db, &migrations, args.command, options).await;
                    finish(&mut db, &migrations, report, ended).await
                }
                Err(e) => unreachable_database(report, e),
            }
        }
    })
}

fn options(command: &MigrateCommand) -> Options {
    let mut o = Options {
        progress: true,
        ..Options::default()
    };
    let run = match command {
        MigrateCommand::Expand { run, .. } | MigrateCommand::Rollback(run) => Some(run),
        MigrateCommand::Backfill {
            run,
            batch_size,
            throttle,
            max_rate,
        } => {
            o.batch_size = *batch_size;
            o.pacing = match throttle {
                Some(pause) => Pacing::Fixed(*pause),
                None => Pacing::Adaptive {
                    max_rows_per_second: *max_rate,
                },
            };
            Some(run)
        }
        MigrateCommand::Contract { run, .. } => Some(run),
        _ => None,
    };
    if let Some(r) = run {
        o.lock_timeout = r.lock_timeout;
        o.lock_attempts = r.lock_attempts.max(1);
    }
    o
}

/// A command that did not succeed: its exit code and what it printed on stderr.
struct Stopped {
    code: u8,
    message: String,
}

impl Stopped {
    fn new(code: u8, message: impl std::fmt::Display) -> Self {
        let message = message.to_string();
        eprintln!("{message}");
        Self { code, message }
    }
}

fn unreachable_database(report: Option<&Path>, e: Error) -> anyhow::Result<ExitCode> {
    let e = anyhow::Error::from(e);
    write_report(report, None, Some(one_line(&e)))?;
    Err(e)
}

/// The exit code, after writing the report (with the state table as it now stands) if asked.
async fn finish<B: Backend>(
    db: &mut B,
    migrations: &[Migration],
    report: Option<&Path>,
    ended: anyhow::Result<Result<(), Stopped>>,
) -> anyhow::Result<ExitCode> {
    if report.is_some() {
        let records = db.records().await.ok();
        let reported = records.map(|r| reported_migrations(migrations, &r, db.dialect()));
        let error = match &ended {
            Ok(Ok(())) => None,
            Ok(Err(stopped)) => Some(stopped.message.clone()),
            Err(e) => Some(one_line(e)),
        };
        write_report(report, reported, error)?;
    }
    match ended? {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(stopped) => Ok(ExitCode::from(stopped.code)),
    }
}

/// What `--report` writes. Kubernetes keeps at most 4096 bytes of a termination message, so
/// the fields are few and the error is one line.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    /// Every migration file in order with its phase; None when the table could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    migrations: Option<Vec<ReportedMigration>>,
    /// Why the command failed or was refused; None on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportedMigration {
    name: String,
    phase: state::Phase,
    #[serde(skip_serializing_if = "Option::is_none")]
    backfilled_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    contracted_at: Option<Timestamp>,
    /// Whether contract drops anything (a migration with an empty contract phase is closed
    /// without waiting for the bake period).
    contract: bool,
}

fn reported_migrations(
    migrations: &[Migration],
    records: &[Record],
    dialect: Dialect,
) -> Vec<ReportedMigration> {
    migrations
        .iter()
        .map(|m| {
            let record = records.iter().find(|r| r.name == m.name);
            ReportedMigration {
                name: m.name.clone(),
                phase: record.map_or(state::Phase::Pending, |r| r.phase),
                backfilled_at: record.and_then(|r| r.backfilled_at),
                contracted_at: record.and_then(|r| r.contracted_at),
                // A file that does not compile fails at expand; until then assume the worst.
                contract: cutover_migrate::compile(m, dialect)
                    .map_or(true, |plan| !plan.contract.is_empty()),
            }
        })
        .collect()
}

/// Longest error kept in a report, so that the report fits a termination message.
const REPORT_ERROR_MAX: usize = 1024;

fn write_report(
    path: Option<&Path>,
    migrations: Option<Vec<ReportedMigration>>,
    error: Option<String>,
) -> anyhow::Result<()> {
    let Some(path) = path else { return Ok(()) };
    let error = error.map(|mut e| {
        if e.len() > REPORT_ERROR_MAX {
            let mut cut = REPORT_ERROR_MAX;
            while !e.is_char_boundary(cut) {
                cut -= 1;
            }
            e.truncate(cut);
        }
        e
    });
    let json = serde_json::to_string(&Report { migrations, error })?;
    std::fs::write(path, json).with_context(|| format!("writing the report {}", path.display()))
}

/// An error with its causes on one line (PostgreSQL's message is in a cause).
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

async fn command<B: Backend>(
    db: &mut B,
    migrations: &[Migration],
    command: MigrateCommand,
    mut options: Options,
) -> anyhow::Result<Result<(), Stopped>> {
    let (kind, run, gate, force, and_backfill) = match command {
        MigrateCommand::Plan { .. } => return Ok(Ok(())),
        MigrateCommand::Status { gate } => {
            return status(db, migrations, &gate).await.map(|_| Ok(()));
        }
        MigrateCommand::Expand { run, and_backfill } => (
            PhaseKind::Expand,
            run,
            GateArgs::default(),
            None,
            and_backfill,
        ),
        MigrateCommand::Backfill { run, .. } => {
            (PhaseKind::Backfill, run, GateArgs::default(), None, false)
        }
        MigrateCommand::Contract {
            run,
            gate,
            force,
            reason,
        } => {
            let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let forced = force.then(|| (who, reason.unwrap_or_default()));
            (PhaseKind::Contract, run, gate, forced, false)
        }
        MigrateCommand::Rollback(run) => {
            (PhaseKind::Rollback, run, GateArgs::default(), None, false)
        }
    };
    let records = db.records().await?;
    let target = cutover_migrate::target(migrations, &records, kind, run.name.as_deref())?;
    if run.dry_run {
        match target {
            Some(m) => {
                let plan = cutover_migrate::compile(m, db.dialect())?;
                if kind == PhaseKind::Expand
                    && let Err(e) = cutover_migrate::precheck_expand(db, m, &records).await
                {
                    return Ok(Err(match e {
                        e @ Error::File { .. } => Stopped::new(1, e),
                        e => return Err(e.into()),
                    }));
                }
                println!("-- {kind} of {}", m.name);
                for step in plan.steps(kind) {
                    println!("{}", serde_json::to_string(step)?);
                }
            }
            None => println!("-- nothing to {kind}"),
        }
        return Ok(Ok(()));
    }
    let rollout = if kind == PhaseKind::Contract {
        rollout_facts(&gate, target).await?
    } else {
        None
    };
    // Ctrl-C stops the backfill after the batch in flight; its checkpoint is committed.
    let stop = Arc::new(AtomicBool::new(false));
    options.stop = Some(stop.clone());
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.store(true, Ordering::SeqCst);
        }
    });
    let mut request = Request {
        command: kind,
        target: run.name,
        rollout,
        bake: SignedDuration::try_from(gate.bake).unwrap_or(SignedDuration::MAX),
        force,
        now: Timestamp::now(),
    };
    let outcome = match execute(db, migrations, &request, &options).await? {
        Ok(outcome) => outcome,
        Err(stopped) => return Ok(Err(stopped)),
    };
    if !and_backfill {
        return Ok(Ok(()));
    }
    // The backfill of the migration just expanded (expand picked it when no name was given).
    let Some(expanded) = outcome.migration else {
        return Ok(Ok(()));
    };
    request.command = PhaseKind::Backfill;
    request.target = Some(expanded);
    request.now = Timestamp::now();
    Ok(execute(db, migrations, &request, &options)
        .await?
        .map(|_| ()))
}

/// One phase; a refusal or an interruption is a [`Stopped`] with its exit code.
async fn execute<B: Backend>(
    db: &mut B,
    migrations: &[Migration],
    request: &Request,
    options: &Options,
) -> anyhow::Result<Result<Outcome, Stopped>> {
    match cutover_migrate::execute(db, migrations, request, options).await {
        Ok(outcome) => {
            summary(request.command, &outcome);
            Ok(Ok(outcome))
        }
        Err(Error::Refused(refusal)) => Ok(Err(Stopped::new(3, refusal))),
        Err(e @ Error::File { .. }) => Ok(Err(Stopped::new(1, e))),
        Err(e @ Error::Interrupted { .. }) => Ok(Err(Stopped::new(130, e))),
        Err(e) => Err(e.into()),
    }
}

fn summary(kind: PhaseKind, o: &Outcome) {
    let Some(name) = &o.migration else {
        eprintln!("nothing to {kind}");
        return;
    };
    if o.verdict == state::Verdict::Done {
        eprintln!("{name}: {kind} already done");
        return;
    }
    for s in &o.report.steps {
        eprintln!(
            "  {:>8.1} ms  {}{}",
            s.millis,
            s.label,
            if s.attempts > 1 {
                format!(" ({} attempts)", s.attempts)
            } else {
                String::new()
            }
        );
    }
    if o.report.batches > 0 {
        let rate = o.report.rows as f64 / o.report.backfill_seconds.max(1e-9);
        eprintln!(
            "  backfilled {} rows in {} batches, {:.2} s, {:.0} rows/s, longest batch {:.1} ms",
            o.report.rows,
            o.report.batches,
            o.report.backfill_seconds,
            rate,
            o.report.max_batch_millis
        );
        let p = &o.report.pacing;
        if p.mode == "adaptive" {
            eprintln!(
                "  adaptive pacing: {} backoffs ({} batches blocked writers, {} waited on a writer{}), smallest batch {}, paused {:.0} ms",
                p.backoffs,
                p.batches_blocking_writers,
                p.batches_waiting,
                if p.watched_locks {
                    ""
                } else {
                    "; lock waits not watched"
                },
                p.smallest_batch,
                p.paused_millis
            );
        }
    }
    if let Some(f) = &o.forced {
        eprintln!("  FORCED by {} ({}): {}", f.by, f.reason, f.gate);
    }
    eprintln!("{name}: {kind} done");
}

/// The rollout facts for the contract gate: a JSON file, or the single-host daemon.
async fn rollout_facts(
    gate: &GateArgs,
    target: Option<&Migration>,
) -> anyhow::Result<Option<(String, RolloutFacts)>> {
    let name = gate
        .rollout
        .clone()
        .or_else(|| target.and_then(|m| m.spec.rollout.clone()));
    if let Some(json) = &gate.rollout_state_json {
        let facts: RolloutFacts =
            serde_json::from_str(json).context("--rollout-state-json: not rollout state JSON")?;
        return Ok(Some((
            name.unwrap_or_else(|| "(given inline)".into()),
            facts,
        )));
    }
    if let Some(path) = &gate.rollout_state {
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())?
        } else {
            std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?
        };
        let facts: RolloutFacts = serde_json::from_str(&text)
            .with_context(|| format!("{}: not rollout state JSON", path.display()))?;
        return Ok(Some((name.unwrap_or_else(|| "(from file)".into()), facts)));
    }
    let Some(name) = name else { return Ok(None) };
    let dir = super::target::state_dir(gate.rollout_state_dir.clone());
    let view = match cutover_local::api::Client::from_state_dir(&dir) {
        Ok(client) => client.rollout(&name).await,
        Err(e) => Err(e),
    };
    match view {
        Ok(view) => Ok(Some((name, facts_from_view(&view)?))),
        Err(e) => {
            eprintln!(
                "cannot read rollout {name} from the daemon in {}: {e}",
                dir.display()
            );
            Ok(None)
        }
    }
}

/// An old revision runs while any revision other than the stable one wants or has processes,
/// or while the stable one is not yet the current one.
fn facts_from_view(view: &cutover_local::api::RolloutView) -> anyhow::Result<RolloutFacts> {
    let json = serde_json::to_value(&view.rollout)?;
    let status = &json["status"];
    let stable = status["stableRS"].as_str();
    let current = status["currentPodHash"].as_str();
    let others_running = view.revisions.iter().any(|r| {
        Some(r.hash.as_str()) != stable
            && (r.desired > 0 || r.replicas.iter().any(|p| p.phase != "Stopped"))
    });
    let switch = &status["blueGreen"]["switch"];
    let promoted = (switch["to"].as_str() == stable)
        .then(|| switch["verifiedAt"].as_str())
        .flatten()
        .and_then(|t| t.parse::<Timestamp>().ok());
    Ok(RolloutFacts {
        old_revision_running: stable.is_none() || stable != current || others_running,
        fully_promoted_at: promoted,
    })
}

async fn status<B: Backend>(
    db: &mut B,
    migrations: &[Migration],
    gate: &GateArgs,
) -> anyhow::Result<ExitCode> {
    let records: Vec<Record> = db.records().await?;
    for m in migrations {
        let record = records.iter().find(|r| r.name == m.name);
        let phase = record.map_or(state::Phase::Pending, |r| r.phase);
        println!(
            "{}  {}{}",
            m.name,
            phase,
            m.spec
                .description
                .as_ref()
                .map(|d| format!("  ({d})"))
                .unwrap_or_default()
        );
        if !matches!(
            phase,
            state::Phase::Expanded | state::Phase::Backfilled | state::Phase::Contracted
        ) {
            continue;
        }
        let facts = if phase == state::Phase::Backfilled {
            rollout_facts(gate, Some(m)).await?
        } else {
            None
        };
        let bake = SignedDuration::try_from(gate.bake).unwrap_or(SignedDuration::MAX);
        let due = record.and_then(|r| {
            let since = facts
                .as_ref()
                .and_then(|(_, f)| f.fully_promoted_at)
                .or(r.backfilled_at)?;
            since.checked_add(bake).ok()
        });
        let rows = state::checklist(record, facts.as_ref().map(|(_, f)| f), due);
        println!(
            "  {:<4} {:<16} {:<11} {:<13} {:<9} state",
            "step", "work", "blue (v1)", "green (v2)", "rollback"
        );
        for r in rows {
            println!(
                "  {:<4} {:<16} {:<11} {:<13} {:<9} {}",
                r.step, r.work, r.blue, r.green, r.rollback, r.state
            );
        }
        let can = matches!(phase, state::Phase::Expanded | state::Phase::Backfilled);
        println!(
            "  rollback possible now: {}",
            if can { "yes" } else { "no (contracted)" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
