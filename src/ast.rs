//! The typed syntax tree of a `.pf` file, produced by [`crate::parse`].
//!
//! The AST says what was *written*: every node keeps its byte span, settings
//! keep their order and may repeat, names are unresolved strings and signal
//! names are unchecked. It is not yet a valid topology: duplicates, unknown
//! groups, unknown signals and bad values are found by [`crate::resolve`].
//! String literals hold their unescaped value; their span covers the quotes,
//! so a rule that needs positions *inside* a literal (placeholders) scans the
//! raw source text at that span (escapes never produce `{` or `}`).

use crate::source::{Span, Spanned};
use std::time::Duration;

/// A whole file: exactly one topology.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub topology: Topology,
}

/// `topology NAME { ITEM… }`
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    pub name: Spanned<String>,
    pub items: Vec<TopItem>,
    pub span: Span,
}

/// One statement at topology level, with the span of the whole statement.
#[derive(Clone, Debug, PartialEq)]
pub struct TopItem {
    pub kind: TopItemKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TopItemKind {
    /// `shutdown within D`
    Shutdown(Spanned<Timeout>),
    /// `finish when G exits|succeeds`
    Finish {
        group: Spanned<String>,
        when: Spanned<FinishWhen>,
    },
    /// `on SIG ACTION` or `on SIG { STEP… }`
    Handler(Handler),
    /// `escalate on repeat` / `escalate never`
    Escalate(Spanned<Escalate>),
    /// `allow RULE [because "why"]`
    Allow(Allow),
    /// `group NAME { SETTING… }`
    Group(Group),
    /// `env-file "PATH"`: every group's environment starts from this file.
    EnvFile(Spanned<String>),
    /// `log file "PATH" …` (`None`: `log terminal`): every group's default.
    Log(Option<LogFile>),
}

/// A duration that may be unbounded (`forever`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timeout {
    Finite(Duration),
    Forever,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FinishWhen {
    Exits,
    Succeeds,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Escalate {
    OnRepeat,
    Never,
}

/// `allow RULE [because "why"]`; `rule` is a code (`FR304`) or a name
/// (`unbounded-drain`) as written.
#[derive(Clone, Debug, PartialEq)]
pub struct Allow {
    pub rule: Spanned<String>,
    pub reason: Option<Spanned<String>>,
    pub span: Span,
}

/// `on SIG …`. `block` is true for the `{ … }` form. `on SIGINT drain` is a
/// handler with one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Handler {
    pub signal: Spanned<String>,
    pub steps: Vec<Spanned<Step>>,
    pub block: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `drain` (empty: whole topology) or `drain G…`
    Drain { groups: Vec<Spanned<String>> },
    /// `restart G… [rolling]`
    Restart {
        groups: Vec<Spanned<String>>,
        rolling: bool,
    },
    /// `reload`
    Reload,
    /// `forward [SIG] to G…` (no signal: the received one)
    Forward {
        signal: Option<Spanned<String>>,
        groups: Vec<Spanned<String>>,
    },
    /// `wait G… [within D]`
    Wait {
        groups: Vec<Spanned<String>>,
        within: Option<Spanned<Timeout>>,
    },
    /// `kill`
    Kill,
    /// `ignore`
    Ignore,
}

/// `group NAME { SETTING… }`
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub name: Spanned<String>,
    pub settings: Vec<Setting>,
    pub span: Span,
}

/// One group setting, with the span of the whole statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub kind: SettingKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SettingKind {
    /// `run "CMD ARGS"`
    Run(Spanned<String>),
    /// `sh "SCRIPT"`
    Sh(Spanned<String>),
    /// `processes N`
    Processes(Spanned<u64>),
    /// `coroutines N`
    Coroutines(Spanned<u64>),
    /// `port P`
    Port(Spanned<u64>),
    /// `once`
    Once,
    /// `after G [started|ready|succeeded|exited]`
    After {
        group: Spanned<String>,
        state: Option<Spanned<AfterState>>,
    },
    /// `ready when PROBE [every D] [within D]`
    Ready(ReadyCheck),
    /// `restart MODE [backoff D..D] [limit N per D]`
    Restart(RestartPolicy),
    /// `stop SIG drain D [then SIG drain D]… [to leader|group]`
    Stop(StopLadder),
    /// `env { K = "v", … }`
    Env(Vec<EnvVar>),
    /// `env-file "PATH"` inside a group.
    EnvFile(Spanned<String>),
    /// `cwd "DIR"`
    Cwd(Spanned<String>),
    /// `process-group own|shared`
    ProcessGroup(Spanned<ProcessGroupMode>),
    /// `die-with-parent yes|no`
    DieWithParent(Spanned<bool>),
    /// `allow RULE [because "why"]` at group scope
    Allow(Allow),
    /// `log file "PATH" [rotate SIZE] [keep N]`; `None`: `log terminal`
    Log(Option<LogFile>),
}

/// `log file "PATH" [rotate SIZE] [keep N]`; sizes are in bytes as
/// written (`10MB` is 10 × 1024 × 1024).
#[derive(Clone, Debug, PartialEq)]
pub struct LogFile {
    pub path: Spanned<String>,
    pub rotate: Option<Spanned<u64>>,
    pub keep: Option<Spanned<u64>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AfterState {
    Started,
    Ready,
    Succeeded,
    Exited,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReadyCheck {
    pub probe: Spanned<Probe>,
    pub every: Option<Spanned<Duration>>,
    pub within: Option<Spanned<Timeout>>,
}

/// The readiness probe; string payloads are unescaped literal values.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "target")]
pub enum Probe {
    Tcp(String),
    Http(String),
    Exec(String),
    Log(String),
    File(String),
    Notify,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RestartPolicy {
    pub mode: Spanned<RestartMode>,
    /// `backoff MIN..MAX`
    pub backoff: Option<Spanned<(Duration, Duration)>>,
    /// `limit N per D`
    pub limit: Option<Spanned<(u64, Duration)>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    Never,
    OnFailure,
    Always,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StopLadder {
    pub steps: Vec<Spanned<LadderStep>>,
    pub target: Option<Spanned<StopTarget>>,
}

/// `SIG drain D`, or a bare `SIGKILL` as the last step.
#[derive(Clone, Debug, PartialEq)]
pub struct LadderStep {
    pub signal: Spanned<String>,
    /// `None` only on a final `SIGKILL` step (the parser rejects it elsewhere).
    pub drain: Option<Spanned<Timeout>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopTarget {
    Leader,
    Group,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessGroupMode {
    Own,
    Shared,
}

/// `K = "v"` inside `env { … }`
#[derive(Clone, Debug, PartialEq)]
pub struct EnvVar {
    pub key: Spanned<String>,
    pub value: Spanned<String>,
}

/// Every `env-file` path of a file, topology scope first, in file order.
pub fn env_file_paths(file: &File) -> Vec<&str> {
    let items = &file.topology.items;
    let top = items.iter().filter_map(|i| match &i.kind {
        TopItemKind::EnvFile(p) => Some(p.node.as_str()),
        _ => None,
    });
    let groups = items
        .iter()
        .filter_map(|i| match &i.kind {
            TopItemKind::Group(g) => Some(g),
            _ => None,
        })
        .flat_map(|g| &g.settings)
        .filter_map(|s| match &s.kind {
            SettingKind::EnvFile(p) => Some(p.node.as_str()),
            _ => None,
        });
    top.chain(groups).collect()
}
