//! Kubernetes' name rules, exactly (apimachinery's `validation` package): DNS-1123 labels and
//! subdomains, DNS-1035 labels, IANA service names for ports, and label keys and values. A name
//! reaches a cluster's API server, the daemon's state directory and its process logs, so every
//! name in a manifest is checked, where it is defined and where it is referred to.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use crate::diag::{Diagnostic, Diagnostics, clip};
use crate::path::FieldPath;
use crate::set::Located;

/// A rule a name must follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Lower-case alphanumerics and `-`, starting and ending alphanumeric, at most 63
    /// characters (container, volume, namespace and Service port names).
    Dns1123Label,
    /// Dot-separated DNS-1123 labels, at most 253 characters (most object names).
    Dns1123Subdomain,
    /// A DNS-1123 label that starts with a letter (Service names, which become DNS names).
    Dns1035Label,
    /// A container port name: at most 15 lower-case alphanumerics and `-`, at least one
    /// letter, no `--`, no `-` at either end.
    IanaSvcName,
    /// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name of at
    /// most 63 alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
    QualifiedName,
    /// A label value: empty, or like a qualified name's name part.
    LabelValue,
}

static LABEL: LazyLock<Regex> = LazyLock::new(|| re("[a-z0-9]([-a-z0-9]*[a-z0-9])?"));
static SUBDOMAIN: LazyLock<Regex> =
    LazyLock::new(|| re("[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"));
static DNS1035: LazyLock<Regex> = LazyLock::new(|| re("[a-z]([-a-z0-9]*[a-z0-9])?"));
static IANA: LazyLock<Regex> = LazyLock::new(|| re("[-a-z0-9]+"));
static QUALIFIED: LazyLock<Regex> =
    LazyLock::new(|| re("([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"));

/// An anchored pattern (the patterns are constants).
fn re(pattern: &str) -> Regex {
    Regex::new(&format!("^(?:{pattern})$")).expect("a constant pattern compiles")
}

impl Rule {
    /// What the rule requires, as Kubernetes words it.
    fn describe(self) -> &'static str {
        match self {
            Rule::Dns1123Label => {
                "a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
            }
            Rule::Dns1123Subdomain => {
                "a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"
            }
            Rule::Dns1035Label => {
                "a DNS-1035 label: lower-case letters, digits and '-', starting with a letter and ending with a letter or digit, at most 63 characters"
            }
            Rule::IanaSvcName => {
                "a port name: lower-case letters, digits and '-', at least one letter, no '--', not starting or ending with '-', at most 15 characters"
            }
            Rule::QualifiedName => {
                "a label key: an optional DNS subdomain prefix and '/', then letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters"
            }
            Rule::LabelValue => {
                "a label value: empty, or letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters"
            }
        }
    }

    fn max_len(self) -> usize {
        match self {
            Rule::Dns1123Subdomain => 253,
            Rule::IanaSvcName => 15,
            _ => 63,
        }
    }

    /// Why `name` breaks the rule, or `None` when it follows it.
    pub(crate) fn check(self, name: &str) -> Option<String> {
        if name.is_empty() && self != Rule::LabelValue {
            return Some("must not be empty".into());
        }
        let chars = name.chars().count();
        if self == Rule::QualifiedName {
            return check_qualified(name);
        }
        if chars > self.max_len() {
            return Some(format!(
                "is {chars} characters long; at most {} are allowed",
                self.max_len()
            ));
        }
        let ok = match self {
            Rule::Dns1123Label => LABEL.is_match(name),
            Rule::Dns1123Subdomain => SUBDOMAIN.is_match(name),
            Rule::Dns1035Label => DNS1035.is_match(name),
            Rule::IanaSvcName => {
                IANA.is_match(name)
                    && name.chars().any(|c| c.is_ascii_lowercase())
                    && !name.contains("--")
                    && !name.starts_with('-')
                    && !name.ends_with('-')
            }
            Rule::LabelValue => name.is_empty() || QUALIFIED.is_match(name),
            Rule::QualifiedName => true,
        };
        (!ok).then(|| format!("is not {}", self.describe()))
    }
}

fn check_qualified(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(p) = prefix
        && let Some(problem) = Rule::Dns1123Subdomain.check(p)
    {
        return Some(format!("has a prefix that {problem}"));
    }
    let len = name.chars().count();
    if name.is_empty() || len > 63 || !QUALIFIED.is_match(name) {
        return Some(format!("is not {}", Rule::QualifiedName.describe()));
    }
    None
}

/// A name close to `name` that follows `rule`, to offer in the fix: lower-cased, other
/// characters turned into `-`, trimmed and cut to length.
pub(crate) fn suggestion(name: &str, rule: Rule) -> Option<String> {
    let keep_dots = rule == Rule::Dns1123Subdomain;
    let mut out = String::new();
    for c in name.chars().take(4 * rule.max_len()) {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_alphanumeric() || (keep_dots && c == '.') {
            c
        } else {
            '-'
        };
        // No runs of separators: `../../x` becomes `x`, `a__b` becomes `a-b`.
        if (c == '-' || c == '.') && out.ends_with(['-', '.']) {
            continue;
        }
        out.push(c);
    }
    let mut out = out
        .trim_matches(['-', '.'])
        .trim_start_matches(|c: char| rule == Rule::Dns1035Label && c.is_ascii_digit())
        .trim_start_matches('-')
        .to_string();
    out.truncate(rule.max_len());
    let out = out.trim_end_matches(['-', '.']).to_string();
    (rule.check(&out).is_none()).then_some(out)
}

/// Checks `name` (written at `path` of `o`) against `rule`; `what` says what it names.
pub(crate) fn check_name<T>(
    o: &Located<T>,
    path: &FieldPath,
    what: &str,
    name: &str,
    rule: Rule,
    diags: &mut Diagnostics,
) {
    let Some(problem) = rule.check(name) else {
        return;
    };
    let help = match suggestion(name, rule) {
        Some(s) if s != name => format!("use e.g. `{s}`"),
        _ => "rename it following that rule".to_string(),
    };
    diags.push(
        Diagnostic::error(
            &o.file,
            o.locate_value(path),
            path.clone(),
            format!("{what} `{}` {problem}", clip(name.to_string(), 60)),
        )
        .with_help(help),
    );
}

/// Checks the keys and values of a label map written at `path`.
pub(crate) fn check_labels<T>(
    o: &Located<T>,
    path: &FieldPath,
    labels: Option<&BTreeMap<String, String>>,
    diags: &mut Diagnostics,
) {
    for (key, value) in labels.into_iter().flatten() {
        let at = path.key(key.clone());
        if let Some(problem) = Rule::QualifiedName.check(key) {
            diags.push(
                Diagnostic::error(
                    &o.file,
                    o.locate(&at),
                    at.clone(),
                    format!("label key `{}` {problem}", clip(key.clone(), 60)),
                )
                .with_help("use e.g. `app` or `example.com/tier`"),
            );
        }
        check_name(o, &at, "label value", value, Rule::LabelValue, diags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_kubernetes_rules() {
        let cases: &[(Rule, &str, bool)] = &[
            (Rule::Dns1123Subdomain, "my-app", true),
            (Rule::Dns1123Subdomain, "my.app-2", true),
            (Rule::Dns1123Subdomain, "Foo_Bar", false),
            (Rule::Dns1123Subdomain, "ROLLOUT_NAME", false),
            (Rule::Dns1123Subdomain, "../../x", false),
            (Rule::Dns1123Subdomain, "a..b", false),
            (Rule::Dns1123Subdomain, "-a", false),
            (Rule::Dns1123Subdomain, &"a".repeat(253), true),
            (Rule::Dns1123Subdomain, &"a".repeat(254), false),
            (Rule::Dns1123Label, "a.b", false),
            (Rule::Dns1123Label, "0abc", true),
            (Rule::Dns1123Label, &"a".repeat(64), false),
            (Rule::Dns1035Label, "0abc", false),
            (Rule::Dns1035Label, "my-svc", true),
            (Rule::IanaSvcName, "http", true),
            (Rule::IanaSvcName, "8080", false),
            (Rule::IanaSvcName, "a--b", false),
            (Rule::IanaSvcName, "metrics-endpoint", false),
            (Rule::QualifiedName, "app.kubernetes.io/name", true),
            (Rule::QualifiedName, "Bad Key", false),
            (Rule::QualifiedName, "a/b/c", false),
            (Rule::LabelValue, "", true),
            (Rule::LabelValue, "v1.2_x", true),
            (Rule::LabelValue, "-x", false),
        ];
        for (rule, name, ok) in cases {
            assert_eq!(rule.check(name).is_none(), *ok, "{rule:?} {name:?}");
        }
    }

    #[test]
    fn suggests_a_valid_name() {
        assert_eq!(
            suggestion("Foo_Bar", Rule::Dns1123Subdomain).as_deref(),
            Some("foo-bar")
        );
        assert_eq!(
            suggestion("../../../../tmp/x", Rule::Dns1123Subdomain).as_deref(),
            Some("tmp-x")
        );
        assert_eq!(
            suggestion("9svc", Rule::Dns1035Label).as_deref(),
            Some("svc")
        );
        assert_eq!(suggestion("___", Rule::Dns1123Label), None);
    }
}
