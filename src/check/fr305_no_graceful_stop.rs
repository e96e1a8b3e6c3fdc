//! FR305 no-graceful-stop: neither SIGTERM nor SIGINT drains the topology.
//!
//! Only a whole-topology `drain` step counts (the defaults `on SIGINT
//! drain` and `on SIGTERM drain` do): `drain G` stops some groups but the
//! runner keeps running, and `kill`, `forward`, `ignore` are not graceful.
//! Container runtimes stop with SIGTERM and then SIGKILL after their grace
//! period; terminals send SIGINT.

use super::Ctx;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::{Handler, Sig, Step};

fn drains(h: Option<&Handler>) -> bool {
    h.is_some_and(|h| {
        h.steps
            .iter()
            .any(|s| matches!(&s.node, Step::Drain { groups } if groups.is_empty()))
    })
}

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    let term = ctx.model.handler(Sig::TERM);
    let int = ctx.model.handler(Sig::INT);
    if drains(term) || drains(int) {
        return;
    }
    let explicit: Vec<&Handler> = [term, int]
        .into_iter()
        .flatten()
        .filter(|h| !h.default)
        .collect();
    let primary = explicit.first().map_or(ctx.model.name.span, |h| h.span);
    let mut d = Diagnostic::new(
        "FR305",
        "neither SIGTERM nor SIGINT drains the topology: `docker stop`, Kubernetes and Ctrl+C end in SIGKILL",
        Label::new(primary, "this handler does not drain"),
    )
    .with_help("make SIGTERM drain: `on SIGTERM drain` (the default), keeping any extra steps before it");
    for h in explicit.iter().skip(1) {
        d = d.with_related(Label::new(h.span, "this one does not drain either"));
    }
    out.push(d);
}
