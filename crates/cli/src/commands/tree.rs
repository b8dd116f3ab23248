//! The human view of a rollout, laid out as `kubectl argo rollouts get rollout` lays it out: a
//! header (name, status, images with their roles, replica counts), then a tree of revisions,
//! each with its ReplicaSet, pods and AnalysisRuns, in columns NAME, KIND, STATUS, AGE, INFO.
//! Icons are always printed (they carry the status); colour only on a terminal. After the
//! tree come what cutover adds: the last switch, the migration, the Services, recent events.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use cutover_core::api::{RolloutPhase, RolloutStatus};
pub use cutover_local::api::human_duration;
use cutover_local::api::{ReplicaView, RevisionView, Roles, RolloutView, RunView};
use jiff::Timestamp;

const OK: &str = "✔";
const BAD: &str = "✖";
const PROGRESSING: &str = "◌";
const WAITING: &str = "◷";
const WARNING: &str = "⚠";
const UNKNOWN: &str = "?";
const PAUSED: &str = "॥";
const NEUTRAL: &str = "•";

/// The tree view of a rollout; `color` adds ANSI colours to the status icons.
pub fn render(view: &RolloutView, color: bool) -> String {
    render_at(view, color, Timestamp::now())
}

/// [`render`] with the present time given, so ages and delays are reproducible.
pub fn render_at(view: &RolloutView, color: bool, now: Timestamp) -> String {
    let r = &view.rollout;
    let s = r.status.clone().unwrap_or_default();
    let name = r.metadata.name.clone().unwrap_or_default();
    let roles = Roles::of(view);
    let paint = Paint { color };
    let mut out = String::new();
    let field = |out: &mut String, label: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{label:<17}{value}");
    };
    field(&mut out, "Name:", &name);
    field(
        &mut out,
        "Namespace:",
        &r.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let (icon, status) = rollout_status(&s);
    field(
        &mut out,
        "Status:",
        &format!("{} {status}", paint.icon(icon)),
    );
    if let Some(m) = s.message.as_deref().filter(|m| !m.is_empty()) {
        field(&mut out, "Message:", &m);
    }
    field(&mut out, "Strategy:", &"BlueGreen");
    for (i, line) in images(view, &roles).iter().enumerate() {
        field(&mut out, if i == 0 { "Images:" } else { "" }, line);
    }
    if let Some(d) = &s.duration {
        field(
            &mut out,
            "Update:",
            &super::update_line::update_line(d, now),
        );
    }
    let _ = writeln!(out, "Replicas:");
    for (label, value) in [
        ("  Desired:", r.spec.replicas()),
        ("  Current:", s.replicas),
        ("  Updated:", s.updated_replicas),
        // Argo's semantics: the active revision's ready pods, as status reports them.
        ("  Ready:", s.ready_replicas),
        ("  Available:", s.available_replicas),
    ] {
        field(&mut out, label, &value);
    }
    let _ = writeln!(out);

    let mut rows = Rows {
        table: Table::new(["NAME", "KIND", "STATUS", "AGE", "INFO"]),
        paint,
        rollout: &name,
        roles: &roles,
        now,
    };
    rows.table.row([
        format!("⟳ {name}"),
        "Rollout".into(),
        format!("{} {status}", rows.paint.icon(icon)),
        age(r.metadata.creation_timestamp.as_ref().map(|t| t.0), now),
        String::new(),
    ]);
    let tree = revisions(view);
    for (i, (number, revs, runs)) in tree.iter().enumerate() {
        let (branch, indent) = prefixes(i + 1 == tree.len(), "");
        let header = format!("{branch}# revision:{number}");
        rows.table
            .row(std::iter::once(header).chain(std::iter::repeat_n(String::new(), 4)));
        let children = revs.len() + runs.len();
        for (j, rev) in revs.iter().enumerate() {
            let (branch, sub) = prefixes(j + 1 == children, &indent);
            rows.replica_set(rev, &branch, &sub);
        }
        for (k, run) in runs.iter().enumerate() {
            let (branch, _) = prefixes(revs.len() + k + 1 == children, &indent);
            rows.analysis_run(run, &branch);
        }
    }
    out.push_str(&rows.table.render());
    extras(&mut out, view, &s);
    out
}

/// The `Images:` lines: images of revisions that have or want pods, each with the roles of
/// the revisions running it, sorted by image; no parentheses when it has no role.
fn images(view: &RolloutView, roles: &Roles) -> Vec<String> {
    view.images_with_roles(roles)
        .into_iter()
        .map(|(image, tags)| {
            if tags.is_empty() {
                image
            } else {
                format!("{image} ({})", tags.join(", "))
            }
        })
        .collect()
}

/// Revisions newest first, whatever order the backend gave, each with its AnalysisRuns
/// (oldest first); a run whose revision is gone goes under revision 0, as in Argo.
fn revisions(view: &RolloutView) -> Vec<(i64, Vec<&RevisionView>, Vec<&RunView>)> {
    let mut tree: BTreeMap<i64, (Vec<&RevisionView>, Vec<&RunView>)> = BTreeMap::new();
    for rev in &view.revisions {
        tree.entry(rev.revision).or_default().0.push(rev);
    }
    let mut runs: Vec<&RunView> = view.runs.iter().collect();
    runs.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
    for run in runs {
        let number = view
            .revisions
            .iter()
            .find(|r| r.hash == run.hash)
            .map_or(0, |r| r.revision);
        tree.entry(number).or_default().1.push(run);
    }
    tree.into_iter()
        .rev()
        .map(|(n, (revs, runs))| (n, revs, runs))
        .collect()
}

/// The rows of the revision tree, and what they are drawn with.
struct Rows<'a> {
    table: Table,
    paint: Paint,
    rollout: &'a str,
    roles: &'a Roles,
    now: Timestamp,
}

impl Rows<'_> {
    /// A revision's ReplicaSet row (status as Argo derives it from desired and ready pods,
    /// roles and the scale-down delay), then its pods.
    fn replica_set(&mut self, rev: &RevisionView, branch: &str, indent: &str) {
        let ready = rev.replicas.iter().filter(|p| p.ready).count();
        let (icon, status) = if rev.desired == 0 {
            (NEUTRAL, "ScaledDown")
        } else if i32::try_from(ready).unwrap_or(i32::MAX) < rev.desired {
            (PROGRESSING, "Progressing")
        } else {
            (OK, "Healthy")
        };
        let mut info: Vec<String> = self
            .roles
            .tags(&rev.hash)
            .into_iter()
            .map(str::to_string)
            .collect();
        if let Some(deadline) = rev.deadline.filter(|_| rev.desired > 0) {
            let left = deadline.as_second() - self.now.as_second();
            info.push(format!(
                "delay:{}",
                if left <= 0 {
                    "passed".to_string()
                } else {
                    human_duration(left)
                }
            ));
        }
        self.table.row([
            format!("{branch}⧉ {}-{}", self.rollout, rev.hash),
            "ReplicaSet".into(),
            format!("{} {status}", self.paint.icon(icon)),
            age(rev.created_at, self.now),
            info.join(","),
        ]);
        for (i, pod) in rev.replicas.iter().enumerate() {
            let (branch, _) = prefixes(i + 1 == rev.replicas.len(), indent);
            self.table.row([
                format!("{branch}□ {}", pod.name),
                "Pod".into(),
                format!("{} {}", self.paint.icon(pod_icon(&pod.phase)), pod.phase),
                age(pod.created_at, self.now),
                pod_info(pod),
            ]);
        }
    }

    fn analysis_run(&mut self, run: &RunView, branch: &str) {
        let icon = match run.phase.as_str() {
            "Successful" => OK,
            "Failed" => BAD,
            "Error" => WARNING,
            "Inconclusive" => UNKNOWN,
            "Running" => PROGRESSING,
            "Pending" => WAITING,
            _ => " ",
        };
        self.table.row([
            format!("{branch}α {}", run.name),
            "AnalysisRun".into(),
            format!("{} {}", self.paint.icon(icon), run.phase),
            age(Some(run.created_at), self.now),
            super::analysis::counts_info(run),
        ]);
    }
}

/// `ready:1/1`, then what is worth knowing: restarts (as Argo), and on one host the port and
/// process id.
fn pod_info(pod: &ReplicaView) -> String {
    let mut info = vec![format!("ready:{}/1", u8::from(pod.ready))];
    if pod.restarts > 0 {
        info.push(format!("restarts:{}", pod.restarts));
    }
    if pod.port != 0 {
        info.push(format!("port:{}", pod.port));
    }
    if let Some(pid) = pod.pid {
        info.push(format!("pid:{pid}"));
    }
    info.join(",")
}

/// Argo's pod icons, plus the single host's Starting and Stopped.
fn pod_icon(status: &str) -> &'static str {
    if status.starts_with("Init:") {
        return PROGRESSING;
    }
    if status.starts_with("Signal:") || status.starts_with("ExitCode:") {
        return BAD;
    }
    if status.ends_with("Error") || status.starts_with("Err") {
        return WARNING;
    }
    match status {
        "Pending" | "Terminating" | "ContainerCreating" | "Starting" => PROGRESSING,
        "Running" | "Completed" => OK,
        "Failed" | "InvalidImageName" | "CrashLoopBackOff" => BAD,
        "ImagePullBackOff" | "RegistryUnavailable" => WARNING,
        "Stopped" => NEUTRAL,
        _ => UNKNOWN,
    }
}

/// The icon and word of a rollout's phase.
pub fn rollout_status(s: &RolloutStatus) -> (&'static str, &'static str) {
    match s.phase {
        Some(RolloutPhase::Healthy) => (OK, "Healthy"),
        Some(RolloutPhase::Progressing) => (PROGRESSING, "Progressing"),
        Some(RolloutPhase::Paused) => (PAUSED, "Paused"),
        Some(RolloutPhase::Degraded) => (BAD, "Degraded"),
        None => (UNKNOWN, "Unknown"),
    }
}

/// What cutover shows beyond Argo's view, after the tree.
fn extras(out: &mut String, view: &RolloutView, s: &RolloutStatus) {
    let mut lines = String::new();
    if let Some(sw) = &s.blue_green.switch
        && let Some(secs) = sw.seconds
    {
        let _ = writeln!(
            lines,
            "Last switch:     {} → {} confirmed in {secs:.3}s",
            sw.from.as_deref().unwrap_or("-"),
            sw.to
        );
    }
    if let Some(m) = &s.migration {
        let _ = writeln!(lines, "Migration:       {} {}", m.name, m.phase);
        if let Some(due) = &m.contract_due_at {
            let _ = writeln!(lines, "  Contract due:  {}", due.0);
        }
        if let Some(message) = &m.message {
            let _ = writeln!(lines, "  {:<15}{message}", "Message:");
        }
    }
    if !view.services.is_empty() {
        let _ = writeln!(lines, "Services:");
        for svc in &view.services {
            let serving = if svc.serving.is_empty() {
                "-".to_string()
            } else {
                svc.serving.join(",")
            };
            let _ = writeln!(
                lines,
                "  {:<24} {:<22} selects {:<11} serving {serving}",
                svc.name,
                svc.address.as_deref().unwrap_or("-"),
                svc.selector.as_deref().unwrap_or("-"),
            );
        }
    }
    if !view.routes.is_empty() {
        let _ = writeln!(lines, "Routes:");
        for route in &view.routes {
            let _ = writeln!(lines, "  {route}");
        }
    }
    if !view.events.is_empty() {
        let _ = writeln!(lines, "Events:");
        for e in view.events.iter().rev().take(8).rev() {
            let _ = writeln!(
                lines,
                "  {}  {:<24} {}",
                e.at.strftime("%H:%M:%S"),
                e.reason,
                e.message
            );
        }
    }
    if !lines.is_empty() {
        let _ = write!(out, "\n{lines}");
    }
}

/// `├──` and the indent of its children, or `└──` for the last child.
fn prefixes(last: bool, indent: &str) -> (String, String) {
    if last {
        (format!("{indent}└──"), format!("{indent}   "))
    } else {
        (format!("{indent}├──"), format!("{indent}│  "))
    }
}

/// Age as kubectl prints it; `<unknown>` without a creation time.
fn age(created: Option<Timestamp>, now: Timestamp) -> String {
    created.map_or_else(
        || "<unknown>".to_string(),
        |t| human_duration((now.as_second() - t.as_second()).max(0)),
    )
}

struct Paint {
    color: bool,
}

impl Paint {
    /// Argo's colours: green for OK, red for bad and warnings, blue for progressing, yellow
    /// for waiting and unknown; paused and neutral stay plain.
    fn icon(&self, icon: &str) -> String {
        let code = match icon {
            OK => "32",
            BAD | WARNING => "31",
            PROGRESSING => "94",
            WAITING | UNKNOWN => "33",
            _ => return icon.to_string(),
        };
        if self.color {
            format!("\x1b[{code}m{icon}\x1b[0m")
        } else {
            icon.to_string()
        }
    }
}

/// Columns separated by two spaces, each as wide as its widest cell (the last one is not
/// padded); trailing spaces are trimmed. ANSI colour codes do not count towards widths.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with its header row.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self {
            rows: vec![header.into_iter().map(Into::into).collect()],
        }
    }

    /// Adds a row (as many cells as the header has).
    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows.push(cells.into_iter().collect());
    }

    /// The laid-out text, one line per row.
    pub fn render(&self) -> String {
        let columns = self.rows.first().map_or(0, Vec::len);
        let mut widths = vec![0usize; columns];
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(visible_width(cell));
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if let Some(w) = widths.get(i).filter(|_| i + 1 < columns) {
                    line.extend(std::iter::repeat_n(' ', w + 2 - visible_width(cell)));
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

/// Characters shown, without ANSI escape sequences.
fn visible_width(text: &str) -> usize {
    let mut width = 0;
    let mut escape = false;
    for c in text.chars() {
        match (escape, c) {
            (false, '\x1b') => escape = true,
            (true, 'm') => escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

#[cfg(test)]
mod tests {
    use cutover_core::api::{BlueGreenStatus, RolloutStatus};
    use cutover_core::fixtures::RolloutBuilder;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn revision(hash: &str, revision: i64, image: &str, pods: u32, created: i64) -> RevisionView {
        RevisionView {
            hash: hash.into(),
            revision,
            images: vec![image.into()],
            desired: i32::try_from(pods).unwrap_or(0),
            deadline: None,
            created_at: Some(at(created)),
            replicas: (0..pods)
                .map(|index| ReplicaView {
                    name: format!("web-{hash}-{index}"),
                    index,
                    pid: None,
                    port: 0,
                    phase: "Running".into(),
                    ready: true,
                    restarts: 0,
                    created_at: Some(at(created)),
                    last_exit: None,
                    log_path: String::new(),
                })
                .collect(),
        }
    }

    /// Argo's layout: icons, AGE, revisions newest first whatever order they come in, the run
    /// under its revision, no `()` after an image without a role, no stray leading space.
    #[test]
    fn the_tree_is_laid_out_as_argo_lays_it_out() {
        let mut rollout = RolloutBuilder::new("web").replicas(1).build();
        rollout.metadata.creation_timestamp = Some(Time(at(0)));
        rollout.status = Some(RolloutStatus {
            phase: Some(RolloutPhase::Paused),
            message: Some("BlueGreenPause".into()),
            stable_rs: Some("bbb".into()),
            blue_green: BlueGreenStatus {
                active_selector: Some("bbb".into()),
                preview_selector: Some("ccc".into()),
                ..BlueGreenStatus::default()
            },
            replicas: 2,
            updated_replicas: 1,
            ready_replicas: 1,
            available_replicas: 1,
            ..RolloutStatus::default()
        });
        let mut old = revision("aaa", 1, "web:v1", 0, 0);
        old.replicas.clear();
        let view = RolloutView {
            rollout,
            revisions: vec![
                old,
                revision("ccc", 3, "web:v3", 1, 3000),
                revision("bbb", 2, "web:v2", 1, 600),
            ],
            services: Vec::new(),
            events: Vec::new(),
            routes: vec!["VirtualService/web primary: blue=90 green=10".into()],
            runs: vec![RunView {
                name: "web-ccc-3-pre".into(),
                rollout: "web".into(),
                kind: "pre".into(),
                hash: "ccc".into(),
                phase: "Successful".into(),
                message: None,
                created_at: at(3030),
                terminated: false,
                status: None,
                metrics: Vec::new(),
            }],
        };
        let expected = "\
Name:            web
Namespace:       default
Status:          ॥ Paused
Message:         BlueGreenPause
Strategy:        BlueGreen
Images:          web:v2 (stable, active)
                 web:v3 (preview)
Replicas:
  Desired:       1
  Current:       2
  Updated:       1
  Ready:         1
  Available:     1

NAME                   KIND         STATUS        AGE    INFO
⟳ web                  Rollout      ॥ Paused      60m
├──# revision:3
│  ├──⧉ web-ccc        ReplicaSet   ✔ Healthy     10m    preview
│  │  └──□ web-ccc-0   Pod          ✔ Running     10m    ready:1/1
│  └──α web-ccc-3-pre  AnalysisRun  ✔ Successful  9m30s
├──# revision:2
│  └──⧉ web-bbb        ReplicaSet   ✔ Healthy     50m    stable,active
│     └──□ web-bbb-0   Pod          ✔ Running     50m    ready:1/1
└──# revision:1
   └──⧉ web-aaa        ReplicaSet   • ScaledDown  60m

Routes:
  VirtualService/web primary: blue=90 green=10
";
        assert_eq!(render_at(&view, false, at(3600)), expected);
    }

    #[test]
    fn durations_read_as_kubectl_prints_them() {
        for (secs, text) in [
            (0, "0s"),
            (119, "119s"),
            (200, "3m20s"),
            (240, "4m"),
            (1500, "25m"),
            (18_600, "5h10m"),
            (100_000, "27h"),
            (183_600, "2d3h"),
            (864_000, "10d"),
            (365 * 86_400 * 3 + 86_400 * 20, "3y20d"),
        ] {
            assert_eq!(human_duration(secs), text, "{secs}");
        }
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_lines_end_without_spaces() {
        let mut t = Table::new(["NAME", "KIND", "INFO"]);
        t.row(["\x1b[32m✔\x1b[0m a".into(), "Pod".into(), String::new()]);
        t.row(["longer-name".into(), "ReplicaSet".into(), "x".into()]);
        assert_eq!(
            t.render(),
            "NAME         KIND        INFO\n\x1b[32m✔\x1b[0m a          Pod\nlonger-name  ReplicaSet  x\n"
        );
    }
}
