//! `cutover demo`: a whole blue/green cycle on this machine, with real processes and traffic
//! (`--simulated` walks the decision core through the same cycle in a simulated world instead).

mod load;
mod real;
mod simulated;

use std::process::ExitCode;

/// Flags of `cutover demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Walk the decision core through the cycle in a simulated world (instant, starts nothing).
    #[arg(long)]
    pub simulated: bool,
    /// Keep the state directory (logs, state.db) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
    /// Concurrent clients of the load generator.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Serve the dashboard during the cycle (its URL is printed at the start).
    #[arg(long)]
    pub dashboard: bool,
    /// Where the dashboard listens with --dashboard (port 0: any free port).
    #[arg(long, default_value = cutover_dashboard::DEFAULT_ADDRESS, value_name = "HOST:PORT")]
    pub dashboard_address: std::net::SocketAddr,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.simulated {
        simulated::run()
    } else {
        real::run(&args)
    }
}
