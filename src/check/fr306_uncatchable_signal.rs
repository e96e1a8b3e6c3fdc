//! FR306 uncatchable-signal: SIGKILL and SIGSTOP used as if they could be
//! handled.
//!
//! Fires on `on SIGKILL …` / `on SIGSTOP …` (the runner can never receive
//! them as events), on a ladder step `SIGKILL drain D` with D > 0 (the
//! process is gone at once; the drain only delays the next step), and on
//! any ladder step sending SIGSTOP (a stopped process does not exit, so
//! the drain always runs to its deadline).

use super::{fmt_timeout, Ctx};
use crate::ast::Timeout;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Sig;
use std::time::Duration;

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    for h in &ctx.model.handlers {
        let sig = h.signal.node;
        if sig == Sig::KILL || sig == Sig::STOP {
            out.push(
                Diagnostic::new(
                    "FR306",
                    format!("{sig} cannot be caught: this handler can never run"),
                    Label::new(
                        h.signal.span,
                        format!("the kernel acts on {sig} without telling the runner"),
                    ),
                )
                .with_help("remove the handler; use SIGTERM or SIGINT for a graceful stop"),
            );
        }
    }
    for (gi, g) in ctx.model.groups.iter().enumerate() {
        let name = ctx.name(gi);
        for step in &g.stop.steps {
            if step.signal == Sig::KILL && step.drain != Timeout::Finite(Duration::ZERO) {
                out.push(
                    Diagnostic::new(
                        "FR306",
                        format!("`{name}` waits {} after SIGKILL, which cannot be drained", fmt_timeout(step.drain)),
                        Label::new(step.span, "SIGKILL ends the process at once"),
                    )
                    .with_help("remove the SIGKILL step (the ladder always ends with SIGKILL to the whole process group), or use SIGTERM with a drain"),
                );
            } else if step.signal == Sig::STOP {
                out.push(
                    Diagnostic::new(
                        "FR306",
                        format!("`{name}`'s ladder sends SIGSTOP, which suspends the process instead of stopping it"),
                        Label::new(step.span, "a stopped process never exits"),
                    )
                    .with_help("use SIGTERM, SIGINT or SIGQUIT for a graceful stop"),
                );
            }
        }
    }
}
