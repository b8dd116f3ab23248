//! Accept loop of one Service. Each accepted connection is served in its own task, unless the
//! listener's connection limit or the process's open-files budget is reached: then it is
//! refused gracefully (see [`refuse`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conn;
use crate::service::ServiceInner;

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// At most one "refused" warning per Service this often; the others are counted.
const REFUSAL_LOG_PERIOD_MS: u64 = 10_000;

/// A refused client has this long to send its request head before it is cut without one.
const REFUSAL_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Refusals answered at once, process-wide; beyond this a connection is closed unanswered, so
/// a refusal never takes descriptors the served connections need.
pub(crate) const REFUSAL_SLOTS: usize = 64;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    service: Arc<ServiceInner>,
    stop: CancellationToken,
    connections: TaskTracker,
) {
    let builders = Arc::new(conn::builders(&service.shared.config));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "TCP_NODELAY not set");
                }
                match admit(&service) {
                    Ok(slot) => {
                        connections.spawn(conn::serve(
                            stream,
                            peer,
                            Arc::clone(&service),
                            Arc::clone(&builders),
                            stop.clone(),
                            slot,
                        ));
                    }
                    Err(reason) => refuse(&service, stream, reason, &connections),
                }
            }
            Err(error) => {
                service
                    .shared
                    .metrics
                    .refused(&service.name, "accept_error");
                if let Some(held) = service
                    .refusal_log
                    .allow(service.shared.now_ms(), REFUSAL_LOG_PERIOD_MS)
                {
                    tracing::warn!(service = %service.name, %error, held_back = held, "accept failed (out of file descriptors? raise the open-files limit or lower --max-connections)");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Counts one open client connection on a listener and in the process; dropping it ends the
/// connection's share.
pub(crate) struct Slot {
    service: Arc<ServiceInner>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.service.connections.fetch_sub(1, Ordering::SeqCst);
        self.service
            .shared
            .connections
            .fetch_sub(1, Ordering::SeqCst);
        self.service
            .shared
            .metrics
            .connections_open
            .get_or_create(&crate::metrics::ServiceLabels {
                service: self.service.name.to_string(),
            })
            .dec();
    }
}

/// Takes a slot for a new connection, or says which limit refuses it.
fn admit(service: &Arc<ServiceInner>) -> Result<Slot, &'static str> {
    let shared = &service.shared;
    // Increment first, then check: two accepts racing for the last slot cannot both win.
    let here = service.connections.fetch_add(1, Ordering::SeqCst);
    let everywhere = shared.connections.fetch_add(1, Ordering::SeqCst);
    let slot = Slot {
        service: Arc::clone(service),
    };
    shared
        .metrics
        .connections_open
        .get_or_create(&crate::metrics::ServiceLabels {
            service: service.name.to_string(),
        })
        .inc();
    if here >= shared.config.max_connections {
        return Err("limit");
    }
    if everywhere >= shared.connection_budget {
        return Err("budget");
    }
    Ok(slot)
}

/// Answers a connection over a limit with `503 Service Unavailable`, `Connection: close` and
/// `Retry-After: 1`, then closes it.
///
/// Why not HAProxy's way (stop accepting and leave connections in the kernel's backlog)? A
/// client then waits with no answer until a slot frees or its own timeout fires, and once the
/// backlog is full its SYNs are dropped and it backs off for seconds. Why not Envoy's (accept
/// and close at once)? An HTTP client then sees a reset, not a status it can act on, and unread
/// request bytes turn the close into an RST. A 503 with `Retry-After` is what this router
/// already answers when a Service has no ready backend: clients and load balancers retry it.
/// The refusal reads the request head for at most [`REFUSAL_READ_TIMEOUT`], and at most
/// [`REFUSAL_SLOTS`] refusals run at once; beyond that the connection is closed unanswered.
fn refuse(
    service: &Arc<ServiceInner>,
    stream: TcpStream,
    reason: &'static str,
    connections: &TaskTracker,
) {
    let shared = &service.shared;
    let permit = Arc::clone(&shared.refusals).try_acquire_owned();
    let reason = if permit.is_ok() { reason } else { "overflow" };
    shared.metrics.refused(&service.name, reason);
    if let Some(held) = service
        .refusal_log
        .allow(shared.now_ms(), REFUSAL_LOG_PERIOD_MS)
    {
        tracing::warn!(
            service = %service.name,
            reason,
            open = service.connections.load(Ordering::Relaxed),
            limit = shared.config.max_connections,
            budget = shared.connection_budget,
            held_back = held,
            "connection refused with 503: too many open connections (see --max-connections and the open-files limit)"
        );
    }
    let Ok(permit) = permit else {
        drop(stream);
        return;
    };
    connections.spawn(async move {
        let answer = service_fn(|_request| async {
            let mut response = Response::new(Full::new(Bytes::from_static(
                b"too many connections to this service; retry later\n",
            )));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            headers.insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            Ok::<_, std::convert::Infallible>(response)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(REFUSAL_READ_TIMEOUT)
            .keep_alive(false)
            .serve_connection(TokioIo::new(stream), answer);
        // The header timeout bounds a silent client; this bounds one that never reads.
        let _ = tokio::time::timeout(REFUSAL_READ_TIMEOUT * 2, connection).await;
        drop(permit);
    });
}
