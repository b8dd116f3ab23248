//! Accept loop of one Service: HTTP/1.1 (keep-alive, upgrades) and h2c prior knowledge on one
//! port, each connection in its own task, shut down gracefully when the router stops.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proxy;
use crate::service::ServiceInner;

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub(crate) async fn accept_loop(
    listener: TcpListener,
    service: Arc<ServiceInner>,
    stop: CancellationToken,
    connections: TaskTracker,
) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
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
                connections.spawn(serve(
                    stream,
                    peer,
                    Arc::clone(&service),
                    Arc::clone(&builder),
                    stop.clone(),
                ));
            }
            Err(error) => {
                tracing::warn!(service = %service.name, %error, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn serve(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    service: Arc<ServiceInner>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stop: CancellationToken,
) {
    let handler = service_fn(move |request| proxy::handle(Arc::clone(&service), request, peer));
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), handler);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.cancelled() => {
            // Finish the requests already read, take no new ones.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
