//! FR502 patch-with-pool: a process gevent has patched (threads or queues)
//! builds a `multiprocessing.Pool`. The pool's handler threads become
//! greenlets: the master hangs reading the result pipe, or raises
//! `LoopExit` in `_handle_tasks`, with every start method.

use crate::diagnostic::Diagnostic;
use crate::pysrc::program::{At, Ctx};

pub fn check(cx: &Ctx, out: &mut [Vec<Diagnostic>]) {
    let Some(patch) = &cx.patch else { return };
    if !(patch.thread || patch.queue) {
        return;
    }
    for (file, _, call) in cx.all_calls() {
        if call.method() != "Pool" {
            continue;
        }
        let canon = cx.canon(file, call);
        let head = call.callee.split('.').next().unwrap_or("");
        let mp = canon.starts_with("multiprocessing.")
            || (call.callee.contains('.')
                && !cx.files[file].bindings.contains_key(head)
                && cx.files[file]
                    .bindings
                    .values()
                    .any(|v| v.starts_with("multiprocessing")));
        if !mp {
            continue;
        }
        let left = match (patch.thread, patch.queue) {
            (true, true) => "threads and queues",
            (true, false) => "threads",
            _ => "queues",
        };
        let d = Diagnostic::new(
            "FR502",
            format!(
                "`{}(…)` in a process whose {left} gevent has patched: the pool's result thread is a greenlet, so the master hangs or raises LoopExit",
                call.callee
            ),
            cx.label(file, At { file, span: call.span }, "a process pool in a patched process"),
        )
        .with_related(cx.patch_label(file, patch))
        .with_help("patch with `monkey.patch_all(thread=False, queue=False)` in this process, or patch only inside the pool's children (an `initializer`), or let flowrun run the processes (`processes N`) instead of a Pool");
        out[file].push(d);
    }
}
