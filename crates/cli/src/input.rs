//! Reading manifest sources: files, directories (their *.yaml / *.yml, sorted) and stdin.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use cutover_manifest::Source;

/// The name diagnostics use for standard input.
pub const STDIN_NAME: &str = "<stdin>";

/// Reads every source named by `paths`, in order. Any unreadable path is an error naming it.
pub fn read_sources(paths: &[impl AsRef<Path>]) -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::new();
    for path in paths {
        let path = path.as_ref();
        if path == Path::new("-") {
            sources.push(read_stdin()?);
        } else if path.is_dir() {
            let files = yaml_files_in(path)?;
            if files.is_empty() {
                bail!("{}: directory has no .yaml or .yml files", path.display());
            }
            for file in files {
                sources.push(read_file(&file)?);
            }
        } else {
            sources.push(read_file(path)?);
        }
    }
    Ok(sources)
}

fn read_stdin() -> anyhow::Result<Source> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading standard input")?;
    Ok(Source::new(STDIN_NAME, text))
}

fn read_file(path: &Path) -> anyhow::Result<Source> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    Ok(Source::new(path.display().to_string(), text))
}

fn yaml_files_in(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let path = entry.with_context(|| format!("{}", dir.display()))?.path();
        let yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
