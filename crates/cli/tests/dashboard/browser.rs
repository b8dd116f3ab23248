//! Headless Chromium from Debian's packages, driven over chromedriver (WebDriver) with
//! fantoccini, and the dashboard workflow of the seed both backends' browser tests walk:
//! watch an update, see the pre-promotion measurements arrive, promote from the page, watch
//! the switch, all without reloading the page.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// Chromium's flags that work on this machine kind: headless, no sandbox as root, and none of
/// the background connections a closed network refuses.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1800",
];

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// Chromium and chromedriver, or None after saying loudly why the test does not run.
pub fn tools() -> Option<(PathBuf, PathBuf)> {
    match (which("chromium"), which("chromedriver")) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            eprintln!(
                "\n\n*** SKIPPED: the dashboard's browser test needs Debian's `chromium` and \
                 `chromium-driver` (scripts/prepare-test-env installs them) ***\n\n"
            );
            None
        }
    }
}

/// A browser session; chromedriver and the browser stop when it is dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session through it.
    /// Screenshots go to `<target>/tmp/dashboard-screenshots/<name>/`.
    pub async fn start(chromium: &Path, chromedriver: &Path, name: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args: Vec<String> = FLAGS.iter().map(|f| (*f).to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        start.elapsed() < Duration::from_secs(30),
                        "no browser session through chromedriver: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("dashboard-screenshots")
            .join(name);
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Self {
            client,
            driver,
            _profile: profile,
            shots,
        }
    }

    /// Saves a screenshot of the page (or of the element matching `css`) as `<file>.png`;
    /// with `CUTOVER_DASHBOARD_SHOTS=DIR` also into DIR (how docs/ gets its pictures).
    pub async fn shot(&self, file: &str, css: Option<&str>) {
        let png = match css {
            Some(css) => self
                .client
                .find(Locator::Css(css))
                .await
                .expect("element to photograph")
                .screenshot()
                .await
                .expect("element screenshot"),
            None => self.client.screenshot().await.expect("screenshot"),
        };
        let path = self.shots.join(format!("{file}.png"));
        std::fs::write(&path, &png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        if let Some(dir) = std::env::var_os("CUTOVER_DASHBOARD_SHOTS") {
            std::fs::write(Path::new(&dir).join(format!("{file}.png")), &png).expect("copy");
        }
    }

    /// Runs a script and returns its value.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    /// Polls a script until it returns true (at most `secs`).
    pub async fn wait_for(&self, what: &str, secs: u64, script: &str) {
        let start = Instant::now();
        loop {
            if self.eval(script).await == json!(true) {
                return;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                let text = self
                    .eval("return document.querySelector('main').innerText")
                    .await;
                let _ = self.shot("timeout", None).await;
                panic!("timed out waiting for {what}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Ends the session.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The text of the summary's status pill, as a script expression.
pub const PHASE: &str = "((document.querySelector('#summary .pill') || {}).textContent || '')";

/// The seed's dashboard workflow on one rollout whose update is started by `update` (the
/// caller's `set image`), with its pre-promotion analysis measuring: open the list (token in
/// the URL), open the rollout, watch the update and the measurements arrive live, promote
/// from the page with confirmation, and see it Healthy on `new_image` — all in one page load.
pub async fn seed_workflow(
    b: &Browser,
    url: &str,
    ns: &str,
    name: &str,
    new_image: &str,
    update: impl FnOnce(),
) {
    b.client.goto(url).await.expect("open the list");
    b.wait_for(
        "the list, live, with the rollout Healthy",
        60,
        &format!(
            "var r = document.getElementById('row-{ns}--{name}');
             return !!r && r.innerText.indexOf('Healthy') >= 0
                    && document.getElementById('conn').textContent === 'Live';"
        ),
    )
    .await;
    assert_eq!(
        b.eval("return location.hash").await,
        json!(""),
        "the token leaves the address bar"
    );
    b.shot("list", None).await;
    b.click(&format!("#row-{ns}--{name} a")).await;
    b.wait_for(
        "the rollout's page",
        30,
        "return !!document.getElementById('summary') && document.getElementById('conn').textContent === 'Live';",
    )
    .await;
    // Anything the page keeps across updates proves there was no reload.
    b.eval("window.cutoverTestMarker = 42; return true;").await;
    update();
    b.wait_for(
        "the first measurement, live",
        90,
        "return document.querySelectorAll('#analysis svg g.mark').length >= 1;",
    )
    .await;
    let first = b
        .eval("return document.querySelectorAll('#analysis svg g.mark').length;")
        .await;
    b.wait_for(
        "more measurements arriving",
        90,
        &format!("return document.querySelectorAll('#analysis svg g.mark').length > {first};"),
    )
    .await;
    b.wait_for(
        "the update paused for promotion",
        120,
        &format!("return {PHASE}.indexOf('Paused') >= 0;"),
    )
    .await;
    b.shot("detail", None).await;
    b.shot("analysis-chart", Some("#analysis figure.chart"))
        .await;
    b.click("button[data-op='promote']").await;
    b.wait_for(
        "the confirmation dialog",
        10,
        "return document.getElementById('confirm').open === true;",
    )
    .await;
    let sentence = b
        .eval("return document.getElementById('confirm-text').textContent")
        .await;
    assert!(
        sentence.as_str().unwrap_or("").contains("Promote"),
        "{sentence}"
    );
    b.click("#confirm-ok").await;
    b.wait_for(
        "the backend's answer",
        30,
        "return document.getElementById('outcome').className.indexOf('ok') >= 0;",
    )
    .await;
    b.wait_for(
        "Healthy on the new image, live",
        90,
        &format!(
            "var s = document.getElementById('summary').innerText;
             return s.indexOf('Healthy') >= 0
                    && /{image}\\s+stable\\s+active/.test(s);",
            image = new_image.replace('.', "\\.")
        ),
    )
    .await;
    assert_eq!(
        b.eval("return window.cutoverTestMarker").await,
        json!(42),
        "the page was never reloaded"
    );
    b.shot("detail-promoted", None).await;
}
