//! Standalone pieces for `scripts/bench-router` (not a test): a trivial HTTP/1.1 backend, a
//! router with one Service in front of given backends, and a client that holds idle
//! keep-alive connections open.
//!
//! ```text
//! bench_server backend [--port P] [--threads N]
//! bench_server router --backend HOST:PORT [--port P] [--threads N]
//!     [--scenario plain|mirror|headers|switch] [--second HOST:PORT]
//! bench_server idle --target HOST:PORT --connections N
//! ```
//! Scenarios: `plain` routes everything to one revision; `mirror` also copies 100 % of requests
//! to a second revision (`--second`); `headers` puts 10 header routes (none matching) before
//! the default route; `switch` moves all traffic between the two revisions every 500 ms, the
//! way a promotion and a rollback install their tables.
//! `backend` and `router` print `listening ADDR` once bound, then serve until killed; `idle`
//! prints `idle N` once N connections have each had one answer, then holds them until killed.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use cutover_router::{HeaderMatch, HeaderRoute, MirrorRule, RouteTable, Router, RouterConfig};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The same allocator as the `cutover` binary, so the router measured is the shipped one.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Args {
    mode: String,
    port: u16,
    threads: usize,
    backend: Option<SocketAddr>,
    second: Option<SocketAddr>,
    scenario: String,
    target: Option<SocketAddr>,
    connections: usize,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mode = args
        .next()
        .ok_or("usage: bench_server backend|router|idle [--port P] [--threads N] [--backend ADDR] [--second ADDR] [--scenario S] [--target ADDR] [--connections N]")?;
    let mut parsed = Args {
        mode,
        port: 0,
        threads: 1,
        backend: None,
        second: None,
        scenario: "plain".into(),
        target: None,
        connections: 0,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => parsed.port = value.parse().map_err(|e| format!("--port: {e}"))?,
            "--threads" => parsed.threads = value.parse().map_err(|e| format!("--threads: {e}"))?,
            "--backend" => {
                parsed.backend = Some(value.parse().map_err(|e| format!("--backend: {e}"))?)
            }
            "--second" => {
                parsed.second = Some(value.parse().map_err(|e| format!("--second: {e}"))?)
            }
            "--target" => {
                parsed.target = Some(value.parse().map_err(|e| format!("--target: {e}"))?)
            }
            "--scenario" => parsed.scenario = value,
            "--connections" => {
                parsed.connections = value.parse().map_err(|e| format!("--connections: {e}"))?
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(parsed)
}

fn main() -> Result<(), String> {
    let args = parse()?;
    // One thread means a current-thread runtime: like one nginx worker, no cross-thread wakeups.
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
        match args.mode.as_str() {
            "backend" => backend(addr).await,
            "router" => {
                let backend = args.backend.ok_or("router needs --backend")?;
                router(addr, backend, args.second, &args.scenario).await
            }
            "idle" => {
                let target = args.target.ok_or("idle needs --target")?;
                idle(target, args.connections).await
            }
            other => Err(format!("unknown mode {other}")),
        }
    })
}

async fn backend(addr: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening {local}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|_req| async {
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok\n"))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn router(
    addr: SocketAddr,
    backend: SocketAddr,
    second: Option<SocketAddr>,
    scenario: &str,
) -> Result<(), String> {
    // Room for the idle-connection measurement's 10,000 beside wrk's (the default limit is
    // 10,000 client connections).
    // Idle keep-alive connections stay open as long as nginx's default `keepalive_timeout`
    // (75 s) would keep them, so the idle measurement sees them settled, not closed.
    let router = Router::new(RouterConfig {
        max_connections: 20_000,
        header_read_timeout: Duration::from_secs(75),
        ..RouterConfig::default()
    });
    let service = router
        .bind("bench", addr)
        .await
        .map_err(|e| e.to_string())?;
    let blue = RouteTable::single("blue", vec![backend]);
    let second = || second.ok_or(format!("scenario {scenario} needs --second"));
    match scenario {
        "plain" => {
            service.install(blue);
        }
        "mirror" => {
            let mut table = blue;
            table.backends.insert("green".into(), vec![second()?]);
            table.mirror = Some(MirrorRule {
                revision: "green".into(),
                percent: 100.0,
            });
            service.install(table);
        }
        "headers" => {
            let mut table = blue;
            table.backends.insert("green".into(), vec![second()?]);
            // Ten rules of the three kinds, none matching wrk's requests: every request pays
            // for all ten before the default route.
            let tester = regex::Regex::new("tester-[0-9]+").map_err(|e| e.to_string())?;
            table.header_routes = (0..10)
                .map(|i| HeaderRoute {
                    header: format!("x-canary-{i}"),
                    matcher: match i % 3 {
                        0 => HeaderMatch::Exact("always".into()),
                        1 => HeaderMatch::Prefix("beta-".into()),
                        _ => HeaderMatch::Regex(tester.clone()),
                    },
                    revision: "green".into(),
                })
                .collect();
            service.install(table);
        }
        "switch" => {
            let both = BTreeMap::from([
                ("blue".to_string(), vec![backend]),
                ("green".to_string(), vec![second()?]),
            ]);
            let to = |revision: &str| {
                let mut table = RouteTable::single(revision, Vec::new());
                table.backends = both.clone();
                table
            };
            let (blue, green) = (to("blue"), to("green"));
            service.install(blue.clone());
            let service = service.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                for n in 0u64.. {
                    tick.tick().await;
                    service.install(if n % 2 == 0 {
                        green.clone()
                    } else {
                        blue.clone()
                    });
                }
            });
        }
        other => return Err(format!("unknown scenario {other}")),
    }
    println!("listening {}", service.local_addr());
    std::future::pending::<()>().await;
    Ok(())
}

/// Opens `count` keep-alive connections to `target`, sends one request on each and reads its
/// answer (so the router has served it), then holds them all open and idle. Stops opening at
/// the first 503 (the router's connection budget) and holds those it has.
async fn idle(target: SocketAddr, count: usize) -> Result<(), String> {
    let mut held = Vec::with_capacity(count);
    for n in 0..count {
        let mut stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("connection {n}: {e}"))?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n")
            .await
            .map_err(|e| format!("connection {n}: {e}"))?;
        let mut buf = [0u8; 512];
        let read = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("connection {n}: {e}"))?;
        if buf[..read].starts_with(b"HTTP/1.1 503") {
            // The router's open-files budget is full: it refuses rather than run out of
            // descriptors. Hold what was accepted and say where it stopped.
            println!(
                "idle {} (the router answered 503 to connection {n}: its open-files budget under `ulimit -n` {} is reached)",
                held.len(),
                cutover_router::current_soft_limit()
            );
            std::future::pending::<()>().await;
        }
        if !buf[..read].starts_with(b"HTTP/1.1 200") {
            return Err(format!(
                "connection {n}: {}",
                String::from_utf8_lossy(&buf[..read])
            ));
        }
        held.push(stream);
    }
    println!("idle {}", held.len());
    std::future::pending::<()>().await;
    Ok(())
}
