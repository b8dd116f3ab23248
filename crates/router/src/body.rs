//! Body types: what the router sends to backends ([`RequestBody`]) and what it answers clients
//! with ([`ResponseBody`]). A proxied response body holds the request's in-flight claim, so the
//! drain waits until the last byte is delivered, and it aborts on the drain deadline.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::oneshot;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::conn::Exchange;
use crate::state::InFlight;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body of a request sent to a backend.
pub(crate) enum RequestBody {
    Empty,
    /// Fully buffered (it was small enough to be mirrored too).
    Full(Option<Bytes>),
    /// Streamed as it arrives.
    Stream(Incoming),
    /// A buffered prefix, then the rest streamed: buffering for a mirror stopped at the cap.
    Chained(Option<Bytes>, Incoming),
    /// A body that says when its last frame was taken: the response timeout starts then, as
    /// a slow upload is not a slow backend. It keeps the client connection's exchange open
    /// while it lives, as hyper may still be reading the client's body into it.
    Watched(
        Box<RequestBody>,
        Option<oneshot::Sender<()>>,
        #[expect(dead_code, reason = "held for its Drop, which ends the exchange")] Exchange,
    ),
}

impl RequestBody {
    /// This body, and a receiver that resolves once the whole body was sent (at once for an
    /// empty or buffered one; an error also resolves it, as the sender is dropped). A body
    /// still streaming from the client holds `exchange`.
    pub fn watched(self, exchange: Exchange) -> (Self, Option<oneshot::Receiver<()>>) {
        if self.is_end_stream() || matches!(self, RequestBody::Full(_)) {
            return (self, None);
        }
        let (done, uploaded) = oneshot::channel();
        (
            RequestBody::Watched(Box::new(self), Some(done), exchange),
            Some(uploaded),
        )
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Stream(inner) => Pin::new(inner).poll_frame(cx),
            RequestBody::Chained(prefix, rest) => match prefix.take() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => Pin::new(rest).poll_frame(cx),
            },
            RequestBody::Watched(inner, done, _) => {
                let frame = ready!(Pin::new(inner.as_mut()).poll_frame(cx));
                if (frame.is_none() || inner.is_end_stream())
                    && let Some(done) = done.take()
                {
                    let _ = done.send(());
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Full(bytes) => bytes.is_none(),
            RequestBody::Stream(inner) => inner.is_end_stream(),
            RequestBody::Chained(prefix, rest) => prefix.is_none() && rest.is_end_stream(),
            RequestBody::Watched(inner, _, _) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            RequestBody::Stream(inner) => inner.size_hint(),
            RequestBody::Chained(prefix, rest) => {
                let extra = prefix.as_ref().map_or(0, |b| b.len() as u64);
                let hint = rest.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(hint.lower() + extra);
                if let Some(upper) = hint.upper() {
                    out.set_upper(upper + extra);
                }
                out
            }
            RequestBody::Watched(inner, _, _) => inner.size_hint(),
        }
    }
}

/// Why a request body could not be read for mirroring.
pub(crate) enum Buffered {
    /// The whole body, no larger than the cap.
    Complete(Bytes),
    /// The cap was exceeded (or a trailer frame arrived): forward the rest streamed, unmirrored.
    Partial(RequestBody),
}

/// Reads `body` up to `cap` bytes. Stops at the cap so a large body is never held in memory.
pub(crate) async fn buffer_up_to(mut body: Incoming, cap: usize) -> Result<Buffered, hyper::Error> {
    let mut collected = bytes::BytesMut::new();
    while !body.is_end_stream() {
        let Some(frame) = body.frame().await else {
            break;
        };
        match frame?.into_data() {
            Ok(data) => {
                collected.extend_from_slice(&data);
                if collected.len() > cap {
                    let prefix = Some(collected.freeze());
                    return Ok(Buffered::Partial(RequestBody::Chained(prefix, body)));
                }
            }
            // Trailers end the body; they are dropped, as a buffered body cannot carry them.
            Err(_) => break,
        }
    }
    Ok(Buffered::Complete(collected.freeze()))
}

/// Body of a response to a client.
pub(crate) enum ResponseBody {
    /// A message the router wrote itself (errors).
    Message(Option<Bytes>),
    /// A backend's response body, streamed.
    Proxied(Box<ProxiedBody>),
}

impl From<Bytes> for ResponseBody {
    fn from(bytes: Bytes) -> Self {
        ResponseBody::Message(Some(bytes))
    }
}

impl ResponseBody {
    pub fn empty() -> Self {
        ResponseBody::Message(None)
    }

    pub fn proxied(inner: Incoming, claim: InFlight, exchange: Exchange) -> Self {
        let cancelled = claim.backend.cancel.clone().cancelled_owned();
        ResponseBody::Proxied(Box::new(ProxiedBody {
            inner,
            claim: Some(claim),
            cancelled: Box::pin(cancelled),
            _exchange: exchange,
        }))
    }
}

pub(crate) struct ProxiedBody {
    inner: Incoming,
    /// Dropped at the end of the body, on error, or on cancellation: the request is done.
    claim: Option<InFlight>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The client connection's exchange, open until hyper drops the body after its end.
    _exchange: Exchange,
}

/// The drain deadline passed while the body was still streaming.
#[derive(Debug, thiserror::Error)]
#[error("response cancelled: its revision was drained")]
struct DrainCancelled;

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let body = match self.get_mut() {
            ResponseBody::Message(bytes) => {
                return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b))));
            }
            ResponseBody::Proxied(body) => body,
        };
        if body.claim.is_some() && body.cancelled.as_mut().poll(cx).is_ready() {
            body.claim = None;
            // An error (not an end of stream) makes hyper reset the stream or close the
            // connection, so the client cannot mistake a cut body for a complete one.
            return Poll::Ready(Some(Err(Box::new(DrainCancelled))));
        }
        let frame = ready!(Pin::new(&mut body.inner).poll_frame(cx));
        match frame {
            None => body.claim = None,
            Some(Err(_)) => body.claim = None,
            Some(Ok(_)) if body.inner.is_end_stream() => body.claim = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame.map(|f| f.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Message(bytes) => bytes.is_none(),
            ResponseBody::Proxied(body) => body.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Message(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseBody::Proxied(body) => body.inner.size_hint(),
        }
    }
}
