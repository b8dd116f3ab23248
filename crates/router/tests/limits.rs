//! Hostile and unlucky clients (issue 12 items 2 and 3): half-sent requests, silent and idle
//! connections, more connections than allowed, a backend that never answers. Each while a
//! steady load must keep getting answers. Waits are bounded; nothing asserts a duration.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use cutover_router::{Router, RouterConfig, ServiceHandle};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BOUND: Duration = Duration::from_secs(15);

/// Sum of a metric family's samples whose line mentions every `filter`.
fn metric(router: &Router, name: &str, filters: &[&str]) -> f64 {
    router
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with(name) && filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Reads until the router closes the connection (EOF or reset); panics after [`BOUND`].
async fn closed_by_router(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    within(BOUND, what, read).await;
    seen
}

/// Clients sending GET / in a loop on keep-alive connections until `done`; returns failures.
fn steady_load(
    service: &ServiceHandle,
    clients: usize,
    done: &Arc<AtomicBool>,
    completed: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..clients)
        .map(|_| {
            let (svc, done, completed) = (service.clone(), done.clone(), completed.clone());
            tokio::spawn(async move {
                let client = client();
                let mut failures = Vec::new();
                while !done.load(Ordering::SeqCst) {
                    match try_get(&client, &svc, "/", &[]).await {
                        Ok(answer) if answer.status == 200 => {}
                        Ok(answer) => failures.push(format!("status {}", answer.status)),
                        Err(error) => failures.push(format!("client error: {error}")),
                    }
                    completed.fetch_add(1, Ordering::SeqCst);
                }
                failures
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_is_cut_by_the_header_read_timeout() {
    let backend = Backend::start("blue").await;
    let (router, svc) = router_with(RouterConfig {
        header_read_timeout: Duration::from_millis(300),
        ..RouterConfig::default()
    })
    .await;
    svc.install(table(&[("blue", &[&backend])], "blue"));
    let mut half = TcpStream::connect(svc.local_addr()).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(svc.local_addr()).await.unwrap();
    closed_by_router(&mut half, "the half-sent request to be cut").await;
    closed_by_router(&mut silent, "the silent connection to be closed").await;
    wait_until(BOUND, "both closures counted", || {
        metric(&router, "cutover_connections_timed_out_total", &["app"]) >= 2.0
    })
    .await;
    // The Service still answers.
    assert_eq!(get(&client(), &svc, "/", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let backend = Backend::start("blue").await;
    let (router, svc) = router_with(RouterConfig {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_millis(300),
        ..RouterConfig::default()
    })
    .await;
    svc.install(table(&[("blue", &[&backend])], "blue"));
    // h2c with prior knowledge: hyper's HTTP/1.1 header timer does not apply, the idle one does.
    let stream = TcpStream::connect(svc.local_addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/", svc.local_addr()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.into_body().collect().await.unwrap();
    within(BOUND, "the idle h2c connection to be closed", connection)
        .await
        .unwrap()
        .unwrap();
    assert!(metric(&router, "cutover_connections_timed_out_total", &["idle"]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_limit_a_client_gets_503_and_a_close() {
    let backend = Backend::start("blue").await;
    let (router, svc) = router_with(RouterConfig {
        max_connections: 5,
        header_read_timeout: Duration::from_secs(30),
        ..RouterConfig::default()
    })
    .await;
    svc.install(table(&[("blue", &[&backend])], "blue"));
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(svc.local_addr()).await.unwrap());
    }
    wait_until(BOUND, "five connections open", || {
        svc.open_connections() == 5
    })
    .await;
    let mut over = TcpStream::connect(svc.local_addr()).await.unwrap();
    over.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer =
        String::from_utf8_lossy(&closed_by_router(&mut over, "the refusal").await).to_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(metric(&router, "cutover_connections_refused_total", &["limit"]) >= 1.0);
    drop(held);
    wait_until(BOUND, "the held connections to close", || {
        svc.open_connections() == 0
    })
    .await;
    assert_eq!(get(&client(), &svc, "/", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_and_half_sent_connections_fails_no_request_of_a_steady_load() {
    let backend = Backend::start("blue").await;
    let (router, svc) = router_with(RouterConfig {
        max_connections: 40,
        header_read_timeout: Duration::from_millis(500),
        ..RouterConfig::default()
    })
    .await;
    svc.install(table(&[("blue", &[&backend])], "blue"));
    let done = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let clients = steady_load(&svc, 4, &done, &completed);
    wait_until(BOUND, "the load to start", || {
        completed.load(Ordering::SeqCst) >= 100
    })
    .await;

    // Five times the limit: silent sockets and half-sent heads, held until the end.
    let mut flood = Vec::new();
    for i in 0..200 {
        let Ok(mut s) = TcpStream::connect(svc.local_addr()).await else {
            continue;
        };
        if i % 4 == 0 {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
        }
        flood.push(s);
    }
    let before = completed.load(Ordering::SeqCst);
    wait_until(BOUND, "the load to go on during the flood", || {
        completed.load(Ordering::SeqCst) >= before + 500
    })
    .await;
    wait_until(BOUND, "the flood to be cut", || {
        metric(&router, "cutover_connections_timed_out_total", &["app"]) >= 1.0
    })
    .await;
    done.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, first: {:?}",
        failures.len(),
        completed.load(Ordering::SeqCst),
        failures.first()
    );
    assert!(metric(&router, "cutover_connections_refused_total", &["app"]) >= 1.0);
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_never_answers_gets_a_504_and_a_route_can_wait_longer() {
    let backend = Backend::start("blue").await;
    let (router, svc) = router_with(RouterConfig {
        response_timeout: Duration::from_millis(200),
        ..RouterConfig::default()
    })
    .await;
    svc.install(table(&[("blue", &[&backend])], "blue"));
    let client = client();
    let answer = within(BOUND, "the 504", get(&client, &svc, "/slow?ms=60000", &[])).await;
    assert_eq!(answer.status, 504, "{}", answer.body);
    assert!(answer.body.contains("did not answer"), "{}", answer.body);
    assert!(metric(&router, "cutover_response_timeouts_total", &["blue"]) >= 1.0);
    assert!(metric(&router, "cutover_requests_total", &["blue", "5xx"]) >= 1.0);

    // The route's own timeout wins over the router's default; zero turns it off.
    for timeout in [Duration::from_secs(10), Duration::ZERO] {
        let mut longer = table(&[("blue", &[&backend])], "blue");
        longer.response_timeout = Some(timeout);
        svc.install(longer);
        let answer = within(
            BOUND,
            "the slow answer",
            get(&client, &svc, "/slow?ms=600", &[]),
        )
        .await;
        assert_eq!(answer.status, 200, "timeout {timeout:?}: {}", answer.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_timeout_starts_once_the_request_is_uploaded() {
    let backend = Backend::start("blue").await;
    let (_router, svc) = router_with(RouterConfig {
        response_timeout: Duration::from_millis(300),
        ..RouterConfig::default()
    })
    .await;
    svc.install(table(&[("blue", &[&backend])], "blue"));
    // A body trickling in for longer than the timeout: the backend is not the slow party.
    let chunks = futures_util::stream::unfold(0u32, |i| async move {
        if i >= 6 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        Some((
            Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"0123456789"))),
            i + 1,
        ))
    });
    let request = http::Request::post(format!("http://{}/len", svc.local_addr()))
        .body(StreamBody::new(chunks))
        .unwrap();
    let addr: SocketAddr = svc.local_addr();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = within(BOUND, "the upload", sender.send_request(request))
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(String::from_utf8_lossy(&body), "revision=blue len=60");
}
