//! Mirroring: sampled copies, primary-only answers, and a slow or dead mirror never slowing
//! the primary.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use cutover_router::{MirrorRule, RouteTable, RouterConfig};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const BOUND: Duration = Duration::from_secs(10);

fn mirrored(primary: &Backend, mirror: std::net::SocketAddr, percent: f64) -> RouteTable {
    let mut t = RouteTable::single("blue", vec![primary.addr]);
    t.backends.insert("green".into(), vec![mirror]);
    t.mirror = Some(MirrorRule {
        revision: "green".into(),
        percent,
    });
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_gets_its_share_and_never_answers() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let (router, svc) = router().await;
    svc.install(mirrored(&blue, green.addr, 50.0));
    let client = client();
    for _ in 0..400 {
        let answer = get(&client, &svc, "/", &[("host", "shop:8080")]).await;
        assert_eq!(answer.body, "revision=blue");
    }
    wait_until(BOUND, "mirror copies to finish", || {
        svc.in_flight().get("green") == Some(&0)
    })
    .await;
    let copies = green.requests.load(Ordering::SeqCst);
    assert!(
        (140..=260).contains(&copies),
        "mirror got {copies} of 400 at 50%"
    );
    assert!(
        green
            .hosts
            .lock()
            .unwrap()
            .iter()
            .all(|h| h == "shop-shadow:8080")
    );
    assert_eq!(blue.requests.load(Ordering::SeqCst), 400);
    let text = router.metrics_text();
    let sent = format!(
        r#"cutover_mirror_requests_total{{service="app",revision="green",outcome="sent"}} {copies}"#
    );
    assert!(text.contains(&sent), "missing {sent} in\n{text}");
}

/// Sends 200 requests from 4 tasks and returns the slowest primary latency.
async fn slowest_of_200(svc: &cutover_router::ServiceHandle) -> Duration {
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            let client = client();
            let mut slowest = Duration::ZERO;
            for _ in 0..50 {
                let started = Instant::now();
                let answer = get(&client, &svc, "/", &[]).await;
                slowest = slowest.max(started.elapsed());
                assert_eq!(answer.body, "revision=blue");
            }
            slowest
        }));
    }
    let mut slowest = Duration::ZERO;
    for task in tasks {
        slowest = slowest.max(task.await.unwrap());
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_mirror_does_not_slow_the_primary() {
    let blue = Backend::start("blue").await;
    let green = Backend::start_with_delay("green", Duration::from_secs(2)).await;
    let (router, svc) = router().await;
    svc.install(mirrored(&blue, green.addr, 100.0));
    let slowest = slowest_of_200(&svc).await;
    // The mirror sleeps 2 s per copy; the bound is far from both that and a loopback hop.
    assert!(
        slowest < Duration::from_millis(500),
        "slowest primary took {slowest:?}"
    );
    let text = router.metrics_text();
    assert!(
        text.contains(r#"outcome="skipped_busy""#),
        "the 64-slot semaphore filled:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_mirror_does_not_slow_the_primary() {
    let blue = Backend::start("blue").await;
    let dead = Backend::start("green").await.addr;
    wait_until(BOUND, "dead port to refuse", || {
        std::net::TcpStream::connect(dead).is_err()
    })
    .await;
    let (router, svc) = router().await;
    svc.install(mirrored(&blue, dead, 100.0));
    let slowest = slowest_of_200(&svc).await;
    assert!(
        slowest < Duration::from_millis(500),
        "slowest primary took {slowest:?}"
    );
    let text = router.metrics_text();
    assert!(
        text.contains(r#"revision="green",outcome="error""#),
        "{text}"
    );
}

type StreamClient =
    Client<HttpConnector, http_body_util::combinators::BoxBody<Bytes, std::io::Error>>;

async fn post(
    client: &StreamClient,
    svc: &cutover_router::ServiceHandle,
    chunks: usize,
    chunked: bool,
) -> String {
    let uri = format!("http://{}/len", svc.local_addr());
    let frames =
        (0..chunks).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'x'; 1024]))));
    let body = StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>())).boxed();
    let mut request = http::Request::post(uri);
    if !chunked {
        request = request.header("content-length", (chunks * 1024).to_string());
    }
    let response = client.request(request.body(body).unwrap()).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_cap_reach_the_primary_unmirrored() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let config = RouterConfig {
        mirror_max_body: 2048,
        ..RouterConfig::default()
    };
    let (router, svc) = router_with(config).await;
    svc.install(mirrored(&blue, green.addr, 100.0));
    let client: StreamClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());

    assert_eq!(
        post(&client, &svc, 2, false).await,
        "revision=blue len=2048"
    );
    assert_eq!(post(&client, &svc, 2, true).await, "revision=blue len=2048");
    wait_until(BOUND, "small bodies mirrored", || {
        green.requests.load(Ordering::SeqCst) == 2
    })
    .await;

    // Over the cap, declared and chunked: the primary still gets every byte, the mirror nothing.
    assert_eq!(
        post(&client, &svc, 8, false).await,
        "revision=blue len=8192"
    );
    assert_eq!(post(&client, &svc, 8, true).await, "revision=blue len=8192");
    wait_until(BOUND, "mirror idle", || {
        svc.in_flight().get("green") == Some(&0)
    })
    .await;
    assert_eq!(green.requests.load(Ordering::SeqCst), 2);
    let text = router.metrics_text();
    let skipped = r#"cutover_mirror_requests_total{service="app",revision="green",outcome="skipped_body_too_large"} 2"#;
    assert!(text.contains(skipped), "{text}");
}
