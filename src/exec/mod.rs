//! `flowrun up` — executes a [`Plan`] and keeps the runtime guarantees of
//! SPEC.md ("`flowrun up`: runtime guarantees"); the output, event and exit
//! status contract is docs/events.md.
//!
//! # Theory of operation
//! [`up`] runs before any thread exists. It raises the soft
//! `RLIMIT_NOFILE` (children get the inherited one back), makes the runner
//! a child subreaper, and forks the [`guard`] — a tiny process that SIGKILLs
//! every registered process group when the runner goes away, even by
//! SIGKILL. Only then does it build a *current-thread* tokio runtime: one
//! thread runs everything, so every spawn ([`spawn`]) happens on a thread
//! that lives as long as the runner (`PR_SET_PDEATHSIG` is safe) and the
//! reaper (`waitpid(-1)` on SIGCHLD, [`reap`]) never races a spawn. Two
//! plain threads own stdout ([`logs`]) and stderr ([`events`]). Nothing
//! polls while idle: the only periodic timer runs while a process group
//! whose leader has exited is waited for (every 20 ms, bounded by its
//! ladder). Large groups start in batches of 128 spawns, with the signal
//! and exit drivers polled in between.
//!
//! Signal streams for INT, TERM, HUP, QUIT, USR1, USR2 and every handled
//! signal are registered before the first spawn. Every signal, exit, timer
//! and ready check becomes a message to the [`supervisor`], one state
//! machine (Running → Draining → Done) that owns all state.
//!
//! Once the supervisor returns (every process group is gone), the output
//! still in the pipes and the writer is flushed for at most
//! [`logs::FLUSH_LIMIT`]; the signal streams stay registered and their
//! signals are reported and counted as drain requests until `up` returns
//! (docs/events.md, "Ending"). SIGXFSZ is ignored, so a full output file
//! is a write error, not the runner's death.
//!
//! Process groups are the containment unit (cgroups are not used; this
//! machine had no writable cgroup v2 hierarchy to test them on): a
//! grandchild that calls `setsid` escapes its group; if its parent dies it
//! is adopted by the runner (subreaper) and killed at exit, but it is not
//! caught if the runner itself is SIGKILLed.

pub mod events;
pub mod guard;
pub mod logs;
pub mod policy;
pub mod ready;
pub mod reap;
pub mod spawn;
pub mod supervisor;

use crate::plan::Plan;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `flowrun | api.0 started pid 1234` lines on stderr.
    #[default]
    Human,
    /// One JSON object per lifecycle event on stderr (docs/events.md).
    Json,
}

#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The topology file as given on the command line (for `reload`).
    pub file: PathBuf,
    /// The file's directory: `cwd` settings are relative to it.
    pub base_dir: PathBuf,
    pub scale: crate::plan::Scale,
    pub log_format: LogFormat,
    /// Prefix relayed output lines with a timestamp.
    pub timestamps: bool,
    /// Colour the `group.index | ` prefixes (tty and no `NO_COLOR`).
    pub color: bool,
}

/// Raise the soft `RLIMIT_NOFILE` to min(hard, 65536); returns the
/// inherited limit.
fn raise_nofile() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 1024,
        rlim_max: 1024,
    };
    // SAFETY: valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return lim;
    }
    let inherited = lim;
    let want = lim.rlim_max.min(65536);
    if want > lim.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: valid pointer; failure leaves the limit unchanged.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    }
    inherited
}

/// Drain signals within this window of the first one are one request (a
/// `timeout`, a terminal and a script may each deliver the same Ctrl+C);
/// the supervisor applies the same window (docs/events.md).
const BURST: std::time::Duration = std::time::Duration::from_millis(100);

/// What a drain signal is, given the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Late {
    /// The first request of the run.
    First,
    /// Within [`BURST`] of the request it belongs to.
    SameBurst,
    /// A later request: escalates.
    Repeat,
}

/// The drain signals of the run so far, as requests (bursts).
#[derive(Default)]
struct DrainRequests {
    /// When the latest request began.
    last: Option<std::time::Instant>,
}

impl DrainRequests {
    /// Count a drain signal arriving at `now`.
    fn late(&mut self, now: std::time::Instant) -> Late {
        match self.last {
            None => {
                self.last = Some(now);
                Late::First
            }
            Some(t) if now.saturating_duration_since(t) < BURST => Late::SameBurst,
            Some(_) => {
                self.last = Some(now);
                Late::Repeat
            }
        }
    }
}

/// How long the closing events (`exit`) may take to reach stderr.
const EVENTS_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// The signals whose handler drains the whole topology (or kills it): once
/// the topology is down, one of these ends the output flush at once.
fn drain_signals(plan: &Plan) -> Vec<crate::model::Sig> {
    use crate::model::Step;
    plan.topology
        .handlers
        .iter()
        .filter(|h| {
            h.steps.iter().any(|s| {
                matches!(&s.node, Step::Drain { groups } if groups.is_empty())
                    || matches!(s.node, Step::Kill)
            })
        })
        .map(|h| h.signal.node)
        .collect()
}

/// The signals the runner always catches, plus every handled one.
fn caught_signals(plan: &Plan) -> Vec<i32> {
    let mut sigs = vec![
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ];
    for h in &plan.topology.handlers {
        let n = h.signal.node.number();
        if !sigs.contains(&n) && n != libc::SIGKILL && n != libc::SIGSTOP && n != libc::SIGCHLD {
            sigs.push(n);
        }
    }
    sigs
}

/// Run the plan until it finishes or is drained; returns the exit status.
/// Must be called before any tokio runtime or thread exists (it forks).
pub fn up(plan: Plan, opts: UpOptions) -> i32 {
    let start = Instant::now();
    let nofile = raise_nofile();
    // A write past `ulimit -f` must fail with EFBIG (reported, relaying
    // stops) instead of killing the runner; children get the default back
    // (spawn resets every disposition).
    // SAFETY: setting a signal to SIG_IGN runs no code in signal context.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGXFSZ,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    let guard = guard::Guard::fork();
    let guard_pid = guard.as_ref().map(|g| g.pid());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flowrun: cannot start the runtime: {e}");
            if let Some(g) = guard {
                g.finish();
            }
            return 1;
        }
    };
    let (code, guard) = rt.block_on(run(plan, opts, guard, nofile, start));
    drop(rt);
    if let Some(g) = guard {
        g.finish();
    }
    let _ = guard_pid;
    code
}

async fn run(
    plan: Plan,
    opts: UpOptions,
    guard: Option<guard::Guard>,
    nofile: libc::rlimit,
    start: Instant,
) -> (i32, Option<guard::Guard>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // Signals that arrive once the supervisor has returned (the output is
    // still being flushed) come here instead.
    let (late_tx, mut late_rx) = tokio::sync::mpsc::unbounded_channel();
    let drains = Arc::new(drain_signals(&plan));
    let escalate = plan.topology.escalate == crate::ast::Escalate::OnRepeat;
    let drain_requests = Arc::new(Mutex::new(DrainRequests::default()));
    // Handlers first: before anything is spawned (and for PID 1, before a
    // signal could be dropped for lack of one).
    for n in caught_signals(&plan) {
        let Ok(mut stream) = signal(SignalKind::from_raw(n)) else {
            continue;
        };
        let Ok(sig) = nix::sys::signal::Signal::try_from(n) else {
            continue;
        };
        let tx = tx.clone();
        let late_tx = late_tx.clone();
        let (drains, requests) = (drains.clone(), drain_requests.clone());
        tokio::spawn(async move {
            // Until `up` returns: the handler stays installed and every
            // signal is handled by someone.
            while stream.recv().await.is_some() {
                let sig = crate::model::Sig(sig);
                if tx.send(supervisor::Msg::Signal(sig)).is_ok() {
                    if drains.contains(&sig) {
                        let mut r = requests.lock().unwrap_or_else(|e| e.into_inner());
                        r.late(std::time::Instant::now());
                    }
                } else {
                    let _ = late_tx.send(sig);
                }
            }
        });
    }
    let waiters: reap::Waiters = Arc::new(Mutex::new(Default::default()));
    let reaper = match signal(SignalKind::child()) {
        Ok(mut chld) => {
            // The supervisor reaps when it handles `Child`, so a leader is
            // never reaped while the supervisor still thinks it runs (its
            // pid cannot be recycled before its state says so).
            let tx = tx.clone();
            Some(tokio::spawn(async move {
                loop {
                    if tx.send(supervisor::Msg::Child).is_err() {
                        break;
                    }
                    if chld.recv().await.is_none() {
                        break;
                    }
                }
            }))
        }
        Err(e) => {
            eprintln!("flowrun: cannot watch SIGCHLD: {e}");
            None
        }
    };
    let (events, events_thread) = events::EventSink::start(opts.log_format, start);
    // The writer reports its first failure through a sink that is taken
    // back before the end (a writer stuck in write(2) must not keep the
    // event thread alive).
    let writer_events = Arc::new(Mutex::new(Some(events.clone())));
    let writer = {
        let slot = writer_events.clone();
        logs::start_writer(move |e| {
            if let Some(sink) = slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                sink.emit(events::Event::OutputStopped {
                    reason: format!("cannot write to stdout: {e}"),
                });
                sink.flush();
            }
        })
    };
    let guard_pid = guard.as_ref().map(|g| g.pid());
    let ctx = supervisor::Ctx {
        opts,
        events: events.clone(),
        out: writer.tx,
        guard,
        inherited: spawn::Inherited {
            nofile,
            runner_pid: std::process::id() as i32,
        },
        waiters,
    };
    let sup = supervisor::Sup::new(plan, ctx, tx);
    let (code, ctx, readers) = sup.run(rx).await;
    // Adopted orphans that escaped their process group (setsid): nothing
    // of the topology may outlive `up`.
    let except: Vec<i32> = guard_pid.into_iter().collect();
    for _ in 0..5 {
        let left = reap::remaining_children(&except);
        if left.is_empty() {
            break;
        }
        for pid in left {
            // SAFETY: our own child, not yet reaped (it is in /proc with
            // our pid as parent), so the pid cannot be reused.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                let mut st = 0;
                libc::waitpid(pid, &mut st, 0);
            }
        }
    }
    // Every process group is gone; flush what the pipes still hold (until
    // EOF, or a quiet period: see logs.rs) and what the writer still has,
    // for at most FLUSH_LIMIT, handling signals meanwhile.
    let supervisor::Ctx {
        out,
        guard,
        events: sup_events,
        ..
    } = ctx;
    drop(sup_events);
    drop(out);
    let deadline = tokio::time::Instant::now() + logs::FLUSH_LIMIT;
    let aborts: Vec<_> = readers.iter().map(|r| r.abort_handle()).collect();
    let flushed = async move {
        for r in readers {
            let _ = r.await;
        }
        let _ = writer.done.await;
    };
    tokio::pin!(flushed);
    let mut code = code;
    loop {
        tokio::select! {
            _ = &mut flushed => break,
            _ = tokio::time::sleep_until(deadline) => {
                events.emit(events::Event::OutputStopped {
                    reason: format!(
                        "not flushed within {} of the end: stdout is not being read",
                        crate::check::fmt_duration(logs::FLUSH_LIMIT)
                    ),
                });
                break;
            }
            Some(sig) = late_rx.recv() => {
                events.emit(events::Event::Signal { signal: sig.name() });
                let now = std::time::Instant::now();
                let repeated = drains.contains(&sig)
                    && drain_requests.lock().unwrap_or_else(|e| e.into_inner()).late(now)
                        == Late::Repeat;
                if escalate && repeated {
                    events.emit(events::Event::Escalating { signal: sig.name() });
                    code = if code == 0 { 1 } else { code };
                    break;
                }
                events.flush();
            }
        }
    }
    for a in aborts {
        a.abort();
    }
    if let Some(r) = reaper {
        r.abort();
    }
    drop(
        writer_events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(),
    );
    events.emit(events::Event::Exit { code });
    drop(events);
    // The closing events: a stderr nobody reads gets a short grace.
    let grace = std::time::Instant::now() + EVENTS_GRACE;
    while !events_thread.is_finished() && std::time::Instant::now() < grace {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    if events_thread.is_finished() {
        let _ = events_thread.join();
    }
    (code, guard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn drain_signals_count_as_requests_in_bursts() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut r = DrainRequests::default();
        assert_eq!(r.late(at(0)), Late::First);
        assert_eq!(
            r.late(at(1)),
            Late::SameBurst,
            "a timeout's double delivery"
        );
        assert_eq!(r.late(at(99)), Late::SameBurst);
        assert_eq!(r.late(at(300)), Late::Repeat, "a person's second Ctrl+C");
        assert_eq!(r.late(at(350)), Late::SameBurst, "the window restarts");
        assert_eq!(r.late(at(401)), Late::Repeat);
    }
}
