//! `cutover`: blue/green delivery for a single host and for Kubernetes.
//!
//! Exit codes are the same for every verb: 0 success, 1 the manifests are invalid (or cannot be
//! converted), 2 a usage or I/O problem (bad flags, unreadable file). Diagnostics and summaries go
//! to stderr; stdout carries only a command's product (converted YAML, CRDs, the version).

mod commands;
mod input;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Blue/green delivery: run two versions side by side, check the new one, switch traffic at
/// once, keep the old one warm for instant rollback.
#[derive(Debug, Parser)]
#[command(name = "cutover", version, about, propagate_version = true)]
struct Cli {
    /// The single-host daemon's state directory (default: $CUTOVER_STATE_DIR, else
    /// $XDG_STATE_HOME/cutover, else ~/.local/state/cutover).
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Act on Kubernetes with this kubeconfig (the verbs then use the cluster, not the daemon).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Act on Kubernetes with this kubeconfig context.
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    /// Act on Kubernetes in this namespace.
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    namespace: Option<String>,
    /// Act on Kubernetes in every namespace (`list rollouts`).
    #[arg(short = 'A', long, global = true)]
    all_namespaces: bool,
    #[command(subcommand)]
    command: Command,
}

/// The verbs. New ones (`demo`, `up`, `status`, `promote`, …) are added here and dispatched in
/// [`run`]; each lives in its own module under `commands/`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Check manifests: syntax, fields, references between objects, values. Exit 0 when valid,
    /// 1 when not.
    Lint {
        /// A manifest file, a directory (its *.yaml and *.yml files), or `-` for stdin.
        /// Repeatable.
        #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Turn Argo Rollouts manifests into cutover ones (apiVersion rewritten in place, comments
    /// kept). Fails, writing nothing, when something cannot be carried over.
    Convert {
        /// The manifest file to convert, or `-` for stdin.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
        /// Write the result here instead of stdout (only when the conversion fully succeeded).
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Print the CustomResourceDefinitions of cutover's resources.
    Crds {
        /// Output format: multi-document YAML or a JSON List.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = commands::crds::Format::Yaml)]
        output: commands::crds::Format,
    },
    /// Run the single-host daemon in the foreground: processes, router, control API.
    Up(commands::up::UpArgs),
    /// The single-host data plane (the router), started and stopped by `cutover up`.
    #[command(hide = true)]
    DataPlane {
        /// The router's settings, as JSON (the daemon passes them).
        #[arg(long)]
        settings: String,
    },
    /// Apply manifests to the running daemon (all or nothing; lint errors refuse them).
    Apply {
        /// Manifest files, directories or `-`. Repeatable.
        #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Show a rollout.
    Get {
        #[command(subcommand)]
        what: GetWhat,
    },
    /// Stop something running.
    Terminate {
        #[command(subcommand)]
        what: TerminateWhat,
    },
    /// List rollouts.
    List {
        #[command(subcommand)]
        what: ListWhat,
    },
    /// Wait until a rollout is Healthy (exit 0) or Degraded (exit 1); exit 2 on timeout.
    Status {
        /// Rollout name.
        name: String,
        /// Give up after this long (e.g. 60s, 5m).
        #[arg(short = 't', long, value_parser = parse_duration)]
        timeout: Option<std::time::Duration>,
    },
    /// Set something on a rollout.
    Set {
        #[command(subcommand)]
        what: SetWhat,
    },
    /// Release a paused rollout (or one paused on inconclusive analysis).
    Promote {
        /// Rollout name.
        name: String,
        /// Skip the remaining pauses and analysis and the reduced preview.
        #[arg(long)]
        full: bool,
    },
    /// Abort the update: the active Service returns to the stable revision.
    Abort {
        /// Rollout name.
        name: String,
    },
    /// Retry an aborted update.
    Retry {
        #[command(subcommand)]
        what: RetryWhat,
    },
    /// Go back to an earlier revision (fast when it is still warm).
    Undo {
        /// Rollout name.
        name: String,
        /// Revision number (default: the previous one).
        #[arg(long)]
        to_revision: Option<i64>,
    },
    /// Halt switching and promotion.
    Pause {
        /// Rollout name.
        name: String,
    },
    /// Resume a paused rollout.
    Resume {
        /// Rollout name.
        name: String,
    },
    /// Restart every process of the rollout, a few at a time.
    Restart {
        /// Rollout name.
        name: String,
    },
    /// Print the processes' output.
    Logs {
        /// Rollout name.
        name: String,
        /// Revision number (default: the current one).
        #[arg(long)]
        revision: Option<i64>,
        /// Keep printing new output.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// A whole blue/green cycle with real processes under load: deploy, preview, promote,
    /// catch a faulty version on the preview, abort, undo. Exit 0 only if no request failed.
    Demo(commands::demo::DemoArgs),
    /// The demo application the demo runs (an HTTP service reporting its version).
    #[command(hide = true, disable_help_flag = true)]
    DemoApp {
        /// Its flags (see `cutover demo-app --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Expand/contract database migrations: plan, status, expand, backfill, contract, rollback.
    Migrate(commands::migrate::MigrateArgs),
    /// Run the Kubernetes controller (in-cluster config or a kubeconfig).
    Controller(cutover_kube::cli::ControllerArgs),
    /// Print the version, the git commit it was built from, and the API version it reads.
    Version,
}

#[derive(Debug, Subcommand)]
enum GetWhat {
    /// A rollout's revisions, processes, Services and events.
    Rollout {
        /// Rollout name.
        name: String,
        /// Keep the view live.
        #[arg(short = 'w', long)]
        watch: bool,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = commands::get::Output::Text)]
        output: commands::get::Output,
    },
    /// An AnalysisRun: each metric's measurements.
    Analysisrun {
        /// Run name.
        name: String,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = commands::get::Output::Text)]
        output: commands::get::Output,
    },
}

#[derive(Debug, Subcommand)]
enum TerminateWhat {
    /// Stop a running AnalysisRun (it ends Successful unless a metric already failed).
    Analysisrun {
        /// Run name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ListWhat {
    /// Every rollout.
    Rollouts {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = commands::get::Output::Text)]
        output: commands::get::Output,
    },
}

#[derive(Debug, Subcommand)]
enum SetWhat {
    /// Set a container's image: `set image NAME CONTAINER=IMAGE` (`*=IMAGE` for all).
    Image {
        /// Rollout name.
        name: String,
        /// CONTAINER=IMAGE.
        assignment: String,
    },
}

#[derive(Debug, Subcommand)]
enum RetryWhat {
    /// Retry an aborted rollout update.
    Rollout {
        /// Rollout name.
        name: String,
    },
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    cutover_core::api::DurationString::new(text)
        .parse()
        .map_err(|e| e.to_string())
}

/// jemalloc rather than the system allocator: the controller's and the router's many threads
/// each get a glibc arena that keeps freed memory; jemalloc returns it (docs/benchmarks.md,
/// "Controller with 1,000 Rollouts").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let state_dir = commands::target::state_dir(cli.state_dir);
    let backend = commands::source::Backend::choose(
        state_dir,
        commands::source::KubeTarget {
            kubeconfig: cli.kubeconfig,
            context: cli.context,
            namespace: cli.namespace,
            all_namespaces: cli.all_namespaces,
        },
    );
    match run(cli.command, &backend) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs one verb. `Err` is a usage or I/O problem (exit 2); invalid input is an `Ok(1)`.
fn run(command: Command, backend: &commands::source::Backend) -> anyhow::Result<ExitCode> {
    use commands::{get, logs, up, verbs};
    use cutover_local::ops::Operation;
    let b = backend;
    match command {
        Command::Up(args) => up::run(
            args,
            b.local_only("up", "`cutover controller` in the cluster")?
                .clone(),
        ),
        Command::DataPlane { settings } => up::data_plane(
            &settings,
            b.local_only("data-plane", "`cutover controller` in the cluster")?
                .clone(),
        ),
        Command::Apply { files } => {
            verbs::apply(&files, b.local_only("apply", "`kubectl apply -f`")?)
        }
        Command::Get {
            what:
                GetWhat::Rollout {
                    name,
                    watch,
                    output,
                },
        } => get::get(&name, watch, output, b),
        Command::Get {
            what: GetWhat::Analysisrun { name, output },
        } => commands::analysis::get(&name, output, b),
        Command::Terminate {
            what: TerminateWhat::Analysisrun { name },
        } => commands::analysis::terminate(&name, b),
        Command::List {
            what: ListWhat::Rollouts { output },
        } => get::list(output, b),
        Command::Status { name, timeout } => get::status(&name, timeout, b),
        Command::Set {
            what: SetWhat::Image { name, assignment },
        } => verbs::set_image(&name, &assignment, b),
        Command::Promote { name, full } => verbs::operate(&name, Operation::Promote { full }, b),
        Command::Abort { name } => verbs::operate(&name, Operation::Abort, b),
        Command::Retry {
            what: RetryWhat::Rollout { name },
        } => verbs::operate(&name, Operation::Retry, b),
        Command::Undo { name, to_revision } => {
            verbs::operate(&name, Operation::Undo { to_revision }, b)
        }
        Command::Pause { name } => verbs::operate(&name, Operation::Pause, b),
        Command::Resume { name } => verbs::operate(&name, Operation::Resume, b),
        Command::Restart { name } => verbs::operate(&name, Operation::Restart, b),
        Command::Logs {
            name,
            revision,
            follow,
        } => logs::run(
            &name,
            revision,
            follow,
            b.local_only("logs", "`kubectl logs`")?,
        ),
        Command::Lint { files } => commands::lint::run(&files),
        Command::Convert { file, output } => commands::convert::run(&file, output.as_deref()),
        Command::Crds { output } => commands::crds::run(output),
        Command::Demo(args) => commands::demo::run(args),
        Command::DemoApp { args } => Ok(cutover_demo_app::main_with(args)),
        Command::Migrate(args) => commands::migrate::run(args),
        Command::Controller(args) => cutover_kube::cli::run(args),
        Command::Version => commands::version::run(),
    }
}
