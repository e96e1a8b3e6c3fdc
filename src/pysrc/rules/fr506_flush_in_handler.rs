//! FR506 flush-in-handler: a signal handler (or a local function it calls)
//! pushes output through a buffered standard stream — `print(…,
//! flush=True)`, `sys.stdout.flush()`, `sys.stderr.write(…)` (stderr is
//! line-buffered), a `logging` call — while the main flow writes the same
//! stream in a loop. CPython runs a Python signal handler between bytecodes
//! of the main thread, including inside the `EINTR` retry of a write that
//! blocked on a full pipe, with the stream's `BufferedWriter` lock held:
//! the handler's flush raises `RuntimeError: reentrant call inside
//! <_io.BufferedWriter name='<stdout>'>`.
//!
//! Cross-checks the topology: a program run with `python -u` or
//! `PYTHONUNBUFFERED` has unbuffered streams (no lock to re-enter) and
//! nothing fires.

use crate::diagnostic::Diagnostic;
use crate::pysrc::program::{At, Ctx};
use crate::pysrc::syntax::{Call, Event, FnId};
use std::collections::HashSet;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Logging methods that emit a record (on a `logging.` function or a
/// logger object).
const LEVELS: &[&str] = &[
    "debug",
    "info",
    "warning",
    "warn",
    "error",
    "exception",
    "critical",
    "fatal",
];

/// How many helper functions are followed from a handler, or from a call
/// made in a loop of the main flow.
const MAX_HELPERS: usize = 64;

/// Where a call writes, and whether it reaches the stream's
/// `BufferedWriter` at once (a flush, or a line-buffered stream).
fn output(cx: &Ctx, file: usize, call: &Call, logging: Stream) -> Option<(Stream, bool)> {
    let canon = cx.canon(file, call);
    if canon == "print" {
        let stream = match call.keyword("file") {
            None => Stream::Stdout,
            Some(a) if a.text.ends_with("stdout") => Stream::Stdout,
            Some(a) if a.text.ends_with("stderr") => Stream::Stderr,
            Some(_) => return None,
        };
        let flush = call.keyword("flush").is_some_and(|a| a.text == "True");
        return Some((stream, flush || stream == Stream::Stderr));
    }
    for (prefix, stream) in [
        ("sys.stdout.", Stream::Stdout),
        ("sys.stderr.", Stream::Stderr),
    ] {
        if let Some(rest) = canon.strip_prefix(prefix) {
            return match rest {
                "write" | "writelines" => Some((stream, stream == Stream::Stderr)),
                "flush" | "buffer.write" | "buffer.flush" | "buffer.writelines" => {
                    Some((stream, true))
                }
                _ => None,
            };
        }
    }
    let method = call.method();
    if !(LEVELS.contains(&method) || (method == "log" && canon == "logging.log")) {
        return None;
    }
    if canon.starts_with("logging.") {
        return Some((logging, true));
    }
    // `log.info(…)`, `self.logger.warning(…)`: a receiver named like a logger.
    let receiver = call.callee.rsplit_once('.')?.0;
    let last = receiver.rsplit('.').next().unwrap_or(receiver);
    last.to_ascii_lowercase()
        .contains("log")
        .then_some((logging, true))
}

/// The stream `logging` writes: stderr, unless the program configures a
/// handler on stdout.
fn logging_stream(cx: &Ctx) -> Stream {
    let to_stdout = cx.all_calls().any(|(f, _, c)| {
        let canon = cx.canon(f, c);
        (canon == "logging.basicConfig" || canon.ends_with("StreamHandler"))
            && c.args.iter().any(|a| a.text.ends_with("stdout"))
    });
    if to_stdout {
        Stream::Stdout
    } else {
        Stream::Stderr
    }
}

/// A handler registered with `signal.signal`: its signal name, the
/// registration and the function.
struct Handler {
    signame: String,
    name: String,
    reg: At,
    start: (usize, FnId),
}

fn handlers(cx: &Ctx) -> Vec<Handler> {
    let mut out = Vec::new();
    for (file, _, reg) in cx.all_calls() {
        if cx.canon(file, reg) != "signal.signal" {
            continue;
        }
        let Some(h) = reg.positional(1) else { continue };
        let start = match (h.lambda, &h.name) {
            (Some(l), _) => (file, l),
            (None, Some(n)) => match cx.resolve_name(file, n) {
                Some(t) => t,
                None => continue,
            },
            _ => continue,
        };
        out.push(Handler {
            signame: reg.positional(0).map_or("?".to_string(), |a| {
                a.text.rsplit('.').next().unwrap_or("?").to_string()
            }),
            name: h.name.clone().unwrap_or_else(|| "<lambda>".into()),
            reg: At {
                file,
                span: reg.span,
            },
            start,
        });
    }
    out
}

/// The first place the main flow writes each stream repeatedly: a write in
/// a loop, or in a function called from a loop, outside the functions only
/// handlers reach.
fn main_writes(
    cx: &Ctx,
    handler_only: &HashSet<(usize, FnId)>,
    logging: Stream,
) -> [Option<At>; 2] {
    let mut files: Vec<usize> = cx.prog.modules.values().copied().collect();
    files.sort_unstable();
    files.dedup();
    // Each body (module level or function) and its calls, in file order.
    let mut looped: Vec<(usize, FnId)> = Vec::new();
    let mut found = [None, None];
    let mut note = |stream: Stream, at: At| {
        let slot = &mut found[stream as usize];
        if slot.map_or(true, |old: At| at < old) {
            *slot = Some(at);
        }
    };
    for &file in &files {
        let m = &cx.files[file].module;
        let owners = std::iter::once(None).chain((0..m.funcs.len()).map(Some));
        for owner in owners {
            if owner.is_some_and(|f| handler_only.contains(&(file, f))) {
                continue;
            }
            for e in m.events(owner) {
                let Event::Call(c) = *e else { continue };
                let call = cx.call(file, c);
                if !call.in_loop {
                    continue;
                }
                if let Some((stream, _)) = output(cx, file, call, logging) {
                    note(
                        stream,
                        At {
                            file,
                            span: call.span,
                        },
                    );
                }
                if let Some(t) = cx.resolve_name(file, &call.callee) {
                    looped.push(t);
                }
            }
        }
    }
    // Whatever a loop calls runs repeatedly too.
    let mut seen: HashSet<(usize, FnId)> = HashSet::new();
    for start in looped {
        for (hf, f) in cx.reachable(start, MAX_HELPERS) {
            if handler_only.contains(&(hf, f)) || !seen.insert((hf, f)) {
                continue;
            }
            for e in &cx.files[hf].module.funcs[f].events {
                let Event::Call(c) = *e else { continue };
                let call = cx.call(hf, c);
                if let Some((stream, _)) = output(cx, hf, call, logging) {
                    note(
                        stream,
                        At {
                            file: hf,
                            span: call.span,
                        },
                    );
                }
            }
        }
    }
    found
}

pub fn check(cx: &Ctx, out: &mut [Vec<Diagnostic>]) {
    if cx.prog.unbuffered.is_some() {
        return;
    }
    let handlers = handlers(cx);
    if handlers.is_empty() {
        return;
    }
    let logging = logging_stream(cx);
    let reach: Vec<Vec<(usize, FnId)>> = handlers
        .iter()
        .map(|h| cx.reachable(h.start, MAX_HELPERS))
        .collect();
    // Functions that only handlers reach: not called from the main flow.
    let mut called_elsewhere: HashSet<(usize, FnId)> = HashSet::new();
    for s in &cx.master {
        if let Event::Call(c) = s.event {
            let call = cx.call(s.file, c);
            if let Some(t) = cx.resolve_name(s.file, &call.callee) {
                called_elsewhere.insert(t);
            }
        }
    }
    let handler_only: HashSet<(usize, FnId)> = reach
        .iter()
        .flatten()
        .copied()
        .filter(|t| !called_elsewhere.contains(t))
        .collect();
    let writes = main_writes(cx, &handler_only, logging);
    let mut done: HashSet<At> = HashSet::new();
    for (h, reach) in handlers.iter().zip(&reach) {
        for &(hf, f) in reach {
            let func = &cx.files[hf].module.funcs[f];
            for e in &func.events {
                let Event::Call(c) = *e else { continue };
                let call = cx.call(hf, c);
                let Some((stream, true)) = output(cx, hf, call, logging) else {
                    continue;
                };
                let Some(main) = writes[stream as usize] else {
                    continue;
                };
                let at = At {
                    file: hf,
                    span: call.span,
                };
                if !done.insert(at) {
                    continue;
                }
                let via = if (hf, f) == h.start {
                    String::new()
                } else {
                    format!(" (through `{}`)", func.name)
                };
                let s = stream.name();
                out[hf].push(
                    Diagnostic::new(
                        "FR506",
                        format!(
                            "`{}(…)` flushes {s} inside the {} handler `{}`{via} while the main flow may be blocked writing {s}: RuntimeError: reentrant call inside <_io.BufferedWriter name='<{s}>'>",
                            call.callee, h.signame, h.name
                        ),
                        cx.label(hf, at, format!("writes {s} through its buffer, inside the handler")),
                    )
                    .with_related(cx.label(hf, h.reg, "registered as a signal handler here"))
                    .with_related(cx.label(hf, main, format!("the main flow keeps writing {s} here")))
                    .with_help(format!(
                        "make the handler only set a flag and write from the main flow, or write with `os.write({}, …)` (no buffer, no lock); or run the worker unbuffered: `python -u`, or `env {{ PYTHONUNBUFFERED = \"1\" }}` on the group",
                        if stream == Stream::Stdout { 1 } else { 2 }
                    )),
                );
            }
        }
    }
}
