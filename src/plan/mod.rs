//! The plan: the resolved topology plus everything derived from it that a
//! reviewer reads and `flowrun up` executes — start stages, shutdown stages,
//! the worst-case shutdown path, the signal table, and every process's final
//! argv and flowrun-provided environment.
//!
//! `exec` consumes only a [`Plan`], so `flowrun plan --format json` shows
//! exactly what `up` will run. Building a plan does no IO.
//!
//! Its three renderings live beside it: [`text()`] (the review text of
//! `flowrun plan`), [`json()`] (`--format json`: the `Plan` itself
//! serialised, docs/plan-json.md) and [`diff()`] (`plan --check`). All are
//! byte-for-byte deterministic.

mod json;
pub mod redact;
mod text;

pub use json::{json, SCHEMA_VERSION};
pub use text::text;

use crate::ast::{Probe, Timeout};
use crate::model::{Command, Group, GroupId, Topology};
use serde::Serialize;
use std::collections::BTreeMap;

/// `--scale G=N` overrides: group name → process count.
pub type Scale = BTreeMap<String, u32>;

/// What `flowrun up` runs. Its JSON form is its `Serialize` impl (in
/// `json.rs`), which names every field, so a field added here does not
/// compile until it is serialised there.
#[derive(Clone, Debug)]
pub struct Plan {
    pub topology: Topology,
    /// The containment `up` is asked for (`--containment`, default
    /// `auto`): a request, so the plan does not depend on the machine; the
    /// run's `starting` event reports what `auto` chose.
    pub containment: Containment,
    /// Groups that start together, in order; a stage starts when the
    /// conditions of its groups are met (see `Topology::groups[..].after`).
    pub start_stages: Vec<Vec<GroupId>>,
    /// Groups that stop together, in order: dependents first.
    pub stop_stages: Vec<Vec<GroupId>>,
    pub worst_shutdown: ShutdownPath,
    /// Every process, grouped by group in file order, then by index.
    pub processes: Vec<ProcessSpec>,
}

/// How a run contains its processes, as requested (`--containment`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Containment {
    /// cgroup v2 where a writable hierarchy exists, else process groups;
    /// decided when `up` starts.
    #[default]
    Auto,
    /// cgroup v2, or refuse to start.
    Cgroup,
    /// Process groups and the guard only.
    ProcessGroup,
}

impl Containment {
    /// The name the flag and the JSON use (`process-group`).
    pub fn name(self) -> &'static str {
        match self {
            Containment::Auto => "auto",
            Containment::Cgroup => "cgroup",
            Containment::ProcessGroup => "process-group",
        }
    }
}

/// The longest chain of stop ladders that must run one after another.
/// Serialised with the plan (exact totals, the budget and the verdict).
#[derive(Clone, Debug, Default)]
pub struct ShutdownPath {
    /// From the group that stops first to the one that stops last.
    pub groups: Vec<GroupId>,
    pub total: Timeout,
}

impl Default for Timeout {
    fn default() -> Self {
        Timeout::Finite(std::time::Duration::ZERO)
    }
}

/// A duration in exact milliseconds; `None` is `forever`.
pub(crate) type ExactMs = Option<u128>;

pub(crate) fn exact(t: Timeout) -> ExactMs {
    match t {
        Timeout::Finite(d) => Some(d.as_millis()),
        Timeout::Forever => None,
    }
}

/// Group `g`'s stop ladder total, exactly (`Stop::total` saturates at
/// `Duration::MAX`); 0 for an id out of range. The sums cannot saturate
/// for any plan that fits in memory: each drain is below 2^75 ms (a
/// `Duration`) and a plan has far fewer than 2^53 of them.
pub(crate) fn ladder_ms(t: &Topology, g: GroupId) -> ExactMs {
    t.groups.get(g).map_or(Some(0), |g| {
        g.stop
            .steps
            .iter()
            .try_fold(0u128, |sum, s| Some(sum.saturating_add(exact(s.drain)?)))
    })
}

/// The shutdown path's total, exactly: the sum of its ladders.
pub(crate) fn path_ms(t: &Topology, path: &ShutdownPath) -> ExactMs {
    path.groups
        .iter()
        .try_fold(0u128, |sum, &g| Some(sum.saturating_add(ladder_ms(t, g)?)))
}

/// Whether `total` fits in `budget` (`forever` fits only in `forever`).
pub(crate) fn within(total: ExactMs, budget: ExactMs) -> bool {
    match (total, budget) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(total), Some(budget)) => total <= budget,
    }
}

/// Σ processes × coroutines over the plan's processes. Exact: at most
/// [`MAX_PLAN_PROCESSES`] (2^18) processes of fewer than 2^32 coroutines.
pub(crate) fn coroutine_slots(plan: &Plan) -> u64 {
    plan.processes
        .iter()
        .map(|p| {
            plan.topology
                .groups
                .get(p.group)
                .map_or(0, |g| u64::from(g.coroutines))
        })
        .sum()
}

/// One OS process to run: placeholders filled, environment complete
/// (flowrun's `FLOWRUN_*` variables plus the group's `env`, expanded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessSpec {
    pub group: GroupId,
    pub index: u32,
    /// `group.index`, the output prefix.
    pub id: String,
    /// The program and its arguments; `sh` groups run `/bin/sh -c SCRIPT`.
    pub argv: Vec<String>,
    /// Added to the inherited environment, in this order.
    #[serde(serialize_with = "crate::model::ser_env")]
    pub env: Vec<(String, String)>,
    /// As written in the file (relative to the file's directory), if set.
    pub cwd: Option<String>,
    pub port: Option<u16>,
    /// The group's readiness probe with this process's placeholders
    /// filled; `None` when the group has no ready check.
    pub ready: Option<Probe>,
    /// The file its output is also written to (`log file`), placeholders
    /// filled; `None`: the terminal only.
    pub log: Option<LogSpec>,
}

/// One process's log file: `path` is relative to the topology file's
/// directory unless absolute; [`crate::exec::logfile`] writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogSpec {
    pub path: String,
    pub rotate_bytes: u64,
    pub keep: u32,
}

/// The values placeholders take for one process.
pub struct Placeholders<'a> {
    pub group: &'a str,
    pub index: u32,
    pub processes: u32,
    pub coroutines: u32,
    pub port: Option<u16>,
}

impl Placeholders<'_> {
    /// The value of `{name}`, if it is a placeholder that has one here.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "group" => self.group.to_string(),
            "index" => self.index.to_string(),
            "processes" => self.processes.to_string(),
            "coroutines" => self.coroutines.to_string(),
            "port" => self.port?.to_string(),
            _ => return None,
        })
    }

    /// Replace every known `{name}` in `text`; unknown ones stay as written
    /// (they are FR103 findings, and a plan with errors is never run).
    pub fn expand(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) => match self.get(&after[..close]) {
                    Some(v) => {
                        out.push_str(&v);
                        rest = &after[close + 1..];
                    }
                    None => {
                        out.push('{');
                        rest = after;
                    }
                },
                None => {
                    out.push_str(&rest[open..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// The port of process `index`, when the group has one and it fits.
pub fn port_of(group: &Group, index: u32) -> Option<u16> {
    group
        .port
        .and_then(|p| u16::try_from(u32::from(p) + index).ok())
}

/// Expand one process of a group.
pub fn process_spec(topology: &Topology, id: GroupId, index: u32, processes: u32) -> ProcessSpec {
    let g = &topology.groups[id];
    let port = port_of(g, index);
    let ph = Placeholders {
        group: &g.name.node,
        index,
        processes,
        coroutines: g.coroutines,
        port,
    };
    let argv = match &g.command.node {
        Command::Run { argv } => argv.iter().map(|w| ph.expand(w)).collect(),
        Command::Sh { script } => vec!["/bin/sh".into(), "-c".into(), ph.expand(script)],
    };
    let mut env = vec![
        ("FLOWRUN_TOPOLOGY".to_string(), topology.name.node.clone()),
        ("FLOWRUN_GROUP".to_string(), g.name.node.clone()),
        ("FLOWRUN_INDEX".to_string(), index.to_string()),
        ("FLOWRUN_PROCESSES".to_string(), processes.to_string()),
        ("FLOWRUN_COROUTINES".to_string(), g.coroutines.to_string()),
    ];
    if let Some(p) = port {
        env.push(("FLOWRUN_PORT".to_string(), p.to_string()));
    }
    env.extend(g.env.iter().map(|(k, v)| (k.clone(), ph.expand(v))));
    ProcessSpec {
        group: id,
        index,
        id: format!("{}.{}", g.name.node, index),
        argv,
        env,
        cwd: g.cwd.as_ref().map(|c| ph.expand(c)),
        port,
        ready: g.ready.as_ref().map(|r| expand_probe(&r.probe, &ph)),
        log: g.log.as_ref().map(|l| LogSpec {
            path: ph.expand(&l.path),
            rotate_bytes: l.rotate_bytes,
            keep: l.keep,
        }),
    }
}

/// A probe with one process's placeholders filled.
pub fn expand_probe(p: &Probe, ph: &Placeholders) -> Probe {
    match p {
        Probe::Tcp(s) => Probe::Tcp(ph.expand(s)),
        Probe::Http(s) => Probe::Http(ph.expand(s)),
        Probe::Exec(s) => Probe::Exec(ph.expand(s)),
        Probe::Log(s) => Probe::Log(ph.expand(s)),
        Probe::File(s) => Probe::File(ph.expand(s)),
        Probe::Notify => Probe::Notify,
    }
}

/// The most processes one group expands to in a plan (64 Ki).
///
/// A larger `processes` or `--scale` cannot run on a real host (pid and
/// `RLIMIT_NPROC` limits are far lower in practice), and expanding a typo
/// such as `processes 4000000000` would exhaust memory before any check
/// could report it. The plan clamps instead; the resolver and `--scale`
/// validation should report counts above this limit as errors so that such
/// a plan is never run.
pub const MAX_GROUP_PROCESSES: u32 = 65_536;

/// The most processes a whole plan expands to (256 Ki): later groups get
/// fewer (possibly none) once the total is reached. Same reasoning as
/// [`MAX_GROUP_PROCESSES`].
pub const MAX_PLAN_PROCESSES: usize = 262_144;

/// The process count of a group after `--scale`, at most
/// [`MAX_GROUP_PROCESSES`].
pub fn scaled(group: &Group, scale: &Scale) -> u32 {
    scale
        .get(&group.name.node)
        .copied()
        .unwrap_or(group.processes)
        .min(MAX_GROUP_PROCESSES)
}

/// Build the plan. Stages and the shutdown path come from [`crate::graph`].
/// Linear in groups + edges + processes; the process list is bounded by
/// [`MAX_GROUP_PROCESSES`] and [`MAX_PLAN_PROCESSES`].
pub fn build(topology: &Topology, scale: &Scale) -> Plan {
    let mut processes = Vec::new();
    for (id, g) in topology.groups.iter().enumerate() {
        let room = MAX_PLAN_PROCESSES.saturating_sub(processes.len());
        let n = scaled(g, scale).min(u32::try_from(room).unwrap_or(u32::MAX));
        processes.extend((0..n).map(|i| process_spec(topology, id, i, n)));
    }
    Plan {
        topology: topology.clone(),
        containment: Containment::default(),
        start_stages: crate::graph::start_stages(topology),
        stop_stages: crate::graph::stop_stages(topology),
        worst_shutdown: crate::graph::worst_shutdown_path(topology),
        processes,
    }
}

/// Compare a committed plan with a freshly built one: `None` when they are
/// equal, else a unified diff (3 lines of context) headed
/// `--- COMMITTED_NAME` / `+++ plan`, ending with a newline. Line endings
/// do not count: a plan checked out with CRLF endings is still current.
pub fn diff(committed: &str, fresh: &str, committed_name: &str) -> Option<String> {
    let lf;
    let committed = if committed.contains("\r\n") {
        lf = committed.replace("\r\n", "\n");
        lf.as_str()
    } else {
        committed
    };
    if committed == fresh {
        return None;
    }
    let mut out = similar::TextDiff::from_lines(committed, fresh)
        .unified_diff()
        .context_radius(3)
        .header(committed_name, "plan")
        .to_string();
    if out.is_empty() {
        // Only possible if the texts differ in a way lines cannot show.
        out = format!("--- {committed_name}\n+++ plan\n");
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests;
