//! `get rollout NAME [-w]`, `list [rollouts]`, `status NAME`: what a rollout is doing, as the
//! tree `kubectl argo rollouts get rollout` draws (see `tree`), as the Rollout object itself
//! (`-o json|yaml`, as kubectl prints it), or as cutover's composite view with revisions,
//! processes, Services, runs and events (`-o view-json|view-yaml`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use cutover_core::api::RolloutPhase;
use cutover_local::api::RolloutView;
use serde_json::json;

use super::exit;
use super::source::{Backend, Source};
use super::target::runtime;
pub use super::tree::render;

/// Output formats of data that is not a rollout (an AnalysisRun's view).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// The human view.
    Text,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Output formats of `get rollout` and `list rollouts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RolloutOutput {
    /// The tree (get) or the table (list), as Argo Rollouts' CLI prints them.
    Text,
    /// The Rollout object as JSON, as `kubectl get -o json` (`.status.phase` works); `list`
    /// prints a List of them.
    Json,
    /// The Rollout object as YAML.
    Yaml,
    /// cutover's view as JSON: `{rollout, revisions, services, events, runs}`.
    ViewJson,
    /// cutover's view as YAML.
    ViewYaml,
}

/// `cutover get rollout NAME [-w]`.
pub fn get(
    name: &str,
    watch: bool,
    output: RolloutOutput,
    backend: &Backend,
) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let source = rt.block_on(Source::connect(backend))?;
    let color = crate::commands::color::stdout();
    let mut last = String::new();
    loop {
        let view = match rt.block_on(source.rollout(name)) {
            Ok(v) => v,
            Err(e) => return e.exit(),
        };
        let text = match output {
            RolloutOutput::Text => render(&view, color),
            RolloutOutput::Json => serde_json::to_string_pretty(&view.rollout)? + "\n",
            RolloutOutput::Yaml => serde_yaml_ng::to_string(&view.rollout)?,
            RolloutOutput::ViewJson => serde_json::to_string_pretty(&view)? + "\n",
            RolloutOutput::ViewYaml => serde_yaml_ng::to_string(&view)?,
        };
        if !watch {
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
        if text != last {
            if color {
                // Clear the screen and home the cursor: a live view.
                print!("\x1b[2J\x1b[H");
            }
            print!("{text}");
            last = text;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `cutover list [rollouts]`: Argo's columns (`-A` adds NAMESPACE).
pub fn list(output: RolloutOutput, backend: &Backend) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let source = rt.block_on(Source::connect(backend))?;
    let views = match rt.block_on(source.rollouts()) {
        Ok(v) => v,
        Err(e) => return e.exit(),
    };
    let objects = || {
        let items: Vec<_> = views.iter().map(|v| &v.rollout).collect();
        json!({ "apiVersion": "v1", "kind": "List", "items": items })
    };
    match output {
        RolloutOutput::Json => println!("{}", serde_json::to_string_pretty(&objects())?),
        RolloutOutput::Yaml => print!("{}", serde_yaml_ng::to_string(&objects())?),
        RolloutOutput::ViewJson => println!("{}", serde_json::to_string_pretty(&views)?),
        RolloutOutput::ViewYaml => print!("{}", serde_yaml_ng::to_string(&views)?),
        RolloutOutput::Text => print!("{}", table(&views, backend)),
    }
    Ok(ExitCode::SUCCESS)
}

fn table(views: &[RolloutView], backend: &Backend) -> String {
    let all = matches!(backend, Backend::Kube(k) if k.all_namespaces);
    let header = [
        "NAME",
        "STRATEGY",
        "STATUS",
        "STEP",
        "SET-WEIGHT",
        "READY",
        "DESIRED",
        "UP-TO-DATE",
        "AVAILABLE",
    ];
    let mut t = super::tree::Table::new(all.then_some("NAMESPACE").into_iter().chain(header));
    for v in views {
        let r = &v.rollout;
        let s = r.status.clone().unwrap_or_default();
        let namespace = r.metadata.namespace.clone().unwrap_or_default();
        t.row(all.then_some(namespace).into_iter().chain([
            r.metadata.name.clone().unwrap_or_default(),
            "BlueGreen".into(),
            super::tree::rollout_status(&s).1.into(),
            // Canary-only columns, kept so the table reads as Argo's.
            "-".into(),
            "-".into(),
            format!("{}/{}", s.ready_replicas, s.replicas),
            r.spec.replicas().to_string(),
            s.updated_replicas.to_string(),
            s.available_replicas.to_string(),
        ]));
    }
    t.render()
}

/// `cutover status NAME [--timeout D]`: prints the phase (and message) as it changes and waits
/// until Healthy (exit 0) or Degraded (1); 2 when the timeout passes first, 3 when there is no
/// such rollout.
pub fn status(
    name: &str,
    timeout: Option<Duration>,
    backend: &Backend,
) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let source = rt.block_on(Source::connect(backend))?;
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let view = match rt.block_on(source.rollout(name)) {
            Ok(v) => v,
            Err(e) => return e.exit(),
        };
        let s = view.rollout.status.clone().unwrap_or_default();
        let phase = super::tree::rollout_status(&s).1;
        let line = match s.message.as_deref().filter(|m| !m.is_empty()) {
            Some(message) => format!("{phase} - {message}"),
            None => phase.to_string(),
        };
        if line != last {
            println!("{line}");
            last = line;
        }
        // The status describes the current spec only once observedGeneration caught up.
        let current = s.observed_generation == view.rollout.metadata.generation;
        match s.phase {
            Some(RolloutPhase::Healthy) if current => return Ok(ExitCode::SUCCESS),
            Some(RolloutPhase::Degraded) if current => {
                eprintln!(
                    "The rollout is in a degraded state with message: {}",
                    s.message.unwrap_or_default()
                );
                return Ok(ExitCode::from(exit::REFUSED));
            }
            _ => {}
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            eprintln!("timed out waiting for rollout {name:?} to become Healthy");
            return Ok(ExitCode::from(exit::NO_ANSWER));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
