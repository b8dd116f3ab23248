//! Watches, from a second session, whether a running backfill batch hurts the application's
//! writers: sessions waiting on a lock the backfill holds (`pg_blocking_pids`), and the
//! backfill itself waiting on a writer's lock. What it sees feeds the adaptive pacing.

use std::future::Future;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

/// How often the watcher looks while a batch runs. One look is one small catalog query that
/// only evaluates `pg_blocking_pids` for sessions already waiting on a lock.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

const SAMPLE: &str = "SELECT
  (count(*) FILTER (WHERE $1 = ANY(pg_blocking_pids(pid))))::int4,
  coalesce(bool_or(pid = $1), false)
FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()";

/// What the watcher saw during one batch.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Seen {
    /// Most sessions at once waiting behind the backfill.
    pub blocked_writers: u32,
    /// The backfill waited on someone else's lock.
    pub backfill_waited: bool,
}

/// A second session watching the backfill's session.
pub(crate) struct LockWatch {
    client: Client,
    backfill_pid: i32,
}

impl LockWatch {
    /// Opens the watching session. `None` when it cannot (e.g. no connection slot left): the
    /// adaptive pacing then goes by batch latency alone, rather than failing the backfill.
    pub(crate) async fn connect(url: &str, backfill: &Client) -> Option<Self> {
        let backfill_pid: i32 = backfill
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .ok()?
            .get(0);
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.ok()?;
        tokio::spawn(async move {
            // Ends when the client is dropped; a broken watcher only loses samples.
            let _ = connection.await;
        });
        client
            .batch_execute("SET application_name = 'cutover backfill lock watch'")
            .await
            .ok()?;
        Some(Self {
            client,
            backfill_pid,
        })
    }

    /// Runs `work` to completion, looking at the lock waits every [`SAMPLE_EVERY`] meanwhile.
    pub(crate) async fn during<F: Future>(&self, work: F) -> (F::Output, Seen) {
        let mut work = std::pin::pin!(work);
        let mut seen = Seen::default();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                out = &mut work => return (out, seen),
                _ = tick.tick() => {
                    // A failed look is a lost sample, never a failed backfill.
                    if let Ok(row) = self.client.query_one(SAMPLE, &[&self.backfill_pid]).await {
                        let blocked: i32 = row.get(0);
                        let waited: bool = row.get(1);
                        seen.blocked_writers = seen
                            .blocked_writers
                            .max(u32::try_from(blocked).unwrap_or(0));
                        seen.backfill_waited |= waited;
                    }
                }
            }
        }
    }
}
