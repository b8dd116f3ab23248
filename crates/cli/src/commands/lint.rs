//! `cutover lint`: load and check manifests, print every finding.

use std::path::PathBuf;
use std::process::ExitCode;

use cutover_manifest::Target;

use super::source::Backend;
use super::{count, print_diagnostics};
use crate::input::read_sources;

/// `--backend`: which backend the manifests are checked for.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LintBackend {
    /// The single-host backend (`cutover up`).
    Local,
    /// A Kubernetes cluster (`cutover controller`).
    #[value(alias = "kube")]
    Kubernetes,
    /// Either: only what holds on both is reported.
    Any,
}

/// The target: the flag, else the backend the other verbs would act on, since lint answers
/// "will `apply` take this, there?".
fn target(flag: Option<LintBackend>, backend: &Backend) -> Target {
    match (flag, backend) {
        (Some(LintBackend::Local), _) | (None, Backend::Local(_)) => Target::Local,
        (Some(LintBackend::Kubernetes), _) | (None, Backend::Kube(_)) => Target::Kubernetes,
        (Some(LintBackend::Any), _) => Target::Any,
    }
}

fn describe(target: Target) -> &'static str {
    match target {
        Target::Local => "checked for one host",
        Target::Kubernetes => "checked for Kubernetes",
        Target::Any => "checked for both backends",
    }
}

pub fn run(
    paths: &[PathBuf],
    flag: Option<LintBackend>,
    backend: &Backend,
) -> anyhow::Result<ExitCode> {
    let sources = read_sources(paths)?;
    let files = count(sources.len(), "file");
    let target = target(flag, backend);
    match cutover_manifest::load_for(&sources, target) {
        Ok(set) => {
            print_diagnostics(&set.warnings);
            eprintln!(
                "ok: {} in {files}, {} ({})",
                count(set.len(), "object"),
                count(set.warnings.warnings().count(), "warning"),
                describe(target)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            print_diagnostics(&diags);
            eprintln!(
                "invalid: {}, {} in {files} ({})",
                count(diags.errors().count(), "error"),
                count(diags.warnings().count(), "warning"),
                describe(target)
            );
            Ok(ExitCode::from(1))
        }
    }
}
