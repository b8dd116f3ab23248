//! Switching and draining: zero failed requests under load, in-flight requests finish, upgraded
//! connections close at once, stragglers are cancelled at the deadline.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use cutover_router::RouterConfig;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOUND: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_under_load_fails_nothing_and_stops_old_revision_after_drain() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let (_router, svc) = router().await;
    let both = |to| table(&[("blue", &[&blue]), ("green", &[&green])], to);
    svc.install(both("blue"));

    // (epoch, revision that must not answer a request sent during this epoch)
    let forbidden: Arc<Mutex<(u64, Option<String>)>> = Arc::new(Mutex::new((0, None)));
    let done = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (svc, forbidden, done, completed) = (
            svc.clone(),
            Arc::clone(&forbidden),
            Arc::clone(&done),
            Arc::clone(&completed),
        );
        clients.push(tokio::spawn(async move {
            let client = client();
            let mut failures = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let (epoch, banned) = forbidden.lock().unwrap().clone();
                match try_get(&client, &svc, "/", &[]).await {
                    Ok(answer) if answer.status == 200 => {
                        let still_same_epoch = forbidden.lock().unwrap().0 == epoch;
                        let revision = answer.body.trim_start_matches("revision=").to_owned();
                        if still_same_epoch && banned.as_deref() == Some(revision.as_str()) {
                            failures.push(format!("{revision} answered after its drain"));
                        }
                    }
                    Ok(answer) => {
                        failures.push(format!("status {}: {}", answer.status, answer.body))
                    }
                    Err(error) => failures.push(format!("client error: {error}")),
                }
                completed.fetch_add(1, Ordering::SeqCst);
            }
            failures
        }));
    }

    let mut live = "blue";
    for _ in 0..10 {
        let before = completed.load(Ordering::SeqCst);
        wait_until(BOUND, "load between switches", || {
            completed.load(Ordering::SeqCst) >= before + 200
        })
        .await;
        let next = if live == "blue" { "green" } else { "blue" };
        {
            let mut f = forbidden.lock().unwrap();
            *f = (f.0 + 1, None);
        }
        let generation = svc.install(both(next));
        within(BOUND, "drain", svc.drained(generation)).await;
        {
            let mut f = forbidden.lock().unwrap();
            *f = (f.0 + 1, Some(live.to_owned()));
        }
        assert_eq!(svc.serving(), vec![next.to_owned()]);
        live = next;
    }
    let before = completed.load(Ordering::SeqCst);
    wait_until(BOUND, "load after the last switch", || {
        completed.load(Ordering::SeqCst) >= before + 200
    })
    .await;
    done.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(completed.load(Ordering::SeqCst) >= 2200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_finishes_across_a_switch() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let (_router, svc) = router().await;
    svc.install(table(&[("blue", &[&blue])], "blue"));
    let client = client();
    let slow = tokio::spawn({
        let (client, svc) = (client.clone(), svc.clone());
        async move { get(&client, &svc, "/slow?ms=500", &[]).await }
    });
    wait_until(BOUND, "slow request in flight", || {
        svc.in_flight().get("blue") == Some(&1)
    })
    .await;

    let generation = svc.install(table(&[("green", &[&green])], "green"));
    assert_eq!(svc.serving(), vec!["blue".to_owned(), "green".to_owned()]);
    assert_eq!(get(&client, &svc, "/", &[]).await.body, "revision=green");

    within(BOUND, "drain", svc.drained(generation)).await;
    let answer = slow.await.unwrap();
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_str()),
        (200, "revision=blue")
    );
    assert_eq!(svc.serving(), vec!["green".to_owned()]);
    assert_eq!(svc.in_flight().get("blue").copied().unwrap_or(0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_address_of_a_kept_revision_drains() {
    let (a, b) = (Backend::start("blue").await, Backend::start("blue").await);
    let (_router, svc) = router().await;
    svc.install(table(&[("blue", &[&a])], "blue"));
    let client = client();
    let slow = tokio::spawn({
        let (client, svc) = (client.clone(), svc.clone());
        async move { get(&client, &svc, "/slow?ms=300", &[]).await }
    });
    wait_until(BOUND, "slow request in flight", || {
        svc.in_flight().get("blue") == Some(&1)
    })
    .await;
    let generation = svc.install(table(&[("blue", &[&b])], "blue"));
    get(&client, &svc, "/", &[]).await;
    assert_eq!(
        b.requests.load(Ordering::SeqCst),
        1,
        "new requests go to the new address"
    );
    within(BOUND, "drain", svc.drained(generation)).await;
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(a.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_connection_is_closed_at_once_on_switch() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let (_router, svc) = router().await;
    svc.install(table(&[("blue", &[&blue])], "blue"));

    let mut socket = tokio::net::TcpStream::connect(svc.local_addr())
        .await
        .unwrap();
    socket
        .write_all(b"GET /ws HTTP/1.1\r\nhost: app\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            within(BOUND, "101 head", socket.read(&mut byte))
                .await
                .unwrap(),
            1
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    socket.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    within(BOUND, "echo", socket.read_exact(&mut echo))
        .await
        .unwrap();
    assert_eq!(&echo, b"ping");
    assert_eq!(svc.serving(), vec!["blue".to_owned()]);

    // The default drain timeout is 30 s; the tunnel must not wait for it.
    let generation = svc.install(table(&[("green", &[&green])], "green"));
    // A clean close or a reset both count; the bound is what fails a tunnel left open.
    let mut rest = Vec::new();
    let _closed = within(
        BOUND,
        "upgraded connection closed",
        socket.read_to_end(&mut rest),
    )
    .await;
    within(BOUND, "drain", svc.drained(generation)).await;
    assert_eq!(svc.serving(), vec!["green".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn straggler_is_cancelled_at_the_drain_deadline() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let config = RouterConfig {
        drain_timeout: Duration::from_millis(200),
        ..RouterConfig::default()
    };
    let (_router, svc) = router_with(config).await;
    svc.install(table(&[("blue", &[&blue])], "blue"));
    let client = client();
    let slow = tokio::spawn({
        let (client, svc) = (client.clone(), svc.clone());
        async move { get(&client, &svc, "/slow?ms=60000", &[]).await }
    });
    wait_until(BOUND, "straggler in flight", || {
        svc.in_flight().get("blue") == Some(&1)
    })
    .await;
    let generation = svc.install(table(&[("green", &[&green])], "green"));
    // Resolves at the 200 ms deadline; the bound only guards against waiting for the 60 s request.
    within(BOUND, "drain deadline", svc.drained(generation)).await;
    let answer = within(BOUND, "cancelled answer", slow).await.unwrap();
    assert_eq!(
        answer.status, 503,
        "no byte was sent, so the client gets 503: {}",
        answer.body
    );
    wait_until(BOUND, "old revision gone", || {
        svc.serving() == vec!["green".to_owned()]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_response_cut_by_the_deadline_is_not_complete() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let config = RouterConfig {
        drain_timeout: Duration::from_millis(100),
        ..RouterConfig::default()
    };
    let (_router, svc) = router_with(config).await;
    svc.install(table(&[("blue", &[&blue])], "blue"));
    let client = client();
    let uri = format!("http://{}/stream", svc.local_addr());
    let response = client.get(uri.parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
    let generation = svc.install(table(&[("green", &[&green])], "green"));
    within(BOUND, "drain deadline", svc.drained(generation)).await;
    let body = within(BOUND, "body end", response.into_body().collect()).await;
    assert!(body.is_err(), "a cancelled stream must not look complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_cut_by_the_backend_reaches_the_client_as_an_error() {
    let blue = Backend::start("blue").await;
    let (_router, svc) = router().await;
    svc.install(table(&[("blue", &[&blue])], "blue"));
    let result = try_get(&client(), &svc, "/truncate", &[]).await;
    assert!(
        result.is_err(),
        "got a complete-looking response: {:?}",
        result.map(|a| a.body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_then_stops_listening() {
    let blue = Backend::start("blue").await;
    let (router, svc) = router().await;
    svc.install(table(&[("blue", &[&blue])], "blue"));
    let client = client();
    let slow = tokio::spawn({
        let (client, svc) = (client.clone(), svc.clone());
        async move { get(&client, &svc, "/slow?ms=300", &[]).await }
    });
    wait_until(BOUND, "slow request in flight", || {
        svc.in_flight().get("blue") == Some(&1)
    })
    .await;
    within(BOUND, "shutdown", router.shutdown()).await;
    assert_eq!(slow.await.unwrap().status, 200);
    assert!(
        tokio::net::TcpStream::connect(svc.local_addr())
            .await
            .is_err()
    );
}
