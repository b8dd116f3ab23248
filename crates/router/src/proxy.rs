//! The request path: load the snapshot, choose and claim a backend, rewrite, forward, stream
//! the response back holding the claim. No lock is held at any point.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::RouterConfig;
use crate::body::{RequestBody, ResponseBody};
use crate::conn::Exchange;
use crate::error::{ProxyError, error_response};
use crate::headers::{add_forwarded, is_upgrade, strip_hop_by_hop};
use crate::metrics::{NO_REVISION, RequestLabels, RevisionMetrics};
use crate::mirror;
use crate::service::ServiceInner;
use crate::state::{InFlight, Snapshot};
use crate::table::{match_header_route, pick_weighted, split_point, sticky_key};

pub(crate) type Client = hyper_util::client::legacy::Client<HttpConnector, RequestBody>;

/// How long an endpoint that refused a connection is skipped (passive health).
pub(crate) const EJECTION: Duration = Duration::from_secs(3);

/// How many times a request reloads the snapshot when an install raced its backend claim.
const CLAIM_ATTEMPTS: usize = 3;

pub(crate) fn client(config: &RouterConfig) -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.backend_connect_timeout));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector)
}

/// Entry point for every request on a Service's listener.
pub(crate) async fn handle(
    service: Arc<ServiceInner>,
    request: Request<Incoming>,
    peer: SocketAddr,
    exchange: Exchange,
) -> Result<Response<ResponseBody>, Infallible> {
    match proxy(&service, request, peer, exchange).await {
        Ok(response) => Ok(response),
        Err((error, revision)) => {
            tracing::debug!(service = %service.name, %error, "request failed");
            let response: Response<ResponseBody> = error_response(&service.name, &error);
            match revision {
                Some(metrics) => metrics.count(response.status()),
                None => count_unrouted(&service, response.status()),
            }
            Ok(response)
        }
    }
}

type Failure = (ProxyError, Option<Arc<RevisionMetrics>>);

async fn proxy(
    service: &Arc<ServiceInner>,
    request: Request<Incoming>,
    peer: SocketAddr,
    exchange: Exchange,
) -> Result<Response<ResponseBody>, Failure> {
    let (claim, mirror_to, response_timeout) =
        choose(service, request.headers()).map_err(|e| (e, None))?;
    let revision_metrics = Arc::clone(&claim.backend.metrics);
    let fail = |e| (e, Some(Arc::clone(&revision_metrics)));

    let (mut parts, body) = request.into_parts();
    let upgrade = parts.version == Version::HTTP_11 && is_upgrade(&parts.headers);
    let client_upgrade = if upgrade {
        let mut probe = Request::from_parts(parts, ());
        let on = hyper::upgrade::on(&mut probe);
        parts = probe.into_parts().0;
        Some(on)
    } else {
        None
    };
    rewrite(&mut parts, &claim, peer, upgrade).map_err(fail)?;

    let body = match mirror_to.filter(|_| !upgrade) {
        Some(plan) => mirror::fork(service, &parts, body, plan).await,
        None if body_is_empty(&body) => Ok(RequestBody::Empty),
        None => Ok(RequestBody::Stream(body)),
    }
    .map_err(|e| {
        fail(ProxyError::BadRequest(format!(
            "reading the request body: {e}"
        )))
    })?;

    let cancel = claim.backend.cancel.clone();
    let (body, uploaded) = body.watched(exchange.clone());
    let deadline = async move {
        let Some(after) = response_timeout else {
            return std::future::pending().await;
        };
        // Like Envoy's route timeout, the clock starts once the whole request is forwarded.
        if let Some(uploaded) = uploaded {
            let _ = uploaded.await;
        }
        tokio::time::sleep(after).await;
        after
    };
    let sent = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(ProxyError::Cancelled),
        result = service.shared.client.request(Request::from_parts(parts, body)) => {
            result.map_err(|source| classify(service, &claim, source))
        }
        after = deadline => {
            revision_metrics.timeouts.inc();
            Err(ProxyError::Timeout(after))
        }
    };
    let mut response = sent.map_err(fail)?;
    revision_metrics.count(response.status());

    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let backend_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(tunnel(client_upgrade, backend_upgrade, claim));
        let (parts, _) = response.into_parts();
        return Ok(Response::from_parts(parts, ResponseBody::empty()));
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Ok(Response::from_parts(
        parts,
        ResponseBody::proxied(body, claim, exchange),
    ))
}

pub(crate) fn body_is_empty(body: &Incoming) -> bool {
    hyper::body::Body::is_end_stream(body)
}

/// What [`choose`] decided: the claimed primary, the mirror plan, the response timeout.
type Choice = (InFlight, Option<mirror::Plan>, Option<Duration>);

/// Picks and claims the primary backend, and says whether to mirror (and to which revision).
/// Reloads the snapshot when an install raced the claim, so no request lands on a backend
/// whose drain has started.
fn choose(service: &ServiceInner, headers: &http::HeaderMap) -> Result<Choice, ProxyError> {
    let mut last = ProxyError::NoRevision;
    for _ in 0..CLAIM_ATTEMPTS {
        let snapshot = service.snapshot.load();
        match claim_primary(&snapshot, headers, service.shared.now_ms()) {
            Ok(claim) => {
                let mirror = snapshot
                    .mirror
                    .filter(|(_, percent)| fastrand::f64() * 100.0 < *percent)
                    .map(|(revision, _)| mirror::plan(service, &snapshot, revision));
                return Ok((claim, mirror, snapshot.response_timeout));
            }
            Err(error) => {
                if service.snapshot.load().generation == snapshot.generation {
                    return Err(error);
                }
                last = error;
            }
        }
    }
    Err(last)
}

fn claim_primary(
    snapshot: &Snapshot,
    headers: &http::HeaderMap,
    now_ms: u64,
) -> Result<InFlight, ProxyError> {
    if let Some(route) = match_header_route(&snapshot.header_routes, headers) {
        let revision = &snapshot.revisions[route.revision];
        return revision
            .claim(now_ms, false)
            .or_else(|| revision.claim(now_ms, true))
            .ok_or(ProxyError::NoHealthyBackend);
    }
    if snapshot.total_weight == 0 {
        return Err(ProxyError::NoRevision);
    }
    let point = split_point(sticky_key(headers), snapshot.total_weight);
    let weights = snapshot.default_route.iter().map(|(_, w)| *w);
    let first = pick_weighted(weights, point).unwrap_or(0);
    let order =
        std::iter::once(first).chain((0..snapshot.default_route.len()).filter(|i| *i != first));
    // First pass skips ejected endpoints; if every endpoint is ejected, try them anyway
    // rather than fail without trying.
    for allow_ejected in [false, true] {
        for index in order.clone() {
            let revision = &snapshot.revisions[snapshot.default_route[index].0];
            if let Some(claim) = revision.claim(now_ms, allow_ejected) {
                return Ok(claim);
            }
        }
    }
    Err(ProxyError::NoHealthyBackend)
}

/// Turns the client request into the backend request: backend URI, HTTP/1.1, Host kept,
/// hop-by-hop removed, X-Forwarded-* added.
fn rewrite(
    parts: &mut http::request::Parts,
    claim: &InFlight,
    peer: SocketAddr,
    upgrade: bool,
) -> Result<(), ProxyError> {
    // HTTP/2 clients send :authority rather than Host; HTTP/1.1 backends need Host.
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, host);
    }
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let host = parts.headers.get(header::HOST).cloned();
    add_forwarded(&mut parts.headers, peer.ip(), host.as_ref());
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = Uri::builder()
        .scheme("http")
        .authority(claim.backend.authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|e| ProxyError::BadRequest(format!("invalid request target: {e}")))?;
    parts.version = Version::HTTP_11;
    Ok(())
}

/// A connect failure ejects the endpoint for a while; anything else is the backend's failure.
fn classify(
    service: &ServiceInner,
    claim: &InFlight,
    source: hyper_util::client::legacy::Error,
) -> ProxyError {
    let addr = claim.backend.addr;
    if source.is_connect() {
        claim.backend.eject(service.shared.now_ms(), EJECTION);
        tracing::warn!(service = %service.name, %addr, error = %source, "backend refused the connection; skipping it for a while");
        ProxyError::Connect { addr, source }
    } else {
        ProxyError::Backend { addr, source }
    }
}

fn count_unrouted(service: &ServiceInner, status: StatusCode) {
    let class = match status.as_u16() / 100 {
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    };
    service
        .shared
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            service: service.name.to_string(),
            revision: NO_REVISION.to_owned(),
            code_class: class,
        })
        .inc();
}

/// Copies bytes both ways after a protocol switch, until either side closes or the backend's
/// revision starts draining (upgraded connections do not wait for the drain deadline).
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    claim: InFlight,
) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(%error, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    let upgrades = claim.backend.upgrades.clone();
    let cancel = claim.backend.cancel.clone();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut backend) => {}
        _ = upgrades.cancelled() => {}
        _ = cancel.cancelled() => {}
    }
    drop(claim);
}
