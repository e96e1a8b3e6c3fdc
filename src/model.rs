//! The resolved topology, produced by [`crate::resolve`] from the AST.
//!
//! Names are resolved to [`GroupId`]s, defaults are filled in, signals are
//! real signals, and values are in range (or the resolver reported FR104 and
//! substituted a safe value). Spans are kept for diagnostics; they serialise
//! as bare values and are never part of the plan's output. Groups keep file
//! order; `GroupId` is an index into [`Topology::groups`].
//!
//! The `Serialize` impls here are the plan's JSON form (docs/plan-json.md):
//! a group is referred to by its `GroupId`, durations are exact whole
//! milliseconds in fields named `…_ms` (`"forever"` where unbounded),
//! signals are names, enumerations kebab-case strings, environments lists
//! of `{"name", "value"}` in order. A new field is serialised unless it is
//! marked `#[serde(skip)]` (spans and other bookkeeping are).

use crate::ast::{
    AfterState, Escalate, FinishWhen, Probe, ProcessGroupMode, RestartMode, StopTarget, Timeout,
};
use crate::source::{Span, Spanned};
use serde::{Serialize, Serializer};
use std::time::Duration;

pub type GroupId = usize;

/// A catchable-or-not POSIX signal, printed by name (`SIGTERM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sig(pub nix::sys::signal::Signal);

impl Sig {
    pub const INT: Sig = Sig(nix::sys::signal::Signal::SIGINT);
    pub const TERM: Sig = Sig(nix::sys::signal::Signal::SIGTERM);
    pub const HUP: Sig = Sig(nix::sys::signal::Signal::SIGHUP);
    pub const QUIT: Sig = Sig(nix::sys::signal::Signal::SIGQUIT);
    pub const KILL: Sig = Sig(nix::sys::signal::Signal::SIGKILL);
    pub const STOP: Sig = Sig(nix::sys::signal::Signal::SIGSTOP);

    /// Parse `SIGTERM` (exact, upper case). Unknown names give `None`.
    pub fn parse(name: &str) -> Option<Sig> {
        if !name.starts_with("SIG") {
            return None;
        }
        name.parse().ok().map(Sig)
    }

    pub fn name(self) -> &'static str {
        self.0.as_str()
    }

    pub fn number(self) -> i32 {
        self.0 as i32
    }
}

impl std::fmt::Display for Sig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Sig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Durations serialise as whole milliseconds, exactly (a `Duration` can
/// hold more than 2^64 ms, so the number is a `u128`; JSON numbers have no
/// size limit).
pub fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

impl Serialize for Timeout {
    /// Milliseconds (exact, as [`ser_duration`]), or the string `"forever"`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Timeout::Finite(d) => ser_duration(d, s),
            Timeout::Forever => s.serialize_str("forever"),
        }
    }
}

/// An environment (`Vec<(name, value)>`) as a list of `{"name", "value"}`
/// objects, in order: a JSON object could not keep a repeated name, and a
/// list keeps the order in which values override each other.
pub fn ser_env<S: Serializer>(env: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    #[derive(Serialize)]
    struct Var<'a> {
        name: &'a str,
        value: &'a str,
    }
    let mut seq = s.serialize_seq(Some(env.len()))?;
    for (name, value) in env {
        seq.serialize_element(&Var { name, value })?;
    }
    seq.end()
}

impl Serialize for FinishWhen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            FinishWhen::Exits => "exits",
            FinishWhen::Succeeds => "succeeds",
        })
    }
}

impl Serialize for Escalate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Escalate::OnRepeat => "on-repeat",
            Escalate::Never => "never",
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Topology {
    pub name: Spanned<String>,
    /// `shutdown within` (default 30 s); `span` is `None` when defaulted.
    #[serde(rename = "shutdown_within_ms")]
    pub shutdown_within: Timeout,
    #[serde(skip)]
    pub shutdown_span: Option<Span>,
    pub finish: Option<Finish>,
    /// Every signal the runner handles, explicit ones first in file order,
    /// then the defaults (`SIGINT`/`SIGTERM` drain, `SIGHUP` reload) that
    /// were not overridden.
    pub handlers: Vec<Handler>,
    pub escalate: Escalate,
    #[serde(skip)]
    pub escalate_span: Option<Span>,
    pub groups: Vec<Group>,
    pub allows: Vec<Allow>,
}

impl Topology {
    pub fn group_by_name(&self, name: &str) -> Option<GroupId> {
        self.groups.iter().position(|g| g.name.node == name)
    }

    pub fn handler(&self, sig: Sig) -> Option<&Handler> {
        self.handlers.iter().find(|h| h.signal.node == sig)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Finish {
    pub group: Spanned<GroupId>,
    pub when: FinishWhen,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Handler {
    pub signal: Spanned<Sig>,
    pub steps: Vec<Spanned<Step>>,
    /// True for the built-in defaults (no span in the file).
    pub default: bool,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "step")]
pub enum Step {
    /// Empty `groups`: the whole topology.
    Drain {
        groups: Vec<Spanned<GroupId>>,
    },
    Restart {
        groups: Vec<Spanned<GroupId>>,
        rolling: bool,
    },
    Reload,
    /// `signal: None` forwards the received signal.
    Forward {
        signal: Option<Spanned<Sig>>,
        groups: Vec<Spanned<GroupId>>,
    },
    /// `within: None` is an unbounded wait (FR301).
    Wait {
        groups: Vec<Spanned<GroupId>>,
        #[serde(rename = "within_ms")]
        within: Option<Timeout>,
    },
    Kill,
    Ignore,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Command {
    /// `run`: the template split into words as a shell would (no shell runs
    /// it); placeholders are still in the words.
    Run { argv: Vec<String> },
    /// `sh`: run as `/bin/sh -c SCRIPT`.
    Sh { script: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct Group {
    pub name: Spanned<String>,
    #[serde(skip)]
    pub span: Span,
    pub command: Spanned<Command>,
    pub processes: u32,
    pub coroutines: u32,
    pub port: Option<u16>,
    pub once: bool,
    pub after: Vec<After>,
    pub ready: Option<ReadyCheck>,
    pub restart: Restart,
    pub stop: Stop,
    /// The whole environment the group adds: its env files' variables
    /// merged with `env { }` (see `env_files`); keys unique.
    #[serde(serialize_with = "ser_env")]
    pub env: Vec<(String, String)>,
    /// The env files merged into `env`, as written, in precedence order
    /// (the topology's, then the group's; `env { }` comes last).
    pub env_files: Vec<String>,
    /// As written, relative to the topology file's directory.
    pub cwd: Option<String>,
    pub process_group: ProcessGroupMode,
    #[serde(skip)]
    pub process_group_span: Option<Span>,
    pub die_with_parent: bool,
    #[serde(skip)]
    pub die_with_parent_span: Option<Span>,
    /// `log file`: the group's own, else the topology's; `None`: output
    /// goes to the terminal only.
    pub log: Option<LogFile>,
}

/// Where a group's processes' output is also written (docs/language.md,
/// `log file`): a path template with placeholders, rotated by size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogFile {
    /// As written (placeholders unexpanded), relative to the topology
    /// file's directory.
    pub path: String,
    /// Rotate when the next whole line would take the file past this many
    /// bytes (default 10 MiB).
    pub rotate_bytes: u64,
    /// Old files kept (`x.log.1` … `x.log.N`); default 5.
    pub keep: u32,
    /// True when the group inherits the topology's `log file`.
    #[serde(skip)]
    pub inherited: bool,
    /// The path literal, for diagnostics.
    #[serde(skip)]
    pub path_span: Span,
    /// The whole statement.
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct After {
    pub group: GroupId,
    /// Explicit, or the default for the target group (docs/language.md, `after`).
    pub state: AfterState,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReadyCheck {
    pub probe: Probe,
    /// Poll interval; default 1 s (ignored by `log` and `notify`).
    #[serde(serialize_with = "ser_duration", rename = "every_ms")]
    pub every: Duration,
    /// Give up after this long; default 60 s.
    #[serde(rename = "within_ms")]
    pub within: Timeout,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Restart {
    pub mode: RestartMode,
    #[serde(serialize_with = "ser_duration", rename = "backoff_min_ms")]
    pub backoff_min: Duration,
    #[serde(serialize_with = "ser_duration", rename = "backoff_max_ms")]
    pub backoff_max: Duration,
    /// At most `count` restarts per `per`; `None` is unlimited.
    pub limit: Option<RestartLimit>,
    /// `None` when defaulted.
    #[serde(skip)]
    pub span: Option<Span>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RestartLimit {
    pub count: u32,
    #[serde(serialize_with = "ser_duration", rename = "per_ms")]
    pub per: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct Stop {
    /// At least one step; after the last, SIGKILL to the whole process group.
    pub steps: Vec<LadderStep>,
    pub target: StopTarget,
    /// `None` when defaulted.
    #[serde(skip)]
    pub span: Option<Span>,
}

impl Stop {
    /// Sum of the ladder's drains: the longest this group can take to stop.
    /// `forever` if any step is; saturates instead of overflowing.
    pub fn total(&self) -> Timeout {
        let mut sum = Duration::ZERO;
        for s in &self.steps {
            match s.drain {
                Timeout::Finite(d) => sum = sum.saturating_add(d),
                Timeout::Forever => return Timeout::Forever,
            }
        }
        Timeout::Finite(sum)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LadderStep {
    pub signal: Sig,
    #[serde(rename = "drain_ms")]
    pub drain: Timeout,
    #[serde(skip)]
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Allow {
    /// The rule's code, resolved from a code or a name.
    pub code: &'static str,
    pub reason: Option<String>,
    /// `None`: the whole topology.
    pub group: Option<GroupId>,
    #[serde(skip)]
    pub span: Span,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop(drains: &[Timeout]) -> Stop {
        Stop {
            steps: drains
                .iter()
                .map(|&drain| LadderStep {
                    signal: Sig::TERM,
                    drain,
                    span: Span::default(),
                })
                .collect(),
            target: StopTarget::Leader,
            span: None,
        }
    }

    #[test]
    fn ladder_total_sums_saturates_and_forever_dominates() {
        let s = |ms| Timeout::Finite(Duration::from_millis(ms));
        assert_eq!(stop(&[s(1500), s(500)]).total(), s(2000));
        assert_eq!(
            stop(&[s(u64::MAX), s(u64::MAX)]).total(),
            Timeout::Finite(
                Duration::from_millis(u64::MAX).saturating_add(Duration::from_millis(u64::MAX))
            )
        );
        assert_eq!(
            stop(&[s(1), Timeout::Forever, s(1)]).total(),
            Timeout::Forever
        );
    }
}
