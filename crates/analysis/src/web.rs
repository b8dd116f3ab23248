//! `provider.web`: an HTTP request whose JSON answer, narrowed by `jsonPath`, is the value.
//! `http://` and `https://` (see [`crate::http`]); `insecure: true` skips the certificate check.

use std::collections::BTreeMap;
use std::time::Duration;

use cutover_core::analysis::{Measured, ResultValue};
use cutover_core::api::{DEFAULT_WEB_TIMEOUT_SECONDS, Metric, WebMetric, WebMetricMethod};
use serde_json::Value;
use serde_json_path::JsonPath;

use crate::http::{HttpClient, SendError};
use crate::{BoxFuture, Outcome, Provider};

/// Calls HTTP endpoints.
#[derive(Clone, Default)]
pub struct WebProvider {
    client: HttpClient,
}

impl WebProvider {
    /// A provider with its own connection pools.
    pub fn new() -> Self {
        Self {
            client: HttpClient::new(),
        }
    }

    async fn call(&self, w: &WebMetric) -> Result<ResultValue, String> {
        let path = json_path(w.json_path.as_deref())?;
        let timeout = w
            .timeout_seconds
            .unwrap_or(DEFAULT_WEB_TIMEOUT_SECONDS)
            .max(1)
            .unsigned_abs();
        let timeout = Duration::from_secs(timeout);
        let method = match w.method.unwrap_or(WebMetricMethod::Get) {
            WebMetricMethod::Get => http::Method::GET,
            WebMetricMethod::Post => http::Method::POST,
            WebMetricMethod::Put => http::Method::PUT,
        };
        let mut req = http::Request::builder().method(method).uri(&w.url);
        for h in &w.headers {
            req = req.header(&h.key, &h.value);
        }
        let body = if let Some(json) = &w.json_body {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
            json.to_string()
        } else {
            w.body.clone().unwrap_or_default()
        };
        let req = req
            .body(body.into())
            .map_err(|e| format!("{}: invalid request: {e}", w.url))?;
        let insecure = w.insecure.unwrap_or(false);
        let (status, body) =
            self.client
                .send(req, insecure, timeout)
                .await
                .map_err(|e| match e {
                    SendError::Timeout => {
                        format!("{}: no answer within {}s", w.url, timeout.as_secs())
                    }
                    SendError::Failed(e) => format!("{} unreachable: {e}", w.url),
                })?;
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
