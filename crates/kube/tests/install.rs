//! deploy/crds/crds.yaml must carry exactly the CRDs of the API types, and deploy/install.yaml
//! (the cluster-wide overlay rendered) the same. Regenerate the CRDs with
//! `CUTOVER_BLESS=1 cargo test -p cutover-kube --test install`, then the rendered install
//! files with `scripts/check-install --bless`.

use std::path::PathBuf;

use serde_json::Value;

fn deploy_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file)
}

const CRDS_HEADER: &str = "# The CRDs of the API types, generated: CUTOVER_BLESS=1 cargo test -p cutover-kube --test install\n";

fn crds_in(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy_path(file))
        .unwrap_or_else(|e| panic!("read deploy/{file}: {e}"));
    serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|doc| {
            let value: Option<Value> = serde::Deserialize::deserialize(doc).expect("YAML");
            value
        })
        .filter(|v| v["kind"] == "CustomResourceDefinition")
        .collect()
}

/// Numbers as f64: Kustomize writes a default of `0.0` as `0`, the same number to the API server.
fn numbers_as_f64(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_f64).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn assert_same(file: &str, found: &[Value], expected: &[Value], fix: &str) {
    assert_eq!(
        found.len(),
        expected.len(),
        "deploy/{file} has {} CRDs, the API types define {}; {fix}",
        found.len(),
        expected.len()
    );
    // Kustomize orders objects its own way: compare by name.
    let by_name = |crds: &[Value]| {
        let mut crds = crds.to_vec();
        crds.sort_by_key(|c| c["metadata"]["name"].to_string());
        crds
    };
    for (f, e) in by_name(found).iter().zip(&by_name(expected)) {
        assert!(
            numbers_as_f64(f) == numbers_as_f64(e),
            "CRD {} in deploy/{file} differs from the API types; {fix}",
            e["metadata"]["name"]
        );
    }
}

#[test]
fn install_yaml_crds_match_the_api_types() {
    let expected: Vec<Value> = cutover_core::crds::all()
        .iter()
        .map(|c| serde_json::to_value(c).expect("crd to json"))
        .collect();
    if std::env::var_os("CUTOVER_BLESS").is_some() {
        let mut out = CRDS_HEADER.to_string();
        for crd in &expected {
            out.push_str("---\n");
            out.push_str(&serde_yaml_ng::to_string(crd).expect("crd to yaml"));
        }
        std::fs::write(deploy_path("crds/crds.yaml"), out).expect("write deploy/crds/crds.yaml");
    }
    assert_same(
        "crds/crds.yaml",
        &crds_in("crds/crds.yaml"),
        &expected,
        "run CUTOVER_BLESS=1 cargo test -p cutover-kube --test install",
    );
    // The rendered install must not lag behind (scripts/check-install compares all of it).
    assert_same(
        "install.yaml",
        &crds_in("install.yaml"),
        &expected,
        "run scripts/check-install --bless",
    );
}
