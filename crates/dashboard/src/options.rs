//! How the dashboard is served, and the checks that keep it safe to leave running: loopback
//! unless TLS or an explicit `--insecure-bind`, a root path that cannot escape, a token that
//! only its owner can read.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::DashboardError;

/// The default address: Argo Rollouts' dashboard port, on loopback.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:3100";

/// Settings of one dashboard.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where to listen (port 0: any free port).
    pub address: SocketAddr,
    /// Prefix of every page, e.g. `/cutover` behind a reverse proxy (empty: served at `/`).
    pub root_path: String,
    /// Certificate and key (PEM) to serve HTTPS.
    pub tls: Option<TlsFiles>,
    /// Listen beyond loopback without TLS (the token then crosses the network in clear).
    pub insecure_bind: bool,
    /// Where the token comes from.
    pub token: TokenSource,
    /// Show everything, change nothing.
    pub read_only: bool,
    /// Host names (with or without port) the dashboard answers to besides IP addresses and
    /// `localhost`; any other `Host` is refused, which defeats DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// How often the backend is read while pages are open (the live update delay).
    pub poll_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 3100)),
            root_path: String::new(),
            tls: None,
            insecure_bind: false,
            token: TokenSource::Generate,
            read_only: false,
            allowed_hosts: Vec::new(),
            poll_interval: Duration::from_millis(250),
        }
    }
}

/// PEM files for HTTPS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Where the bearer token comes from.
#[derive(Clone, Debug)]
pub enum TokenSource {
    /// A fresh random token, printed once with the URL and kept nowhere else.
    Generate,
    /// This file: read when it exists (it must be readable by its owner only), otherwise
    /// created with a fresh token, mode 0600.
    File(PathBuf),
    /// This value (tests, and `cutover up --dashboard` passing one along).
    Fixed(String),
}

/// The token in use, and whether the URL printed at start may carry it.
#[derive(Clone, Debug)]
pub struct Token {
    /// The secret.
    pub value: String,
    /// The file it is kept in, if any (then the URL printed at start does not carry it).
    pub file: Option<PathBuf>,
}

impl Options {
    /// Checks the options and normalises the root path; the error says which flag to change.
    pub fn check(&mut self) -> Result<(), DashboardError> {
        self.root_path = normalise_root(&self.root_path)?;
        let ip = self.address.ip();
        if !ip.is_loopback() && self.tls.is_none() && !self.insecure_bind {
            return Err(DashboardError::Options(format!(
                "--address {}: not a loopback address, so the dashboard would be reachable from \
                 the network with its token sent in clear; give --tls-cert FILE --tls-key FILE, \
                 or --insecure-bind if a trusted proxy terminates TLS in front of it",
                self.address
            )));
        }
        for host in &self.allowed_hosts {
            if host.is_empty() || host.contains(['/', ' ', '@']) {
                return Err(DashboardError::Options(format!(
                    "--allowed-host {host:?}: expected a host name, optionally with :PORT \
                     (e.g. --allowed-host dashboard.example.com)"
                )));
            }
        }
        Ok(())
    }

    /// The base URL of the dashboard once bound to `address` (no token).
    pub fn base_url(&self, address: SocketAddr) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{address}{}/", self.root_path)
    }
}

/// `/cutover/` → `/cutover`; `/` and `` → ``. Only plain path characters: the prefix is
/// written into every link of every page.
fn normalise_root(root: &str) -> Result<String, DashboardError> {
    let trimmed = root.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.~/".contains(c);
    if !trimmed.starts_with('/')
        || !trimmed.chars().all(allowed)
        || trimmed.contains("//")
        || trimmed.split('/').any(|s| s == "." || s == "..")
    {
        return Err(DashboardError::Options(format!(
            "--root-path {root:?}: must start with '/' and hold only letters, digits, '-', '_', \
             '.', '~' and '/' between non-empty segments (e.g. --root-path /cutover)"
        )));
    }
    Ok(trimmed.to_string())
}

impl TokenSource {
    /// The token: generated, read from its file, or created there.
    pub fn load(&self) -> Result<Token, DashboardError> {
        match self {
            TokenSource::Generate => Ok(Token {
                value: random_token().map_err(|e| {
                    DashboardError::Options(format!(
                        "cannot read the kernel's random generator for a token: {e}"
                    ))
                })?,
                file: None,
            }),
            TokenSource::Fixed(value) => Ok(Token {
                value: value.clone(),
                file: None,
            }),
            TokenSource::File(path) => Ok(Token {
                value: token_file(path)?,
                file: Some(path.clone()),
            }),
        }
    }
}

/// Reads the token file, or creates it with a fresh token (mode 0600, never overwriting).
fn token_file(path: &Path) -> Result<String, DashboardError> {
    let err = |message: String| DashboardError::Token {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "readable or writable by others (mode {mode:o}); run `chmod 600 {}`",
                    path.display()
                )));
            }
            let mut text = String::new();
            std::fs::File::open(path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .map_err(|e| err(format!("cannot read it: {e}")))?;
            let token = text.trim().to_string();
            if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(err(
                    "expected one line of at least 16 characters without spaces; delete the \
                     file to have a fresh token written there"
                        .into(),
                ));
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = random_token().map_err(|e| err(format!("no random token: {e}")))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| err(format!("cannot create it: {e}")))?;
            file.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| err(format!("cannot write it: {e}")))?;
            Ok(token)
        }
        Err(e) => Err(err(format!("cannot read it: {e}"))),
    }
}

/// 256 random bits from the kernel's generator, as hex.
fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_paths_are_normalised_or_refused() {
        for (given, expected) in [
            ("", ""),
            ("/", ""),
            ("/cutover/", "/cutover"),
            ("/a/b", "/a/b"),
        ] {
            assert_eq!(
                normalise_root(given).ok().as_deref(),
                Some(expected),
                "{given}"
            );
        }
        for bad in ["cutover", "/a//b", "/../x", "/a b", "/a\"b", "/<x>"] {
            let e = normalise_root(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("--root-path"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_network_address_needs_tls_or_an_explicit_flag() {
        let mut o = Options {
            address: "0.0.0.0:3100".parse().unwrap_or(Options::default().address),
            ..Options::default()
        };
        let e = o.check().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            e.contains("--tls-cert") && e.contains("--insecure-bind"),
            "{e}"
        );
        o.insecure_bind = true;
        assert!(o.check().is_ok());
        let mut loopback = Options::default();
        assert!(loopback.check().is_ok());
    }
}
