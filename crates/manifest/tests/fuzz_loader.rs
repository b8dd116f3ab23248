//! Property tests of the loader and of `convert` on arbitrary input: whatever the text, they
//! return (objects or findings) without panicking, without overflowing a tokio worker's 2 MiB
//! stack, and quickly. Inputs: any text, YAML-shaped token soup, the valid fixtures with random
//! edits, and nesting shapes repeated any number of times.

mod common;

use common::{ROLLOUT, SERVICES, TEMPLATE};
use cutover_manifest::{Source, convert, load};
use proptest::prelude::*;

/// Loads and converts `text` on a 2 MiB stack: whatever it is, neither panics nor overflows.
fn run(text: String) {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let source = Source::new("fuzz.yaml", text);
            let _ = load(std::slice::from_ref(&source));
            let _ = convert(&source);
        })
        .expect("spawn")
        .join()
        .expect("no panic, no overflow")
}

fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "\n",
        "  ",
        "    ",
        "- ",
        ": ",
        "a",
        "name",
        "[",
        "]",
        "{",
        "}",
        ", ",
        "---\n",
        "...\n",
        "&x ",
        "*x",
        "!!str ",
        "!t ",
        "'",
        "\"",
        "|\n",
        ">-\n",
        "# c\n",
        "? ",
        "%YAML 1.2\n",
        "apiVersion: cutover.dev/v1alpha1\n",
        "apiVersion: argoproj.io/v1alpha1\n",
        "kind: Rollout\n",
        "kind: AnalysisTemplate\n",
        "kind: Service\n",
        "metadata:\n",
        "  name: x\n",
        "spec:\n",
        "  metrics:\n",
        "  - name: m\n",
        "successCondition: ",
        "result[0] > 1",
        "replicas: 3",
        "-1",
        "1e999",
        "0x1F",
        "~",
        "null",
        "\t",
        "é",
        "\u{feff}",
        "\\",
        "{{args.x}}",
    ])
}

/// A valid fixture with up to 8 random byte-level edits (insert, delete, replace).
fn mutated() -> impl Strategy<Value = String> {
    let base = prop::sample::select(vec![ROLLOUT, SERVICES, TEMPLATE]);
    let edit = (any::<prop::sample::Index>(), 0u8..3, piece());
    (base, prop::collection::vec(edit, 0..8)).prop_map(|(base, edits)| {
        let mut text = base.to_string();
        for (at, op, with) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            match op {
                0 => text.insert_str(i, with),
                1 => {
                    let end = (i + with.len()).min(text.len());
                    if text.is_char_boundary(end) {
                        text.replace_range(i..end, "");
                    }
                }
                _ => {
                    let end = (i + 1).min(text.len());
                    if text.is_char_boundary(end) {
                        text.replace_range(i..end, with);
                    }
                }
            }
        }
        text
    })
}

/// `kind` nesting `n` deep around a scalar, placed where a free-form value is allowed.
fn nested(kind: u8, n: usize) -> String {
    let body = match kind {
        0 => format!("{}1{}", "[".repeat(n), "]".repeat(n)),
        1 => format!("{}1{}", "{a: ".repeat(n), "}".repeat(n)),
        2 => format!("\n            {}1", "- ".repeat(n)),
        _ => {
            let mut s = String::new();
            for i in 0..n {
                s.push_str(&format!("\n{}k:", " ".repeat(12 + i)));
            }
            format!("{s} 1")
        }
    };
    format!(
        "apiVersion: cutover.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata: {{name: t}}\nspec:\n  metrics:\n    - name: m\n      provider:\n        web:\n          url: http://x\n          jsonBody: {body}\n"
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_text(text in ".{0,3000}") {
        run(text);
    }

    #[test]
    fn yaml_token_soup(pieces in prop::collection::vec(piece(), 0..800)) {
        run(pieces.concat());
    }

    #[test]
    fn edited_fixtures(text in mutated()) {
        run(text);
    }

    #[test]
    fn nesting_of_any_depth(kind in 0u8..4, n in 0usize..3_000) {
        run(nested(kind, n));
    }
}

#[test]
fn nesting_just_inside_the_bound_loads() {
    // The bound must not refuse real manifests: 50 levels under jsonBody (itself 8 deep).
    for kind in 0..4 {
        let text = nested(kind, 50);
        let result = load(&[Source::new("t.yaml", text)]);
        assert!(result.is_ok(), "{kind}: {result:?}");
    }
}
