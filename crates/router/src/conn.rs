//! One client connection: HTTP/1.1 (keep-alive, upgrades) and h2c prior knowledge on one port,
//! closed gracefully when the router stops or when the client makes no request in time.
//!
//! Two clocks bound a connection that does nothing. hyper's own header-read timeout cuts an
//! HTTP/1.1 request head that is not finished in time (also the wait for the next request on a
//! keep-alive connection, as hyper starts it whenever it waits for a head). A watchdog here
//! covers what hyper does not see: a socket that never sends a byte (hyper-util's protocol
//! detection waits for one without a limit) and an h2c connection without requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::RouterConfig;
use crate::listener::Slot;
use crate::proxy;
use crate::service::{ServiceInner, Shared};

pub(crate) type Builder = auto::Builder<TokioExecutor>;

/// The connection builder shared by a listener's connections.
pub(crate) fn builder(config: &RouterConfig) -> Builder {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let header_read = Some(config.header_read_timeout).filter(|t| !t.is_zero());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// What the watchdog knows about a connection's requests.
struct Activity {
    /// Requests whose response head is not sent yet.
    active: AtomicUsize,
    /// When a request last started or got its response head (ms on the router's clock).
    last_ms: AtomicU64,
    /// Whether any request started.
    any: AtomicBool,
}

/// One request in progress on a connection, until its response head is ready.
struct Request<'a> {
    activity: &'a Activity,
    shared: &'a Shared,
}

impl Activity {
    fn start<'a>(&'a self, shared: &'a Shared) -> Request<'a> {
        self.any.store(true, Ordering::SeqCst);
        self.active.fetch_add(1, Ordering::SeqCst);
        self.last_ms.store(shared.now_ms(), Ordering::SeqCst);
        Request {
            activity: self,
            shared,
        }
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

pub(crate) async fn serve(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    service: Arc<ServiceInner>,
    builder: Arc<Builder>,
    stop: CancellationToken,
    slot: Slot,
) {
    let activity = Arc::new(Activity {
        active: AtomicUsize::new(0),
        last_ms: AtomicU64::new(service.shared.now_ms()),
        any: AtomicBool::new(false),
    });
    let handler = {
        let (service, activity) = (Arc::clone(&service), Arc::clone(&activity));
        service_fn(move |request| {
            let (service, activity) = (Arc::clone(&service), Arc::clone(&activity));
            async move {
                let _request = activity.start(&service.shared);
                proxy::handle(Arc::clone(&service), request, peer).await
            }
        })
    };
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), handler);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.cancelled() => {
            // Finish the requests already read, take no new ones.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        reason = watchdog(&service.shared, &activity) => {
            service.shared.metrics.timed_out(&service.name, reason);
            tracing::debug!(service = %service.name, %peer, reason, "closing a connection without requests");
            // An idle connection closes at once; a response still being sent finishes first.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        if error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            service.shared.metrics.timed_out(&service.name, "header");
        }
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
    drop(slot);
}

/// Resolves, with the reason, when the connection should be closed: no request started within
/// the header-read timeout of connecting, or none for the idle timeout since the last one.
async fn watchdog(shared: &Shared, activity: &Activity) -> &'static str {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let (header, idle) = (
        ms(shared.config.header_read_timeout),
        ms(shared.config.idle_timeout),
    );
    if header == 0 && idle == 0 {
        return std::future::pending().await;
    }
    let accepted = shared.now_ms();
    loop {
        let now = shared.now_ms();
        let mut next = u64::MAX;
        if !activity.any.load(Ordering::SeqCst) {
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
