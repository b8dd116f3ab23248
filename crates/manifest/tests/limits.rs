//! Hostile manifests: deep nesting, huge documents, alias bombs, runaway conditions and
//! floods of findings are refused with a location, quickly, and never overflow the stack.
//! Each load runs on a thread with the 2 MiB stack of a tokio worker, where the daemon's
//! `apply` runs. How fast they are refused is measured outside the tests (docs/lint.md); a
//! test asserts no timing.

mod common;

use common::{ROLLOUT, SERVICES, TEMPLATE};
use cutover_manifest::{Diagnostics, MAX_DEPTH, MAX_DIAGNOSTICS, MAX_DOCUMENT_BYTES, Source, load};

/// What a load found, on a 2 MiB stack.
fn small_stack_load(files: Vec<(&'static str, String)>) -> Result<usize, Diagnostics> {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let sources: Vec<Source> = files.into_iter().map(|(p, t)| Source::new(p, t)).collect();
            load(&sources).map(|set| set.len())
        })
        .expect("spawn")
        .join()
        .expect("no panic, no overflow")
}

/// The first line of each finding.
fn firsts(d: &Diagnostics) -> Vec<String> {
    d.iter()
        .map(|d| d.to_string().lines().next().unwrap_or_default().to_string())
        .collect()
}

const HEAD: &str = "apiVersion: cutover.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: deep
spec:
  metrics:
    - name: m
      provider:
        web:
          url: http://127.0.0.1/x
          jsonBody: ";

/// A document of `bytes` bytes whose jsonBody is `[[[…]]]`.
fn deep_flow(bytes: usize) -> String {
    let n = (bytes - HEAD.len()) / 2;
    format!("{HEAD}{}{}\n", "[".repeat(n), "]".repeat(n))
}

/// A document whose jsonBody is a mapping nested `levels` deep, one indentation step each.
fn deep_block(levels: usize) -> String {
    let mut text = HEAD.trim_end().to_string();
    for i in 0..levels {
        text.push_str(&format!("\n{}k{i}:", " ".repeat(12 + i)));
    }
    text.push_str(&format!("\n{}v\n", " ".repeat(12 + levels)));
    text
}

#[test]
fn deep_flow_nesting_is_refused_at_once_with_its_location() {
    for kb in [250, 500] {
        let result = small_stack_load(vec![("deep.yaml", deep_flow(kb * 1024))]);
        let diags = result.expect_err("refused");
        let first = firsts(&diags);
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(
            first[0].starts_with("deep.yaml:11:")
                && first[0].ends_with(&format!("YAML nested deeper than {MAX_DEPTH} levels")),
            "{kb} KB: {first:?}"
        );
    }
}

#[test]
fn deep_block_nesting_is_refused_with_its_location() {
    let result = small_stack_load(vec![("deep.yaml", deep_block(700))]);
    let diags = result.expect_err("refused");
    let first = firsts(&diags);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0].starts_with("deep.yaml:")
            && first[0].ends_with(&format!("YAML nested deeper than {MAX_DEPTH} levels")),
        "{first:?}"
    );
    // Just inside the bound, the same shape loads.
    let result = small_stack_load(vec![("deep.yaml", deep_block(MAX_DEPTH - 10))]);
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn aliases_cannot_nest_past_the_bound() {
    // Each level is shallow in the text but repeats the one before through an alias.
    let mut text = HEAD.trim_end().to_string();
    text.push_str("\n            a0: &l0 [[[[[[[[[[[[[[[[[[[[x]]]]]]]]]]]]]]]]]]]]");
    for i in 1..8 {
        text.push_str(&format!(
            "\n            a{i}: &l{i} [[[[[[[[[[[[[[[[[[[[*l{}]]]]]]]]]]]]]]]]]]]]",
            i - 1
        ));
    }
    text.push('\n');
    let result = small_stack_load(vec![("alias.yaml", text)]);
    let diags = result.expect_err("refused");
    assert!(
        firsts(&diags)
            .iter()
            .any(|l| l.contains("deeper than") || l.contains("recursion limit")),
        "{diags}"
    );
}

#[test]
fn an_alias_bomb_is_refused_quickly() {
    let mut text = HEAD.trim_end().to_string();
    text.push_str("\n            l0: &l0 [a, a, a, a, a, a, a, a, a, a]");
    for i in 1..10 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        text.push_str(&format!("\n            l{i}: &l{i} [{refs}]"));
    }
    text.push('\n');
    let result = small_stack_load(vec![("bomb.yaml", text)]);
    let diags = result.expect_err("refused");
    assert!(
        firsts(&diags)
            .iter()
            .any(|l| l.contains("repetition limit")),
        "{diags}"
    );
    // The YAML reader expands aliases up to a budget before it refuses: about 1 s in a debug
    // build.
}

#[test]
fn an_oversized_document_is_refused_before_parsing() {
    let name = "x".repeat(5 * 1024 * 1024);
    let rollout = ROLLOUT.replace("name: my-app\n", &format!("name: {name}\n"));
    let text = format!("{SERVICES}---\n{rollout}");
    let result = small_stack_load(vec![("big.yaml", text)]);
    let diags = result.expect_err("refused");
    let line = SERVICES.lines().count() + 1;
    assert_eq!(
        firsts(&diags),
        [format!(
            "big.yaml:{line}:1: the document is {} bytes; at most 3 MiB are read (the Kubernetes API server's limit for one object)",
            rollout.len() + 4
        )]
    );
    assert!(rollout.len() > MAX_DOCUMENT_BYTES);
}

#[test]
fn a_runaway_condition_is_a_located_error() {
    for n in [1_000, 3_000, 10_000] {
        let cond = format!("{}result{} > 1", "(".repeat(n), ")".repeat(n));
        let template = TEMPLATE.replace(
            "successCondition: result[0] >= 0.95",
            &format!("successCondition: \"{cond}\""),
        );
        let result = small_stack_load(vec![
            ("rollout.yaml", ROLLOUT.to_string()),
            ("services.yaml", SERVICES.to_string()),
            ("template.yaml", template),
        ]);
        let diags = result.expect_err("refused");
        let first = firsts(&diags);
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(
            first[0].starts_with(
                "template.yaml:12:7: spec.metrics[0].successCondition: invalid condition"
            ),
            "{first:?}"
        );
        let bound = if n > 4096 / 2 {
            "bytes long"
        } else {
            "deeper than"
        };
        assert!(first[0].contains(bound), "{n}: {first:?}");
        // The message quotes the condition, but not all of it.
        assert!(first[0].len() < 600, "{}", first[0].len());
    }
}

#[test]
fn a_flood_of_findings_is_cut_short() {
    let unknown: String = (0..20_000).map(|i| format!("  unknown{i}: 1\n")).collect();
    let text = ROLLOUT.replacen(
        "spec:\n  replicas",
        &format!("spec:\n{unknown}  replicas"),
        1,
    );
    let result = small_stack_load(vec![
        ("rollout.yaml", text),
        ("services.yaml", SERVICES.to_string()),
        ("template.yaml", TEMPLATE.to_string()),
    ]);
    let diags = result.expect_err("refused");
    assert_eq!(diags.len(), MAX_DIAGNOSTICS + 1, "{diags}");
    let last = firsts(&diags).pop().unwrap_or_default();
    assert!(
        last.ends_with(&format!(
            "{} more problems not listed",
            20_000 - MAX_DIAGNOSTICS
        )),
        "{last}"
    );
}
