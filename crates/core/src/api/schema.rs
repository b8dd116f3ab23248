//! Schema overrides for fields whose full OpenAPI schema would make the CRD huge or
//! non-structural. The API server still validates these parts when it creates the objects they
//! describe (pods, jobs), and `cutover lint` checks them against the full Kubernetes types.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An object whose fields the API server keeps as given.
pub(crate) fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Any JSON value (object, array, scalar), kept as given.
pub(crate) fn any_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-preserve-unknown-fields": true
    })
}
