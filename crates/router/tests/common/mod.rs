//! Test fixtures: small hyper backends on ephemeral ports and a client for the router.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cutover_router::{RouteTable, Router, RouterConfig, ServiceHandle};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type TestBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A backend answering `revision=<name>`. Paths:
/// `/slow?ms=N` waits N ms first; `/stream` sends 50 chunks 20 ms apart; `/truncate` sends one
/// chunk of a longer declared body and fails; `/headers` echoes request headers; `/len` answers the request body's length; an Upgrade
/// request gets 101 and an echo over the upgraded connection. `delay` slows every request.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    /// TCP connections accepted.
    pub accepted: Arc<AtomicUsize>,
    /// Requests answered (counted when they arrive).
    pub requests: Arc<AtomicUsize>,
    /// Host header of every request, in arrival order.
    pub hosts: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Backend {
    pub async fn start(name: &str) -> Self {
        Self::start_with_delay(name, Duration::ZERO).await
    }

    pub async fn start_with_delay(name: &str, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = Backend {
            addr,
            name: name.to_owned(),
            accepted: Arc::default(),
            requests: Arc::default(),
            hosts: Arc::default(),
            stop: CancellationToken::new(),
        };
        let state = Arc::new(State {
            name: name.to_owned(),
            delay,
            requests: Arc::clone(&backend.requests),
            hosts: Arc::clone(&backend.hosts),
        });
        let accepted = Arc::clone(&backend.accepted);
        let stop = backend.stop.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => r.unwrap(),
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let state = Arc::clone(&state);
                let stop = stop.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(Arc::clone(&state), req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades();
                    tokio::select! { _ = conn => {}, _ = stop.cancelled() => {} }
                });
            }
        });
        backend
    }
}

struct State {
    name: String,
    delay: Duration,
    requests: Arc<AtomicUsize>,
    hosts: Arc<Mutex<Vec<String>>>,
}

fn text(body: String) -> TestBody {
    Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed()
}

async fn answer(
    state: Arc<State>,
    mut req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    state.hosts.lock().unwrap().push(host);
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let revision = format!("revision={}", state.name);
    if req.headers().contains_key("upgrade") {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(text(String::new()))
            .unwrap();
        return Ok(response);
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = match path.as_str() {
        "/slow" => {
            let ms: u64 = query
                .strip_prefix("ms=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(500);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(revision)
        }
        "/stream" => {
            let chunks = futures_stream(revision);
            StreamBody::new(chunks).boxed()
        }
        "/truncate" => {
            // The pause lets the head and first chunk leave before the failure.
            let stream = futures_util::stream::unfold(0u32, |i| async move {
                match i {
                    0 => Some((Ok(Frame::data(Bytes::from_static(b"partial"))), 1)),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((Err(std::io::Error::other("backend died mid-body")), 2))
                    }
                    _ => None,
                }
            });
            return Ok(Response::builder()
                .header("content-length", "1000")
                .body(StreamBody::new(stream).boxed())
                .unwrap());
        }
        "/len" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().len())
                .unwrap_or(0);
            text(format!("{revision} len={body}"))
        }
        "/headers" => {
            let mut out = String::new();
            for (name, value) in req.headers() {
                out.push_str(&format!("{}: {}\n", name, value.to_str().unwrap_or("?")));
            }
            text(out)
        }
        _ => {
            // Consume the request body so keep-alive works for POSTs.
            let _ = req.into_body().collect().await;
            text(revision)
        }
    };
    Ok(Response::new(body))
}

type FrameResult = Result<Frame<Bytes>, std::io::Error>;

fn futures_stream(revision: String) -> impl futures_util::Stream<Item = FrameResult> {
    futures_util::stream::unfold(0u32, move |i| {
        let revision = revision.clone();
        async move {
            if i >= 50 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((
                Ok(Frame::data(Bytes::from(format!("{revision} chunk {i}\n")))),
                i + 1,
            ))
        }
    })
}

/// A router with one Service bound on an ephemeral port.
pub async fn router_with(config: RouterConfig) -> (Router, ServiceHandle) {
    let router = Router::new(config);
    let service = router
        .bind("app", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (router, service)
}

pub async fn router() -> (Router, ServiceHandle) {
    router_with(RouterConfig::default()).await
}

/// A table with the given revisions, each with its backends, all traffic to `to`.
pub fn table(revisions: &[(&str, &[&Backend])], to: &str) -> RouteTable {
    let mut t = RouteTable::single(to, Vec::new());
    t.backends = revisions
        .iter()
        .map(|(name, backends)| (name.to_string(), backends.iter().map(|b| b.addr).collect()))
        .collect::<BTreeMap<_, _>>();
    t
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

/// GET `path` on the service with extra headers.
pub async fn get(
    client: &HttpClient,
    service: &ServiceHandle,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    try_get(client, service, path, headers).await.unwrap()
}

pub async fn try_get(
    client: &HttpClient,
    service: &ServiceHandle,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    let mut req = Request::get(format!("http://{}{}", service.local_addr(), path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = client.request(req.body(Full::new(Bytes::new()))?).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Polls `condition` every 5 ms until it holds; panics after `limit`. Bounds a wait, never
/// asserts a duration.
pub async fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(limit, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

/// Awaits `future` or panics after `limit`.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out: {what}"),
    }
}
