//! Quiet HTTP/1.1 keep-alive connections are parked without hyper's buffers and served again
//! when the client sends: no byte of a request may be lost across a park, and nothing in the
//! middle of an exchange (a slow upload, a slow response) is ever parked. Raw sockets, so the
//! test sees exactly what the client sends and gets. Waits are bounded; nothing asserts a
//! duration.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use cutover_router::{Router, RouterConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BOUND: Duration = Duration::from_secs(15);

/// Longer than the router's park delay (one second), so a connection left alone this long
/// would be parked if it could be.
const PAST_PARK_DELAY: Duration = Duration::from_millis(1_600);

fn parked(router: &Router) -> f64 {
    router
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with("cutover_connections_parked{") && l.contains("app"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Reads one response with a `content-length` body: its status and body.
async fn read_response(stream: &mut TcpStream, leftover: &mut Vec<u8>) -> (u16, String) {
    let read = async {
        loop {
            if let Some(end) = leftover.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&leftover[..end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .expect("a content-length");
                if leftover.len() >= end + 4 + length {
                    let body = leftover[end + 4..end + 4 + length].to_vec();
                    leftover.drain(..end + 4 + length);
                    let status = head[9..12].parse().unwrap();
                    return (status, String::from_utf8(body).unwrap());
                }
            }
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the router closed the connection mid-response");
            leftover.extend_from_slice(&buf[..n]);
        }
    };
    within(BOUND, "a response", read).await
}

/// Sends `request` and reads one response.
async fn ask(stream: &mut TcpStream, leftover: &mut Vec<u8>, request: &[u8]) -> (u16, String) {
    stream.write_all(request).await.unwrap();
    read_response(stream, leftover).await
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: app\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_keep_alive_connection_is_parked_and_answers_its_next_requests() {
    let backend = Backend::start("blue").await;
    let (router, svc) = router().await;
    svc.install(table(&[("blue", &[&backend])], "blue"));
    let mut stream = TcpStream::connect(svc.local_addr()).await.unwrap();
    let mut leftover = Vec::new();
    assert_eq!(ask(&mut stream, &mut leftover, GET).await.0, 200);
    wait_until(BOUND, "the connection to be parked", || {
        parked(&router) == 1.0
    })
    .await;

    // Two pipelined requests in one write wake it: both are answered, in order.
    stream
        .write_all(b"GET /headers HTTP/1.1\r\nHost: app\r\nX-Order: first\r\n\r\nGET /headers HTTP/1.1\r\nHost: app\r\nX-Order: second\r\n\r\n")
        .await
        .unwrap();
    let (status, first) = read_response(&mut stream, &mut leftover).await;
    assert_eq!(status, 200);
    assert!(first.contains("x-order: first"), "{first}");
    let (status, second) = read_response(&mut stream, &mut leftover).await;
    assert_eq!(status, 200);
    assert!(second.contains("x-order: second"), "{second}");
    assert_eq!(parked(&router), 0.0);

    // And it parks again.
    wait_until(BOUND, "the connection to be parked again", || {
        parked(&router) == 1.0
    })
    .await;
    assert_eq!(svc.open_connections(), 1);
    drop(stream);
    wait_until(BOUND, "the closed connection to leave", || {
        parked(&router) == 0.0 && svc.open_connections() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_paused_past_the_park_delay_loses_no_byte() {
    let backend = Backend::start("blue").await;
    let (_router, svc) = router().await;
    svc.install(table(&[("blue", &[&backend])], "blue"));
    let mut stream = TcpStream::connect(svc.local_addr()).await.unwrap();
    let mut leftover = Vec::new();
    assert_eq!(ask(&mut stream, &mut leftover, GET).await.0, 200);

    // Half a head, a pause long enough for the router to take the socket back from hyper
    // with those bytes, then the rest.
    stream
        .write_all(b"GET /headers HTTP/1.1\r\nHost: app\r\nX-Early: ")
        .await
        .unwrap();
    tokio::time::sleep(PAST_PARK_DELAY).await;
    stream
        .write_all(b"one\r\nX-Late: two\r\n\r\n")
        .await
        .unwrap();
    let (status, body) = read_response(&mut stream, &mut leftover).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("x-early: one") && body.contains("x-late: two"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_and_a_slow_response_are_never_parked() {
    let backend = Backend::start("blue").await;
    let (router, svc) = router().await;
    svc.install(table(&[("blue", &[&backend])], "blue"));
    let mut stream = TcpStream::connect(svc.local_addr()).await.unwrap();
    let mut leftover = Vec::new();

    // Half a body, a pause past the park delay, the other half.
    stream
        .write_all(b"POST /len HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\n\r\n01234")
        .await
        .unwrap();
    tokio::time::sleep(PAST_PARK_DELAY).await;
    assert_eq!(parked(&router), 0.0, "parked in the middle of an upload");
    stream.write_all(b"56789").await.unwrap();
    let (status, body) = read_response(&mut stream, &mut leftover).await;
    assert_eq!((status, body.as_str()), (200, "revision=blue len=10"));

    // A backend slower than the park delay.
    let slow = b"GET /slow?ms=1600 HTTP/1.1\r\nHost: app\r\n\r\n";
    let (status, body) = ask(&mut stream, &mut leftover, slow).await;
    assert_eq!((status, body.as_str()), (200, "revision=blue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_still_obeys_the_header_read_timeout_and_the_stop() {
    let backend = Backend::start("blue").await;
    let (router, svc) = router_with(RouterConfig {
        header_read_timeout: Duration::from_millis(2_500),
        ..RouterConfig::default()
    })
    .await;
    svc.install(table(&[("blue", &[&backend])], "blue"));
    let mut waiting = TcpStream::connect(svc.local_addr()).await.unwrap();
    let mut leftover = Vec::new();
    assert_eq!(ask(&mut waiting, &mut leftover, GET).await.0, 200);
    wait_until(BOUND, "the connection to be parked", || {
        parked(&router) == 1.0
    })
    .await;
    // No next request head: the router closes it, as hyper would have.
    let mut rest = Vec::new();
    let closed = within(BOUND, "the parked connection to be closed", async {
        waiting.read_to_end(&mut rest).await
    })
    .await;
    assert!(closed.is_ok() && rest.is_empty(), "{closed:?} {rest:?}");
    let header_timeouts: f64 = router
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with("cutover_connections_timed_out_total") && l.contains("header"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    assert_eq!(header_timeouts, 1.0);

    // A parked connection closes at once when the router stops.
    let mut other = TcpStream::connect(svc.local_addr()).await.unwrap();
    assert_eq!(ask(&mut other, &mut leftover, GET).await.0, 200);
    wait_until(BOUND, "the other connection to be parked", || {
        parked(&router) == 1.0
    })
    .await;
    within(BOUND, "the router to stop", router.shutdown()).await;
    let closed = within(
        BOUND,
        "the parked connection to be closed at the stop",
        async { other.read_to_end(&mut rest).await },
    )
    .await;
    assert!(closed.is_ok() && rest.is_empty(), "{closed:?} {rest:?}");
}
