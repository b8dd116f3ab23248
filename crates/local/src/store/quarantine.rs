//! A daemon must start on its own state whatever is in it. A stored object that no longer
//! reads (an older or newer format, a file edited by hand, a bug) is moved aside into the
//! `quarantine` table, whole, with why; the daemon says so and runs everything else.

use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use rusqlite::params;

use super::{Store, StoreError, Tx};
use cutover_core::api::Rollout;

impl Store {
    /// Moves every stored object that cannot be read into `quarantine`; returns one line per
    /// object moved (kind, name, why), for the daemon to report.
    pub fn quarantine_unreadable(&self) -> Result<Vec<String>, StoreError> {
        self.write(|tx| -> Result<Vec<String>, StoreError> {
            tx.0.execute_batch(
                "CREATE TABLE IF NOT EXISTS quarantine (
                   id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, name TEXT NOT NULL,
                   reason TEXT NOT NULL, object TEXT NOT NULL, at TEXT NOT NULL)",
            )?;
            let mut moved = Vec::new();
            for (name, why) in unreadable_rollouts(tx)? {
                tx.quarantine_rollout(&name, &why)?;
                moved.push(format!("Rollout/{name}: {why}"));
            }
            let services: Vec<(String, String)> = rows(tx, "SELECT name, object FROM services")?;
            for (name, object) in services {
                if let Err(e) = serde_json::from_str::<Service>(&object) {
                    tx.0.execute(
                        "INSERT INTO quarantine (kind, name, reason, object, at)
                         VALUES ('Service', ?1, ?2, ?3, ?4)",
                        params![
                            name,
                            e.to_string(),
                            object,
                            jiff::Timestamp::now().to_string()
                        ],
                    )?;
                    tx.0.execute("DELETE FROM services WHERE name = ?1", [&name])?;
                    moved.push(format!("Service/{name}: {e}"));
                }
            }
            Ok(moved)
        })
    }
}

/// Rollouts whose object or one of whose revisions' templates does not parse, with why.
fn unreadable_rollouts(tx: &Tx<'_>) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::new();
    for (name, object) in rows(tx, "SELECT name, object FROM rollouts")? {
        if let Err(e) = serde_json::from_str::<Rollout>(&object) {
            out.push((name, format!("the rollout does not read: {e}")));
            continue;
        }
        let templates: Vec<(String, String)> = {
            let mut stmt =
                tx.0.prepare("SELECT hash, template FROM revisions WHERE rollout = ?1")?;
            let found = stmt.query_map([&name], |r| Ok((r.get(0)?, r.get(1)?)))?;
            found.collect::<Result<_, _>>()?
        };
        if let Some((hash, e)) = templates.iter().find_map(|(hash, t)| {
            serde_json::from_str::<PodTemplateSpec>(t)
                .err()
                .map(|e| (hash.clone(), e))
        }) {
            out.push((name, format!("revision {hash} does not read: {e}")));
        }
    }
    Ok(out)
}

fn rows(tx: &Tx<'_>, sql: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = tx.0.prepare(sql)?;
    let found = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(found.collect::<Result<_, _>>()?)
}

impl Tx<'_> {
    /// Moves a rollout with its revisions and runs into `quarantine`, as one JSON record.
    fn quarantine_rollout(&self, name: &str, why: &str) -> Result<(), StoreError> {
        let object: String = self.0.query_row(
            "SELECT json_object(
               'rollout', (SELECT object FROM rollouts WHERE name = ?1),
               'revisions', (SELECT json_group_array(json_object('hash', hash, 'revision',
                               revision, 'template', template, 'desired', desired))
                             FROM revisions WHERE rollout = ?1),
               'runs', (SELECT json_group_array(name) FROM runs WHERE rollout = ?1))",
            [name],
            |r| r.get(0),
        )?;
        self.0.execute(
            "INSERT INTO quarantine (kind, name, reason, object, at)
             VALUES ('Rollout', ?1, ?2, ?3, ?4)",
            params![name, why, object, jiff::Timestamp::now().to_string()],
        )?;
        for table in ["revisions", "runs"] {
            self.0
                .execute(&format!("DELETE FROM {table} WHERE rollout = ?1"), [name])?;
        }
        self.0
            .execute("DELETE FROM rollouts WHERE name = ?1", [name])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_core::fixtures::RolloutBuilder;

    #[test]
    fn an_unreadable_rollout_is_moved_aside_and_the_rest_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .write(|tx| {
                tx.put_rollout(&RolloutBuilder::new("good").build())?;
                tx.put_rollout(&RolloutBuilder::new("bad").build())?;
                tx.0.execute(
                    "UPDATE rollouts SET object = '{\"spec\": 3}' WHERE name = 'bad'",
                    [],
                )?;
                Ok::<_, StoreError>(())
            })
            .expect("write");
        assert!(store.read(|tx| tx.rollouts()).is_err(), "unreadable before");
        let moved = store.quarantine_unreadable().expect("quarantine");
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert!(
            moved[0].starts_with("Rollout/bad: the rollout does not read"),
            "{moved:?}"
        );
        let left = store.read(|tx| tx.rollouts()).expect("reads now");
        assert_eq!(left.len(), 1);
        assert!(store.quarantine_unreadable().expect("again").is_empty());
    }
}
