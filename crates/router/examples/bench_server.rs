//! Standalone pieces for `scripts/bench-router` (not a test): a trivial HTTP/1.1 backend, and a
//! router with one Service whose single revision points at a given backend.
//!
//! ```text
//! bench_server backend [--port P] [--threads N]
//! bench_server router --backend HOST:PORT [--port P] [--threads N]
//! ```
//! Each prints `listening ADDR` once bound, then serves until killed.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use cutover_router::{RouteTable, Router, RouterConfig};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

struct Args {
    mode: String,
    port: u16,
    threads: usize,
    backend: Option<SocketAddr>,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mode = args
        .next()
        .ok_or("usage: bench_server backend|router [--port P] [--threads N] [--backend ADDR]")?;
    let mut parsed = Args {
        mode,
        port: 0,
        threads: 1,
        backend: None,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => parsed.port = value.parse().map_err(|e| format!("--port: {e}"))?,
            "--threads" => parsed.threads = value.parse().map_err(|e| format!("--threads: {e}"))?,
            "--backend" => {
                parsed.backend = Some(value.parse().map_err(|e| format!("--backend: {e}"))?)
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
            "router" => router(addr, args.backend.ok_or("router needs --backend")?).await,
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

async fn router(addr: SocketAddr, backend: SocketAddr) -> Result<(), String> {
    let router = Router::new(RouterConfig::default());
    let service = router
        .bind("bench", addr)
        .await
        .map_err(|e| e.to_string())?;
    service.install(RouteTable::single("bench", vec![backend]));
    println!("listening {}", service.local_addr());
    std::future::pending::<()>().await;
    Ok(())
}
