//! Delivery: a bounded queue the backends fill without waiting, and a worker that sends each
//! notification with retries and exponential backoff. A try that failed is repeated with the
//! same `Idempotency-Key`, so receivers can drop repeats.
//!
//! Two ways in: [`Notifier::notify`] queues in memory only (at-least-once while the process
//! runs); a backend with a durable outbox stores [`Notifier::jobs`] itself and hands each
//! stored job over with [`Notifier::deliver_then`], removing it when told it is finished, so
//! what was not delivered before a crash is sent after the restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use cutover_analysis::http::{HttpClient, SendError};
use cutover_core::notify::Trigger;
use cutover_core::plan::Event;
use http_body_util::Full;
use jiff::Timestamp;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::{NotificationConfig, ServiceKind};
use crate::message::{Notification, RolloutFacts, notification, signature};
use crate::subscribe::{Target, targets};

/// Deliveries in flight at once (each may be waiting out a backoff).
const CONCURRENCY: usize = 16;

/// What happened to notifications, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Deliveries a receiver accepted.
    pub sent: AtomicU64,
    /// Tries that failed (each retry counts).
    pub failed_attempts: AtomicU64,
    /// Deliveries abandoned after their last try or a permanent refusal.
    pub given_up: AtomicU64,
    /// Deliveries dropped because the queue was full.
    pub dropped: AtomicU64,
}

impl Counters {
    /// `exposition` (an OpenMetrics text ending in its one `# EOF` line) with these counters
    /// joined before that line: how each backend adds them to its own `/metrics`.
    pub fn join_to(&self, exposition: &str) -> String {
        let body = exposition.strip_suffix("# EOF\n").unwrap_or(exposition);
        format!("{body}{}# EOF\n", self.openmetrics())
    }

    /// The counters as OpenMetrics text, without the `# EOF` line.
    pub fn openmetrics(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            (
                "cutover_notifications_sent",
                "Notifications a receiver accepted.",
                &self.sent,
            ),
            (
                "cutover_notifications_failed_attempts",
                "Notification deliveries that failed and are retried or given up.",
                &self.failed_attempts,
            ),
            (
                "cutover_notifications_given_up",
                "Notifications abandoned after their last try.",
                &self.given_up,
            ),
            (
                "cutover_notifications_dropped",
                "Notifications dropped because the delivery queue was full.",
                &self.dropped,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}_total {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// A notification for one target: what a durable outbox stores.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// What the target receives.
    pub notification: Notification,
    /// Where it goes.
    pub target: Target,
}

/// Called once a job is finished: delivered, given up, or its service is gone.
pub type Finished = Box<dyn FnOnce() + Send>;

/// A job in the in-memory queue.
struct Queued {
    job: Job,
    finished: Option<Finished>,
}

/// The handle backends hold: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replaced whole when the configuration changes; the queue and its size stay.
    config: ArcSwap<NotificationConfig>,
    queue: mpsc::Sender<Queued>,
    /// The queue's size, fixed at start: also the cap of a durable outbox.
    queue_size: usize,
    counters: Arc<Counters>,
    /// Cancelled by [`Notifier::stop`]: the worker and every delivery in flight end.
    stopped: CancellationToken,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("services", &self.inner.config.load().services.keys())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Starts the delivery worker on the current tokio runtime.
    pub fn start(config: NotificationConfig) -> Self {
        let queue_size = config.delivery.queue_size;
        let (queue, jobs) = mpsc::channel(queue_size);
        let counters = Arc::new(Counters::default());
        let inner = Arc::new(Inner {
            config: ArcSwap::from_pointee(config),
            queue,
            queue_size,
            counters,
            stopped: CancellationToken::new(),
        });
        tokio::spawn(work(inner.clone(), jobs));
        Self { inner }
    }

    /// Uses `config` from now on: for new notifications and for queued deliveries not started
    /// yet (one to a service that is gone is dropped). The queue keeps its size.
    pub fn replace_config(&self, config: NotificationConfig) {
        self.inner.config.store(Arc::new(config));
    }

    /// Ends the worker and every delivery in flight, as a process exit would: their `finished`
    /// callbacks never run, so a durable outbox keeps those jobs for the next start. For a
    /// controller that stops inside a longer-lived process (tests, an embedding program).
    pub fn stop(&self) {
        self.inner.stopped.cancel();
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.inner.counters
    }

    /// How many jobs may wait for delivery (`delivery.queueSize` at start).
    pub fn queue_size(&self) -> usize {
        self.inner.queue_size
    }

    /// The jobs the `events` of one pass of one rollout (at `at`) make: one per subscribed
    /// target. Nothing is queued.
    pub fn jobs(&self, facts: &RolloutFacts, events: &[Event], at: Timestamp) -> Vec<Job> {
        let mut jobs = Vec::new();
        let config = self.inner.config.load();
        for (index, event) in events.iter().enumerate() {
            let Some(trigger) = Trigger::for_event(event.reason) else {
                continue;
            };
            let (found, warnings) = targets(&config, &facts.annotations, trigger);
            for warning in warnings {
                tracing::warn!(rollout = %facts.name, "notifications: {warning}");
            }
            // Rendered only when someone listens: most transitions of most rollouts have no
            // subscriber.
            if found.is_empty() {
                continue;
            }
            let Some((_, n)) = notification(facts, event, index, at, &config.templates) else {
                continue;
            };
            for target in found {
                let mut notification = n.clone();
                notification.recipient = target.recipient.clone();
                jobs.push(Job {
                    notification,
                    target,
                });
            }
        }
        jobs
    }

    /// Queues the notifications of `events` (one pass of one rollout, at `at`) for every
    /// subscribed target, in memory. Returns how many were queued; what does not fit is
    /// dropped and counted.
    pub fn notify(&self, facts: &RolloutFacts, events: &[Event], at: Timestamp) -> usize {
        self.enqueue(self.jobs(facts, events, at))
    }

    /// Queues `jobs` in memory only, with nothing to run when each is finished; a job the
    /// queue has no room for is dropped and counted. Returns how many were queued.
    pub fn enqueue(&self, jobs: Vec<Job>) -> usize {
        let mut queued = 0;
        for job in jobs {
            let queued_job = Queued {
                job,
                finished: None,
            };
            match self.inner.queue.try_send(queued_job) {
                Ok(()) => queued += 1,
                Err(
                    mpsc::error::TrySendError::Full(refused)
                    | mpsc::error::TrySendError::Closed(refused),
                ) => self.count_dropped(&refused.job),
            }
        }
        queued
    }

    /// Hands a stored job to the delivery worker; `finished` runs once it is delivered or
    /// given up. Returns false when the queue is full: the caller keeps the job and offers it
    /// again later.
    pub fn deliver_then(&self, job: Job, finished: Finished) -> bool {
        let queued = Queued {
            job,
            finished: Some(finished),
        };
        self.inner.queue.try_send(queued).is_ok()
    }

    /// Counts (and logs) a job that had no room: the queue or the outbox was full.
    pub fn count_dropped(&self, job: &Job) {
        self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            rollout = %job.notification.rollout,
            trigger = %job.notification.trigger,
            service = %job.target.service,
            "notification dropped: the delivery queue is full (delivery.queueSize)"
        );
    }
}

async fn work(inner: Arc<Inner>, mut jobs: mpsc::Receiver<Queued>) {
    let http = HttpClient::new();
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let stopped = inner.stopped.clone();
    loop {
        let next = tokio::select! {
            () = stopped.cancelled() => return,
            next = jobs.recv() => next,
        };
        let Some(Queued { job, finished }) = next else {
            return;
        };
        let slot = tokio::select! {
            () = stopped.cancelled() => return,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else {
            return;
        };
        let (inner, http) = (inner.clone(), http.clone());
        tokio::spawn(async move {
            tokio::select! {
                // Unfinished: a durable outbox keeps the job.
                () = inner.stopped.cancelled() => {}
                () = deliver(&inner, &http, job) => {
                    drop(slot);
                    if let Some(finished) = finished {
                        finished();
                    }
                }
            }
        });
    }
}

/// Why a try failed.
enum Failure {
    /// Worth another try (connection refused, timeout, 5xx, 429).
    Transient(String),
    /// Another try would fail the same way (a 4xx refusal, a command that cannot start).
    Permanent(String),
}

async fn deliver(inner: &Inner, http: &HttpClient, job: Job) {
    let config = inner.config.load_full();
    let Some(service) = config.services.get(&job.target.service) else {
        return;
    };
    let delivery = &config.delivery;
    let mut backoff = delivery.initial_backoff;
    for attempt in 1..=delivery.max_attempts {
        let outcome = match service {
            ServiceKind::Command { argv, timeout } => run_command(argv, *timeout, &job).await,
            _ => post(service, http, delivery.request_timeout, &job).await,
        };
        let counters = &inner.counters;
        let why = match outcome {
            Ok(()) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(trigger = %job.notification.trigger, service = %job.target.service, rollout = %job.notification.rollout, attempt, "notification delivered");
                return;
            }
            Err(Failure::Permanent(why)) => {
                counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
                counters.given_up.fetch_add(1, Ordering::Relaxed);
                tracing::error!(trigger = %job.notification.trigger, service = %job.target.service, rollout = %job.notification.rollout, "notification refused, not retried: {why}");
                return;
            }
            Err(Failure::Transient(why)) => why,
        };
        inner
            .counters
            .failed_attempts
            .fetch_add(1, Ordering::Relaxed);
        if attempt == delivery.max_attempts {
            inner.counters.given_up.fetch_add(1, Ordering::Relaxed);
            tracing::error!(trigger = %job.notification.trigger, service = %job.target.service, rollout = %job.notification.rollout, attempts = attempt, "notification given up: {why}");
            return;
        }
        tracing::warn!(trigger = %job.notification.trigger, service = %job.target.service, rollout = %job.notification.rollout, attempt, retry_in = ?backoff, "notification not delivered, retrying: {why}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(delivery.max_backoff);
    }
}

/// The body and headers a service receives.
fn request(service: &ServiceKind, job: &Job) -> Option<http::Request<Full<Bytes>>> {
    let n = &job.notification;
    let (url, body, signing, headers) = match service {
        ServiceKind::Webhook {
            url,
            signing_secret,
            headers,
        } => (
            url,
            serde_json::to_vec(n).ok()?,
            signing_secret.as_ref(),
            headers.as_slice(),
        ),
        ServiceKind::Slack { url } => {
            let mut body = serde_json::json!({ "text": n.text });
            if let Some(channel) = &n.recipient {
                body["channel"] = channel.as_str().into();
            }
            (url, serde_json::to_vec(&body).ok()?, None, &[][..])
        }
        ServiceKind::Command { .. } => return None,
    };
    let mut builder = http::Request::post(url.expose())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "cutover-notifications")
        .header("Idempotency-Key", &n.idempotency_key)
        .header("X-Cutover-Trigger", &n.trigger);
    if let Some(key) = signing {
        builder = builder.header("X-Cutover-Signature", signature(key.expose(), &body));
    }
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.expose());
    }
    builder.body(Full::new(Bytes::from(body))).ok()
}

async fn post(
    service: &ServiceKind,
    http: &HttpClient,
    timeout: Duration,
    job: &Job,
) -> Result<(), Failure> {
    let Some(req) = request(service, job) else {
        return Err(Failure::Permanent(
            "cannot build the request (check the service's URL and header names)".into(),
        ));
    };
    match http.send(req, false, timeout).await {
        Ok((status, _)) if status.is_success() => Ok(()),
        Ok((status, _))
            if status.is_server_error()
                || status == http::StatusCode::TOO_MANY_REQUESTS
                || status == http::StatusCode::REQUEST_TIMEOUT =>
        {
            Err(Failure::Transient(format!(
                "the receiver answered {status}"
            )))
        }
        Ok((status, _)) => Err(Failure::Permanent(format!(
            "the receiver answered {status}"
        ))),
        Err(SendError::Timeout) => Err(Failure::Transient(format!("no answer within {timeout:?}"))),
        Err(SendError::Failed(why)) => Err(Failure::Transient(why)),
    }
}

/// Runs a command hook with the notification's JSON on stdin; exit 0 is delivered.
async fn run_command(argv: &[String], timeout: Duration, job: &Job) -> Result<(), Failure> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Failure::Permanent("no program".into()));
    };
    let body = serde_json::to_vec(&job.notification)
        .map_err(|e| Failure::Permanent(format!("encoding the payload: {e}")))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("CUTOVER_NOTIFICATION_TRIGGER", &job.notification.trigger)
        .env("CUTOVER_IDEMPOTENCY_KEY", &job.notification.idempotency_key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure::Permanent(format!("cannot start {program}: {e}")))?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A hook that does not read its input still counts by its exit code.
            let _ = stdin.write_all(&body).await;
        }
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => Err(Failure::Transient(format!(
            "{program} did not finish within {timeout:?}"
        ))),
        Ok(Err(e)) => Err(Failure::Transient(format!("{program}: {e}"))),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(Failure::Transient(format!(
            "{program} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}
