//! Service checks: the annotations cutover itself reads.

use cutover_core::api::DurationString;
use k8s_openapi::api::core::v1::Service;

use crate::diag::Diagnostics;
use crate::path::FieldPath;
use crate::set::Located;

/// Sets the response timeout of a Service's routes on one host (see docs/single-host.md).
const RESPONSE_TIMEOUT: &str = "cutover.dev/response-timeout";

pub(super) fn check(s: &Located<Service>, diags: &mut Diagnostics) {
    let Some(value) = s
        .value
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RESPONSE_TIMEOUT))
    else {
        return;
    };
    let path = FieldPath::parse(&format!("metadata.annotations[\"{RESPONSE_TIMEOUT}\"]"));
    super::analysis::check_duration(s, &path, &DurationString::new(value), diags);
}
