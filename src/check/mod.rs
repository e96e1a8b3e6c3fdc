//! The hazard rules of stages 2–4 (FR201–FR402) and `allow` handling
//! (FR002).
//!
//! Every rule lives in its own file with one entry point,
//! `pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>)`, and is documented
//! for users in `docs/rules/CODE.md` (`flowrun explain CODE`). Rules read
//! the resolved [`Topology`]; a few also look at the AST (for spans the
//! model does not keep) or at the raw source text of a string literal (to
//! point inside it). Every rule is linear or `n log n` in the number of
//! groups and handler steps: nothing compares every pair of groups.

pub mod shell;

mod fr201_dependency_cycle;
mod fr202_unreachable_condition;
mod fr203_drain_exceeds_budget;
mod fr204_port_overlap;
mod fr205_capacity;
mod fr206_shared_log_file;
mod fr301_join_in_handler;
mod fr302_double_delivery;
mod fr303_orphan_risk;
mod fr304_unbounded_drain;
mod fr305_no_graceful_stop;
mod fr306_uncatchable_signal;
mod fr307_restart_storm;
mod fr308_no_escalation;
mod fr309_forward_stops_service;
mod fr310_secret_in_file;
mod fr401_shell_syntax_in_run;
mod fr402_shell_swallows_stop;

use crate::ast::{self, File, SettingKind};
use crate::diagnostic::{Diagnostic, Label};
use crate::host::HostLimits;
use crate::model::{GroupId, Topology};
use crate::source::{SourceFile, Span};
use std::collections::HashMap;
use std::time::Duration;

/// What a rule gets to look at.
pub struct Ctx<'a> {
    pub source: &'a SourceFile,
    pub file: &'a File,
    pub model: &'a Topology,
    /// `Some` only under `lint --host` (FR205).
    pub host: Option<&'a HostLimits>,
    /// The AST group each model group was resolved from, by [`GroupId`].
    ast_groups: Vec<Option<&'a ast::Group>>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        source: &'a SourceFile,
        file: &'a File,
        model: &'a Topology,
        host: Option<&'a HostLimits>,
    ) -> Self {
        // Match by the span of the group's name: the resolver keeps it, and
        // it is unique per AST group even when names are duplicated.
        let mut by_name_span: HashMap<Span, &ast::Group> = HashMap::new();
        for item in &file.topology.items {
            if let ast::TopItemKind::Group(g) = &item.kind {
                by_name_span.entry(g.name.span).or_insert(g);
            }
        }
        let ast_groups = model
            .groups
            .iter()
            .map(|g| by_name_span.get(&g.name.span).copied())
            .collect();
        Ctx {
            source,
            file,
            model,
            host,
            ast_groups,
        }
    }

    /// The group's name (`?` for an out-of-range id, which the resolver
    /// never produces).
    pub fn name(&self, g: GroupId) -> &'a str {
        self.model
            .groups
            .get(g)
            .map_or("?", |g| g.name.node.as_str())
    }

    /// The span of the group's name where it is declared.
    pub fn name_span(&self, g: GroupId) -> Span {
        self.model
            .groups
            .get(g)
            .map_or(self.model.name.span, |g| g.name.span)
    }

    pub fn ast_group(&self, g: GroupId) -> Option<&'a ast::Group> {
        self.ast_groups.get(g).copied().flatten()
    }

    /// The first setting of group `g` that `pick` accepts.
    pub fn setting<T>(
        &self,
        g: GroupId,
        pick: impl Fn(&'a ast::Setting) -> Option<T>,
    ) -> Option<T> {
        self.ast_group(g)?.settings.iter().find_map(pick)
    }

    /// The span of the group's `stop` ladder, or of its name when defaulted.
    pub fn stop_span(&self, g: GroupId) -> Span {
        self.model
            .groups
            .get(g)
            .and_then(|grp| grp.stop.span)
            .unwrap_or_else(|| self.name_span(g))
    }

    /// The group's `run` or `sh` literal: (is_sh, value, span of the literal
    /// with its quotes).
    pub fn command_literal(&self, g: GroupId) -> Option<(bool, &'a str, Span)> {
        self.setting(g, |s| match &s.kind {
            SettingKind::Run(l) => Some((false, l.node.as_str(), l.span)),
            SettingKind::Sh(l) => Some((true, l.node.as_str(), l.span)),
            _ => None,
        })
    }
}

/// Run every rule of stages 2–4 over a resolved topology.
pub fn check(
    source: &SourceFile,
    file: &File,
    model: &Topology,
    host: Option<&HostLimits>,
) -> Vec<Diagnostic> {
    let ctx = Ctx::new(source, file, model, host);
    let mut out = Vec::new();
    let rules: &[fn(&Ctx, &mut Vec<Diagnostic>)] = &[
        fr201_dependency_cycle::check,
        fr202_unreachable_condition::check,
        fr203_drain_exceeds_budget::check,
        fr204_port_overlap::check,
        fr205_capacity::check,
        fr206_shared_log_file::check,
        fr301_join_in_handler::check,
        fr302_double_delivery::check,
        fr303_orphan_risk::check,
        fr304_unbounded_drain::check,
        fr305_no_graceful_stop::check,
        fr306_uncatchable_signal::check,
        fr307_restart_storm::check,
        fr308_no_escalation::check,
        fr309_forward_stops_service::check,
        fr310_secret_in_file::check,
        fr401_shell_syntax_in_run::check,
        fr402_shell_swallows_stop::check,
    ];
    for rule in rules {
        rule(&ctx, &mut out);
    }
    out
}

/// Codes an `allow` can never suppress: the file would not compile.
const UNSUPPRESSIBLE: &[&str] = &["FR001", "FR002", "FR101", "FR102", "FR103", "FR104"];

/// Drop findings suppressed by an `allow` and report unused allows (FR002).
///
/// A topology-scope `allow` suppresses every finding of its rule; a
/// group-scope one only findings whose primary span lies inside that
/// group's block. An `allow` of FR001, FR002 or FR101–FR104 cannot apply
/// and is itself reported as FR002. An `allow` of FR205 (capacity) is never
/// reported as unused, since FR205 only runs under `lint --host`.
pub fn apply_allows(model: &Topology, diags: &mut Vec<Diagnostic>) {
    let mut topo: HashMap<&str, usize> = HashMap::new();
    // code -> (group span start, end, allow index), sorted by start.
    let mut scoped: HashMap<&str, Vec<(usize, usize, usize)>> = HashMap::new();
    let mut used = vec![false; model.allows.len()];
    let mut reports = Vec::new();
    for (i, a) in model.allows.iter().enumerate() {
        if UNSUPPRESSIBLE.contains(&a.code) {
            used[i] = true;
            reports.push(
                Diagnostic::new(
                    "FR002",
                    format!(
                        "`allow {}` has no effect: {} ({}) cannot be suppressed, because {}",
                        a.code,
                        a.code,
                        crate::rules::by_code(a.code).map_or("", |r| r.name),
                        why_not(a.code)
                    ),
                    Label::new(a.span, "this allow cannot apply"),
                )
                .with_help("remove this `allow` and fix the finding instead"),
            );
            continue;
        }
        if a.code == "FR205" {
            used[i] = true;
        }
        match a.group.and_then(|g| model.groups.get(g)) {
            None => {
                topo.entry(a.code).or_insert(i);
            }
            Some(g) => {
                let span = g.span.join(g.name.span);
                scoped
                    .entry(a.code)
                    .or_default()
                    .push((span.start, span.end, i));
            }
        }
    }
    for v in scoped.values_mut() {
        v.sort_unstable();
    }
    diags.retain(|d| {
        if UNSUPPRESSIBLE.contains(&d.code) {
            return true;
        }
        if let Some(&i) = topo.get(d.code) {
            used[i] = true;
            return false;
        }
        if let Some(v) = scoped.get(d.code) {
            // Group blocks do not nest or overlap: the candidate is the last
            // block starting at or before the finding.
            let p = d.primary.span;
            let k = v.partition_point(|&(s, _, _)| s <= p.start);
            if k > 0 {
                let (s, e, i) = v[k - 1];
                if p.start >= s && p.end <= e {
                    used[i] = true;
                    return false;
                }
            }
        }
        true
    });
    for (i, a) in model.allows.iter().enumerate() {
        if used[i] {
            continue;
        }
        let scope = match a.group.and_then(|g| model.groups.get(g)) {
            Some(g) => format!("in group `{}`", g.name.node),
            None => "in this topology".to_string(),
        };
        let name = crate::rules::by_code(a.code).map_or("", |r| r.name);
        reports.push(
            Diagnostic::new(
                "FR002",
                format!("`allow {}` ({name}) suppresses nothing {scope}", a.code),
                Label::new(a.span, "unused allow"),
            )
            .with_help(format!(
                "{} does not fire here any more; remove this `allow`",
                a.code
            )),
        );
    }
    diags.extend(reports);
}

fn why_not(code: &str) -> &'static str {
    match code {
        "FR001" => "a syntax error means there is no topology to run",
        "FR002" => "unused allows are reported so they can be removed",
        _ => "resolution errors (FR101–FR104) mean the topology does not compile",
    }
}

/// `1m30s`, `250ms`, `0s`: durations as the language writes them.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let (h, m, s, r) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 {
        out += &format!("{s}s");
    }
    if r > 0 {
        out += &format!("{r}ms");
    }
    out
}

pub fn fmt_timeout(t: ast::Timeout) -> String {
    match t {
        ast::Timeout::Finite(d) => fmt_duration(d),
        ast::Timeout::Forever => "forever".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_the_language() {
        assert_eq!(fmt_duration(Duration::from_millis(90_000)), "1m30s");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_millis(3_600_500)), "1h500ms");
        assert_eq!(fmt_duration(Duration::ZERO), "0s");
    }
}
