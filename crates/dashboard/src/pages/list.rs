//! The list page: every rollout with phase, strategy, images, revision, ready/desired, last
//! switch latency and age; filtered by namespace, phase and a search over names and images;
//! sorted by any column. Filters are a plain GET form, so the page works without the script;
//! the script only keeps the rows live.

use std::cmp::Ordering;
use std::fmt::Write as _;

use cutover_local::api::RolloutView;
use jiff::Timestamp;
use serde::Deserialize;

use cutover_local::api::Roles;

use super::model::images;
use super::{Region, Regions};
use crate::backend::RolloutKey;
use crate::html::{self, Esc, Frame, url_part};

/// The list's filters and order, from the query string.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
pub struct ListQuery {
    /// Namespace (empty: all).
    #[serde(default)]
    pub ns: String,
    /// Words that must all appear in the name, namespace or an image.
    #[serde(default)]
    pub q: String,
    /// Phase (empty: all).
    #[serde(default)]
    pub phase: String,
    /// Column to sort by.
    #[serde(default)]
    pub sort: String,
    /// `desc` for descending.
    #[serde(default)]
    pub dir: String,
}

/// Sortable columns: query value and header.
const COLUMNS: [(&str, &str); 8] = [
    ("name", "Name"),
    ("namespace", "Namespace"),
    ("phase", "Status"),
    ("images", "Images"),
    ("revision", "Revision"),
    ("ready", "Ready"),
    ("switch", "Last switch"),
    ("age", "Age"),
];

const PHASES: [&str; 5] = ["Healthy", "Progressing", "Paused", "Degraded", "Unknown"];

/// One row's facts, computed once for filtering, sorting and drawing.
struct Row<'a> {
    key: RolloutKey,
    phase: (&'static str, &'static str, &'static str),
    message: Option<&'a str>,
    images: Vec<(String, Vec<&'static str>)>,
    revision: Option<i64>,
    ready: i32,
    desired: i32,
    switch: Option<f64>,
    created: Option<Timestamp>,
}

impl<'a> Row<'a> {
    fn of(view: &'a RolloutView) -> Self {
        let r = &view.rollout;
        let default = cutover_core::api::RolloutStatus::default();
        let s = r.status.as_ref().unwrap_or(&default);
        Row {
            key: RolloutKey::of(view),
            phase: html::phase(s),
            message: r
                .status
                .as_ref()
                .and_then(|s| s.message.as_deref())
                .filter(|m| !m.is_empty()),
            images: images(view, &Roles::of(view)),
            revision: s.current_revision,
            ready: s.ready_replicas,
            desired: r.spec.replicas(),
            switch: s.blue_green.switch.as_ref().and_then(|w| w.seconds),
            created: r.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }

    fn matches(&self, q: &ListQuery, words: &[String]) -> bool {
        if !q.ns.is_empty() && self.key.namespace != q.ns {
            return false;
        }
        if !q.phase.is_empty() && self.phase.1 != q.phase {
            return false;
        }
        words.iter().all(|w| {
            self.key.name.to_lowercase().contains(w)
                || self.key.namespace.to_lowercase().contains(w)
                || self
                    .images
                    .iter()
                    .any(|(i, _)| i.to_lowercase().contains(w))
        })
    }

    fn compare(&self, other: &Self, column: &str) -> Ordering {
        let by_name =
            || (&self.key.name, &self.key.namespace).cmp(&(&other.key.name, &other.key.namespace));
        let first = match column {
            "namespace" => self.key.namespace.cmp(&other.key.namespace),
            "phase" => phase_rank(self.phase.1).cmp(&phase_rank(other.phase.1)),
            "images" => self.images.cmp(&other.images),
            "revision" => self.revision.cmp(&other.revision),
            "ready" => (self.ready, self.desired).cmp(&(other.ready, other.desired)),
            "switch" => self
                .switch
                .partial_cmp(&other.switch)
                .unwrap_or(Ordering::Equal),
            // Youngest first when ascending by age.
            "age" => other.created.cmp(&self.created),
            _ => Ordering::Equal,
        };
        first.then_with(by_name)
    }
}

/// Degraded first: what needs attention.
fn phase_rank(phase: &str) -> usize {
    ["Degraded", "Paused", "Progressing", "Unknown", "Healthy"]
        .iter()
        .position(|p| *p == phase)
        .unwrap_or(5)
}

/// The DOM id of a rollout's row.
fn row_id(key: &RolloutKey) -> String {
    format!("row-{}--{}", url_part(&key.namespace), url_part(&key.name))
}

/// The live parts of the list: the count line and each row (in order).
pub fn regions(
    views: &[RolloutView],
    q: &ListQuery,
    root: &str,
    now: Option<Timestamp>,
) -> Regions {
    let words: Vec<String> = q.q.split_whitespace().map(str::to_lowercase).collect();
    let mut rows: Vec<Row<'_>> = views
        .iter()
        .map(Row::of)
        .filter(|r| r.matches(q, &words))
        .collect();
    let column = if COLUMNS.iter().any(|(c, _)| *c == q.sort) {
        q.sort.as_str()
    } else {
        "name"
    };
    rows.sort_by(|a, b| a.compare(b, column));
    if q.dir == "desc" {
        rows.reverse();
    }
    let mut out = Regions::default();
    let count = if rows.len() == views.len() {
        format!(
            "{} rollout{}",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" }
        )
    } else {
        format!("{} of {} rollouts match", rows.len(), views.len())
    };
    out.push(Region::inner("count", count));
    for row in &rows {
        out.push(Region::row(row_id(&row.key), draw_row(row, root, now)));
    }
    out
}

fn draw_row(row: &Row<'_>, root: &str, now: Option<Timestamp>) -> String {
    let mut out = String::with_capacity(512);
    let (icon, word, class) = row.phase;
    let _ = write!(
        out,
        "<tr id=\"{id}\"><th scope=\"row\"><a href=\"{root}/rollouts/{ns}/{name}\">{n}</a></th><td>{nsv}</td><td>",
        id = Esc(&row_id(&row.key)),
        root = Esc(root),
        ns = Esc(&url_part(&row.key.namespace)),
        name = Esc(&url_part(&row.key.name)),
        n = Esc(&row.key.name),
        nsv = Esc(&row.key.namespace),
    );
    html::pill(&mut out, icon, word, class);
    if let Some(m) = row.message {
        let _ = write!(out, "<span class=\"msg\">{}</span>", Esc(m));
    }
    out.push_str("</td><td>BlueGreen</td><td><ul class=\"images\">");
    for (image, tags) in &row.images {
        let _ = write!(out, "<li><code>{}</code>", Esc(image));
        for tag in tags {
            let _ = write!(out, " <span class=\"role {tag}\">{tag}</span>");
        }
        out.push_str("</li>");
    }
    out.push_str("</ul></td><td class=\"num\">");
    match row.revision {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.push('–'),
    }
    let _ = write!(
        out,
        "</td><td class=\"num\">{}/{}</td><td class=\"num\">",
        row.ready, row.desired
    );
    match row.switch {
        Some(s) => out.push_str(&html::seconds(s)),
        None => out.push('–'),
    }
    out.push_str("</td><td class=\"num\">");
    age_cell(&mut out, row.created, now);
    out.push_str("</td></tr>");
    out
}

/// An age: filled in on full pages; left for the script on live updates, so a row changes
/// only when its data does.
pub fn age_cell(out: &mut String, at: Option<Timestamp>, now: Option<Timestamp>) {
    match (at, now) {
        (Some(t), None) => {
            let _ = write!(out, "<time datetime=\"{t}\" data-age title=\"{t}\"></time>");
        }
        (at, Some(now)) => html::age(out, at, now),
        (None, None) => out.push_str("<span class=\"muted\">unknown</span>"),
    }
}

/// The whole list page.
pub fn page(
    frame: &Frame<'_>,
    views: &[RolloutView],
    q: &ListQuery,
    problem: Option<&str>,
    now: Timestamp,
    version: Option<u64>,
) -> String {
    let mut out = String::with_capacity(2048 + views.len() * 700);
    let query = query_string(q, None);
    let live = match version {
        // The live stream then starts from what this page shows.
        Some(v) if query.is_empty() => format!("{}/live?v={v}", frame.root),
        Some(v) => format!("{}/live{query}&v={v}", frame.root),
        None => format!("{}/live{query}", frame.root),
    };
    frame.open(&mut out, "Rollouts", &live);
    out.push_str("<h1>Rollouts</h1>");
    filters(&mut out, frame.root, views, q);
    let regions = regions(views, q, frame.root, Some(now));
    let _ = write!(out, "<div id=\"problem\" class=\"problem\" role=\"alert\">");
    if let Some(p) = problem {
        let _ = write!(out, "<p>{}</p>", Esc(p));
    }
    out.push_str("</div>");
    let mut rows = regions.items.iter();
    if let Some(count) = rows.next() {
        let _ = write!(
            out,
            "<p id=\"count\" class=\"count\" aria-live=\"polite\">{}</p>",
            count.html
        );
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"rollouts\"><caption class=\"sr-only\">Rollouts, \
         one per row; column headers sort</caption><thead><tr>",
    );
    let current = if COLUMNS.iter().any(|(c, _)| *c == q.sort) {
        q.sort.as_str()
    } else {
        "name"
    };
    for (column, label) in COLUMNS {
        let (aria, next) = if column == current {
            if q.dir == "desc" {
                (" aria-sort=\"descending\"", "asc")
            } else {
                (" aria-sort=\"ascending\"", "desc")
            }
        } else {
            ("", "asc")
        };
        let link = format!("{}/{}", frame.root, query_string(q, Some((column, next))));
        let _ = write!(
            out,
            "<th scope=\"col\"{aria}><a href=\"{}\">{label}</a></th>",
            Esc(&link)
        );
        if column == "phase" {
            out.push_str("<th scope=\"col\">Strategy</th>");
        }
    }
    out.push_str("</tr></thead><tbody id=\"rows\">");
    for row in rows {
        out.push_str(&row.html);
    }
    out.push_str("</tbody></table></div>");
    frame.close(&mut out);
    out
}

fn filters(out: &mut String, root: &str, views: &[RolloutView], q: &ListQuery) {
    let mut namespaces: Vec<String> = views.iter().map(|v| RolloutKey::of(v).namespace).collect();
    namespaces.sort();
    namespaces.dedup();
    let _ = write!(
        out,
        "<form class=\"filters\" method=\"get\" action=\"{}/\" role=\"search\">\
         <div><label for=\"f-q\">Search</label><input id=\"f-q\" name=\"q\" type=\"search\" \
         value=\"{}\" placeholder=\"name, namespace or image\"></div>\
         <div><label for=\"f-ns\">Namespace</label><select id=\"f-ns\" name=\"ns\">\
         <option value=\"\">All namespaces</option>",
        Esc(root),
        Esc(&q.q)
    );
    for ns in &namespaces {
        let selected = if *ns == q.ns { " selected" } else { "" };
        let _ = write!(out, "<option{selected}>{}</option>", Esc(ns));
    }
    out.push_str(
        "</select></div><div><label for=\"f-phase\">Status</label><select id=\"f-phase\" \
         name=\"phase\"><option value=\"\">Any status</option>",
    );
    for p in PHASES {
        let selected = if p == q.phase { " selected" } else { "" };
        let _ = write!(out, "<option{selected}>{p}</option>");
    }
    let _ = write!(
        out,
        "</select></div><input type=\"hidden\" name=\"sort\" value=\"{}\">\
         <input type=\"hidden\" name=\"dir\" value=\"{}\"><button type=\"submit\">Filter</button></form>",
        Esc(&q.sort),
        Esc(&q.dir)
    );
}

/// `?ns=…&q=…` of the current filters, with the sort replaced when given.
fn query_string(q: &ListQuery, sort: Option<(&str, &str)>) -> String {
    let (s, d) = sort.unwrap_or((&q.sort, &q.dir));
    let parts: Vec<String> = [
        ("ns", q.ns.as_str()),
        ("q", &q.q),
        ("phase", &q.phase),
        ("sort", s),
        ("dir", d),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}={}", url_part(v)))
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}
