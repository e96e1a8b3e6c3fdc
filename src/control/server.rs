//! The control server: tokio tasks on the runner's current-thread
//! runtime, serving the protocol of [`super::protocol`] on the topology's
//! unix socket and talking to the supervisor core only through the
//! [`super::Link`] (see the module docs of [`super`] for the contract).

use super::paths::{self, Endpoint, Lock};
use super::protocol::*;
use super::ring::{LogItem, ProcKey, Select};
use super::{Link, Peer, ToCore};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{oneshot, watch, OwnedMutexGuard, OwnedRwLockReadGuard, OwnedRwLockWriteGuard};
use tokio::time::Instant;

/// The server's bounds. Defaults: see each field.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest request line, newline excluded (64 KiB).
    pub max_line: usize,
    /// Time to send the hello after connecting, and to finish a request
    /// line once its first byte arrived (5 s).
    pub send_timeout: Duration,
    /// How long a connection may sit between requests (10 min).
    pub idle_timeout: Duration,
    /// Time to write one reply into a client that does not read (10 s).
    pub write_timeout: Duration,
    /// Connections served at once; more are answered `busy` (128).
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: 64 * 1024,
            send_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            write_timeout: Duration::from_secs(10),
            max_connections: 128,
        }
    }
}

/// Lines of a stream written per batch (one `write` each).
const STREAM_BATCH: usize = 256;

/// The endpoint a runner has claimed: its private directory checked, its
/// lock held and its socket bound. Made before the runtime starts
/// (plain system calls), served with [`serve`] inside it.
#[derive(Debug)]
pub struct Claimed {
    pub endpoint: Endpoint,
    lock: Lock,
    listener: std::os::unix::net::UnixListener,
}

/// Claim the control socket of `topology` (a canonical path) in `dir`
/// (normally [`paths::runtime_dir`]). Fails when another live runner
/// holds it; a stale socket is replaced.
pub fn claim(dir: &Path, topology: &Path) -> Result<Claimed, String> {
    paths::ensure_private_dir(dir)?;
    let endpoint = Endpoint::new(dir, topology)?;
    let lock = Lock::acquire(&endpoint, Duration::from_millis(500))?;
    let listener = paths::bind(&endpoint)?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot configure the control socket: {e}"))?;
    Ok(Claimed {
        endpoint,
        lock,
        listener,
    })
}

/// Per-group serialisation: a changing request holds the locks of its
/// groups (taken in sorted order) until the core answers; `reload` and
/// `down` hold the whole topology.
#[derive(Default)]
struct GroupLocks {
    all: Arc<tokio::sync::RwLock<()>>,
    groups: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

enum Held {
    All(#[allow(dead_code)] OwnedRwLockWriteGuard<()>),
    Groups(
        #[allow(dead_code)] OwnedRwLockReadGuard<()>,
        #[allow(dead_code)] Vec<OwnedMutexGuard<()>>,
    ),
}

impl GroupLocks {
    async fn acquire(&self, scope: &Scope) -> Held {
        match scope {
            Scope::All => Held::All(self.all.clone().write_owned().await),
            Scope::Groups(names) => {
                let all = self.all.clone().read_owned().await;
                let mutexes: Vec<_> = {
                    let mut map = self.groups.lock().unwrap_or_else(|e| e.into_inner());
                    names
                        .iter()
                        .map(|g| map.entry(g.clone()).or_default().clone())
                        .collect()
                };
                let mut held = Vec::with_capacity(mutexes.len());
                for m in mutexes {
                    held.push(m.lock_owned().await);
                }
                Held::Groups(all, held)
            }
        }
    }

    /// Forget group mutexes nobody holds or waits for.
    fn sweep(&self) {
        let mut map = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, m| Arc::strong_count(m) > 1);
    }
}

struct Shared {
    link: Link,
    limits: Limits,
    hello: ServerMsg,
    locks: GroupLocks,
    active: Arc<AtomicUsize>,
    /// Flips to true when the server shuts down.
    stopping: watch::Receiver<bool>,
    uid: u32,
}

/// A running server; [`ServerHandle::shutdown`] stops it.
pub struct ServerHandle {
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
    claimed_socket: std::path::PathBuf,
    lock: Option<Lock>,
}

impl ServerHandle {
    /// Connections being served now.
    pub fn connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// The live count behind [`ServerHandle::connections`], readable
    /// from other threads (tests, benches).
    pub fn connection_counter(&self) -> Arc<AtomicUsize> {
        self.shared.active.clone()
    }

    /// Stop accepting; end streams (`end`), give connections up to
    /// `grace` to finish writing; remove the socket and the lock file.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        self.accept.abort();
        let end = Instant::now() + grace;
        while self.shared.active.load(Ordering::SeqCst) > 0 && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = std::fs::remove_file(&self.claimed_socket);
        if let Some(l) = self.lock.take() {
            l.release();
        }
    }
}

impl Drop for ServerHandle {
    /// Dropped without [`ServerHandle::shutdown`] (e.g. while unwinding):
    /// stop accepting and remove the socket before the lock is released,
    /// so that nobody connects to a socket nobody serves.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.accept.abort();
        if let Some(l) = self.lock.take() {
            let _ = std::fs::remove_file(&self.claimed_socket);
            l.release();
        }
    }
}

/// Serve `claimed` on the current tokio runtime until shut down.
pub fn serve(claimed: Claimed, link: Link, limits: Limits) -> Result<ServerHandle, String> {
    let Claimed {
        endpoint,
        lock,
        listener,
    } = claimed;
    let listener = tokio::net::UnixListener::from_std(listener)
        .map_err(|e| format!("cannot serve the control socket: {e}"))?;
    let (stop, stopping) = watch::channel(false);
    let shared = Arc::new(Shared {
        link,
        limits,
        hello: ServerMsg::Hello {
            protocol: PROTOCOL,
            server: format!("flowrun {}", env!("CARGO_PKG_VERSION")),
            topology: endpoint.topology.to_string_lossy().into_owned(),
            pid: std::process::id(),
        },
        locks: GroupLocks::default(),
        active: Arc::new(AtomicUsize::new(0)),
        stopping,
        uid: paths::euid(),
    });
    let accept = tokio::spawn(accept_loop(listener, shared.clone()));
    Ok(ServerHandle {
        stop,
        accept,
        shared,
        claimed_socket: endpoint.socket,
        lock: Some(lock),
    })
}

async fn accept_loop(listener: tokio::net::UnixListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                if e.raw_os_error().is_some() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        let peer = match stream.peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid(),
            },
            Err(_) => continue,
        };
        if peer.uid != shared.uid && peer.uid != 0 {
            let shared = shared.clone();
            tokio::spawn(async move { refuse(stream, peer, &shared).await });
            continue;
        }
        if shared.active.load(Ordering::SeqCst) >= shared.limits.max_connections {
            let shared = shared.clone();
            tokio::spawn(async move {
                let err = ControlError::new(
                    ErrorCode::Busy,
                    format!(
                        "the runner is serving {} control connections; try again",
                        shared.limits.max_connections
                    ),
                );
                let mut stream = stream;
                let _ = send(
                    &mut stream,
                    &ServerMsg::Error {
                        id: None,
                        error: err,
                    },
                    &shared,
                )
                .await;
            });
            continue;
        }
        shared.active.fetch_add(1, Ordering::SeqCst);
        let s = shared.clone();
        tokio::spawn(async move {
            let _active = ActiveGuard(&s.active);
            connection(stream, peer, &s).await;
        });
    }
}

struct ActiveGuard<'a>(&'a AtomicUsize);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A peer that is neither the runner's uid nor root: a clear error, then
/// a report to the core (an event), then the connection is closed.
async fn refuse(mut stream: UnixStream, peer: Peer, shared: &Shared) {
    let error = ControlError::new(
        ErrorCode::PermissionDenied,
        format!(
            "uid {} may not control this runner: only its own uid ({}) and root are served",
            peer.uid, shared.uid
        ),
    );
    let _ = send(&mut stream, &ServerMsg::Error { id: None, error }, shared).await;
    // Never wait for the core on behalf of a refused peer.
    let _ = shared.link.to_core.try_send(ToCore::Refused { peer });
}

/// Write one message as a line, bounded by the write timeout.
async fn send<W: AsyncWrite + Unpin>(w: &mut W, msg: &ServerMsg, shared: &Shared) -> bool {
    let mut line = match serde_json::to_string(msg) {
        Ok(l) => l,
        Err(_) => return false,
    };
    line.push('\n');
    matches!(
        tokio::time::timeout(shared.limits.write_timeout, w.write_all(line.as_bytes())).await,
        Ok(Ok(()))
    )
}

fn error(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> ServerMsg {
    ServerMsg::Error {
        id,
        error: ControlError::new(code, message),
    }
}

enum LineError {
    /// EOF before any byte of a line.
    Closed,
    /// EOF or a read error in the middle of a line.
    Broken,
    TooLarge,
    Timeout,
}

/// Read one line of at most `max` bytes. `first` bounds the wait for its
/// first byte, `rest` the time from the first byte to the newline.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
    first: Instant,
    rest: Duration,
) -> Result<Vec<u8>, LineError> {
    let mut line = Vec::new();
    let mut deadline = first;
    loop {
        let buf = match tokio::time::timeout_at(deadline, r.fill_buf()).await {
            Err(_) => return Err(LineError::Timeout),
            Ok(Err(_)) => return Err(LineError::Broken),
            Ok(Ok(b)) => b,
        };
        if buf.is_empty() {
            return Err(if line.is_empty() {
                LineError::Closed
            } else {
                LineError::Broken
            });
        }
        if line.is_empty() {
            deadline = deadline.min(Instant::now() + rest);
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if line.len() + i > max {
                    return Err(LineError::TooLarge);
                }
                line.extend_from_slice(&buf[..i]);
                r.consume(i + 1);
                return Ok(line);
            }
            None => {
                let n = buf.len();
                if line.len() + n > max {
                    return Err(LineError::TooLarge);
                }
                line.extend_from_slice(buf);
                r.consume(n);
            }
        }
    }
}

/// What went wrong reading a line, as the reply to send (`None`: the
/// client is gone).
fn line_error(e: LineError, shared: &Shared) -> Option<ServerMsg> {
    match e {
        LineError::Closed | LineError::Broken => None,
        LineError::TooLarge => Some(error(
            None,
            ErrorCode::TooLarge,
            format!("request line longer than {} bytes", shared.limits.max_line),
        )),
        LineError::Timeout => Some(error(
            None,
            ErrorCode::Timeout,
            format!(
                "request not received in time (a line must arrive within {} ms)",
                shared.limits.send_timeout.as_millis()
            ),
        )),
    }
}

/// Decode a line; on failure the error reply carries the line's `id` when
/// one can be found in it.
fn decode(line: &[u8]) -> Result<ClientMsg, ServerMsg> {
    let text = std::str::from_utf8(line)
        .map_err(|_| error(None, ErrorCode::BadRequest, "request is not UTF-8"))?;
    serde_json::from_str::<ClientMsg>(text).map_err(|e| {
        let id = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("id")?.as_u64());
        error(id, ErrorCode::BadRequest, format!("invalid request: {e}"))
    })
}

async fn connection(stream: UnixStream, peer: Peer, shared: &Shared) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(8 * 1024, rd);
    let limits = &shared.limits;
    // The handshake, all within the send timeout.
    let hello_by = Instant::now() + limits.send_timeout;
    let line = match read_line(&mut rd, limits.max_line, hello_by, limits.send_timeout).await {
        Ok(l) => l,
        Err(e) => {
            if let Some(m) = line_error(e, shared) {
                send(&mut wr, &m, shared).await;
            }
            return;
        }
    };
    match decode(&line) {
        Ok(ClientMsg::Hello { protocol, .. }) if SUPPORTED.contains(&protocol) => {
            if !send(&mut wr, &shared.hello, shared).await {
                return;
            }
        }
        Ok(ClientMsg::Hello { protocol, .. }) => {
            let error = ControlError::new(
                ErrorCode::VersionMismatch,
                format!(
                    "protocol {protocol} is not supported; this runner speaks {}",
                    PROTOCOL
                ),
            )
            .with_details(SUPPORTED.iter().map(u32::to_string).collect());
            send(&mut wr, &ServerMsg::Error { id: None, error }, shared).await;
            return;
        }
        Ok(ClientMsg::Request { id, .. }) => {
            let m = error(
                Some(id),
                ErrorCode::HandshakeRequired,
                "send a hello before any request",
            );
            send(&mut wr, &m, shared).await;
            return;
        }
        Err(m) => {
            send(&mut wr, &m, shared).await;
            return;
        }
    }
    let mut stopping = shared.stopping.clone();
    loop {
        let idle_until = Instant::now() + limits.idle_timeout;
        let line = tokio::select! {
            r = read_line(&mut rd, limits.max_line, idle_until, limits.send_timeout) => r,
            _ = stopping.wait_for(|s| *s) => return,
        };
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                if let Some(m) = line_error(e, shared) {
                    send(&mut wr, &m, shared).await;
                }
                return;
            }
        };
        let (id, request) = match decode(&line) {
            Ok(ClientMsg::Request { id, request }) => (id, request),
            Ok(ClientMsg::Hello { .. }) => {
                let m = error(None, ErrorCode::BadRequest, "hello was already sent");
                if !send(&mut wr, &m, shared).await {
                    return;
                }
                continue;
            }
            Err(m) => {
                if !send(&mut wr, &m, shared).await {
                    return;
                }
                continue;
            }
        };
        let ok = match request {
            Request::Logs {
                targets,
                tail,
                since_ms,
                follow,
            } => {
                let since = since_ms.map(|ms| super::ring::epoch_secs() - ms as f64 / 1000.0);
                stream_logs(id, &targets, tail, since, follow, &mut rd, &mut wr, shared).await
            }
            Request::Events { follow } => stream_events(id, follow, &mut rd, &mut wr, shared).await,
            request => {
                let msg = call(id, request, peer, shared).await;
                send(&mut wr, &msg, shared).await
            }
        };
        if !ok {
            return;
        }
    }
}

/// Check what the server can check itself, then pass the request to the
/// core under its group locks and wait for the answer.
async fn call(id: u64, mut request: Request, peer: Peer, shared: &Shared) -> ServerMsg {
    if let Err(m) = validate(&mut request) {
        return error(Some(id), ErrorCode::BadRequest, m);
    }
    let wait_timeout = match &request {
        Request::Wait { timeout_ms, .. } => timeout_ms.map(Duration::from_millis),
        _ => None,
    };
    let held = match request.scope() {
        Some(scope) => Some(shared.locks.acquire(&scope).await),
        None => None,
    };
    let (tx, rx) = oneshot::channel();
    let sent = shared
        .link
        .to_core
        .send(ToCore::Call {
            request,
            peer,
            reply: tx,
        })
        .await;
    let answer = if sent.is_err() {
        Err(ControlError::new(
            ErrorCode::Unavailable,
            "the runner is not taking requests (it is stopping)",
        ))
    } else {
        let gone = || {
            ControlError::new(
                ErrorCode::Unavailable,
                "the runner stopped before answering",
            )
        };
        match wait_timeout {
            Some(d) => match tokio::time::timeout(d, rx).await {
                Ok(r) => r.unwrap_or_else(|_| Err(gone())),
                Err(_) => Err(ControlError::new(
                    ErrorCode::Timeout,
                    format!("not ready within {}", crate::check::fmt_duration(d)),
                )),
            },
            None => rx.await.unwrap_or_else(|_| Err(gone())),
        }
    };
    drop(held);
    shared.locks.sweep();
    match answer {
        Ok(reply) => ServerMsg::Reply { id, reply },
        Err(error) => ServerMsg::Error {
            id: Some(id),
            error,
        },
    }
}

/// Reject what is malformed whatever the topology: empty target lists,
/// unknown signal names (normalised to `SIGHUP` form), zero counts.
fn validate(request: &mut Request) -> Result<(), String> {
    let need = |empty: bool, what: &str| {
        if empty {
            Err(format!("name at least one {what}"))
        } else {
            Ok(())
        }
    };
    match request {
        Request::Restart { targets, .. } => need(targets.is_empty(), "group or process"),
        Request::Stop { groups } | Request::Start { groups } => need(groups.is_empty(), "group"),
        Request::Scale { counts } => {
            need(counts.is_empty(), "group")?;
            match counts.iter().find(|c| c.count == 0) {
                Some(c) => Err(format!("{}: a group runs at least 1 process", c.group)),
                None => Ok(()),
            }
        }
        Request::Signal { signal, targets } => {
            need(targets.is_empty(), "group or process")?;
            let full = if signal.starts_with("SIG") {
                signal.clone()
            } else {
                format!("SIG{signal}")
            };
            match crate::model::Sig::parse(&full.to_ascii_uppercase()) {
                Some(s) => {
                    *signal = s.name().to_string();
                    Ok(())
                }
                None => Err(format!("unknown signal `{signal}`")),
            }
        }
        _ => Ok(()),
    }
}

/// Wait until `rx` changes, the server stops, or the client hangs up
/// (EOF or an error on its side). Bytes a client sends during a stream
/// are discarded. `false`: stop streaming.
async fn wait_more<R: AsyncBufRead + Unpin>(
    rx: &mut watch::Receiver<u64>,
    rd: &mut R,
    shared: &Shared,
) -> bool {
    let mut stopping = shared.stopping.clone();
    loop {
        tokio::select! {
            r = rx.changed() => return r.is_ok(),
            _ = stopping.wait_for(|s| *s) => return false,
            r = rd.fill_buf() => match r {
                Ok(b) if !b.is_empty() => {
                    let n = b.len();
                    rd.consume(n);
                }
                _ => return false,
            },
        }
    }
}

/// Write a batch of pre-serialised lines (one `write_all`).
async fn write_batch<W: AsyncWrite + Unpin>(w: &mut W, batch: &[u8]) -> bool {
    // No write timeout here: a stopped follower blocks only its own task;
    // the ring goes on without it and it is told what it missed.
    w.write_all(batch).await.is_ok()
}

fn push_line(buf: &mut Vec<u8>, msg: &ServerMsg) {
    if serde_json::to_writer(&mut *buf, msg).is_ok() {
        buf.push(b'\n');
    }
}

#[allow(clippy::too_many_arguments)]
async fn stream_logs<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin>(
    id: u64,
    targets: &[Target],
    tail: Option<u64>,
    since: Option<f64>,
    follow: bool,
    rd: &mut R,
    wr: &mut W,
    shared: &Shared,
) -> bool {
    let store = &shared.link.logs;
    let known = store.processes();
    let select = if targets.is_empty() {
        Select::All
    } else {
        let mut groups = Vec::new();
        let mut processes = Vec::new();
        for t in targets {
            let found = known
                .iter()
                .any(|k| k.group == t.group && t.index.map_or(true, |i| i == k.index));
            if !found {
                let mut names: Vec<String> = known.iter().map(|k| k.group.clone()).collect();
                names.dedup();
                let err = ControlError::new(
                    ErrorCode::UnknownGroup,
                    format!("no process `{t}` in this topology"),
                )
                .with_details(names);
                return send(
                    wr,
                    &ServerMsg::Error {
                        id: Some(id),
                        error: err,
                    },
                    shared,
                )
                .await;
            }
            match t.index {
                Some(index) => processes.push(ProcKey {
                    group: t.group.clone(),
                    index,
                }),
                None => groups.push(t.group.clone()),
            }
        }
        Select::Some { groups, processes }
    };
    let mut rx = store.subscribe();
    let mut cursor = if follow {
        store.cursor(select, tail, since)
    } else {
        store.cursor_to_now(select, tail, since)
    };
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut last = false;
    loop {
        let items = store.read(&mut cursor, STREAM_BATCH);
        if items.is_empty() {
            if !follow || last {
                break;
            }
            // Once the server stops (or the client leaves), one last
            // pass sends what the rings already hold: a follower sees
            // the lines written up to the end.
            last = !wait_more(&mut rx, rd, shared).await;
            continue;
        }
        buf.clear();
        for item in items {
            let msg = match item {
                LogItem::Line { process, seq, line } => ServerMsg::Log {
                    id,
                    process: process.to_string(),
                    seq,
                    t: line.t,
                    line: line.text,
                },
                LogItem::Missed { process, count } => ServerMsg::Missed {
                    id,
                    process: Some(process.to_string()),
                    count,
                },
            };
            push_line(&mut buf, &msg);
        }
        if !write_batch(wr, &buf).await {
            return false;
        }
    }
    send(wr, &ServerMsg::End { id }, shared).await
}

async fn stream_events<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin>(
    id: u64,
    follow: bool,
    rd: &mut R,
    wr: &mut W,
    shared: &Shared,
) -> bool {
    let feed = &shared.link.events;
    let mut rx = feed.subscribe();
    let mut cursor = feed.start();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut last = false;
    loop {
        let r = feed.read(cursor, STREAM_BATCH);
        cursor = r.next;
        if r.items.is_empty() && r.missed == 0 {
            if !follow || last {
                break;
            }
            // As for logs: the events already pushed reach a follower
            // before its stream ends.
            last = !wait_more(&mut rx, rd, shared).await;
            continue;
        }
        buf.clear();
        if r.missed > 0 {
            push_line(
                &mut buf,
                &ServerMsg::Missed {
                    id,
                    process: None,
                    count: r.missed,
                },
            );
        }
        for (_, raw) in r.items {
            // The core pushes JSON objects; anything else is skipped
            // rather than sent as an invalid line.
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&raw) {
                push_line(&mut buf, &ServerMsg::Event { id, event });
            }
        }
        if !write_batch(wr, &buf).await {
            return false;
        }
    }
    send(wr, &ServerMsg::End { id }, shared).await
}
