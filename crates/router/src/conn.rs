//! One client connection: HTTP/1.1 (keep-alive, upgrades) and h2c prior knowledge on one port,
//! closed gracefully when the router stops or when the client makes no request in time.
//!
//! Two clocks bound a connection that does nothing. hyper's own header-read timeout cuts an
//! HTTP/1.1 request head that is not finished in time (also the wait for the next request on a
//! keep-alive connection, as hyper starts it whenever it waits for a head). A watchdog here
//! covers what hyper does not see: a socket that never sends a byte and an h2c connection
//! without requests.
//!
//! An HTTP/1.1 connection that has been quiet for [`PARK_AFTER`] is *parked*: the router takes
//! the socket back from hyper (with any bytes hyper read but did not parse) and drops hyper's
//! per-connection state, its 8 KiB read and 8 KiB write buffers among it, then waits for the
//! socket to become readable and serves it again. hyper keeps those buffers for a connection's
//! whole life, so without parking 10,000 idle keep-alive clients cost over 200 MiB; parked they
//! cost the socket and a small task. Parking happens only between exchanges: no request or
//! response body alive and every response byte handed to the socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::RouterConfig;
use crate::client_io::{self, ClientIo, Protocol, WriteState};
use crate::listener::Slot;
use crate::proxy;
use crate::service::{ServiceInner, Shared};

/// How long an HTTP/1.1 connection stays quiet before it is parked. Long enough that a client
/// making requests back to back never pays for a new hyper connection; short enough that idle
/// keep-alive clients hold no buffers.
pub(crate) const PARK_AFTER: Duration = Duration::from_secs(1);

/// The connection builders shared by a listener's connections.
pub(crate) struct Builders {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

pub(crate) fn builders(config: &RouterConfig) -> Builders {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    let header_read = Some(config.header_read_timeout).filter(|t| !t.is_zero());
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(header_read);
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2.timer(TokioTimer::new());
    Builders { http1, http2 }
}

/// What the watchdog and the parking decision know about a connection's requests.
struct Activity {
    /// Requests whose response head is not sent yet.
    active: AtomicUsize,
    /// When a request last started or got its response head (ms on the router's clock).
    last_ms: AtomicU64,
    /// When the connection was accepted (ms on the router's clock).
    accepted_ms: u64,
    /// Exchanges not over: a request, its body or its response body still alive.
    exchanges: AtomicUsize,
    /// Exchanges started so far (none yet: the client has sent no request).
    started: AtomicU64,
    /// When the last exchange ended (ms on the router's clock).
    ended_ms: AtomicU64,
    writes: Arc<WriteState>,
}

/// One request in progress on a connection, until its response head is ready.
struct Request<'a> {
    activity: &'a Activity,
    shared: &'a Shared,
}

impl Activity {
    fn new(now_ms: u64) -> Self {
        Self {
            active: AtomicUsize::new(0),
            last_ms: AtomicU64::new(now_ms),
            accepted_ms: now_ms,
            exchanges: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            ended_ms: AtomicU64::new(now_ms),
            writes: Arc::new(WriteState::default()),
        }
    }

    fn start<'a>(&'a self, shared: &'a Shared) -> Request<'a> {
        self.active.fetch_add(1, Ordering::SeqCst);
        self.last_ms.store(shared.now_ms(), Ordering::SeqCst);
        Request {
            activity: self,
            shared,
        }
    }

    /// Nothing in progress since `PARK_AFTER` before `now`, and nothing left to write.
    fn quiet(&self, now_ms: u64, park_after_ms: u64) -> bool {
        self.exchanges.load(Ordering::SeqCst) == 0
            && now_ms >= self.ended_ms.load(Ordering::SeqCst) + park_after_ms
            && self.writes.flushed()
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        self.activity
            .last_ms
            .store(self.shared.now_ms(), Ordering::SeqCst);
        self.activity.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Keeps a connection's exchange open: held by the request handler, the request body sent on
/// to the backend and the response body. A connection is parked only when none is left, so
/// hyper is never mid-message when it is dropped.
pub(crate) struct Exchange {
    activity: Arc<Activity>,
    shared: Arc<Shared>,
}

impl Exchange {
    fn begin(activity: &Arc<Activity>, shared: &Arc<Shared>) -> Self {
        activity.started.fetch_add(1, Ordering::SeqCst);
        activity.exchanges.fetch_add(1, Ordering::SeqCst);
        Self {
            activity: Arc::clone(activity),
            shared: Arc::clone(shared),
        }
    }
}

impl Clone for Exchange {
    fn clone(&self) -> Self {
        self.activity.exchanges.fetch_add(1, Ordering::SeqCst);
        Self {
            activity: Arc::clone(&self.activity),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.activity
            .ended_ms
            .store(self.shared.now_ms(), Ordering::SeqCst);
        self.activity.exchanges.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a connection's serving needs besides its socket.
struct Context<'a> {
    service: &'a Arc<ServiceInner>,
    builders: &'a Builders,
    activity: &'a Arc<Activity>,
    stop: &'a CancellationToken,
}

/// How a connection ended, when not by the client or hyper.
enum Closed {
    /// The router is stopping.
    Stopped,
    /// The watchdog's reason.
    Watchdog(&'static str),
    /// A parked connection's next request head did not come within the header-read timeout.
    HeaderTimeout,
}

pub(crate) async fn serve(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    service: Arc<ServiceInner>,
    builders: Arc<Builders>,
    stop: CancellationToken,
    slot: Slot,
) {
    let activity = Arc::new(Activity::new(service.shared.now_ms()));
    let handler = {
        let (service, activity) = (Arc::clone(&service), Arc::clone(&activity));
        service_fn(move |request| {
            let service = Arc::clone(&service);
            let exchange = Exchange::begin(&activity, &service.shared);
            let activity = Arc::clone(&activity);
            async move {
                let _request = activity.start(&service.shared);
                proxy::handle(Arc::clone(&service), request, peer, exchange).await
            }
        })
    };
    let context = Context {
        service: &service,
        builders: &builders,
        activity: &activity,
        stop: &stop,
    };
    let detected = tokio::select! {
        detected = client_io::detect(stream, Arc::clone(&activity.writes)) => detected,
        closed = context.closed() => {
            context.record(closed, peer);
            return;
        }
    };
    let result = match detected {
        Ok(Some((Protocol::Http1, io))) => serve_http1(io, handler, &context, peer).await,
        Ok(Some((Protocol::Http2, io))) => {
            let connection = builders.http2.serve_connection(TokioIo::new(io), handler);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => result,
                closed = context.closed() => {
                    context.record(closed, peer);
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        }
        Ok(None) => Ok(()),
        Err(error) => {
            tracing::debug!(%peer, %error, "connection ended before its first request");
            Ok(())
        }
    };
    if let Err(error) = result {
        if error.is_timeout() {
            service.shared.metrics.timed_out(&service.name, "header");
        }
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
    drop(slot);
}

impl Context<'_> {
    /// Resolves when the connection should close for the router's reasons.
    async fn closed(&self) -> Closed {
        tokio::select! {
            _ = self.stop.cancelled() => Closed::Stopped,
            reason = watchdog(&self.service.shared, self.activity) => Closed::Watchdog(reason),
        }
    }

    fn record(&self, closed: Closed, peer: std::net::SocketAddr) {
        let reason = match closed {
            Closed::Stopped => return,
            Closed::Watchdog(reason) => reason,
            Closed::HeaderTimeout => "header",
        };
        self.service
            .shared
            .metrics
            .timed_out(&self.service.name, reason);
        tracing::debug!(service = %self.service.name, %peer, reason, "closing a connection without requests");
    }

    /// Resolves once the connection may be parked: quiet for [`PARK_AFTER`], and (when the
    /// spell began with a partial request head) after an exchange of this spell.
    async fn parkable(&self, started_before: Option<u64>) {
        let shared = &self.service.shared;
        let after = millis(PARK_AFTER);
        loop {
            let now = shared.now_ms();
            let begun = started_before
                .is_none_or(|before| self.activity.started.load(Ordering::SeqCst) > before);
            if begun && self.activity.quiet(now, after) {
                return;
            }
            // Busy: look again in a park delay (a connection in use wakes for this about once a
            // second). Idle but not for long enough: when it will have been. Idle long enough
            // but not flushed (a client not reading): soon.
            let due = self.activity.ended_ms.load(Ordering::SeqCst) + after;
            let wait = if self.activity.exchanges.load(Ordering::SeqCst) > 0 || !begun {
                after
            } else if now < due {
                due - now
            } else {
                after / 4
            };
            tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
        }
    }

    /// Resolves when hyper's header-read timeout would have fired for a parked connection: it
    /// starts when hyper begins to wait for the next request head, as the last exchange ends.
    async fn head_deadline(&self) {
        let timeout = self.service.shared.config.header_read_timeout;
        if timeout.is_zero() {
            return std::future::pending().await;
        }
        let timeout = millis(timeout);
        let due = self
            .activity
            .ended_ms
            .load(Ordering::SeqCst)
            .saturating_add(timeout);
        let now = self.service.shared.now_ms();
        tokio::time::sleep(Duration::from_millis(due.saturating_sub(now))).await;
    }
}

/// Serves HTTP/1.x in spells: hyper serves the socket until it is quiet, the socket is parked
/// without hyper's buffers until the client sends again, and so on.
async fn serve_http1<S>(
    mut io: ClientIo,
    mut handler: S,
    context: &Context<'_>,
    peer: std::net::SocketAddr,
) -> hyper::Result<()>
where
    S: hyper::service::HttpService<
            hyper::body::Incoming,
            ResBody = crate::body::ResponseBody,
            Error = std::convert::Infallible,
        > + Unpin
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let metrics = &context.service.shared.metrics;
    // Set when a spell starts with a request head a parked spell had begun to read.
    let mut partial_head: Option<u64> = None;
    loop {
        // Boxed so that a parked connection's task does not carry hyper's state inline.
        let mut connection = Box::new(
            context
                .builders
                .http1
                .serve_connection(TokioIo::new(io), handler)
                .with_upgrades(),
        );
        tokio::select! {
            result = &mut *connection => return result,
            closed = context.closed() => {
                context.record(closed, peer);
                // Finish the requests already read, take no new ones; an idle connection
                // closes at once.
                std::pin::Pin::new(&mut *connection).graceful_shutdown();
                return connection.await;
            }
            () = context.parkable(partial_head) => {}
        }
        // Quiet: take the socket back; hyper's buffers go with the rest of the connection.
        let Some(parts) = connection.into_parts() else {
            return Ok(());
        };
        io = parts.io.into_inner();
        handler = parts.service;
        if !parts.read_buf.is_empty() {
            // A client that sent part of a request head and paused: serve it on at once, and
            // park again only after an exchange, so a trickled head cannot restart hyper's
            // header timer for ever.
            io.replay(parts.read_buf);
            partial_head = Some(context.activity.started.load(Ordering::SeqCst));
            continue;
        }
        // Even empty, it may share hyper's read buffer: let that go before waiting.
        drop(parts.read_buf);
        partial_head = None;
        let parked = metrics.connections_parked(&context.service.name);
        parked.inc();
        let woke = tokio::select! {
            woke = io.readable() => Ok(woke),
            closed = context.closed() => Err(closed),
            () = context.head_deadline() => Err(Closed::HeaderTimeout),
        };
        parked.dec();
        match woke {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "parked connection failed");
                return Ok(());
            }
            Err(closed) => {
                context.record(closed, peer);
                return Ok(());
            }
        }
    }
}

/// Resolves, with the reason, when the connection should be closed: no request started within
/// the header-read timeout of connecting, or none for the idle timeout since the last one.
async fn watchdog(shared: &Shared, activity: &Activity) -> &'static str {
    let (header, idle) = (
        millis(shared.config.header_read_timeout),
        millis(shared.config.idle_timeout),
    );
    if header == 0 && idle == 0 {
        return std::future::pending().await;
    }
    let accepted = activity.accepted_ms;
    loop {
        let now = shared.now_ms();
        let mut next = u64::MAX;
        if activity.started.load(Ordering::SeqCst) == 0 {
            // A socket that never sent a request is a request head that never came.
            for (after, reason) in [(header, "no_request"), (idle, "idle")] {
                if after > 0 {
                    let due = accepted.saturating_add(after);
                    if now >= due {
                        return reason;
                    }
                    next = next.min(due);
                }
            }
        } else if activity.active.load(Ordering::SeqCst) == 0 && idle > 0 {
            let due = activity.last_ms.load(Ordering::SeqCst).saturating_add(idle);
            if now >= due {
                return "idle";
            }
            next = due;
        } else {
            // Busy (or no idle limit): look again later; the request ends the busy spell.
            next = now.saturating_add(idle.max(header).max(1));
        }
        tokio::time::sleep(Duration::from_millis(next.saturating_sub(now).max(1))).await;
    }
}

/// `d` in whole milliseconds, the router clock's unit (saturating).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
