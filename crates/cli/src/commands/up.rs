//! `cutover up -f FILE...`: runs the single-host daemon in the foreground, and `cutover
//! data-plane` (hidden), the process the daemon starts to serve the Services' traffic.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cutover_local::daemon::{self, UpConfig};
use cutover_local::dataplane::DataPlaneMode;
use cutover_local::dataplane::protocol::WireConfig;
use cutover_router::RouterConfig;
use tokio_util::sync::CancellationToken;

/// Flags of `cutover up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Manifests to apply at start (files, directories, `-`). Repeatable; optional when the
    /// state directory already holds rollouts.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Address the Services' listeners bind to.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: IpAddr,
    /// Address of the control API (port 0: any free port; the CLI finds it in the state dir).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub api_address: SocketAddr,
    /// How long in-flight requests of a revision leaving a route table may finish.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// A client must send a whole request head within this after connecting or after its
    /// previous response, or its connection is closed (0s: no limit).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// A connection without a request for this long is closed (0s: no limit).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Open client connections per Service; more get 503 with `Connection: close` (the
    /// open-files limit may allow fewer: half of it, after a reserve, across all Services).
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// How long a backend may take to send its response head once the request is forwarded,
    /// for Services without the `cutover.dev/response-timeout` annotation (0s: no limit).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub response_timeout: Duration,
    /// Take over from the daemon running on this state directory: it exits leaving the data
    /// plane serving and the processes running, and this one adopts them (an upgrade without a
    /// failed request).
    #[arg(long)]
    pub replace: bool,
    /// Notification configuration (`kind: NotificationConfig`: services, templates,
    /// subscriptions; `$NAME` values are read from the environment). See docs/notifications.md.
    #[arg(long, value_name = "FILE")]
    pub notifications: Option<PathBuf>,
    /// Also serve the dashboard over this daemon (its URL, with the token, is printed).
    #[arg(long)]
    pub dashboard: bool,
    /// Where the dashboard listens with --dashboard (port 0: any free port).
    #[arg(long, default_value = cutover_dashboard::DEFAULT_ADDRESS, value_name = "HOST:PORT")]
    pub dashboard_address: SocketAddr,
}

impl UpArgs {
    fn router(&self) -> RouterConfig {
        RouterConfig {
            drain_timeout: self.drain_timeout,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            response_timeout: self.response_timeout,
            ..RouterConfig::default()
        }
    }
}

/// Logs to stderr, `info` unless `RUST_LOG` says otherwise.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(crate::commands::color::stderr())
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(args: UpArgs, state_dir: PathBuf) -> anyhow::Result<ExitCode> {
    init_logging();
    cutover_kube::allocator::tune_for_daemon();
    let sources = if args.files.is_empty() {
        Vec::new()
    } else {
        crate::input::read_sources(&args.files)?
    };
    let program = std::env::current_exe().context("locating the cutover binary")?;
    let config = UpConfig {
        state_dir: state_dir.clone(),
        sources,
        bind_address: args.bind_address,
        api_address: args.api_address,
        router: args.router(),
        data_plane: DataPlaneMode::Process { program },
        replace: args.replace,
        notifications: args.notifications.clone(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let stop = CancellationToken::new();
    // The dashboard starts once the daemon serves its control API; if it cannot (its port is
    // taken), the daemon stops and says why.
    let dashboard_failed = std::sync::Arc::new(std::sync::Mutex::new(None));
    let dashboard = args.dashboard.then(|| cutover_dashboard::Options {
        address: args.dashboard_address,
        ..cutover_dashboard::Options::default()
    });
    let result = runtime.block_on(daemon::run(config, stop.clone(), |addr| {
        eprintln!(
            "cutover daemon: state {} · control API http://{addr} · Ctrl-C stops it, the data plane and its processes; Ctrl-\\ exits leaving them running",
            state_dir.display()
        );
        if let Some(options) = dashboard {
            let (dir, failed) = (state_dir.clone(), dashboard_failed.clone());
            tokio::spawn(async move {
                if let Err(e) = cutover_dashboard::serve_local(&dir, options, stop.clone()).await {
                    if let Ok(mut failed) = failed.lock() {
                        *failed = Some(e);
                    }
                    stop.cancel();
                }
            });
        }
    }));
    if let Some(e) = dashboard_failed.lock().ok().and_then(|mut f| f.take()) {
        return Err(anyhow::Error::new(e).context("cutover up --dashboard"));
    }
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(daemon::DaemonError::Apply(e)) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

/// `cutover data-plane --settings JSON`: the data plane of `state_dir`, until the daemon (or
/// SIGTERM) stops it.
pub fn data_plane(settings: &str, state_dir: PathBuf) -> anyhow::Result<ExitCode> {
    init_logging();
    // Parked idle connections free their buffers in bulk; return them to the kernel.
    cutover_kube::allocator::tune_for_daemon();
    let wire: WireConfig =
        serde_json::from_str(settings).context("--settings must be the JSON the daemon passes")?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(cutover_local::dataplane::server::run_process(
        &state_dir,
        RouterConfig::from(&wire),
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    cutover_core::api::DurationString::new(text)
        .parse()
        .map_err(|e| e.to_string())
}
