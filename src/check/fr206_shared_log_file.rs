//! FR206 shared-log-file: two processes write one `log file`.
//!
//! Every process's path is expanded as the plan expands it (`{group}`,
//! `{index}`, `{processes}`, `{coroutines}`, `{port}`), normalised
//! lexically (`./` and repeated `/` dropped), and put in one map: linear in
//! the number of processes that have a log file. One finding per group, at
//! its first clash: the processes of one group sharing a path (no `{index}`
//! in it), or a path another group already writes. An inherited topology
//! `log file` is reported on the group's name, with a related label on the
//! topology's statement, so a group-scope `allow` applies.

use super::Ctx;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::{GroupId, LogFile};
use crate::plan::{port_of, Placeholders};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    // Normalised path → the first group and index that writes it.
    let mut writers: HashMap<PathBuf, (GroupId, u32)> = HashMap::new();
    for (g, group) in ctx.model.groups.iter().enumerate() {
        let Some(log) = &group.log else { continue };
        let mut reported = false;
        for index in 0..group.processes {
            let ph = Placeholders {
                group: &group.name.node,
                index,
                processes: group.processes,
                coroutines: group.coroutines,
                port: port_of(group, index),
            };
            let path = normalise(&ph.expand(&log.path));
            match writers.get(&path) {
                None => {
                    writers.insert(path, (g, index));
                }
                Some(&(other, _)) if !reported => {
                    reported = true;
                    out.push(finding(ctx, g, log, other, &path));
                }
                Some(_) => {}
            }
        }
    }
}

fn finding(ctx: &Ctx, g: GroupId, log: &LogFile, other: GroupId, path: &Path) -> Diagnostic {
    let group = &ctx.model.groups[g];
    let shown = path.display();
    let own_label = if other == g {
        "every process writes this file".to_string()
    } else {
        format!("`{}` writes this file too", ctx.name(other))
    };
    let (primary, related) = if log.inherited {
        (
            Label::new(
                ctx.name_span(g),
                format!("`{}` takes the topology's `log file`", ctx.name(g)),
            ),
            Some(Label::new(log.path_span, "the topology's `log file`")),
        )
    } else {
        (Label::new(log.path_span, own_label), None)
    };
    let mut d = if other == g {
        Diagnostic::new(
            "FR206",
            format!(
                "the {} processes of `{}` all write the log file `{shown}`",
                group.processes,
                ctx.name(g)
            ),
            primary,
        )
        .with_help(
            "put `{index}` in the path, e.g. `log file \"log/{group}.{index}.log\"`, so each process has its own file",
        )
    } else {
        let other_log = ctx.model.groups.get(other).and_then(|o| o.log.as_ref());
        let d = Diagnostic::new(
            "FR206",
            format!(
                "`{}` writes the log file `{shown}`, which `{}` writes too",
                ctx.name(g),
                ctx.name(other)
            ),
            primary,
        )
        .with_help("give each group its own file, e.g. with `{group}` and `{index}` in the path");
        match other_log {
            Some(l) if !l.inherited => d.with_related(Label::new(
                l.path_span,
                format!("`{}` writes it here", ctx.name(other)),
            )),
            _ => d.with_related(Label::new(
                ctx.name_span(other),
                format!("`{}` writes it too", ctx.name(other)),
            )),
        }
    };
    if let Some(r) = related {
        if !d.related.iter().any(|l| l.span == r.span) {
            d = d.with_related(r);
        }
    }
    d
}

/// `./a//b/../c` → `a/b/../c`: the lexical part of path equality that
/// needs no IO (`..` is kept: it may cross a symbolic link).
fn normalise(path: &str) -> PathBuf {
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}
