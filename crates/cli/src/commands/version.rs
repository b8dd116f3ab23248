//! `cutover version`.

use std::process::ExitCode;

pub fn run() -> anyhow::Result<ExitCode> {
    println!(
        "cutover {} (commit {})",
        env!("CARGO_PKG_VERSION"),
        env!("CUTOVER_GIT_COMMIT")
    );
    println!("API version: {}", cutover_core::api::API_VERSION);
    Ok(ExitCode::SUCCESS)
}
