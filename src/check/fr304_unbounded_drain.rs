//! FR304 unbounded-drain: a drain with no deadline.
//!
//! Fires on every `drain forever` step of a stop ladder, and on
//! `shutdown within forever` (a teardown budget that never runs out makes
//! FR203 impossible and lets one hung group hold the whole teardown).

use super::Ctx;
use crate::ast::Timeout;
use crate::diagnostic::{Diagnostic, Label};

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    for (gi, g) in ctx.model.groups.iter().enumerate() {
        let name = ctx.name(gi);
        for step in &g.stop.steps {
            if step.drain == Timeout::Forever {
                out.push(
                    Diagnostic::new(
                        "FR304",
                        format!("`{name}` may drain for ever after {}", step.signal),
                        Label::new(step.span, "no deadline: SIGKILL never comes"),
                    )
                    .with_help(format!(
                        "give the step a deadline longer than `{name}`'s slowest graceful stop, e.g. `{} drain 30s`",
                        step.signal
                    )),
                );
            }
        }
    }
    if ctx.model.shutdown_within == Timeout::Forever {
        let span = ctx.model.shutdown_span.unwrap_or(ctx.model.name.span);
        out.push(
            Diagnostic::new(
                "FR304",
                "the whole teardown may take for ever (`shutdown within forever`)",
                Label::new(span, "no teardown budget"),
            )
            .with_help("set a budget, e.g. `shutdown within 60s`: orchestrators send SIGKILL after their own grace period anyway"),
        );
    }
}
