//! The review text of `flowrun plan`: every fact about the resolved
//! topology on its own line, aligned, in a fixed order, so a committed plan
//! diffs cleanly in code review.
//!
//! Determinism: everything comes from the [`Plan`] (file order, or orders
//! computed by [`crate::graph`]) and the source file's name as given; no
//! clock, no environment, no hash-map iteration, no absolute paths.

use super::{Containment, Placeholders, Plan};
use crate::ast::{Escalate, FinishWhen, Probe, RestartMode, StopTarget, Timeout};
use crate::diagnostic::Diagnostic;
use crate::graph;
use crate::model::{Group, GroupId, Handler, Step, Stop, Topology};
use crate::source::SourceFile;
use std::fmt::Write as _;
use std::time::Duration;

/// A duration as a person writes it: `250ms`, `10s`, `1m30s`, `2h`, `0s`.
/// Below a millisecond is dropped (the language cannot express it).
pub(crate) fn duration(d: Duration) -> String {
    millis(d.as_millis())
}

/// Whole milliseconds as [`duration`] writes them.
fn millis(total_ms: u128) -> String {
    if total_ms == 0 {
        return "0s".into();
    }
    let (h, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    let mut out = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
        if value > 0 {
            let _ = write!(out, "{value}{unit}");
        }
    }
    out
}

/// A timeout: a duration or `forever`.
/// A byte count as the language writes it: the largest unit that divides
/// it (`10MB`, `1536KB`, `100B`; 1024-based).
pub(crate) fn size(bytes: u64) -> String {
    for (unit, shift) in [("GB", 30), ("MB", 20), ("KB", 10)] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

pub(crate) fn timeout(t: Timeout) -> String {
    match t {
        Timeout::Finite(d) => duration(d),
        Timeout::Forever => "forever".into(),
    }
}

/// Exact milliseconds as [`timeout`] writes them.
fn exact_ms(ms: super::ExactMs) -> String {
    ms.map_or_else(|| "forever".into(), millis)
}

/// One word for display, quoted so a shell would read it back as exactly
/// this word. Words with control characters (newlines, tabs) use POSIX
/// `$'…'` quoting (`\n`, `\t`, `\r`, else `\xHH` per UTF-8 byte), so every
/// fact stays on one line and `sh`, `bash` and `zsh` read it back.
pub(crate) fn word(w: &str) -> String {
    if w.chars().any(char::is_control) {
        let mut out = String::from("$'");
        for c in w.chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    } else {
        shell_words::quote(w).into_owned()
    }
}

/// Words joined by spaces, each quoted as by [`word`].
fn words(ws: &[String]) -> String {
    ws.iter().map(|w| word(w)).collect::<Vec<_>>().join(" ")
}

/// A group's name by id; never panics on an out-of-range id.
fn name(t: &Topology, id: GroupId) -> String {
    t.groups
        .get(id)
        .map_or_else(|| format!("#{id}"), |g| g.name.node.clone())
}

fn names(t: &Topology, ids: impl IntoIterator<Item = GroupId>) -> String {
    ids.into_iter()
        .map(|id| name(t, id))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `SIGTERM → 25s → SIGQUIT → 5s → SIGKILL (to leader)`
pub(crate) fn ladder(stop: &Stop) -> String {
    let mut out = String::new();
    for s in &stop.steps {
        let _ = write!(out, "{} → {} → ", s.signal, timeout(s.drain));
    }
    out.push_str("SIGKILL");
    out.push_str(match stop.target {
        StopTarget::Leader => " (to leader)",
        StopTarget::Group => " (to group)",
    });
    out
}

/// `after api ready, migrate succeeded`, or `no conditions`.
fn conditions(t: &Topology, g: &Group) -> String {
    if g.after.is_empty() {
        return "no conditions".into();
    }
    let list: Vec<String> = g
        .after
        .iter()
        .map(|a| format!("{} {}", name(t, a.group), after_state(a.state)))
        .collect();
    format!("after {}", list.join(", "))
}

fn after_state(s: crate::ast::AfterState) -> &'static str {
    use crate::ast::AfterState::*;
    match s {
        Started => "started",
        Ready => "ready",
        Succeeded => "succeeded",
        Exited => "exited",
    }
}

/// One handler step, as the language writes it (groups by name, the
/// forwarded signal resolved).
fn step(t: &Topology, received: crate::model::Sig, s: &Step) -> String {
    match s {
        Step::Drain { groups } if groups.is_empty() => "drain (whole topology)".into(),
        Step::Drain { groups } => {
            format!(
                "drain {} (drained groups stay down)",
                names(t, groups.iter().map(|g| g.node))
            )
        }
        Step::Restart { groups, rolling } => format!(
            "restart {}{}",
            names(t, groups.iter().map(|g| g.node)),
            if *rolling { " rolling" } else { "" }
        ),
        Step::Reload => "reload (re-read the file, apply the difference)".into(),
        Step::Forward { signal, groups } => {
            let sig = signal.as_ref().map_or(received, |s| s.node);
            format!(
                "forward {sig} to {}{}",
                names(t, groups.iter().map(|g| g.node)),
                if signal.is_none() {
                    " (the received signal)"
                } else {
                    ""
                }
            )
        }
        Step::Wait { groups, within } => format!(
            "wait {} {}",
            names(t, groups.iter().map(|g| g.node)),
            match within {
                Some(w) => format!("within {}", timeout(*w)),
                None => "without a bound".into(),
            }
        ),
        Step::Kill => "kill (SIGKILL every process group now)".into(),
        Step::Ignore => "ignore".into(),
    }
}

/// Signals whose handler drains the whole topology.
pub(crate) fn drain_signals(t: &Topology) -> Vec<crate::model::Sig> {
    t.handlers
        .iter()
        .filter(|h| {
            h.steps
                .iter()
                .any(|s| matches!(&s.node, Step::Drain { groups } if groups.is_empty()))
        })
        .map(|h| h.signal.node)
        .collect()
}

fn probe(p: &Probe, ph: Option<&Placeholders>) -> String {
    let fill = |s: &str| {
        let v = ph.map_or_else(|| s.to_string(), |ph| ph.expand(s));
        format!("\"{}\"", v.escape_debug())
    };
    match p {
        Probe::Tcp(s) => format!("tcp {}", fill(s)),
        Probe::Http(s) => format!("http {}", fill(s)),
        Probe::Exec(s) => format!("exec {}", fill(s)),
        Probe::Log(s) => format!("log {}", fill(s)),
        Probe::File(s) => format!("file {}", fill(s)),
        Probe::Notify => "notify".into(),
    }
}

/// Lines of `key  value`, keys padded to one width.
struct Block {
    indent: &'static str,
    rows: Vec<(String, String)>,
}

impl Block {
    fn new(indent: &'static str) -> Self {
        Block {
            indent,
            rows: Vec::new(),
        }
    }

    fn row(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.rows.push((key.into(), value.into()));
    }

    fn write(&self, out: &mut String) {
        let width = self
            .rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        for (k, v) in &self.rows {
            let line = if v.is_empty() {
                format!("{}{k}", self.indent)
            } else {
                let pad = width - k.chars().count();
                format!("{}{k}{:pad$}  {v}", self.indent, "")
            };
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

/// The process count of each group in the plan (after `--scale`).
fn counts(plan: &Plan) -> Vec<u64> {
    let mut counts = vec![0u64; plan.topology.groups.len()];
    for p in &plan.processes {
        if let Some(c) = counts.get_mut(p.group) {
            *c += 1;
        }
    }
    counts
}

/// The review text of `flowrun plan` (README, "Plan review workflow"). Ends with a
/// newline.
pub fn text(plan: &Plan, source: &SourceFile, findings: &[Diagnostic]) -> String {
    let t = &plan.topology;
    let counts = counts(plan);
    let mut out = String::new();

    let _ = writeln!(out, "# flowrun plan: topology {}", t.name.node);
    out.push_str("# Generated by `flowrun plan`; check it with `flowrun plan --check`.\n");

    // Header.
    out.push('\n');
    let _ = writeln!(out, "topology {}", t.name.node);
    let slots = super::coroutine_slots(plan);
    let mut b = Block::new("  ");
    b.row("groups", t.groups.len().to_string());
    b.row("processes", plan.processes.len().to_string());
    b.row("coroutine slots", slots.to_string());
    b.row("shutdown within", timeout(t.shutdown_within));
    b.row(
        "containment",
        match plan.containment {
            Containment::Auto => {
                "auto (decided by `up`: cgroup v2 where a writable hierarchy exists, \
                 else process groups; its `starting` event says which)"
            }
            Containment::Cgroup => "cgroup (cgroup v2, or `up` refuses to start)",
            Containment::ProcessGroup => "process-group (process groups and the guard, no cgroup)",
        },
    );
    b.row(
        "finish when",
        match &t.finish {
            Some(f) => format!(
                "{} {} (then drain the rest and exit with its status)",
                name(t, f.group.node),
                match f.when {
                    FinishWhen::Exits => "exits",
                    FinishWhen::Succeeds => "succeeds",
                }
            ),
            None => "never (run until signalled or every group has ended)".into(),
        },
    );
    b.write(&mut out);

    // Start stages.
    out.push_str("\nstart stages\n");
    write_stages(&mut out, t, &plan.start_stages, |g| conditions(t, g));
    if plan.start_stages.is_empty() {
        out.push_str("  none\n");
    }
    if !graph::cycles(t).is_empty() {
        out.push_str("  (the last stage waits on a dependency cycle, FR201: it can never start)\n");
    }

    // Shutdown stages.
    out.push_str(
        "\nshutdown stages (dependents first; a group starts stopping once the running groups that wait for it are down)\n",
    );
    write_stages(&mut out, t, &plan.stop_stages, |g| ladder(&g.stop));
    if plan.stop_stages.is_empty() {
        out.push_str("  none\n");
    }

    // Worst-case path.
    out.push_str("\nworst-case shutdown path\n");
    let path = &plan.worst_shutdown;
    let mut b = Block::new("  ");
    if path.groups.is_empty() {
        b.row("path", "none");
    } else {
        b.row("path", names_arrow(t, &path.groups));
        let parts: Vec<String> = path
            .groups
            .iter()
            .map(|&g| exact_ms(super::ladder_ms(t, g)))
            .collect();
        b.row("ladders", parts.join(" + "));
    }
    let total = super::path_ms(t, path);
    b.row("total", exact_ms(total));
    b.row("budget", timeout(t.shutdown_within));
    let ok = super::within(total, super::exact(t.shutdown_within));
    b.row(
        "verdict",
        if ok {
            "ok (within the budget)"
        } else {
            "OVER (exceeds the budget: FR203)"
        },
    );
    b.write(&mut out);

    // Signals.
    out.push_str("\nsignals\n");
    write_signals(&mut out, t);

    // Groups and their processes (one pass: no scan per group).
    let mut by_group: Vec<Vec<&super::ProcessSpec>> = vec![Vec::new(); t.groups.len()];
    for p in &plan.processes {
        if let Some(list) = by_group.get_mut(p.group) {
            list.push(p);
        }
    }
    for (id, g) in t.groups.iter().enumerate() {
        let n = counts[id];
        let _ = writeln!(out, "\ngroup {}", g.name.node);
        let mut b = Block::new("  ");
        b.row(
            "kind",
            if g.once {
                "once (runs to completion)"
            } else {
                "service"
            },
        );
        b.row(
            "processes",
            format!(
                "{} × {} = {}",
                count(n, "process", "processes"),
                count(u64::from(g.coroutines), "coroutine", "coroutines"),
                count(
                    // Exact: n ≤ 2^18 (MAX_PLAN_PROCESSES), coroutines < 2^32.
                    n * u64::from(g.coroutines),
                    "coroutine slot",
                    "coroutine slots"
                )
            ),
        );
        if let Some(p) = g.port {
            let last = u64::from(p) + n.saturating_sub(1);
            if n <= 1 {
                b.row("port", p.to_string());
            } else {
                b.row("ports", format!("{p}..{last}"));
            }
        }
        b.row("start", conditions(t, g));
        b.row(
            "ready",
            match &g.ready {
                Some(r) => {
                    let mut s = probe(&r.probe, None);
                    if !matches!(r.probe, Probe::Log(_) | Probe::Notify) {
                        let _ = write!(s, " every {}", duration(r.every));
                    }
                    let _ = write!(s, " within {}", timeout(r.within));
                    s
                }
                None => "once started (no ready check)".into(),
            },
        );
        b.row("restart", restart(g));
        b.row("stop", ladder(&g.stop));
        b.row(
            "process group",
            match g.process_group {
                crate::ast::ProcessGroupMode::Own => "own (terminal signals do not reach it)",
                crate::ast::ProcessGroupMode::Shared => {
                    "shared (terminal signals reach it directly)"
                }
            },
        );
        b.row(
            "die with parent",
            if g.die_with_parent { "yes" } else { "no" },
        );
        if !g.env_files.is_empty() {
            // Precedence: each file over the ones before it, `env { }` last.
            b.row(
                "env files",
                format!(
                    "{}, then `env {{ }}` (a later value wins)",
                    g.env_files.join(", ")
                ),
            );
        }
        b.write(&mut out);
        for p in by_group.get(id).into_iter().flatten() {
            let _ = writeln!(out, "  process {}", p.id);
            let mut b = Block::new("    ");
            b.row("argv", words(&p.argv));
            b.row(
                "cwd",
                match &p.cwd {
                    Some(c) => word(c),
                    None => ". (the topology file's directory)".into(),
                },
            );
            if let Some(port) = p.port {
                b.row("port", port.to_string());
            }
            if let Some(l) = &p.log {
                b.row(
                    "log",
                    format!(
                        "{} (rotate {}, keep {})",
                        word(&l.path),
                        size(l.rotate_bytes),
                        l.keep
                    ),
                );
            }
            if let Some(r) = &g.ready {
                let ph = Placeholders {
                    group: &g.name.node,
                    index: p.index,
                    processes: u32::try_from(n).unwrap_or(u32::MAX),
                    coroutines: g.coroutines,
                    port: p.port,
                };
                b.row("ready", probe(&r.probe, Some(&ph)));
            }
            for (i, (k, v)) in p.env.iter().enumerate() {
                b.row(if i == 0 { "env" } else { "" }, format!("{k}={}", word(v)));
            }
            write_block_fixed(&mut out, &b, "ready".len());
        }
    }

    // Allowed rules.
    out.push_str("\nallowed rules\n");
    if t.allows.is_empty() {
        out.push_str("  none\n");
    }
    let mut b = Block::new("  ");
    for a in &t.allows {
        let rule = crate::rules::by_code(a.code).map_or("", |r| r.name);
        let scope = match a.group {
            Some(g) => format!("in group {}", name(t, g)),
            None => "whole topology".into(),
        };
        let reason = match &a.reason {
            Some(r) => format!("because \"{}\"", r.escape_debug()),
            None => "(no reason given)".into(),
        };
        b.row(format!("{} {rule}", a.code), format!("{scope}, {reason}"));
    }
    b.write(&mut out);

    // Findings.
    out.push_str("\nfindings\n");
    if findings.is_empty() {
        out.push_str("  none\n");
    }
    let index = crate::render::LineIndex::new(source);
    let name = file_name(&source.name);
    for d in findings {
        let line = crate::render::short_line_as(&index, name, d);
        // A message is one line; keep it so even if one is not.
        let _ = writeln!(out, "  {}", line.replace('\n', " "));
    }
    out
}

/// The file's name without its directory, so that a plan does not depend on
/// the path it was made with (`x.pf`, `./x.pf`, `/srv/x.pf`).
fn file_name(path: &str) -> &str {
    std::path::Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

/// Like [`Block::write`], but the keys take a fixed `width` (so every
/// process block lines up the same way) and rows with an empty key continue
/// the previous row's value column (used for the env list).
fn write_block_fixed(out: &mut String, b: &Block, width: usize) {
    for (k, v) in &b.rows {
        let pad = width.saturating_sub(k.chars().count());
        let line = format!("{}{k}{:pad$}  {v}", b.indent, "");
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// `1 process`, `4 processes`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn names_arrow(t: &Topology, ids: &[GroupId]) -> String {
    ids.iter()
        .map(|&g| name(t, g))
        .collect::<Vec<_>>()
        .join(" → ")
}

/// `  1  api      after migrate succeeded` with continuation lines for the
/// other groups of the stage.
fn write_stages(
    out: &mut String,
    t: &Topology,
    stages: &[Vec<GroupId>],
    fact: impl Fn(&Group) -> String,
) {
    let num_width = stages.len().to_string().len();
    let name_width = stages
        .iter()
        .flatten()
        .map(|&g| name(t, g).chars().count())
        .max()
        .unwrap_or(0);
    for (i, stage) in stages.iter().enumerate() {
        for (j, &g) in stage.iter().enumerate() {
            let num = if j == 0 {
                (i + 1).to_string()
            } else {
                String::new()
            };
            let n = name(t, g);
            let value = t.groups.get(g).map_or_else(String::new, &fact);
            let line = format!(
                "  {num:>num_width$}  {n}{:pad$}  {value}",
                "",
                pad = name_width - n.chars().count()
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

fn restart(g: &Group) -> String {
    let r = &g.restart;
    let mode = match r.mode {
        RestartMode::Never => return "never".into(),
        RestartMode::OnFailure => "on-failure",
        RestartMode::Always => "always",
    };
    let limit = match &r.limit {
        Some(l) => format!("limit {} per {}", l.count, duration(l.per)),
        None => "no limit".into(),
    };
    format!(
        "{mode}, backoff {}..{}, {limit}",
        duration(r.backoff_min),
        duration(r.backoff_max)
    )
}

fn write_signals(out: &mut String, t: &Topology) {
    let width = t
        .handlers
        .iter()
        .map(|h| h.signal.node.name().len())
        .max()
        .unwrap_or(0)
        .max("repeat".len());
    let line = |out: &mut String, key: &str, value: &str| {
        let l = format!("  {key:<width$}  {value}");
        out.push_str(l.trim_end());
        out.push('\n');
    };
    for h in &t.handlers {
        write_handler(out, t, h, &line);
    }
    let drains = drain_signals(t);
    let list = drains
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(", ");
    let repeat = if drains.is_empty() {
        "no signal drains the whole topology".to_string()
    } else {
        match t.escalate {
            Escalate::OnRepeat => format!(
                "a second drain signal ({list}) during a drain kills everything at once (escalate on repeat)"
            ),
            Escalate::Never => format!(
                "a second drain signal ({list}) during a drain is ignored; the ladders run to their deadlines (escalate never)"
            ),
        }
    };
    line(out, "repeat", &repeat);
}

fn write_handler(
    out: &mut String,
    t: &Topology,
    h: &Handler,
    line: &impl Fn(&mut String, &str, &str),
) {
    let sig = h.signal.node;
    let mark = if h.default { "  [default]" } else { "" };
    match h.steps.as_slice() {
        [] => line(out, sig.name(), &format!("nothing{mark}")),
        [only] => line(
            out,
            sig.name(),
            &format!("{}{mark}", step(t, sig, &only.node)),
        ),
        steps => {
            for (i, s) in steps.iter().enumerate() {
                let key = if i == 0 { sig.name() } else { "" };
                let m = if i == 0 { mark } else { "" };
                line(
                    out,
                    key,
                    &format!("{}. {}{m}", i + 1, step(t, sig, &s.node)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_language() {
        let ms = Duration::from_millis;
        assert_eq!(duration(ms(0)), "0s");
        assert_eq!(duration(ms(250)), "250ms");
        assert_eq!(duration(ms(10_000)), "10s");
        assert_eq!(duration(ms(90_000)), "1m30s");
        assert_eq!(duration(ms(3_600_000)), "1h");
        assert_eq!(duration(ms(3_723_004)), "1h2m3s4ms");
        assert_eq!(duration(ms(1_500)), "1s500ms");
        assert_eq!(timeout(Timeout::Forever), "forever");
        assert_eq!(duration(Duration::MAX), "5124095576030431h15s999ms");
    }

    #[test]
    fn words_are_quoted_for_a_shell_and_stay_on_one_line() {
        assert_eq!(word("plain"), "plain");
        assert_eq!(word("two words"), "'two words'");
        assert_eq!(word("it's"), "'it'\\''s'");
        assert_eq!(word("a\nb\t'c'"), "$'a\\nb\\t\\'c\\''");
        assert_eq!(word(""), "''");
        assert_eq!(word("x\u{1}y"), "$'x\\x01y'");
        assert_eq!(word("a\u{7f}\u{85}"), "$'a\\x7f\\xc2\\x85'");
    }
}
