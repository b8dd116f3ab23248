//! A rollout's page: summary and conditions, the revision tree with pods (processes on one
//! host), Services and what they serve, traffic rules, the migration checklist, analysis runs
//! with charts, the events timeline, and the actions. Every part is a live region.

use std::fmt::Write as _;

use cutover_core::api::{ConditionStatus, MigrationPhase, RolloutStatus, UpdateCompletion};
use cutover_local::api::{RevisionView, RolloutView};
use jiff::Timestamp;

use super::list::age_cell;
use cutover_local::api::Roles;

use super::model::{containers, images};
use super::{Region, Regions};
use crate::backend::RolloutKey;
use crate::html::{self, Esc, Frame, url_part};

/// The live regions of a rollout's page, in document order (titles in [`SECTIONS`]).
pub fn regions(view: &RolloutView, now: Option<Timestamp>, read_only: bool) -> Regions {
    let s = view.rollout.status.clone().unwrap_or_default();
    let roles = Roles::of(view);
    let mut out = Regions::default();
    let mut region = |id: &str, draw: &dyn Fn(&mut String)| {
        let mut html = String::new();
        draw(&mut html);
        out.push(Region::inner(id, html));
    };
    region("summary", &|o| summary(o, view, &s, &roles, now));
    region("conditions", &|o| conditions(o, &s, now));
    region("tree", &|o| tree(o, view, &roles, now));
    region("services", &|o| services(o, view, &s));
    region("traffic", &|o| traffic(o, view));
    region("migration", &|o| migration(o, &s));
    region("analysis", &|o| super::analysis::runs(o, view));
    region("events", &|o| events(o, view));
    if !read_only {
        region("undo-options", &|o| undo_options(o, view));
        region("images", &|o| image_forms(o, view));
    }
    out
}

/// Section ids and headings, in page order.
const SECTIONS: [(&str, &str); 8] = [
    ("summary", "Summary"),
    ("conditions", "Conditions"),
    ("tree", "Revisions"),
    ("services", "Services"),
    ("traffic", "Traffic rules"),
    ("migration", "Migration"),
    ("analysis", "Analysis"),
    ("events", "Events"),
];

/// The whole page of a rollout.
pub fn page(
    frame: &Frame<'_>,
    key: &RolloutKey,
    view: &RolloutView,
    now: Timestamp,
    read_only: bool,
    version: Option<u64>,
) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let base = format!(
        "{}/rollouts/{}/{}",
        frame.root,
        url_part(&key.namespace),
        url_part(&key.name)
    );
    frame.open(
        &mut out,
        &key.name,
        &format!(
            "{}/live/rollouts/{}/{}{}",
            frame.root,
            url_part(&key.namespace),
            url_part(&key.name),
            // The live stream then starts from what this page shows.
            version.map_or_else(String::new, |v| format!("?v={v}"))
        ),
    );
    let _ = write!(
        out,
        "<nav aria-label=\"Breadcrumb\" class=\"crumbs\"><a href=\"{}/\">Rollouts</a> / \
         <span aria-current=\"page\">{}/{}</span></nav><h1>{}</h1>\
         <div id=\"problem\" class=\"problem\" role=\"alert\"></div>",
        Esc(frame.root),
        Esc(&key.namespace),
        Esc(&key.name),
        Esc(&key.name)
    );
    let regions = regions(view, Some(now), read_only);
    let body = |id: &str| regions.get(id).map_or("", |r| r.html.as_str());
    if !read_only {
        actions(&mut out, &base, key, body("undo-options"), body("images"));
    }
    for (id, title) in SECTIONS {
        let _ = write!(
            out,
            "<section class=\"card {id}\" aria-labelledby=\"h-{id}\"><h2 id=\"h-{id}\">{title}</h2>\
             <div id=\"{id}\">{}</div></section>",
            body(id)
        );
    }
    if read_only {
        out.push_str(
            "<p class=\"muted\">This dashboard runs with --read-only: actions are off.</p>",
        );
    }
    frame.close(&mut out);
    out
}

fn summary(
    out: &mut String,
    view: &RolloutView,
    s: &RolloutStatus,
    roles: &Roles,
    now: Option<Timestamp>,
) {
    let r = &view.rollout;
    let (icon, word, class) = html::phase(s);
    out.push_str("<dl class=\"facts\"><dt>Status</dt><dd>");
    html::pill(out, icon, word, class);
    if let Some(m) = s.message.as_deref().filter(|m| !m.is_empty()) {
        let _ = write!(out, " <span class=\"msg\">{}</span>", Esc(m));
    }
    if r.spec.paused == Some(true) {
        out.push_str(" <span class=\"badge\">spec.paused</span>");
    }
    out.push_str(
        "</dd><dt>Strategy</dt><dd>BlueGreen</dd><dt>Images</dt><dd><ul class=\"images\">",
    );
    for (image, tags) in images(view, roles) {
        let _ = write!(out, "<li><code>{}</code>", Esc(&image));
        for tag in tags {
            let _ = write!(out, " <span class=\"role {tag}\">{tag}</span>");
        }
        out.push_str("</li>");
    }
    out.push_str("</ul></dd>");
    if let Some(n) = s.current_revision {
        let _ = write!(out, "<dt>Revision</dt><dd>{n}</dd>");
    }
    let _ = write!(
        out,
        "<dt>Replicas</dt><dd>desired {} · current {} · updated {} · ready {} · available {}</dd>",
        r.spec.replicas(),
        s.replicas,
        s.updated_replicas,
        s.ready_replicas,
        s.available_replicas
    );
    if let Some(sw) = &s.blue_green.switch {
        let _ = write!(
            out,
            "<dt>Last switch</dt><dd><code>{}</code> → <code>{}</code> ",
            Esc(sw.from.as_deref().unwrap_or("–")),
            Esc(&sw.to)
        );
        match sw.seconds {
            Some(secs) => {
                let _ = write!(out, "confirmed in {}", html::seconds(secs));
            }
            None => out.push_str("<span class=\"pill progress\">not verified yet</span>"),
        }
        out.push_str("</dd>");
    }
    duration(out, s, now);
    out.push_str("<dt>Created</dt><dd>");
    age_cell(
        out,
        r.metadata.creation_timestamp.as_ref().map(|t| t.0),
        now,
    );
    out.push_str("</dd></dl>");
}

/// `status.duration`: when the update began, its manual pauses, when and how it ended.
fn duration(out: &mut String, s: &RolloutStatus, now: Option<Timestamp>) {
    let Some(d) = &s.duration else { return };
    let _ = write!(
        out,
        "<dt>Update</dt><dd><dl class=\"duration\"><dt>Revision</dt><dd>{}</dd><dt>Started</dt><dd>",
        d.revision
    );
    time(out, d.started_at.0);
    out.push_str("</dd>");
    if let Some(p) = &d.paused_at {
        out.push_str("<dt>Paused since</dt><dd>");
        time(out, p.0);
        out.push_str(" (");
        age_cell(out, Some(p.0), now);
        out.push_str(")</dd>");
    }
    let _ = write!(
        out,
        "<dt>Paused for</dt><dd>{}</dd>",
        html::seconds(d.paused_seconds)
    );
    match (&d.finished_at, d.seconds) {
        (Some(f), seconds) => {
            out.push_str("<dt>Finished</dt><dd>");
            time(out, f.0);
            let how = match d.completion {
                Some(UpdateCompletion::Promoted) => "promoted",
                Some(UpdateCompletion::Aborted) => "aborted",
                None => "ended",
            };
            let _ = write!(out, " · {how}");
            if let Some(secs) = seconds {
                let _ = write!(out, " after {}", html::seconds(secs));
            }
            out.push_str("</dd>");
        }
        (None, _) => {
            out.push_str("<dt>Running for</dt><dd>");
            age_cell(out, Some(d.started_at.0), now);
            out.push_str("</dd>");
        }
    }
    out.push_str("</dl></dd>");
}

fn time(out: &mut String, t: Timestamp) {
    let _ = write!(
        out,
        "<time datetime=\"{t}\">{}</time>",
        t.strftime("%Y-%m-%d %H:%M:%S UTC")
    );
}

fn conditions(out: &mut String, s: &RolloutStatus, now: Option<Timestamp>) {
    if s.conditions.is_empty() {
        out.push_str("<p class=\"muted\">No condition reported yet.</p>");
        return;
    }
    out.push_str(
        "<table><thead><tr><th scope=\"col\">Type</th><th scope=\"col\">Status</th>\
         <th scope=\"col\">Reason</th><th scope=\"col\">Message</th><th scope=\"col\">Since</th>\
         </tr></thead><tbody>",
    );
    for c in &s.conditions {
        let (word, class) = match c.status {
            ConditionStatus::True => ("True", "ok"),
            ConditionStatus::False => ("False", "muted"),
            ConditionStatus::Unknown => ("Unknown", "unknown"),
        };
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{:?}</th><td class=\"{class}\">{word}</td><td>{}</td><td>{}</td><td>",
            c.type_,
            Esc(&c.reason),
            Esc(c.message.as_deref().unwrap_or(""))
        );
        age_cell(out, c.last_transition_time.as_ref().map(|t| t.0), now);
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table>");
}

/// Revisions newest first, each with its ReplicaSet (roles, scale-down delay) and pods.
fn tree(out: &mut String, view: &RolloutView, roles: &Roles, now: Option<Timestamp>) {
    if view.revisions.is_empty() {
        out.push_str("<p class=\"muted\">No revision yet.</p>");
        return;
    }
    let name = view.rollout.metadata.name.clone().unwrap_or_default();
    let mut revisions: Vec<&RevisionView> = view.revisions.iter().collect();
    revisions.sort_by_key(|r| std::cmp::Reverse(r.revision));
    out.push_str("<ol class=\"tree\">");
    for rev in revisions {
        let ready = rev.replicas.iter().filter(|p| p.ready).count();
        let (icon, word, class) = if rev.desired == 0 {
            ("•", "ScaledDown", "muted")
        } else if i32::try_from(ready).unwrap_or(i32::MAX) < rev.desired {
            ("◌", "Progressing", "progress")
        } else {
            ("✔", "Healthy", "ok")
        };
        let _ = write!(
            out,
            "<li class=\"revision\"><h3>Revision {} <code class=\"hash\">{}-{}</code> ",
            rev.revision,
            Esc(&name),
            Esc(&rev.hash)
        );
        html::pill(out, icon, word, class);
        for tag in roles.tags(&rev.hash) {
            let _ = write!(out, " <span class=\"role {tag}\">{tag}</span>");
        }
        out.push_str("</h3><p class=\"meta\">");
        for image in &rev.images {
            let _ = write!(out, "<code>{}</code> ", Esc(image));
        }
        let _ = write!(out, "· {ready}/{} ready · created ", rev.desired);
        age_cell(out, rev.created_at, now);
        if let Some(deadline) = rev.deadline.filter(|_| rev.desired > 0) {
            let _ = write!(
                out,
                " · scaled down at <time datetime=\"{deadline}\" data-until>{}</time>",
                deadline.strftime("%H:%M:%S")
            );
        }
        out.push_str("</p>");
        if !rev.replicas.is_empty() {
            out.push_str(
                "<table class=\"pods\"><thead><tr><th scope=\"col\">Pod</th><th scope=\"col\">Status</th>\
                 <th scope=\"col\">Ready</th><th scope=\"col\">Restarts</th><th scope=\"col\">Age</th>\
                 <th scope=\"col\">Info</th></tr></thead><tbody>",
            );
            for pod in &rev.replicas {
                let class = match pod.phase.as_str() {
                    "Running" => "ok",
                    "Starting" | "Pending" | "ContainerCreating" | "Terminating" => "progress",
                    "Stopped" => "muted",
                    _ => "bad",
                };
                let _ = write!(out, "<tr><th scope=\"row\">{}</th><td>", Esc(&pod.name));
                html::pill(out, "", &pod.phase, class);
                let _ = write!(
                    out,
                    "</td><td>{}</td><td>{}</td><td>",
                    if pod.ready { "yes" } else { "no" },
                    pod.restarts
                );
                age_cell(out, pod.created_at, now);
                out.push_str("</td><td>");
                if pod.port != 0 {
                    let _ = write!(out, "port {} ", pod.port);
                }
                if let Some(pid) = pod.pid {
                    let _ = write!(out, "pid {pid} ");
                }
                if let Some(exit) = &pod.last_exit {
                    let _ = write!(out, "last exit: {}", Esc(exit));
                }
                out.push_str("</td></tr>");
            }
            out.push_str("</tbody></table>");
        }
        let runs: Vec<&str> = view
            .runs
            .iter()
            .filter(|r| r.hash == rev.hash)
            .map(|r| r.name.as_str())
            .collect();
        if !runs.is_empty() {
            out.push_str("<p class=\"meta\">Analysis: ");
            for run in runs {
                let _ = write!(
                    out,
                    "<a href=\"#run-{}\">{}</a> ",
                    Esc(&url_part(run)),
                    Esc(run)
                );
            }
            out.push_str("</p>");
        }
        out.push_str("</li>");
    }
    out.push_str("</ol>");
}

/// Each Service: where it listens, what it selects, what its data plane serves right now, and
/// for the active Service whether the last switch is verified.
fn services(out: &mut String, view: &RolloutView, s: &RolloutStatus) {
    if view.services.is_empty() {
        out.push_str("<p class=\"muted\">No Service found.</p>");
        return;
    }
    out.push_str(
        "<table><thead><tr><th scope=\"col\">Service</th><th scope=\"col\">Address</th>\
         <th scope=\"col\">Selects</th><th scope=\"col\">Data plane serves</th>\
         <th scope=\"col\">Switch</th></tr></thead><tbody>",
    );
    let active = &view.rollout.spec.strategy.blue_green.active_service;
    for svc in &view.services {
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}</th><td><code>{}</code></td><td><code>{}</code></td><td>",
            Esc(&svc.name),
            Esc(svc.address.as_deref().unwrap_or("–")),
            Esc(svc.selector.as_deref().unwrap_or("–")),
        );
        // One host reports what the router routes to (and still drains); Kubernetes does not
        // report it per Service here: the switch confirmation on its EndpointSlices stands in.
        let others: Vec<&str> = svc
            .serving
            .iter()
            .map(String::as_str)
            .filter(|h| Some(*h) != svc.selector.as_deref())
            .collect();
        if svc.serving.is_empty() {
            out.push_str("<span class=\"muted\">not reported</span>");
        } else if others.is_empty() {
            html::pill(out, "✔", &format!("only {}", svc.serving.join(", ")), "ok");
        } else {
            let _ = write!(
                out,
                "<code>{}</code> <span class=\"muted\">(also {}: traffic rules or requests draining)</span>",
                Esc(&svc.serving.join(", ")),
                Esc(&others.join(", "))
            );
        }
        out.push_str("</td><td>");
        match s.blue_green.switch.as_ref().filter(|_| svc.name == *active) {
            Some(w) => match w.seconds {
                Some(secs) if w.verified_at.is_some() => html::pill(
                    out,
                    "✔",
                    &format!("to {} verified in {}", w.to, html::seconds(secs)),
                    "ok",
                ),
                _ => html::pill(
                    out,
                    "◌",
                    &format!("to {} not verified yet", w.to),
                    "progress",
                ),
            },
            None => out.push_str("<span class=\"muted\">–</span>"),
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table>");
}

/// The rules of `blueGreen.trafficRouting` and the routes in effect now.
fn traffic(out: &mut String, view: &RolloutView) {
    let bg = &view.rollout.spec.strategy.blue_green;
    let Some(rules) = &bg.traffic_routing else {
        out.push_str("<p class=\"muted\">No traffic rules: the active Service sends everything to the active revision.</p>");
        return;
    };
    let preview_available = view
        .revisions
        .iter()
        .find(|r| {
            Some(&r.hash)
                == view
                    .rollout
                    .status
                    .as_ref()
                    .and_then(|s| s.current_pod_hash.as_ref())
        })
        .is_some_and(|r| {
            r.desired > 0
                && r.replicas.iter().filter(|p| p.ready).count()
                    >= usize::try_from(r.desired).unwrap_or(usize::MAX)
        });
    let plan = cutover_core::traffic::routes(&view.rollout, preview_available);
    out.push_str("<ul class=\"rules\">");
    for h in &rules.header_routes {
        let (how, value) = if let Some(v) = &h.exact {
            ("equals", v)
        } else if let Some(v) = &h.prefix {
            ("starts with", v)
        } else {
            ("matches", h.regex.as_ref().map_or(&h.header, |r| r))
        };
        let _ = write!(
            out,
            "<li>Header <code>{}</code> {how} <code>{}</code> → preview</li>",
            Esc(&h.header),
            Esc(value)
        );
    }
    if let Some(w) = rules.preview_weight {
        let _ = write!(
            out,
            "<li>{w}% of the remaining traffic → preview, once fully available</li>"
        );
    }
    if let Some(m) = &rules.mirror {
        let _ = write!(
            out,
            "<li>Mirror {}% of active traffic to the preview (responses discarded)</li>",
            chart_number(m.percent.unwrap_or(100.0))
        );
    }
    out.push_str("</ul><p><strong>In effect now</strong> on <code>");
    let _ = write!(out, "{}</code>: ", Esc(&plan.active.service));
    let weights: Vec<String> = plan
        .active
        .weights
        .iter()
        .map(|(hash, w)| format!("{} {w}%", Esc(hash)))
        .collect();
    out.push_str(&if weights.is_empty() {
        "no revision".to_string()
    } else {
        weights.join(", ")
    });
    if !plan.active.header_routes.is_empty() {
        let _ = write!(
            out,
            "; {} header route(s) to the preview",
            plan.active.header_routes.len()
        );
    }
    if let Some((hash, pct)) = &plan.active.mirror {
        let _ = write!(out, "; mirror {}% to {}", chart_number(*pct), Esc(hash));
    }
    out.push_str("</p>");
}

fn chart_number(v: f64) -> String {
    super::chart::number(v)
}

/// The migration's checklist: expand, backfill, contract, with what runs or waits.
fn migration(out: &mut String, s: &RolloutStatus) {
    let Some(m) = &s.migration else {
        out.push_str("<p class=\"muted\">No database migration.</p>");
        return;
    };
    let done = |p: MigrationPhase| match p {
        MigrationPhase::Pending | MigrationPhase::RolledBack => 0,
        MigrationPhase::Expanded => 1,
        MigrationPhase::Backfilled => 2,
        MigrationPhase::Contracted => 3,
    };
    let reached = done(m.phase);
    let _ = write!(
        out,
        "<p><code>{}</code> — {}</p><ol class=\"checklist\">",
        Esc(&m.name),
        m.phase.as_str()
    );
    for (i, step) in ["expand", "backfill", "contract"].iter().enumerate() {
        let ok = reached > i;
        let _ = write!(
            out,
            "<li class=\"{}\"><span aria-hidden=\"true\">{}</span> {step}<span class=\"sr-only\">: {}</span>",
            if ok { "ok" } else { "todo" },
            if ok { "☑" } else { "☐" },
            if ok { "done" } else { "not done" }
        );
        if *step == "contract"
            && !ok
            && let Some(due) = &m.contract_due_at
        {
            let _ = write!(out, " — due <time datetime=\"{0}\">{0}</time>", due.0);
        }
        out.push_str("</li>");
    }
    out.push_str("</ol>");
    if m.phase == MigrationPhase::RolledBack {
        out.push_str("<p class=\"warn\">Expand was rolled back.</p>");
    }
    if let Some(msg) = &m.message {
        let _ = write!(out, "<p class=\"msg\">{}</p>", Esc(msg));
    }
}

fn events(out: &mut String, view: &RolloutView) {
    if view.events.is_empty() {
        out.push_str("<p class=\"muted\">No events recorded.</p>");
        return;
    }
    out.push_str("<ol class=\"timeline\" reversed>");
    for e in view.events.iter().rev() {
        let class = if e.severity == "Warning" {
            "warn"
        } else {
            "normal"
        };
        let _ = write!(
            out,
            "<li class=\"{class}\"><time datetime=\"{at}\">{hm}</time> <strong>{reason}</strong> {message}</li>",
            at = e.at,
            hm = e.at.strftime("%H:%M:%S"),
            reason = Esc(&e.reason),
            message = Esc(&e.message)
        );
    }
    out.push_str("</ol>");
}

/// The buttons and forms of the actions; the script asks for confirmation and sends them with
/// the token.
fn actions(out: &mut String, base: &str, key: &RolloutKey, undo: &str, images: &str) {
    let name = Esc(&key.name);
    let _ = write!(
        out,
        "<section class=\"card actions\" aria-labelledby=\"h-actions\" data-endpoint=\"{}/actions\">\
         <h2 id=\"h-actions\">Actions</h2><div class=\"buttons\">",
        Esc(base)
    );
    for (op, label, confirm) in [
        (
            "promote",
            "Promote",
            format!(
                "Promote {name}: release the pause; the active Service switches to the new revision once its gates pass."
            ),
        ),
        (
            "promoteFull",
            "Promote full",
            format!("Promote {name} fully: skip the remaining analysis and pauses and switch now."),
        ),
        (
            "abort",
            "Abort",
            format!(
                "Abort the update of {name}: the active Service returns to the stable revision."
            ),
        ),
        (
            "retry",
            "Retry",
            format!("Retry the aborted update of {name}."),
        ),
        (
            "restart",
            "Restart",
            format!("Restart every pod of {name}, a few at a time."),
        ),
        (
            "pause",
            "Pause",
            format!("Pause {name}: no switch and no promotion until it is resumed."),
        ),
        ("resume", "Resume", format!("Resume {name}.")),
    ] {
        let _ = write!(
            out,
            "<button type=\"button\" data-op=\"{op}\" data-confirm=\"{confirm}\">{label}</button>"
        );
    }
    let _ = write!(
        out,
        "</div><form class=\"inline\" data-op=\"undo\" data-confirm=\"Roll {name} back to revision {{revision}}.\">\
         <label for=\"undo-revision\">Undo to revision</label>\
         <select id=\"undo-revision\" name=\"revision\"><optgroup id=\"undo-options\" label=\"Revisions\">{undo}</optgroup></select>\
         <button type=\"submit\">Undo</button></form><div id=\"images\">{images}</div>\
         <p id=\"outcome\" class=\"outcome\" role=\"status\" aria-live=\"polite\"></p></section>\
         <dialog id=\"confirm\" aria-labelledby=\"confirm-title\" aria-describedby=\"confirm-text\">\
         <form method=\"dialog\"><h2 id=\"confirm-title\">Please confirm</h2><p id=\"confirm-text\"></p>\
         <div id=\"token-row\" hidden><label for=\"token\">Access token (printed by <code>cutover dashboard</code> at start)</label>\
         <input id=\"token\" type=\"password\" autocomplete=\"off\" spellcheck=\"false\"></div>\
         <div class=\"buttons\"><button value=\"cancel\" formnovalidate>Cancel</button>\
         <button value=\"ok\" id=\"confirm-ok\" class=\"primary\">Confirm</button></div></form></dialog>"
    );
}

fn undo_options(out: &mut String, view: &RolloutView) {
    let current = view
        .rollout
        .status
        .as_ref()
        .and_then(|s| s.current_revision);
    let mut numbers: Vec<i64> = view.revisions.iter().map(|r| r.revision).collect();
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    numbers.dedup();
    for n in numbers.into_iter().filter(|n| Some(*n) != current) {
        let images: Vec<&str> = view
            .revisions
            .iter()
            .filter(|r| r.revision == n)
            .flat_map(|r| r.images.iter().map(String::as_str))
            .collect();
        let _ = write!(
            out,
            "<option value=\"{n}\">{n} — {}</option>",
            Esc(&images.join(", "))
        );
    }
}

/// One form per container: its name and image, never its command or environment.
fn image_forms(out: &mut String, view: &RolloutView) {
    let name = view.rollout.metadata.name.clone().unwrap_or_default();
    for (container, image) in containers(view) {
        let id = format!("image-{}", url_part(&container));
        let _ = write!(
            out,
            "<form class=\"inline\" data-op=\"setImage\" data-confirm=\"Set the image of container {c} of {n} to {{image}}: this starts an update.\">\
             <input type=\"hidden\" name=\"container\" value=\"{c}\"><label for=\"{id}\">Image of container <code>{c}</code></label>\
             <input id=\"{id}\" name=\"image\" value=\"{image}\" required spellcheck=\"false\"><button type=\"submit\">Set image</button></form>",
            c = Esc(&container),
            n = Esc(&name),
            id = Esc(&id),
            image = Esc(&image)
        );
    }
}
