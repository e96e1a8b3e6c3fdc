//! FR309 forward-stops-service: forwarding a group's own stop signal
//! outside a drain.
//!
//! Fires on each group of a `forward [SIG] to G…` step when the forwarded
//! signal (the handler's own signal when none is written) is the first
//! signal of G's stop ladder, the handler does not drain G (nor the whole
//! topology), and no *later* step of the same handler `wait`s for or
//! `restart`s G. The group then exits as if stopped, the runner did not
//! ask for it, and the restart policy starts it again behind the
//! handler's back (or, with `restart never`, it is silently gone).

use super::Ctx;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Step;

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    for h in &ctx.model.handlers {
        let drains_all = h
            .steps
            .iter()
            .any(|s| matches!(&s.node, Step::Drain { groups } if groups.is_empty()));
        if drains_all {
            continue;
        }
        for (k, step) in h.steps.iter().enumerate() {
            let Step::Forward { signal, groups } = &step.node else {
                continue;
            };
            let sig = signal.as_ref().map_or(h.signal.node, |s| s.node);
            for g in groups {
                let Some(grp) = ctx.model.groups.get(g.node) else {
                    continue;
                };
                if grp.stop.steps.first().map(|s| s.signal) != Some(sig) {
                    continue;
                }
                let handled = h.steps.iter().enumerate().any(|(j, s)| match &s.node {
                    Step::Drain { groups } => groups.iter().any(|x| x.node == g.node),
                    Step::Wait { groups, .. } | Step::Restart { groups, .. } if j > k => {
                        groups.iter().any(|x| x.node == g.node)
                    }
                    _ => false,
                });
                if handled {
                    continue;
                }
                let name = ctx.name(g.node);
                let fate = if grp.restart.mode == crate::ast::RestartMode::Never {
                    format!("`{name}` will stop and stay down")
                } else {
                    format!("`{name}` will stop and be restarted by its restart policy")
                };
                out.push(
                    Diagnostic::new(
                        "FR309",
                        format!(
                            "the {} handler forwards {sig} to `{name}`, which is `{name}`'s stop signal, and then neither waits for nor restarts it",
                            h.signal.node
                        ),
                        Label::new(g.span, fate),
                    )
                    .with_related(Label::new(ctx.stop_span(g.node), format!("`{name}` stops on {sig}")))
                    .with_help(format!(
                        "to restart it, write `restart {name}`; to stop it, `drain {name}`; \
                         or follow the forward with `wait {name} within …` and `restart {name}`"
                    )),
                );
            }
        }
    }
}
