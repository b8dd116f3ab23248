//! Backfill in primary-key batches, each its own transaction that also commits the checkpoint,
//! so an interrupted run resumes exactly after the last committed batch.
//!
//! Only rows up to the highest key seen at the start are walked: every row written after that
//! went through the sync triggers already, so the walk ends even under a steady insert load.
//! A batch is a primary-key range of `batch_size` keys; its UPDATE locks only the rows it
//! changes, until the batch commits (the application's writers wait at most one batch, never
//! the whole table). READ COMMITTED re-checks `IS NULL` on a row's newest version, so a row
//! someone filled meanwhile is skipped.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::lockwatch::{LockWatch, Seen};
use super::{backoff, literal, pg_err};
use crate::file::{Ident, QualifiedName};
use crate::pacing::{BatchSignal, Pacer};
use crate::state::Checkpoint;
use crate::{Error, Options, Report};

/// What to fill.
pub(crate) struct Target<'a> {
    pub migration: &'a str,
    pub step: usize,
    pub table: &'a QualifiedName,
    pub column: &'a Ident,
    pub expr: &'a str,
}

/// The table's single-column primary key and its type.
async fn primary_key(client: &Client, table: &QualifiedName) -> Result<(String, String), Error> {
    let rows = client
        .query(
            "SELECT quote_ident(a.attname), format_type(a.atttypid, a.atttypmod)
             FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = $1::text::regclass AND i.indisprimary",
            &[&table.quoted()],
        )
        .await
        .map_err(pg_err(format!("reading the primary key of {table}")))?;
    match rows.as_slice() {
        [row] => Ok((row.get(0), row.get(1))),
        _ => Err(Error::NoKey {
            table: table.to_string(),
        }),
    }
}

fn first_row(messages: &[SimpleQueryMessage]) -> Option<&tokio_postgres::SimpleQueryRow> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })
}

/// Runs one backfill step.
pub(crate) async fn run(
    client: &Client,
    url: &str,
    t: &Target<'_>,
    resume: Option<&Checkpoint>,
    options: &Options,
    report: &mut Report,
) -> Result<(), Error> {
    let (pk, pk_type) = primary_key(client, t.table).await?;
    let table = t.table.quoted();
    let col = t.column.quoted();
    let max = match resume.and_then(|c| c.max.clone()) {
        Some(max) => Some(max),
        None => client
            .query_one(&format!("SELECT max({pk})::text FROM {table}"), &[])
            .await
            .map_err(pg_err("reading the highest key"))?
            .get::<_, Option<String>>(0),
    };
    let Some(max) = max else { return Ok(()) }; // an empty table
    let max_lit = format!("{}::{pk_type}", literal(&max));
    let bar = if options.progress {
        let todo: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE {col} IS NULL AND {pk} <= {max_lit}"),
                &[],
            )
            .await
            .map_err(pg_err("counting rows to backfill"))?
            .get(0);
        let bar = ProgressBar::with_draw_target(
            Some(u64::try_from(todo).unwrap_or(0)),
            ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} rows, {per_sec}, eta {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("backfill {}.{}", t.table, t.column));
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut last = resume.and_then(|c| c.last.clone());
    let mut pacer = Pacer::new(&options.pacing, options.batch_size, &mut report.pacing);
    let watch = if pacer.adaptive() {
        LockWatch::connect(url, client).await
    } else {
        None
    };
    report.pacing.watched_locks = watch.is_some();
    let started = Instant::now();
    loop {
        if let Some(stop) = &options.stop
            && stop.load(std::sync::atomic::Ordering::SeqCst)
        {
            bar.abandon();
            return Err(Error::Interrupted { rows: report.rows });
        }
        let after = last
            .as_ref()
            .map(|l| format!("{pk} > {}::{pk_type} AND ", literal(l)))
            .unwrap_or_default();
        let keys = pacer.batch_size().max(1);
        // One round trip per batch: its key range, the update and the checkpoint commit
        // together. The range's upper key comes from the primary-key index alone (no row is
        // read or locked for it); the UPDATE then walks exactly that index range and locks only
        // the rows it changes — no separate `FOR UPDATE` pass that would write every row twice.
        let sql = format!(
            "BEGIN;
SET LOCAL cutover.backfill = 'on';
WITH bound AS (
  SELECT coalesce(
    (SELECT {pk} FROM {table} WHERE {after}{pk} <= {max_lit} ORDER BY {pk} OFFSET {offset} LIMIT 1),
    {max_lit}) AS hi
), done AS (
  UPDATE {table} SET {col} = ({expr})
  WHERE {after}{pk} <= (SELECT hi FROM bound) AND {col} IS NULL
  RETURNING 1
), saved AS (
  UPDATE cutover_migrations SET
    checkpoint = jsonb_build_object('step', {step}, 'last', (SELECT hi::text FROM bound), 'max', {max_text}),
    rows_backfilled = rows_backfilled + (SELECT count(*) FROM done),
    updated_at = now()
  WHERE name = {name} RETURNING 1
)
SELECT (SELECT hi::text FROM bound), (SELECT count(*) FROM done)::text, (SELECT count(*) FROM saved)::text;
COMMIT;",
            offset = keys - 1,
            expr = t.expr,
            step = t.step,
            max_text = literal(&max),
            name = literal(t.migration),
        );
        let batch_start = Instant::now();
        let attempt = async {
            let mut attempt = 1;
            loop {
                match client.simple_query(&sql).await {
                    Ok(m) => break Ok((m, attempt)),
                    Err(e) => {
                        // The failed statement left the transaction aborted: end it before
                        // anything else runs on this session.
                        let _ = client.batch_execute("ROLLBACK").await;
                        let lock =
                            e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE);
                        if lock && attempt < options.lock_attempts {
                            tokio::time::sleep(backoff(attempt)).await;
                            attempt += 1;
                            continue;
                        }
                        break Err(e);
                    }
                }
            }
        };
        let (outcome, seen) = match &watch {
            Some(w) => w.during(attempt).await,
            None => (attempt.await, Seen::default()),
        };
        let (messages, attempts) = match outcome {
            Ok(done) => done,
            Err(e) => {
                bar.abandon();
                return Err(pg_err(format!("backfilling {}.{}", t.table, t.column))(e));
            }
        };
        let millis = batch_start.elapsed().as_secs_f64() * 1000.0;
        let row = first_row(&messages);
        let Some(newest) = row.and_then(|r| r.get(0)).map(str::to_owned) else {
            break;
        };
        let rows: i64 = row
            .and_then(|r| r.get(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        report.rows += rows;
        report.batches += 1;
        report.max_batch_millis = report.max_batch_millis.max(millis);
        bar.inc(u64::try_from(rows).unwrap_or(0));
        // The range reached the highest key seen at the start: every row is done.
        let finished = newest == max;
        last = Some(newest);
        if finished {
            break;
        }
        let signal = BatchSignal {
            rows: u64::from(keys),
            millis,
            blocked_writers: seen.blocked_writers,
            backfill_waited: seen.backfill_waited || attempts > 1,
        };
        let pause = pacer.after_batch(&signal, &mut report.pacing);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    bar.finish_and_clear();
    report.backfill_seconds += started.elapsed().as_secs_f64();
    Ok(())
}
