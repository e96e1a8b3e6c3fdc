//! The wire protocol of the control socket (docs/control.md): one JSON
//! object per line in each direction.
//!
//! A connection starts with a [`ClientMsg::Hello`] answered by a
//! [`ServerMsg::Hello`] (or a `version-mismatch` error, after which the
//! server closes). Then the client sends [`ClientMsg::Request`]s, one at a
//! time: the server answers each with one `reply` or `error`, or, for
//! `logs` and `events`, with a stream of `log` / `event` / `missed` lines
//! ended by `end` (a `follow` stream ends only when the runner stops or
//! the client hangs up). Every line the server sends about a request
//! carries the request's `id`.

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. A server answers a `hello`
/// with another version by a `version-mismatch` error listing
/// [`SUPPORTED`].
pub const PROTOCOL: u32 = 1;

/// Every protocol version this build's server accepts.
pub const SUPPORTED: &[u32] = &[1];

/// A line from a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ClientMsg {
    /// The first line of every connection.
    Hello {
        protocol: u32,
        /// Free text naming the client, e.g. `flowrun 0.1.0`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// A command; `id` is echoed on every line of its answer.
    Request { id: u64, request: Request },
}

/// One process (`group` and `index`) or every process of a group
/// (`index` absent), written `api.0` / `api` on the command line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
}

impl Target {
    /// `api` or `api.3`. Group names are lower-case words (letters,
    /// digits, `_`, `-`), so the last `.` separates the index.
    pub fn parse(s: &str) -> Result<Target, String> {
        let (group, index) = match s.rsplit_once('.') {
            Some((g, n)) => {
                let n = n.parse::<u32>().map_err(|_| {
                    format!("`{s}`: expected GROUP or GROUP.N with N a process index")
                })?;
                (g, Some(n))
            }
            None => (s, None),
        };
        let valid = group.starts_with(|c: char| c.is_ascii_lowercase())
            && group
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid {
            return Err(format!("`{s}`: `{group}` is not a group name"));
        }
        Ok(Target {
            group: group.to_string(),
            index,
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}.{i}", self.group),
            None => f.write_str(&self.group),
        }
    }
}

/// A group and the number of processes it should run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleTo {
    pub group: String,
    pub count: u32,
}

/// Every command of the control plane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// One status per process and one summary per group.
    Ps {},
    /// Ring history of the selected processes (all when `targets` is
    /// empty): the last `tail` lines of each, only lines newer than
    /// `since_ms` ago; then, with `follow`, live lines.
    Logs {
        #[serde(default)]
        targets: Vec<Target>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tail: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_ms: Option<u64>,
        #[serde(default)]
        follow: bool,
    },
    /// Restart through the group's ladder; `rolling`: one process at a
    /// time, each ready before the next.
    Restart {
        targets: Vec<Target>,
        #[serde(default)]
        rolling: bool,
    },
    /// Stop groups with their ladders (dependents first) and keep them
    /// stopped.
    Stop { groups: Vec<String> },
    /// Start stopped groups again (their conditions apply).
    Start { groups: Vec<String> },
    /// Set live process counts; a count that breaks a lint rule is refused.
    Scale { counts: Vec<ScaleTo> },
    /// Send a signal (`SIGHUP`) to processes, as a `forward` does.
    Signal {
        signal: String,
        targets: Vec<Target>,
    },
    /// Re-read and apply the topology file.
    Reload {},
    /// Drain the whole topology; answered with `up`'s exit status.
    Down {},
    /// Block until the groups (all when empty) are ready; fails if one
    /// fails or `timeout_ms` passes.
    Wait {
        #[serde(default)]
        ready: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// Recent lifecycle events (docs/events.md), then, with `follow`,
    /// live ones.
    Events {
        #[serde(default)]
        follow: bool,
    },
}

impl Request {
    /// The command's name as on the command line and in `cmd`.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Ps {} => "ps",
            Request::Logs { .. } => "logs",
            Request::Restart { .. } => "restart",
            Request::Stop { .. } => "stop",
            Request::Start { .. } => "start",
            Request::Scale { .. } => "scale",
            Request::Signal { .. } => "signal",
            Request::Reload {} => "reload",
            Request::Down {} => "down",
            Request::Wait { .. } => "wait",
            Request::Events { .. } => "events",
        }
    }

    /// What the request changes, for serialisation: `None` reads only;
    /// `Some(Groups)` acts on those groups; `Some(All)` on everything.
    pub fn scope(&self) -> Option<Scope> {
        let groups = |it: &mut dyn Iterator<Item = &str>| {
            let mut g: Vec<String> = it.map(str::to_string).collect();
            g.sort();
            g.dedup();
            Some(Scope::Groups(g))
        };
        match self {
            Request::Ps {}
            | Request::Logs { .. }
            | Request::Wait { .. }
            | Request::Events { .. } => None,
            Request::Restart { targets, .. } | Request::Signal { targets, .. } => {
                groups(&mut targets.iter().map(|t| t.group.as_str()))
            }
            Request::Stop { groups: g } | Request::Start { groups: g } => {
                groups(&mut g.iter().map(String::as_str))
            }
            Request::Scale { counts } => groups(&mut counts.iter().map(|c| c.group.as_str())),
            Request::Reload {} | Request::Down {} => Some(Scope::All),
        }
    }
}

/// The part of the topology a changing request acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// These groups (sorted, without duplicates).
    Groups(Vec<String>),
    /// The whole topology.
    All,
}

/// A line from the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ServerMsg {
    /// The answer to the client's hello.
    Hello {
        protocol: u32,
        /// Free text naming the server, e.g. `flowrun 0.1.0`.
        server: String,
        /// The topology file the runner was started with (canonical path).
        topology: String,
        /// The runner's pid.
        pid: u32,
    },
    /// A request succeeded.
    Reply { id: u64, reply: Reply },
    /// A request (or, with `id` null, the connection) failed.
    Error {
        id: Option<u64>,
        error: ControlError,
    },
    /// One output line of a process (`logs`).
    Log {
        id: u64,
        process: String,
        /// The line's number in its process's ring, from 0.
        seq: u64,
        /// Seconds since the Unix epoch when the line was relayed.
        t: f64,
        line: String,
    },
    /// `count` lines or events were dropped from the ring before this
    /// client read them (`process` is absent for events).
    Missed {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        process: Option<String>,
        count: u64,
    },
    /// One lifecycle event (`events`): the object of docs/events.md.
    Event { id: u64, event: serde_json::Value },
    /// The end of a `logs` or `events` stream.
    End { id: u64 },
}

/// The successful answer to a request other than `logs` and `events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Reply {
    Ps(PsReply),
    /// `restart`, `stop`, `start`, `scale`, `signal`: the processes acted
    /// on, as `group.index`.
    Done {
        processes: Vec<String>,
    },
    /// `reload`: the changed, new and removed groups.
    Reloaded {
        changed: Vec<String>,
    },
    /// `down`: the drain finished; `up` exits with `code`.
    Down {
        code: i32,
    },
    /// `wait`: these groups are ready.
    Ready {
        groups: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PsReply {
    pub processes: Vec<ProcessStatus>,
    pub groups: Vec<GroupStatus>,
}

/// A process's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcState {
    Starting,
    Ready,
    Running,
    BackingOff,
    Stopping,
    Stopped,
    Failed,
}

impl ProcState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcState::Starting => "starting",
            ProcState::Ready => "ready",
            ProcState::Running => "running",
            ProcState::BackingOff => "backing off",
            ProcState::Stopping => "stopping",
            ProcState::Stopped => "stopped",
            ProcState::Failed => "failed",
        }
    }
}

/// How a process's previous incarnation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitStatus {
    pub code: Option<i32>,
    /// Signal name (`SIGKILL`) when it was killed by one.
    pub signal: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessStatus {
    pub group: String,
    pub index: u32,
    pub pid: Option<i32>,
    pub state: ProcState,
    /// The ladder step (0-based) while `stopping`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    pub restarts: u32,
    /// The current restart attempt (resets when the process stays up long
    /// enough; docs/events.md "Restarts").
    pub attempt: u32,
    pub uptime_ms: Option<u64>,
    pub last_exit: Option<ExitStatus>,
    /// User + system CPU time of the current incarnation's leader.
    pub cpu_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupStatus {
    pub group: String,
    pub processes: u32,
    pub ready: u32,
    pub running: u32,
    pub stopped: u32,
    pub failed: u32,
    /// Stopped by `flowrun stop` and kept stopped until `flowrun start`.
    pub held: bool,
}

/// A structured error: a stable `code`, a one-line `message`, and, for
/// some codes, `details` (the lint findings of a refused `scale`, the
/// supported protocol versions, the known groups).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlError {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl ControlError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ControlError {
        ControlError {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn with_details(mut self, details: Vec<String>) -> ControlError {
        self.details = details;
        self
    }
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The stable error codes (docs/control.md lists when each is sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The line is not JSON, or not a valid message.
    BadRequest,
    /// The line exceeds the size bound.
    TooLarge,
    /// The line did not arrive in time, or `wait` timed out.
    Timeout,
    /// The client's protocol version is not supported.
    VersionMismatch,
    /// A request came before the hello.
    HandshakeRequired,
    /// The peer's uid is neither the runner's nor root.
    PermissionDenied,
    /// A group or process that the topology does not have.
    UnknownGroup,
    /// The request would break a lint rule (`scale`); details are the
    /// findings.
    Refused,
    /// The command ran and failed (a group failed while `wait`ing, a
    /// restart's process failed its ready check, …).
    Failed,
    /// The runner is draining or cannot take requests now.
    Unavailable,
    /// Too many connections at once.
    Busy,
    /// A bug: the runner could not answer.
    Internal,
}

impl ErrorCode {
    /// The CLI's exit status for this error: 2 when the command could not
    /// be delivered or was misused, 1 when the runner refused or the
    /// command failed (docs/control.md).
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::Refused | ErrorCode::Failed | ErrorCode::Timeout => 1,
            _ => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print() {
        let t = Target::parse("api.3").unwrap();
        assert_eq!((t.group.as_str(), t.index), ("api", Some(3)));
        assert_eq!(t.to_string(), "api.3");
        assert_eq!(Target::parse("web-1").unwrap().index, None);
        assert!(Target::parse("api.x").is_err());
        assert!(Target::parse("API").is_err());
        assert!(Target::parse("").is_err());
        assert!(Target::parse(".3").is_err());
    }

    #[test]
    fn requests_round_trip() {
        let reqs = [
            Request::Ps {},
            Request::Logs {
                targets: vec![Target::parse("api.0").unwrap()],
                tail: Some(10),
                since_ms: None,
                follow: true,
            },
            Request::Scale {
                counts: vec![ScaleTo {
                    group: "w".into(),
                    count: 3,
                }],
            },
            Request::Down {},
        ];
        for r in reqs {
            let line = serde_json::to_string(&ClientMsg::Request {
                id: 1,
                request: r.clone(),
            })
            .unwrap();
            let back: ClientMsg = serde_json::from_str(&line).unwrap();
            assert_eq!(back, ClientMsg::Request { id: 1, request: r });
        }
    }

    #[test]
    fn unknown_fields_and_commands_are_rejected() {
        for bad in [
            r#"{"type":"request","id":1,"request":{"cmd":"ps","x":1}}"#,
            r#"{"type":"request","id":1,"request":{"cmd":"rm"}}"#,
            r#"{"type":"hello","protocol":1,"extra":true}"#,
            r#"{"type":"request","id":-1,"request":{"cmd":"ps"}}"#,
        ] {
            assert!(serde_json::from_str::<ClientMsg>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_are_sorted_group_sets() {
        let r = Request::Restart {
            targets: vec![
                Target::parse("b.1").unwrap(),
                Target::parse("a").unwrap(),
                Target::parse("b.0").unwrap(),
            ],
            rolling: false,
        };
        assert_eq!(r.scope(), Some(Scope::Groups(vec!["a".into(), "b".into()])));
        assert_eq!(Request::Ps {}.scope(), None);
        assert_eq!(Request::Reload {}.scope(), Some(Scope::All));
    }
}
