//! `cutover up -f FILE...`: runs the single-host daemon in the foreground.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use cutover_local::daemon::{self, UpConfig};
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
    pub drain_timeout: std::time::Duration,
}

pub fn run(args: UpArgs, state_dir: PathBuf) -> anyhow::Result<ExitCode> {
    let sources = if args.files.is_empty() {
        Vec::new()
    } else {
        crate::input::read_sources(&args.files)?
    };
    let config = UpConfig {
        state_dir: state_dir.clone(),
        sources,
        bind_address: args.bind_address,
        api_address: args.api_address,
        router: RouterConfig {
            drain_timeout: args.drain_timeout,
            ..RouterConfig::default()
        },
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(daemon::run(config, CancellationToken::new(), |addr| {
        eprintln!(
            "cutover daemon: state {} · control API http://{addr} · Ctrl-C stops it and its processes",
            state_dir.display()
        );
    }));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(daemon::DaemonError::Apply(e)) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    cutover_core::api::DurationString::new(text)
        .parse()
        .map_err(|e| e.to_string())
}
