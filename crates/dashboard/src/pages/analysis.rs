//! The analysis part of a rollout's page: each run (newest first) with its phase and, per
//! metric, the chart of its measurements against its conditions, its counts and a table of the
//! measurements for readers who do not see the chart.

use std::fmt::Write as _;

use cutover_core::api::{AnalysisPhase, MetricResult};
use cutover_local::api::{MetricSpecView, RolloutView, RunView};

use super::chart;
use crate::html::{self, Esc, url_part};

/// All runs of the rollout.
pub fn runs(out: &mut String, view: &RolloutView) {
    if view.runs.is_empty() {
        out.push_str("<p class=\"muted\">No analysis run yet.</p>");
        return;
    }
    let mut runs: Vec<&RunView> = view.runs.iter().collect();
    runs.sort_by(|a, b| (b.created_at, &b.name).cmp(&(a.created_at, &a.name)));
    for run in runs {
        one(out, view, run);
    }
}

fn one(out: &mut String, view: &RolloutView, run: &RunView) {
    let revision = view
        .revisions
        .iter()
        .find(|r| r.hash == run.hash)
        .map_or_else(
            || run.hash.clone(),
            |r| format!("revision {} ({})", r.revision, r.hash),
        );
    let kind = match run.kind.as_str() {
        "pre" => "pre-promotion",
        "post" => "post-promotion",
        other => other,
    };
    let (icon, class) = html::analysis_phase(&run.phase);
    let id = format!("run-{}", url_part(&run.name));
    let _ = write!(
        out,
        "<article class=\"run\" id=\"{id}\" aria-labelledby=\"{id}-h\"><h3 id=\"{id}-h\">{name} ",
        id = Esc(&id),
        name = Esc(&run.name)
    );
    html::pill(out, icon, &run.phase, class);
    let _ = write!(
        out,
        "</h3><p class=\"meta\">{kind} analysis of {}{}</p>",
        Esc(&revision),
        if run.terminated { " · terminated" } else { "" }
    );
    if let Some(m) = run.message.as_deref().filter(|m| !m.is_empty()) {
        let _ = write!(out, "<p class=\"msg\">{}</p>", Esc(m));
    }
    let results = run
        .status
        .as_ref()
        .map(|s| s.metric_results.as_slice())
        .unwrap_or_default();
    for result in results {
        let spec = run.metrics.iter().find(|s| s.name == result.name);
        metric(out, &id, (&result.name, result.phase), spec, Some(result));
    }
    // Metrics known from the spec but not measured yet get their (empty) charts too.
    for spec in run
        .metrics
        .iter()
        .filter(|s| !results.iter().any(|r| r.name == s.name))
    {
        metric(
            out,
            &id,
            (&spec.name, AnalysisPhase::Pending),
            Some(spec),
            None,
        );
    }
    if results.is_empty() && run.metrics.is_empty() {
        out.push_str("<p class=\"muted\">No measurement yet.</p>");
    }
    out.push_str("</article>");
}

/// One metric: its phase, counts, conditions, chart and table. `result` is None before its
/// first measurement.
fn metric(
    out: &mut String,
    run_id: &str,
    (name, phase): (&str, AnalysisPhase),
    spec: Option<&MetricSpecView>,
    result: Option<&MetricResult>,
) {
    let id = format!("{run_id}-{}", url_part(name));
    let (icon, class) = html::analysis_phase(&format!("{phase:?}"));
    let _ = write!(
        out,
        "<section class=\"metric\" aria-labelledby=\"{id}-h\"><h4 id=\"{id}-h\">Metric {} ",
        Esc(name),
        id = Esc(&id)
    );
    html::pill(out, icon, &format!("{phase:?}"), class);
    let counts = |f: fn(&MetricResult) -> i32| result.map_or(0, f);
    let _ = write!(
        out,
        "</h4><p class=\"counts\"><span class=\"ok\">✔ {} successful</span> \
         <span class=\"bad\">✖ {} failed</span> <span class=\"unknown\">? {} inconclusive</span> \
         <span class=\"warn\">⚠ {} errors</span>{}</p>",
        counts(|m| m.successful),
        counts(|m| m.failed),
        counts(|m| m.inconclusive),
        counts(|m| m.error),
        if result.is_some_and(|m| m.dry_run) {
            " <span class=\"badge\">dry run</span>"
        } else {
            ""
        }
    );
    out.push_str("<dl class=\"conditions\">");
    if let Some(s) = spec {
        for (label, value) in [
            ("Success when", s.success_condition.as_deref()),
            ("Failure when", s.failure_condition.as_deref()),
            ("Failures tolerated", s.failure_limit.as_deref()),
            ("Measurements", s.count.as_deref()),
            ("Every", s.interval.as_deref()),
            (
                "Provider",
                Some(s.provider.as_str()).filter(|p| !p.is_empty()),
            ),
        ] {
            if let Some(v) = value {
                let _ = write!(out, "<dt>{label}</dt><dd><code>{}</code></dd>", Esc(v));
            }
        }
    }
    out.push_str("</dl>");
    if let Some(message) = result
        .and_then(|m| m.message.as_deref())
        .filter(|m| !m.is_empty())
    {
        let _ = write!(out, "<p class=\"msg\">{}</p>", Esc(message));
    }
    let _ = write!(out, "<figure class=\"chart\" id=\"{}-chart\">", Esc(&id));
    let measurements = result
        .map(|m| m.measurements.as_slice())
        .unwrap_or_default();
    chart::draw(out, &format!("{id}-svg"), name, measurements, spec);
    out.push_str(
        "<figcaption><span class=\"key ok\">● successful</span> <span class=\"key bad\">✖ \
         failed</span> <span class=\"key unknown\">◆ inconclusive</span> <span class=\"key \
         warn\">▲ error</span> <span class=\"key success\">– – success threshold</span> <span \
         class=\"key failure\">– – failure threshold</span></figcaption></figure>",
    );
    if !measurements.is_empty() {
        let _ = write!(
            out,
            "<details><summary>{} measurements as a table</summary><table class=\"measurements\">\
             <thead><tr><th scope=\"col\">Finished</th><th scope=\"col\">Value</th>\
             <th scope=\"col\">Phase</th><th scope=\"col\">Message</th></tr></thead><tbody>",
            measurements.len()
        );
        for ms in measurements.iter().rev() {
            let at = ms
                .finished_at
                .as_ref()
                .or(ms.started_at.as_ref())
                .map(|t| t.0.strftime("%H:%M:%S").to_string())
                .unwrap_or_default();
            let (icon, class) = html::analysis_phase(&format!("{:?}", ms.phase));
            let _ = write!(
                out,
                "<tr><td>{at}</td><td><code>{}</code></td><td>",
                Esc(ms.value.as_deref().unwrap_or("–"))
            );
            html::pill(out, icon, &format!("{:?}", ms.phase), class);
            let _ = write!(
                out,
                "</td><td>{}</td></tr>",
                Esc(ms.message.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</tbody></table></details>");
    }
    out.push_str("</section>");
}
