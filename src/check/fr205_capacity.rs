//! FR205 capacity: the topology does not fit the host (`lint --host` only).
//!
//! The model, each part a separate finding:
//! 1. **Processes** — Σ processes, plus the runner itself, must not exceed
//!    the soft `RLIMIT_NPROC` (a per-user limit: other processes of the
//!    same user count too, so this is the least the topology needs).
//! 2. **Runner descriptors** — the runner holds about
//!    [`FDS_PER_PROCESS`] descriptors per child (stdout and stderr pipes,
//!    a pidfd, one spare) plus [`RUNNER_BASE_FDS`] of its own; it raises its
//!    soft `RLIMIT_NOFILE` to `min(hard, 65536)` and that must suffice.
//! 3. **Descriptors per process** — each coroutine holds at least one
//!    descriptor (a socket, a file), and a child inherits the soft
//!    `RLIMIT_NOFILE`: `coroutines + CHILD_BASE_FDS` must fit it.
//! 4. **CPU** — a group with more than [`PROCESSES_PER_CPU`] × CPUs
//!    processes oversubscribes the machine: the processes compete for CPU
//!    time and slow each other down (more concurrency belongs in
//!    `coroutines`, not in processes).

use super::Ctx;
use crate::ast::SettingKind;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::GroupId;
use crate::source::Span;

pub const FDS_PER_PROCESS: u64 = 4;
pub const RUNNER_BASE_FDS: u64 = 64;
pub const CHILD_BASE_FDS: u64 = 16;
pub const PROCESSES_PER_CPU: u64 = 4;
/// The runner never raises its own descriptor limit beyond this.
pub const RUNNER_NOFILE_CAP: u64 = 65536;

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    let Some(host) = ctx.host else {
        return;
    };
    let groups = &ctx.model.groups;
    let total: u64 = groups.iter().map(|g| u64::from(g.processes)).sum();
    // The largest groups explain a topology-wide total best.
    let mut biggest: Vec<GroupId> = (0..groups.len()).collect();
    let k = biggest.len().min(3);
    if k > 0 {
        biggest.select_nth_unstable_by_key(k - 1, |&g| (std::cmp::Reverse(groups[g].processes), g));
        biggest.truncate(k);
        biggest.sort_unstable_by_key(|&g| (std::cmp::Reverse(groups[g].processes), g));
    }
    let related = |mut d: Diagnostic| {
        for &g in &biggest {
            d = d.with_related(Label::new(
                processes_span(ctx, g),
                format!("`{}`: {} processes", ctx.name(g), groups[g].processes),
            ));
        }
        d
    };

    if total.saturating_add(1) > host.nproc_soft {
        out.push(related(
            Diagnostic::new(
                "FR205",
                format!(
                    "the topology runs {total} processes (plus the runner), more than this host's RLIMIT_NPROC of {}",
                    host.nproc_soft
                ),
                Label::new(ctx.model.name.span, format!("{total} processes in all")),
            )
            .with_help("lower `processes`, or raise `ulimit -u` for the user that runs flowrun"),
        ));
    }

    let runner_limit = host.nofile_hard.min(RUNNER_NOFILE_CAP);
    let runner_fds = total
        .saturating_mul(FDS_PER_PROCESS)
        .saturating_add(RUNNER_BASE_FDS);
    if runner_fds > runner_limit {
        out.push(related(
            Diagnostic::new(
                "FR205",
                format!(
                    "supervising {total} processes needs about {runner_fds} descriptors in the runner, more than its limit of {runner_limit}"
                ),
                Label::new(ctx.model.name.span, format!("{total} processes × {FDS_PER_PROCESS} descriptors")),
            )
            .with_help("lower `processes`, or raise the hard `ulimit -n` (the runner raises its soft limit up to min(hard, 65536))"),
        ));
    }

    let cpu_cap = u64::from(host.cpus.max(1)) * PROCESSES_PER_CPU;
    for (gi, g) in groups.iter().enumerate() {
        let need = u64::from(g.coroutines).saturating_add(CHILD_BASE_FDS);
        if need > host.nofile_soft {
            let span = ctx
                .setting(gi, |s| {
                    matches!(s.kind, SettingKind::Coroutines(_)).then_some(s.span)
                })
                .unwrap_or_else(|| ctx.name_span(gi));
            out.push(
                Diagnostic::new(
                    "FR205",
                    format!(
                        "each process of `{}` runs {} coroutines, but a child's RLIMIT_NOFILE is {}",
                        ctx.name(gi),
                        g.coroutines,
                        host.nofile_soft
                    ),
                    Label::new(span, format!("needs about {need} descriptors per process")),
                )
                .with_help(format!(
                    "raise the soft `ulimit -n` to at least {need} before starting flowrun, or spread the load over more processes"
                )),
            );
        }
        if u64::from(g.processes) > cpu_cap {
            out.push(
                Diagnostic::new(
                    "FR205",
                    format!(
                        "`{}` runs {} processes on {} CPU(s) (more than {PROCESSES_PER_CPU} per CPU)",
                        ctx.name(gi),
                        g.processes,
                        host.cpus
                    ),
                    Label::new(processes_span(ctx, gi), "oversubscribes the CPUs"),
                )
                .with_help(format!(
                    "use at most `processes {cpu_cap}` and put the extra concurrency in `coroutines`"
                )),
            );
        }
    }
}

fn processes_span(ctx: &Ctx, g: GroupId) -> Span {
    ctx.setting(g, |s| {
        matches!(s.kind, SettingKind::Processes(_)).then_some(s.span)
    })
    .unwrap_or_else(|| ctx.name_span(g))
}
