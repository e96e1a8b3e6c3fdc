//! FR204 port-overlap: two groups' port ranges overlap.
//!
//! A group with `port P` and `processes N` uses `P ..= P + N − 1`. The
//! ranges are sorted by their first port and swept once (`n log n`): a
//! range that starts at or before the highest end seen so far overlaps the
//! group that reached that end. One finding per overlapping group, on its
//! `port` statement, with a related label on the other group's `port`.

use super::Ctx;
use crate::ast::SettingKind;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::GroupId;
use crate::source::Span;

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    let mut ranges: Vec<(u64, u64, GroupId)> = ctx
        .model
        .groups
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            let p = u64::from(g.port?);
            Some((p, p + u64::from(g.processes.max(1)) - 1, i))
        })
        .collect();
    ranges.sort_unstable();
    // (end, group) of the range reaching furthest so far.
    let mut reach: Option<(u64, GroupId)> = None;
    for &(start, end, g) in &ranges {
        if let Some((far, other)) = reach {
            if start <= far {
                let (os, oe) = range(ctx, other);
                out.push(
                    Diagnostic::new(
                        "FR204",
                        format!(
                            "ports of `{}` ({}) overlap those of `{}` ({})",
                            ctx.name(g),
                            show(start, end),
                            ctx.name(other),
                            show(os, oe)
                        ),
                        Label::new(port_span(ctx, g), format!("`{}` uses {}", ctx.name(g), show(start, end))),
                    )
                    .with_related(Label::new(
                        port_span(ctx, other),
                        format!("`{}` uses {}", ctx.name(other), show(os, oe)),
                    ))
                    .with_help(format!(
                        "each process binds `port + index`; move `{}` to a free range, e.g. `port {}`",
                        ctx.name(g),
                        far.max(end) + 1
                    )),
                );
            }
        }
        if reach.map_or(true, |(far, _)| end > far) {
            reach = Some((end, g));
        }
    }
}

fn range(ctx: &Ctx, g: GroupId) -> (u64, u64) {
    let grp = &ctx.model.groups[g];
    let p = u64::from(grp.port.unwrap_or(0));
    (p, p + u64::from(grp.processes.max(1)) - 1)
}

fn show(start: u64, end: u64) -> String {
    if start == end {
        format!("port {start}")
    } else {
        format!("ports {start}–{end}")
    }
}

fn port_span(ctx: &Ctx, g: GroupId) -> Span {
    ctx.setting(g, |s| match s.kind {
        SettingKind::Port(_) => Some(s.span),
        _ => None,
    })
    .unwrap_or_else(|| ctx.name_span(g))
}
