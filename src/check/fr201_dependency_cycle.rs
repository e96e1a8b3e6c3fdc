//! FR201 dependency-cycle: `after` edges form a cycle.
//!
//! One finding per cycle reported by [`graph::cycles`] (at least one per
//! strongly connected component). The message spells the cycle
//! `a → b → c → a`; the primary label is the first group's `after` edge and
//! every other edge of the cycle gets a related label.

use super::Ctx;
use crate::diagnostic::{Diagnostic, Label};
use crate::graph;
use crate::model::GroupId;
use crate::source::Span;

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    for cycle in graph::cycles(ctx.model) {
        if cycle.is_empty() || cycle.iter().any(|&g| g >= ctx.model.groups.len()) {
            continue;
        }
        let mut names: Vec<&str> = cycle.iter().map(|&g| ctx.name(g)).collect();
        names.push(ctx.name(cycle[0]));
        // The edge from each group to the next one around the cycle: the
        // group waits for (`after`) its successor or its predecessor,
        // depending on the direction `cycles` walks; accept either.
        let n = cycle.len();
        let mut edges: Vec<(Span, String)> = Vec::with_capacity(n);
        for k in 0..n {
            let (a, b) = (cycle[k], cycle[(k + 1) % n]);
            if let Some(e) = edge(ctx, a, b).or_else(|| edge(ctx, b, a)) {
                edges.push(e);
            }
        }
        let Some((first_span, first_label)) = edges.first().cloned() else {
            continue;
        };
        let mut d = Diagnostic::new(
            "FR201",
            format!("`after` waits in a circle: {}", names.join(" → ")),
            Label::new(first_span, first_label),
        )
        .with_help(
            "no group in a cycle can ever start; remove one of these `after` lines \
             (or make one side wait for `started` of a group outside the cycle)",
        );
        for (span, label) in edges.into_iter().skip(1) {
            d = d.with_related(Label::new(span, label));
        }
        out.push(d);
    }
}

/// The `after` statement in group `from` that waits for `to`.
fn edge(ctx: &Ctx, from: GroupId, to: GroupId) -> Option<(Span, String)> {
    let g = ctx.model.groups.get(from)?;
    let a = g.after.iter().find(|a| a.group == to)?;
    Some((
        a.span,
        format!("`{}` waits for `{}`", ctx.name(from), ctx.name(to)),
    ))
}
