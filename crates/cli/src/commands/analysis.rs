//! `get analysisrun NAME` (each metric's measurements), `terminate analysisrun NAME`, and the
//! INFO cell of the AnalysisRun rows of the `get rollout` tree, on either backend (see
//! `source`).

use std::fmt::Write as _;
use std::process::ExitCode;

use cutover_local::api::RunView;

use super::get::Output;
use super::source::{Backend, Source};
use super::target::runtime;

/// `cutover get analysisrun NAME`: the daemon's run, or the AnalysisRun object of the
/// namespace on Kubernetes, rendered the same way.
pub fn get(name: &str, output: Output, backend: &Backend) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let source = rt.block_on(Source::connect(backend))?;
    let run = match rt.block_on(source.analysis_run(name)) {
        Ok(r) => r,
        Err(e) => return e.exit(),
    };
    match output {
        Output::Text => print!("{}", render_run(&run)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&run)?),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(&run)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// `cutover terminate analysisrun NAME`: the daemon stops the run; on Kubernetes the
/// AnalysisRun gets `spec.terminate: true` and its controller stops measuring.
pub fn terminate(name: &str, backend: &Backend) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let source = rt.block_on(Source::connect(backend))?;
    match rt.block_on(source.terminate_run(name)) {
        Ok(message) => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => e.exit(),
    }
}

/// Measurement counts of a run: (successful, failed, inconclusive, error).
fn counts(run: &RunView) -> (i32, i32, i32, i32) {
    run.status.as_ref().map_or((0, 0, 0, 0), |s| {
        s.metric_results.iter().fold((0, 0, 0, 0), |a, r| {
            (
                a.0 + r.successful,
                a.1 + r.failed,
                a.2 + r.inconclusive,
                a.3 + r.error,
            )
        })
    })
}

/// The INFO cell of a run in the rollout tree, as Argo writes it: the counts that are not
/// zero, `✔ 3,✖ 1,? 1,⚠ 2`.
pub fn counts_info(run: &RunView) -> String {
    let (ok, failed, inconclusive, error) = counts(run);
    [("✔", ok), ("✖", failed), ("?", inconclusive), ("⚠", error)]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(icon, n)| format!("{icon} {n}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn render_run(run: &RunView) -> String {
    let mut out = String::new();
    let (ok, failed, inconclusive, error) = counts(run);
    let _ = writeln!(out, "Name:       {}", run.name);
    let _ = writeln!(
        out,
        "Rollout:    {} ({}-promotion, revision {})",
        run.rollout, run.kind, run.hash
    );
    let _ = writeln!(
        out,
        "Status:     {}{}",
        run.phase,
        if run.terminated { " (terminated)" } else { "" }
    );
    if let Some(m) = &run.message {
        let _ = writeln!(out, "Message:    {m}");
    }
    let _ = writeln!(
        out,
        "Measured:   ✔ {ok} ✖ {failed} ? {inconclusive} ⚠ {error}"
    );
    for m in run.status.iter().flat_map(|s| s.metric_results.iter()) {
        let _ = writeln!(
            out,
            "\nMetric {}{}: {:?} (count {}, successful {}, failed {}, inconclusive {}, error {})",
            m.name,
            if m.dry_run { " (dry run)" } else { "" },
            m.phase,
            m.count,
            m.successful,
            m.failed,
            m.inconclusive,
            m.error
        );
        if let Some(msg) = &m.message {
            let _ = writeln!(out, "  {msg}");
        }
        for (k, v) in &m.metadata {
            let _ = writeln!(out, "  {k}: {}", v.trim());
        }
        for x in &m.measurements {
            let at = x
                .finished_at
                .as_ref()
                .or(x.started_at.as_ref())
                .map(|t| t.0.strftime("%H:%M:%S").to_string())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {at}  {:<13} {}{}",
                format!("{:?}", x.phase),
                x.value.clone().unwrap_or_else(|| "-".into()),
                x.message
                    .as_deref()
                    .map(|m| format!("  {m}"))
                    .unwrap_or_default()
            );
        }
    }
    out
}
