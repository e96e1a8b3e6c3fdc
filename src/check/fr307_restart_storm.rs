//! FR307 restart-storm: a restart policy that can spin.
//!
//! Fires on `restart always` with no `limit` (a crash loop never gives up),
//! on a zero minimum backoff with any restarting mode (a crash loop runs
//! as fast as the process can fail), and on `restart always` on a `once`
//! group (a one-shot step restarted after it succeeds runs for ever).
//! Each is a separate finding on the `restart` statement.

use super::Ctx;
use crate::ast::RestartMode;
use crate::diagnostic::{Diagnostic, Label};
use std::time::Duration;

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    for (gi, g) in ctx.model.groups.iter().enumerate() {
        let r = &g.restart;
        if r.mode == RestartMode::Never {
            continue;
        }
        let name = ctx.name(gi);
        let span = r.span.unwrap_or_else(|| ctx.name_span(gi));
        if r.mode == RestartMode::Always && g.once {
            out.push(
                Diagnostic::new(
                    "FR307",
                    format!("`{name}` is `once` but has `restart always`: it runs again after every success"),
                    Label::new(span, "a one-shot step restarted for ever"),
                )
                .with_help("use `restart on-failure` (retry only failures) or `restart never` for a `once` step"),
            );
        }
        if r.mode == RestartMode::Always && r.limit.is_none() {
            out.push(
                Diagnostic::new(
                    "FR307",
                    format!("`{name}` restarts always with no limit: a crash loop never stops"),
                    Label::new(span, "no `limit`"),
                )
                .with_help("add a limit, e.g. `limit 5 per 60s`: past it the group is marked failed and the topology drains"),
            );
        }
        if r.backoff_min == Duration::ZERO {
            out.push(
                Diagnostic::new(
                    "FR307",
                    format!("`{name}` restarts with zero backoff: a crashing process is restarted in a tight loop"),
                    Label::new(span, "zero minimum backoff"),
                )
                .with_help("start the backoff above zero, e.g. `backoff 100ms..10s`"),
            );
        }
    }
}
