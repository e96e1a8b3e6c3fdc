//! FR504 fork-waitpid: `os.fork()` and `os.waitpid()` in a process gevent
//! patched `os` in: a child that exits before the watcher sees it is never
//! reported by the patched `waitpid`, which hangs forever (a `WNOHANG`
//! poll loop spins forever the same way).

use crate::diagnostic::Diagnostic;
use crate::pysrc::program::{At, Ctx};

pub fn check(cx: &Ctx, out: &mut [Vec<Diagnostic>]) {
    let Some(patch) = &cx.patch else { return };
    if !patch.os {
        return;
    }
    let mut fork = None;
    let mut waits = Vec::new();
    for (file, _, call) in cx.all_calls() {
        let canon = cx.canon(file, call);
        match canon.as_str() {
            "os.fork" | "gevent.os.fork" | "gevent.fork" => {
                fork.get_or_insert(At {
                    file,
                    span: call.span,
                });
            }
            // With or without WNOHANG: a poll loop never sees the child either.
            "os.waitpid" => waits.push((file, call)),
            _ => {}
        }
    }
    let Some(fork) = fork else { return };
    for (file, call) in waits {
        let d = Diagnostic::new(
            "FR504",
            "`os.waitpid(…)` waits for a forked child with gevent's patched `os`: a child that exits at once is never seen, and this call hangs forever",
            cx.label(file, At { file, span: call.span }, "hangs if the child has already exited"),
        )
        .with_related(cx.label(file, fork, "the child is forked here"))
        .with_related(cx.patch_label(file, patch))
        .with_help("start the child with `subprocess` or `multiprocessing` (gevent-aware), or patch with `patch_all(os=False)`, or let flowrun start the processes (`processes N`)");
        out[file].push(d);
    }
}
