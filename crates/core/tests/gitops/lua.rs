//! Running Argo CD's Lua scripts with Debian's `lua5.1` (Argo CD runs gopher-lua, Lua 5.1):
//! JSON objects become Lua table literals, the harness prints the answer back as JSON.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The Lua 5.1 interpreter: `CUTOVER_LUA`, else `lua5.1` on PATH. `None` (after a loud
/// SKIPPED line) when there is none, unless `CUTOVER_REQUIRE_LUA=1`, which makes it a failure.
pub fn interpreter() -> Option<PathBuf> {
    let lua =
        std::env::var_os("CUTOVER_LUA").map_or_else(|| PathBuf::from("lua5.1"), PathBuf::from);
    let found = Command::new(&lua)
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(lua);
    }
    let why = format!(
        "{} not found; scripts/prepare-test-env installs Debian's lua5.1",
        lua.display()
    );
    assert!(
        std::env::var("CUTOVER_REQUIRE_LUA").as_deref() != Ok("1"),
        "CUTOVER_REQUIRE_LUA=1 but {why}"
    );
    eprintln!("\n*** SKIPPED: the Argo CD Lua tests: {why} ***\n");
    None
}

/// deploy/argocd/cutover.dev/Rollout of this repository.
pub fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/argocd/cutover.dev/Rollout")
}

/// Runs `script` with `obj` as its global `obj`; returns what it returned, as JSON.
pub fn run(lua: &Path, script: &Path, obj: &Value, scratch: &Path) -> Value {
    let input = scratch.join("input.lua");
    std::fs::write(&input, format!("return {}\n", to_lua(obj))).expect("write the Lua input");
    let harness = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/gitops/harness.lua");
    let out = Command::new(lua)
        .arg(&harness)
        .arg(&input)
        .arg(script)
        .output()
        .expect("run lua5.1");
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{} printed no JSON ({e}): {}",
            script.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A Lua table literal of a JSON value; `null` members are left out, as Argo CD's decoder
/// leaves them nil.
pub fn to_lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(to_lua).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(members) => {
            let members: Vec<String> = members
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), to_lua(v)))
                .collect();
            format!("{{{}}}", members.join(", "))
        }
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for byte in s.bytes() {
        match byte {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(byte));
            }
            0x20..=0x7e => out.push(char::from(byte)),
            // Lua 5.1 has decimal escapes only; UTF-8 passes byte by byte.
            _ => out.push_str(&format!("\\{byte:03}")),
        }
    }
    out.push('"');
    out
}

/// A JSON value with what Lua cannot tell apart made equal: numbers as f64, and empty tables,
/// empty arrays and nulls left out (Lua has one empty table and no null).
pub fn normalised(value: &Value) -> Value {
    match value {
        Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
        Value::Array(items) => Value::Array(items.iter().map(normalised).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.clone(), normalised(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// RFC 7386 JSON merge patch: what the API server does with the CLI's merge patches.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(into) = target else { return };
    for (k, v) in members {
        if v.is_null() {
            into.remove(k);
        } else {
            merge_patch(into.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}
