//! Checks of `blueGreen.trafficRouting`: each header route has exactly one matcher and its
//! regular expression compiles; shares are percentages.

use cutover_core::api::{Rollout, TrafficRouting};

use crate::diag::{Diagnostic, Diagnostics};
use crate::path::FieldPath;
use crate::set::Located;

pub(super) fn check(r: &Located<Rollout>, diags: &mut Diagnostics) {
    let Some(rules) = &r.value.spec.strategy.blue_green.traffic_routing else {
        return;
    };
    let base = FieldPath::parse("spec.strategy.blueGreen.trafficRouting");
    let err = |path: FieldPath, message: String, help: &str| {
        Diagnostic::error(&r.file, r.locate(&path), path.clone(), message).with_help(help)
    };
    check_header_routes(rules, &base, diags, &err);
    if let Some(w) = rules.preview_weight.filter(|w| !(0..=100).contains(w)) {
        diags.push(err(
            base.key("previewWeight"),
            format!("must be between 0 and 100, got {w}"),
            "it is the percentage of active traffic sent to the preview",
        ));
    }
    if let Some(p) = rules
        .mirror
        .as_ref()
        .and_then(|m| m.percent)
        .filter(|p| !(0.0..=100.0).contains(p))
    {
        diags.push(err(
            base.key("mirror").key("percent"),
            format!("must be between 0 and 100, got {p}"),
            "it is the percentage of active traffic copied to the preview",
        ));
    }
}

fn check_header_routes(
    rules: &TrafficRouting,
    base: &FieldPath,
    diags: &mut Diagnostics,
    err: &impl Fn(FieldPath, String, &str) -> Diagnostic,
) {
    for (i, route) in rules.header_routes.iter().enumerate() {
        let path = base.key("headerRoutes").index(i);
        let set = [&route.exact, &route.prefix, &route.regex]
            .iter()
            .filter(|m| m.is_some())
            .count();
        if set != 1 {
            diags.push(err(
                path.clone(),
                format!("needs exactly one of exact, prefix or regex, found {set}"),
                "e.g. `header: x-canary` with `exact: \"true\"`",
            ));
        }
        if route.header.trim().is_empty() {
            diags.push(err(
                path.key("header"),
                "must name a header".into(),
                "e.g. `header: x-canary`",
            ));
        }
        if let Some(re) = &route.regex
            && let Err(e) = regex::Regex::new(&format!("^(?:{re})$"))
        {
            diags.push(err(
                path.key("regex"),
                // The regex error spans several lines; its last line names the problem.
                format!(
                    "invalid regular expression: {}",
                    e.to_string().lines().last().unwrap_or_default().trim()
                ),
                "use Rust regex syntax (RE2-like); it must match the whole value",
            ));
        }
    }
}
