//! The notification outbox on Kubernetes: ConfigMap `cutover-notifications-outbox` in the
//! controller's notifications namespace holds every notification not yet delivered or given
//! up, one data key per job (a hash of its idempotency key, service and recipient) with the
//! job as JSON. A job is stored after the status write was accepted and before it is queued in
//! memory, and removed once finished; a controller that starts (as the leader, when leader
//! election is on) queues every stored job again with its original idempotency key, so what a
//! restart interrupted is still delivered (at-least-once).
//!
//! Writers add keys with a merge patch carrying the resourceVersion they read, so two workers
//! (or two controllers during a handover) never push the outbox past its cap
//! (`delivery.queueSize`): a conflict reads again. Removal is a merge patch setting the key to
//! null, which needs no precondition.

use std::collections::BTreeMap;

use cutover_notify::{Job, Notifier};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource as _};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::error::Error;

/// Name of the outbox ConfigMap.
pub const NAME: &str = "cutover-notifications-outbox";
/// Tries of a write that keeps meeting other writers' changes.
const WRITE_TRIES: usize = 10;
/// What the outbox may hold in total. The API server refuses an object over about 1.5 MB
/// (etcd's request limit) and a ConfigMap's data over 1 MiB; a job that would cross this is
/// dropped and counted like one beyond `delivery.queueSize`, instead of failing every write.
const MAX_BYTES: usize = 900 * 1024;

/// The outcome of fitting new jobs into the stored ones.
struct Choice {
    /// Entries to add: key → encoded job.
    added: BTreeMap<String, String>,
    /// The jobs added, with their keys.
    stored: Vec<(String, Job)>,
    /// The jobs that had no room (by count or by size).
    dropped: Vec<Job>,
}

/// Fits `keyed` into the outbox holding `present`: at most `cap` entries and `max_bytes` of
/// keys and values. A job already stored (a pass repeated) is neither added nor dropped: it is
/// being delivered.
fn choose(
    present: &BTreeMap<String, String>,
    keyed: &[(String, Job)],
    cap: usize,
    max_bytes: usize,
) -> Choice {
    let mut bytes: usize = present.iter().map(|(k, v)| k.len() + v.len()).sum();
    let mut choice = Choice {
        added: BTreeMap::new(),
        stored: Vec::new(),
        dropped: Vec::new(),
    };
    for (key, job) in keyed.iter().cloned() {
        if present.contains_key(&key) || choice.added.contains_key(&key) {
            continue;
        }
        let encoded = encode(&job);
        let size = key.len() + encoded.len();
        if present.len() + choice.added.len() < cap && bytes + size <= max_bytes {
            bytes += size;
            choice.added.insert(key.clone(), encoded);
            choice.stored.push((key, job));
        } else {
            choice.dropped.push(job);
        }
    }
    choice
}

/// The outbox of one namespace.
#[derive(Clone)]
pub struct Outbox {
    config_maps: Api<ConfigMap>,
    ns: String,
}

impl Outbox {
    pub fn new(client: Client, ns: &str) -> Self {
        Self {
            config_maps: Api::namespaced(client, ns),
            ns: ns.to_string(),
        }
    }

    /// Stores `jobs` while the outbox holds fewer than `cap`; returns the stored jobs with
    /// their keys, and the jobs that had no room.
    pub async fn store(
        &self,
        jobs: Vec<Job>,
        cap: usize,
    ) -> Result<(Vec<(String, Job)>, Vec<Job>), Error> {
        let keyed: Vec<(String, Job)> = jobs.into_iter().map(|j| (key_of(&j), j)).collect();
        for _ in 0..WRITE_TRIES {
            let current = self
                .config_maps
                .get_opt(NAME)
                .await
                .map_err(|e| Error::kube(self.what("read"), e))?;
            let (present, version) = match &current {
                Some(cm) => (
                    cm.data.clone().unwrap_or_default(),
                    cm.meta().resource_version.clone(),
                ),
                None => (BTreeMap::new(), None),
            };
            let Choice {
                added,
                stored,
                dropped,
            } = choose(&present, &keyed, cap, MAX_BYTES);
            if added.is_empty() {
                return Ok((stored, dropped));
            }
            let written = match version {
                None => self.create(added).await,
                Some(version) => {
                    let patch = json!({
                        "metadata": { "resourceVersion": version },
                        "data": added,
                    });
                    self.config_maps
                        .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                }
            };
            match written {
                Ok(()) => return Ok((stored, dropped)),
                // Another writer got there first (or created it): read again.
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => continue,
                Err(e) => return Err(Error::kube(self.what("write"), e)),
            }
        }
        Err(Error::Config(format!(
            "{} kept changing under {WRITE_TRIES} writes in a row; the notifications were not stored",
            self.what("write")
        )))
    }

    async fn create(&self, data: BTreeMap<String, String>) -> Result<(), kube::Error> {
        let mut config_map = ConfigMap {
            data: Some(data),
            ..ConfigMap::default()
        };
        config_map.meta_mut().name = Some(NAME.into());
        config_map.meta_mut().labels = Some(BTreeMap::from([(
            "app.kubernetes.io/name".to_string(),
            "cutover".to_string(),
        )]));
        self.config_maps
            .create(&PostParams::default(), &config_map)
            .await
            .map(|_| ())
    }

    /// Removes the job stored under `key` (nothing when it is gone already).
    pub async fn remove(&self, key: &str) -> Result<(), Error> {
        let patch = json!({ "data": { key: null } });
        match self
            .config_maps
            .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(Error::kube(self.what("remove a job from"), e)),
        }
    }

    /// Every stored entry: its key and the job, or why it cannot be read.
    pub async fn pending(&self) -> Result<Vec<(String, Result<Job, String>)>, Error> {
        let current = self
            .config_maps
            .get_opt(NAME)
            .await
            .map_err(|e| Error::kube(self.what("read"), e))?;
        Ok(current
            .and_then(|cm| cm.data)
            .unwrap_or_default()
            .into_iter()
            .map(|(key, json)| {
                let job = serde_json::from_str(&json).map_err(|e| e.to_string());
                (key, job)
            })
            .collect())
    }

    fn what(&self, action: &str) -> String {
        format!("{action} ConfigMap {}/{NAME}", self.ns)
    }
}

/// Stores `jobs` and queues each for delivery, to be removed once finished. A job the outbox
/// or the queue has no room for is dropped and counted. When the outbox cannot be written the
/// jobs are queued in memory only (delivered unless the controller stops first).
pub async fn announce(outbox: &Outbox, notifier: &Notifier, jobs: Vec<Job>) {
    if jobs.is_empty() {
        return;
    }
    match outbox.store(jobs.clone(), notifier.queue_size()).await {
        Ok((stored, dropped)) => {
            for job in &dropped {
                notifier.count_dropped(job);
            }
            for (key, job) in stored {
                hand_over(outbox, notifier, key, job).await;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "notifications: the outbox cannot be written; queued in memory only");
            notifier.enqueue(jobs);
        }
    }
}

/// Queues every stored job again (a controller starts): what the last controller did not
/// finish is delivered with its original idempotency key. Unreadable entries are removed.
pub async fn resume(outbox: &Outbox, notifier: &Notifier) -> Result<usize, Error> {
    let mut resumed = 0;
    for (key, job) in outbox.pending().await? {
        match job {
            Ok(job) => {
                hand_over(outbox, notifier, key, job).await;
                resumed += 1;
            }
            Err(why) => {
                tracing::error!(key, "notification outbox: unreadable entry removed: {why}");
                outbox.remove(&key).await?;
            }
        }
    }
    if resumed > 0 {
        tracing::info!(
            resumed,
            "notifications: resumed the deliveries a previous controller left"
        );
    }
    Ok(resumed)
}

/// Queues a stored job; it leaves the outbox once delivered or given up, or at once when the
/// in-memory queue is full (dropped and counted).
async fn hand_over(outbox: &Outbox, notifier: &Notifier, key: String, job: Job) {
    let remover = outbox.clone();
    let finished_key = key.clone();
    let finished = Box::new(move || {
        tokio::spawn(async move {
            if let Err(e) = remover.remove(&finished_key).await {
                // Left in the outbox: sent once more by the next controller, which receivers
                // drop by its idempotency key.
                tracing::warn!(error = %e, "notifications: a finished job stays in the outbox");
            }
        });
    });
    if !notifier.deliver_then(job.clone(), finished) {
        notifier.count_dropped(&job);
        if let Err(e) = outbox.remove(&key).await {
            tracing::warn!(error = %e, "notifications: a dropped job stays in the outbox");
        }
    }
}

/// The outbox key of a job: one per transition and target, valid as a ConfigMap data key.
fn key_of(job: &Job) -> String {
    let mut hash = Sha256::new();
    hash.update(job.notification.idempotency_key.as_bytes());
    hash.update(b"\n");
    hash.update(job.target.service.as_bytes());
    hash.update(b"\n");
    if let Some(recipient) = &job.target.recipient {
        hash.update(b"to:");
        hash.update(recipient.as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A job as stored: plain data, so encoding cannot fail.
fn encode(job: &Job) -> String {
    serde_json::to_string(job).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn job(key: &str, text_len: usize) -> Job {
        serde_json::from_value(json!({
            "notification": {
                "idempotencyKey": key, "trigger": "on-completed", "rollout": "web",
                "namespace": "shop", "revision": 2, "images": ["web:2"], "phase": "Healthy",
                "reason": "RolloutCompleted", "message": "", "switchLatencySeconds": null,
                "at": "2026-12-07T00:00:00Z", "text": "x".repeat(text_len), "recipient": null,
            },
            "target": { "service": "hook", "recipient": null },
        }))
        .unwrap()
    }

    fn keyed(jobs: &[Job]) -> Vec<(String, Job)> {
        jobs.iter().map(|j| (key_of(j), j.clone())).collect()
    }

    #[test]
    fn new_jobs_fill_the_room_left_by_count_and_the_rest_are_dropped() {
        let present = BTreeMap::from([(key_of(&job("a", 10)), encode(&job("a", 10)))]);
        let new = keyed(&[job("a", 10), job("b", 10), job("c", 10), job("d", 10)]);
        let choice = choose(&present, &new, 3, MAX_BYTES);
        let stored: Vec<&str> = choice
            .stored
            .iter()
            .map(|(_, j)| j.notification.idempotency_key.as_str())
            .collect();
        assert_eq!(
            stored,
            ["b", "c"],
            "`a` is stored already and is not dropped"
        );
        assert_eq!(choice.added.len(), 2);
        assert_eq!(choice.dropped.len(), 1);
        assert_eq!(choice.dropped[0].notification.idempotency_key, "d");
    }

    #[test]
    fn a_job_that_would_push_the_config_map_past_its_size_is_dropped() {
        let big = job("big", 600 * 1024);
        let present = BTreeMap::from([(key_of(&big), encode(&big))]);
        let new = keyed(&[job("large", 400 * 1024), job("small", 100)]);
        let choice = choose(&present, &new, 1000, MAX_BYTES);
        assert_eq!(choice.stored.len(), 1);
        assert_eq!(choice.stored[0].1.notification.idempotency_key, "small");
        assert_eq!(choice.dropped[0].notification.idempotency_key, "large");
        let total: usize = present
            .iter()
            .chain(choice.added.iter())
            .map(|(k, v)| k.len() + v.len())
            .sum();
        assert!(total <= MAX_BYTES);
    }
}
