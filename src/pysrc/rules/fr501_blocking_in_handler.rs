//! FR501 blocking-in-handler: a function registered with `signal.signal`
//! (or a local function it calls) blocks — `join()`, `wait()`,
//! `time.sleep()`, `os.waitpid()`, a lock's `acquire()` — in a process
//! gevent has patched. gevent runs Python signal handlers from its event
//! loop, where blocking raises `BlockingSwitchOutError`.

use crate::diagnostic::Diagnostic;
use crate::pysrc::program::{At, Ctx};
use crate::pysrc::syntax::{Call, Event};
use std::collections::HashSet;

/// Functions that block, by their dotted name.
const BLOCKING: &[&str] = &[
    "time.sleep",
    "os.waitpid",
    "os.wait",
    "os.wait3",
    "os.wait4",
    "select.select",
    "gevent.sleep",
    "gevent.joinall",
    "gevent.wait",
    "subprocess.call",
    "subprocess.run",
    "subprocess.check_call",
    "subprocess.check_output",
];

/// How deep helper calls are followed from a handler.
const MAX_HELPERS: usize = 64;

/// Whether a call blocks; the method or function name when it does.
pub(crate) fn blocking(canon: &str, call: &Call) -> bool {
    if BLOCKING.contains(&canon) {
        return true;
    }
    if !call.callee.contains('.') || call.on_literal {
        return false;
    }
    let is_false = |t: &str| t == "False" || t == "0";
    match call.method() {
        // str.join takes one iterable; Thread/Process/Pool/Greenlet.join
        // take nothing or a timeout.
        "join" => {
            !canon.starts_with("os.path.")
                && match call.positional(0) {
                    None => true,
                    Some(a) => a.text.parse::<f64>().is_ok(),
                }
        }
        "wait" | "communicate" => !canon.starts_with("os."),
        "acquire" => {
            !call.keyword("blocking").is_some_and(|a| is_false(&a.text))
                && !call.positional(0).is_some_and(|a| is_false(&a.text))
        }
        _ => false,
    }
}

pub fn check(cx: &Ctx, out: &mut [Vec<Diagnostic>]) {
    let Some(patch) = &cx.patch else { return };
    let mut done: HashSet<At> = HashSet::new();
    for (file, _, reg) in cx.all_calls() {
        if cx.canon(file, reg) != "signal.signal" {
            continue;
        }
        let Some(handler) = reg.positional(1) else {
            continue;
        };
        let signame = reg.positional(0).map_or("?".to_string(), |a| {
            a.text.rsplit('.').next().unwrap_or("?").to_string()
        });
        let start = match (handler.lambda, &handler.name) {
            (Some(l), _) => (file, l),
            (None, Some(n)) => match cx.resolve_name(file, n) {
                Some(t) => t,
                None => continue,
            },
            _ => continue,
        };
        let handler_name = handler.name.clone().unwrap_or_else(|| "<lambda>".into());
        for (hf, f) in cx.reachable(start, MAX_HELPERS) {
            let func = &cx.files[hf].module.funcs[f];
            for e in &func.events {
                let Event::Call(c) = *e else { continue };
                let call = cx.call(hf, c);
                let canon = cx.canon(hf, call);
                if !blocking(&canon, call) {
                    continue;
                }
                let at = At {
                    file: hf,
                    span: call.span,
                };
                if !done.insert(at) {
                    continue;
                }
                let via = if (hf, f) == start {
                    String::new()
                } else {
                    format!(" (through `{}`)", func.name)
                };
                let d = Diagnostic::new(
                    "FR501",
                    format!(
                        "`{}(…)` blocks inside the {signame} handler `{handler_name}`{via}, and gevent runs signal handlers in its event loop: BlockingSwitchOutError",
                        call.callee
                    ),
                    cx.label(hf, at, "blocks in the event loop"),
                )
                .with_related(cx.label(hf, At { file, span: reg.span }, "registered as a signal handler here"))
                .with_related(cx.patch_label(hf, patch))
                .with_help(format!(
                    "register it with `gevent.signal_handler({signame}, …)`, or make the handler only set a flag or `gevent.spawn(…)` the work"
                ));
                out[hf].push(d);
            }
        }
    }
}
