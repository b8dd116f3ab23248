//! `cutover`: blue/green delivery for a single host and for Kubernetes.
//!
//! Exit codes are the same for every verb (`EXIT_CODES`, shown by `--help`): 0 success, 1 the
//! manifests are invalid (or cannot be converted) or the backend refused, 2 no answer (a usage or
//! I/O problem; `status`: the timeout passed), 3 not found, 4 nothing to act on. Diagnostics and
//! summaries go to stderr; stdout carries only a command's product (converted YAML, CRDs, the
//! version, a rollout's view).

mod commands;
mod input;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Blue/green delivery: run two versions side by side, check the new one, switch traffic at
/// once, keep the old one warm for instant rollback.
#[derive(Debug, Parser)]
#[command(name = "cutover", version, about, propagate_version = true, after_help = EXIT_CODES)]
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
    /// No colours or terminal control sequences (also when NO_COLOR is set, and whenever the
    /// output is not a terminal).
    #[arg(long, global = true)]
    no_color: bool,
    #[command(subcommand)]
    command: Command,
}

/// The exit codes, in `--help` (and README.md, "Exit codes").
const EXIT_CODES: &str = "Exit codes:
  0  done; `status`: the rollout is Healthy
  1  invalid manifests, or the backend refused the request; `status`: the rollout is Degraded
  2  no answer: a usage error, an I/O or connection problem; `status`: the timeout passed
  3  the rollout (or analysis run) named does not exist
  4  `promote`, `abort`, `retry rollout`: nothing to act on (e.g. \"nothing to abort: rollout is
     Healthy\"); nothing was changed";

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
        /// The backend the manifests are for: `local` (one host), `kubernetes`, or `any` (only
        /// what holds on both). Fields that do nothing there get a warning. Default: the
        /// backend the other verbs act on (Kubernetes with --kubeconfig, --context, -n, -A,
        /// CUTOVER_BACKEND=kubernetes or as kubectl-cutover; one host otherwise).
        #[arg(long, value_enum, value_name = "BACKEND")]
        backend: Option<commands::lint::LintBackend>,
    },
    /// Turn Argo Rollouts manifests into cutover ones (apiVersion rewritten in place, comments
    /// kept). Fails, writing nothing, when something cannot be carried over. Documents of other
    /// kinds (a Secret, an Ingress) pass through unchanged, with a note.
    Convert {
        /// A manifest file, a directory (its *.yaml and *.yml files), or `-` for stdin.
        /// Repeatable: files are converted together, so a template kept in another file is
        /// found.
        #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Write the result here instead of stdout (only when every file converted). With
        /// several files, OUT is a directory that receives each under its own file name.
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
    /// List rollouts (`list` alone is `list rollouts`).
    List {
        #[command(subcommand)]
        what: Option<ListWhat>,
        /// Output format (see `list rollouts --help`).
        #[arg(short = 'o', long, value_enum, default_value_t = commands::get::RolloutOutput::Text)]
        output: commands::get::RolloutOutput,
    },
    /// Print a rollout's status as it changes until it is Healthy (exit 0) or Degraded (exit 1);
    /// exit 2 when the timeout passes first, 3 when there is no such rollout.
    #[command(after_help = EXIT_CODES)]
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
    /// Release a paused rollout (or one paused on inconclusive analysis). Exit 4, changing
    /// nothing, when nothing is paused (`--full`: when no update is under way).
    #[command(after_help = EXIT_CODES)]
    Promote {
        /// Rollout name.
        name: String,
        /// Skip the remaining pauses and analysis and the reduced preview.
        #[arg(long)]
        full: bool,
    },
    /// Abort the update: the active Service returns to the stable revision. Exit 4, changing
    /// nothing, when no update is under way or it is already aborted.
    #[command(after_help = EXIT_CODES)]
    Abort {
        /// Rollout name.
        name: String,
    },
    /// Retry an aborted update. Exit 4, changing nothing, when the rollout is not aborted.
    #[command(after_help = EXIT_CODES)]
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
    /// Serve the dashboard (default http://127.0.0.1:3100): rollouts, revisions, analysis
    /// charts, events, live; actions with a token printed at start. Same backend choice as
    /// the other verbs.
    Dashboard(commands::dashboard::DashboardArgs),
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
    /// Print a shell completion script. Bash: `source <(cutover completion bash)`, or save it
    /// as /etc/bash_completion.d/cutover; zsh: save it as `_cutover` in a directory on $fpath;
    /// fish: save it as ~/.config/fish/completions/cutover.fish.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page, or with --output write one page per command into a directory
    /// (`man -l DIR/cutover-promote.1`).
    Man {
        /// Write every page into this directory instead of printing cutover(1).
        #[arg(short = 'o', long, value_name = "DIR")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum GetWhat {
    /// A rollout's revisions, pods (processes on one host), runs, Services and events.
    #[command(visible_alias = "ro", alias = "rollouts")]
    Rollout {
        /// Rollout name.
        name: String,
        /// Keep the view live.
        #[arg(short = 'w', long)]
        watch: bool,
        /// Output format: the tree; the Rollout object (json, yaml) as kubectl prints it; or
        /// cutover's view with revisions, pods, Services, runs and events (view-json,
        /// view-yaml).
        #[arg(short = 'o', long, value_enum, default_value_t = commands::get::RolloutOutput::Text)]
        output: commands::get::RolloutOutput,
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
    #[command(visible_alias = "ro", alias = "rollout")]
    Rollouts {
        /// Output format: a table as Argo Rollouts' CLI prints it; a List of the Rollout
        /// objects (json, yaml); or cutover's views (view-json, view-yaml).
        #[arg(short = 'o', long, value_enum, default_value_t = commands::get::RolloutOutput::Text)]
        output: commands::get::RolloutOutput,
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
/// "Controller with 1,000 Rollouts"). `cutover controller`, `cutover up` and `cutover data-plane`
/// also shorten jemalloc's decay to 1 s with a background purging thread
/// (crates/kube/src/allocator.rs).
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
    commands::color::init(cli.no_color);
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
            ExitCode::from(commands::exit::NO_ANSWER)
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
        Command::List { what, output } => match what {
            Some(ListWhat::Rollouts { output }) => get::list(output, b),
            None => get::list(output, b),
        },
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
        Command::Dashboard(args) => commands::dashboard::run(args, b),
        Command::Lint { files, backend } => commands::lint::run(&files, backend, b),
        Command::Convert { files, output } => commands::convert::run(&files, output.as_deref()),
        Command::Crds { output } => commands::crds::run(output),
        Command::Demo(args) => commands::demo::run(args),
        Command::DemoApp { args } => Ok(cutover_demo_app::main_with(args)),
        Command::Migrate(args) => commands::migrate::run(args),
        Command::Controller(mut args) => {
            args.log_color = commands::color::stderr();
            cutover_kube::cli::run(args)
        }
        Command::Version => commands::version::run(),
        Command::Completion { shell } => commands::completion::completion(shell, Cli::command()),
        Command::Man { output } => commands::completion::man(Cli::command(), output.as_deref()),
    }
}
