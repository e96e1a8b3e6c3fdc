//! FR308 no-escalation: `escalate never`.
//!
//! With escalation on (the default), a second drain-triggering signal
//! during a drain kills everything at once; `escalate never` leaves a user
//! pressing Ctrl+C at a hung drain with nothing but `kill -9`.

use super::Ctx;
use crate::ast::Escalate;
use crate::diagnostic::{Diagnostic, Label};

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    if ctx.model.escalate != Escalate::Never {
        return;
    }
    let span = ctx.model.escalate_span.unwrap_or(ctx.model.name.span);
    out.push(
        Diagnostic::new(
            "FR308",
            "`escalate never`: a second Ctrl+C or SIGTERM will not stop a hung drain",
            Label::new(span, "repeated signals are ignored during a drain"),
        )
        .with_help("remove `escalate never` (the default `escalate on repeat` kills everything on the second signal)"),
    );
}
