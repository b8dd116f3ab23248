//! A metric's measurements plotted over time as SVG drawn on the server: one mark per
//! measurement, shaped and coloured by its phase (so colour is never the only cue), a line
//! through the numeric values, and the success and failure conditions drawn as thresholds
//! where they compare `result` with a number (`result[0] >= 0.95`). Conditions that are not
//! such comparisons are named in the legend, and each measurement's phase still says how it
//! was judged.

use std::fmt::Write as _;

use cutover_core::api::{AnalysisPhase, Measurement};
use cutover_local::api::MetricSpecView;
use jiff::Timestamp;

use crate::html::Esc;

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 34.0;

/// A comparison of `result` with a number, read from a condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// `>=`, `>`, `<=`, `<`, `==` or `!=`, with `result` on its left.
    pub op: &'static str,
    /// The number.
    pub value: f64,
}

/// The comparisons of `result` (or `result[N]`) with a number in a condition, each written
/// with `result` on the left. `&&` and `||` separate comparisons; anything else is skipped.
pub fn thresholds(condition: &str) -> Vec<Threshold> {
    let mut found = Vec::new();
    for part in condition.split("&&").flat_map(|p| p.split("||")) {
        let part = part.trim().trim_matches(|c| c == '(' || c == ')').trim();
        let Some((op, at)) = ["<=", ">=", "==", "!=", "<", ">"]
            .iter()
            .find_map(|op| part.find(op).map(|i| (*op, i)))
        else {
            continue;
        };
        let (left, right) = (part[..at].trim(), part[at + op.len()..].trim());
        let is_result = |s: &str| {
            s == "result"
                || (s.starts_with("result[")
                    && s.ends_with(']')
                    && s[7..s.len() - 1].chars().all(|c| c.is_ascii_digit()))
        };
        let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
        let threshold = if is_result(left) {
            number(right).map(|value| Threshold { op, value })
        } else if is_result(right) {
            let flipped = match op {
                "<=" => ">=",
                ">=" => "<=",
                "<" => ">",
                ">" => "<",
                same => same,
            };
            number(left).map(|value| Threshold { op: flipped, value })
        } else {
            None
        };
        found.extend(threshold);
    }
    found
}

/// The number a measurement's value stands for: the first element of a vector (`[0.98]`),
/// a scalar, or a boolean as 1 or 0.
pub fn numeric(value: &str) -> Option<f64> {
    let v = value.trim().trim_start_matches('[').trim_end_matches(']');
    let first = v.split(',').next()?.trim().trim_matches('"');
    match first {
        "true" => Some(1.0),
        "false" => Some(0.0),
        _ => first.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// A measurement as plotted.
struct Point {
    at: Timestamp,
    value: Option<f64>,
    phase: AnalysisPhase,
    text: String,
}

/// The chart of one metric's measurements as inline SVG, with a title and description for
/// screen readers. `id` is unique on the page.
pub fn draw(
    out: &mut String,
    id: &str,
    name: &str,
    measurements: &[Measurement],
    spec: Option<&MetricSpecView>,
) {
    let points: Vec<Point> = measurements
        .iter()
        .filter_map(|m| {
            let at = m.finished_at.as_ref().or(m.started_at.as_ref())?.0;
            let text = m.value.clone().unwrap_or_default();
            Some(Point {
                at,
                value: m.value.as_deref().and_then(numeric),
                phase: m.phase,
                text,
            })
        })
        .collect();
    let success = spec
        .and_then(|s| s.success_condition.as_deref())
        .map(thresholds)
        .unwrap_or_default();
    let failure = spec
        .and_then(|s| s.failure_condition.as_deref())
        .map(thresholds)
        .unwrap_or_default();
    let latest = points.last().map_or_else(
        || "no measurement yet".to_string(),
        |p| format!("latest {} ({:?})", p.text, p.phase),
    );
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-labelledby=\"{id}-t {id}-d\"><title id=\"{id}-t\">Measurements of metric {name}</title>\
         <desc id=\"{id}-d\">{count} measurements, {latest}</desc>",
        name = Esc(name),
        count = points.len(),
        latest = Esc(&latest),
    );
    let values = points
        .iter()
        .filter_map(|p| p.value)
        .chain(success.iter().chain(&failure).map(|t| t.value));
    let (lo, hi) = y_range(values);
    let (t0, t1) = match (points.first(), points.last()) {
        (Some(a), Some(b)) => (a.at, b.at),
        _ => (Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH),
    };
    let span = (t1.as_millisecond() - t0.as_millisecond()).max(1000) as f64 / 1000.0;
    let x = |t: Timestamp| {
        LEFT + (t.as_millisecond() - t0.as_millisecond()) as f64 / 1000.0 / span
            * (WIDTH - LEFT - RIGHT)
    };
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (HEIGHT - TOP - BOTTOM);
    axes(out, lo, hi, span, &y);
    for (class, list) in [("success", &success), ("failure", &failure)] {
        for t in list {
            let ty = y(t.value);
            let _ = write!(
                out,
                "<line class=\"threshold {class}\" x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\"/>\
                 <text class=\"threshold-label {class}\" x=\"{tx}\" y=\"{ly:.1}\" text-anchor=\"end\">{class} {op} {v}</text>",
                x2 = WIDTH - RIGHT,
                tx = WIDTH - RIGHT - 2.0,
                // Below the line when it runs along the top, where the marks of good values sit.
                ly = if ty < TOP + 16.0 { ty + 13.0 } else { ty - 4.0 },
                op = Esc(t.op),
                v = number(t.value),
            );
        }
    }
    let line: Vec<String> = points
        .iter()
        .filter_map(|p| p.value.map(|v| format!("{:.1},{:.1}", x(p.at), y(v))))
        .collect();
    if line.len() > 1 {
        let _ = write!(
            out,
            "<polyline class=\"series\" points=\"{}\"/>",
            line.join(" ")
        );
    }
    for p in &points {
        let px = x(p.at);
        // An Error has no value: its mark sits on the axis.
        let py = p.value.map_or(HEIGHT - BOTTOM, &y);
        mark(out, px, py, p);
    }
    if points.is_empty() {
        let _ = write!(
            out,
            "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">No measurement yet</text>",
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
    }
    out.push_str("</svg>");
}

/// One measurement's mark: a circle when Successful, a cross when Failed, a diamond when
/// Inconclusive, a triangle for an Error; its tooltip says when, what and how judged.
fn mark(out: &mut String, x: f64, y: f64, p: &Point) {
    let title = format!(
        "{} · {} · {:?}",
        p.at.strftime("%H:%M:%S"),
        if p.text.is_empty() {
            "no value"
        } else {
            &p.text
        },
        p.phase
    );
    let (class, shape) = match p.phase {
        AnalysisPhase::Successful => (
            "ok",
            format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5\"/>"),
        ),
        AnalysisPhase::Failed => (
            "bad",
            format!(
                "<path d=\"M{a:.1},{b:.1} l10,10 m0,-10 l-10,10\"/>",
                a = x - 5.0,
                b = y - 5.0
            ),
        ),
        AnalysisPhase::Inconclusive => (
            "unknown",
            format!(
                "<path d=\"M{x:.1},{a:.1} l6,6 l-6,6 l-6,-6 z\"/>",
                a = y - 6.0
            ),
        ),
        AnalysisPhase::Error => (
            "warn",
            format!("<path d=\"M{x:.1},{a:.1} l6,10 l-12,0 z\"/>", a = y - 7.0),
        ),
        AnalysisPhase::Running | AnalysisPhase::Pending => (
            "progress",
            format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\"/>"),
        ),
    };
    let _ = write!(
        out,
        "<g class=\"mark {class}\" data-phase=\"{:?}\">{shape}<title>{}</title></g>",
        p.phase,
        Esc(&title)
    );
}

/// The frame, horizontal grid lines with their values, and elapsed-time labels.
fn axes(out: &mut String, lo: f64, hi: f64, span: f64, y: &dyn Fn(f64) -> f64) {
    let _ = write!(
        out,
        "<rect class=\"plot\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\"/>",
        WIDTH - LEFT - RIGHT,
        HEIGHT - TOP - BOTTOM
    );
    let step = nice_step((hi - lo) / 4.0);
    let mut v = (lo / step).ceil() * step;
    while v <= hi + step * 1e-9 {
        let gy = y(v);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{gy:.1}\" y2=\"{gy:.1}\"/>\
             <text class=\"tick\" x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>",
            x2 = WIDTH - RIGHT,
            tx = LEFT - 6.0,
            ty = gy + 4.0,
            label = number(v),
        );
        v += step;
    }
    // Round times (every 2s, 5s, 10s, 15s, 30s, 1m, …) rather than quarters of the span.
    let step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]
        .into_iter()
        .find(|s| f64::from(*s) * 5.0 >= span)
        .unwrap_or(7200);
    let mut t = 0;
    while f64::from(t) <= span + 1e-9 {
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{x:.1}\" y=\"{ty}\" text-anchor=\"middle\">+{label}</text>",
            x = LEFT + f64::from(t) / span * (WIDTH - LEFT - RIGHT),
            ty = HEIGHT - BOTTOM + 16.0,
            label = crate::html::compact_duration(i64::from(t)),
        );
        t += step;
    }
    let _ = write!(
        out,
        "<text class=\"axis-label\" x=\"{x}\" y=\"{ty}\" text-anchor=\"middle\">time since the first measurement</text>",
        x = LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        ty = HEIGHT - 4.0,
    );
}

/// The value range shown: the data and thresholds with some room; `0..1` when everything is
/// a fraction (success rates, booleans).
fn y_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if lo >= 0.0 && hi <= 1.0 {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < f64::EPSILON {
        return (lo - 1.0, hi + 1.0);
    }
    let pad = (hi - lo) * 0.1;
    (lo - pad, hi + pad)
}

/// 1, 2 or 5 times a power of ten, near `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// A number without trailing zeros: `0.95`, `12`, `1500`.
pub fn number(v: f64) -> String {
    if v.abs() >= 1000.0 {
        return format!("{v:.0}");
    }
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_with_result_become_thresholds() {
        let t = |op, value| Threshold { op, value };
        assert_eq!(thresholds("result[0] >= 0.95"), [t(">=", 0.95)]);
        assert_eq!(thresholds("0.5 > result"), [t("<", 0.5)]);
        assert_eq!(
            thresholds("result[0] > 1 && result[0] < 10"),
            [t(">", 1.0), t("<", 10.0)]
        );
        assert!(thresholds("result == true").is_empty());
        assert!(thresholds("len(result) > 0").is_empty());
    }

    #[test]
    fn values_are_read_as_numbers() {
        assert_eq!(numeric("[0.75]"), Some(0.75));
        assert_eq!(numeric("[1, 2]"), Some(1.0));
        assert_eq!(numeric("true"), Some(1.0));
        assert_eq!(numeric("12"), Some(12.0));
        assert_eq!(numeric("[]"), None);
        assert_eq!(numeric("NaN"), None);
    }

    #[test]
    fn axis_steps_and_labels_are_round() {
        assert!((nice_step(0.18) - 0.2).abs() < 1e-12);
        assert!((nice_step(30.0) - 50.0).abs() < 1e-12);
        assert_eq!(number(0.950), "0.95");
        assert_eq!(number(12.0), "12");
        assert_eq!(y_range([0.4, 0.95].into_iter()), (0.0, 1.0));
    }
}
