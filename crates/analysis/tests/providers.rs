//! Providers against local HTTP servers, and the runner end to end with them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use cutover_analysis::{
    Outcome, PrometheusProvider, Provider, Providers, RunControl, WebProvider, run,
};
use cutover_core::analysis::{Measured, ResultValue, RunMachine, RunMetric};
use cutover_core::api::{
    AnalysisPhase, DurationString, Metric, MetricProvider, PrometheusMetric, WebMetric,
    WebMetricMethod,
};

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn web_metric(url: String, json_path: Option<&str>, cond: &str) -> Metric {
    Metric {
        name: "web".into(),
        interval: None,
        initial_delay: None,
        count: None,
        success_condition: Some(cond.into()),
        failure_condition: None,
        failure_limit: None,
        inconclusive_limit: None,
        consecutive_error_limit: None,
        consecutive_success_limit: None,
        provider: MetricProvider {
            web: Some(WebMetric {
                url,
                json_path: json_path.map(str::to_string),
                timeout_seconds: Some(1),
                ..WebMetric::default()
            }),
            ..MetricProvider::default()
        },
    }
}

fn prom_metric(address: String, query: &str) -> Metric {
    let mut m = web_metric(String::new(), None, "result[0] >= 0.95");
    m.name = "prom".into();
    m.provider = MetricProvider {
        prometheus: Some(PrometheusMetric {
            address,
            query: query.into(),
            timeout: Some(2),
            ..PrometheusMetric::default()
        }),
        ..MetricProvider::default()
    };
    m
}

async fn value(p: &dyn Provider, m: &Metric) -> Measured {
    let Outcome { measured, .. } = p.measure(m).await;
    measured
}

#[tokio::test]
async fn web_provider_success_failure_timeout_bad_json_and_path_miss() {
    let app = Router::new()
        .route(
            "/ok",
            get(|| async { r#"{"data": {"rate": 0.99, "ok": true}}"# }),
        )
        .route("/bad", get(|| async { r#"{"data": {"rate": 0.5}}"# }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "{}"
            }),
        )
        .route("/notjson", get(|| async { "<html>oops</html>" }))
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/500",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down") }),
        );
    let base = format!("http://{}", serve(app).await);
    let web = WebProvider::new();

    let ok = web_metric(
        format!("{base}/ok"),
        Some("{$.data.rate}"),
        "result >= 0.95",
    );
    assert_eq!(
        value(&web, &ok).await,
        Measured::Value(ResultValue::Number(0.99))
    );
    let whole = web_metric(format!("{base}/ok"), None, "result.data.ok");
    assert!(matches!(
        value(&web, &whole).await,
        Measured::Value(ResultValue::Map(_))
    ));
    let bad = web_metric(format!("{base}/bad"), Some("$.data.rate"), "result >= 0.95");
    assert_eq!(
        value(&web, &bad).await,
        Measured::Value(ResultValue::Number(0.5))
    );

    let started = Instant::now();
    let slow = web_metric(format!("{base}/slow"), None, "true");
    let Measured::Error(e) = value(&web, &slow).await else {
        panic!("timeout expected")
    };
    assert!(e.contains("no answer within 1s"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let Measured::Error(e) =
        value(&web, &web_metric(format!("{base}/notjson"), None, "true")).await
    else {
        panic!()
    };
    assert!(e.contains("not JSON"), "{e}");
    let Measured::Error(e) = value(
        &web,
        &web_metric(format!("{base}/ok"), Some("{$.data.missing}"), "true"),
    )
    .await
    else {
        panic!()
    };
    assert!(e.contains("selected nothing"), "{e}");
    let Measured::Error(e) = value(&web, &web_metric(format!("{base}/500"), None, "true")).await
    else {
        panic!()
    };
    assert!(e.contains("500"), "{e}");

    let mut post_m = web_metric(format!("{base}/echo"), Some("$.n"), "result == 3");
    if let Some(w) = post_m.provider.web.as_mut() {
        w.method = Some(WebMetricMethod::Post);
        w.json_body = Some(serde_json::json!({"n": 3}));
    }
    assert_eq!(
        value(&web, &post_m).await,
        Measured::Value(ResultValue::Number(3.0))
    );
}

#[tokio::test]
async fn prometheus_answers_errors_and_shapes() {
    let app = Router::new().route(
        "/api/v1/query",
        get(|q: axum::extract::Query<std::collections::HashMap<String, String>>| async move {
            match q.get("query").map(String::as_str) {
                Some("vector") => r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.97"]}]}}"#.to_string(),
                Some("empty") => r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.to_string(),
                Some("scalar") => r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#.to_string(),
                _ => r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected \")\""}"#.to_string(),
            }
        }),
    );
    let base = format!("http://{}", serve(app).await);
    let p = PrometheusProvider::new();
    assert_eq!(
        value(&p, &prom_metric(base.clone(), "vector")).await,
        Measured::Value(ResultValue::List(vec![ResultValue::Number(0.97)]))
    );
    assert_eq!(
        value(&p, &prom_metric(base.clone(), "empty")).await,
        Measured::Value(ResultValue::List(vec![]))
    );
    let Measured::Value(ResultValue::Number(n)) =
        value(&p, &prom_metric(base.clone(), "scalar")).await
    else {
        panic!()
    };
    assert!(n.is_nan());
    let Measured::Error(e) = value(&p, &prom_metric(base, "sum(rate(x[1m])))")).await else {
        panic!()
    };
    assert!(e.contains("bad_data") && e.contains("parse error"), "{e}");
}

#[tokio::test]
async fn unreachable_prometheus_errors_the_run_after_the_consecutive_limit() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let mut m = prom_metric(format!("http://{addr}"), "up");
    m.interval = Some(DurationString::new("50ms"));
    let machine = RunMachine::new(
        vec![RunMetric {
            metric: m.clone(),
            dry_run: false,
            retention: 10,
        }],
        jiff::Timestamp::now(),
    )
    .expect("valid");
    let mut updates = 0;
    let status = run(
        machine,
        vec![m],
        Arc::new(Providers::default()),
        RunControl::default(),
        |_| updates += 1,
    )
    .await
    .expect("final status");
    assert_eq!(status.phase, Some(AnalysisPhase::Error));
    let r = &status.metric_results[0];
    assert_eq!((r.error, r.consecutive_error), (5, 5));
    assert!(
        r.measurements
            .iter()
            .all(|x| x.message.as_deref().unwrap_or("").contains("unreachable"))
    );
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or("")
            .contains("consecutiveErrors (5) > consecutiveErrorLimit (4)"),
        "{:?}",
        status.message
    );
    assert!(updates >= 5);
}

#[tokio::test]
async fn terminate_ends_an_endless_run_successfully() {
    let app = Router::new().route("/ok", get(|| async { r#"{"rate": 1}"# }));
    let base = format!("http://{}", serve(app).await);
    let mut m = web_metric(format!("{base}/ok"), Some("$.rate"), "result == 1");
    m.interval = Some(DurationString::new("20ms"));
    let machine = RunMachine::new(
        vec![RunMetric {
            metric: m.clone(),
            dry_run: false,
            retention: 3,
        }],
        jiff::Timestamp::now(),
    )
    .expect("valid");
    let control = RunControl::default();
    let stop = control.terminate.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.cancel();
    });
    let status = run(
        machine,
        vec![m],
        Arc::new(Providers::default()),
        control,
        |_| {},
    )
    .await
    .expect("final");
    assert_eq!(status.phase, Some(AnalysisPhase::Successful));
    let r = &status.metric_results[0];
    assert!(r.count >= 3, "{}", r.count);
    assert_eq!(r.measurements.len(), 3);
}

#[tokio::test]
async fn job_metrics_are_refused_on_one_host() {
    let mut m = web_metric(String::new(), None, "true");
    m.provider = MetricProvider::default();
    let Measured::Error(e) = value(&Providers::default(), &m).await else {
        panic!()
    };
    assert!(e.contains("no provider"), "{e}");
}

/// A stand-in for the Kubernetes Job provider: it judges each measurement itself.
struct Judging(cutover_core::analysis::Verdict);

impl Provider for Judging {
    fn measure<'a>(&'a self, _: &'a Metric) -> cutover_analysis::BoxFuture<'a, Outcome> {
        Box::pin(async move {
            Outcome {
                measured: Measured::Verdict(self.0, Some("judged".into())),
                metadata: Default::default(),
            }
        })
    }
}

#[tokio::test]
async fn job_metrics_go_to_the_plugged_job_provider_and_skip_conditions() {
    use cutover_core::analysis::Verdict;
    let mut m = web_metric(String::new(), None, "true");
    m.success_condition = None;
    m.provider = MetricProvider {
        job: Some(
            serde_json::from_value(serde_json::json!({ "spec": { "template": {} } })).expect("job"),
        ),
        ..MetricProvider::default()
    };
    let Measured::Error(e) = value(&Providers::default(), &m).await else {
        panic!("a job metric measured without a job provider")
    };
    assert_eq!(e, cutover_analysis::JOB_UNSUPPORTED);

    for (verdict, phase) in [
        (Verdict::Successful, AnalysisPhase::Successful),
        (Verdict::Failed, AnalysisPhase::Failed),
    ] {
        let providers = Providers {
            job: Some(Arc::new(Judging(verdict))),
            ..Providers::default()
        };
        let run_metric = RunMetric {
            metric: m.clone(),
            dry_run: false,
            retention: 10,
        };
        let machine = RunMachine::new(vec![run_metric], jiff::Timestamp::now()).expect("valid");
        let status = run(
            machine,
            vec![m.clone()],
            Arc::new(providers),
            RunControl::default(),
            |_| {},
        )
        .await
        .expect("final");
        assert_eq!(status.phase, Some(phase), "{status:?}");
        let measurement = &status.metric_results[0].measurements[0];
        assert_eq!(measurement.phase, phase);
        assert_eq!(measurement.message.as_deref(), Some("judged"));
    }
}
