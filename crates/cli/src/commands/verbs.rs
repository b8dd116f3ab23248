//! The verbs that change a rollout: apply, promote, abort, retry, undo, pause, resume,
//! restart, set image.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use cutover_local::api::ClientError;
use cutover_local::ops::Operation;

use super::source::{Backend, Source};
use super::target::{client, runtime};

/// `cutover apply -f FILE...`: all or nothing. The daemon checks the files as `cutover lint`
/// does, resolving references (analysis templates, Services) against the files and what it
/// already holds, so a Rollout can be applied alone after its templates.
pub fn apply(files: &[PathBuf], state_dir: &Path) -> anyhow::Result<ExitCode> {
    let sources = crate::input::read_sources(files)?;
    let client = client(state_dir)?;
    // The client sends absolute paths (the daemon resolves migration directories with them);
    // diagnostics name the files as the user gave them.
    let shown: Vec<(String, String)> = sources
        .iter()
        .filter_map(|s| {
            let absolute = std::fs::canonicalize(&s.path).ok()?;
            Some((absolute.display().to_string(), s.path.clone()))
        })
        .collect();
    let files: Vec<(String, String)> = sources.into_iter().map(|s| (s.path, s.text)).collect();
    match runtime()?.block_on(client.apply(files)) {
        Ok(report) => {
            for warning in report.warnings {
                let warning = shown.iter().fold(warning, |w, (absolute, given)| {
                    w.replace(&format!("{absolute}:"), &format!("{given}:"))
                });
                eprintln!("{warning}");
            }
            for line in report.objects {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Refused(message)) => {
            let message = shown.iter().fold(message, |m, (absolute, given)| {
                m.replace(&format!("{absolute}:"), &format!("{given}:"))
            });
            eprint!("{message}");
            if !message.ends_with('\n') {
                eprintln!();
            }
            Ok(ExitCode::from(super::exit::REFUSED))
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs an operation on a rollout and prints the daemon's answer.
pub fn operate(name: &str, op: Operation, backend: &Backend) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let source = rt.block_on(Source::connect(backend))?;
    match rt.block_on(source.operate(name, &op)) {
        Ok(message) => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => e.exit(),
    }
}

/// `set image NAME CONTAINER=IMAGE`.
pub fn set_image(name: &str, assignment: &str, backend: &Backend) -> anyhow::Result<ExitCode> {
    let Some((container, image)) = assignment.split_once('=') else {
        bail!("expected CONTAINER=IMAGE (or *=IMAGE for every container), got {assignment:?}");
    };
    if container.is_empty() || image.is_empty() {
        bail!("expected CONTAINER=IMAGE with both parts, got {assignment:?}");
    }
    operate(
        name,
        Operation::SetImage {
            container: container.to_string(),
            image: image.to_string(),
        },
        backend,
    )
}
