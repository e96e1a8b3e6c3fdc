//! The control plane of a running topology: `flowrun ps`, `logs`,
//! `restart`, `stop`, `start`, `scale`, `signal`, `reload`, `down`, `wait`
//! and `events` (docs/control.md).
//!
//! - [`protocol`]: the newline-delimited JSON messages, with a version
//!   handshake and structured errors.
//! - [`paths`]: the private per-user directory, the socket and the lock
//!   file that proves the runner alive.
//! - [`server`]: the socket server, tokio tasks on the runner's
//!   current-thread runtime.
//! - [`ring`]: bounded output rings per process and the event feed, with
//!   history, followers and missed-line counts.
//! - [`client`] and [`commands`]: the blocking client and the CLI
//!   subcommands built on it (thin: they format what the runner answers).
//!
//! # The boundary with the supervisor core
//! The server never touches supervisor state. Everything that acts on the
//! topology, or reads its live state, is a message to the core, so the
//! core stays the one owner of that state and every guarantee the linter
//! checks keeps holding. The core gives the server a [`Link`] and
//! implements this contract:
//!
//! 1. **Calls.** The core receives [`ToCore::Call`] on `Link::to_core` (a
//!    bounded `mpsc` channel; the server awaits capacity, the core never
//!    waits for the server) and answers every call exactly once on its
//!    `oneshot` sender with `Ok(Reply)` or `Err(ControlError)`:
//!    - `ps` → [`protocol::Reply::Ps`], at once, from current state;
//!    - `restart`, `stop`, `start`, `scale`, `signal` →
//!      [`protocol::Reply::Done`] when the action is complete (restart:
//!      the new processes started, and ready for `rolling`; stop: the
//!      group is down); unknown names → `unknown-group` with the known
//!      groups as `details`; a `scale` that breaks a lint rule →
//!      `refused` with each finding as a `details` line;
//!    - `reload` → [`protocol::Reply::Reloaded`] or `refused` (the
//!      `reload-rejected` errors as `details`);
//!    - `down` → [`protocol::Reply::Down`] with `up`'s exit status, after
//!      the drain and before the runner shuts the server down;
//!    - `wait` → [`protocol::Reply::Ready`] when the groups are ready, or
//!      `failed` when one of them fails (the server applies `timeout_ms`).
//!
//!    Dropping the sender answers `unavailable`. The server has already
//!    validated shapes (non-empty target lists, signal names normalised
//!    to `SIGHUP`, counts ≥ 1) and serialised the call: two calls that
//!    share a group never reach the core at the same time (the second is
//!    sent after the first is answered); `reload` and `down` exclude every
//!    other changing call. Read-only calls (`ps`, `wait`) are not
//!    serialised.
//! 2. **Refusals.** A connection from a uid other than the runner's and
//!    root's is answered `permission-denied` by the server and reported
//!    as [`ToCore::Refused`] (sent with `try_send`: a flood of refused
//!    peers cannot fill the channel the core reads); the core emits it as
//!    a lifecycle event.
//! 3. **Output and events.** The core (or the relay) registers every
//!    process of the plan in `Link::logs` ([`ring::LogStore::register`])
//!    before serving, and pushes each relayed line with
//!    [`ring::LogStore::push`] (batches: each push wakes followers once).
//!    It pushes every lifecycle event, as the JSON object of
//!    docs/events.md, to `Link::events` ([`ring::EventFeed::push`]). The
//!    server answers `logs` and `events` from these alone; pushing never
//!    waits for a reader, and a reader that falls behind the ring is told
//!    how many lines it missed.
//! 4. **Lifetime.** [`server::claim`] (plain system calls, before or
//!    after the runtime starts) takes the lock and binds the socket;
//!    [`server::serve`] runs it on the current runtime;
//!    [`server::ServerHandle::shutdown`] ends streams, removes the socket
//!    and the lock file. A runner that dies without it leaves a stale
//!    socket that the next one replaces.

pub mod client;
pub mod commands;
pub mod paths;
pub mod protocol;
pub mod ring;
pub mod server;

use protocol::{ControlError, Reply, Request};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Who is on the other end of a connection (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// A message from the control server to the supervisor core.
#[derive(Debug)]
pub enum ToCore {
    /// A request to carry out and answer (see the module docs).
    Call {
        request: Request,
        peer: Peer,
        reply: oneshot::Sender<Result<Reply, ControlError>>,
    },
    /// A connection was refused for its credentials; report it as an event.
    Refused { peer: Peer },
}

/// What the core hands the server: where to send calls, and the rings it
/// fills.
#[derive(Clone, Debug)]
pub struct Link {
    pub to_core: mpsc::Sender<ToCore>,
    pub logs: Arc<ring::LogStore>,
    pub events: Arc<ring::EventFeed>,
}

/// Capacity of the call channel to the core.
pub const CALL_QUEUE: usize = 64;

impl Link {
    /// A link with default ring bounds, and the receiving end for the core.
    pub fn new() -> (Link, mpsc::Receiver<ToCore>) {
        let (tx, rx) = mpsc::channel(CALL_QUEUE);
        (
            Link {
                to_core: tx,
                logs: Arc::new(ring::LogStore::new(ring::DEFAULT_RING_BYTES)),
                events: Arc::new(ring::EventFeed::new(ring::DEFAULT_EVENT_BYTES)),
            },
            rx,
        )
    }
}
