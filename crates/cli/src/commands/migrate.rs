//! `cutover migrate`: expand/contract database migrations.
//!
//! Exit codes: 0 done (or nothing to do), 1 invalid migration files, 2 a usage, I/O or database
//! error, 3 refused by a safety rule (contract gate, rollback after contract, phase order).

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
    Backend, Dialect, Error, Migration, Options, Outcome, PhaseKind, Record, Request,
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
    Expand(Run),
    /// Copy data into the new shape in key batches; resumes after an interruption.
    Backfill {
        #[command(flatten)]
        run: Run,
        /// Rows per batch transaction.
        #[arg(long, default_value_t = 1000)]
        batch_size: u32,
        /// Pause between batches (e.g. 10ms), to leave room for the application.
        #[arg(long, value_parser = parse_duration)]
        throttle: Option<Duration>,
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
    #[arg(long, value_name = "FILE")]
    rollout_state: Option<PathBuf>,
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
    let migrations = match cutover_migrate::load_dir(&args.dir) {
        Ok(m) => m,
        Err(e @ Error::File { .. }) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
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
    let url = args
        .database_url
        .clone()
        .context("no database: pass --database-url or set DATABASE_URL")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let options = options(&args.command);
            let mut db = Sqlite::open(Path::new(path.trim_start_matches("//")), &options)?;
            command(&mut db, &migrations, args.command, options).await
        } else {
            let options = options(&args.command);
            let mut db = Postgres::connect(&url, &options).await?;
            command(&mut db, &migrations, args.command, options).await
        }
    })
}

fn options(command: &MigrateCommand) -> Options {
    let mut o = Options {
        progress: true,
        ..Options::default()
    };
    let run = match command {
        MigrateCommand::Expand(r) | MigrateCommand::Rollback(r) => Some(r),
        MigrateCommand::Backfill {
            run,
            batch_size,
            throttle,
        } => {
            o.batch_size = *batch_size;
            o.throttle = throttle.unwrap_or_default();
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

async fn command<B: Backend>(
    db: &mut B,
    migrations: &[Migration],
    command: MigrateCommand,
    mut options: Options,
) -> anyhow::Result<ExitCode> {
    let (kind, run, gate, force) = match command {
        MigrateCommand::Plan { .. } => return Ok(ExitCode::SUCCESS),
        MigrateCommand::Status { gate } => return status(db, migrations, &gate).await,
        MigrateCommand::Expand(run) => (PhaseKind::Expand, run, GateArgs::default(), None),
        MigrateCommand::Backfill { run, .. } => {
            (PhaseKind::Backfill, run, GateArgs::default(), None)
        }
        MigrateCommand::Contract {
            run,
            gate,
            force,
            reason,
        } => {
            let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let forced = force.then(|| (who, reason.unwrap_or_default()));
            (PhaseKind::Contract, run, gate, forced)
        }
        MigrateCommand::Rollback(run) => (PhaseKind::Rollback, run, GateArgs::default(), None),
    };
    let records = db.records().await?;
    let target = cutover_migrate::target(migrations, &records, kind, run.name.as_deref())?;
    if run.dry_run {
        match target {
            Some(m) => {
                let plan = cutover_migrate::compile(m, db.dialect())?;
                println!("-- {kind} of {}", m.name);
                for step in plan.steps(kind) {
                    println!("{}", serde_json::to_string(step)?);
                }
            }
            None => println!("-- nothing to {kind}"),
        }
        return Ok(ExitCode::SUCCESS);
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
    let request = Request {
        command: kind,
        target: run.name,
        rollout,
        bake: SignedDuration::try_from(gate.bake).unwrap_or(SignedDuration::MAX),
        force,
        now: Timestamp::now(),
    };
    match cutover_migrate::execute(db, migrations, &request, &options).await {
        Ok(outcome) => {
            summary(kind, &outcome);
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Refused(refusal)) => {
            eprintln!("{refusal}");
            Ok(ExitCode::from(3))
        }
        Err(e @ Error::Interrupted { .. }) => {
            eprintln!("{e}");
            Ok(ExitCode::from(130))
        }
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
