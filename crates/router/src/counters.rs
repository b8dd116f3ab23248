//! A read API over the router's own per-revision counters, for the builtin analysis provider
//! (success rate, latency quantiles and request rate without a Prometheus server).
//!
//! prometheus-client offers no reader for histogram buckets, so the values are read back from
//! the router's own OpenMetrics text. Analysis reads a few times a minute, far off the request
//! path, so the cost of encoding does not matter.

/// Cumulative counters of one (service, revision) since the router started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RevisionCounters {
    /// Responses by status class: index 0 is 1xx … index 4 is 5xx.
    pub by_class: [u64; 5],
    /// Latency histogram: (upper bound in seconds, cumulative count), ascending, `+Inf` last.
    pub latency_buckets: Vec<(f64, u64)>,
}

impl RevisionCounters {
    /// All responses counted.
    pub fn total(&self) -> u64 {
        self.by_class.iter().sum()
    }
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = labels.find(&key)? + key.len();
    let end = labels[start..].find('"')?;
    Some(&labels[start..start + end])
}

/// Extracts the counters of `service`/`revision` from OpenMetrics text.
pub(crate) fn parse(text: &str, service: &str, revision: &str) -> Option<RevisionCounters> {
    let mut out = RevisionCounters::default();
    let mut found = false;
    for line in text.lines() {
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = head.split_once('{') else {
            continue;
        };
        if label(labels, "service") != Some(service) || label(labels, "revision") != Some(revision)
        {
            continue;
        }
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        // Counters are integral; the float form is how the text carries them.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let count = value.max(0.0) as u64;
        if name.ends_with("requests_total") {
            let index = match label(labels, "code_class") {
                Some("1xx") => 0,
                Some("2xx") => 1,
                Some("3xx") => 2,
                Some("4xx") => 3,
                Some("5xx") => 4,
                _ => continue,
            };
            out.by_class[index] = count;
            found = true;
        } else if name.ends_with("request_duration_seconds_bucket") {
            let le = match label(labels, "le") {
                Some("+Inf") => f64::INFINITY,
                Some(x) => match x.parse() {
                    Ok(v) => v,
                    Err(_) => continue,
                },
                None => continue,
            };
            out.latency_buckets.push((le, count));
            found = true;
        }
    }
    out.latency_buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_revisions_counters() {
        let text = "# TYPE cutover_requests counter\n\
cutover_requests_total{service=\"web\",revision=\"abc\",code_class=\"2xx\"} 8\n\
cutover_requests_total{service=\"web\",revision=\"abc\",code_class=\"5xx\"} 2\n\
cutover_requests_total{service=\"web\",revision=\"def\",code_class=\"2xx\"} 100\n\
cutover_request_duration_seconds_bucket{le=\"0.1\",service=\"web\",revision=\"abc\"} 9\n\
cutover_request_duration_seconds_bucket{le=\"+Inf\",service=\"web\",revision=\"abc\"} 10\n";
        let c = parse(text, "web", "abc").expect("found");
        assert_eq!(c.by_class, [0, 8, 0, 0, 2]);
        assert_eq!(c.total(), 10);
        assert_eq!(c.latency_buckets, vec![(0.1, 9), (f64::INFINITY, 10)]);
        assert!(parse(text, "web", "zzz").is_none());
    }
}
