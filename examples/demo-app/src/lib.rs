//! cutover's demo app: a tiny HTTP/1.1 + h2c service that reports its version and colour, with
//! knobs (failure rate, latency, slow start, crash, slow requests) that exercise cutover's
//! readiness gating, analysis, restart and drain behaviour.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

#[derive(Debug)]
struct Config {
    port: u16,
    version: String,
    color: String,
    unhealthy: bool,
    ready_after: Duration,
    fail_rate: f64,
    latency: Duration,
}

struct State {
    config: Config,
    started: Instant,
    requests: AtomicU64,
}

/// Flag value first, then the environment variable.
fn setting(args: &[String], flag: &str, env: &str) -> Option<String> {
    let from_flag = args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(flag)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::to_owned)
        }
    });
    from_flag.or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
}

fn parse<T: std::str::FromStr>(value: Option<String>, what: &str, default: T) -> Result<T, String> {
    match value {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("invalid {what}: {v:?}")),
    }
}

fn config_from(args: &[String]) -> Result<Config, String> {
    let port = parse(setting(args, "--port", "PORT"), "port", 8080u16)?;
    // The image tag is the version identity cutover hands every container.
    let version = setting(args, "--version", "DEMO_VERSION")
        .or_else(|| {
            std::env::var("CUTOVER_IMAGE")
                .ok()
                .and_then(|image| image.rsplit_once(':').map(|(_, tag)| tag.to_owned()))
                .filter(|tag| !tag.is_empty() && !tag.contains('/'))
        })
        .unwrap_or_else(|| "dev".to_owned());
    let color = setting(args, "--color", "DEMO_COLOR").unwrap_or_else(|| {
        match version.as_str() {
            "v1" => "blue",
            "v2" => "green",
            "v3" => "red",
            _ => "yellow",
        }
        .to_owned()
    });
    let unhealthy = args.iter().any(|a| a == "--unhealthy")
        || std::env::var("DEMO_UNHEALTHY").is_ok_and(|v| v == "1" || v == "true");
    let ready_after = parse(
        setting(args, "--ready-after", "DEMO_READY_AFTER"),
        "ready-after",
        0.0f64,
    )?;
    let fail_rate = parse(
        setting(args, "--fail-rate", "DEMO_FAIL_RATE"),
        "fail-rate",
        0.0f64,
    )?;
    let latency = parse(
        setting(args, "--latency-ms", "DEMO_LATENCY_MS"),
        "latency-ms",
        0u64,
    )?;
    // `--fail-rate-for v3=0.5,v4=1`: a failure share that applies to some versions only, so one
    // manifest can describe a faulty release.
    let fail_rate = match setting(args, "--fail-rate-for", "DEMO_FAIL_RATE_FOR") {
        Some(list) => list
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .find(|(v, _)| v.trim() == version)
            .map(|(_, rate)| {
                rate.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("invalid fail-rate-for rate: {rate:?}"))
            })
            .transpose()?
            .unwrap_or(fail_rate),
        None => fail_rate,
    };
    if !(0.0..=1.0).contains(&fail_rate) {
        return Err(format!(
            "fail-rate must be between 0 and 1, got {fail_rate}"
        ));
    }
    Ok(Config {
        port,
        version,
        color,
        unhealthy,
        ready_after: Duration::try_from_secs_f64(ready_after)
            .map_err(|e| format!("invalid ready-after: {e}"))?,
        fail_rate,
        latency: Duration::from_millis(latency),
    })
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let config = &state.config;
    let response = match req.uri().path() {
        "/health" | "/healthz" | "/ready" => {
            if config.unhealthy || state.started.elapsed() < config.ready_after {
                text(StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
            } else {
                text(StatusCode::OK, "ok")
            }
        }
        "/slow" => {
            let ms = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ms=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, format!("slept {ms} ms"))
        }
        "/crash" => {
            println!("crash requested");
            std::process::exit(1);
        }
        "/" => {
            tokio::time::sleep(config.latency).await;
            // Deterministic failure share: request n fails when floor(n * rate) steps up, so
            // exactly `rate` of every run of requests fails, with no random source needed.
            let n = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
            let fails =
                (n as f64 * config.fail_rate).floor() > ((n - 1) as f64 * config.fail_rate).floor();
            let body = format!(
                "{{\"version\":\"{}\",\"color\":\"{}\"}}",
                config.version, config.color
            );
            let mut response = if fails {
                text(StatusCode::INTERNAL_SERVER_ERROR, "injected failure")
            } else {
                text(StatusCode::OK, body)
            };
            let headers = response.headers_mut();
            if let Ok(v) = config.version.parse() {
                headers.insert("x-version", v);
            }
            if let Ok(v) = config.color.parse() {
                headers.insert("x-color", v);
            }
            if !fails {
                headers.insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
            }
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(response)
}

/// Runs the demo app with `args` (without the program name) until SIGTERM or SIGINT. Exit code
/// 2 for bad flags, 1 when it cannot serve. The `cutover` binary runs it as `cutover demo-app`,
/// so the demo needs nothing but cutover itself.
pub fn main_with(args: Vec<String>) -> std::process::ExitCode {
    let config = match config_from(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("cutover-demo-app: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cutover-demo-app: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cutover-demo-app: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(config: Config) -> std::io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], config.port));
    let listener = TcpListener::bind(addr).await?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    println!(
        "listening on {} version {}",
        listener.local_addr()?,
        config.version
    );
    let state = Arc::new(State {
        config,
        started: Instant::now(),
        requests: AtomicU64::new(0),
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    // A failed accept (e.g. too many open files) is transient; keep serving.
                    Err(e) => { eprintln!("accept: {e}"); continue; }
                };
                let state = state.clone();
                let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        eprintln!("connection: {e}");
                    }
                });
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    // Stop accepting (the listener closes here), then let in-flight requests finish.
    drop(listener);
    println!("draining {} connection(s)", graceful.count());
    graceful.shutdown().await;
    println!("stopped");
    Ok(())
}
