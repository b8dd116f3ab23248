//! Records the git commit the binary was built from, for `cutover version`. Builds from a source
//! tarball (no git, no commits) fall back to "unknown" instead of failing.

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=CUTOVER_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves. Only name files that exist: cargo reruns the script on every
    // build for a missing one.
    for file in ["../../.git/HEAD", "../../.git/index"] {
        if Path::new(file).exists() {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
