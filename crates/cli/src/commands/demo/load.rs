//! The demo's load generator: clients sending GET / to a Service without pause, counting
//! answers per version and every failure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What the clients saw.
#[derive(Default)]
pub struct Tally {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub by_version: Mutex<BTreeMap<String, u64>>,
    pub failures: Mutex<Vec<String>>,
}

/// A running load generator.
pub struct Load {
    pub tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` clients against `addr`.
    pub fn start(addr: SocketAddr, clients: usize) -> Self {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let tasks = (0..clients)
            .map(|_| {
                let (tally, stop, http) = (tally.clone(), stop.clone(), http.clone());
                tokio::spawn(async move {
                    let url = format!("http://{addr}/");
                    while !stop.load(Ordering::Relaxed) {
                        tally.sent.fetch_add(1, Ordering::Relaxed);
                        match http.get(&url).send().await {
                            Ok(r) if r.status().is_success() => {
                                let version = r
                                    .headers()
                                    .get("x-version")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("?")
                                    .to_string();
                                // Read the body: a response cut short is a failure too.
                                match r.bytes().await {
                                    Ok(_) => {
                                        let mut map = tally
                                            .by_version
                                            .lock()
                                            .unwrap_or_else(|p| p.into_inner());
                                        *map.entry(version).or_default() += 1;
                                    }
                                    Err(e) => fail(&tally, format!("body: {e}")),
                                }
                            }
                            Ok(r) => fail(&tally, format!("status {}", r.status())),
                            Err(e) => fail(&tally, format!("{e}")),
                        }
                    }
                })
            })
            .collect();
        Self { tally, stop, tasks }
    }

    /// Stops the clients and waits for their last requests.
    pub async fn stop(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.tally
    }
}

fn fail(tally: &Tally, why: String) {
    tally.failed.fetch_add(1, Ordering::Relaxed);
    let mut list = tally.failures.lock().unwrap_or_else(|p| p.into_inner());
    if list.len() < 20 {
        list.push(why);
    }
}

/// Sends `n` requests to `addr` and counts answers per version and failures (a smoke test of
/// the preview).
pub async fn probe(
    addr: SocketAddr,
    n: usize,
    header: Option<(&str, &str)>,
) -> (BTreeMap<String, u64>, u64) {
    let http = reqwest::Client::new();
    let mut versions = BTreeMap::new();
    let mut failed = 0;
    for _ in 0..n {
        let mut request = http.get(format!("http://{addr}/"));
        if let Some((k, v)) = header {
            request = request.header(k, v);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => {
                let v = r
                    .headers()
                    .get("x-version")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?")
                    .to_string();
                *versions.entry(v).or_default() += 1;
            }
            _ => failed += 1,
        }
    }
    (versions, failed)
}
