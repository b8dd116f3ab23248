//! Running Kubernetes probes (httpGet, tcpSocket, exec) against a local replica.

use std::process::Stdio;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::{sleep, timeout};

use super::spec::{ContainerPlan, ProbeAction, ProbePlan};

/// Runs one probe attempt; `Err` carries why it failed, for `last_exit` and the logs.
pub(crate) async fn check(plan: &ProbePlan, container: &ContainerPlan) -> Result<(), String> {
    match timeout(plan.timeout, attempt(&plan.action, container)).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {}s", plan.timeout.as_secs())),
    }
}

async fn attempt(action: &ProbeAction, container: &ContainerPlan) -> Result<(), String> {
    match action {
        ProbeAction::Tcp { host, port } => TcpStream::connect((host.as_str(), *port))
            .await
            .map(drop)
            .map_err(|e| format!("tcp {host}:{port}: {e}")),
        ProbeAction::Http {
            host,
            port,
            path,
            headers,
        } => http_get(host, *port, path, headers).await,
        ProbeAction::Exec { command } => exec(command, container).await,
    }
}

async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let url = format!("http://{host}:{port}{path}");
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    // The connection task ends with the request: the probe drops `sender` when it returns.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut request = hyper::Request::get(path)
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::USER_AGENT, "cutover-probe");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET {url}: invalid request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {url}: status {status}"))
    }
}

async fn exec(command: &[String], container: &ContainerPlan) -> Result<(), String> {
    let Some((program, args)) = command.split_first() else {
        return Err("exec probe has no command".to_owned());
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(container.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // The probe's timeout drops this future; the process must not outlive it.
        .kill_on_drop(true);
    if let Some(dir) = &container.working_dir {
        cmd.current_dir(dir);
    }
    let status = cmd
        .status()
        .await
        .map_err(|e| format!("exec {program:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("exec {program:?}: {status}"))
    }
}

/// What a probe loop reports: a readiness change, or (liveness/startup) a fatal failure.
pub(crate) enum Verdict {
    Passed,
    Failed(String),
}

/// Runs `plan` forever, calling `report` whenever the thresholds flip the verdict: `Passed` after
/// `success_threshold` successes in a row, `Failed` after `failure_threshold` failures in a row.
/// Returns when `report` returns `true` (the caller has seen enough).
pub(crate) async fn run_loop(
    plan: &ProbePlan,
    container: &ContainerPlan,
    skip_initial_delay: bool,
    mut report: impl FnMut(Verdict) -> bool,
) {
    if !skip_initial_delay {
        sleep(plan.initial_delay).await;
    }
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut passing: Option<bool> = None;
    loop {
        match check(plan, container).await {
            Ok(()) => {
                successes += 1;
                failures = 0;
                if successes >= plan.success_threshold && passing != Some(true) {
                    passing = Some(true);
                    if report(Verdict::Passed) {
                        return;
                    }
                }
            }
            Err(why) => {
                failures += 1;
                successes = 0;
                if failures >= plan.failure_threshold && passing != Some(false) {
                    passing = Some(false);
                    let why = format!("{why} ({failures} failures in a row)");
                    if report(Verdict::Failed(why)) {
                        return;
                    }
                }
            }
        }
        sleep(plan.period).await;
    }
}
