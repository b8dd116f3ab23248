//! Migrations on one host. Each rollout with `spec.migrations` gets a worker thread of its own
//! that reads the `cutover_migrations` table (one query) every second into a snapshot, and runs
//! the planner's migration commands with cutover-migrate. The engine loop never waits for the
//! database: `observe` reads the migration files (local, so a file shipped with a release is
//! seen in the same pass as its new image) and copies the latest table snapshot; `execute`
//! hands a command to the worker and returns. The worker refreshes the snapshot before it
//! reports a command done, so the planner never sees a finished run with stale phases.
//!
//! A command runs on a connection of its own, closed when it ends, so the migration lock
//! (PostgreSQL's session advisory lock) is free for an operator's `cutover migrate` between
//! runs. A run interrupted by a daemon stop is not remembered: the planner asks for it again on
//! the next start, expand finds itself done and backfill resumes from its checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cutover_core::api::{MigrationPhase, Rollout, RolloutMigrations};
use cutover_core::plan::{
    MigrationCommand, MigrationFailure, MigrationRequest, ObservedMigration, ObservedMigrations,
    RunningMigration,
};
use cutover_migrate::pg::Postgres;
use cutover_migrate::sqlite::Sqlite;
use cutover_migrate::{Dialect, Migration, Options, PhaseKind, Record, Request, RolloutFacts};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::Notify;

use super::Engine;
use crate::store::{MigrationFailureRow, Store, StoreError, Tx};

/// How often an idle worker reads the state table again (an operator may run `cutover migrate`
/// by hand).
const STATE_POLL: Duration = Duration::from_secs(1);

/// The workers of this daemon, by rollout.
#[derive(Default)]
pub(crate) struct MigrationWorkers {
    by_rollout: Mutex<HashMap<String, Worker>>,
}

struct Worker {
    target: Target,
    shared: Arc<Shared>,
    commands: Sender<MigrationRequest>,
}

/// Where a rollout's migrations are and which database they change.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    dir: PathBuf,
    url: String,
}

/// What the worker publishes for the engine.
#[derive(Default)]
struct Shared {
    /// The last read of the files and the state table; None before the first read.
    snapshot: Mutex<Option<Result<Snapshot, String>>>,
    /// The command in progress.
    running: Mutex<Option<RunningMigration>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Snapshot {
    records: Vec<Record>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are plain data, consistent at every assignment.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// The migration facts of `rollout`: the worker's latest snapshot, the revision each
    /// migration was expanded for and the last failure (both from the state store).
    pub(crate) fn observe_migrations(
        &self,
        tx: &Tx<'_>,
        rollout: &Rollout,
    ) -> Result<Option<ObservedMigrations>, StoreError> {
        let name = rollout.metadata.name.clone().unwrap_or_default();
        let Some(spec) = &rollout.spec.migrations else {
            lock(&self.migrations.by_rollout).remove(&name);
            return Ok(None);
        };
        let failure = tx.migration_failure(&name)?.and_then(to_failure);
        let target = match resolve(spec) {
            Ok(target) => target,
            Err(why) => {
                return Ok(Some(ObservedMigrations {
                    failure,
                    unreadable: Some(why),
                    ..ObservedMigrations::default()
                }));
            }
        };
        let (dir, url) = (target.dir.clone(), target.url.clone());
        let shared = self
            .migrations
            .shared(&name, target, &self.store, &self.wake);
        let running = lock(&shared.running).clone();
        let snapshot = lock(&shared.snapshot).clone();
        let revisions: HashMap<String, i64> = tx.migration_revisions(&name)?.into_iter().collect();
        let files = cutover_migrate::load_dir(&dir).map_err(|e| message(&e));
        let (migrations, unreadable) = match (files, snapshot) {
            (Err(why), _) | (_, Some(Err(why))) => (Vec::new(), Some(why)),
            (_, None) => (Vec::new(), Some("reading the migration state".to_string())),
            (Ok(files), Some(Ok(s))) => (observed(&files, &s, &revisions, dialect(&url)), None),
        };
        Ok(Some(ObservedMigrations {
            migrations,
            running,
            failure,
            unreadable,
        }))
    }

    /// Hands a migration command to the rollout's worker. The revision it runs for is
    /// recorded and the previous failure cleared in the pass's transaction.
    pub(crate) fn run_migration(
        &self,
        tx: &Tx<'_>,
        rollout: &str,
        req: &MigrationRequest,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let workers = lock(&self.migrations.by_rollout);
        let Some(worker) = workers.get(rollout) else {
            tracing::warn!(%rollout, "no migration worker: the command waits for the next pass");
            return Ok(());
        };
        let mut running = lock(&worker.shared.running);
        if running.is_some() {
            return Ok(());
        }
        if req.command == MigrationCommand::ExpandAndBackfill {
            tx.set_migration_revision(rollout, &req.migration, &req.hash, req.revision)?;
        }
        tx.set_migration_failure(rollout, None)?;
        *running = Some(RunningMigration {
            command: req.command,
            migration: Some(req.migration.clone()),
            since: now,
        });
        if worker.commands.send(req.clone()).is_err() {
            *running = None;
        }
        Ok(())
    }
}

impl MigrationWorkers {
    /// The worker of `rollout` for `target`, started (or restarted when the target changed).
    fn shared(
        &self,
        rollout: &str,
        target: Target,
        store: &Arc<Store>,
        wake: &Arc<Notify>,
    ) -> Arc<Shared> {
        let mut workers = lock(&self.by_rollout);
        if let Some(w) = workers.get(rollout)
            && w.target == target
        {
            return w.shared.clone();
        }
        let shared = Arc::new(Shared::default());
        let context = WorkerContext {
            rollout: rollout.to_string(),
            target: target.clone(),
            shared: shared.clone(),
            store: store.clone(),
            wake: wake.clone(),
        };
        let (commands, receiver) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("migrate-{rollout}"))
            .spawn(move || context.run(receiver));
        if let Err(e) = spawned {
            *lock(&shared.snapshot) = Some(Err(format!("cannot start a migration worker: {e}")));
        }
        // Replacing a worker drops its sender: it ends after the command in flight.
        workers.insert(
            rollout.to_string(),
            Worker {
                target,
                shared: shared.clone(),
                commands,
            },
        );
        shared
    }
}

/// `dir` (made absolute at apply, relative to the manifest) and the URL from the daemon's
/// environment.
fn resolve(spec: &RolloutMigrations) -> Result<Target, String> {
    let dir = spec.source.dir.as_deref().ok_or(
        "spec.migrations.source.dir is not set: on one host the migration files come from a directory (configMapRef is for Kubernetes)",
    )?;
    let env = spec.database_url_from.env.as_deref().ok_or(
        "spec.migrations.databaseUrlFrom.env is not set: on one host the database URL comes from an environment variable of `cutover up` (secretKeyRef is for Kubernetes)",
    )?;
    let url = std::env::var(env).map_err(|_| {
        format!(
            "environment variable {env} (spec.migrations.databaseUrlFrom.env) is not set for `cutover up`: set it to postgres://… or sqlite:PATH and restart the daemon"
        )
    })?;
    Ok(Target {
        dir: PathBuf::from(dir),
        url,
    })
}

fn dialect(url: &str) -> Dialect {
    if url.starts_with("sqlite:") {
        Dialect::Sqlite
    } else {
        Dialect::Postgres
    }
}

fn observed(
    files: &[Migration],
    s: &Snapshot,
    revisions: &HashMap<String, i64>,
    dialect: Dialect,
) -> Vec<ObservedMigration> {
    files
        .iter()
        .map(|file| {
            let name = &file.name;
            let record = s.records.iter().find(|r| &r.name == name);
            ObservedMigration {
                name: name.clone(),
                phase: record.map_or(MigrationPhase::Pending, |r| phase(r.phase)),
                backfilled_at: record.and_then(|r| r.backfilled_at),
                contracted_at: record.and_then(|r| r.contracted_at),
                revision: revisions.get(name).copied(),
                // A file that does not compile fails at expand; until then assume the worst.
                has_contract: cutover_migrate::compile(file, dialect)
                    .map_or(true, |plan| !plan.contract.is_empty()),
            }
        })
        .collect()
}

fn phase(p: cutover_migrate::Phase) -> MigrationPhase {
    match p {
        cutover_migrate::Phase::Pending => MigrationPhase::Pending,
        cutover_migrate::Phase::Expanded => MigrationPhase::Expanded,
        cutover_migrate::Phase::Backfilled => MigrationPhase::Backfilled,
        cutover_migrate::Phase::Contracted => MigrationPhase::Contracted,
        cutover_migrate::Phase::RolledBack => MigrationPhase::RolledBack,
    }
}

fn command_name(c: MigrationCommand) -> &'static str {
    match c {
        MigrationCommand::ExpandAndBackfill => "expand+backfill",
        MigrationCommand::Contract => "contract",
        MigrationCommand::Rollback => "rollback",
    }
}

fn to_failure(row: MigrationFailureRow) -> Option<MigrationFailure> {
    let command = [
        MigrationCommand::ExpandAndBackfill,
        MigrationCommand::Contract,
        MigrationCommand::Rollback,
    ]
    .into_iter()
    .find(|c| command_name(*c) == row.command)?;
    Some(MigrationFailure {
        command,
        migration: row.migration,
        hash: row.hash,
        message: row.message,
        at: row.at,
    })
}

/// Everything a worker thread owns.
struct WorkerContext {
    rollout: String,
    target: Target,
    shared: Arc<Shared>,
    store: Arc<Store>,
    wake: Arc<Notify>,
}

impl WorkerContext {
    fn run(self, commands: Receiver<MigrationRequest>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                self.publish(Err(format!("cannot start a migration runtime: {e}")));
                return;
            }
        };
        // The polling connection only reads; commands get connections of their own.
        let mut poller: Option<Database> = None;
        loop {
            let snapshot = runtime.block_on(read_state(&self.target, &mut poller));
            self.publish(snapshot);
            match commands.recv_timeout(STATE_POLL) {
                Ok(req) => {
                    tracing::info!(rollout = %self.rollout, migration = %req.migration, command = %req.command, "migration started");
                    let result = runtime.block_on(run_command(&self.rollout, &self.target, &req));
                    if let Err(message) = &result {
                        tracing::warn!(rollout = %self.rollout, migration = %req.migration, command = %req.command, error = %message, "migration failed");
                        self.record_failure(&req, message);
                    } else {
                        tracing::info!(rollout = %self.rollout, migration = %req.migration, command = %req.command, "migration done");
                    }
                    // The outcome is visible (state read, failure stored) before the run ends.
                    let snapshot = runtime.block_on(read_state(&self.target, &mut poller));
                    self.publish(snapshot);
                    *lock(&self.shared.running) = None;
                    self.wake.notify_one();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn publish(&self, snapshot: Result<Snapshot, String>) {
        let mut slot = lock(&self.shared.snapshot);
        let changed = slot.as_ref() != Some(&snapshot);
        *slot = Some(snapshot);
        drop(slot);
        if changed {
            self.wake.notify_one();
        }
    }

    fn record_failure(&self, req: &MigrationRequest, message: &str) {
        let row = MigrationFailureRow {
            command: command_name(req.command).to_string(),
            migration: Some(req.migration.clone()),
            hash: req.hash.clone(),
            message: message.to_string(),
            at: Timestamp::now(),
        };
        let stored = self
            .store
            .write(|tx| tx.set_migration_failure(&self.rollout, Some(&row)));
        if let Err(e) = stored {
            tracing::error!(rollout = %self.rollout, error = %e, "cannot record the migration failure");
        }
    }
}

/// A database cutover-migrate can work on.
enum Database {
    Postgres(Postgres),
    Sqlite(Sqlite),
}

impl Database {
    async fn open(url: &str, options: &Options) -> Result<Self, cutover_migrate::Error> {
        match url.strip_prefix("sqlite:") {
            Some(path) => Ok(Self::Sqlite(Sqlite::open(
                Path::new(path.trim_start_matches("//")),
                options,
            )?)),
            None => Ok(Self::Postgres(Postgres::connect(url, options).await?)),
        }
    }

    async fn records(&mut self) -> Result<Vec<Record>, cutover_migrate::Error> {
        use cutover_migrate::Backend;
        match self {
            Self::Postgres(db) => db.records().await,
            Self::Sqlite(db) => db.records().await,
        }
    }

    async fn execute(
        &mut self,
        migrations: &[Migration],
        req: &Request,
        options: &Options,
    ) -> Result<(), cutover_migrate::Error> {
        match self {
            Self::Postgres(db) => cutover_migrate::execute(db, migrations, req, options).await,
            Self::Sqlite(db) => cutover_migrate::execute(db, migrations, req, options).await,
        }
        .map(|_| ())
    }
}

async fn read_state(target: &Target, poller: &mut Option<Database>) -> Result<Snapshot, String> {
    let db = match poller {
        Some(db) => db,
        None => poller.insert(
            Database::open(&target.url, &Options::default())
                .await
                .map_err(|e| message(&e))?,
        ),
    };
    match db.records().await {
        Ok(records) => Ok(Snapshot { records }),
        Err(e) => {
            // Reconnect on the next read.
            *poller = None;
            Err(message(&e))
        }
    }
}

/// Runs one command as `cutover migrate` would, on a connection of its own.
async fn run_command(rollout: &str, target: &Target, req: &MigrationRequest) -> Result<(), String> {
    let migrations = cutover_migrate::load_dir(&target.dir).map_err(|e| message(&e))?;
    let options = Options::default();
    let mut db = Database::open(&target.url, &options)
        .await
        .map_err(|e| message(&e))?;
    let request = |command: PhaseKind| Request {
        command,
        target: Some(req.migration.clone()),
        rollout: None,
        bake: SignedDuration::try_from(req.bake).unwrap_or(SignedDuration::MAX),
        force: None,
        now: Timestamp::now(),
    };
    let steps: Vec<Request> = match req.command {
        MigrationCommand::ExpandAndBackfill => {
            vec![request(PhaseKind::Expand), request(PhaseKind::Backfill)]
        }
        MigrationCommand::Rollback => vec![request(PhaseKind::Rollback)],
        MigrationCommand::Contract => vec![Request {
            // The planner checked these facts; the library's gate checks them again.
            rollout: Some((
                rollout.to_string(),
                RolloutFacts {
                    old_revision_running: false,
                    fully_promoted_at: req.fully_promoted_at,
                },
            )),
            ..request(PhaseKind::Contract)
        }],
    };
    for step in &steps {
        db.execute(&migrations, step, &options)
            .await
            .map_err(|e| message(&e))?;
    }
    Ok(())
}

/// The error with its causes, on one line.
fn message(e: &cutover_migrate::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    // Located errors carry a `help:` line: keep every line, joined into one.
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
