//! The pod-template hash: the `rollouts-pod-template-hash` value naming each revision.
//!
//! Algorithm (stable across runs, platforms and field order, documented in docs/hash.md):
//! 1. serialize the `PodTemplateSpec` to JSON, drop the `rollouts-pod-template-hash` label and
//!    every `null`, empty object and empty array (so an omitted field and an empty one hash the
//!    same);
//! 2. write it canonically: object keys sorted by byte order, no whitespace (serde_json's
//!    number and string formatting);
//! 3. if a collision count is given, append `:` and its decimal value;
//! 4. SHA-256 the bytes; read the first 8 bytes as a big-endian u64;
//! 5. write that number in base 27 over the alphabet `bcdfghjklmnpqrstvwxz2456789` (Kubernetes'
//!    "safe" alphabet: no vowels, no 0/1/3 look-alikes), least significant digit first,
//!    10 characters.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::POD_TEMPLATE_HASH_LABEL;

const SAFE_ALPHABET: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";
const HASH_LEN: usize = 10;

/// Computes the hash of a pod template. `collision_count` separates two templates that hash
/// alike (never seen in practice; kept for parity with Kubernetes' `collisionCount`).
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<u32>) -> String {
    // Serializing a k8s-openapi type to a JSON value cannot fail: every field is plain data.
    let value = serde_json::to_value(template).unwrap_or(Value::Null);
    hash_value(value, collision_count)
}

fn hash_value(mut value: Value, collision_count: Option<u32>) -> String {
    if let Some(labels) = value
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    let canonical = prune(value).unwrap_or(Value::Null);
    let mut bytes = Vec::new();
    write_canonical(&canonical, &mut bytes);
    if let Some(count) = collision_count {
        bytes.push(b':');
        bytes.extend_from_slice(count.to_string().as_bytes());
    }
    let digest = Sha256::digest(&bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let mut n = u64::from_be_bytes(first);
    let mut out = String::with_capacity(HASH_LEN);
    for _ in 0..HASH_LEN {
        out.push(SAFE_ALPHABET[(n % 27) as usize] as char);
        n /= 27;
    }
    out
}

/// Drops nulls and empty containers, recursively. Returns None when the value itself is empty.
fn prune(value: Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(map) => {
            let pruned: serde_json::Map<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| prune(v).map(|v| (k, v)))
                .collect();
            (!pruned.is_empty()).then_some(Value::Object(pruned))
        }
        Value::Array(items) => {
            // Elements keep their position: a null element becomes an explicit null.
            let pruned: Vec<Value> = items
                .into_iter()
                .map(|v| prune(v).unwrap_or(Value::Null))
                .collect();
            (!pruned.is_empty()).then_some(Value::Array(pruned))
        }
        other => Some(other),
    }
}

/// Writes JSON with object keys in byte order, whatever order the map kept them in.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // serde_json writes scalars deterministically; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(v: Value) -> PodTemplateSpec {
        serde_json::from_value(v).expect("valid template")
    }

    #[test]
    fn known_value_is_stable() {
        // Pinned: changing it renames every revision of every user. Do not update casually.
        let t = template(json!({
            "metadata": {"labels": {"app": "my-app"}},
            "spec": {"containers": [{"name": "app", "image": "my-app:1.0.0"}]}
        }));
        insta::assert_snapshot!(pod_template_hash(&t, None), @"k2rsl4q58l");
    }

    #[test]
    fn field_order_and_empties_do_not_matter() {
        let a = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
                       "spec": {"containers": [{"name": "app", "image": "x:1"}]}});
        let b = json!({"spec": {"containers": [{"image": "x:1", "name": "app", "env": []}]},
                       "metadata": {"annotations": {}, "labels": {"b": "2", "a": "1",
                        "rollouts-pod-template-hash": "old"}}});
        assert_eq!(hash_value(a, None), hash_value(b, None));
    }

    #[test]
    fn content_and_collision_count_change_the_hash() {
        let a = json!({"spec": {"containers": [{"name": "app", "image": "x:1"}]}});
        let b = json!({"spec": {"containers": [{"name": "app", "image": "x:2"}]}});
        assert_ne!(hash_value(a.clone(), None), hash_value(b, None));
        assert_ne!(hash_value(a.clone(), None), hash_value(a, Some(1)));
    }

    #[test]
    fn hash_uses_safe_alphabet() {
        let h = hash_value(json!({"x": 1}), None);
        assert_eq!(h.len(), HASH_LEN);
        assert!(h.bytes().all(|c| SAFE_ALPHABET.contains(&c)));
    }
}
