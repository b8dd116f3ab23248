//! `provider.prometheus`: an instant query (`/api/v1/query`) or a range query
//! (`/api/v1/query_range`). A vector or a matrix becomes a list of numbers (`result[0]`), a
//! scalar a number. `http://` and `https://` addresses (see [`crate::http`]); `insecure: true`
//! skips the certificate check.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use cutover_core::analysis::{Measured, ResultValue};
use cutover_core::api::{DurationString, Metric, PrometheusMetric};
use jiff::Timestamp;
use serde_json::Value;

use crate::http::{HttpClient, SendError, error_chain};
use crate::{BoxFuture, Outcome, Provider};

/// Query timeout when the metric gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Queries Prometheus servers.
#[derive(Clone, Default)]
pub struct PrometheusProvider {
    client: HttpClient,
}

impl PrometheusProvider {
    /// A provider with its own connection pools.
    pub fn new() -> Self {
        Self {
            client: HttpClient::new(),
        }
    }

    async fn query(&self, p: &PrometheusMetric) -> Result<ResultValue, String> {
        let base = p.address.trim_end_matches('/');
        let (path, mut params) = match &p.range_query {
            None => ("/api/v1/query", vec![("query", p.query.clone())]),
            Some(r) => {
                let now = Timestamp::now();
                let start = time_expr(&r.start, now)?;
                let end = time_expr(&r.end, now)?;
                let step = match DurationString::new(r.step.clone()).parse() {
                    Ok(d) => d.as_secs_f64().to_string(),
                    Err(_) => r.step.clone(),
                };
                (
                    "/api/v1/query_range",
                    vec![
                        ("query", p.query.clone()),
                        ("start", seconds(start)),
                        ("end", seconds(end)),
                        ("step", step),
                    ],
                )
            }
        };
        let timeout = p
            .timeout
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| *t > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        params.push(("timeout", format!("{}s", timeout.as_secs())));
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let mut req = http::Request::get(format!("{base}{path}?{query}"));
        for h in &p.headers {
            req = req.header(&h.key, &h.value);
        }
        if let Some(auth) = &p.authentication {
            if let Some(b) = &auth.basic {
                let credentials = BASE64.encode(format!("{}:{}", b.username, b.password));
                req = req.header(http::header::AUTHORIZATION, format!("Basic {credentials}"));
            }
            if let Some(t) = &auth.bearer_token {
                req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
            }
        }
        let req = req
            .body(Default::default())
            .map_err(|e| format!("prometheus address {base:?}: {}", error_chain(&e)))?;
        let insecure = p.insecure.unwrap_or(false);
        let (status, body) =
            self.client
                .send(req, insecure, timeout)
                .await
                .map_err(|e| match e {
                    SendError::Timeout => format!(
                        "prometheus at {base}: no answer within {}s",
                        timeout.as_secs()
                    ),
                    SendError::Failed(e) => format!("prometheus at {base} unreachable: {e}"),
                })?;
        let json: Value = serde_json::from_str(&body).map_err(|_| {
            format!(
                "prometheus at {base} answered {status} with a body that is not JSON: {}",
                truncate(&body)
            )
        })?;
        if json.get("status").and_then(Value::as_str) != Some("success") {
            let kind = json
                .get("errorType")
                .and_then(Value::as_str)
                .unwrap_or("error");
            let msg = json.get("error").and_then(Value::as_str).unwrap_or("");
            return Err(format!("prometheus rejected the query ({kind}): {msg}"));
        }
        parse_data(json.get("data").unwrap_or(&Value::Null))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

fn seconds(t: Timestamp) -> String {
    format!("{:.3}", t.as_millisecond() as f64 / 1000.0)
}

/// `now()`, `now() - duration("1h")`, an RFC 3339 time or Unix seconds.
fn time_expr(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let t = text.trim();
    if t == "now()" {
        return Ok(now);
    }
    if let Some(rest) = t.strip_prefix("now()") {
        let rest = rest.trim();
        let (sign, rest) = match rest.strip_prefix('-') {
            Some(r) => (-1, r.trim()),
            None => (1, rest.strip_prefix('+').unwrap_or(rest).trim()),
        };
        let inner = rest
            .strip_prefix("duration(")
            .and_then(|r| r.strip_suffix(')'))
            .map(|r| r.trim().trim_matches(['"', '\'']))
            .ok_or_else(|| format!("range query time {text:?}: write now(), now() - duration(\"1h\"), an RFC 3339 time or Unix seconds"))?;
        let d = DurationString::new(inner)
            .parse()
            .map_err(|e| format!("range query time {text:?}: {e}"))?;
        let d = jiff::SignedDuration::try_from(d).map_err(|e| e.to_string())?;
        return now
            .checked_add(if sign < 0 { -d } else { d })
            .map_err(|e| e.to_string());
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts);
    }
    t.parse::<f64>()
        .ok()
        .and_then(|s| Timestamp::from_millisecond((s * 1000.0) as i64).ok())
        .ok_or_else(|| format!("range query time {text:?}: write now(), now() - duration(\"1h\"), an RFC 3339 time or Unix seconds"))
}

fn sample(v: &Value) -> Result<f64, String> {
    // A sample is [time, "value"]; the value is text so NaN and ±Inf survive JSON.
    let text = v
        .get(1)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("unexpected sample {v}"))?;
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        t => t
            .parse()
            .map_err(|_| format!("sample value {t:?} is not a number")),
    }
}

/// `data` of a Prometheus answer → the condition's `result`.
pub fn parse_data(data: &Value) -> Result<ResultValue, String> {
    let kind = data.get("resultType").and_then(Value::as_str).unwrap_or("");
    let result = data.get("result").unwrap_or(&Value::Null);
    let empty = Vec::new();
    let items = result.as_array().unwrap_or(&empty);
    Ok(match kind {
        "vector" => ResultValue::List(
            items
                .iter()
                .map(|s| sample(s.get("value").unwrap_or(&Value::Null)).map(ResultValue::Number))
                .collect::<Result<_, _>>()?,
        ),
        "matrix" => {
            let mut out = Vec::new();
            for series in items {
                for v in series
                    .get("values")
                    .and_then(Value::as_array)
                    .unwrap_or(&empty)
                {
                    out.push(ResultValue::Number(sample(v)?));
                }
            }
            ResultValue::List(out)
        }
        "scalar" => ResultValue::Number(sample(result)?),
        "string" => ResultValue::String(
            result
                .get(1)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ),
        other => return Err(format!("unsupported Prometheus result type {other:?}")),
    })
}

impl Provider for PrometheusProvider {
    fn measure<'a>(&'a self, metric: &'a Metric) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let Some(p) = &metric.provider.prometheus else {
                return Outcome::error("not a prometheus metric");
            };
            let mut metadata = BTreeMap::new();
            metadata.insert("resolvedPrometheusQuery".to_string(), p.query.clone());
            let measured = match self.query(p).await {
                Ok(v) => Measured::Value(v),
                Err(e) => Measured::Error(e),
            };
            Outcome { measured, metadata }
        })
    }
}
