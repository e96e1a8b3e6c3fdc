//! FR505 child-signalled-twice: the worker starts a child in its own
//! process group (`subprocess.Popen` without `start_new_session=True`, or a
//! `multiprocessing.Process`) and stops it from a SIGINT/SIGTERM handler or
//! an `except KeyboardInterrupt:` — while the topology delivers that very
//! signal to the whole process group too (`stop … to group`, or
//! `process-group shared` under a terminal's Ctrl+C). The child is stopped
//! twice: the parent's `terminate()` cuts its own drain short.
//!
//! Cross-checks the topology: under the defaults (`to leader`, an own
//! process group) only the worker gets the signal and nothing fires.

use crate::diagnostic::Diagnostic;
use crate::pysrc::program::{At, Ctx};
use crate::pysrc::syntax::{Call, Event};

/// A child that shares the worker's process group.
fn shares_group(cx: &Ctx, file: usize, call: &Call) -> bool {
    let canon = cx.canon(file, call);
    if canon == "subprocess.Popen" {
        let own = call
            .keyword("start_new_session")
            .is_some_and(|a| a.text == "True")
            || call.keyword("process_group").is_some()
            || call
                .keyword("preexec_fn")
                .is_some_and(|a| a.text.contains("setsid") || a.text.contains("setpgrp"));
        return !own;
    }
    call.method() == "Process" && canon.starts_with("multiprocessing")
        || (call.method() == "Process"
            && call.callee.contains('.')
            && cx.files[file]
                .bindings
                .values()
                .any(|v| v.starts_with("multiprocessing")))
}

fn stops_child(cx: &Ctx, file: usize, call: &Call) -> bool {
    let canon = cx.canon(file, call);
    canon == "os.kill"
        || (call.callee.contains('.')
            && !canon.starts_with("os.")
            && matches!(call.method(), "terminate" | "kill" | "send_signal"))
}

pub fn check(cx: &Ctx, out: &mut [Vec<Diagnostic>]) {
    let p = cx.prog;
    let Some(child) = cx
        .all_calls()
        .find(|&(f, _, c)| shares_group(cx, f, c))
        .map(|(f, _, c)| At {
            file: f,
            span: c.span,
        })
    else {
        return;
    };
    // Where the stop calls run, for which signal: signal handlers, then
    // `except KeyboardInterrupt:` bodies.
    let mut contexts = Vec::new();
    for (file, _, reg) in cx.all_calls() {
        if cx.canon(file, reg) != "signal.signal" {
            continue;
        }
        let sig = match reg
            .positional(0)
            .map(|a| a.text.rsplit('.').next().unwrap_or(""))
        {
            Some("SIGINT") => "SIGINT",
            Some("SIGTERM") => "SIGTERM",
            _ => continue,
        };
        let Some(h) = reg.positional(1) else { continue };
        let start = match (h.lambda, &h.name) {
            (Some(l), _) => Some((file, l)),
            (None, Some(n)) => cx.resolve_name(file, n),
            _ => None,
        };
        if let Some(start) = start {
            contexts.push((
                sig,
                start,
                At {
                    file,
                    span: reg.span,
                },
                "in this handler",
            ));
        }
    }
    for &file in p.modules.values() {
        for &f in &cx.files[file].module.on_interrupt {
            let span = cx.files[file].module.funcs[f].span;
            contexts.push((
                "SIGINT",
                (file, f),
                At { file, span },
                "on KeyboardInterrupt",
            ));
        }
    }
    let mut done = std::collections::HashSet::new();
    for (sig, start, ctx_at, ctx_what) in contexts {
        // Which topology setting delivers `sig` to the child as well.
        let why = if p.stop_to_group && p.stop_signals.contains(&sig) {
            (
                format!("`stop {sig} … to group` sends {sig} to the child too"),
                p.stop_span,
            )
        } else if sig == "SIGINT" && p.shared_group.is_some() {
            (
                "`process-group shared`: a terminal's Ctrl+C sends SIGINT to the child too"
                    .to_string(),
                p.shared_group,
            )
        } else {
            continue;
        };
        for (hf, f) in cx.reachable(start, 64) {
            for e in &cx.files[hf].module.funcs[f].events {
                let Event::Call(c) = *e else { continue };
                let call = cx.call(hf, c);
                if !stops_child(cx, hf, call) || !done.insert((hf, call.span)) {
                    continue;
                }
                let topo = match why.1 {
                    Some(span) => {
                        crate::diagnostic::Label::in_file(cx.topo.clone(), span, why.0.clone())
                    }
                    None => cx.topo_label(why.0.clone()),
                };
                out[hf].push(
                    Diagnostic::new(
                        "FR505",
                        format!(
                            "`{}(…)` stops a child that already got {sig} from group `{}`'s process group: it is signalled twice and its own drain is cut short",
                            call.callee, p.group_name
                        ),
                        cx.label(hf, At { file: hf, span: call.span }, format!("a second stop, {ctx_what}")),
                    )
                    .with_related(cx.label(hf, child, "the child shares the worker's process group"))
                    .with_related(cx.label(hf, ctx_at, format!("runs on {sig}")))
                    .with_related(topo)
                    .with_help("let the child get the signal once: either start it with `start_new_session=True` and forward the signal yourself, or do not stop it here and only wait for it; or stop the group `to leader` in the topology"),
                );
            }
        }
    }
}
