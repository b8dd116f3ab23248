//! `cutover convert`: Argo Rollouts manifests → cutover manifests.
//!
//! Several files are converted together (Argo users keep analysis templates beside, not in,
//! the Rollout's file), so references between them resolve. Nothing is written unless every
//! file converted: to stdout (one file as it is; several one after the other, each under a
//! `# Source:` comment), or with `-o` to a file (one input) or a directory (several).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use cutover_manifest::{ConvertedFile, Source};

use super::{count, print_diagnostics};
use crate::input::{STDIN_NAME, read_sources};

pub fn run(paths: &[PathBuf], output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let sources = read_sources(paths)?;
    // Where each file goes is settled before converting, so a bad `-o` costs nothing.
    let targets = match output {
        Some(out) => Some(targets(&sources, out)?),
        None => None,
    };
    let out = match cutover_manifest::convert_all(&sources) {
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
    match targets {
        Some(targets) => write_all(&out.files, &targets)?,
        None => std::io::stdout()
            .write_all(joined(&out.files).as_bytes())
            .context("writing to stdout")?,
    }
    let names: Vec<String> = out
        .files
        .iter()
        .flat_map(|f| &f.converted)
        .map(|c| format!("{} {}", c.kind, c.name))
        .collect();
    let passed = out.set.warnings.notes().count();
    eprintln!(
        "converted {}{}{}",
        count(names.len(), "document"),
        if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join(", "))
        },
        if passed == 0 {
            String::new()
        } else {
            format!(
                "; {} passed through unchanged",
                count(passed, "other document")
            )
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The files for stdout: one as it is; several one after the other, each a document stream of
/// its own after `---` and a comment naming its source.
fn joined(files: &[ConvertedFile]) -> String {
    if let [one] = files {
        return one.text.clone();
    }
    let mut out = String::new();
    for f in files {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("---\n# Source: {}\n", f.path));
        out.push_str(&f.text);
    }
    out
}

/// Where each converted file is written: `out` itself for one input; `out/<file name>` for
/// several, where the names must differ and standard input has no name to give.
fn targets(sources: &[Source], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if let [_] = sources {
        return Ok(vec![out.to_path_buf()]);
    }
    if out.exists() && !out.is_dir() {
        bail!(
            "{}: with several files, -o names a directory to write each converted file into",
            out.display()
        );
    }
    let mut seen = HashSet::new();
    let mut targets = Vec::new();
    for s in sources {
        if s.path == STDIN_NAME {
            bail!(
                "standard input has no file name to write under {}; convert it on its own",
                out.display()
            );
        }
        let name = Path::new(&s.path)
            .file_name()
            .with_context(|| format!("{}: not a file name", s.path))?;
        if !seen.insert(name.to_os_string()) {
            bail!(
                "two files are named {}: they would overwrite each other in {}",
                name.to_string_lossy(),
                out.display()
            );
        }
        targets.push(out.join(name));
    }
    Ok(targets)
}

/// Writes every file next to its target and then renames them all, so that a failure while
/// writing leaves every target as it was.
fn write_all(files: &[ConvertedFile], targets: &[PathBuf]) -> anyhow::Result<()> {
    if let Some(dir) = targets
        .first()
        .and_then(|t| t.parent())
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    let mut written = Vec::new();
    for (f, target) in files.iter().zip(targets) {
        let tmp = temporary(target);
        if let Err(e) = std::fs::write(&tmp, &f.text) {
            remove(&written);
            return Err(e).with_context(|| format!("{}", tmp.display()));
        }
        written.push((tmp, target));
    }
    for (tmp, target) in &written {
        std::fs::rename(tmp, target).with_context(|| format!("{}", target.display()))?;
    }
    Ok(())
}

fn temporary(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.cutover-{}.tmp", std::process::id()))
}

fn remove(written: &[(PathBuf, &PathBuf)]) {
    for (tmp, _) in written {
        let _ = std::fs::remove_file(tmp);
    }
}
