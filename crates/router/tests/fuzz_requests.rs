//! Property test of the router's request handling (issue 12's harness): whatever bytes a client
//! sends — request-shaped text with hostile methods, targets, header names and values,
//! conflicting lengths, chunked framing, an HTTP/2 preface, or plain noise — the router answers
//! with a well-formed HTTP/1.x response or closes the connection, never panics, and keeps
//! serving the next ordinary request. Header routes and mirroring are on, so their matching
//! code sees every input too.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use cutover_router::{
    HeaderMatch, HeaderRoute, MirrorRule, RouteTable, Router, RouterConfig, ServiceHandle,
};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Panics anywhere in the process, the router's tasks included (a panicking connection task
/// would otherwise only close its socket).
static PANICS: AtomicUsize = AtomicUsize::new(0);

const BOUND: Duration = Duration::from_secs(10);

struct Fixture {
    rt: tokio::runtime::Runtime,
    _router: Router,
    service: ServiceHandle,
    _backends: Vec<Backend>,
}

fn fixture() -> Fixture {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (router, service, backends) = rt.block_on(async {
        let blue = Backend::start("blue").await;
        let green = Backend::start("green").await;
        let (router, service) = router_with(RouterConfig {
            header_read_timeout: Duration::from_millis(500),
            ..RouterConfig::default()
        })
        .await;
        let mut t: RouteTable = table(&[("blue", &[&blue]), ("green", &[&green])], "blue");
        t.header_routes = vec![
            HeaderRoute {
                header: "x-canary".into(),
                matcher: HeaderMatch::Exact("true".into()),
                revision: "green".into(),
            },
            HeaderRoute {
                header: "x-user".into(),
                matcher: HeaderMatch::Regex(regex::Regex::new("^(beta|qa)-.*$").unwrap()),
                revision: "green".into(),
            },
        ];
        t.mirror = Some(MirrorRule {
            revision: "green".into(),
            percent: 100.0,
        });
        service.install(t);
        (router, service, vec![blue, green])
    });
    Fixture {
        rt,
        _router: router,
        service,
        _backends: backends,
    }
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Za-z0-9-]{1,12}",
        "[ -~]{0,40}",
        any::<String>().prop_map(|s| s.chars().take(64).collect()),
        (0usize..9000).prop_map(|n| "a".repeat(n)),
    ]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("CONNECT".to_string()),
        Just("PRI".to_string()),
        token(),
    ]
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_string()),
        Just("*".to_string()),
        Just("http://evil.example/x".to_string()),
        Just("//../../etc/passwd".to_string()),
        "/[ -~]{0,60}",
        token(),
    ]
}

fn header() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        Just("x-canary".to_string()),
        Just("x-user".to_string()),
        Just("content-length".to_string()),
        Just("transfer-encoding".to_string()),
        Just("host".to_string()),
        Just("connection".to_string()),
        Just("upgrade".to_string()),
        Just("expect".to_string()),
        token(),
    ];
    let value = prop_oneof![
        Just("true".to_string()),
        Just("beta-1".to_string()),
        Just("chunked".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("100-continue".to_string()),
        Just("h2c".to_string()),
        token(),
    ];
    (name, value)
}

/// A request-shaped text (often valid enough to reach routing), or raw bytes.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let shaped = (
        method(),
        target(),
        prop_oneof![
            Just("HTTP/1.1"),
            Just("HTTP/1.0"),
            Just("HTTP/2.0"),
            Just("HTTP/9"),
            Just("")
        ],
        proptest::collection::vec(header(), 0..8),
        proptest::collection::vec(any::<u8>(), 0..256),
        prop_oneof![Just("\r\n"), Just("\n"), Just("\r")],
    )
        .prop_map(|(method, target, version, headers, body, eol)| {
            let mut text = format!("{method} {target} {version}{eol}");
            for (name, value) in headers {
                text.push_str(&format!("{name}: {value}{eol}"));
            }
            text.push_str(eol);
            let mut bytes = text.into_bytes();
            bytes.extend(body);
            bytes
        });
    prop_oneof![
        4 => shaped,
        1 => proptest::collection::vec(any::<u8>(), 0..2048),
        1 => Just(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00".to_vec()),
    ]
}

/// Sends `bytes`, closes the sending half, and reads what comes back until the router closes.
async fn exchange(service: &ServiceHandle, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(service.local_addr()).await.unwrap();
    // The router may close first (it answered 400 to the first bytes): that is fine.
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut seen = Vec::new();
    let _ = within(BOUND, "the router to answer or close", async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) if seen.len() < 1 << 20 => seen.extend_from_slice(&buf[..n]),
                Ok(_) => return,
            }
        }
    })
    .await;
    seen
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_get_an_answer_or_a_close_and_the_router_keeps_serving(bytes in request()) {
        static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
        let f = FIXTURE.get_or_init(fixture);
        let answer = f.rt.block_on(exchange(&f.service, &bytes));
        // HTTP/2 with prior knowledge is served as such (h2c); everything else is HTTP/1.
        let h2 = bytes.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        prop_assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.") || h2,
            "not an HTTP/1 answer: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
        let next = f.rt.block_on(async { get(&client(), &f.service, "/", &[]).await });
        prop_assert_eq!(next.status, 200);
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a panic in the router");
    }
}
