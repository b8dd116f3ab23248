//! `cutover logs ROLLOUT [--revision N] [-f]`: the processes' output, read from the state
//! directory's log files.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use super::target::{client, runtime};

pub fn run(
    name: &str,
    revision: Option<i64>,
    follow: bool,
    state_dir: &Path,
) -> anyhow::Result<ExitCode> {
    let view = runtime()?.block_on(client(state_dir)?.rollout(name))?;
    let current = view
        .rollout
        .status
        .as_ref()
        .and_then(|s| s.current_revision);
    let wanted = revision.or(current);
    let Some(rev) = view.revisions.iter().find(|r| Some(r.revision) == wanted) else {
        bail!(
            "rollout {name:?} has no revision {}; `cutover get rollout {name}` lists them",
            wanted.unwrap_or(0)
        );
    };
    let dir = cutover_local::private::inside(&state_dir.join("logs"), &[name, &rev.hash])?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: no logs yet", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    let mut offsets = vec![0u64; files.len()];
    let mut out = std::io::stdout();
    loop {
        for (file, offset) in files.iter().zip(offsets.iter_mut()) {
            let mut f = std::fs::File::open(file).with_context(|| file.display().to_string())?;
            f.seek(SeekFrom::Start(*offset))?;
            let mut text = String::new();
            f.read_to_string(&mut text)?;
            *offset += text.len() as u64;
            let replica = file.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
            for line in text.lines() {
                writeln!(out, "[{replica}] {line}")?;
            }
        }
        out.flush()?;
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
