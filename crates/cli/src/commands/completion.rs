//! `cutover completion SHELL` and `cutover man`: generated from the CLI's own definition, so
//! they never fall behind a new verb or flag.

use std::io::{ErrorKind, Write as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Command;
use clap_complete::Shell;

/// Prints the completion script for `shell` to stdout.
pub fn completion(shell: Shell, cli: Command) -> anyhow::Result<ExitCode> {
    let mut cli = without_hidden_verbs(cli);
    let name = cli.get_name().to_string();
    // Rendered into memory first: the generator panics on a write error, and a reader that
    // stops early (`| head`) is not one.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli, name, &mut script);
    print_product(&script)
}

/// The CLI without its internal verbs (`data-plane`, `demo-app`): some generators offer hidden
/// subcommands, and a user should never be offered them.
fn without_hidden_verbs(cli: Command) -> Command {
    let visible: Vec<Command> = cli
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    Command::new(cli.get_name().to_string())
        .args(cli.get_arguments().cloned())
        .subcommands(visible)
}

/// Writes `bytes` to stdout; a closed pipe is the reader's choice, not a failure.
fn print_product(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Prints `cutover(1)` to stdout, or with `output` writes one page per visible command into
/// that directory (`cutover.1`, `cutover-get.1`, `cutover-get-rollout.1`, …).
pub fn man(cli: Command, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let Some(dir) = output else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cli)
            .render(&mut page)
            .context("rendering the manual page")?;
        return print_product(&page);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = 0;
    write_pages(cli, dir, &mut written)?;
    eprintln!("wrote {written} manual pages to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// One page for `cmd` and, recursively, for each of its visible subcommands. Sub-pages are
/// named after their path (`cutover-get-rollout`), as git and cargo name theirs.
fn write_pages(cmd: Command, dir: &Path, written: &mut usize) -> anyhow::Result<()> {
    let invocation = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_string();
    let cmd = cmd.disable_help_subcommand(true).bin_name(&invocation);
    let file = dir.join(format!("{}.1", cmd.get_name()));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .context("rendering a manual page")?;
    std::fs::write(&file, page).with_context(|| format!("writing {}", file.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{}-{}", cmd.get_name(), sub.get_name());
        // The page is named `cutover-get`; its synopsis shows the words typed, `cutover get`.
        let typed = format!("{invocation} {}", sub.get_name());
        write_pages(sub.clone().name(name).bin_name(typed), dir, written)?;
    }
    Ok(())
}
