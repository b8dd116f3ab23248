//! `cutover lint`: load and check manifests, print every finding.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{count, print_diagnostics};
use crate::input::read_sources;

pub fn run(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let sources = read_sources(paths)?;
    let files = count(sources.len(), "file");
    match cutover_manifest::load(&sources) {
        Ok(set) => {
            print_diagnostics(&set.warnings);
            eprintln!(
                "ok: {} in {files}, {}",
                count(set.len(), "object"),
                count(set.warnings.len(), "warning")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            print_diagnostics(&diags);
            eprintln!(
                "invalid: {}, {} in {files}",
                count(diags.errors().count(), "error"),
                count(diags.warnings().count(), "warning")
            );
            Ok(ExitCode::from(1))
        }
    }
}
