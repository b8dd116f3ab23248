//! Routing: balancing, reuse, header routes, weights, stickiness, errors, headers, h2c, metrics.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::*;
use cutover_router::{HeaderMatch, HeaderRoute, RouteTable, WeightedRevision};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_balances_round_robin_across_backends() {
    let (a, b, c) = (
        Backend::start("blue").await,
        Backend::start("blue").await,
        Backend::start("blue").await,
    );
    let (_router, svc) = router().await;
    svc.install(table(&[("blue", &[&a, &b, &c])], "blue"));
    let client = client();
    for _ in 0..30 {
        assert_eq!(get(&client, &svc, "/", &[]).await.body, "revision=blue");
    }
    for backend in [&a, &b, &c] {
        assert_eq!(backend.requests.load(Ordering::SeqCst), 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_reuses_backend_connections() {
    let backend = Backend::start("blue").await;
    let (_router, svc) = router().await;
    svc.install(table(&[("blue", &[&backend])], "blue"));
    let client = client();
    for _ in 0..100 {
        get(&client, &svc, "/", &[]).await;
    }
    // Sequential requests need one pooled connection; allow a little slack for pool races.
    let accepted = backend.accepted.load(Ordering::SeqCst);
    assert!(
        accepted <= 2,
        "backend accepted {accepted} connections for 100 requests"
    );
}

fn two_revisions(blue: &Backend, green: &Backend) -> RouteTable {
    table(&[("blue", &[blue]), ("green", &[green])], "blue")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_routes_match_exact_prefix_and_full_regex() {
    let (blue, green, qa) = (
        Backend::start("blue").await,
        Backend::start("green").await,
        Backend::start("qa").await,
    );
    let (_router, svc) = router().await;
    let mut t = table(
        &[("blue", &[&blue]), ("green", &[&green]), ("qa", &[&qa])],
        "blue",
    );
    t.header_routes = vec![
        HeaderRoute {
            header: "x-canary".into(),
            matcher: HeaderMatch::Exact("true".into()),
            revision: "green".into(),
        },
        HeaderRoute {
            header: "x-user".into(),
            matcher: HeaderMatch::Prefix("qa-".into()),
            revision: "qa".into(),
        },
        HeaderRoute {
            header: "x-build".into(),
            matcher: HeaderMatch::Regex(regex::Regex::new("v2\\.[0-9]+").unwrap()),
            revision: "green".into(),
        },
    ];
    svc.install(t);
    let client = client();
    let body = |h: &'static [(&'static str, &'static str)]| {
        let client = client.clone();
        let svc = svc.clone();
        async move { get(&client, &svc, "/", h).await.body }
    };
    assert_eq!(body(&[("x-canary", "true")]).await, "revision=green");
    assert_eq!(body(&[("x-canary", "false")]).await, "revision=blue");
    assert_eq!(body(&[("x-user", "qa-7")]).await, "revision=qa");
    assert_eq!(body(&[("x-build", "v2.13")]).await, "revision=green");
    // Anchored like Istio: a partial match is no match.
    assert_eq!(body(&[("x-build", "v2.13-rc")]).await, "revision=blue");
    assert_eq!(body(&[]).await, "revision=blue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_follows_weights() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let (_router, svc) = router().await;
    let mut t = two_revisions(&blue, &green);
    // 45:5 normalises to 90/10.
    t.default_route = vec![
        WeightedRevision {
            revision: "blue".into(),
            weight: 45,
        },
        WeightedRevision {
            revision: "green".into(),
            weight: 5,
        },
    ];
    svc.install(t);
    let client = client();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..2000 {
        *counts
            .entry(get(&client, &svc, "/", &[]).await.body)
            .or_default() += 1;
    }
    let green = counts.get("revision=green").copied().unwrap_or(0);
    // 10% ± 3% of 2000 is more than 6 standard deviations wide.
    assert!(
        (140..=260).contains(&green),
        "green got {green} of 2000: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_key_keeps_a_client_on_one_revision() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let (_router, svc) = router().await;
    let mut t = two_revisions(&blue, &green);
    t.default_route = vec![
        WeightedRevision {
            revision: "blue".into(),
            weight: 50,
        },
        WeightedRevision {
            revision: "green".into(),
            weight: 50,
        },
    ];
    svc.install(t);
    let client = client();
    let mut seen = BTreeMap::new();
    for user in 0..20 {
        let cookie = format!("cutover-split=user-{user}");
        let first = get(&client, &svc, "/", &[("cookie", &cookie)]).await.body;
        for _ in 0..10 {
            assert_eq!(
                get(&client, &svc, "/", &[("cookie", &cookie)]).await.body,
                first
            );
        }
        let key = format!("key-{user}");
        let by_header = get(&client, &svc, "/", &[("x-cutover-key", &key)])
            .await
            .body;
        for _ in 0..5 {
            assert_eq!(
                get(&client, &svc, "/", &[("x-cutover-key", &key)])
                    .await
                    .body,
                by_header
            );
        }
        *seen.entry(first).or_insert(0) += 1;
    }
    assert_eq!(
        seen.len(),
        2,
        "20 users at 50/50 should land on both revisions: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_table_empty_route_or_no_ready_backend_is_503() {
    let (_router, svc) = router().await;
    let client = client();
    let answer = get(&client, &svc, "/", &[]).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.body, "service app has no revision\n");

    let mut zero = RouteTable::single("blue", vec![]);
    zero.default_route[0].weight = 0;
    svc.install(zero);
    assert_eq!(get(&client, &svc, "/", &[]).await.status, 503);

    svc.install(RouteTable::single("blue", vec![]));
    let answer = get(&client, &svc, "/", &[]).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.body, "no healthy backend for service app\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_without_backends_falls_back_to_the_others() {
    let blue = Backend::start("blue").await;
    let (_router, svc) = router().await;
    let mut t = table(&[("blue", &[&blue]), ("green", &[])], "blue");
    t.default_route = vec![
        WeightedRevision {
            revision: "green".into(),
            weight: 99,
        },
        WeightedRevision {
            revision: "blue".into(),
            weight: 1,
        },
    ];
    svc.install(t);
    let client = client();
    for _ in 0..20 {
        assert_eq!(get(&client, &svc, "/", &[]).await.body, "revision=blue");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_502_then_the_endpoint_is_skipped() {
    let live = Backend::start("blue").await;
    let dead = {
        let gone = Backend::start("blue").await;
        gone.addr
    };
    // The dropped backend's port is closed; make sure it refuses before relying on it.
    wait_until(
        std::time::Duration::from_secs(5),
        "dead port to refuse",
        || std::net::TcpStream::connect(dead).is_err(),
    )
    .await;
    let (_router, svc) = router().await;
    let mut t = RouteTable::single("blue", vec![dead, live.addr]);
    t.backends.insert("blue".into(), vec![dead, live.addr]);
    svc.install(t);
    let client = client();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(get(&client, &svc, "/", &[]).await.status.as_u16());
    }
    let failures = statuses.iter().filter(|s| **s == 502).count();
    assert_eq!(
        failures, 1,
        "only the first request to the dead endpoint fails: {statuses:?}"
    );
    assert_eq!(live.requests.load(Ordering::SeqCst), 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_added_and_host_kept() {
    let blue = Backend::start("blue").await;
    let (_router, svc) = router().await;
    svc.install(table(&[("blue", &[&blue])], "blue"));
    let client = client();
    let body = get(
        &client,
        &svc,
        "/headers",
        &[
            ("host", "shop.example"),
            ("x-forwarded-for", "10.1.2.3"),
            ("connection", "keep-alive, x-drop"),
            ("x-drop", "1"),
        ],
    )
    .await
    .body;
    assert!(body.contains("host: shop.example\n"), "{body}");
    assert!(
        body.contains("x-forwarded-for: 10.1.2.3, 127.0.0.1\n"),
        "{body}"
    );
    assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
    assert!(body.contains("x-forwarded-host: shop.example\n"), "{body}");
    assert!(!body.contains("x-drop"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_served() {
    let blue = Backend::start("blue").await;
    let (_router, svc) = router().await;
    svc.install(table(&[("blue", &[&blue])], "blue"));
    let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new());
    for _ in 0..3 {
        let uri = format!("http://{}/headers", svc.local_addr());
        let response = h2.get(uri.parse().unwrap()).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains(&format!("host: {}", svc.local_addr())),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_service_revision_and_class_labels() {
    let blue = Backend::start("blue").await;
    let (router, svc) = router().await;
    let client = client();
    get(&client, &svc, "/", &[]).await;
    svc.install(table(&[("blue", &[&blue])], "blue"));
    for _ in 0..3 {
        get(&client, &svc, "/", &[]).await;
    }
    router.record_switch("app", 0.25);
    let text = router.metrics_text();
    let expect = [
        r#"cutover_requests_total{service="app",revision="blue",code_class="2xx"} 3"#,
        r#"cutover_requests_total{service="app",revision="none",code_class="5xx"} 1"#,
        r#"cutover_request_duration_seconds_count{service="app",revision="blue"} 3"#,
        r#"cutover_requests_in_flight{service="app",revision="blue"} 0"#,
        r#"cutover_switch_seconds_count{service="app"} 1"#,
        r#"cutover_route_generation{service="app"} 1"#,
    ];
    for line in expect {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}
