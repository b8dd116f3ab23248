//! The dashboard over HTTP against a backend in memory: the pages and what they must never
//! show, the guards of every request and every mutation, live updates, the root path, TLS and
//! the token file. The real backends are tested end to end in crates/cli/tests/dashboard_*.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover_dashboard::testing::{FakeBackend, SECRET, view};
use cutover_dashboard::{Dashboard, Options, TokenSource};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "test-token-0123456789abcdef";

struct Running {
    dashboard: Dashboard,
    backend: Arc<FakeBackend>,
    stop: CancellationToken,
    http: reqwest::Client,
}

impl Running {
    async fn start(backend: FakeBackend, change: impl FnOnce(&mut Options)) -> Self {
        let backend = Arc::new(backend);
        let mut options = Options {
            address: "127.0.0.1:0".parse().unwrap(),
            token: TokenSource::Fixed(TOKEN.into()),
            poll_interval: Duration::from_millis(50),
            ..Options::default()
        };
        change(&mut options);
        let stop = CancellationToken::new();
        let dashboard = cutover_dashboard::start(backend.clone(), options, stop.clone())
            .await
            .expect("dashboard starts");
        Self {
            dashboard,
            backend,
            stop,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.dashboard.url.trim_end_matches('/'), path)
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self.http.get(self.url(path)).send().await.expect("get");
        (r.status(), r.text().await.expect("body"))
    }

    async fn act(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let mut request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let r = request.send().await.expect("post");
        (r.status(), r.text().await.expect("body"))
    }

    fn operations(&self) -> usize {
        self.backend.operations.lock().unwrap().len()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

const BEARER: (&str, &str) = ("authorization", "Bearer test-token-0123456789abcdef");

#[tokio::test]
async fn the_list_filters_searches_sorts_and_never_shows_secrets() {
    let d = Running::start(
        FakeBackend::with((0..40).map(|i| view(i, 3)).collect()),
        |_| {},
    )
    .await;
    let (status, page) = d.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("40 rollouts"), "{page}");
    for column in [
        "Name",
        "Namespace",
        "Status",
        "Strategy",
        "Images",
        "Revision",
        "Ready",
        "Last switch",
        "Age",
    ] {
        assert!(page.contains(&format!(">{column}<")), "column {column}");
    }
    assert!(page.contains("<code>shop:v2</code> <span class=\"role preview\">preview</span>"));
    assert!(page.contains("0.412 s") && page.contains("3/3"));
    assert!(!page.contains(SECRET));

    let (_, filtered) = d.get("/?ns=team-3&phase=Paused").await;
    let rows = filtered.matches("<tr id=\"row-").count();
    assert!(rows > 0 && rows < 40, "{rows}");
    assert!(filtered.contains(&format!("{rows} of 40 rollouts match")));
    let (_, searched) = d.get("/?q=app-0017").await;
    assert_eq!(searched.matches("<tr id=\"row-").count(), 1);
    let (_, by_image) = d.get("/?q=SHOP:V1").await;
    assert_eq!(
        by_image.matches("<tr id=\"row-").count(),
        40,
        "search is case-insensitive"
    );

    let (_, desc) = d.get("/?sort=name&dir=desc").await;
    let first = desc.find("app-0039").unwrap();
    assert!(first < desc.find("app-0000").unwrap());
    assert!(desc.contains("aria-sort=\"descending\""));
    let (_, by_phase) = d.get("/?sort=phase").await;
    assert!(by_phase.find("Degraded").unwrap() < by_phase.find("✔</span> Healthy").unwrap());
}

#[tokio::test]
async fn a_rollout_page_shows_every_part_and_plots_measurements_against_conditions() {
    let d = Running::start(FakeBackend::with(vec![view(0, 10)]), |_| {}).await;
    let (status, page) = d.get("/rollouts/team-0/app-0000").await;
    assert_eq!(status, StatusCode::OK);
    for part in [
        "Summary",
        "Conditions",
        "Revisions",
        "Services",
        "Traffic rules",
        "Migration",
        "Analysis",
        "Events",
        "Actions",
    ] {
        assert!(page.contains(&format!(">{part}</h2>")), "section {part}");
    }
    for fact in [
        "RolloutPaused",
        "waiting for promotion",
        "app-0000-7b4c9d2f1-2",
        "only 6d9f7c8b5",
        "to 6d9f7c8b5 verified in 0.412 s",
        "Header <code>x-canary</code> equals <code>true</code> → preview",
        "Paused since",
        "<code>result[0] &gt;= 0.95</code>",
        "step 9",
    ] {
        assert!(page.contains(fact), "{fact} not on the page");
    }
    // The chart: one mark per measurement, shaped by phase; both thresholds drawn.
    assert_eq!(page.matches("<g class=\"mark ok\"").count(), 8);
    assert_eq!(page.matches("<g class=\"mark bad\"").count(), 2);
    assert!(
        page.contains("class=\"threshold success\"")
            && page.contains("class=\"threshold failure\"")
    );
    assert!(page.contains("role=\"img\""));
    // Neither the environment, the command line, nor a provider's resolved query.
    assert!(!page.contains(SECRET), "a secret reached the page");
    assert!(
        page.contains("Undo to revision")
            && page.contains("<option value=\"1\">1 — shop:v1</option>")
    );

    let (status, missing) = d.get("/rollouts/team-0/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(missing.contains("rollout team-0/nope: not found"));
}

#[tokio::test]
async fn values_from_the_backend_are_escaped() {
    let mut v = view(0, 1);
    v.events[0].message = "<script>alert('x')</script>".into();
    v.rollout.status.as_mut().unwrap().message = Some("<img src=x onerror=alert(1)>".into());
    let d = Running::start(FakeBackend::with(vec![v]), |_| {}).await;
    for path in ["/", "/rollouts/team-0/app-0000"] {
        let (_, page) = d.get(path).await;
        assert!(
            !page.contains("<script>alert") && !page.contains("<img src=x"),
            "{path}"
        );
        assert!(
            page.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn mutations_need_the_token_the_right_origin_and_a_writable_dashboard() {
    let d = Running::start(FakeBackend::with(vec![view(0, 1)]), |_| {}).await;
    let promote = r#"{"op":"promote"}"#;
    let path = "/rollouts/team-0/app-0000/actions";
    let (status, body) = d.act(path, promote, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("missing or wrong token"));
    let (status, _) = d
        .act(path, promote, &[("authorization", "Bearer wrong")])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = d
        .act(path, promote, &[BEARER, ("origin", "http://evil.example")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = d
        .act(path, promote, &[BEARER, ("host", "evil.example:3100")])
        .await;
    assert_eq!(
        status,
        StatusCode::MISDIRECTED_REQUEST,
        "a rebound name is refused"
    );
    assert_eq!(d.operations(), 0, "nothing was done");
    let (status, _) = d.get("/").await;
    assert_eq!(status, StatusCode::OK);

    let origin = d.dashboard.url.trim_end_matches('/').to_string();
    let (status, body) = d.act(path, promote, &[BEARER, ("origin", &origin)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("app-0000"), "{body}");
    assert_eq!(d.operations(), 1);
    // Promote made it Healthy: a second promote has nothing to act on, and says so.
    let (status, body) = d.act(path, promote, &[BEARER]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("nothing to promote"), "{body}");

    let (status, body) = d.act(path, "{\"op\":\"fly\"}", &[BEARER]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = d
        .act(
            path,
            r#"{"op":"setImage","container":"app","image":" "}"#,
            &[BEARER],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = d
        .act(path, r#"{"op":"undo","to_revision":1}"#, &[BEARER])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d.operations(), 2);

    let ro = Running::start(FakeBackend::with(vec![view(0, 1)]), |o| o.read_only = true).await;
    let (status, body) = ro.act(path, promote, &[BEARER]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("--read-only"));
    assert_eq!(ro.operations(), 0);
    let (_, page) = ro.get("/rollouts/team-0/app-0000").await;
    assert!(
        !page.contains("data-op=\"promote\""),
        "no action buttons in read-only mode"
    );
}

/// Reads a live stream until `done` holds for the text received so far.
async fn read_stream_until(
    response: &mut reqwest::Response,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&text) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, response.chunk()).await {
            Ok(Ok(Some(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            other => panic!("stream ended or timed out ({other:?}) after:\n{text}"),
        }
    }
    text
}

#[tokio::test]
async fn live_streams_send_what_changed_and_say_when_the_backend_is_down() {
    let d = Running::start(
        FakeBackend::with((0..3).map(|i| view(i, 2)).collect()),
        |_| {},
    )
    .await;
    let mut detail = d
        .http
        .get(d.url("/live/rollouts/team-0/app-0000"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        detail.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let first = read_stream_until(&mut detail, |t| t.contains("inner events")).await;
    assert!(
        first.contains("retry: 1000") && first.contains("inner summary"),
        "{first}"
    );
    let mut list = d.http.get(d.url("/live?sort=name")).send().await.unwrap();
    read_stream_until(&mut list, |t| t.contains("inner rows")).await;
    assert_eq!(d.dashboard.watchers(), 2);

    d.backend.update("app-0000", |v| {
        v.rollout.status.as_mut().unwrap().phase = Some(cutover_core::api::RolloutPhase::Healthy);
    });
    let changed = read_stream_until(&mut detail, |t| t.contains("Healthy")).await;
    assert!(changed.contains("inner summary"), "{changed}");
    assert!(
        !changed.contains("inner events"),
        "unchanged regions are not sent again: {changed}"
    );
    let row = read_stream_until(&mut list, |t| t.contains("outer row-team-0--app-0000")).await;
    assert!(
        !row.contains("inner rows"),
        "one row changed, not the order: {row}"
    );

    *d.backend.down.lock().unwrap() = Some("cannot reach the cutover daemon".into());
    read_stream_until(&mut detail, |t| {
        t.contains("cannot reach the cutover daemon")
    })
    .await;
    read_stream_until(&mut list, |t| t.contains("cannot reach the cutover daemon")).await;
    let (status, page) = d.get("/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(page.contains("cannot reach the cutover daemon"));
    *d.backend.down.lock().unwrap() = None;
    read_stream_until(&mut detail, |t| t.contains("data: inner problem\ndata: \n")).await;

    drop(detail);
    drop(list);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.dashboard.watchers() > 0 {
        assert!(Instant::now() < deadline, "pollers stop when pages leave");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The live address a page names (its `data-live`).
fn live_address(page: &str) -> String {
    let start = page.find("data-live=\"").expect("data-live") + 11;
    let end = start + page[start..].find('"').expect("end of data-live");
    page[start..end].replace("&amp;", "&")
}

#[tokio::test]
async fn a_page_live_stream_starts_from_what_the_page_shows() {
    let d = Running::start(FakeBackend::with(vec![view(0, 2)]), |_| {}).await;
    let (_, page) = d.get("/rollouts/team-0/app-0000").await;
    let live = live_address(&page);
    assert!(live.contains("?v="), "{live}");
    // A list page opened while another watches the list is drawn from the same answer.
    let mut watching = d.http.get(d.url("/live")).send().await.unwrap();
    read_stream_until(&mut watching, |t| t.contains("inner rows")).await;
    let (_, list) = d.get("/").await;
    assert!(live_address(&list).contains("/live?v="), "{list}");
    let mut stream = d
        .http
        .get(format!("http://{}{live}", d.dashboard.address))
        .send()
        .await
        .unwrap();
    // The first event is the (empty) problem banner: the page's own regions are not sent
    // again, the page shows them already.
    let first = read_stream_until(&mut stream, |t| t.contains("inner problem")).await;
    assert!(!first.contains("inner summary"), "{first}");
    d.backend.update("app-0000", |v| {
        v.rollout.status.as_mut().unwrap().phase = Some(cutover_core::api::RolloutPhase::Healthy);
    });
    let text = read_stream_until(&mut stream, |t| t.contains("Healthy")).await;
    assert!(text.contains("inner summary"), "{text}");
    for unchanged in ["inner events", "inner tree", "inner analysis"] {
        assert!(!text.contains(unchanged), "{unchanged} sent again: {text}");
    }
}

#[tokio::test]
async fn pages_opened_at_once_share_one_read_of_the_backend() {
    let backend = FakeBackend::with(vec![view(0, 1), view(1, 1)]);
    // No second read while the pages are drawn.
    let d = Running::start(backend, |o| o.poll_interval = Duration::from_secs(600)).await;
    let d = Arc::new(d);
    // The backend is slow: every page asks while the first read is under way.
    let slow = d.backend.hold.write().await;
    let pages: Vec<_> = (0..8)
        .map(|_| {
            let d = d.clone();
            tokio::spawn(async move { d.get("/").await })
        })
        .collect();
    while d.dashboard.watchers() < 8 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(slow);
    let mut versions = Vec::new();
    for page in pages {
        let (status, page) = page.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("app-0001"), "{page}");
        versions.push(live_address(&page));
    }
    assert_eq!(d.backend.reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    versions.dedup();
    assert_eq!(
        versions.len(),
        1,
        "all drawn from the same answer: {versions:?}"
    );
}

#[tokio::test]
async fn a_root_path_prefixes_every_page_and_link() {
    let d = Running::start(FakeBackend::with(vec![view(0, 1)]), |o| {
        o.root_path = "/cutover/".into()
    })
    .await;
    assert!(d.dashboard.url.ends_with("/cutover/"));
    let (status, page) = d.get("").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("href=\"/cutover/rollouts/team-0/app-0000\""));
    assert!(page.contains("/cutover/assets/app.js"));
    let (status, js) = d.get("/assets/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(js.contains("EventSource"));
    let outside = format!("http://{}/", d.dashboard.address);
    assert_eq!(
        d.http.get(outside).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn every_answer_forbids_foreign_scripts_and_framing() {
    let d = Running::start(FakeBackend::with(vec![view(0, 1)]), |_| {}).await;
    let r = d.http.get(d.url("/")).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(r.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn network_addresses_need_tls_and_tls_serves() {
    let backend = Arc::new(FakeBackend::with(vec![view(0, 1)]));
    let refused = cutover_dashboard::start(
        backend.clone(),
        Options {
            address: "0.0.0.0:0".parse().unwrap(),
            ..Options::default()
        },
        CancellationToken::new(),
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        refused.contains("--tls-cert") && refused.contains("--insecure-bind"),
        "{refused}"
    );

    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let stop = CancellationToken::new();
    let d = cutover_dashboard::start(
        backend,
        Options {
            address: "127.0.0.1:0".parse().unwrap(),
            tls: Some(cutover_dashboard::TlsFiles {
                cert: dir.path().join("cert.pem"),
                key: dir.path().join("key.pem"),
            }),
            ..Options::default()
        },
        stop.clone(),
    )
    .await
    .expect("TLS dashboard");
    assert!(d.url.starts_with("https://"));
    let answer = https_get(d.address, cert.cert.der().clone()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("app-0000"));
    stop.cancel();
}

/// GET / over TLS trusting `ca`, with tokio-rustls (no HTTPS client in the tests otherwise).
async fn https_get(
    address: std::net::SocketAddr,
    ca: rustls_pki_types::CertificateDer<'static>,
) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn the_token_file_is_created_private_and_refused_when_others_can_read_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let token = TokenSource::File(file.clone()).load().expect("created");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(token.value.len(), 64);
    assert_eq!(
        TokenSource::File(file.clone()).load().unwrap().value,
        token.value,
        "read back"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = TokenSource::File(file.clone())
        .load()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("chmod 600"), "{e}");
}
