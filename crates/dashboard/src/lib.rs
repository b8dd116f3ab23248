//! cutover's dashboard: a list of rollouts and a page per rollout (revisions, pods, Services,
//! traffic rules, analysis charts, events, migration, update timings), live without reload,
//! with the CLI's actions behind a confirmation and a bearer token.
//!
//! It decides nothing and keeps nothing: pages are drawn from the same view model the CLI's
//! `get rollout` renders, read through a [`Backend`] that makes the CLI verbs' own calls
//! (the daemon's control API on one host, the Kubernetes API with the user's kubeconfig).
//!
//! ```text
//! browser ──GET pages, SSE──▶ server ──▶ pages (HTML, SVG) ◀── views ◀── Backend ◀── hub (polls)
//!         ──POST + token───▶ guard ──▶ Backend::operate (as `cutover promote` …)
//! ```

mod assets;
mod backend;
mod error;
mod guard;
mod html;
mod live;
mod options;
pub mod pages;
mod serve;
mod server;
#[doc(hidden)]
pub mod testing;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use backend::{Backend, DEFAULT_NAMESPACE, LocalBackend, RolloutKey};
pub use error::DashboardError;
pub use options::{DEFAULT_ADDRESS, Options, TlsFiles, Token, TokenSource};

/// A dashboard that listens.
pub struct Dashboard {
    /// Where it listens.
    pub address: SocketAddr,
    /// Its address (no token).
    pub url: String,
    /// The token mutations need.
    pub token: Token,
    /// Mutations are refused.
    pub read_only: bool,
    app: server::App,
    task: JoinHandle<()>,
}

impl Dashboard {
    /// What to print at start: the URL (with the token after `#`, which browsers never send
    /// to a server, unless it is kept in a file), and a warning when it listens beyond
    /// loopback without TLS.
    pub fn announce(&self, options: &Options) -> String {
        let mut text = match (&self.token.file, self.read_only) {
            (_, true) => format!("cutover dashboard (read-only): {}\n", self.url),
            (Some(file), false) => format!(
                "cutover dashboard: {}\n  changes need the token in {} (the page asks for it once)\n",
                self.url,
                file.display()
            ),
            (None, false) => format!(
                "cutover dashboard: {}#token={}\n  open this URL: the token after # authorizes changes and is shown only now\n",
                self.url, self.token.value
            ),
        };
        if !self.address.ip().is_loopback() && options.tls.is_none() {
            text.push_str(
                "WARNING: --insecure-bind: listening beyond loopback without TLS; anyone on the \
                 network can read the pages, and the token crosses it in clear\n",
            );
        }
        text
    }

    /// Pages with a live connection now.
    pub fn watchers(&self) -> usize {
        self.app.watchers()
    }

    /// Resolves once the server has stopped (after its shutdown token was cancelled).
    pub async fn finished(self) {
        let _ = self.task.await;
    }
}

/// Checks the options, loads the token and the TLS files, binds, and serves `backend` until
/// `shutdown` is cancelled.
pub async fn start(
    backend: Arc<dyn Backend>,
    mut options: Options,
    shutdown: CancellationToken,
) -> Result<Dashboard, DashboardError> {
    options.check()?;
    let token = options.token.load()?;
    let tls = options.tls.as_ref().map(serve::acceptor).transpose()?;
    let listener = serve::bind(options.address).await?;
    let address = listener
        .local_addr()
        .map_err(|source| DashboardError::Bind {
            address: options.address,
            source,
        })?;
    let guard = guard::Guard::new(token.value.clone(), &options.allowed_hosts, tls.is_some());
    let app = server::App::new(
        backend,
        guard,
        &options.root_path,
        options.read_only,
        options.poll_interval,
        shutdown.clone(),
    );
    let router = server::router(app.clone());
    let task = tokio::spawn(serve::run(listener, tls, router, shutdown));
    Ok(Dashboard {
        address,
        url: options.base_url(address),
        token,
        read_only: options.read_only,
        app,
        task,
    })
}

/// The dashboard of the single-host daemon of `state_dir`, as `cutover up --dashboard` and
/// `cutover demo --dashboard` serve it: prints where it is, then serves until `shutdown`.
pub async fn serve_local(
    state_dir: &Path,
    options: Options,
    shutdown: CancellationToken,
) -> Result<(), DashboardError> {
    let backend = Arc::new(LocalBackend::new(state_dir)?);
    let dashboard = start(backend, options.clone(), shutdown).await?;
    eprint!("{}", dashboard.announce(&options));
    dashboard.finished().await;
    Ok(())
}
