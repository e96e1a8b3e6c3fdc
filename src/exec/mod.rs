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
//! Signal streams for INT, TERM, HUP, QUIT, USR1, USR2, TSTP and every
//! handled signal are registered before the first spawn (a reload that
//! adds a handler registers its signal then); whether SIGHUP is a terminal
//! hangup is decided before that, from the controlling terminal and the
//! inherited SIGHUP disposition. Every signal (stamped with its arrival
//! time), exit, timer and ready check becomes a message to the
//! [`supervisor`], one state machine (Running → Draining → Done) that owns
//! all state and decides signals through [`core::signals`]. [`core`] holds
//! the same rules as a pure, fully tested state machine.
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

pub mod core;
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

/// Whether the runner has a controlling terminal.
fn has_controlling_terminal() -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/tty")
        .is_ok()
}

/// Whether SIGHUP was ignored when the runner started (`nohup`).
fn sighup_ignored() -> bool {
    // SAFETY: a null new action only queries; `old` is a valid out-pointer.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// How long the closing events (`exit`) may take to reach stderr.
const EVENTS_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// The signals the runner always catches, plus every handled one.
/// SIGTSTP (Ctrl+Z) pauses the whole topology.
fn caught_signals(plan: &Plan) -> Vec<i32> {
    let mut sigs = vec![
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGTSTP,
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
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Before any handler replaces SIGHUP's disposition: is a hangup a
    // terminal closing (see `core::signals::hangup_drains`)?
    let hangup_drains = core::signals::hangup_drains(
        has_controlling_terminal(),
        sighup_ignored(),
        plan.topology
            .handler(crate::model::Sig::HUP)
            .is_some_and(|h| !h.default),
    );
    // Handlers first: before anything is spawned (and for PID 1, before a
    // signal could be dropped for lack of one).
    let caught = caught_signals(&plan);
    for &n in &caught {
        supervisor::catch(n, &tx);
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
    let sup = supervisor::Sup::new(plan, ctx, tx, caught, hangup_drains);
    let (code, ctx, readers, mut late) = sup.run(&mut rx).await;
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
            Some(msg) = rx.recv() => {
                // The signal streams still send here: every signal is
                // reported, and drain requests follow the same rules as
                // during the run (docs/events.md, "Ending").
                let supervisor::Msg::Signal(sig, at) = msg else { continue };
                events.emit(events::Event::Signal { signal: sig.name() });
                if late.on_signal(sig, at) == core::signals::Verdict::Escalate {
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
