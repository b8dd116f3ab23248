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
    match run(cli.command, &state_dir) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs one verb. `Err` is a usage or I/O problem (exit 2); invalid input is an `Ok(1)`.
fn run(command: Command, state_dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    use commands::{get, logs, up, verbs};
    use cutover_local::ops::Operation;
    let dir = state_dir;
    match command {
        Command::Up(args) => up::run(args, dir.to_path_buf()),
        Command::Apply { files } => verbs::apply(&files, dir),
        Command::Get {
            what:
                GetWhat::Rollout {
                    name,
                    watch,
                    output,
                },
        } => get::get(&name, watch, output, dir),
        Command::Get {
            what: GetWhat::Analysisrun { name, output },
        } => commands::analysis::get(&name, output, dir),
        Command::Terminate {
            what: TerminateWhat::Analysisrun { name },
        } => commands::analysis::terminate(&name, dir),
        Command::List {
            what: ListWhat::Rollouts { output },
        } => get::list(output, dir),
        Command::Status { name, timeout } => get::status(&name, timeout, dir),
        Command::Set {
            what: SetWhat::Image { name, assignment },
        } => verbs::set_image(&name, &assignment, dir),
        Command::Promote { name, full } => verbs::operate(&name, Operation::Promote { full }, dir),
        Command::Abort { name } => verbs::operate(&name, Operation::Abort, dir),
        Command::Retry {
            what: RetryWhat::Rollout { name },
        } => verbs::operate(&name, Operation::Retry, dir),
        Command::Undo { name, to_revision } => {
            verbs::operate(&name, Operation::Undo { to_revision }, dir)
        }
        Command::Pause { name } => verbs::operate(&name, Operation::Pause, dir),
        Command::Resume { name } => verbs::operate(&name, Operation::Resume, dir),
        Command::Restart { name } => verbs::operate(&name, Operation::Restart, dir),
        Command::Logs {
            name,
            revision,
            follow,
        } => logs::run(&name, revision, follow, dir),
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
