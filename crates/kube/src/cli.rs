//! `cutover controller`: the flags and the entry point the binary calls.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::run::{LeaseConfig, RunConfig, run_controller};

/// Flags of `cutover controller`.
#[derive(Clone, Debug, clap::Args)]
pub struct ControllerArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then the in-cluster config).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader on a Lease so that only one controller reconciles (on by default, in
    /// the cluster and out of it: two controllers must never both switch Services);
    /// `--leader-elect=false` opts out.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else the namespace given with
    /// -n, else cutover-system).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = "cutover-controller")]
    pub lease_name: String,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// This replica's identity in the Lease (default: $POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Rollouts reconciled at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: u16,
    /// Log as JSON lines (for log collectors).
    #[arg(long)]
    pub log_json: bool,
    /// Colour the text logs (the binary decides: a terminal, no `--no-color`, no `NO_COLOR`).
    #[arg(skip)]
    pub log_color: bool,
    /// Namespace of the `cutover-notifications` ConfigMap and Secret (default: $POD_NAMESPACE,
    /// else the namespace given with --namespace, else cutover-system). Without the
    /// ConfigMap, notifications are off.
    #[arg(long, env = "POD_NAMESPACE")]
    pub notifications_namespace: Option<String>,
}

/// Runs the controller with `args` until SIGINT or a fatal error.
pub fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(args.log_color);
    // A subscriber set earlier by the binary wins; ours is only a default.
    let _ = if args.log_json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    crate::allocator::tune_for_daemon();
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| format!("cutover-{}", std::process::id()))
    });
    // The controller's own namespace: where the Lease and the notifications configuration
    // live unless given apart. A namespaced install runs in the namespace it watches.
    let home = args
        .namespace
        .clone()
        .unwrap_or_else(|| "cutover-system".into());
    let namespace = args.namespace.clone();
    let notifications_namespace = args.notifications_namespace.unwrap_or_else(|| home.clone());
    let config = RunConfig {
        notifications_namespace: Some(notifications_namespace),
        notifications_reload: None,
        kubeconfig: args.kubeconfig,
        context: args.context,
        namespace,
        metrics_addr: Some(args.metrics_addr),
        leader_election: args.leader_elect.then(|| LeaseConfig {
            namespace: args.lease_namespace.unwrap_or(home),
            name: args.lease_name,
            identity,
            duration: Duration::from_secs(args.lease_duration_seconds.max(3)),
        }),
        reconciler: crate::Config {
            workers: args.workers,
            ..crate::Config::default()
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_controller(config))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::ControllerArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    fn parse(flags: &[&str]) -> ControllerArgs {
        let argv = std::iter::once("controller").chain(flags.iter().copied());
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.args,
            Err(e) => panic!("{flags:?}: {e}"),
        }
    }

    #[test]
    fn leader_election_is_on_unless_turned_off() {
        assert!(parse(&[]).leader_elect);
        assert!(parse(&["--leader-elect"]).leader_elect);
        assert!(parse(&["--leader-elect=true"]).leader_elect);
        assert!(!parse(&["--leader-elect=false"]).leader_elect);
    }
}
