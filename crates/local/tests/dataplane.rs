//! The daemon ↔ data-plane protocol, both sides in this process (the data plane as a task
//! on a Unix socket in a temporary state directory), with real listeners and real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use cutover_local::dataplane::protocol::{Hello, PROTOCOL, SOCKET_FILE};
use cutover_local::dataplane::{
    CallError, DataPlane, DataPlaneConfig, DataPlaneError, DataPlaneMode, call_raw,
};
use cutover_router::{RouteTable, RouterConfig};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BOUND: Duration = Duration::from_secs(20);

/// A backend answering `revision=<name>`.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let answer = service_fn(move |_request| async move {
                    let body = Full::new(Bytes::from(format!("revision={name}")));
                    Ok::<_, Infallible>(Response::new(body))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), answer)
                    .await;
            });
        }
    });
    addr
}

async fn start(dir: &Path) -> DataPlane {
    DataPlane::start(DataPlaneConfig {
        state_dir: dir.to_path_buf(),
        mode: DataPlaneMode::InProcess,
        router: RouterConfig {
            drain_timeout: Duration::from_millis(300),
            ..RouterConfig::default()
        },
    })
    .await
    .expect("data plane")
}

async fn get(addr: SocketAddr) -> Result<(u16, String), reqwest::Error> {
    let response = reqwest::get(format!("http://{addr}/")).await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let waited = tokio::time::timeout(BOUND, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

async fn raw(
    dir: &Path,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Result<Bytes, CallError> {
    call_raw(
        &dir.join(SOCKET_FILE),
        method,
        path,
        body.map(|b| b.as_bytes().to_vec()),
        Duration::from_secs(5),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_service_serves_its_first_table_and_switches_are_confirmed_after_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let plane = start(dir.path()).await;
    let (blue, green) = (backend("blue").await, backend("green").await);

    let addr = plane
        .bind(
            "web",
            "127.0.0.1:0".parse().unwrap(),
            &RouteTable::single("blue", vec![blue]),
        )
        .await
        .unwrap();
    // The table was installed before the listener accepted: the very first request is served.
    assert_eq!(get(addr).await.unwrap(), (200, "revision=blue".into()));
    let state = plane.service("web").unwrap();
    assert_eq!(state.local_addr(), addr);
    assert_eq!(state.serving(), vec!["blue".to_string()]);

    let id = plane
        .install("web", &RouteTable::single("green", vec![green]))
        .unwrap();
    // Until the data plane reports the new table live, both count as served.
    let serving = plane.service("web").unwrap().serving();
    assert!(serving.contains(&"green".to_string()), "{serving:?}");
    tokio::time::timeout(BOUND, plane.drained("web", id))
        .await
        .expect("drained");
    eventually("green alone served", async || {
        plane.service("web").unwrap().serving() == vec!["green".to_string()]
    })
    .await;
    assert_eq!(get(addr).await.unwrap(), (200, "revision=green".into()));
    assert!(plane.service("web").unwrap().generation() >= 2);
    let counters = plane.revision_counters("web", "green").await.unwrap();
    assert!(counters.total() >= 1);
    assert!(plane.install("nope", &RouteTable::default()).is_none());

    plane.shutdown().await;
    assert!(!dir.path().join(SOCKET_FILE).exists());
    assert!(
        get(addr).await.is_err(),
        "the listener outlived the shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_says_its_version_and_refuses_bad_requests_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let plane = start(dir.path()).await;
    let hello: Hello = serde_json::from_slice(
        &raw(dir.path(), Method::GET, "/v1/hello", None)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(hello.protocol, PROTOCOL);
    assert_eq!(hello.pid, std::process::id());

    let two_matchers = r#"{"addr":"127.0.0.1:0","table_id":{"session":1,"seq":1},
        "table":{"backends":{},"weights":[],"mirror":null,"response_timeout_ms":null,
        "header_routes":[{"header":"x-a","exact":"1","prefix":"1","revision":"r"}]}}"#;
    match raw(
        dir.path(),
        Method::PUT,
        "/v1/services/web",
        Some(two_matchers),
    )
    .await
    {
        Err(CallError::Status { status, message }) => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(message.contains("x-a"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // A port someone else holds: the bind error names the Service and says what to do.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let error = plane
        .bind("busy", taken.local_addr().unwrap(), &RouteTable::default())
        .await
        .expect_err("port in use");
    assert!(matches!(error, DataPlaneError::Bind(_)), "{error}");
    assert!(error.to_string().contains("busy"), "{error}");

    // A second data plane on the same directory is refused while the first holds it.
    let second = cutover_local::dataplane::server::bind(dir.path(), RouterConfig::default());
    assert!(matches!(second, Err(DataPlaneError::AlreadyRunning(_))));
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_that_stopped_is_started_again_with_every_listener_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let plane = start(dir.path()).await;
    let blue = backend("blue").await;
    let addr = plane
        .bind(
            "web",
            "127.0.0.1:0".parse().unwrap(),
            &RouteTable::single("blue", vec![blue]),
        )
        .await
        .unwrap();
    let first: Hello = serde_json::from_slice(
        &raw(dir.path(), Method::GET, "/v1/hello", None)
            .await
            .unwrap(),
    )
    .unwrap();
    // Stopped behind the daemon's back (as if it had died): the daemon starts a new one.
    raw(dir.path(), Method::POST, "/v1/shutdown", None)
        .await
        .unwrap();
    eventually("a new data plane", async || {
        raw(dir.path(), Method::GET, "/v1/hello", None)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<Hello>(&b).ok())
            .is_some_and(|h| h.instance != first.instance)
    })
    .await;
    eventually("the Service back on its address", async || {
        get(addr)
            .await
            .is_ok_and(|a| a == (200, "revision=blue".into()))
    })
    .await;
    plane.shutdown().await;
}
