//! Conditions: Argo's expression forms evaluated through CEL, the verdict rules, and how
//! "no data" behaves.

use cutover_core::analysis::{Condition, ResultValue, Verdict, judge};
use serde_json::json;

fn vector(values: &[f64]) -> ResultValue {
    ResultValue::List(values.iter().map(|v| ResultValue::Number(*v)).collect())
}

fn eval(cond: &str, value: &ResultValue) -> Result<bool, String> {
    Condition::compile(cond)
        .map_err(|e| e.to_string())?
        .evaluate(value)
}

#[test]
fn argo_forms_evaluate() {
    let v = vector(&[0.97, 0.93]);
    let web = ResultValue::from(
        &json!({"status": "ok", "rate": 0.99, "items": [1, 2, 3], "nested": {"n": null}}),
    );
    let cases: Vec<(&str, &ResultValue, bool)> = vec![
        ("result[0] >= 0.95", &v, true),
        ("result[1] >= 0.95", &v, false),
        ("len(result) == 2", &v, true),
        ("all(result, {# > 0.9})", &v, true),
        ("all(result, {# > 0.95})", &v, false),
        ("any(result, {# > 0.95})", &v, true),
        ("none(result, {# > 0.99})", &v, true),
        ("one(result, {# > 0.95})", &v, true),
        ("count(result, {# > 0.9}) == 2", &v, true),
        ("len(filter(result, {# > 0.95})) == 1", &v, true),
        ("result[0] > 0.9 and result[0] < 2", &v, true),
        ("result[0] < 0.9 or not (result[1] < 0.9)", &v, true),
        ("!isNaN(result[0])", &v, true),
        ("isInf(result[0])", &v, false),
        ("asInt(result[0]) == 0", &v, true),
        ("asFloat(\"0.5\") < result[0]", &v, true),
        ("sum(result) > 1.8", &v, true),
        ("result.status == 'ok' && result.rate >= 0.95", &web, true),
        ("result.items[2] == 3", &web, true),
        ("len(result.items) == 3", &web, true),
        ("isNil(result.nested.n)", &web, true),
        ("default(result.missing, 5) == 5", &web, true),
        ("default(result.nested.n, 7) == 7", &web, true),
        ("result.status in ['ok', 'fine']", &web, true),
        ("result.status startsWith 'o'", &web, true),
        ("result.status matches '^o.$'", &web, true),
        // Native CEL passes through.
        ("size(result) == 2 && result.all(x, x > 0.9)", &v, true),
        ("has(result.rate)", &web, true),
        ("result[0] > 0.9 ? true : false", &v, true),
        ("result > 1", &ResultValue::Number(2.0), true),
        ("isNaN(result)", &ResultValue::Number(f64::NAN), true),
    ];
    for (cond, value, want) in cases {
        assert_eq!(eval(cond, value), Ok(want), "{cond}");
    }
}

/// No data (an empty Prometheus vector, e.g. no traffic on the preview yet) never passes
/// silently: indexing it is an evaluation error (an Error measurement, retried and counted
/// toward consecutiveErrorLimit), `len(result) == 0` sees it, `default` gives its fallback,
/// and `isNil` is false (an empty vector is a value, as in Argo).
#[test]
fn no_data_behaviour() {
    let empty = vector(&[]);
    let e = eval("result[0] >= 0.95", &empty).expect_err("index past the end");
    assert!(e.contains("result[0] >= 0.95"), "{e}");
    assert_eq!(eval("len(result) == 0", &empty), Ok(true));
    assert_eq!(
        eval("len(result) > 0 && result[0] >= 0.95", &empty),
        Ok(false)
    );
    assert_eq!(eval("default(result[0], 0) >= 0.95", &empty), Ok(false));
    assert_eq!(eval("default(result[0], 1) >= 0.95", &empty), Ok(true));
    assert_eq!(eval("isNil(result)", &empty), Ok(false));
    assert_eq!(eval("isNil(result)", &ResultValue::Null), Ok(true));
    // NaN (0/0 when there were no requests in the window) cannot be compared: an evaluation
    // error, so an Error measurement, as for an empty vector. `isNaN` tests for it.
    let nan = vector(&[f64::NAN]);
    assert!(eval("result[0] >= 0.95", &nan).is_err());
    assert_eq!(eval("isNaN(result[0])", &nan), Ok(true));
}

#[test]
fn non_boolean_and_type_errors_are_errors() {
    assert!(
        eval("result[0]", &vector(&[1.0]))
            .expect_err("not a boolean")
            .contains("not true or false")
    );
    assert!(
        eval(
            "result.status > 1",
            &ResultValue::from(&json!({"status": "ok"}))
        )
        .is_err()
    );
}

#[test]
fn verdicts_follow_argo() {
    let s = Condition::compile("result > 5").expect("compiles");
    let f = Condition::compile("result < 2").expect("compiles");
    let n = |x: f64| ResultValue::Number(x);
    let cases = [
        (None, None, 0.0, Verdict::Successful),
        (Some(&s), None, 6.0, Verdict::Successful),
        (Some(&s), None, 3.0, Verdict::Failed),
        (None, Some(&f), 1.0, Verdict::Failed),
        (None, Some(&f), 3.0, Verdict::Successful),
        (Some(&s), Some(&f), 6.0, Verdict::Successful),
        (Some(&s), Some(&f), 1.0, Verdict::Failed),
        (Some(&s), Some(&f), 3.0, Verdict::Inconclusive),
    ];
    for (success, failure, value, want) in cases {
        assert_eq!(judge(success, failure, &n(value)), Ok(want), "{value}");
    }
    // The failure condition wins when both hold.
    let always = Condition::compile("true").expect("compiles");
    assert_eq!(
        judge(Some(&always), Some(&always), &n(0.0)),
        Ok(Verdict::Failed)
    );
}

#[test]
fn compile_errors_name_the_construct() {
    for (cond, want) in [
        ("result ** 2 > 1", "`**`"),
        ("median(result) > 1", "function `median`"),
        ("result[0] >= ", "end of condition"),
        ("foo > 1", "unknown variable `foo`"),
    ] {
        let e = Condition::compile(cond).expect_err(cond).to_string();
        assert!(e.contains(want), "{cond}: {e}");
    }
}
