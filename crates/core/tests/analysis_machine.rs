//! The AnalysisRun state machine: one table row per rule (limits, count/interval, phases,
//! early end, dry run, retention, terminate).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use cutover_core::analysis::{Arrival, Measured, ResultValue, RunMachine, RunMetric};
use cutover_core::api::{AnalysisPhase, DurationString, Metric, MetricProvider};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use AnalysisPhase::{Error, Failed, Inconclusive, Running, Successful};

fn metric(name: &str) -> Metric {
    Metric {
        name: name.into(),
        interval: None,
        initial_delay: None,
        count: None,
        success_condition: Some("result[0] >= 0.95".into()),
        failure_condition: None,
        failure_limit: None,
        inconclusive_limit: None,
        consecutive_error_limit: None,
        consecutive_success_limit: None,
        provider: MetricProvider::default(),
    }
}

fn every(mut m: Metric, interval: &str, count: Option<i32>) -> Metric {
    m.interval = Some(DurationString::new(interval));
    m.count = count.map(IntOrString::Int);
    m
}

fn rm(m: Metric) -> RunMetric {
    RunMetric {
        metric: m,
        dry_run: false,
        retention: 10,
    }
}

fn good() -> Measured {
    Measured::Value(ResultValue::List(vec![ResultValue::Number(0.99)]))
}
fn bad() -> Measured {
    Measured::Value(ResultValue::List(vec![ResultValue::Number(0.5)]))
}
fn err() -> Measured {
    Measured::Error("connection refused".into())
}

fn t0() -> Timestamp {
    Timestamp::from_second(1_700_000_000).expect("time")
}

/// Steps the machine through a script of outcomes per metric; returns the machine and the
/// times measurements were taken (seconds after start) per metric.
fn drive(
    metrics: Vec<RunMetric>,
    script: &[(&str, Vec<Measured>)],
    terminate_after: Option<u64>,
) -> (RunMachine, HashMap<String, Vec<u64>>) {
    let mut m = RunMachine::new(metrics, t0()).expect("valid metrics");
    let mut script: HashMap<String, VecDeque<Measured>> = script
        .iter()
        .map(|(n, v)| ((*n).to_string(), v.iter().cloned().collect()))
        .collect();
    let mut taken: HashMap<String, Vec<u64>> = HashMap::new();
    let mut now = t0();
    let mut arrivals = Vec::new();
    for _ in 0..200 {
        let secs = u64::try_from(now.as_second() - t0().as_second()).expect("forward");
        if terminate_after.is_some_and(|t| secs >= t) {
            m.terminate();
        }
        let step = m.step(now, std::mem::take(&mut arrivals));
        if step.done {
            break;
        }
        let mut fed = false;
        for name in step.due {
            taken.entry(name.clone()).or_default().push(secs);
            if let Some(outcome) = script.get_mut(&name).and_then(VecDeque::pop_front) {
                arrivals.push(Arrival {
                    metric: name,
                    finished_at: now,
                    outcome,
                    metadata: BTreeMap::new(),
                });
                fed = true;
            }
        }
        if fed {
            continue;
        }
        match step.next_at {
            Some(at) => now = at,
            None if terminate_after.is_some() => {
                now = now
                    .checked_add(jiff::SignedDuration::from_secs(1))
                    .expect("time")
            }
            None => break,
        }
    }
    (m, taken)
}

fn phase_of(m: &RunMachine, name: &str) -> AnalysisPhase {
    m.status()
        .metric_results
        .iter()
        .find(|r| r.name == name)
        .expect("metric")
        .phase
}

#[test]
fn limits_and_counts_follow_argo() {
    struct Row {
        name: &'static str,
        metric: Metric,
        outcomes: Vec<Measured>,
        metric_phase: AnalysisPhase,
        measurements: usize,
    }
    let with = |f: fn(&mut Metric)| {
        let mut m = every(metric("m"), "1s", Some(5));
        f(&mut m);
        m
    };
    let rows = vec![
        Row {
            name: "no interval, no count: one measurement",
            metric: metric("m"),
            outcomes: vec![good(), good()],
            metric_phase: Successful,
            measurements: 1,
        },
        Row {
            name: "one failure with failureLimit 0 fails",
            metric: metric("m"),
            outcomes: vec![bad()],
            metric_phase: Failed,
            measurements: 1,
        },
        Row {
            name: "count reached, all good: Successful",
            metric: every(metric("m"), "1s", Some(3)),
            outcomes: vec![good(); 3],
            metric_phase: Successful,
            measurements: 3,
        },
        Row {
            name: "failure ends early",
            metric: every(metric("m"), "1s", Some(5)),
            outcomes: vec![good(), bad(), good()],
            metric_phase: Failed,
            measurements: 2,
        },
        Row {
            name: "failureLimit 1 tolerates one",
            metric: with(|m| m.failure_limit = Some(IntOrString::Int(1))),
            outcomes: vec![bad(), good(), good(), good(), good()],
            metric_phase: Successful,
            measurements: 5,
        },
        Row {
            name: "failureLimit 1: the second failure fails",
            metric: with(|m| m.failure_limit = Some(IntOrString::Int(1))),
            outcomes: vec![bad(), good(), bad()],
            metric_phase: Failed,
            measurements: 3,
        },
        Row {
            name: "consecutiveErrorLimit 4: Error on the 5th",
            metric: with(|_| {}),
            outcomes: vec![err(); 6],
            metric_phase: Error,
            measurements: 5,
        },
        Row {
            name: "errors reset by a success do not add up",
            metric: with(|_| {}),
            outcomes: vec![
                err(),
                err(),
                err(),
                err(),
                good(),
                err(),
                err(),
                good(),
                good(),
                good(),
                good(),
            ],
            metric_phase: Successful,
            measurements: 10,
        },
        Row {
            name: "consecutiveErrorLimit 0: the first error",
            metric: with(|m| m.consecutive_error_limit = Some(IntOrString::Int(0))),
            outcomes: vec![err()],
            metric_phase: Error,
            measurements: 1,
        },
        Row {
            name: "consecutiveSuccessLimit ends early",
            metric: with(|m| {
                m.consecutive_success_limit = Some(IntOrString::Int(2));
                m.failure_limit = Some(IntOrString::Int(-1));
            }),
            outcomes: vec![bad(), good(), good()],
            metric_phase: Successful,
            measurements: 3,
        },
        Row {
            name: "failureLimit -1 + consecutiveSuccessLimit not reached: Failed",
            metric: with(|m| {
                m.consecutive_success_limit = Some(IntOrString::Int(3));
                m.failure_limit = Some(IntOrString::Int(-1));
            }),
            outcomes: vec![good(), bad(), good(), bad(), good()],
            metric_phase: Failed,
            measurements: 5,
        },
        Row {
            name: "both limits, neither hit at count: Inconclusive",
            metric: with(|m| {
                m.consecutive_success_limit = Some(IntOrString::Int(3));
                m.failure_limit = Some(IntOrString::Int(3));
            }),
            outcomes: vec![good(), bad(), good(), bad(), good()],
            metric_phase: Inconclusive,
            measurements: 5,
        },
        Row {
            name: "inconclusiveLimit 0: first inconclusive",
            metric: with(|m| {
                m.failure_condition = Some("result[0] < 0.5".into());
            }),
            outcomes: vec![
                good(),
                Measured::Value(ResultValue::List(vec![ResultValue::Number(0.7)])),
            ],
            metric_phase: Inconclusive,
            measurements: 2,
        },
        Row {
            name: "inconclusiveLimit 1 tolerates one",
            metric: with(|m| {
                m.failure_condition = Some("result[0] < 0.5".into());
                m.inconclusive_limit = Some(IntOrString::Int(1));
            }),
            outcomes: vec![
                good(),
                Measured::Value(ResultValue::List(vec![ResultValue::Number(0.7)])),
                good(),
                good(),
                good(),
            ],
            metric_phase: Successful,
            measurements: 5,
        },
        Row {
            name: "condition error (empty vector) is an Error measurement",
            metric: with(|m| m.consecutive_error_limit = Some(IntOrString::Int(0))),
            outcomes: vec![Measured::Value(ResultValue::List(vec![]))],
            metric_phase: Error,
            measurements: 1,
        },
        Row {
            name: "string count from an argument",
            metric: {
                let mut m = every(metric("m"), "1s", None);
                m.count = Some(IntOrString::String("2".into()));
                m
            },
            outcomes: vec![good(); 3],
            metric_phase: Successful,
            measurements: 2,
        },
    ];
    for row in rows {
        let (m, _) = drive(vec![rm(row.metric)], &[("m", row.outcomes)], None);
        let r = &m.status().metric_results[0];
        assert_eq!(r.phase, row.metric_phase, "{}: {:?}", row.name, r.message);
        assert_eq!(r.measurements.len(), row.measurements, "{}", row.name);
        assert_eq!(
            m.status().phase,
            Some(row.metric_phase),
            "{}: run phase",
            row.name
        );
    }
}

#[test]
fn counters_count_errors_apart() {
    let (m, _) = drive(
        vec![rm(every(metric("m"), "1s", Some(3)))],
        &[("m", vec![err(), good(), bad()])],
        None,
    );
    let r = &m.status().metric_results[0];
    assert_eq!((r.count, r.successful, r.failed, r.error), (2, 1, 1, 1));
}

#[test]
fn schedule_initial_delay_interval_and_error_retry() {
    let mut m = every(metric("m"), "5s", Some(3));
    m.initial_delay = Some(DurationString::new("10s"));
    let (_, taken) = drive(
        vec![rm(m)],
        &[("m", vec![good(), err(), good(), good()])],
        None,
    );
    // 10 s delay, then every 5 s; an error retries after the interval and is not counted.
    assert_eq!(taken["m"], vec![10, 15, 20, 25]);
    let (_, taken) = drive(
        vec![rm({
            let mut m = metric("m");
            m.count = Some(IntOrString::Int(1));
            m
        })],
        &[("m", vec![err(), good()])],
        None,
    );
    // No interval: an error retries after 10 s.
    assert_eq!(taken["m"], vec![0, 10]);
}

#[test]
fn interval_only_runs_until_terminated_then_succeeds() {
    let (m, taken) = drive(
        vec![rm(every(metric("m"), "1s", None))],
        &[("m", vec![good(); 100])],
        Some(5),
    );
    assert_eq!(m.status().phase, Some(Successful));
    assert!(taken["m"].len() >= 5, "{:?}", taken["m"]);
    assert_eq!(phase_of(&m, "m"), Successful);
}

#[test]
fn a_terminated_metric_that_only_saw_errors_is_an_error() {
    // Four errors, below consecutiveErrorLimit (4), then terminated: not a success.
    let (m, _) = drive(
        vec![rm(every(metric("m"), "1s", None))],
        &[("m", vec![err(); 4])],
        Some(35),
    );
    assert_eq!(phase_of(&m, "m"), AnalysisPhase::Error, "{:?}", m.status());
    assert_eq!(m.status().phase, Some(AnalysisPhase::Error));
    let r = &m.status().metric_results[0];
    assert_eq!((r.successful, r.error), (0, 4));
}

#[test]
fn a_terminated_run_says_why() {
    let mut m = RunMachine::new(vec![rm(every(metric("m"), "1s", None))], t0()).expect("valid");
    m.step(t0(), Vec::new());
    m.terminate_with(Some(
        "terminated: promote --full skipped the remaining analysis".into(),
    ));
    m.step(t0(), Vec::new());
    assert_eq!(m.status().phase, Some(Successful));
    assert_eq!(
        m.status().message.as_deref(),
        Some("terminated: promote --full skipped the remaining analysis")
    );
}

#[test]
fn terminate_keeps_an_earlier_failure() {
    let mut m = every(metric("m"), "1s", None);
    m.failure_limit = Some(IntOrString::Int(5));
    let (run, _) = drive(
        vec![rm(m), rm(every(metric("n"), "1s", Some(1)))],
        &[("m", vec![bad(), good(), good()]), ("n", vec![bad()])],
        Some(2),
    );
    assert_eq!(run.status().phase, Some(Failed));
}

#[test]
fn run_phase_is_the_worst_and_ends_early() {
    // a fails at once; b (measuring forever) is stopped and counted Successful; run Failed.
    let (m, taken) = drive(
        vec![rm(metric("a")), rm(every(metric("b"), "1s", None))],
        &[("a", vec![bad()]), ("b", vec![good(); 50])],
        None,
    );
    assert_eq!(m.status().phase, Some(Failed));
    assert!(taken["b"].len() <= 2, "ended early: {:?}", taken["b"]);
    assert!(
        m.status()
            .message
            .as_deref()
            .unwrap_or("")
            .contains("\"a\"")
    );
    // Error is worse than Inconclusive.
    let mut inc = metric("i");
    inc.failure_condition = Some("result[0] < 0.1".into());
    let mut e = metric("e");
    e.consecutive_error_limit = Some(IntOrString::Int(0));
    let (m, _) = drive(
        vec![rm(inc), rm(e)],
        &[("i", vec![bad()]), ("e", vec![err()])],
        None,
    );
    assert_eq!(m.status().phase, Some(Error));
    // Still measuring: Running.
    let mut m = RunMachine::new(vec![rm(metric("a"))], t0()).expect("valid");
    let step = m.step(t0(), vec![]);
    assert_eq!(step.due, vec!["a".to_string()]);
    assert_eq!(m.status().phase, Some(Running));
    assert_eq!(m.status().metric_results[0].measurements[0].phase, Running);
}

#[test]
fn dry_run_metrics_do_not_count() {
    let dry = RunMetric {
        metric: metric("dry"),
        dry_run: true,
        retention: 10,
    };
    let (m, _) = drive(
        vec![dry, rm(metric("real"))],
        &[("dry", vec![bad()]), ("real", vec![good()])],
        None,
    );
    assert_eq!(m.status().phase, Some(Successful));
    assert_eq!(phase_of(&m, "dry"), Failed);
    let dry = m.status().dry_run_summary.clone().expect("dry summary");
    assert_eq!((dry.count, dry.failed), (1, 1));
    // Only dry-run metrics: the run succeeds whatever they say.
    let dry = RunMetric {
        metric: metric("dry"),
        dry_run: true,
        retention: 10,
    };
    let (m, _) = drive(vec![dry], &[("dry", vec![bad()])], None);
    assert_eq!(m.status().phase, Some(Successful));
}

#[test]
fn measurement_retention_keeps_the_newest() {
    let keep2 = RunMetric {
        metric: every(metric("m"), "1s", Some(5)),
        dry_run: false,
        retention: 2,
    };
    let (m, _) = drive(vec![keep2], &[("m", vec![good(); 5])], None);
    let r = &m.status().metric_results[0];
    assert_eq!((r.measurements.len(), r.count, r.phase), (2, 5, Successful));
}

#[test]
fn bad_metrics_are_refused_before_measuring() {
    for (m, want) in [
        (
            {
                let mut m = metric("m");
                m.count = Some(IntOrString::Int(3));
                m
            },
            "needs an interval",
        ),
        (
            {
                let mut m = metric("m");
                m.success_condition = Some("result[0] >=".into());
                m
            },
            "successCondition",
        ),
        (
            {
                let mut m = metric("m");
                m.interval = Some(DurationString::new("5 parsecs"));
                m
            },
            "interval",
        ),
        (
            {
                let mut m = metric("m");
                m.failure_condition = Some("reslt > 1".into());
                m
            },
            "unknown variable `reslt`",
        ),
    ] {
        let e = RunMachine::new(vec![rm(m)], t0()).err().expect("refused");
        assert!(e.to_string().contains(want), "{e}");
    }
}

#[test]
fn resume_retakes_an_in_flight_measurement() {
    let metrics = vec![rm(every(metric("m"), "1s", Some(2)))];
    let mut m = RunMachine::new(metrics.clone(), t0()).expect("valid");
    let s = m.step(t0(), vec![]);
    assert_eq!(s.due.len(), 1);
    let stored = m.status().clone();
    let mut resumed = RunMachine::resume(metrics, stored, false).expect("valid");
    let s = resumed.step(t0(), vec![]);
    assert_eq!(s.due, vec!["m".to_string()]);
    let _ = Duration::ZERO;
}
