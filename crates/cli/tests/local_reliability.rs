//! Reliability of the single-host data plane under hostile clients and control-plane faults
//! (issue 12 items 2, 3, 8, 10), each with a steady load that must see no failed request:
//! idle and half-sent connections beyond the open-files budget, a backend that never answers,
//! kill -9 of the daemon, an upgrade of the daemon, the data-plane process itself killed.
//! The figures these tests print (`--nocapture`) are the ones in docs/reliability.md.

mod e2e;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use e2e::*;

fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// Waits until the load has `n` more samples than `from` (at most 60 s).
fn wait_samples(load: &Load, from: usize, n: usize) -> usize {
    let start = Instant::now();
    loop {
        let now = load.samples().len();
        if now >= from + n {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the load made no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The longest stretch without a successful answer, for the figures.
fn longest_outage(samples: &[Sample]) -> Duration {
    let mut ok: Vec<Instant> = samples
        .iter()
        .filter(|s| s.error.is_none())
        .map(|s| s.sent)
        .collect();
    ok.sort();
    ok.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

fn report(what: &str, samples: &[Sample]) {
    let failed = samples.iter().filter(|s| s.error.is_some()).count();
    eprintln!(
        "{what}: {failed} of {} requests failed; longest gap between successes {:?}",
        samples.len(),
        longest_outage(samples)
    );
}

/// The data-plane process's pid, from `<state-dir>/data-plane.json`.
fn data_plane_pid(d: &Daemon) -> Option<i32> {
    let text = std::fs::read_to_string(d.state_dir().join("data-plane.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["pid"].as_i64().and_then(|p| i32::try_from(p).ok())
}

fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

/// The daemon's `GET /metrics` (no token needed).
fn metrics(d: &Daemon) -> String {
    let address = api_address(d.state_dir());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
            .get(format!("http://{address}/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    })
}

/// Sum of the samples of a metric family whose line contains every `filter`.
fn metric_sum(text: &str, name: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// A child process killed when dropped (a daemon a failing test would otherwise leave).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `get rollout NAME -o json` that must answer within `limit` (a daemon out of descriptors
/// hangs it).
fn view_within(d: &Daemon, name: &str, limit: Duration) {
    let mut child = KillOnDrop(
        std::process::Command::new(CUTOVER)
            .arg("--state-dir")
            .arg(d.state_dir())
            .args(["get", "rollout", name, "-o", "json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run cutover get"),
    );
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            assert!(status.success(), "get rollout failed during the flood");
            return;
        }
        assert!(
            start.elapsed() < limit,
            "get rollout did not answer within {limit:?} during the flood"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Item 10: kill -9 of `cutover up` under load fails no request, and the restarted daemon
/// adopts the running data plane.
#[test]
fn kill9_of_the_daemon_under_load_fails_no_request() {
    let (services, active_port, _) = services("k9");
    let rollout = demo_rollout("k9", 2, "", "");
    let mut d = Daemon::start(&format!("{services}{rollout}"));
    d.wait_healthy_on("k9", "demo:v1");
    let load = Load::start(addr(active_port), 4);
    let mut seen = wait_samples(&load, 0, 200);
    for round in 0..2 {
        d.kill9();
        // The daemon stays down while the load sends a few hundred more requests.
        seen = wait_samples(&load, seen, 300);
        d.restart();
        d.wait_healthy_on("k9", "demo:v1");
        seen = wait_samples(&load, seen, 200);
        eprintln!("kill -9 round {round} done");
    }
    let samples = load.stop();
    report("kill -9 of the daemon, twice, 4 clients", &samples);
    assert_no_failures(&samples);
}

/// Item 10: an upgrade (`cutover up --replace` starts the new daemon, the old one exits
/// leaving the data plane and the processes running) fails no request.
#[test]
fn replacing_the_daemon_under_load_fails_no_request() {
    let (services, active_port, _) = services("up");
    let rollout = demo_rollout("up", 2, "", "");
    let mut d = Daemon::start(&format!("{services}{rollout}"));
    d.wait_healthy_on("up", "demo:v1");
    let mut old = KillOnDrop(d.child.take().expect("the first daemon"));
    let load = Load::start(addr(active_port), 4);
    let seen = wait_samples(&load, 0, 200);
    d.up_args.push("--replace".into());
    d.restart();
    let status = {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = old.0.try_wait() {
                break status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the old daemon did not hand over: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert!(status.success(), "old daemon: {status}; {}", d.log());
    d.wait_healthy_on("up", "demo:v1");
    wait_samples(&load, seen, 300);
    let samples = load.stop();
    report("daemon replaced (upgrade), 4 clients", &samples);
    assert_no_failures(&samples);
}

/// Item 8: when the listeners open again (here the data plane died with the daemon), they
/// serve the route table restored from the store from the first connection: refused
/// connections while nothing listens, but never a 503 for lack of a table or of a backend.
#[test]
fn reopened_listeners_serve_the_restored_table_from_the_first_request() {
    let (services, active_port, _) = services("rs");
    let rollout = demo_rollout("rs", 2, "", "");
    let mut d = Daemon::start(&format!("{services}{rollout}"));
    d.wait_healthy_on("rs", "demo:v1");
    let load = Load::start(addr(active_port), 4);
    let mut seen = wait_samples(&load, 0, 200);
    for _ in 0..3 {
        let data_plane = data_plane_pid(&d);
        d.kill9();
        if let Some(pid) = data_plane {
            kill9(pid);
        }
        d.restart();
        d.wait_healthy_on("rs", "demo:v1");
        seen = wait_samples(&load, seen, 300);
    }
    let samples = load.stop();
    report(
        "daemon and data plane killed, restarted (3 times)",
        &samples,
    );
    let unavailable: Vec<&Sample> = samples.iter().filter(|s| answered_503(s)).collect();
    assert!(
        unavailable.is_empty(),
        "{} requests got 503 after the listeners reopened, e.g. {:?}",
        unavailable.len(),
        unavailable.first()
    );
}

/// Item 10: the data-plane process killed alone is restarted by the daemon and gets its
/// listeners and tables back; the daemon never stops answering.
#[test]
fn a_killed_data_plane_is_restarted_with_its_tables() {
    let (services, active_port, _) = services("dp");
    let rollout = demo_rollout("dp", 2, "", "");
    let d = Daemon::start(&format!("{services}{rollout}"));
    d.wait_healthy_on("dp", "demo:v1");
    let first = data_plane_pid(&d).expect("a data-plane process");
    let load = Load::start(addr(active_port), 2);
    wait_samples(&load, 0, 100);
    let killed = Instant::now();
    kill9(first);
    let start = Instant::now();
    let second = loop {
        if let Some(pid) = data_plane_pid(&d).filter(|p| *p != first && alive(*p)) {
            break pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no new data plane: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Connections are refused while no process listens; the new one serves the tables the
    // daemon sends it before it accepts, so nothing is answered 503.
    let start = Instant::now();
    while load
        .samples()
        .iter()
        .filter(|s| s.sent > killed && s.error.is_none())
        .count()
        < 300
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the Service did not come back: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let samples = load.stop();
    report("data plane killed and restarted, 2 clients", &samples);
    let unavailable: Vec<&Sample> = samples.iter().filter(|s| answered_503(s)).collect();
    assert!(
        unavailable.is_empty(),
        "503s after the restart: {unavailable:?}"
    );
    assert!(alive(second));
    d.wait_healthy_on("dp", "demo:v1");
}

/// A graceful stop (SIGTERM, as Ctrl-C) still stops everything: the data plane, its
/// listeners and the processes.
#[test]
fn a_graceful_stop_stops_the_data_plane_and_the_processes() {
    let (services, active_port, _) = services("gs");
    let rollout = demo_rollout("gs", 1, "", "");
    let mut d = Daemon::start(&format!("{services}{rollout}"));
    let v = d.wait_healthy_on("gs", "demo:v1");
    let app = v["revisions"][0]["replicas"][0]["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .expect("an app pid");
    let data_plane = data_plane_pid(&d);
    let mut child = d.child.take().expect("daemon");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0)),
        nix::sys::signal::Signal::SIGTERM,
    );
    let start = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(app), "the app process survived a graceful stop");
    if let Some(pid) = data_plane {
        assert!(!alive(pid), "the data plane survived a graceful stop");
    }
    assert!(
        TcpStream::connect(addr(active_port)).is_err(),
        "the active Service still listens"
    );
}

/// Item 2: more idle and half-sent connections than the open-files budget allows do not take
/// the Service down: the steady load sees no failure, the daemon keeps answering, refusals are
/// counted, and half-sent requests are cut by the header-read timeout.
#[test]
fn idle_and_half_sent_connections_beyond_the_fd_budget_fail_no_request() {
    let (services, active_port, _) = services("fd");
    let rollout = demo_rollout("fd", 2, "", "");
    let d = Daemon::start_opts(&format!("{services}{rollout}"), &[], &[], Some(512));
    d.wait_healthy_on("fd", "demo:v1");
    let data_plane = data_plane_pid(&d);
    let watched =
        data_plane.unwrap_or(i32::try_from(d.child.as_ref().map_or(0, |c| c.id())).unwrap_or(0));
    let (fds_before, rss_before) = (open_fds(watched), rss_kib(watched));
    let load = Load::start(addr(active_port), 2);
    let seen = wait_samples(&load, 0, 100);

    let mut idle = Vec::new();
    let mut half_sent = Vec::new();
    let mut unanswered = 0;
    for i in 0..1300 {
        let Ok(mut s) = TcpStream::connect_timeout(&addr(active_port), Duration::from_millis(300))
        else {
            // The kernel's accept queue is full: the listener stopped accepting.
            unanswered += 1;
            if unanswered >= 5 {
                break;
            }
            continue;
        };
        if i % 10 == 0 {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
            half_sent.push(s);
        } else {
            idle.push(s);
        }
    }
    eprintln!(
        "flood: {} idle and {} half-sent connections open",
        idle.len(),
        half_sent.len()
    );
    let (fds_during, rss_during) = (open_fds(watched), rss_kib(watched));
    // Hold the flood across several readiness-probe periods while the daemon is asked for
    // its view (it must keep answering).
    let flood_start = Instant::now();
    while flood_start.elapsed() < Duration::from_secs(6) {
        view_within(&d, "fd", Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_samples(&load, seen, 100);

    // Every half-sent request is cut (by the header-read timeout, or refused at once).
    for s in &mut half_sent {
        s.set_read_timeout(Some(Duration::from_secs(40)))
            .expect("read timeout");
        let mut buf = [0u8; 512];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    break false;
                }
                Err(_) => break true,
            }
        };
        assert!(closed, "a half-sent request still holds its connection");
    }
    drop(idle);
    drop(half_sent);
    let samples = load.stop();
    let text = metrics(&d);
    let refused = metric_sum(&text, "cutover_connections_refused_total", &["fd-active"]);
    eprintln!(
        "fds {fds_before} → {fds_during} (during the flood), RSS {rss_before} → {rss_during} KiB, {refused} connections refused"
    );
    report(
        "1,300 idle/half-sent connections, limit 512 fds, 2 clients",
        &samples,
    );
    assert_no_failures(&samples);
    assert!(refused > 0.0, "no refusal counted:\n{text}");
}

/// Item 3: a backend that never answers gets a 504 after the Service's response timeout
/// (annotation `cutover.dev/response-timeout`), counted in the metrics.
#[test]
fn a_backend_that_never_answers_gets_a_504_after_the_services_timeout() {
    let (services, active_port, _) = services("rt");
    let services = services.replacen(
        "metadata: {name: rt-active}",
        "metadata: {name: rt-active, annotations: {cutover.dev/response-timeout: 1s}}",
        1,
    );
    let rollout = demo_rollout("rt", 1, "", "");
    let d = Daemon::start(&format!("{services}{rollout}"));
    d.wait_healthy_on("rt", "demo:v1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let status = rt.block_on(async {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
            .get(format!("http://{}/slow?ms=120000", addr(active_port)))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    });
    assert_eq!(status, Ok(504));
    let text = metrics(&d);
    assert!(
        metric_sum(&text, "cutover_response_timeouts_total", &["rt-active"]) >= 1.0,
        "{text}"
    );
}

/// Item 3: an annotation that is not a duration is a located lint error, not a silent default.
#[test]
fn a_response_timeout_that_is_not_a_duration_is_refused_with_its_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("svc.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n    cutover.dev/response-timeout: soon\nspec:\n  ports: [{port: 8080}]\n",
    )
    .expect("write");
    let out = std::process::Command::new(CUTOVER)
        .args(["lint", "-f"])
        .arg(&path)
        .output()
        .expect("run cutover lint");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("svc.yaml:6") && stderr.contains("invalid duration"),
        "{stderr}"
    );
}

/// The router answered `503` (a status, as the load clients record it), not a connection error
/// whose URL happens to contain "503" in its port.
fn answered_503(sample: &Sample) -> bool {
    sample
        .error
        .as_deref()
        .is_some_and(|e| e.starts_with("status 503"))
}
