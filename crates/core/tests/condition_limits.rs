//! Conditions are hostile input: whatever the text, compiling and evaluating it returns (an
//! error or a verdict) in bounded time and never overflows the stack. The daemon evaluates on
//! tokio's worker threads (2 MiB stacks), so the checks run on threads with half of that.

use cutover_core::analysis::expr::{
    ExprErrorKind, MAX_CEL_LEN, MAX_NESTING, MAX_SOURCE_LEN, to_cel,
};
use cutover_core::analysis::{Condition, ConditionError, ResultValue};
use proptest::prelude::*;

/// Stack of the threads the checks run on: half of a tokio worker's.
const STACK: usize = 1024 * 1024;

/// Compiles and (when it compiles) evaluates `cond` on a small-stack thread; returns the
/// compile error, if any.
fn run_small_stack(cond: String) -> Option<ConditionError> {
    let handle = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let value = ResultValue::List(vec![ResultValue::Number(1.0)]);
            match Condition::compile(&cond) {
                Ok(c) => {
                    let _ = c.evaluate(&value);
                    None
                }
                Err(e) => Some(e),
            }
        })
        .expect("spawn");
    handle.join().expect("no panic, no overflow")
}

fn kind(err: Option<ConditionError>) -> Option<ExprErrorKind> {
    match err {
        Some(ConditionError::Syntax(e)) => Some(e.kind),
        _ => None,
    }
}

/// The shapes that nest: each repeated `n` times around `result`.
fn shapes(n: usize) -> Vec<(&'static str, String)> {
    vec![
        (
            "parens",
            format!("{}result{} > 1", "(".repeat(n), ")".repeat(n)),
        ),
        ("not", format!("{}(result[0] > 1)", "!".repeat(n))),
        ("negation", format!("{}result[0] > 1", "-".repeat(n))),
        ("word not", format!("{}result[0] > 1", "not ".repeat(n))),
        ("sum chain", format!("result[0]{} > 1", " + 1".repeat(n))),
        (
            "and chain",
            format!("true{}", " && result[0] > 0".repeat(n)),
        ),
        ("members", format!("result{} == 1", ".a".repeat(n))),
        ("indexes", format!("result{} == 1", "[0]".repeat(n))),
        (
            "calls",
            format!("{}result{} > 1", "abs(".repeat(n), ")".repeat(n)),
        ),
        (
            "lists",
            format!("size({}1{}) > 0", "[".repeat(n), "]".repeat(n)),
        ),
        (
            "ternaries",
            format!("{}true", "result[0] > 1 ? false : ".repeat(n)),
        ),
        (
            "predicates",
            format!(
                "{}# > 0{}",
                "all(result, {".repeat(n.min(40)),
                "})".repeat(n.min(40))
            ),
        ),
        (
            "defaults",
            format!("{}result[0]{} > 1", "default(".repeat(n), ", 0)".repeat(n)),
        ),
    ]
}

#[test]
fn every_nesting_shape_is_refused_past_the_limit_without_overflow() {
    for (name, cond) in shapes(3_000) {
        let err = run_small_stack(cond);
        assert!(
            matches!(
                kind(err.clone()),
                Some(ExprErrorKind::TooDeep | ExprErrorKind::TooLong)
            ),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn ten_thousand_parentheses_are_a_typed_error() {
    let cond = format!("{}result{} > 1", "(".repeat(10_000), ")".repeat(10_000));
    let e = to_cel(&cond).expect_err("too long");
    assert_eq!(e.kind, ExprErrorKind::TooLong);
    // Under the length bound, the depth bound answers, at the token where it was passed.
    let cond = format!("{}result{} > 1", "(".repeat(1_000), ")".repeat(1_000));
    let e = to_cel(&cond).expect_err("too deep");
    assert_eq!(e.kind, ExprErrorKind::TooDeep);
    assert!(e.column <= MAX_NESTING + 1, "{e}");
    assert!(e.message.contains("deeper than"), "{e}");
}

#[test]
fn nesting_up_to_the_limit_compiles_and_evaluates_on_a_small_stack() {
    // Well inside the bound every shape still works (a limit must not refuse real conditions).
    for (name, cond) in shapes(8) {
        let err = run_small_stack(cond.clone());
        assert!(err.is_none(), "{name}: {cond}: {err:?}");
    }
    // At the bound, whatever CEL makes of it, the answer comes back (no overflow).
    for n in [MAX_NESTING - 4, MAX_NESTING - 1, MAX_NESTING] {
        for (_, cond) in shapes(n) {
            run_small_stack(cond);
        }
    }
}

#[test]
fn nested_defaults_cannot_grow_the_cel_text_exponentially() {
    let cond = format!(
        "{}result[0]{} > 1",
        "default(".repeat(24),
        ", 0)".repeat(24)
    );
    assert!(cond.len() < MAX_SOURCE_LEN);
    let e = to_cel(&cond).expect_err("too long once translated");
    assert_eq!(e.kind, ExprErrorKind::TooLong);
    assert!(e.message.contains(&MAX_CEL_LEN.to_string()), "{e}");
}

/// Pieces conditions are made of, so random strings reach deep into the parser.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "(", ")", "[", "]", "{", "}", ",", ".", "!", "-", "+", "*", "&&", "||", "?", ":", "==",
        "<", ">=", "#", "result", "0", "1.5", "'s'", "\"q", "len(", "all(", "default(", "abs(",
        "not ", " and ", " in ", "a", " ", "??", "?.", "..", "**", "`", "\\", "é", "matches",
        "size", "x.all(", "has(",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any text made of condition pieces: no panic, no overflow, quick.
    #[test]
    fn any_token_soup_returns(pieces in prop::collection::vec(piece(), 0..600)) {
        let cond: String = pieces.concat();
        run_small_stack(cond);
    }

    /// Any text at all, up to past the length bound.
    #[test]
    fn any_text_returns(cond in ".{0,5000}") {
        run_small_stack(cond);
    }

    /// A nesting shape repeated any number of times is either accepted or refused with a
    /// bound's kind, never anything worse.
    #[test]
    fn deep_shapes_are_bounded(n in 0usize..2_500, which in 0usize..13) {
        let (name, cond) = shapes(n).swap_remove(which);
        let err = run_small_stack(cond);
        if n > MAX_NESTING + 1 {
            prop_assert!(err.is_some(), "{} at {} compiled", name, n);
        }
    }
}
