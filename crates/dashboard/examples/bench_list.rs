//! The dashboard with 1,000 rollouts: server time to draw the list, and memory with 50 live
//! clients. Run with `cargo run --release -p cutover-dashboard --example bench_list`.
//!
//! The dashboard runs in a child process (this program with `serve`), with the allocator the
//! `cutover` binary uses, over a backend in memory holding 1,000 realistic views (two
//! revisions of three pods, both Services, a run of 10 measurements, 10 events). One rollout
//! changes every 100 ms, so the live clients receive updates all along. Figures go to
//! docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover_dashboard::testing::{FakeBackend, render_list, view};
use cutover_dashboard::{Options, TokenSource};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const ROLLOUTS: usize = 1000;
const CLIENTS: usize = 50;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if args.get(1).map(String::as_str) == Some("serve") {
        runtime.block_on(serve());
    } else {
        render();
        runtime.block_on(clients());
    }
}

fn views() -> Vec<cutover_local::api::RolloutView> {
    (0..ROLLOUTS).map(|i| view(i, 10)).collect()
}

/// In process: the list page drawn from the views, as the server does for every GET.
fn render() {
    let views = views();
    let query = cutover_dashboard::pages::list::ListQuery::default();
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..300 {
        let t = Instant::now();
        size = render_list(&views, &query).len();
        times.push(t.elapsed());
    }
    let sorted = cutover_dashboard::pages::list::ListQuery {
        sort: "phase".into(),
        q: "team-3".into(),
        ..Default::default()
    };
    let mut filtered = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        render_list(&views, &sorted);
        filtered.push(t.elapsed());
    }
    println!(
        "list of {ROLLOUTS} rollouts, drawn in process ({} KiB of HTML):",
        size / 1024
    );
    report("  all rows, by name", &mut times);
    report("  filtered and sorted by status", &mut filtered);
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
}

/// The child: a dashboard over 1,000 rollouts, one of which changes every 100 ms.
async fn serve() {
    let backend = Arc::new(FakeBackend::with(views()));
    let options = Options {
        address: "127.0.0.1:0".parse().unwrap(),
        token: TokenSource::Fixed("bench-token-0123456789".into()),
        ..Options::default()
    };
    let dashboard = cutover_dashboard::start(backend.clone(), options, CancellationToken::new())
        .await
        .unwrap();
    println!("{}", dashboard.url);
    let mut i = 0usize;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let name = format!("app-{:04}", i % ROLLOUTS);
        backend.update(&name, |v| {
            if let Some(s) = v.rollout.status.as_mut() {
                s.ready_replicas = (s.ready_replicas + 1) % 4;
            }
        });
        i += 7;
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn clients() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    let http = reqwest::Client::new();
    let idle = rss_kib(pid, "VmRSS");

    // Over HTTP: the whole GET of the list (backend read, drawing, sending).
    let mut times = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let body = http.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert!(body.len() > 100_000);
        times.push(t.elapsed());
    }
    println!("GET / with {ROLLOUTS} rollouts over loopback:");
    report("  whole request", &mut times);
    let after_gets = rss_kib(pid, "VmRSS");

    // 50 live pages as browsers open them (the page, then its live stream): 40 on the list
    // (half sorted by status), 10 on a rollout's page.
    let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let path = match c {
            c if c < 20 => String::new(),
            c if c < 40 => "?sort=phase".to_string(),
            c => format!("rollouts/team-{}/app-{:04}", c % 7, c),
        };
        let (http, url, received) = (http.clone(), url.clone(), received.clone());
        tasks.push(tokio::spawn(async move {
            let page = http
                .get(format!("{url}{path}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let start = page.find("data-live=\"").unwrap() + 11;
            let live = page[start..start + page[start..].find('"').unwrap()].replace("&amp;", "&");
            let origin = url.trim_end_matches('/');
            let mut r = http.get(format!("{origin}{live}")).send().await.unwrap();
            while let Ok(Some(chunk)) = r.chunk().await {
                received.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    let mut peak = 0;
    let mut last = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = rss_kib(pid, "VmRSS");
        peak = peak.max(last);
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "dashboard process RSS: {:.1} MiB idle with {ROLLOUTS} rollouts, {:.1} MiB after 100 GETs, \
         peak {:.1} MiB with {CLIENTS} live clients over 15 s (their pages opened at once), \
         {:.1} MiB at the end (high-water mark {:.1} MiB); {:.1} MiB of updates streamed",
        mib(idle),
        mib(after_gets),
        mib(peak),
        mib(last),
        mib(rss_kib(pid, "VmHWM")),
        received.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1048576.0
    );
    for t in tasks {
        t.abort();
    }
    let _ = child.kill();
    let _ = child.wait();
}
