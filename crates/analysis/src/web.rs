//! `provider.web`: an HTTP request whose JSON answer, narrowed by `jsonPath`, is the value.
//! Plain HTTP only (no TLS backend in this build): `https://` URLs are refused clearly.

use std::collections::BTreeMap;
use std::time::Duration;

use cutover_core::analysis::{Measured, ResultValue};
use cutover_core::api::{DEFAULT_WEB_TIMEOUT_SECONDS, Metric, WebMetric, WebMetricMethod};
use serde_json::Value;
use serde_json_path::JsonPath;

use crate::{BoxFuture, Outcome, Provider};

/// Calls HTTP endpoints.
#[derive(Clone, Default)]
pub struct WebProvider {
    client: reqwest::Client,
}

impl WebProvider {
    /// A provider with its own connection pool.
    pub fn new() -> Self {
        Self {
            client: reqwest::Client::new(),
        }
    }

    async fn call(&self, w: &WebMetric) -> Result<ResultValue, String> {
        if w.url.starts_with("https://") {
            return Err(format!(
                "web metric {}: https is not supported by this build of cutover; use http",
                w.url
            ));
        }
        let path = json_path(w.json_path.as_deref())?;
        let timeout = w
            .timeout_seconds
            .unwrap_or(DEFAULT_WEB_TIMEOUT_SECONDS)
            .max(1)
            .unsigned_abs();
        let timeout = Duration::from_secs(timeout);
        let method = match w.method.unwrap_or(WebMetricMethod::Get) {
            WebMetricMethod::Get => reqwest::Method::GET,
            WebMetricMethod::Post => reqwest::Method::POST,
            WebMetricMethod::Put => reqwest::Method::PUT,
        };
        let mut req = self.client.request(method, &w.url).timeout(timeout);
        for h in &w.headers {
            req = req.header(&h.key, &h.value);
        }
        if let Some(body) = &w.json_body {
            req = req.json(body);
        } else if let Some(body) = &w.body {
            req = req.body(body.clone());
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                format!("{}: no answer within {}s", w.url, timeout.as_secs())
            } else if e.is_builder() {
                format!("{}: invalid request: {e}", w.url)
            } else {
                format!("{} unreachable: {e}", w.url)
            }
        })?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("{}: reading the answer: {e}", w.url))?;
        if !status.is_success() {
            return Err(format!(
                "{} answered {status}: {}",
                w.url,
                body.chars().take(200).collect::<String>()
            ));
        }
        let json: Value = serde_json::from_str(&body).map_err(|e| {
            format!(
                "{} answered with a body that is not JSON ({e}): {}",
                w.url,
                body.chars().take(200).collect::<String>()
            )
        })?;
        let nodes = path.query(&json).all();
        match nodes.as_slice() {
            [] => Err(format!(
                "jsonPath {} selected nothing in the answer of {}",
                w.json_path.as_deref().unwrap_or("{$}"),
                w.url
            )),
            [one] => Ok(ResultValue::from(*one)),
            many => Ok(ResultValue::List(
                many.iter().map(|v| ResultValue::from(*v)).collect(),
            )),
        }
    }
}

/// Argo writes Kubernetes-style paths in braces (`{$.data.ok}`); the braces are dropped and a
/// missing `$` added, then the path is read as RFC 9535 JSONPath.
fn json_path(text: Option<&str>) -> Result<JsonPath, String> {
    let raw = text.unwrap_or("{$}").trim();
    let inner = raw
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(raw)
        .trim();
    let full = if inner.starts_with('$') {
        inner.to_string()
    } else if inner.starts_with('.') || inner.starts_with('[') {
        format!("${inner}")
    } else {
        format!("$.{inner}")
    };
    JsonPath::parse(&full).map_err(|e| format!("jsonPath {raw:?} is not valid: {e}"))
}

impl Provider for WebProvider {
    fn measure<'a>(&'a self, metric: &'a Metric) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let Some(w) = &metric.provider.web else {
                return Outcome::error("not a web metric");
            };
            let mut metadata = BTreeMap::new();
            metadata.insert("url".to_string(), w.url.clone());
            let measured = match self.call(w).await {
                Ok(v) => Measured::Value(v),
                Err(e) => Measured::Error(e),
            };
            Outcome { measured, metadata }
        })
    }
}
