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
    /// Walk through a whole blue/green cycle (deploy, preview, analysis, promote, switch,
    /// automatic rollback) with the decision core in a simulated world.
    Demo,
    /// Print the version, the git commit it was built from, and the API version it reads.
    Version,
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
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs one verb. `Err` is a usage or I/O problem (exit 2); invalid input is an `Ok(1)`.
fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Lint { files } => commands::lint::run(&files),
        Command::Convert { file, output } => commands::convert::run(&file, output.as_deref()),
        Command::Crds { output } => commands::crds::run(output),
        Command::Demo => commands::demo::run(),
        Command::Version => commands::version::run(),
    }
}
