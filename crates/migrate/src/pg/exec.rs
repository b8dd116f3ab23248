//! Running a phase's steps: DDL in transactions, `CONCURRENTLY` statements alone, backfill in
//! batches; and undoing an expand that failed part-way.
//!
//! A failure is reported with the index of the step at fault, so the caller can name the
//! operation of the file it comes from.

use std::time::Instant;

use super::{Postgres, backfill, backoff, is_lock_timeout, label, pg_err, record_phase};
use crate::plan::{PhaseKind, Step};
use crate::{Error, Options, PhaseRun, Report, StepTiming};

/// A failure: the index of the step in its phase, and why.
type Failed = (usize, Error);

/// Steps that share the transaction of their neighbours.
fn shares_transaction(step: &Step) -> bool {
    matches!(
        step,
        Step::Ddl { .. } | Step::Check { .. } | Step::Script { .. }
    )
}

impl Postgres {
    /// Runs `steps` (and the phase update) in one transaction, retrying on lock timeouts.
    /// `first` is the index of `steps[0]` in its phase.
    async fn group(
        &mut self,
        steps: &[Step],
        first: usize,
        finish: Option<&PhaseRun<'_>>,
        options: &Options,
    ) -> Result<StepTiming, Failed> {
        let first_label = steps
            .first()
            .map_or("record phase".into(), |s| label(s.sql()));
        let mut attempt = 1;
        loop {
            let start = Instant::now();
            match self.try_group(steps, first, finish).await {
                Ok(()) => {
                    let mut label = first_label;
                    if steps.len() > 1 {
                        label.push_str(&format!(" (+{} more)", steps.len() - 1));
                    }
                    return Ok(StepTiming {
                        label,
                        millis: start.elapsed().as_secs_f64() * 1000.0,
                        attempts: attempt,
                    });
                }
                Err((_, e)) if is_lock_timeout(&e) && attempt < options.lock_attempts => {
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
                Err((at, e)) if is_lock_timeout(&e) => {
                    let step = steps
                        .get(at - first)
                        .map_or(first_label.clone(), |s| label(s.sql()));
                    return Err((
                        at,
                        Error::LockTimeout {
                            attempts: attempt,
                            step,
                        },
                    ));
                }
                Err(failed) => return Err(failed),
            }
        }
    }

    /// Generated statements go one per round trip through the extended protocol, which takes a
    /// single statement: an expression inside one cannot append another. A `raw_sql` script
    /// goes as written; a check is only prepared.
    async fn try_group(
        &mut self,
        steps: &[Step],
        first: usize,
        finish: Option<&PhaseRun<'_>>,
    ) -> Result<(), Failed> {
        let last = first + steps.len().saturating_sub(1);
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| (first, pg_err("BEGIN")(e)))?;
        for (k, step) in steps.iter().enumerate() {
            let result = match step {
                Step::Ddl { sql } | Step::Validate { sql } => tx.execute(sql, &[]).await.map(drop),
                Step::Script { sql } => tx.batch_execute(sql).await,
                Step::Check { sql, .. } => tx.prepare(sql).await.map(drop),
                Step::Concurrent { .. } | Step::Backfill { .. } => Ok(()),
            };
            result.map_err(|e| (first + k, pg_err(label(step.sql()))(e)))?;
        }
        if let Some(run) = finish {
            record_phase(&tx, run).await.map_err(|e| (last, e))?;
        }
        tx.commit().await.map_err(|e| (last, pg_err("COMMIT")(e)))
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

    /// Runs a phase. `applied` counts the steps committed so far, for an undo after a failure.
    pub(super) async fn run_phase(
        &mut self,
        run: &PhaseRun<'_>,
        options: &Options,
        report: &mut Report,
        applied: &mut usize,
    ) -> Result<(), Failed> {
        let steps = run.steps;
        let resume_step = run.resume.as_ref().map_or(0, |c| c.step);
        let mut i = 0;
        while i < steps.len() {
            match &steps[i] {
                Step::Concurrent { sql, index } => {
                    let timing = self.concurrent(sql, index.as_deref(), options).await;
                    report.steps.push(timing.map_err(|e| (i, e))?);
                }
                Step::Validate { .. } => {
                    report
                        .steps
                        .push(self.group(&steps[i..=i], i, None, options).await?);
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
                    backfill::run(&self.client, &self.url, &target, resume, options, report)
                        .await
                        .map_err(|e| (i, e))?;
                }
                Step::Backfill { .. } => {}
                Step::Ddl { .. } | Step::Check { .. } | Step::Script { .. } => {
                    // Consecutive DDL shares one transaction; the last group also records
                    // the phase, so a crash leaves either all of it or none.
                    let start = i;
                    while i < steps.len() && shares_transaction(&steps[i]) {
                        i += 1;
                    }
                    let finish = (i == steps.len()).then_some(run);
                    let timing = self.group(&steps[start..i], start, finish, options).await?;
                    report.steps.push(timing);
                    *applied = i;
                    if i == steps.len() {
                        return Ok(());
                    }
                    continue;
                }
            }
            i += 1;
            *applied = i;
        }
        let timing = self.group(&[], steps.len(), Some(run), options).await?;
        if run.phase != PhaseKind::Backfill || report.steps.is_empty() {
            report.steps.push(timing);
        }
        Ok(())
    }

    /// Expand failed at step `failed_at` after `applied` steps were committed. Runs the undo
    /// steps of every operation it had applied, last first, and of the operation whose
    /// `CREATE INDEX CONCURRENTLY` failed: that leaves an INVALID index behind which writers
    /// still maintain (a unique one still refuses duplicates). Returns the error to report.
    pub(super) async fn undo_expand(
        &mut self,
        run: &PhaseRun<'_>,
        applied: usize,
        failed_at: usize,
        failed: Error,
        options: &Options,
    ) -> Error {
        let mut ops: Vec<usize> = run.origin.get(..applied).unwrap_or_default().to_vec();
        if let (Some(Step::Concurrent { .. }), Some(op)) =
            (run.steps.get(failed_at), run.origin.get(failed_at))
        {
            ops.push(*op);
        }
        ops.dedup();
        let mut steps = Vec::new();
        let mut kept = Vec::new();
        for &op in ops.iter().rev() {
            match run.undo.get(op) {
                Some(undo) if !undo.is_empty() => steps.extend(undo.iter().cloned()),
                _ => kept.push(format!("operations[{op}]")),
            }
        }
        if let Err(e) = self.run_plain(&steps, options).await {
            return Error::UndoFailed {
                cause: Box::new(failed),
                why: e.to_string(),
            };
        }
        if !kept.is_empty() {
            return Error::UndoFailed {
                cause: Box::new(failed),
                why: format!("{} ran and has no `rollback` to undo it", kept.join(", ")),
            };
        }
        // The database is as it was: no expand of this migration is in progress any more. If
        // this fails, the next expand merely takes itself for a resumed one.
        let _ = self
            .client
            .execute(
                "UPDATE cutover_migrations SET running = NULL, updated_at = now() WHERE name = $1",
                &[&run.migration.name],
            )
            .await;
        failed
    }

    /// Runs undo steps: DDL and scripts in transactions, `CONCURRENTLY` statements alone.
    async fn run_plain(&mut self, steps: &[Step], options: &Options) -> Result<(), Error> {
        let mut i = 0;
        while i < steps.len() {
            if let Step::Concurrent { sql, index } = &steps[i] {
                self.concurrent(sql, index.as_deref(), options).await?;
                i += 1;
                continue;
            }
            let start = i;
            while i < steps.len() && !matches!(steps[i], Step::Concurrent { .. }) {
                i += 1;
            }
            self.group(&steps[start..i], start, None, options)
                .await
                .map_err(|(_, e)| e)?;
        }
        Ok(())
    }
}
