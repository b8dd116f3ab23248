//! Starting, watching and stopping one container process, and the port and pid helpers around it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout_at};

use super::spec::ContainerPlan;

/// How often a process the supervisor did not start (adopted) is checked for exit, since it
/// cannot be waited on.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

/// A running container process: either started here (waitable) or adopted from a previous run of
/// the daemon (only pollable, because it is not our child any more).
pub(crate) enum Proc {
    Child { child: Child, pid: u32 },
    Adopted { pid: u32 },
}

impl Proc {
    pub fn pid(&self) -> u32 {
        match self {
            Proc::Child { pid, .. } | Proc::Adopted { pid } => *pid,
        }
    }

    /// Waits for the process to exit and describes how it ended.
    pub async fn wait(&mut self) -> String {
        match self {
            Proc::Child { child, .. } => match child.wait().await {
                Ok(status) => describe(status),
                Err(e) => format!("could not wait for the process: {e}"),
            },
            Proc::Adopted { pid } => {
                while pid_alive(*pid) {
                    sleep(ADOPTED_POLL).await;
                }
                "exited (status unknown: the process was adopted after a daemon restart)".to_owned()
            }
        }
    }
}

/// Starts a container's process in its own process group, with stdout and stderr appended to
/// `log`. The log file is handed to the process itself rather than piped through the daemon, so
/// the process keeps logging (and is not killed by a broken pipe) if the daemon dies.
pub(crate) fn spawn(plan: &ContainerPlan, log: &Path) -> Result<Proc, String> {
    // Logs can hold secrets an app prints: owner only.
    let file = crate::private::open_append(log)
        .map_err(|e| format!("could not open the log file {}: {e}", log.display()))?;
    let stderr = file
        .try_clone()
        .map_err(|e| format!("could not open the log file {}: {e}", log.display()))?;
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        // Its own group: signals reach the whole tree (shell, grandchildren), and a Ctrl-C or
        // crash of the daemon does not take the replicas down with it.
        .process_group(0);
    if let Some(dir) = &plan.working_dir {
        cmd.current_dir(dir);
    }
    let child = cmd.spawn().map_err(|e| {
        format!(
            "could not start {:?}{}: {e}",
            plan.program,
            plan.working_dir
                .as_ref()
                .map(|d| format!(" in {}", d.display()))
                .unwrap_or_default()
        )
    })?;
    let pid = child
        .id()
        .ok_or_else(|| "the process exited before its pid could be read".to_owned())?;
    Ok(Proc::Child { child, pid })
}

/// Stops a process and its group: SIGTERM, then SIGKILL once `grace` has passed. Returns how the
/// process ended. Group members that outlive the leader are given the rest of the grace period.
pub(crate) async fn terminate(proc: &mut Proc, grace: Duration) -> String {
    let pgid = group(proc.pid());
    let deadline = Instant::now() + grace;
    signal_group(pgid, Signal::SIGTERM);
    let ended = match timeout_at(deadline, proc.wait()).await {
        Ok(ended) => ended,
        Err(_) => {
            signal_group(pgid, Signal::SIGKILL);
            format!(
                "{} (killed after the {}s grace period)",
                proc.wait().await,
                grace.as_secs()
            )
        }
    };
    while group_alive(pgid) && Instant::now() < deadline {
        sleep(Duration::from_millis(50)).await;
    }
    signal_group(pgid, Signal::SIGKILL);
    ended
}

/// Kills whatever is left of a process group whose leader exited on its own, as Kubernetes tears
/// down a container's processes when its main process ends.
pub(crate) fn kill_leftovers(pid: u32) {
    signal_group(group(pid), Signal::SIGKILL);
}

fn group(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

fn signal_group(pgid: Pid, signal: Signal) {
    // ESRCH (nothing left) is the expected outcome once the group is gone.
    let _ = killpg(pgid, signal);
}

fn group_alive(pgid: Pid) -> bool {
    killpg(pgid, None).is_ok()
}

/// Whether `pid` is a live process (a zombie counts as gone: it has exited, only not been reaped).
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if kill(Pid::from_raw(raw), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name, which may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|state| state != 'Z' && state != 'X'),
        Err(_) => true,
    }
}

/// Whether `pid` is the process cutover started for this replica, judged by the variables cutover
/// gave it. `None` when that cannot be read (no /proc): the caller then relies on other checks.
pub(crate) fn pid_identity_matches(pid: u32, hash: &str, index: u32) -> Option<bool> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let want_hash = format!("CUTOVER_REVISION={hash}");
    let want_index = format!("CUTOVER_REPLICA={index}");
    let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    Some(vars.contains(&want_hash.as_bytes()) && vars.contains(&want_index.as_bytes()))
}

/// Signals an adopted process's group to stop, for processes found but not worth keeping.
pub(crate) async fn terminate_pid(pid: u32, grace: Duration) {
    terminate(&mut Proc::Adopted { pid }, grace).await;
}

/// A free port on 127.0.0.1, found by binding port 0. The port is released at once, so another
/// program could take it before the replica binds it; the replica then crash-loops and gets a new
/// port on its next pod start.
pub(crate) fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether `port` could be bound again by a replica (with SO_REUSEADDR, as servers bind, so old
/// connections in TIME_WAIT do not count as taken).
pub(crate) fn port_free(port: u16) -> bool {
    let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
        return false;
    };
    socket.set_reuseaddr(true).is_ok()
        && socket
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .is_ok()
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub(crate) async fn port_listening(port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port));
    matches!(
        tokio::time::timeout(Duration::from_secs(1), connect).await,
        Ok(Ok(_))
    )
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(s) => format!("killed by signal {s}"),
            Err(_) => format!("killed by signal {signal}"),
        },
        _ => format!("ended: {status}"),
    }
}
