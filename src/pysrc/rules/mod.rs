//! The worker-source rules (FR501 onwards), one file each. Every rule has
//! one entry point, `pub fn check(cx: &Ctx, out: &mut [Vec<Diagnostic>])`,
//! and pushes a finding into the list of the `.py` file its primary span is
//! in (`out[file]`). Explanations: `docs/rules/CODE.md`.

mod fr501_blocking_in_handler;
mod fr502_patch_with_pool;
mod fr503_patch_after_threading;
mod fr504_fork_waitpid;
mod fr505_child_signalled_twice;
mod fr506_flush_in_handler;

use super::program::Ctx;
use crate::diagnostic::Diagnostic;

/// A rule's entry point.
type Rule = fn(&Ctx, &mut [Vec<Diagnostic>]);

pub fn run(cx: &Ctx, out: &mut [Vec<Diagnostic>]) {
    let rules: &[Rule] = &[
        fr501_blocking_in_handler::check,
        fr502_patch_with_pool::check,
        fr503_patch_after_threading::check,
        fr504_fork_waitpid::check,
        fr505_child_signalled_twice::check,
        fr506_flush_in_handler::check,
    ];
    for rule in rules {
        rule(cx, out);
    }
}
