//! FR203 drain-exceeds-budget: the worst-case teardown path is longer than
//! `shutdown within`.
//!
//! The path is [`graph::worst_shutdown_path`]: the largest sum of stop
//! ladders along a chain of groups that stop one after another. A path
//! with a `forever` step exceeds any finite budget; a `shutdown within
//! forever` budget never fires (FR304 reports that instead). The primary
//! label is the `shutdown within` statement (the topology name when the
//! 30 s default applies); every group on the path gets a related label on
//! its `stop` ladder (its name when the ladder is the default).

use super::{fmt_timeout, Ctx};
use crate::ast::Timeout;
use crate::diagnostic::{Diagnostic, Label};
use crate::graph;

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    let budget = ctx.model.shutdown_within;
    let path = graph::worst_shutdown_path(ctx.model);
    let over = match (path.total, budget) {
        (_, Timeout::Forever) => false,
        (Timeout::Forever, Timeout::Finite(_)) => true,
        (Timeout::Finite(t), Timeout::Finite(b)) => t > b,
    };
    if !over || path.groups.iter().any(|&g| g >= ctx.model.groups.len()) {
        return;
    }
    let names: Vec<&str> = path.groups.iter().map(|&g| ctx.name(g)).collect();
    let (primary, budget_text) = match ctx.model.shutdown_span {
        Some(s) => (s, format!("budget {}", fmt_timeout(budget))),
        None => (
            ctx.model.name.span,
            format!("default budget {} (`shutdown within`)", fmt_timeout(budget)),
        ),
    };
    let mut d = Diagnostic::new(
        "FR203",
        format!(
            "the worst-case shutdown path {} takes {}, more than the {}",
            names.join(" → "),
            fmt_timeout(path.total),
            budget_text
        ),
        Label::new(
            primary,
            format!(
                "{budget_text}, but the path needs {}",
                fmt_timeout(path.total)
            ),
        ),
    )
    .with_help(match path.total {
        Timeout::Forever => "these groups stop one after another (dependents first), and one of \
             them may drain forever: give every step of its ladder a deadline (see FR304)"
            .to_string(),
        Timeout::Finite(_) => format!(
            "these groups stop one after another (dependents first); shorten their drains, \
             or raise the budget to at least `shutdown within {}`",
            fmt_timeout(path.total)
        ),
    });
    let mut running = std::time::Duration::ZERO;
    let mut unbounded = false;
    for &g in &path.groups {
        let total = ctx.model.groups[g].stop.total();
        match total {
            Timeout::Finite(t) => running = running.saturating_add(t),
            Timeout::Forever => unbounded = true,
        }
        let label = if total == Timeout::Forever {
            format!("`{}` may drain forever", ctx.name(g))
        } else if unbounded {
            format!("`{}` drains for up to {}", ctx.name(g), fmt_timeout(total))
        } else {
            format!(
                "`{}` drains for up to {} ({} so far)",
                ctx.name(g),
                fmt_timeout(total),
                fmt_timeout(Timeout::Finite(running))
            )
        };
        d = d.with_related(Label::new(ctx.stop_span(g), label));
    }
    out.push(d);
}
