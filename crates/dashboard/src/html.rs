//! Writing HTML safely: every value from a backend goes through [`Esc`]; markup is written
//! only as literals. Also the page frame (head, header, live status, footer) and the small
//! vocabulary of phases, icons and durations the pages share.

use std::fmt::{self, Write as _};

use cutover_core::api::{RolloutPhase, RolloutStatus};
use jiff::Timestamp;

/// A value escaped for HTML text and attribute values (quotes included).
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = 0;
        for (i, c) in self.0.char_indices() {
            let rep = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                // Line breaks as references: a region's HTML is one line of an event.
                '\n' => "&#10;",
                '\r' => "&#13;",
                _ => continue,
            };
            f.write_str(&self.0[last..i])?;
            f.write_str(rep)?;
            last = i + c.len_utf8();
        }
        f.write_str(&self.0[last..])
    }
}

/// A path segment or query value escaped for a URL (then for HTML by [`Esc`] when written
/// into an attribute).
pub fn url_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What every page needs to know to link and to describe itself.
pub struct Frame<'a> {
    /// Prefix of every link ("" or "/cutover").
    pub root: &'a str,
    /// What the dashboard shows ("single host, state …").
    pub source: &'a str,
    /// Mutations are refused.
    pub read_only: bool,
}

impl Frame<'_> {
    /// Opens a page: head with the embedded stylesheet and script, the site header, and the
    /// connection status line the script keeps up to date. `live` is the page's SSE address.
    pub fn open(&self, out: &mut String, title: &str, live: &str) {
        let root = Esc(self.root);
        let _ = write!(
            out,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · cutover</title>\
             <link rel=\"stylesheet\" href=\"{root}/assets/style.css\">\
             <script src=\"{root}/assets/app.js\" defer></script></head>\
             <body data-root=\"{root}\" data-live=\"{live}\" data-read-only=\"{ro}\">\
             <a class=\"skip\" href=\"#main\">Skip to content</a>\
             <header class=\"site\"><a class=\"brand\" href=\"{root}/\">cutover</a>\
             <span class=\"source\">{source}</span>{badge}\
             <p id=\"conn\" class=\"conn\" role=\"status\" aria-live=\"polite\">Live updates: connecting…</p>\
             </header><main id=\"main\" tabindex=\"-1\">",
            title = Esc(title),
            live = Esc(live),
            ro = self.read_only,
            source = Esc(self.source),
            badge = if self.read_only {
                "<span class=\"badge\">read-only</span>"
            } else {
                ""
            },
        );
    }

    /// Closes a page.
    pub fn close(&self, out: &mut String) {
        out.push_str("</main></body></html>\n");
    }
}

/// The icon, word and CSS class of a rollout's phase (the CLI's icons, so both read alike).
pub fn phase(s: &RolloutStatus) -> (&'static str, &'static str, &'static str) {
    match s.phase {
        Some(RolloutPhase::Healthy) => ("✔", "Healthy", "ok"),
        Some(RolloutPhase::Progressing) => ("◌", "Progressing", "progress"),
        // The CLI's `॥` is missing from common web fonts; `‖` reads the same.
        Some(RolloutPhase::Paused) => ("‖", "Paused", "paused"),
        Some(RolloutPhase::Degraded) => ("✖", "Degraded", "bad"),
        None => ("?", "Unknown", "unknown"),
    }
}

/// The icon and CSS class of an analysis phase (run, metric or measurement).
pub fn analysis_phase(phase: &str) -> (&'static str, &'static str) {
    match phase {
        "Successful" => ("✔", "ok"),
        "Failed" => ("✖", "bad"),
        "Error" => ("⚠", "warn"),
        "Inconclusive" => ("?", "unknown"),
        "Running" => ("◌", "progress"),
        "Pending" => ("◷", "unknown"),
        _ => ("•", "unknown"),
    }
}

/// A status pill: icon (hidden from screen readers, the word says it) and word.
pub fn pill(out: &mut String, icon: &str, word: &str, class: &str) {
    let _ = write!(
        out,
        "<span class=\"pill {class}\"><span aria-hidden=\"true\">{icon}</span> {}</span>",
        Esc(word)
    );
}

/// A point in time with its age: `<time>` carries the instant, the script keeps the age
/// current between updates.
pub fn age(out: &mut String, at: Option<Timestamp>, now: Timestamp) {
    match at {
        Some(t) => {
            let _ = write!(
                out,
                "<time datetime=\"{t}\" data-age title=\"{t}\">{}</time>",
                compact_duration((now.as_second() - t.as_second()).max(0))
            );
        }
        None => out.push_str("<span class=\"muted\">unknown</span>"),
    }
}

/// kubectl's compact durations (`45s`, `3m20s`, `5h10m`, `2d3h`), as the CLI prints ages.
pub use cutover_local::api::human_duration as compact_duration;

/// Seconds with a precision that suits their size: `0.412 s`, `12.3 s`, `4m10s`.
pub fn seconds(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.3} s")
    } else if value < 120.0 {
        format!("{value:.1} s")
    } else {
        // Whole seconds are enough past two minutes.
        compact_duration(value.round() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_for_text_and_attributes() {
        assert_eq!(
            Esc("<script>alert('x')</script> & \"q\"").to_string(),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(Esc("plain ✔").to_string(), "plain ✔");
        assert_eq!(url_part("a b/c?d"), "a%20b%2Fc%3Fd");
    }

    #[test]
    fn durations_read_as_kubectl_prints_them() {
        for (secs, text) in [(0, "0s"), (200, "3m20s"), (1500, "25m"), (18_600, "5h10m")] {
            assert_eq!(compact_duration(secs), text);
        }
        assert_eq!(seconds(0.4123), "0.412 s");
        assert_eq!(seconds(300.0), "5m");
    }
}
