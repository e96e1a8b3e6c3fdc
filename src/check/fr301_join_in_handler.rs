//! FR301 join-in-handler: a handler step that can block signal handling.
//!
//! Fires on a `wait` step with no `within` (or `within forever`), and on
//! each group of a `wait` that no *earlier* step of the same handler
//! signals: a `drain` (of the whole topology or of that group), a `kill`,
//! a `forward … to` that group or a `restart` of it. Handlers run one at a
//! time, so a handler that waits for something nobody asked to happen
//! holds every later signal, Ctrl+C included, until the group exits on its
//! own.

use super::Ctx;
use crate::ast::Timeout;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::{GroupId, Step};
use std::collections::HashSet;

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    for h in &ctx.model.handlers {
        let sig = h.signal.node;
        let mut all = false;
        let mut signalled: HashSet<GroupId> = HashSet::new();
        for step in &h.steps {
            match &step.node {
                Step::Drain { groups } if groups.is_empty() => all = true,
                Step::Kill => all = true,
                Step::Drain { groups }
                | Step::Restart { groups, .. }
                | Step::Forward { groups, .. } => {
                    signalled.extend(groups.iter().map(|g| g.node));
                }
                Step::Wait { groups, within } => {
                    let names: Vec<&str> = groups.iter().map(|g| ctx.name(g.node)).collect();
                    if matches!(within, None | Some(Timeout::Forever)) {
                        let how = if within.is_none() {
                            "no `within`"
                        } else {
                            "`within forever`"
                        };
                        out.push(
                            Diagnostic::new(
                                "FR301",
                                format!("the {sig} handler waits for {} with {how}", names.join(", ")),
                                Label::new(step.span, "this wait has no deadline"),
                            )
                            .with_related(Label::new(h.signal.span, "while it waits, every later signal to the runner is held, Ctrl+C included"))
                            .with_help(format!(
                                "bound the wait: `wait {} within 10s` (choose a deadline longer than the group's drain)",
                                names.join(" ")
                            )),
                        );
                    }
                    for g in groups {
                        if all || signalled.contains(&g.node) {
                            continue;
                        }
                        let name = ctx.name(g.node);
                        out.push(
                            Diagnostic::new(
                                "FR301",
                                format!("the {sig} handler waits for `{name}`, but nothing before it in the handler stops `{name}`"),
                                Label::new(g.span, format!("`{name}` was not signalled")),
                            )
                            .with_related(Label::new(h.signal.span, "this handler blocks until the group exits on its own"))
                            .with_help(format!(
                                "signal it first (`forward SIGTERM to {name}` or `drain {name}`), or remove the wait"
                            )),
                        );
                    }
                }
                Step::Reload | Step::Ignore => {}
            }
        }
    }
}
