//! Controller benchmark: RSS and reconcile latency with many Rollouts against a real
//! kube-apiserver (scripts/kube-test-env), not a test.
//!
//!   cargo run --release -p cutover-kube --example bench_controller -- [ROLLOUTS] [NAMESPACES]
//!
//! It starts etcd + kube-apiserver + kube-controller-manager, applies the CRDs, runs the
//! controller in a child process (this binary again, entering `cutover_kube::cli::run`, the
//! same entry point as `cutover controller`), creates ROLLOUTS Rollouts (default 1000) with an
//! active and a preview Service each, tends their pods with a watch-driven kubelet stand-in,
//! and measures two phases: every Rollout becoming Healthy, then a new image on every Rollout
//! promoted automatically and the old revision scaled down. It prints the controller's RSS and
//! the reconcile latency quantiles from its /metrics: with API calls, and its own work alone
//! (observation from the watch caches and planning); and the wave's switch latencies as the
//! controller verified them (selector patched → EndpointSlices hold only the new revision).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cutover_core::api::{Rollout, RolloutPhase};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const NODE: &str = "bench-node";

/// The same allocator as the `cutover` binary, so the RSS is the shipped controller's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("controller") {
        return controller_child(&args[2], &args[3]);
    }
    let rollouts: usize = args.get(1).map_or(Ok(1000), |a| a.parse())?;
    let namespaces: usize = args.get(2).map_or(Ok(10), |a| a.parse())?;
    tokio::runtime::Runtime::new()?.block_on(bench(rollouts, namespaces.max(1)))
}

/// The child: the controller and nothing else, so its RSS is the controller's.
fn controller_child(kubeconfig: &str, metrics_addr: &str) -> anyhow::Result<()> {
    let args = cutover_kube::cli::ControllerArgs {
        kubeconfig: Some(PathBuf::from(kubeconfig)),
        context: None,
        namespace: None,
        metrics_addr: metrics_addr.parse()?,
        leader_elect: false,
        lease_namespace: Some("default".into()),
        lease_name: "cutover-controller".into(),
        lease_duration_seconds: 15,
        identity: None,
        workers: 16,
        log_json: false,
        log_color: false,
        notifications_namespace: None,
    };
    // Live heap and the allocator's resident memory, for telling data from fragmentation.
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(Duration::from_secs(5));
            let _ = tikv_jemalloc_ctl::epoch::advance();
            let allocated = tikv_jemalloc_ctl::stats::allocated::read().unwrap_or(0);
            let resident = tikv_jemalloc_ctl::stats::resident::read().unwrap_or(0);
            eprintln!("heap allocated={allocated} resident={resident}");
        }
    });
    cutover_kube::cli::run(args)?;
    Ok(())
}

async fn bench(rollouts: usize, namespaces: usize) -> anyhow::Result<()> {
    println!("starting kube-apiserver (scripts/kube-test-env) …");
    let env = support::KubeEnv::start()
        .await
        .expect("the benchmark needs a kube-apiserver (unset CUTOVER_SKIP_KUBE)");
    env.install().await;
    let client = env.client.clone();
    for n in 0..namespaces {
        let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": ns_name(n) } }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
    }
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": NODE, "labels": { "kubernetes.io/hostname": NODE } },
    }))?;
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await?;
    let kubelet = tokio::spawn(tend_pods(client.clone()));
    // Progress is read from a watch: listing a thousand Rollouts every few seconds would load
    // the API server the controller is measured against.
    let (seen, writer) = reflector::store::<Rollout>();
    let watch = tokio::spawn(
        watcher(
            Api::<Rollout>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(writer)
        .for_each(|_| async {}),
    );

    let metrics_addr = free_addr()?;
    let log = env.dir().join("controller.log");
    let mut controller = spawn_controller(&env.dir().join("kubeconfig"), metrics_addr, &log)?;
    let pid = controller.id();
    println!("controller pid {pid}, metrics on {metrics_addr}");

    let started = Instant::now();
    futures::stream::iter(0..rollouts)
        .map(|i| create_app(client.clone(), ns_name(i % namespaces), i))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    println!(
        "created {rollouts} Rollouts and {} Services in {:.1} s",
        rollouts * 2,
        started.elapsed().as_secs_f64()
    );
    wait_all(&seen, rollouts, "v1").await;
    println!(
        "phase 1: all {rollouts} Healthy {:.1} s after the first create",
        started.elapsed().as_secs_f64()
    );
    let after_create = sample(pid, metrics_addr, &log).await?;
    after_create.print("after phase 1");

    let started = Instant::now();
    futures::stream::iter(0..rollouts)
        .map(|i| set_image(client.clone(), ns_name(i % namespaces), i, "v2"))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    wait_all(&seen, rollouts, "v2").await;
    println!(
        "phase 2: all {rollouts} updated, promoted and Healthy on v2 in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    print_switch_latency(&seen);
    // Let the old revisions' scale-down deadlines pass and the controller settle.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after_update = sample(pid, metrics_addr, &log).await?;
    after_update.print("after phase 2");

    let _ = controller.kill();
    let _ = controller.wait();
    kubelet.abort();
    watch.abort();
    Ok(())
}

fn ns_name(n: usize) -> String {
    format!("bench-{n}")
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn spawn_controller(
    kubeconfig: &std::path::Path,
    addr: SocketAddr,
    log: &std::path::Path,
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log)?;
    Ok(Command::new(std::env::current_exe()?)
        .args([
            "controller",
            &kubeconfig.to_string_lossy(),
            &addr.to_string(),
        ])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("info".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

async fn create_app(client: Client, ns: String, i: usize) -> anyhow::Result<()> {
    let app = format!("app-{i}");
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    for role in ["active", "preview"] {
        let svc: Service = serde_json::from_value(json!({
            "metadata": { "name": format!("{app}-{role}"), "namespace": ns },
            "spec": { "selector": { "app": app },
                      "ports": [{ "port": 80, "targetPort": 8080, "protocol": "TCP" }] },
        }))?;
        services.create(&PostParams::default(), &svc).await?;
    }
    let rollout: Rollout = serde_json::from_value(json!({
        "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": app, "namespace": ns },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": app } },
            "template": template(&app, "v1"),
            "strategy": { "blueGreen": {
                "activeService": format!("{app}-active"),
                "previewService": format!("{app}-preview"),
                "scaleDownDelaySeconds": 5,
            }},
        },
    }))?;
    Api::<Rollout>::namespaced(client, &ns)
        .create(&PostParams::default(), &rollout)
        .await?;
    Ok(())
}

fn template(app: &str, version: &str) -> Value {
    json!({
        "metadata": { "labels": { "app": app } },
        "spec": { "containers": [{ "name": "app", "image": format!("registry.example/app:{version}") }] },
    })
}

async fn set_image(client: Client, ns: String, i: usize, version: &str) -> anyhow::Result<()> {
    let app = format!("app-{i}");
    let patch = json!({ "spec": { "template": template(&app, version) } });
    Api::<Rollout>::namespaced(client, &ns)
        .patch(&app, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Waits until every Rollout is Healthy on `version` with its old revisions scaled down.
async fn wait_all(seen: &Store<Rollout>, rollouts: usize, version: &str) {
    let image = format!("registry.example/app:{version}");
    let mut last = usize::MAX;
    loop {
        let done = seen
            .state()
            .iter()
            .filter(|r| on_version(r, &image))
            .count();
        if done == rollouts {
            return;
        }
        if done != last {
            println!("  {done}/{rollouts} Healthy on {version}");
            last = done;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The phase-2 switches as the controller recorded them in each Rollout's status: from the
/// active Service's selector patch to the EndpointSlices holding only the new revision's pods
/// (`status.blueGreen.switch.seconds`), over every Rollout switched during the wave.
fn print_switch_latency(seen: &Store<Rollout>) {
    let mut seconds: Vec<f64> = seen
        .state()
        .iter()
        .filter_map(|r| r.status.as_ref()?.blue_green.switch.clone())
        .filter(|s| s.from.is_some())
        .filter_map(|s| s.seconds)
        .collect();
    if seconds.is_empty() {
        println!("switch latency: no verified switch recorded");
        return;
    }
    seconds.sort_by(f64::total_cmp);
    let at = |q: f64| seconds[((seconds.len() - 1) as f64 * q).round() as usize];
    println!(
        "switch latency (selector patched -> EndpointSlices hold only the new revision), {} switches: p50 {:.3} s, p90 {:.3} s, p99 {:.3} s, max {:.3} s",
        seconds.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}

fn on_version(r: &Rollout, image: &str) -> bool {
    let Some(status) = r.status.as_ref() else {
        return false;
    };
    let spec_image = r
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.as_deref());
    status.phase == Some(RolloutPhase::Healthy)
        && status.observed_generation == r.metadata.generation
        && spec_image == Some(image)
        && status.stable_rs.is_some()
        && status.stable_rs == status.current_pod_hash
}

/// Binds new pods to the node, marks them Running and Ready with a unique IP, and finishes
/// deletions: what a kubelet would do, driven by a watch so that thousands of pods cost the
/// API server events rather than lists.
async fn tend_pods(client: Client) {
    let next_ip = Arc::new(AtomicU32::new(2));
    let pods: Api<Pod> = Api::all(client.clone());
    watcher(pods, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .for_each_concurrent(16, |pod| {
            let client = client.clone();
            let next_ip = next_ip.clone();
            async move {
                if let Ok(pod) = pod {
                    tend(&client, &pod, &next_ip).await;
                }
            }
        })
        .await;
}

async fn tend(client: &Client, pod: &Pod, next_ip: &AtomicU32) {
    let (Some(ns), name) = (pod.namespace(), pod.name_any()) else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    if pod.metadata.deletion_timestamp.is_some() {
        let _ = api
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await;
        return;
    }
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if ready {
        return;
    }
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_none()
    {
        support::kubelet::bind(client, &ns, &name, NODE).await;
    }
    let n = next_ip.fetch_add(1, Ordering::Relaxed);
    let ip = format!(
        "10.{}.{}.{}",
        244 + n / 62_500,
        (n / 250) % 250,
        n % 250 + 2
    );
    let patch = support::kubelet::running_status(&ip, None, true);
    let _ = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
}

/// What the controller's process and /metrics showed at one moment.
struct Sample {
    heap_mib: f64,
    rss_kib: u64,
    peak_kib: u64,
    reconciles: u64,
    total: Quantiles,
    local: Quantiles,
}

struct Quantiles {
    p50: f64,
    p90: f64,
    p99: f64,
}

impl Sample {
    fn print(&self, when: &str) {
        println!(
            "{when}: controller RSS {:.1} MiB (peak {:.1} MiB, live heap {:.1} MiB); {} reconciles; \
             reconcile incl. API p50 ≤ {:.1} ms, p90 ≤ {:.1} ms, p99 ≤ {:.1} ms; \
             own work (caches + plan) p50 ≤ {:.3} ms, p90 ≤ {:.3} ms, p99 ≤ {:.3} ms",
            self.rss_kib as f64 / 1024.0,
            self.peak_kib as f64 / 1024.0,
            self.heap_mib,
            self.reconciles,
            self.total.p50 * 1e3,
            self.total.p90 * 1e3,
            self.total.p99 * 1e3,
            self.local.p50 * 1e3,
            self.local.p90 * 1e3,
            self.local.p99 * 1e3,
        );
    }
}

async fn sample(pid: u32, addr: SocketAddr, log: &std::path::Path) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let text = reqwest_free_get(addr, "/metrics").await?;
    let heap_mib = std::fs::read_to_string(log)
        .ok()
        .and_then(|log| {
            let line = log
                .lines()
                .rev()
                .find(|l| l.starts_with("heap "))?
                .to_string();
            let allocated = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("allocated="))?;
            allocated.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |b| b / 1024.0 / 1024.0);
    let (reconciles, total) = histogram(&text, "cutover_reconcile_duration_seconds");
    let (_, local) = histogram(&text, "cutover_reconcile_local_seconds");
    Ok(Sample {
        heap_mib,
        rss_kib: field("VmRSS:"),
        peak_kib: field("VmHWM:"),
        reconciles,
        total,
        local,
    })
}

/// A plain HTTP/1.0 GET (the metrics server is local and small).
async fn reqwest_free_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body)
}

/// Count and bucket-bound quantiles of an OpenMetrics histogram.
fn histogram(text: &str, name: &str) -> (u64, Quantiles) {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let count = buckets.last().map_or(0, |b| b.1);
    let quantile = |q: f64| {
        let rank = (q * count as f64).ceil() as u64;
        buckets
            .iter()
            .find(|(_, c)| *c >= rank.max(1))
            .map_or(f64::NAN, |(le, _)| *le)
    };
    (
        count,
        Quantiles {
            p50: quantile(0.5),
            p90: quantile(0.9),
            p99: quantile(0.99),
        },
    )
}
