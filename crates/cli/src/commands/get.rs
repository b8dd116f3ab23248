//! `get rollout NAME [-w]`, `list rollouts`, `status NAME`: what a rollout is doing, as a tree
//! of revisions and processes (colour and icons on a terminal, plain text otherwise), or as
//! JSON / YAML.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cutover_core::api::{RolloutPhase, RolloutStatus};
use cutover_local::api::RolloutView;

use super::source::{Backend, Source};
use super::target::runtime;

/// Output formats for data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// The human view.
    Text,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// `cutover get rollout NAME [-w]`.
pub fn get(name: &str, watch: bool, output: Output, backend: &Backend) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let source = rt.block_on(Source::connect(backend))?;
    let tty = std::io::stdout().is_terminal();
    let mut last = String::new();
    loop {
        let view = match rt.block_on(source.rollout(name)) {
            Ok(v) => v,
            Err(e) => return e.exit(),
        };
        let text = match output {
            Output::Text => render(&view, tty),
            Output::Json => serde_json::to_string_pretty(&view)? + "\n",
            Output::Yaml => serde_yaml_ng::to_string(&view)?,
        };
        if !watch {
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
        if text != last {
            if tty {
                // Clear the screen and home the cursor: a live view.
                print!("\x1b[2J\x1b[H");
            }
            print!("{text}");
            last = text;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `cutover list rollouts`.
pub fn list(output: Output, backend: &Backend) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let source = rt.block_on(Source::connect(backend))?;
    let views = match rt.block_on(source.rollouts()) {
        Ok(v) => v,
        Err(e) => return e.exit(),
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&views)?),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(&views)?),
        Output::Text => {
            println!(
                "{:<24} {:<12} {:>8} {:>8} {:>9}  MESSAGE",
                "NAME", "STATUS", "DESIRED", "CURRENT", "AVAILABLE"
            );
            for v in views {
                let s = v.rollout.status.clone().unwrap_or_default();
                println!(
                    "{:<24} {:<12} {:>8} {:>8} {:>9}  {}",
                    v.rollout.metadata.name.unwrap_or_default(),
                    phase(&s),
                    v.rollout.spec.replicas(),
                    s.replicas,
                    s.available_replicas,
                    s.message.unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cutover status NAME [--timeout D]`: waits until Healthy (exit 0) or Degraded (exit 1);
/// exit 2 when the timeout passes first.
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
        let line = format!("{} - {}", phase(&s), s.message.clone().unwrap_or_default());
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
                return Ok(ExitCode::from(1));
            }
            _ => {}
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            eprintln!("timed out waiting for rollout {name:?} to become Healthy");
            return Ok(ExitCode::from(2));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn phase(s: &RolloutStatus) -> String {
    s.phase.map_or("Unknown".to_string(), |p| format!("{p:?}"))
}

/// The tree view of a rollout.
pub fn render(view: &RolloutView, tty: bool) -> String {
    let st = Style { tty };
    let r = &view.rollout;
    let s = r.status.clone().unwrap_or_default();
    let name = r.metadata.name.clone().unwrap_or_default();
    let mut out = String::new();
    let active = view.services.first().and_then(|v| v.selector.clone());
    let preview = view.services.get(1).and_then(|v| v.selector.clone());
    let roles = |hash: &str| {
        let mut roles = Vec::new();
        if s.stable_rs.as_deref() == Some(hash) {
            roles.push("stable");
        }
        if active.as_deref() == Some(hash) {
            roles.push("active");
        }
        if preview.as_deref() == Some(hash) && active.as_deref() != Some(hash) {
            roles.push("preview");
        }
        roles.join(",")
    };
    let _ = writeln!(out, "Name:            {name}");
    let _ = writeln!(
        out,
        "Namespace:       {}",
        r.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into())
    );
    let _ = writeln!(out, "Status:          {}", st.phase(s.phase));
    if let Some(m) = &s.message {
        let _ = writeln!(out, "Message:         {m}");
    }
    let _ = writeln!(out, "Strategy:        BlueGreen");
    let mut first = true;
    for rev in view
        .revisions
        .iter()
        .filter(|v| v.desired > 0 || !roles(&v.hash).is_empty())
    {
        let label = if first {
            "Images:          "
        } else {
            "                 "
        };
        first = false;
        let _ = writeln!(
            out,
            "{label}{} ({})",
            rev.images.join(", "),
            roles(&rev.hash)
        );
    }
    let _ = writeln!(out, "Replicas:");
    for (k, v) in [
        ("Desired", r.spec.replicas()),
        ("Current", s.replicas),
        ("Updated", s.updated_replicas),
        ("Ready", s.ready_replicas),
        ("Available", s.available_replicas),
    ] {
        let _ = writeln!(out, "  {:<15}{v}", format!("{k}:"));
    }
    if let Some(sw) = &s.blue_green.switch
        && let Some(secs) = sw.seconds
    {
        let _ = writeln!(
            out,
            "Last switch:     {} → {} confirmed in {:.3}s",
            sw.from.clone().unwrap_or_else(|| "-".into()),
            sw.to,
            secs
        );
    }
    if let Some(m) = &s.migration {
        let _ = writeln!(out, "Migration:       {} {}", m.name, m.phase);
        if let Some(due) = &m.contract_due_at {
            let _ = writeln!(out, "  Contract due:  {}", due.0);
        }
        if let Some(message) = &m.message {
            let _ = writeln!(out, "  {:<15}{message}", "Message:");
        }
    }
    let _ = writeln!(out, "Services:");
    for svc in &view.services {
        let _ = writeln!(
            out,
            "  {:<24} {:<22} selects {:<11} serving {}",
            svc.name,
            svc.address.clone().unwrap_or_else(|| "-".into()),
            svc.selector.clone().unwrap_or_else(|| "-".into()),
            if svc.serving.is_empty() {
                "-".into()
            } else {
                svc.serving.join(",")
            }
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<44} {:<10} {:<16} INFO", "NAME", "KIND", "STATUS");
    let _ = writeln!(
        out,
        "{} {name:<40} {:<10} {}",
        st.icon("⟳"),
        "Rollout",
        st.phase(s.phase)
    );
    let now = jiff::Timestamp::now();
    let n = view.revisions.len();
    for (i, rev) in view.revisions.iter().enumerate() {
        let last = i + 1 == n;
        let (branch, cont) = if last {
            ("└──", "   ")
        } else {
            ("├──", "│  ")
        };
        let _ = writeln!(out, "{branch}{}revision:{}", st.icon("#"), rev.revision);
        let ready = rev.replicas.iter().filter(|p| p.ready).count();
        let state = if rev.desired == 0 && rev.replicas.is_empty() {
            st.neutral("• ScaledDown")
        } else if ready as i32 >= rev.desired && rev.desired > 0 {
            st.good("✔ Healthy")
        } else {
            st.busy("◌ Progressing")
        };
        let mut info = roles(&rev.hash);
        if let Some(deadline) = rev.deadline
            && rev.desired > 0
        {
            let left = deadline.as_second() - now.as_second();
            if !info.is_empty() {
                info.push(' ');
            }
            let _ = write!(info, "delay:{}s", left.max(0));
        }
        let _ = writeln!(
            out,
            "{cont}└──{} {:<36} {:<10} {:<16} {info}",
            st.icon("⧉"),
            format!("{name}-{}", rev.hash),
            "Revision",
            state
        );
        for (j, p) in rev.replicas.iter().enumerate() {
            let branch = if j + 1 == rev.replicas.len() {
                "└──"
            } else {
                "├──"
            };
            let status = match (p.phase.as_str(), p.ready) {
                ("Running", true) => st.good("✔ Running"),
                ("CrashLoopBackOff", _) => st.bad("✖ CrashLoopBackOff"),
                (other, _) => st.busy(&format!("◌ {other}")),
            };
            let _ = writeln!(
                out,
                "{cont}   {branch}{}{:<32} {:<10} {:<16} ready:{}/1 port:{} pid:{} restarts:{}",
                st.icon("□"),
                format!("{name}-{}-{}", rev.hash, p.index),
                "Process",
                status,
                u8::from(p.ready),
                p.port,
                p.pid.map_or("-".into(), |p| p.to_string()),
                p.restarts
            );
        }
    }
    let runs = super::analysis::render_runs(view);
    if !runs.is_empty() {
        let _ = write!(out, "\n{runs}");
    }
    if !view.events.is_empty() {
        let _ = writeln!(out, "\nEvents:");
        for e in view.events.iter().rev().take(8).rev() {
            let _ = writeln!(
                out,
                "  {}  {:<24} {}",
                e.at.strftime("%H:%M:%S"),
                e.reason,
                e.message
            );
        }
    }
    out
}

struct Style {
    tty: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.tty {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            strip_icon(text)
        }
    }
    fn good(&self, t: &str) -> String {
        self.paint("32", t)
    }
    fn bad(&self, t: &str) -> String {
        self.paint("31", t)
    }
    fn busy(&self, t: &str) -> String {
        self.paint("34", t)
    }
    fn neutral(&self, t: &str) -> String {
        self.paint("2", t)
    }
    fn icon(&self, icon: &str) -> String {
        if self.tty {
            icon.to_string()
        } else {
            String::new()
        }
    }
    fn phase(&self, phase: Option<RolloutPhase>) -> String {
        match phase {
            Some(RolloutPhase::Healthy) => self.good("✔ Healthy"),
            Some(RolloutPhase::Progressing) => self.busy("◌ Progressing"),
            Some(RolloutPhase::Paused) => self.paint("33", "॥ Paused"),
            Some(RolloutPhase::Degraded) => self.bad("✖ Degraded"),
            None => self.neutral("? Unknown"),
        }
    }
}

/// Plain text drops the leading icon ("✔ Healthy" → "Healthy").
fn strip_icon(text: &str) -> String {
    match text.split_once(' ') {
        Some((icon, rest)) if !icon.chars().any(|c| c.is_ascii_alphanumeric()) => rest.to_string(),
        _ => text.to_string(),
    }
}
