//! FR202 unreachable-condition: an `after` condition that can never be met.
//!
//! Fires on:
//! - `after G ready` where G is `once` and has no `ready when` check: a
//!   one-shot step without a check has no "ready" moment (it is either
//!   running or finished), so its dependents wait for ever;
//! - `after G succeeded` where G is a service (not `once`) whose restart
//!   mode is not `never`: a service is meant to keep running, and an exit
//!   is answered by a restart, so "every process has succeeded" is never a
//!   final state (a service that really finishes should be `once`);
//! - `after G exited` where G is a service with `restart always`: every
//!   exit is followed by a restart.

use super::Ctx;
use crate::ast::{AfterState, RestartMode};
use crate::diagnostic::{Diagnostic, Label};

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    let groups = &ctx.model.groups;
    for (gi, g) in groups.iter().enumerate() {
        for a in &g.after {
            let Some(t) = groups.get(a.group) else {
                continue;
            };
            let target = ctx.name(a.group);
            let me = ctx.name(gi);
            let found = match a.state {
                AfterState::Ready if t.once && t.ready.is_none() => Some((
                    format!("`{me}` waits for `{target}` to be ready, but `{target}` is `once` with no ready check"),
                    format!("`{target}` never becomes ready"),
                    format!("`{target}` is a one-shot step: write `after {target} succeeded` (or `exited`), or give it a `ready when …` check"),
                )),
                AfterState::Succeeded if !t.once && t.restart.mode != RestartMode::Never => Some((
                    format!("`{me}` waits for `{target}` to succeed, but `{target}` is a service that restarts"),
                    format!("`{target}` is restarted instead of finishing"),
                    format!("if `{target}` is a step that finishes, mark it `once`; if it is a service, wait for `after {target} ready` or `started`"),
                )),
                AfterState::Exited if !t.once && t.restart.mode == RestartMode::Always => Some((
                    format!("`{me}` waits for `{target}` to exit, but `{target}` has `restart always`"),
                    format!("`{target}` is restarted after every exit"),
                    format!("wait for `after {target} ready` or `started`, or give `{target}` `restart on-failure` or `never`"),
                )),
                _ => None,
            };
            if let Some((message, label, help)) = found {
                let related = match a.state {
                    AfterState::Ready => ctx.name_span(a.group),
                    _ => t.restart.span.unwrap_or_else(|| ctx.name_span(a.group)),
                };
                out.push(
                    Diagnostic::new(
                        "FR202",
                        message,
                        Label::new(a.span, "this condition is never met"),
                    )
                    .with_related(Label::new(related, label))
                    .with_help(help),
                );
            }
        }
    }
}
