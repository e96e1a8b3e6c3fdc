//! Ready checks (`ready when …`), one async task per process incarnation.
//! `log` is matched by the output relay; the others poll here, every
//! `every`, until they pass. The caller bounds them with `within`.
//!
//! An `exec` check leads a process group of its own, and whatever it
//! starts in that group must not outlive the runner. Its task does not
//! spawn it: it asks the driver ([`ExecSpawn`], a message on the driver's
//! channel), and the driver, in one step of its own, spawns the check,
//! registers the leader's status waiter and registers the process group
//! with the guard ([`spawn_check`], `Guard::add_check_group`). Spawning,
//! reaping and guard registrations all happen in driver steps on the
//! runtime's one thread, so:
//!
//! - the group is registered before the check's leader can be reaped (as
//!   for a service, the `g PGID` line is written right after the spawn);
//! - it stays registered while the group has a member, the leader's
//!   zombie included; checks' leftovers are not killed when the check
//!   ends (as in a cgroup, where they stay in the group's `ready/`
//!   cgroup), only at the run's end or by the guard;
//! - it is unregistered in the first driver step that finds the group
//!   empty, right after that step's reaps (`Guard::sweep_checks`), before
//!   anything is spawned. A process group's id cannot be reused while it
//!   has a member, and its members are the check's descendants, which
//!   the runner (a subreaper) adopts and reaps once the leader is gone: the
//!   group can only empty at one of the runner's reaps, each followed by a
//!   sweep. (Only a member whose parent is outside the group and alive —
//!   a process that joined the group with `setpgid` — is reaped by
//!   someone else; then the registration lingers until the next sweep.)
//!   A sweep probes (`kill(-pgid, 0)`) only the groups whose leader the
//!   reaper has taken: an unreaped leader is a member. The exit sweep of
//!   `up` sweeps the checks after every child it reaps, and sends the
//!   removals before the output is flushed, so the guard is not left a
//!   registration of an empty group.
//!
//! An abandoned check (its incarnation was released) is SIGKILLed with its
//! process group when its task is dropped, but only while its leader is
//! unreaped: its status has not arrived ([`Running`]).

use super::guard::Guard;
use super::reap::{Status, Waiters};
use super::spawn::{self, Inherited, SpawnSpec};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixDatagram};
use tokio::sync::{mpsc, oneshot};

pub enum Check {
    Tcp(String),
    Http(String),
    Exec {
        argv: Vec<String>,
        env: Vec<(String, String)>,
        cwd: PathBuf,
        /// The driver's channel: it spawns the check ([`ExecSpawn`]).
        driver: mpsc::UnboundedSender<super::driver::Msg>,
        inherited: Inherited,
        /// The group's ready cgroup (`cgroup.procs`, see cgroup.rs).
        cgroup: Option<Arc<std::os::fd::OwnedFd>>,
    },
    File(PathBuf),
    Notify(UnixDatagram, Sender),
}

/// Whose readiness datagrams count: the process's own (checked with the
/// sender's credentials, `SCM_CREDENTIALS`).
pub struct Sender {
    /// The leader's pid.
    pub leader: i32,
    /// With cgroup containment, the `/proc/PID/cgroup` line of the
    /// process's group's cgroup: any member counts (as systemd's
    /// `NotifyAccess=all` counts a service's whole cgroup). Without,
    /// members of the leader's process group count.
    pub cgroup: Option<String>,
}

impl Sender {
    fn accepts(&self, pid: i32) -> bool {
        if pid == self.leader && pid > 1 {
            return true;
        }
        match &self.cgroup {
            Some(line) => std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|t| t.lines().any(|l| l == line)),
            // SAFETY: getpgid has no memory preconditions.
            None => pid > 1 && unsafe { libc::getpgid(pid) } == self.leader,
        }
    }
}

/// Resolves once the check passes.
pub async fn passed(check: Check, every: Duration) {
    let every = every.max(Duration::from_millis(10));
    match check {
        Check::Notify(sock, from) => notify(sock, from).await,
        Check::Exec {
            argv,
            env,
            cwd,
            driver,
            inherited,
            cgroup,
        } => {
            let spec = Arc::new(ExecSpec {
                argv,
                env,
                cwd,
                inherited,
                cgroup,
            });
            while !exec_once(&spec, &driver).await {
                tokio::time::sleep(every).await;
            }
        }
        check => loop {
            if attempt(&check, every).await {
                return;
            }
            tokio::time::sleep(every).await;
        },
    }
}

async fn attempt(check: &Check, every: Duration) -> bool {
    let limit = every.max(Duration::from_millis(500));
    match check {
        Check::Tcp(addr) => matches!(
            tokio::time::timeout(limit, TcpStream::connect(addr.as_str())).await,
            Ok(Ok(_))
        ),
        Check::Http(url) => matches!(
            tokio::time::timeout(limit, http_get(url)).await,
            Ok(Some(200..=299))
        ),
        Check::File(p) => p.exists(),
        Check::Exec { .. } | Check::Notify(..) => false,
    }
}

/// `http://host[:port]/path` → (host:port, host, path).
pub fn parse_http_url(url: &str) -> Option<(String, String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return None;
    }
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Some((addr, authority.to_string(), path.to_string()))
}

async fn http_get(url: &str) -> Option<u16> {
    let (addr, host, path) = parse_http_url(url)?;
    let mut s = TcpStream::connect(addr.as_str()).await.ok()?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: flowrun\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_status_line(&buf)
}

pub fn parse_status_line(buf: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(buf).ok()?.lines().next()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// What an `exec` check runs.
pub struct ExecSpec {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    inherited: Inherited,
    /// The group's ready cgroup (`cgroup.procs`, see cgroup.rs).
    cgroup: Option<Arc<std::os::fd::OwnedFd>>,
}

/// An `exec` check's request to the driver: spawn it now, register its
/// process group with the guard, and answer with the running check
/// ([`spawn_check`]). No answer (the reply is dropped): it could not be
/// spawned.
pub struct ExecSpawn {
    spec: Arc<ExecSpec>,
    reply: oneshot::Sender<Running>,
}

impl std::fmt::Debug for ExecSpawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSpawn")
            .field("argv", &self.spec.argv)
            .finish_non_exhaustive()
    }
}

/// A spawned check: its leader (which leads its process group) and the
/// status the reaper sends when it reaps it. Dropped before that status
/// arrived — the check was abandoned, or its task was gone before the
/// driver's answer reached it — it SIGKILLs the process group.
pub struct Running {
    pid: i32,
    status: oneshot::Receiver<Status>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Nothing yet (`Empty`): the leader is unreaped, since the reaper
        // sends the status in the very step that reaps it, on this thread.
        // So `pid` is still our process group's id. (`Closed`: the status
        // was taken, or will never come; either way, no signal.)
        let unreaped = matches!(
            self.status.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        );
        if unreaped && self.pid > 1 {
            // SAFETY: a process group this check created, its leader not
            // reaped yet (see above); never 0, 1 or -1.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        }
    }
}

/// Carry out an [`ExecSpawn`], in a driver step: spawn the check as the
/// leader of its own process group, register its status waiter, register
/// the group with the guard (unregistered by `Guard::sweep_checks` once
/// empty), then answer. Nothing reaps between the spawn and the
/// registrations: the reaper runs in driver steps too.
pub fn spawn_check(req: ExecSpawn, waiters: &Waiters, guard: Option<&mut Guard>) {
    use std::os::fd::AsRawFd;
    if req.reply.is_closed() {
        return; // abandoned while the request waited
    }
    let s = &req.spec;
    let spec = SpawnSpec {
        argv: &s.argv,
        env: &s.env,
        cwd: &s.cwd,
        own_group: true,
        die_with_parent: true,
        capture: false,
        cgroup: s.cgroup.as_ref().map(|f| f.as_raw_fd()),
    };
    let Ok(child) = spawn::spawn(&spec, s.inherited) else {
        return;
    };
    let (tx, status) = oneshot::channel();
    if let Ok(mut w) = waiters.lock() {
        w.insert(child.pid, tx);
    }
    if let Some(g) = guard {
        g.add_check_group(child.pid);
    }
    // If the task is gone by now, the returned `Running` is dropped here
    // and kills the group (its leader is unreaped).
    let _ = req.reply.send(Running {
        pid: child.pid,
        status,
    });
}

/// One run of the check: whether it exited 0.
async fn exec_once(
    spec: &Arc<ExecSpec>,
    driver: &mpsc::UnboundedSender<super::driver::Msg>,
) -> bool {
    let (reply, answer) = oneshot::channel();
    let req = ExecSpawn {
        spec: spec.clone(),
        reply,
    };
    if driver.send(super::driver::Msg::ExecCheck(req)).is_err() {
        return false;
    }
    // If this task is dropped while it waits (the check was abandoned),
    // an answer already sent is dropped with the channel and kills the
    // group (`Running`'s drop).
    let Ok(mut running) = answer.await else {
        return false;
    };
    let status = (&mut running.status).await;
    matches!(status, Ok(Status::Code(0)))
}

async fn notify(sock: UnixDatagram, from: Sender) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixCredentials};
    use std::os::fd::AsRawFd;
    let mut buf = vec![0u8; 4096];
    loop {
        let got = sock
            .async_io(tokio::io::Interest::READABLE, || {
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                let mut space = nix::cmsg_space!(UnixCredentials);
                let msg = recvmsg::<()>(
                    sock.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::MSG_DONTWAIT,
                )
                .map_err(std::io::Error::from)?;
                let pid = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::ScmCredentials(cr) => Some(cr.pid()),
                        _ => None,
                    })
                });
                Ok((msg.bytes, pid))
            })
            .await;
        let Ok((n, pid)) = got else {
            // Keep the task pending: the timeout decides.
            std::future::pending::<()>().await;
            return;
        };
        // Datagrams from other processes do not count.
        if pid.is_some_and(|p| from.accepts(p)) && is_ready_datagram(&buf[..n]) {
            return;
        }
    }
}

/// sd_notify: newline-separated `KEY=VALUE` assignments.
pub fn is_ready_datagram(d: &[u8]) -> bool {
    d.split(|&b| b == b'\n').any(|l| l == b"READY=1")
}

/// A private directory holding one process's notify socket.
pub struct NotifyDir {
    pub dir: PathBuf,
    pub socket: PathBuf,
}

/// The run's private directory (runrecord.rs), where notify sockets go.
static RUN_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Put notify sockets in `dir` (private, 0700) from now on.
pub fn set_run_dir(dir: PathBuf) {
    let _ = RUN_DIR.set(dir);
}

impl NotifyDir {
    /// A new 0700 directory (never an existing one) with the socket, which
    /// receives its senders' credentials.
    pub fn create(tag: &str) -> std::io::Result<(NotifyDir, UnixDatagram)> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = match RUN_DIR.get() {
            Some(run) => {
                // The run's directory, made by its first socket, inside
                // the runner's private one (runrecord.rs): nobody else
                // can have made it.
                match std::fs::DirBuilder::new().mode(0o700).create(run) {
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
                run.join(format!("notify-{tag}"))
            }
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                std::env::temp_dir().join(format!("flowrun-{}-{tag}-{nanos}", std::process::id()))
            }
        };
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let socket = dir.join("notify");
        let sock = UnixDatagram::bind(&socket)?;
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::PassCred, &true)
            .map_err(std::io::Error::from)?;
        Ok((NotifyDir { dir, socket }, sock))
    }
}

impl Drop for NotifyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8000/healthz"),
            Some((
                "127.0.0.1:8000".into(),
                "127.0.0.1:8000".into(),
                "/healthz".into()
            ))
        );
        assert_eq!(
            parse_http_url("http://localhost"),
            Some(("localhost:80".into(), "localhost".into(), "/".into()))
        );
        assert_eq!(parse_http_url("https://x/"), None);
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 500 x\r\n"), Some(500));
        assert_eq!(parse_status_line(b"garbage"), None);
    }

    #[test]
    fn notify_datagrams() {
        assert!(is_ready_datagram(b"STATUS=up\nREADY=1\n"));
        assert!(is_ready_datagram(b"READY=1"));
        assert!(!is_ready_datagram(b"READY=0\nSTATUS=READY=1"));
    }
}
