//! `flowrun plan --format json`: the plan as a documented, versioned JSON
//! document (docs/plan-json.md). It is a view of [`Plan`] built from
//! borrowed data: field order is fixed by these structs, lists keep file
//! order or the order [`crate::graph`] computed, durations are whole
//! milliseconds (`"forever"` where a timeout may be unbounded), and every
//! group reference carries the group's name next to its id.

use super::{Placeholders, Plan, ShutdownPath};
use crate::ast::{
    AfterState, Escalate, FinishWhen, Probe, ProcessGroupMode, RestartMode, StopTarget, Timeout,
};
use crate::diagnostic::{Diagnostic, Severity};
use crate::graph;
use crate::model::{Command, Group, GroupId, Sig, Step, Topology};
use crate::source::SourceFile;
use serde::Serialize;

/// The version of the document's shape; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Whole milliseconds, exact: a sum of long ladders can pass 2^64 ms, so
/// these are `u128` (JSON numbers have no size limit; see docs/plan-json.md).
fn ms(d: std::time::Duration) -> u128 {
    d.as_millis()
}

/// Milliseconds, or the string `"forever"`.
#[derive(Serialize)]
#[serde(untagged)]
enum Ms {
    Finite(u128),
    Forever(&'static str),
}

impl From<Timeout> for Ms {
    fn from(t: Timeout) -> Self {
        match t {
            Timeout::Finite(d) => Ms::Finite(ms(d)),
            Timeout::Forever => Ms::Forever("forever"),
        }
    }
}

#[derive(Serialize)]
struct Doc<'a> {
    schema_version: u32,
    topology: &'a str,
    summary: Summary,
    shutdown_within_ms: Ms,
    finish: Option<FinishJ>,
    escalate: Escalate,
    drain_signals: Vec<Sig>,
    start_stages: Vec<Vec<GroupRef>>,
    stop_stages: Vec<Vec<GroupRef>>,
    worst_shutdown: Worst,
    handlers: Vec<HandlerJ>,
    groups: Vec<GroupJ<'a>>,
    processes: Vec<ProcessJ<'a>>,
    allows: Vec<AllowJ<'a>>,
    findings: Vec<Finding<'a>>,
}

#[derive(Serialize)]
struct Summary {
    groups: usize,
    processes: usize,
    coroutine_slots: u64,
}

#[derive(Serialize)]
struct GroupRef {
    group: GroupId,
    name: String,
}

fn gref(t: &Topology, id: GroupId) -> GroupRef {
    GroupRef {
        group: id,
        name: t
            .groups
            .get(id)
            .map_or_else(String::new, |g| g.name.node.clone()),
    }
}

#[derive(Serialize)]
struct FinishJ {
    #[serde(flatten)]
    group: GroupRef,
    when: FinishWhen,
}

#[derive(Serialize)]
struct Worst {
    groups: Vec<PathGroup>,
    total_ms: Ms,
    budget_ms: Ms,
    within_budget: bool,
}

#[derive(Serialize)]
struct PathGroup {
    #[serde(flatten)]
    group: GroupRef,
    stop_total_ms: Ms,
}

#[derive(Serialize)]
struct HandlerJ {
    signal: Sig,
    default: bool,
    steps: Vec<StepJ>,
}

#[derive(Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
enum StepJ {
    Drain {
        /// Empty: the whole topology.
        groups: Vec<GroupRef>,
    },
    Restart {
        groups: Vec<GroupRef>,
        rolling: bool,
    },
    Reload,
    Forward {
        signal: Sig,
        received: bool,
        groups: Vec<GroupRef>,
    },
    Wait {
        groups: Vec<GroupRef>,
        /// `null`: no bound (FR301).
        within_ms: Option<Ms>,
    },
    Kill,
    Ignore,
}

#[derive(Serialize)]
struct GroupJ<'a> {
    id: GroupId,
    name: &'a str,
    command: &'a Command,
    once: bool,
    processes: u64,
    coroutines: u32,
    port: Option<u16>,
    after: Vec<AfterJ>,
    ready: Option<ReadyJ<'a>>,
    restart: RestartJ,
    stop: StopJ,
    env: Vec<EnvJ<'a>>,
    cwd: Option<&'a str>,
    process_group: ProcessGroupMode,
    die_with_parent: bool,
}

#[derive(Serialize)]
struct AfterJ {
    #[serde(flatten)]
    group: GroupRef,
    state: AfterState,
}

#[derive(Serialize)]
struct ReadyJ<'a> {
    probe: &'a Probe,
    every_ms: u128,
    within_ms: Ms,
}

#[derive(Serialize)]
struct RestartJ {
    mode: RestartMode,
    backoff_min_ms: u128,
    backoff_max_ms: u128,
    limit: Option<LimitJ>,
}

#[derive(Serialize)]
struct LimitJ {
    count: u32,
    per_ms: u128,
}

#[derive(Serialize)]
struct StopJ {
    target: StopTarget,
    steps: Vec<LadderJ>,
    total_ms: Ms,
}

#[derive(Serialize)]
struct LadderJ {
    signal: Sig,
    drain_ms: Ms,
}

#[derive(Serialize)]
struct EnvJ<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct ProcessJ<'a> {
    id: &'a str,
    group: GroupId,
    group_name: &'a str,
    index: u32,
    argv: &'a [String],
    cwd: Option<&'a str>,
    port: Option<u16>,
    /// The group's readiness probe with this process's placeholders filled.
    ready: Option<Probe>,
    env: Vec<EnvJ<'a>>,
}

#[derive(Serialize)]
struct AllowJ<'a> {
    code: &'a str,
    name: &'a str,
    reason: Option<&'a str>,
    /// `null`: the whole topology.
    group: Option<GroupRef>,
}

#[derive(Serialize)]
struct Finding<'a> {
    code: &'a str,
    name: &'a str,
    severity: Severity,
    message: &'a str,
    line: usize,
    column: usize,
}

fn refs(t: &Topology, groups: &[crate::source::Spanned<GroupId>]) -> Vec<GroupRef> {
    groups.iter().map(|g| gref(t, g.node)).collect()
}

fn step(t: &Topology, received: Sig, s: &Step) -> StepJ {
    match s {
        Step::Drain { groups } => StepJ::Drain {
            groups: refs(t, groups),
        },
        Step::Restart { groups, rolling } => StepJ::Restart {
            groups: refs(t, groups),
            rolling: *rolling,
        },
        Step::Reload => StepJ::Reload,
        Step::Forward { signal, groups } => StepJ::Forward {
            signal: signal.as_ref().map_or(received, |s| s.node),
            received: signal.is_none(),
            groups: refs(t, groups),
        },
        Step::Wait { groups, within } => StepJ::Wait {
            groups: refs(t, groups),
            within_ms: within.map(Ms::from),
        },
        Step::Kill => StepJ::Kill,
        Step::Ignore => StepJ::Ignore,
    }
}

fn group<'a>(t: &'a Topology, id: GroupId, g: &'a Group, processes: u64) -> GroupJ<'a> {
    GroupJ {
        id,
        name: &g.name.node,
        command: &g.command.node,
        once: g.once,
        processes,
        coroutines: g.coroutines,
        port: g.port,
        after: g
            .after
            .iter()
            .map(|a| AfterJ {
                group: gref(t, a.group),
                state: a.state,
            })
            .collect(),
        ready: g.ready.as_ref().map(|r| ReadyJ {
            probe: &r.probe,
            every_ms: ms(r.every),
            within_ms: r.within.into(),
        }),
        restart: RestartJ {
            mode: g.restart.mode,
            backoff_min_ms: ms(g.restart.backoff_min),
            backoff_max_ms: ms(g.restart.backoff_max),
            limit: g.restart.limit.as_ref().map(|l| LimitJ {
                count: l.count,
                per_ms: ms(l.per),
            }),
        },
        stop: StopJ {
            target: g.stop.target,
            steps: g
                .stop
                .steps
                .iter()
                .map(|s| LadderJ {
                    signal: s.signal,
                    drain_ms: s.drain.into(),
                })
                .collect(),
            total_ms: graph::ladder_total(&g.stop).into(),
        },
        env: g
            .env
            .iter()
            .map(|(k, v)| EnvJ { name: k, value: v })
            .collect(),
        cwd: g.cwd.as_deref(),
        process_group: g.process_group,
        die_with_parent: g.die_with_parent,
    }
}

fn worst(t: &Topology, path: &ShutdownPath) -> Worst {
    Worst {
        groups: path
            .groups
            .iter()
            .map(|&g| PathGroup {
                group: gref(t, g),
                stop_total_ms: t
                    .groups
                    .get(g)
                    .map_or(Ms::Finite(0), |g| graph::ladder_total(&g.stop).into()),
            })
            .collect(),
        total_ms: path.total.into(),
        budget_ms: t.shutdown_within.into(),
        within_budget: path.total <= t.shutdown_within,
    }
}

/// A probe with one process's placeholders filled.
fn expand_probe(p: &Probe, ph: &Placeholders) -> Probe {
    match p {
        Probe::Tcp(s) => Probe::Tcp(ph.expand(s)),
        Probe::Http(s) => Probe::Http(ph.expand(s)),
        Probe::Exec(s) => Probe::Exec(ph.expand(s)),
        Probe::Log(s) => Probe::Log(ph.expand(s)),
        Probe::File(s) => Probe::File(ph.expand(s)),
        Probe::Notify => Probe::Notify,
    }
}

/// The plan as pretty JSON (docs/plan-json.md), ending with a newline.
pub fn json(plan: &Plan, source: &SourceFile, findings: &[Diagnostic]) -> String {
    let t = &plan.topology;
    let index = crate::render::LineIndex::new(source);
    let mut counts = vec![0u64; t.groups.len()];
    for p in &plan.processes {
        if let Some(c) = counts.get_mut(p.group) {
            *c += 1;
        }
    }
    let stages = |s: &[Vec<GroupId>]| -> Vec<Vec<GroupRef>> {
        s.iter()
            .map(|st| st.iter().map(|&g| gref(t, g)).collect())
            .collect()
    };
    let doc = Doc {
        schema_version: SCHEMA_VERSION,
        topology: &t.name.node,
        summary: Summary {
            groups: t.groups.len(),
            processes: plan.processes.len(),
            coroutine_slots: t
                .groups
                .iter()
                .zip(&counts)
                .map(|(g, &n)| n.saturating_mul(u64::from(g.coroutines)))
                .fold(0, u64::saturating_add),
        },
        shutdown_within_ms: t.shutdown_within.into(),
        finish: t.finish.as_ref().map(|f| FinishJ {
            group: gref(t, f.group.node),
            when: f.when,
        }),
        escalate: t.escalate,
        drain_signals: super::text::drain_signals(t),
        start_stages: stages(&plan.start_stages),
        stop_stages: stages(&plan.stop_stages),
        worst_shutdown: worst(t, &plan.worst_shutdown),
        handlers: t
            .handlers
            .iter()
            .map(|h| HandlerJ {
                signal: h.signal.node,
                default: h.default,
                steps: h
                    .steps
                    .iter()
                    .map(|s| step(t, h.signal.node, &s.node))
                    .collect(),
            })
            .collect(),
        groups: t
            .groups
            .iter()
            .enumerate()
            .map(|(id, g)| group(t, id, g, counts[id]))
            .collect(),
        processes: plan
            .processes
            .iter()
            .map(|p| ProcessJ {
                id: &p.id,
                group: p.group,
                group_name: t.groups.get(p.group).map_or("", |g| &g.name.node),
                index: p.index,
                argv: &p.argv,
                cwd: p.cwd.as_deref(),
                port: p.port,
                ready: t.groups.get(p.group).and_then(|g| {
                    let r = g.ready.as_ref()?;
                    let ph = Placeholders {
                        group: &g.name.node,
                        index: p.index,
                        processes: u32::try_from(counts[p.group]).unwrap_or(u32::MAX),
                        coroutines: g.coroutines,
                        port: p.port,
                    };
                    Some(expand_probe(&r.probe, &ph))
                }),
                env: p
                    .env
                    .iter()
                    .map(|(k, v)| EnvJ { name: k, value: v })
                    .collect(),
            })
            .collect(),
        allows: t
            .allows
            .iter()
            .map(|a| AllowJ {
                code: a.code,
                name: crate::rules::by_code(a.code).map_or("", |r| r.name),
                reason: a.reason.as_deref(),
                group: a.group.map(|g| gref(t, g)),
            })
            .collect(),
        findings: findings
            .iter()
            .map(|d| {
                let (line, column) = index.line_col(d.primary.span.start);
                Finding {
                    code: d.code,
                    name: crate::rules::by_code(d.code).map_or("", |r| r.name),
                    severity: d.severity,
                    message: &d.message,
                    line,
                    column,
                }
            })
            .collect(),
    };
    // Serialising these plain structs cannot fail (string keys, no maps).
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_else(|e| {
        format!("{{\"schema_version\": {SCHEMA_VERSION}, \"error\": \"{e}\"}}")
    });
    out.push('\n');
    out
}
