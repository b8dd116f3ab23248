//! A throwaway PostgreSQL 15 cluster for tests and benchmarks: `initdb` into a temporary
//! directory, started on a free loopback port, stopped and deleted by a small watchdog process
//! once the process that asked for it exits (so a panicking or killed test leaves nothing
//! running). `DATABASE_URL`, when set, is used instead.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where Debian's PostgreSQL 15 binaries live (override: `CUTOVER_PG_BIN`).
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running cluster (or the one `DATABASE_URL` names).
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Connection URL of its `postgres` database.
    pub url: String,
    /// Its directory (None with `DATABASE_URL`).
    pub dir: Option<PathBuf>,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Variables a third-party tool started for tests may inherit. Everything else is dropped: a
/// test process carries cargo's variables (OUT_DIR, CARGO_*, RUSTFLAGS, TARGET…), which mean
/// other things to other tools. scripts/lib/tool-env.sh keeps the same list.
pub const TOOL_ENV_KEEP: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "LANG", "LC_ALL", "TZ", "TERM",
];

/// A command for a third-party tool (PostgreSQL, Prometheus, …) with a clean environment.
pub fn tool_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env_clear();
    for name in TOOL_ENV_KEEP {
        if let Some(value) = std::env::var_os(name) {
            c.env(name, value);
        }
    }
    c
}

/// PostgreSQL refuses to run as root: run its tools as `postgres` then.
fn as_postgres(program: &str, root: bool) -> Command {
    if root {
        let mut c = tool_command("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        tool_command(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Starts a cluster tuned for tests (no fsync), or returns `DATABASE_URL`.
pub fn start() -> Result<Cluster, String> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return Ok(Cluster { url, dir: None });
    }
    start_with(&[
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
    ])
}

/// Starts a cluster with extra `-c` settings.
pub fn start_with(settings: &[&str]) -> Result<Cluster, String> {
    let bin = PathBuf::from(std::env::var("CUTOVER_PG_BIN").unwrap_or_else(|_| PG_BIN.into()));
    let initdb = bin.join("initdb");
    let pg_ctl = bin.join("pg_ctl");
    if !initdb.exists() || !pg_ctl.exists() {
        return Err(format!(
            "PostgreSQL 15 binaries not found in {} (need initdb and pg_ctl): install postgresql-15, set CUTOVER_PG_BIN, or set DATABASE_URL to a database cutover may use",
            bin.display()
        ));
    }
    let root = is_root();
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cutover-pg-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if root {
        run(
            {
                let mut c = Command::new("chown");
                c.arg("postgres:postgres").arg(&dir);
                c
            },
            "chown",
        )?;
    }
    let data = dir.join("data");
    let (initdb_s, pg_ctl_s) = (initdb.display().to_string(), pg_ctl.display().to_string());
    let mut cmd = as_postgres(&initdb_s, root);
    cmd.arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]);
    run(cmd, "initdb")?;
    // A free port: bind :0, read it, release it. Another process could take it before
    // PostgreSQL binds; then start fails and we try another.
    let mut last_err = String::new();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            dir.display()
        );
        for s in settings {
            opts.push_str(&format!(" -c {s}"));
        }
        let mut cmd = as_postgres(&pg_ctl_s, root);
        cmd.arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-t", "30", "-o", &opts, "start"]);
        match run(cmd, "pg_ctl start") {
            Ok(()) => {
                watchdog(&dir, &pg_ctl_s, root);
                return Ok(Cluster {
                    url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                    dir: Some(dir),
                });
            }
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

/// Stops the cluster and removes its directory once this process is gone.
fn watchdog(dir: &std::path::Path, pg_ctl: &str, root: bool) {
    let prefix = if root { "runuser -u postgres -- " } else { "" };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {prefix}{pg_ctl} -D '{d}/data' -m immediate stop >/dev/null 2>&1; rm -rf '{d}'",
        pid = std::process::id(),
        d = dir.display()
    );
    // Detached on purpose: it must outlive us. Its exit status is irrelevant.
    let _ = tool_command("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// Creates a fresh, uniquely named database and returns its URL.
pub async fn fresh_database(base_url: &str, prefix: &str) -> Result<String, String> {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let (client, conn) = tokio_postgres::connect(base_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connecting to {base_url}: {e}"))?;
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .map_err(|e| format!("creating database {name}: {e}"))?;
    drop(client);
    let _ = task.await;
    let base = base_url.rsplit_once('/').map_or(base_url, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}
