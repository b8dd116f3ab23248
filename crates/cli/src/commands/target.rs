//! Where the verbs act: the single-host daemon of a state directory. (The Kubernetes backend
//! will be chosen with --kubeconfig/--context once it exists.)

use std::path::PathBuf;

use cutover_local::api::Client;

/// Environment variable naming the state directory.
pub const STATE_DIR_ENV: &str = "CUTOVER_STATE_DIR";

/// The state directory: --state-dir, else $CUTOVER_STATE_DIR, else
/// $XDG_STATE_HOME/cutover, else ~/.local/state/cutover.
pub fn state_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(dir) = flag {
        return dir;
    }
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("cutover");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/cutover")
}

/// A client of the daemon of `dir`.
pub fn client(dir: &std::path::Path) -> anyhow::Result<Client> {
    Ok(Client::from_state_dir(dir)?)
}

/// A runtime for the verbs that talk to the daemon.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
