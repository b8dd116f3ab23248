//! The notification outbox: notifications a pass produced, written in the pass's own
//! transaction so a transition that committed is never without its notifications, and kept
//! until delivered or given up so a daemon killed mid-delivery sends them after its restart.
//! Each row holds one `cutover_notify::Job` as JSON, idempotency key included.

use rusqlite::{Connection, params};

use super::{Store, StoreError, Tx};

/// Schema step 5: the table.
pub(super) fn create_table(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "BEGIN;
         CREATE TABLE notification_outbox (
           id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL);
         PRAGMA user_version = 5;
         COMMIT;",
    )?;
    Ok(())
}

impl Tx<'_> {
    /// How many notifications wait for delivery.
    pub fn outbox_len(&self) -> Result<usize, StoreError> {
        let n: i64 = self
            .0
            .query_row("SELECT count(*) FROM notification_outbox", [], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Stores one notification (JSON) for delivery.
    pub fn push_outbox(&self, job: &str) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO notification_outbox (job) VALUES (?1)",
            params![job],
        )?;
        Ok(())
    }

    /// Up to `limit` stored notifications with an id above `after`, oldest first.
    pub fn outbox_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, String)>, StoreError> {
        let mut stmt = self.0.prepare(
            "SELECT id, job FROM notification_outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let found = stmt.query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(found.collect::<Result<_, _>>()?)
    }
}

impl Store {
    /// Removes a notification that was delivered or given up.
    pub fn remove_from_outbox(&self, id: i64) -> Result<(), StoreError> {
        self.write(|tx| -> Result<(), StoreError> {
            tx.0.execute("DELETE FROM notification_outbox WHERE id = ?1", params![id])?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_reopen_in_order_until_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            store
                .write(|tx| -> Result<(), StoreError> {
                    tx.push_outbox("first")?;
                    tx.push_outbox("second")
                })
                .expect("push");
        }
        let store = Store::open(dir.path()).expect("reopen");
        let rows = store.read(|tx| tx.outbox_after(0, 10)).expect("read");
        let jobs: Vec<&str> = rows.iter().map(|(_, j)| j.as_str()).collect();
        assert_eq!(jobs, ["first", "second"]);
        store.remove_from_outbox(rows[0].0).expect("remove");
        assert_eq!(store.read(|tx| tx.outbox_len()).expect("len"), 1);
        let after_first = store
            .read(|tx| tx.outbox_after(rows[0].0, 10))
            .expect("read");
        assert_eq!(after_first, vec![rows[1].clone()]);
    }

    #[test]
    fn a_rolled_back_pass_leaves_no_notification() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let failed: Result<(), StoreError> = store.write(|tx| {
            tx.push_outbox("never")?;
            Err(StoreError::TooNew { found: 0 })
        });
        assert!(failed.is_err());
        assert_eq!(store.read(|tx| tx.outbox_len()).expect("len"), 0);
    }
}
