//! The client socket as hyper sees it: bytes read earlier but not parsed yet are served first,
//! and whether hyper has written everything it wanted to is recorded, so a quiet HTTP/1.1
//! connection can be taken back from hyper safely (see `conn`'s parking).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What an h2c client with prior knowledge sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a client speaks, told from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    /// h2c with prior knowledge.
    Http2,
}

/// Whether bytes were handed to the socket since hyper last flushed with nothing left to write
/// (hyper flushes the socket only once its own write buffer is empty).
#[derive(Debug, Default)]
pub(crate) struct WriteState {
    unflushed: AtomicBool,
}

impl WriteState {
    /// True when every byte hyper had to write reached the socket.
    pub fn flushed(&self) -> bool {
        !self.unflushed.load(Ordering::Relaxed)
    }
}

pub(crate) struct ClientIo {
    stream: TcpStream,
    /// Read from the socket but not parsed yet; served before the socket.
    replay: Bytes,
    writes: Arc<WriteState>,
}

impl ClientIo {
    pub fn new(stream: TcpStream, replay: Bytes, writes: Arc<WriteState>) -> Self {
        Self {
            stream,
            replay,
            writes,
        }
    }

    /// Puts back bytes a connection read but did not parse.
    pub fn replay(&mut self, bytes: Bytes) {
        debug_assert!(self.replay.is_empty(), "replayed bytes not served yet");
        self.replay = bytes;
    }

    /// Waits until the client sends something (or closes).
    pub async fn readable(&self) -> io::Result<()> {
        if self.replay.is_empty() {
            self.stream.readable().await
        } else {
            Ok(())
        }
    }
}

/// Reads until the first bytes tell HTTP/1.x from the h2c preface, and returns them with the
/// socket so that they are served again. `None` when the client closed without a byte.
pub(crate) async fn detect(
    mut stream: TcpStream,
    writes: Arc<WriteState>,
) -> io::Result<Option<(Protocol, ClientIo)>> {
    let mut first = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    let protocol = loop {
        let read = stream.read(&mut first[filled..]).await?;
        if read == 0 {
            return Ok(None);
        }
        filled += read;
        if first[..filled] != H2_PREFACE[..filled] {
            break Protocol::Http1;
        }
        if filled == H2_PREFACE.len() {
            break Protocol::Http2;
        }
    };
    let replay = Bytes::copy_from_slice(&first[..filled]);
    Ok(Some((protocol, ClientIo::new(stream, replay, writes))))
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let take = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay.split_to(take));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl ClientIo {
    fn wrote<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        // A write that is pending leaves bytes in hyper's buffer; one that went through leaves
        // a flush to come. Either way the connection is not quiet until the next flush.
        if !matches!(poll, Poll::Ready(Err(_))) {
            self.writes.unflushed.store(true, Ordering::Relaxed);
        }
        poll
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.wrote(poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        if matches!(poll, Poll::Ready(Ok(()))) {
            this.writes.unflushed.store(false, Ordering::Relaxed);
        }
        poll
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
