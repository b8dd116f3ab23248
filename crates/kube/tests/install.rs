//! deploy/install.yaml must carry exactly the CRDs of the API types. Regenerate with
//! `CUTOVER_BLESS=1 cargo test -p cutover-kube --test install`.

use std::path::PathBuf;

use serde_json::Value;

fn install_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/install.yaml")
}

/// The file's documents as raw text chunks (comments kept) with their parsed values.
fn documents(text: &str) -> Vec<(String, Option<Value>)> {
    let mut chunks = vec![String::new()];
    for line in text.lines() {
        if line == "---" {
            chunks.push(String::new());
        } else if let Some(last) = chunks.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    chunks
        .into_iter()
        .map(|c| {
            let v: Option<Value> = serde_yaml_ng::from_str(&c).ok().flatten();
            (c, v)
        })
        .collect()
}

fn is_crd(v: &Option<Value>) -> bool {
    v.as_ref()
        .is_some_and(|v| v["kind"] == "CustomResourceDefinition")
}

#[test]
fn install_yaml_crds_match_the_api_types() {
    let path = install_path();
    let text = std::fs::read_to_string(&path).expect("read deploy/install.yaml");
    let docs = documents(&text);
    let expected: Vec<Value> = cutover_core::crds::all()
        .iter()
        .map(|c| serde_json::to_value(c).expect("crd to json"))
        .collect();
    if std::env::var_os("CUTOVER_BLESS").is_some() {
        let mut out = String::new();
        let mut crds_written = false;
        for (raw, value) in &docs {
            if is_crd(value) {
                continue;
            }
            if value.is_some() && !crds_written {
                for crd in &expected {
                    out.push_str("---\n");
                    out.push_str(&serde_yaml_ng::to_string(crd).expect("crd to yaml"));
                }
                crds_written = true;
            }
            if !out.is_empty() || value.is_some() {
                out.push_str("---\n");
            }
            out.push_str(raw);
        }
        std::fs::write(&path, out).expect("write deploy/install.yaml");
        return;
    }
    let found: Vec<Value> = docs
        .into_iter()
        .filter_map(|(_, v)| v)
        .filter(|v| v["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(
        found.len(),
        expected.len(),
        "deploy/install.yaml has {} CRDs, the API types define {}; run CUTOVER_BLESS=1 cargo test -p cutover-kube --test install",
        found.len(),
        expected.len()
    );
    for (f, e) in found.iter().zip(&expected) {
        assert!(
            f == e,
            "CRD {} in deploy/install.yaml differs from the API types; run CUTOVER_BLESS=1 cargo test -p cutover-kube --test install",
            e["metadata"]["name"]
        );
    }
}
