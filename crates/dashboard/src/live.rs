//! Live updates: one poller per thing watched (the list, or one rollout), shared by every page
//! that shows it, and one Server-Sent Events stream per page that sends only the regions whose
//! HTML changed.
//!
//! Neither backend pushes changes to its clients (the CLI's `-w` polls too), so the hub reads
//! the backend every `poll_interval` while at least one page watches, and stops when the last
//! one leaves. A poll whose answer did not change (same fingerprint) wakes nobody. Pages render
//! their regions from the shared answer; the per-page state is one hash per region.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cutover_local::api::RolloutView;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, RolloutKey};
use crate::pages::{Mode, Region, Regions};

/// What a page watches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Every rollout.
    List,
    /// One rollout.
    Rollout(RolloutKey),
}

/// The latest answer of the backend for a topic.
#[derive(Clone, Debug)]
pub enum Snapshot {
    /// Not read yet.
    Loading,
    /// The views (one for a rollout's topic).
    Views(Arc<Vec<RolloutView>>),
    /// The backend's error, for the page's problem banner.
    Failed(Arc<String>),
}

/// The pollers, by topic.
pub struct Hub {
    backend: Arc<dyn Backend>,
    interval: Duration,
    topics: Mutex<HashMap<Topic, watch::Sender<Snapshot>>>,
    shutdown: CancellationToken,
}

impl Hub {
    /// A hub reading `backend` every `interval` while watched, until `shutdown`.
    pub fn new(
        backend: Arc<dyn Backend>,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            backend,
            interval,
            topics: Mutex::new(HashMap::new()),
            shutdown,
        })
    }

    /// Watches a topic, starting its poller if nobody watched it yet.
    pub fn subscribe(self: &Arc<Self>, topic: Topic) -> watch::Receiver<Snapshot> {
        let mut topics = match self.topics.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(sender) = topics.get(&topic) {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(Snapshot::Loading);
        topics.insert(topic.clone(), sender.clone());
        tokio::spawn(self.clone().poll(topic, sender));
        receiver
    }

    /// Pages watching now (for the benchmark and tests).
    pub fn watchers(&self) -> usize {
        self.topics
            .lock()
            .map(|t| t.values().map(watch::Sender::receiver_count).sum())
            .unwrap_or(0)
    }

    async fn poll(self: Arc<Self>, topic: Topic, sender: watch::Sender<Snapshot>) {
        let mut last: Option<u64> = None;
        loop {
            let started = Instant::now();
            let answer = match &topic {
                Topic::List => self.backend.rollouts().await,
                Topic::Rollout(key) => self.backend.rollout(key).await.map(|v| vec![v]),
            };
            let (fingerprint, snapshot) = match answer {
                Ok(views) => (
                    fingerprint(&serde_json::to_vec(&views).unwrap_or_default()),
                    Snapshot::Views(Arc::new(views)),
                ),
                Err(e) => {
                    let text = e.to_string();
                    (
                        fingerprint(text.as_bytes()),
                        Snapshot::Failed(Arc::new(text)),
                    )
                }
            };
            if last != Some(fingerprint) {
                last = Some(fingerprint);
                sender.send_replace(snapshot);
            }
            {
                // Under the lock, so that a page subscribing now either finds this poller
                // still registered or starts a new one.
                let mut topics = match self.topics.lock() {
                    Ok(t) => t,
                    Err(poisoned) => poisoned.into_inner(),
                };
                if sender.receiver_count() == 0 {
                    topics.remove(&topic);
                    return;
                }
            }
            // A slow backend (a thousand rollouts read one by one) is read less often rather
            // than back to back.
            let wait = self.interval.max(started.elapsed() * 2);
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// The id of the element holding a list's rows: when the rows' order or set changes, it is
/// replaced whole; otherwise each changed row is replaced alone.
pub const ROWS: &str = "rows";

/// What one page was last sent, to send only what changed.
pub struct Sent {
    regions: HashMap<u64, u64>,
    order: Option<u64>,
    has_rows: bool,
}

/// One update for the page: `(mode, id, html)`.
pub type Update = (Mode, String, String);

impl Sent {
    /// Nothing sent yet to a page; `has_rows` for the list (its rows are in [`ROWS`]).
    pub fn new(has_rows: bool) -> Self {
        Self {
            regions: HashMap::new(),
            order: None,
            has_rows,
        }
    }

    /// The updates that bring the page from what it was sent to `regions`.
    pub fn diff(&mut self, regions: &Regions) -> Vec<Update> {
        let mut updates = Vec::new();
        let rows: Vec<&Region> = regions
            .items
            .iter()
            .filter(|r| r.mode == Mode::Outer)
            .collect();
        let mut order = DefaultHasher::new();
        for r in &rows {
            r.id.hash(&mut order);
        }
        let order = order.finish();
        let reorder = self.has_rows && self.order != Some(order);
        for r in &regions.items {
            let key = fingerprint(r.id.as_bytes());
            let value = fingerprint(r.html.as_bytes());
            let changed = self.regions.insert(key, value) != Some(value);
            match r.mode {
                Mode::Inner if changed => updates.push((Mode::Inner, r.id.clone(), r.html.clone())),
                Mode::Outer if changed && !reorder => {
                    updates.push((Mode::Outer, r.id.clone(), r.html.clone()));
                }
                _ => {}
            }
        }
        if reorder {
            let mut html = String::with_capacity(rows.iter().map(|r| r.html.len()).sum());
            for r in &rows {
                html.push_str(&r.html);
            }
            updates.push((Mode::Inner, ROWS.to_string(), html));
        }
        self.order = Some(order);
        updates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(rows: &[(&str, &str)]) -> Regions {
        let mut r = Regions::default();
        r.push(Region::inner("count", format!("{} rows", rows.len())));
        for (id, html) in rows {
            r.push(Region::row((*id).to_string(), (*html).to_string()));
        }
        r
    }

    #[test]
    fn only_what_changed_is_sent_and_a_new_order_resends_the_rows() {
        let mut sent = Sent::new(true);
        let first = sent.diff(&regions(&[("a", "A"), ("b", "B")]));
        assert_eq!(
            first.iter().map(|u| u.1.as_str()).collect::<Vec<_>>(),
            ["count", ROWS],
            "a new page gets everything"
        );
        assert!(sent.diff(&regions(&[("a", "A"), ("b", "B")])).is_empty());
        let one = sent.diff(&regions(&[("a", "A"), ("b", "B2")]));
        assert_eq!(one, [(Mode::Outer, "b".to_string(), "B2".to_string())]);
        let reordered = sent.diff(&regions(&[("b", "B2"), ("a", "A")]));
        assert_eq!(
            reordered,
            [(Mode::Inner, ROWS.to_string(), "B2A".to_string())]
        );
        let emptied = sent.diff(&regions(&[]));
        assert_eq!(
            emptied.iter().map(|u| u.1.as_str()).collect::<Vec<_>>(),
            ["count", ROWS]
        );
    }
}
