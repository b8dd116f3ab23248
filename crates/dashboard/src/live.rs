//! Live updates: one poller per thing watched (the list, or one rollout), shared by every page
//! that shows it, and one Server-Sent Events stream per page that sends only the regions whose
//! HTML changed.
//!
//! Neither backend pushes changes to its clients (the CLI's `-w` polls too), so the hub reads
//! the backend every `poll_interval` while at least one page watches, and stops when the last
//! one leaves. A poll whose answer did not change (same fingerprint) wakes nobody. Each answer
//! is drawn once per way of showing it (the list with the same filters, a rollout's page) and
//! encoded once as events that every page's stream shares; what a page keeps is one hash per
//! region.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cutover_local::api::RolloutView;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::DashboardError;
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
    Views(Arc<Views>),
    /// The backend's error, for the page's problem banner (and a page's status).
    Failed(Arc<DashboardError>),
}

/// One answer of the backend, and what was drawn from it so far.
#[derive(Debug)]
pub struct Views {
    /// The views.
    pub list: Vec<RolloutView>,
    /// Their fingerprint, which a page drawn from the same answer carries.
    pub version: u64,
    drawn: Mutex<HashMap<String, Arc<Drawn>>>,
}

impl Views {
    /// Views with their fingerprint.
    pub fn new(list: Vec<RolloutView>) -> Self {
        Self {
            version: version(&list),
            list,
            drawn: Mutex::new(HashMap::new()),
        }
    }

    /// The regions drawn and encoded under `key` (a page kind and its filters), once.
    pub fn drawn(&self, key: &str, draw: impl FnOnce(&[RolloutView]) -> Regions) -> Arc<Drawn> {
        let mut drawn = match self.drawn.lock() {
            Ok(d) => d,
            Err(poisoned) => poisoned.into_inner(),
        };
        drawn
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(Drawn::new(&draw(&self.list))))
            .clone()
    }
}

/// The fingerprint of an answer: its JSON hashed as it is written, never held whole (with a
/// thousand rollouts it would be megabytes on every poll).
pub fn version(views: &[RolloutView]) -> u64 {
    struct HashWriter(DefaultHasher);
    impl std::io::Write for HashWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = HashWriter(DefaultHasher::new());
    let _ = serde_json::to_writer(&mut w, views);
    w.0.finish()
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

    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<Topic, watch::Sender<Snapshot>>> {
        match self.topics.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Watches a topic, starting its poller if nobody watched it yet.
    pub fn subscribe(self: &Arc<Self>, topic: Topic) -> watch::Receiver<Snapshot> {
        let mut topics = self.topics();
        if let Some(sender) = topics.get(&topic) {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(Snapshot::Loading);
        topics.insert(topic.clone(), sender.clone());
        tokio::spawn(self.clone().poll(topic, sender));
        receiver
    }

    /// The latest answer for a topic, for a page to be drawn from: the one pages watching
    /// it have now, or else the first read of its poller, which every page asking meanwhile
    /// shares (fifty pages opened at once make one read, not fifty). The page's live stream
    /// then starts from this answer.
    pub async fn answer(self: &Arc<Self>, topic: Topic) -> Snapshot {
        let mut rx = self.subscribe(topic);
        loop {
            let snapshot = rx.borrow_and_update().clone();
            if !matches!(snapshot, Snapshot::Loading) {
                return snapshot;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { break },
                () = self.shutdown.cancelled() => break,
            }
        }
        Snapshot::Failed(Arc::new(DashboardError::Unavailable(
            "the dashboard is shutting down".into(),
        )))
    }

    /// Pages watching now (for the benchmark and tests).
    pub fn watchers(&self) -> usize {
        self.topics()
            .values()
            .map(watch::Sender::receiver_count)
            .sum()
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
                Ok(views) => {
                    let views = Views::new(views);
                    (views.version, Snapshot::Views(Arc::new(views)))
                }
                Err(e) => (
                    hash(e.to_string().as_bytes()),
                    Snapshot::Failed(Arc::new(e)),
                ),
            };
            if last != Some(fingerprint) {
                last = Some(fingerprint);
                sender.send_replace(snapshot);
            }
            {
                // Under the lock, so that a page subscribing now either finds this poller
                // still registered or starts a new one.
                let mut topics = self.topics();
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

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// The id of the element holding a list's rows: when the rows' order or set changes, it is
/// replaced whole; otherwise each changed row is replaced alone.
pub const ROWS: &str = "rows";

/// A region encoded as one Server-Sent Event (`event: region`, `data: MODE ID`, `data: HTML`).
#[derive(Debug)]
pub struct Event {
    id: u64,
    html: u64,
    mode: Mode,
    bytes: Bytes,
    /// Where the HTML sits in `bytes`.
    at: std::ops::Range<usize>,
}

impl Event {
    /// Encodes a region. Its HTML is one line: values are escaped with their line breaks, and
    /// markup breaks are plain spaces to HTML, so any left become spaces.
    pub fn new(region: &Region) -> Self {
        let mode = match region.mode {
            Mode::Inner => "inner",
            Mode::Outer => "outer",
        };
        let head = format!("event: region\ndata: {mode} {}\ndata: ", region.id);
        let mut bytes = BytesMut::with_capacity(head.len() + region.html.len() + 2);
        bytes.extend_from_slice(head.as_bytes());
        let start = bytes.len();
        for chunk in region.html.split(['\n', '\r']) {
            if bytes.len() > start {
                bytes.extend_from_slice(b" ");
            }
            bytes.extend_from_slice(chunk.as_bytes());
        }
        let at = start..bytes.len();
        bytes.extend_from_slice(b"\n\n");
        Self {
            id: hash(region.id.as_bytes()),
            html: hash(region.html.as_bytes()),
            mode: region.mode,
            bytes: bytes.freeze(),
            at,
        }
    }
}

/// A page's regions drawn from one answer, encoded once for every page that shows them.
#[derive(Debug)]
pub struct Drawn {
    events: Vec<Event>,
    /// Hash of the rows' ids in order.
    order: u64,
    /// All rows as one replacement of [`ROWS`], made when a page first needs it.
    rows: OnceLock<Bytes>,
}

impl Drawn {
    /// Encodes `regions`.
    pub fn new(regions: &Regions) -> Self {
        let events: Vec<Event> = regions.items.iter().map(Event::new).collect();
        let mut order = DefaultHasher::new();
        for e in events.iter().filter(|e| e.mode == Mode::Outer) {
            e.id.hash(&mut order);
        }
        Self {
            events,
            order: order.finish(),
            rows: OnceLock::new(),
        }
    }

    fn rows(&self) -> Bytes {
        self.rows
            .get_or_init(|| {
                let head = format!("event: region\ndata: inner {ROWS}\ndata: ");
                let rows = self.events.iter().filter(|e| e.mode == Mode::Outer);
                let mut b = BytesMut::with_capacity(
                    head.len() + rows.clone().map(|e| e.at.len()).sum::<usize>() + 2,
                );
                b.extend_from_slice(head.as_bytes());
                for e in rows {
                    b.extend_from_slice(&e.bytes[e.at.clone()]);
                }
                b.extend_from_slice(b"\n\n");
                b.freeze()
            })
            .clone()
    }
}

/// What one page was last sent, to send only what changed.
pub struct Sent {
    regions: HashMap<u64, u64>,
    order: Option<u64>,
    has_rows: bool,
}

impl Sent {
    /// Nothing sent yet to a page; `has_rows` for the list (its rows are in [`ROWS`]).
    pub fn new(has_rows: bool) -> Self {
        Self {
            regions: HashMap::new(),
            order: None,
            has_rows,
        }
    }

    /// Records `drawn` as shown without sending it: the page was drawn from the same answer
    /// (its rows differ only in the ages its script keeps current).
    pub fn prime(&mut self, drawn: &Drawn) {
        let _ = self.diff(drawn);
    }

    /// The event of one region outside the page's drawing (the problem banner), if it changed.
    pub fn one(&mut self, event: &Event) -> Option<Bytes> {
        (self.regions.insert(event.id, event.html) != Some(event.html)).then(|| event.bytes.clone())
    }

    /// The events that bring the page from what it was sent to `drawn`.
    pub fn diff(&mut self, drawn: &Drawn) -> Vec<Bytes> {
        let reorder = self.has_rows && self.order != Some(drawn.order);
        let mut out = Vec::new();
        for e in &drawn.events {
            let changed = self.regions.insert(e.id, e.html) != Some(e.html);
            if changed && (e.mode == Mode::Inner || !reorder) {
                out.push(e.bytes.clone());
            }
        }
        if reorder {
            out.push(drawn.rows());
        }
        self.order = Some(drawn.order);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drawn(rows: &[(&str, &str)]) -> Drawn {
        let mut r = Regions::default();
        r.push(Region::inner("count", format!("{} rows", rows.len())));
        for (id, html) in rows {
            r.push(Region::row((*id).to_string(), (*html).to_string()));
        }
        Drawn::new(&r)
    }

    fn text(events: &[Bytes]) -> Vec<String> {
        events
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn only_what_changed_is_sent_and_a_new_order_resends_the_rows() {
        let mut sent = Sent::new(true);
        let first = text(&sent.diff(&drawn(&[("a", "A"), ("b", "B")])));
        assert_eq!(
            first,
            [
                "event: region\ndata: inner count\ndata: 2 rows\n\n",
                "event: region\ndata: inner rows\ndata: AB\n\n"
            ],
            "a new page gets everything"
        );
        assert!(sent.diff(&drawn(&[("a", "A"), ("b", "B")])).is_empty());
        let one = text(&sent.diff(&drawn(&[("a", "A"), ("b", "B\n2")])));
        assert_eq!(one, ["event: region\ndata: outer b\ndata: B 2\n\n"]);
        let reordered = text(&sent.diff(&drawn(&[("b", "B\n2"), ("a", "A")])));
        assert_eq!(
            reordered,
            ["event: region\ndata: inner rows\ndata: B 2A\n\n"]
        );
        let emptied = text(&sent.diff(&drawn(&[])));
        assert_eq!(emptied.len(), 2, "{emptied:?}");
    }
}
