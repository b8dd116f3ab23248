//! Delivery from the notification outbox: stored notifications are handed to the delivery
//! worker oldest first and removed from the table only once finished (delivered or given up).
//! A daemon that starts hands over every row again, so what a crash interrupted is sent with
//! its original idempotency key (at-least-once).

use std::sync::Arc;
use std::time::Duration;

use cutover_notify::{Job, Notifier};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

/// How often the outbox is read without a wake-up (rows a full queue sent back wait this long).
const POLL: Duration = Duration::from_secs(1);
/// Rows read at once.
const BATCH: u32 = 256;

/// Stores the jobs of one pass in its transaction, up to the outbox's cap (the delivery queue
/// size); returns the jobs that had no room, to be counted as dropped once the pass commits.
pub(super) fn store_jobs(
    tx: &crate::store::Tx<'_>,
    cap: usize,
    jobs: Vec<Job>,
) -> Result<Vec<Job>, StoreError> {
    let mut dropped = Vec::new();
    let mut len = tx.outbox_len()?;
    for job in jobs {
        if len >= cap {
            dropped.push(job);
            continue;
        }
        // Plain data: encoding cannot fail.
        tx.push_outbox(&serde_json::to_string(&job).unwrap_or_default())?;
        len += 1;
    }
    Ok(dropped)
}

/// Feeds stored notifications to `notifier` until `shutdown`.
pub(super) async fn feed(
    store: Arc<Store>,
    notifier: Notifier,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    // Rows up to this id are in the delivery worker's hands; a new daemon starts from 0.
    let mut handed_over = 0;
    loop {
        match hand_over(&store, &notifier, handed_over) {
            Ok(last) => handed_over = last,
            Err(e) => tracing::error!(error = %e, "cannot read the notification outbox; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Hands the rows after `after` to the worker while its queue has room; returns the last id
/// handed over.
fn hand_over(store: &Arc<Store>, notifier: &Notifier, after: i64) -> Result<i64, StoreError> {
    let mut last = after;
    loop {
        let rows = store.read(|tx| tx.outbox_after(last, BATCH))?;
        if rows.is_empty() {
            return Ok(last);
        }
        for (id, json) in rows {
            let job: Job = match serde_json::from_str(&json) {
                Ok(job) => job,
                Err(e) => {
                    tracing::error!(id, error = %e, "notification outbox: unreadable row removed");
                    store.remove_from_outbox(id)?;
                    last = id;
                    continue;
                }
            };
            let owner = store.clone();
            let finished = Box::new(move || {
                if let Err(e) = owner.remove_from_outbox(id) {
                    // It stays and is sent again after a restart: a repeat, not a loss.
                    tracing::warn!(id, error = %e, "cannot remove a finished notification from the outbox");
                }
            });
            if !notifier.deliver_then(job, finished) {
                // The queue is full: this row and the next wait for the next round.
                return Ok(last);
            }
            last = id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_notify::{Notification, Target};

    fn job(key: &str) -> Job {
        Job {
            notification: Notification {
                idempotency_key: key.into(),
                trigger: "on-completed".into(),
                rollout: "web".into(),
                namespace: "default".into(),
                revision: Some(2),
                images: vec!["web:v2".into()],
                phase: Some("Healthy".into()),
                reason: "RolloutCompleted".into(),
                message: "done".into(),
                switch_latency_seconds: None,
                at: "2026-01-01T00:00:00Z".into(),
                text: "default/web: revision 2 is stable".into(),
                recipient: None,
            },
            target: Target {
                service: "ops".into(),
                recipient: None,
            },
        }
    }

    #[test]
    fn a_full_outbox_keeps_what_it_holds_and_returns_the_rest_as_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let dropped = store
            .write(|tx| store_jobs(tx, 2, vec![job("a"), job("b"), job("c")]))
            .expect("store");
        assert_eq!(dropped, vec![job("c")]);
        let rows = store.read(|tx| tx.outbox_after(0, 10)).expect("rows");
        let stored: Vec<Job> = rows
            .iter()
            .map(|(_, json)| serde_json::from_str(json).expect("a stored job"))
            .collect();
        assert_eq!(stored, vec![job("a"), job("b")]);
        let dropped = store
            .write(|tx| store_jobs(tx, 2, vec![job("d")]))
            .expect("store");
        assert_eq!(
            dropped,
            vec![job("d")],
            "the cap counts rows already stored"
        );
    }
}
