//! `cutover convert`: Argo Rollouts manifests → cutover manifests.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::{count, print_diagnostics};
use crate::input::read_one;

pub fn run(file: &Path, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let source = read_one(file)?;
    let out = match cutover_manifest::convert(&source) {
        Ok(out) => out,
        Err(diags) => {
            print_diagnostics(&diags);
            eprintln!(
                "not converted: {}; {}",
                count(diags.errors().count(), "error"),
                output.map_or("nothing written".to_string(), |o| format!(
                    "{} left unchanged",
                    o.display()
                ))
            );
            return Ok(ExitCode::from(1));
        }
    };
    print_diagnostics(&out.set.warnings);
    match output {
        Some(path) => write_atomically(path, &out.text)?,
        None => std::io::stdout()
            .write_all(out.text.as_bytes())
            .context("writing to stdout")?,
    }
    let names: Vec<String> = out
        .converted
        .iter()
        .map(|c| format!("{} {}", c.kind, c.name))
        .collect();
    eprintln!(
        "converted {}{}",
        count(names.len(), "document"),
        if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join(", "))
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes next to the target and renames, so OUT is either the old file or the whole new one.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.cutover-{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("{}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("{}", path.display()));
    }
    Ok(())
}
