//! The real demo: a daemon in a temporary state directory runs the demo app (this same binary,
//! `cutover demo-app`) as three processes per revision behind the router, with clients sending
//! requests to the active Service the whole time. v1 is deployed, v2 previewed, checked and
//! promoted, a faulty v3 is caught on the preview and aborted, then undone. The demo exits 0
//! only if no client request failed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cutover_core::api::RolloutPhase;
use cutover_local::api::{Client, RolloutView};
use cutover_local::daemon::{self, UpConfig};
use cutover_local::ops::Operation;
use cutover_manifest::Source;
use cutover_router::RouterConfig;
use tokio_util::sync::CancellationToken;

use super::DemoArgs;
use super::load::{Load, probe};

const MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: demo-active}
spec:
  ports: [{port: {active_port}, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: demo-preview}
spec:
  ports: [{port: {preview_port}, targetPort: 8080, protocol: TCP}]
---
apiVersion: cutover.dev/v1alpha1
kind: Rollout
metadata: {name: demo}
spec:
  replicas: 3
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: app
          image: demo:v1
          command: ["{exe}", "demo-app"]
          args: ["--fail-rate-for", "v3=0.5"]
          ports: [{containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /health, port: 8080}
            periodSeconds: 1
  strategy:
    blueGreen:
      activeService: demo-active
      previewService: demo-preview
      previewReplicaCount: 1
      autoPromotionEnabled: false
      scaleDownDelaySeconds: 5
      trafficRouting:
        headerRoutes: [{header: x-canary, exact: "true"}]
"#;

const WAIT: Duration = Duration::from_secs(90);

pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    let ok = runtime.block_on(demo(args))?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn demo(args: &DemoArgs) -> anyhow::Result<bool> {
    let dir = std::env::temp_dir().join(format!("cutover-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    let exe = std::env::current_exe().context("locating the cutover binary")?;
    // Free ports picked here: manifests name real ports (`cutover lint` refuses 0).
    let manifest = MANIFEST
        .replace("{exe}", &exe.display().to_string())
        .replace("{active_port}", &free_port()?.to_string())
        .replace("{preview_port}", &free_port()?.to_string());
    println!(
        "cutover demo: blue/green with real processes and traffic (state in {})",
        dir.display()
    );

    let stop = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let config = UpConfig {
        state_dir: dir.clone(),
        sources: vec![Source::new("demo.yaml", manifest)],
        bind_address: "127.0.0.1".parse()?,
        api_address: "127.0.0.1:0".parse()?,
        router: RouterConfig {
            drain_timeout: Duration::from_secs(10),
            ..RouterConfig::default()
        },
        // The demo's data plane lives and dies with it.
        data_plane: cutover_local::dataplane::DataPlaneMode::InProcess,
        replace: false,
        notifications: None,
    };
    let daemon = tokio::spawn(daemon::run(config, stop.clone(), move |addr| {
        let _ = ready_tx.send(addr);
    }));
    if ready_rx.await.is_err() {
        let result = daemon.await?;
        bail!("the daemon did not start: {:?}", result.err());
    }
    let client = Client::from_state_dir(&dir)?;
    let dashboard = match args.dashboard {
        true => Some(dashboard(&dir, args.dashboard_address, stop.child_token()).await?),
        false => None,
    };
    let result = scenario(&client, args).await;
    println!("\nstopping the daemon and its processes…");
    stop.cancel();
    let _ = daemon.await;
    if let Some(d) = dashboard {
        d.finished().await;
    }
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn scenario(client: &Client, args: &DemoArgs) -> anyhow::Result<bool> {
    step("1. deploy demo:v1 (3 processes)");
    let view = wait(client, "Healthy on v1", |v| healthy_on(v, "demo:v1")).await?;
    let (active, preview) = addresses(&view)?;
    println!("   active service on {active}, preview service on {preview}");
    let load = Load::start(active, args.clients);
    println!(
        "   load generator: {} clients on the active service",
        args.clients
    );

    step("2. set image demo:v2: the preview starts with 1 process");
    client
        .operate(
            "demo",
            &Operation::SetImage {
                container: "app".into(),
                image: "demo:v2".into(),
            },
        )
        .await?;
    wait(client, "paused for promotion", paused).await?;
    let (seen, failed) = probe(preview, 20, None).await;
    println!("   preview check: {seen:?}, {failed} failed");
    let (seen, _) = probe(active, 10, Some(("x-canary", "true"))).await;
    println!("   testers on the active service with `x-canary: true` reach: {seen:?}");

    step("3. promote: the preview scales to 3, the active service switches");
    client
        .operate("demo", &Operation::Promote { full: false })
        .await?;
    let view = wait(client, "Healthy on v2", |v| healthy_on(v, "demo:v2")).await?;
    print_switch(&view);

    step("4. set image demo:v3 (faulty: half its answers are errors)");
    client
        .operate(
            "demo",
            &Operation::SetImage {
                container: "app".into(),
                image: "demo:v3".into(),
            },
        )
        .await?;
    wait(client, "paused for promotion", paused).await?;
    let (seen, failed) = probe(preview, 40, None).await;
    println!("   preview check: {seen:?}, {failed} of 40 failed → abort");
    client.operate("demo", &Operation::Abort).await?;
    wait(client, "aborted", |v| {
        phase(v) == Some(RolloutPhase::Degraded)
    })
    .await?;

    step("5. undo: back to demo:v2, which never stopped serving");
    client
        .operate("demo", &Operation::Undo { to_revision: None })
        .await?;
    wait(client, "Healthy on v2", |v| healthy_on(v, "demo:v2")).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let tally = load.stop().await;
    let view = client.rollout("demo").await?;
    println!("\n{}", crate::commands::get::render(&view, false));
    let sent = tally.sent.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let by_version = tally
        .by_version
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    step("summary");
    println!("   requests sent to the active service: {sent}");
    println!("   failed: {failed}");
    for (version, n) in &by_version {
        println!("   served by {version}: {n}");
    }
    if let Some(secs) = view
        .rollout
        .status
        .as_ref()
        .and_then(|s| s.blue_green.switch.as_ref())
        .and_then(|s| s.seconds)
    {
        println!(
            "   last switch confirmed in {secs:.3}s (route table swapped, old revision drained)"
        );
    }
    for f in tally.failures.lock().map(|f| f.clone()).unwrap_or_default() {
        println!("   failure: {f}");
    }
    let ok = failed == 0 && !by_version.contains_key("v3");
    println!(
        "   {}",
        if ok {
            "OK: no request failed and no production request reached v3"
        } else {
            "FAILED"
        }
    );
    Ok(ok)
}

/// The dashboard over the demo's daemon, up until `stop`; its URL (with the token) printed.
async fn dashboard(
    dir: &std::path::Path,
    address: SocketAddr,
    stop: CancellationToken,
) -> anyhow::Result<cutover_dashboard::Dashboard> {
    let backend = std::sync::Arc::new(cutover_dashboard::LocalBackend::new(dir)?);
    let options = cutover_dashboard::Options {
        address,
        ..cutover_dashboard::Options::default()
    };
    let dashboard = cutover_dashboard::start(backend, options.clone(), stop).await?;
    print!("{}", dashboard.announce(&options));
    Ok(dashboard)
}

/// A port free now (bound and released; the daemon binds it next).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn phase(v: &RolloutView) -> Option<RolloutPhase> {
    v.rollout.status.as_ref().and_then(|s| s.phase)
}

fn paused(v: &RolloutView) -> bool {
    phase(v) == Some(RolloutPhase::Paused)
}

fn healthy_on(v: &RolloutView, image: &str) -> bool {
    let s = v.rollout.status.clone().unwrap_or_default();
    let current_image = v
        .revisions
        .iter()
        .find(|r| Some(&r.hash) == s.current_pod_hash.as_ref())
        .and_then(|r| r.images.first().cloned());
    s.phase == Some(RolloutPhase::Healthy)
        && s.observed_generation == v.rollout.metadata.generation
        && current_image.as_deref() == Some(image)
}

fn addresses(v: &RolloutView) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let addr = |i: usize| -> anyhow::Result<SocketAddr> {
        v.services
            .get(i)
            .and_then(|s| s.address.as_ref())
            .context("service has no listener")?
            .parse()
            .context("service address")
    };
    Ok((addr(0)?, addr(1)?))
}

fn print_switch(v: &RolloutView) {
    if let Some(sw) = v
        .rollout
        .status
        .as_ref()
        .and_then(|s| s.blue_green.switch.as_ref())
    {
        println!(
            "   switch {} → {} confirmed in {:.3}s",
            sw.from.clone().unwrap_or_default(),
            sw.to,
            sw.seconds.unwrap_or_default()
        );
    }
}

/// Polls the rollout until `done`, printing each new status message.
async fn wait(
    client: &Client,
    what: &str,
    done: impl Fn(&RolloutView) -> bool,
) -> anyhow::Result<RolloutView> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let view = client.rollout("demo").await?;
        let s = view.rollout.status.clone().unwrap_or_default();
        let line = format!(
            "{:?}: {}",
            s.phase.unwrap_or(RolloutPhase::Progressing),
            s.message.unwrap_or_default()
        );
        if line != last {
            println!("   [{:>5.1}s] {line}", start.elapsed().as_secs_f64());
            last = line;
        }
        if done(&view) {
            return Ok(view);
        }
        if start.elapsed() > WAIT {
            bail!(
                "gave up waiting for the rollout to be {what} after {}s",
                WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
