//! FR302 double-delivery: a `process-group shared` group stopped by the
//! runner for SIGINT or SIGQUIT.
//!
//! A shared group stays in the runner's process group, so a terminal's
//! Ctrl+C (SIGINT) or Ctrl+\ (SIGQUIT) reaches its processes directly. If
//! the runner's handler for that signal also stops the group — a whole
//! `drain` (including the default `on SIGINT drain`), `drain G`,
//! `restart G` or `forward … to G` (not `kill`: SIGKILL runs no shutdown
//! code twice) — each process gets two stop signals
//! and its shutdown code runs twice. One finding per group, on its
//! `process-group shared` setting, with a related label on each handler.

use super::Ctx;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::{GroupId, Handler, Sig, Step};
use crate::source::Span;

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    let handlers: Vec<&Handler> = [Sig::INT, Sig::QUIT]
        .iter()
        .filter_map(|&s| ctx.model.handler(s))
        .collect();
    if handlers.is_empty() {
        return;
    }
    for (gi, g) in ctx.model.groups.iter().enumerate() {
        if g.process_group != crate::ast::ProcessGroupMode::Shared {
            continue;
        }
        let hits: Vec<(&Handler, Span, &'static str)> = handlers
            .iter()
            .filter_map(|h| stops(h, gi).map(|(span, how)| (*h, span, how)))
            .collect();
        if hits.is_empty() {
            continue;
        }
        let name = ctx.name(gi);
        let sigs: Vec<String> = hits
            .iter()
            .map(|(h, _, _)| h.signal.node.to_string())
            .collect();
        // The whole `process-group shared` statement.
        let primary = ctx
            .setting(gi, |s| {
                matches!(s.kind, crate::ast::SettingKind::ProcessGroup(_)).then_some(s.span)
            })
            .or(g.process_group_span)
            .unwrap_or_else(|| ctx.name_span(gi));
        let mut d = Diagnostic::new(
            "FR302",
            format!(
                "`{name}` shares the runner's process group, so the terminal's {} reaches it directly, and the runner stops it too",
                sigs.join("/")
            ),
            Label::new(primary, "the terminal signals this group directly"),
        )
        .with_help(format!(
            "remove `process-group shared` (the default `own` keeps terminal signals away from `{name}`), \
             or handle {} without stopping `{name}`",
            sigs.join("/")
        ));
        let mut defaults = Vec::new();
        for (h, span, how) in hits {
            if h.default {
                defaults.push(format!("the default `on {} drain`", h.signal.node));
            } else {
                d = d.with_related(Label::new(
                    span,
                    format!("…and {how} `{name}` on {}", h.signal.node),
                ));
            }
        }
        if !defaults.is_empty() {
            d.message.push_str(&format!(" ({})", defaults.join(", ")));
        }
        out.push(d);
    }
}

/// Whether handler `h` stops group `g`: the span of the step that does it
/// and a verb for the label.
fn stops(h: &Handler, g: GroupId) -> Option<(Span, &'static str)> {
    h.steps.iter().find_map(|s| {
        let how = match &s.node {
            Step::Drain { groups } if groups.is_empty() => "the runner drains",
            Step::Drain { groups } if groups.iter().any(|x| x.node == g) => "the runner drains",
            Step::Restart { groups, .. } if groups.iter().any(|x| x.node == g) => {
                "the runner restarts"
            }
            Step::Forward { groups, .. } if groups.iter().any(|x| x.node == g) => {
                "the runner forwards to"
            }
            _ => return None,
        };
        Some((s.span, how))
    })
}
