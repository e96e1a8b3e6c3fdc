//! `flowrun up` — executes a [`Plan`] and keeps the runtime guarantees of
//! the README ("Running a topology"); the output, event and exit
//! status contract is docs/events.md.
//!
//! # Theory of operation
//! [`up`] runs before any thread exists. It raises the soft
//! `RLIMIT_NOFILE` (children get the inherited one back), makes the runner
//! a child subreaper, kills what a dead run of the same file left
//! ([`runrecord`]), sets up containment ([`cgroup`]) and starts the
//! [`guard`] — a tiny process that kills the run when the runner goes
//! away, even by SIGKILL. Only then does it build a *current-thread* tokio runtime: one
//! thread runs everything, so every spawn ([`spawn`]) happens on a thread
//! that lives as long as the runner (`PR_SET_PDEATHSIG` is safe) and the
//! reaper (`waitpid(-1)` on SIGCHLD, [`reap`]) never races a spawn. Two
//! plain threads own stdout ([`logs`]) and stderr ([`events`]). Nothing
//! polls while idle: a process's end is its leader's reap (a reaped
//! orphan's too: the runner is a subreaper); the only periodic timer runs
//! while a process group whose leader has exited is waited for (every
//! 20 ms, bounded by its ladder), and a group's cgroup that outlives its
//! last process's group is watched (inotify on its `cgroup.events`). Large groups start in batches of 128 spawns, with the signal
//! and exit drivers polled in between.
//!
//! An idle runner holds little: the heap freed by parsing, checking and
//! planning is given back to the system before the runtime starts and again
//! at its first idle moment (`malloc_trim`), and what each process costs
//! while it runs quietly is kept small (its relay task, [`logs`]; its
//! event lines, kept without spare capacity). All threads allocate from
//! one heap. The binary stays a position-independent executable, with its
//! relocations packed (`build.rs`). Linked at a fixed address instead, its
//! relocated data (about 320 KiB in the runner and again in the guard)
//! would stay shared, but the binary would lose address randomisation.
//!
//! Signal streams for INT, TERM, HUP, QUIT, USR1, USR2, TSTP and every
//! handled signal are registered before the first spawn (a reload that
//! adds a handler registers its signal then); whether SIGHUP is a terminal
//! hangup is decided before that, from the controlling terminal and the
//! inherited SIGHUP disposition. Every signal (stamped with its arrival
//! time), exit, timer and ready check becomes a message to the
//! [`driver`], the thin OS layer that runs the [`core`]: a pure state
//! machine (Running → Draining → Done) that owns every decision and
//! answers each message with effects (spawn, signal, kill, arm a timer,
//! release, emit an event, exit), which the driver carries out.
//!
//! Once the core is done (every process group is gone), the output
//! still in the pipes and the writer is flushed for at most
//! [`logs::FLUSH_LIMIT`]; the signal streams stay registered and their
//! signals are reported and counted as drain requests until `up` returns
//! (docs/events.md, "Ending"). SIGXFSZ is ignored, so a full output file
//! is a write error, not the runner's death.
//!
//! Containment (cgroup.rs): with a writable cgroup v2 hierarchy every
//! process is born in its group's cgroup inside the run's cgroup, so
//! nothing it starts escapes, whatever its session or process group; the
//! guard kills the run's cgroup when the runner dies; `up` returns only
//! when the run's cgroup is empty, and removes it. Without one
//! (`--containment process-group`, or none writable) process groups are
//! the unit: a grandchild that calls `setsid` or `setpgid` escapes its
//! group; if its parent dies it is adopted by the runner (subreaper) and
//! killed at exit, but it is not caught if the runner itself is SIGKILLed.
//! Either way a run record (runrecord.rs) lets the next `up` of the same
//! topology kill what a run whose runner and guard both died left.

pub mod cgroup;
pub mod core;
pub mod driver;
pub mod events;
pub mod guard;
pub mod logfile;
pub mod logs;
pub mod policy;
pub mod ready;
pub mod reap;
pub mod runrecord;
pub mod serve;
pub mod spawn;

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

/// How the running topology is planned again: `reload` (the file read
/// anew) and `flowrun scale` (the running text with new counts). Handed
/// to `up` by its caller, so the runner never compiles or renders a
/// file itself (`crate::replan` builds the real one).
pub struct Replan {
    pub reload: core::Reload,
    pub scale: core::Scale,
}

#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The topology file as given on the command line (for `reload`).
    pub file: PathBuf,
    /// The file's directory: `cwd` settings are relative to it.
    pub base_dir: PathBuf,
    pub log_format: LogFormat,
    /// Prefix relayed output lines with a timestamp.
    pub timestamps: bool,
    /// Colour the `group.index | ` prefixes (tty and no `NO_COLOR`).
    pub color: bool,
    /// `--containment`.
    pub containment: cgroup::Containment,
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
/// How long open control connections (a `logs -f`, an `events -f`) get to
/// receive what is left when `up` ends.
const CONTROL_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

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

/// What [`up`] prepared before the runtime: containment, the run record,
/// and what dead runs left.
struct Setup {
    cgroup: Option<cgroup::RunCgroup>,
    record: Option<runrecord::RunRecord>,
    leftovers: Vec<(i32, String)>,
}

/// Kill what dead runs of this topology left, choose the containment,
/// write the run record and start the guard. `Err`: a message and the
/// exit status.
fn prepare(opts: &UpOptions) -> Result<(Setup, Option<guard::Guard>), (String, i32)> {
    let key = runrecord::key(&opts.file);
    let dir = runrecord::private_dir();
    let leftovers = match &dir {
        Ok(d) => runrecord::reap_dead_runs(d, &key),
        Err(_) => Vec::new(),
    };
    let pid = std::process::id();
    let cgroup = match opts.containment {
        cgroup::Containment::ProcessGroup => None,
        mode => {
            let made = cgroup::find_parent(&format!("flowrun-probe-{pid}")).and_then(|parent| {
                cgroup::RunCgroup::create(&parent, &format!("flowrun-{key}-{pid}"))
                    .map_err(|e| format!("cannot create the run's cgroup: {e}"))
            });
            match (made, mode) {
                (Ok(c), _) => Some(c),
                (Err(why), cgroup::Containment::Cgroup) => {
                    return Err((format!("--containment cgroup: {why}"), 2));
                }
                (Err(_), _) => None,
            }
        }
    };
    let (record, log) = match &dir {
        Ok(d) => {
            match runrecord::RunRecord::create(d, &key, cgroup.as_ref().map(|c| c.path.as_path())) {
                Ok((r, log)) => (Some(r), Some(log)),
                Err(_) => (None, None),
            }
        }
        Err(_) => (None, None),
    };
    if let Some(r) = &record {
        ready::set_run_dir(r.run_dir.clone());
    }
    let log = if cgroup.is_some() { None } else { log };
    let guard = guard::Guard::start(cgroup.as_ref().map(|c| c.path.clone()), log);
    Ok((
        Setup {
            cgroup,
            record,
            leftovers,
        },
        guard,
    ))
}

/// Return the free memory at the top of the heap and the free pages inside
/// it to the system (glibc's `malloc_trim`; elsewhere a no-op).
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory malloc holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Let every thread of the runner allocate from the one heap (glibc gives
/// each new thread an arena of its own: about 80 KiB each for the spawn
/// lanes, which allocate only a little and rarely
/// at the same time). Elsewhere a no-op.
fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable; called before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Let SIGCHLD through on this thread (`true`) or hold it (`false`).
///
/// SIGCHLD is held on every thread of the runner (they are made after
/// [`up`] holds it on the supervisor's thread, and inherit that), and let
/// through on the supervisor's thread only inside the runtime's park
/// hooks: while it waits for work, and when it polls its drivers between
/// the batches of a long start (a yield parks with no timeout). A stop
/// of N processes makes up to N of them: held, they coalesce into one
/// pending signal, delivered when the supervisor's thread next waits,
/// instead of interrupting it, or waking another thread to run the
/// handler, once per exit. Children get an empty mask (spawn.rs).
pub(crate) fn let_sigchld_through(through: bool) {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    let how = if through {
        SigmaskHow::SIG_UNBLOCK
    } else {
        SigmaskHow::SIG_BLOCK
    };
    let _ = pthread_sigmask(how, Some(&set), None);
}

/// Run the plan until it finishes or is drained; returns the exit status.
/// Must be called before any tokio runtime or thread exists.
pub fn up(plan: Plan, replan: Replan, opts: UpOptions) -> i32 {
    let start = Instant::now();
    one_arena();
    // Before any thread exists, so that every one inherits it.
    let_sigchld_through(false);
    // Before anything else is opened: the lowest free descriptors.
    spawn::reserve_low_fds();
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
    if let Err(msg) = logfile::prepare(&plan, &opts.base_dir) {
        eprintln!("flowrun: {msg}");
        return 1;
    }
    // The control socket first: a second `up` of a file that is running
    // is refused here, before it could take the live run's processes for
    // leftovers of a dead one.
    let claimed = match serve::claim(&opts.file) {
        Ok(serve::Claim::Served(c)) => Some(c),
        Ok(serve::Claim::Without(msg)) => {
            eprintln!("flowrun: no control socket for this run ({msg}); `flowrun ps` and the other commands cannot reach it");
            None
        }
        Err(msg) => {
            eprintln!("flowrun: {msg}");
            return 1;
        }
    };
    let (setup, guard) = match prepare(&opts) {
        Ok(s) => s,
        Err((msg, code)) => {
            eprintln!("flowrun: {msg}");
            return code;
        }
    };
    // Parsing, checking and planning are over: glibc keeps what they
    // freed unless asked to give it back.
    trim_heap();
    // And once more when the runtime first has nothing to do: the first
    // spawns' temporaries are freed too (one atomic load per park after).
    let first_park = std::sync::atomic::AtomicBool::new(true);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || {
            if first_park.swap(false, std::sync::atomic::Ordering::Relaxed) {
                trim_heap();
            }
            // A pending SIGCHLD runs its handler now, on this thread, and
            // the wait below sees it.
            let_sigchld_through(true);
        })
        .on_thread_unpark(|| let_sigchld_through(false))
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
    let (code, guard) = rt.block_on(run(
        plan, replan, opts, guard, setup, nofile, start, claimed,
    ));
    drop(rt);
    if let Some(g) = guard {
        g.finish();
    }
    code
}

/// Wake the driver (`CgroupEvents`) whenever a watched `cgroup.events`
/// changes.
fn watch_cgroups(ino: std::os::fd::OwnedFd, tx: tokio::sync::mpsc::UnboundedSender<driver::Msg>) {
    use std::os::fd::AsRawFd;
    tokio::spawn(async move {
        // SAFETY: the fd is owned by the AsyncFd for its whole life.
        let Ok(afd) = (unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(ino, tokio::io::Interest::READABLE)
        }) else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            let Ok(mut ready) = afd.readable().await else {
                return;
            };
            // Drain every queued event (the descriptor is non-blocking):
            // one wake-up covers them all.
            loop {
                // SAFETY: reading into a local buffer from an fd we own.
                let n = unsafe {
                    libc::read(
                        afd.get_ref().as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                    )
                };
                if n <= 0 {
                    break;
                }
            }
            ready.clear_ready();
            if tx.send(driver::Msg::CgroupEvents).is_err() {
                return;
            }
        }
    });
}

#[allow(clippy::too_many_arguments)]
async fn run(
    plan: Plan,
    replan: Replan,
    opts: UpOptions,
    guard: Option<guard::Guard>,
    setup: Setup,
    nofile: libc::rlimit,
    start: Instant,
    claimed: Option<crate::control::server::Claimed>,
) -> (i32, Option<guard::Guard>) {
    let Setup {
        cgroup: run_cgroup,
        record,
        leftovers,
    } = setup;
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
        driver::catch(n, &tx);
    }
    let waiters: reap::Waiters = Arc::new(Mutex::new(Default::default()));
    let reaper = match signal(SignalKind::child()) {
        Ok(mut chld) => {
            // The driver reaps when it handles `Child`, so a leader is
            // never reaped while the core still thinks it runs (its
            // pid cannot be recycled before its state says so).
            let tx = tx.clone();
            Some(tokio::spawn(async move {
                loop {
                    if tx.send(driver::Msg::Child).is_err() {
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
    let relays = logs::Relays::start();
    let (events, events_thread) = events::EventSink::start(opts.log_format, start);
    for (pid, command) in leftovers {
        events.emit(events::Event::Leftover { pid, command });
    }
    if let Some(g) = &guard {
        g.watch(&tx);
    }
    // The control plane (docs/control.md): calls become driver messages,
    // events and output fill its rings.
    let (server, logs_ring) = match claimed.map(|c| serve::start(c, &plan)) {
        None => (None, None),
        Some(started) => match started {
            Ok(ctl) => {
                events.feed_to(ctl.link.events.clone());
                // The rings (every kept output line and event) are never
                // freed: they live until the process exits, which returns
                // their memory at once instead of line by line at the end
                // of a stop.
                std::mem::forget((ctl.link.events.clone(), ctl.link.logs.clone()));
                let mut calls = ctl.calls;
                let to_driver = tx.clone();
                tokio::spawn(async move {
                    while let Some(m) = calls.recv().await {
                        if to_driver.send(driver::Msg::Control(m)).is_err() {
                            break;
                        }
                    }
                });
                (Some(ctl.server), Some(ctl.link.logs))
            }
            Err(msg) => {
                eprintln!("flowrun: the control plane is not available: {msg}");
                (None, None)
            }
        },
    };
    if let Some(ino) = run_cgroup.as_ref().and_then(|c| c.inotify_fd()) {
        watch_cgroups(ino, tx.clone());
    }
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
    let ctx = driver::Ctx {
        opts,
        events: events.clone(),
        out: writer.tx,
        guard,
        inherited: spawn::Inherited {
            nofile,
            runner_pid: std::process::id() as i32,
        },
        waiters,
        cgroup: run_cgroup,
        logs: logs_ring,
        relays,
    };
    let names: Vec<String> = plan
        .topology
        .groups
        .iter()
        .map(|g| g.name.node.clone())
        .collect();
    let driver = driver::Driver::new(plan, replan, ctx, tx, caught, hangup_drains);
    let (code, ctx, mut late) = driver.run(&mut rx).await;
    // Nothing of the topology may outlive `up`. With a cgroup: kill the
    // run's cgroup until it is empty (reaping adopted orphans meanwhile).
    // Then, and without one: our remaining children (adopted orphans that
    // escaped their process group), round after round, until none is
    // left (killing one may orphan its children onto us).
    let mut ctx = ctx;
    let cpu = ctx.cgroup.as_ref().map(|c| {
        let waiters = ctx.waiters.clone();
        c.sweep(|| {
            reap::reap_all(&waiters);
        });
        c.group_cpu_ms()
    });
    let except: Vec<i32> = ctx.guard.as_ref().map(|g| g.pid()).into_iter().collect();
    loop {
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
            // A ready check's process group this reap emptied is
            // unregistered at once (ready.rs; this waitpid bypasses the
            // waiters, so every group is probed).
            if let Some(g) = &mut ctx.guard {
                g.sweep_checks(None);
            }
        }
    }
    // Nothing is left for the guard to kill: let it go now, so that its
    // exit overlaps the end of the run instead of following it.
    if let Some(g) = &mut ctx.guard {
        g.release();
    }
    if let Some(c) = &mut ctx.cgroup {
        let _ = c.remove();
    }
    // Nothing is left for a later `up` to find either: the record goes
    // now, while the relays may still be flushing, not after them.
    if let Some(r) = record {
        r.remove();
    }
    let cpu_ms = cpu.map(|per_slot| {
        // Slots of one group (a reload adds one) add up under its name.
        let mut by_name: Vec<(String, u64)> = Vec::new();
        for (name, ms) in per_slot {
            match by_name.iter_mut().find(|(n, _)| *n == name) {
                Some(e) => e.1 += ms,
                None => by_name.push((name, ms)),
            }
        }
        by_name.sort_by_key(|(n, _)| names.iter().position(|x| x == n).unwrap_or(usize::MAX));
        by_name
    });
    // Every process group is gone; flush what the pipes still hold (until
    // EOF, or a quiet period: see logs.rs) and what the writer still has,
    // for at most FLUSH_LIMIT, handling signals meanwhile.
    let driver::Ctx {
        out,
        guard,
        events: sup_events,
        relays,
        ..
    } = ctx;
    drop(sup_events);
    drop(out);
    let deadline = tokio::time::Instant::now() + logs::FLUSH_LIMIT;
    let mut relays = relays.close();
    let mut flushed = Box::pin(async move {
        relays.ended().await;
        let _ = writer.done.await;
    });
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
                let driver::Msg::Signal(sig, at) = msg else { continue };
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
    // Readers still relaying (past the limit, or cut short by an
    // escalation) are dropped here, and the relays' thread ends.
    drop(flushed);
    if let Some(r) = reaper {
        r.abort();
    }

    drop(
        writer_events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(),
    );
    events.emit(events::Event::Exit { code, cpu_ms });
    // The exit event reaches the event ring (`flowrun events -f`) before
    // the server ends its streams.
    events.flush();
    if let Some(server) = server {
        server.shutdown(CONTROL_GRACE).await;
    }
    drop(events);
    // The closing events: a stderr nobody reads gets a short grace.
    events_thread.finish_within(EVENTS_GRACE);
    (code, guard)
}
