//! Traffic mirroring: a sampled copy of a request goes to another revision in a spawned task,
//! bounded by a semaphore, a body-size cap and a timeout; its response is discarded. Nothing
//! here waits on the mirror, so a slow or dead mirror cannot slow the primary.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use crate::body::{Buffered, RequestBody, buffer_up_to};
use crate::headers::shadow_host;
use crate::proxy::{EJECTION, body_is_empty};
use crate::service::ServiceInner;
use crate::state::{InFlight, Snapshot};

/// What to do with a request sampled for mirroring, decided with the snapshot at hand.
pub(crate) enum Plan {
    Go {
        claim: InFlight,
        permit: OwnedSemaphorePermit,
    },
    Skip {
        revision: Arc<str>,
        outcome: &'static str,
    },
}

pub(crate) fn plan(service: &ServiceInner, snapshot: &Snapshot, revision: usize) -> Plan {
    let revision = &snapshot.revisions[revision];
    let skip = |outcome| Plan::Skip {
        revision: Arc::clone(&revision.name),
        outcome,
    };
    // When every slot is taken the copy is dropped rather than queued.
    let Ok(permit) = Arc::clone(&service.mirror_slots).try_acquire_owned() else {
        return skip("skipped_busy");
    };
    match revision.claim(service.shared.now_ms(), false) {
        Some(claim) => Plan::Go {
            claim: claim.into_shadow(),
            permit,
        },
        None => skip("no_backend"),
    }
}

/// Prepares the primary's body and, when the body fits under the cap, spawns the copy.
pub(crate) async fn fork(
    service: &Arc<ServiceInner>,
    parts: &http::request::Parts,
    body: Incoming,
    plan: Plan,
) -> Result<RequestBody, hyper::Error> {
    let (claim, permit) = match plan {
        Plan::Go { claim, permit } => (claim, permit),
        Plan::Skip { revision, outcome } => {
            record(service, &revision, outcome);
            return Ok(stream(body));
        }
    };
    let cap = service.shared.config.mirror_max_body;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (primary, copy) = if body_is_empty(&body) {
        (RequestBody::Empty, Some(Bytes::new()))
    } else if declared.is_some_and(|len| len > cap as u64) {
        (stream(body), None)
    } else {
        match buffer_up_to(body, cap).await? {
            Buffered::Complete(bytes) => (RequestBody::Full(Some(bytes.clone())), Some(bytes)),
            Buffered::Partial(rest) => (rest, None),
        }
    };
    match copy {
        Some(bytes) => spawn_copy(service, parts, bytes, claim, permit),
        None => record(service, &claim.backend.revision, "skipped_body_too_large"),
    }
    Ok(primary)
}

fn stream(body: Incoming) -> RequestBody {
    if body_is_empty(&body) {
        RequestBody::Empty
    } else {
        RequestBody::Stream(body)
    }
}

fn spawn_copy(
    service: &Arc<ServiceInner>,
    parts: &http::request::Parts,
    body: Bytes,
    claim: InFlight,
    permit: OwnedSemaphorePermit,
) {
    let mut uri = parts.uri.clone().into_parts();
    uri.authority = Some(claim.backend.authority.clone());
    let uri = match http::Uri::from_parts(uri) {
        Ok(uri) => uri,
        Err(_) => return record(service, &claim.backend.revision, "error"),
    };
    let mut request = Request::new(RequestBody::Full(Some(body)));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    if let Some(host) = parts.headers.get(header::HOST).and_then(shadow_host) {
        request.headers_mut().insert(header::HOST, host);
    }
    let service = Arc::clone(service);
    tokio::spawn(async move {
        let _permit = permit;
        let cancel = claim.backend.cancel.clone();
        let timeout = service.shared.config.mirror_timeout;
        let exchange = async {
            let response = service.shared.client.request(request).await?;
            // Read the body to the end so the pooled connection can be reused.
            let _ = response.into_body().collect().await;
            Ok::<_, hyper_util::client::legacy::Error>(())
        };
        let outcome = tokio::select! {
            _ = cancel.cancelled() => "cancelled",
            result = tokio::time::timeout(timeout, exchange) => match result {
                Ok(Ok(())) => "sent",
                Ok(Err(error)) => {
                    if error.is_connect() {
                        claim.backend.eject(service.shared.now_ms(), EJECTION);
                    }
                    "error"
                }
                Err(_) => "timeout",
            },
        };
        record(&service, &claim.backend.revision, outcome);
    });
}

fn record(service: &ServiceInner, revision: &str, outcome: &'static str) {
    service
        .shared
        .metrics
        .mirror_outcome(&service.name, revision, outcome);
}
