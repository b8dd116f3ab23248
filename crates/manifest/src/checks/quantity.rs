//! Resource quantities (`cpu: 250m`, `memory: 512Mi`) in Kubernetes' grammar, so that what the
//! API server would refuse is refused here, at its line.
//!
//! k8s-openapi's `Quantity` keeps the text as written and parses nothing. The `kube_quantity`
//! crate parses, but accepts texts the API server refuses (a bare suffix such as `Mi` reads as
//! 0, and `nan`/`inf` as numbers), so the grammar is written here, from apimachinery's
//! `resource.ParseQuantity`:
//!
//! ```text
//! quantity  ::= sign? number suffix?
//! number    ::= digits | digits "." digits? | "." digits
//! suffix    ::= "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"      (binary SI)
//!             | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E"   (decimal SI)
//!             | ("e" | "E") sign? digits                      (decimal exponent)
//! ```

use std::sync::LazyLock;

use regex::Regex;

static QUANTITY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$",
    )
    .expect("a constant pattern compiles")
});

/// A parsed quantity's value, precise enough to compare requests with limits.
pub(crate) fn value(text: &str) -> Option<f64> {
    let caps = QUANTITY.captures(text)?;
    let number: f64 = caps.get(2)?.as_str().parse().ok()?;
    let sign = if caps.get(1).is_some_and(|s| s.as_str() == "-") {
        -1.0
    } else {
        1.0
    };
    let scale = match caps.get(3).map_or("", |s| s.as_str()) {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exponent => 10f64.powi(exponent[1..].parse().ok()?),
    };
    Some(sign * number * scale)
}

#[cfg(test)]
mod tests {
    use super::value;

    #[test]
    fn follows_the_api_servers_grammar() {
        let good = [
            ("250m", 0.25),
            ("1", 1.0),
            ("0.5", 0.5),
            (".5", 0.5),
            ("1.", 1.0),
            ("512Mi", 512.0 * 1024.0 * 1024.0),
            ("1e3", 1000.0),
            ("1E", 1e18),
            ("-1", -1.0),
            ("+2k", 2000.0),
        ];
        for (text, want) in good {
            assert_eq!(value(text), Some(want), "{text}");
        }
        for text in [
            "invalid", "lots", "Mi", "", " 1", "1 Mi", "1.5.5", "nan", "inf", "1e", "1KiB",
        ] {
            assert_eq!(value(text), None, "{text}");
        }
    }
}
