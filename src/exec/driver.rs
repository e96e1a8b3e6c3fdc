//! The OS layer that runs the [`Core`]: it turns the world into
//! [`core::Msg`]s and carries out every [`Effect`]. It decides nothing
//! about the topology; the rules are the core's.
//!
//! Everything that happens — a signal (stamped with its arrival time), a
//! SIGCHLD, a change of a watched `cgroup.events`, a timer, a passed ready
//! check, the guard's death — becomes a [`Msg`] on one channel, handled one
//! at a time on the runtime's single thread. A reaped leader becomes
//! [`core::Msg::ExecFailed`] (its error pipe holds an errno) and
//! [`core::Msg::Exited`], with whether its process group is empty (and,
//! for its group's last process, with cgroups, the group's cgroup); one
//! that empties later becomes [`core::Msg::GroupEmpty`].
//!
//! Spawns are queued and run in batches of [`SPAWN_BATCH`]; between two
//! batches the runtime polls its drivers, so signals and exits are seen
//! during a long start. Spawns still queued when a drain begins are
//! answered [`Outcome::Cancelled`] without being attempted.
//!
//! Safety of signals: a process is signalled by pid only while it is an
//! unreaped child; a process group only if we created it (`process-group
//! own`) and it may still have members; with cgroups, the members of a
//! group's cgroup outside its processes' process groups are listed and
//! each is signalled through a pidfd after its membership is checked
//! (cgroup.rs), and their SIGKILL is `cgroup.kill`. Nothing ever signals pid 0,
//! 1 or -1. Guard loss (its pidfd fires) is handled here: a new guard is
//! started with the same registrations.

use super::core::signals::Late;
use super::core::{self, Core, Effect, Env, Outcome, Ref};
use super::events::{Event, EventSink};
use super::guard::Guard;
use super::logs::{self, ReaderCfg};
use super::ready::{self, Check, NotifyDir};
use super::reap::{self, Status, Waiters};
use super::spawn::{self, Inherited};
use super::UpOptions;
use crate::ast::{Probe, ProcessGroupMode, StopTarget};
use crate::model::Sig;
use crate::plan::Plan;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How often a process group whose leader is gone is checked for
/// emptiness.
const GROUP_POLL: Duration = Duration::from_millis(20);
/// Processes spawned between two looks at the message queue.
pub const SPAWN_BATCH: usize = 128;

#[derive(Debug)]
pub enum Msg {
    /// A signal and when its stream delivered it (the burst window is
    /// measured between arrivals, not between steps).
    Signal(Sig, Instant),
    /// SIGCHLD arrived (at least once): reap every exited child now.
    Child,
    /// A group whose leader is gone may be empty now (the poll's timer).
    PollGroups,
    /// A watched `cgroup.events` changed: a group's cgroup may be empty.
    CgroupEvents,
    Timer(u64),
    Ready {
        p: Ref,
        gen: u64,
    },
    /// The guard process died (its pidfd fired): start a new one.
    GuardLost,
    /// An `exec` ready check asks to be spawned (ready.rs: spawned,
    /// and its process group registered with the guard, in this step).
    ExecCheck(ready::ExecSpawn),
    /// A control-plane call or refusal (docs/control.md).
    Control(crate::control::ToCore),
}

pub struct Ctx {
    pub opts: UpOptions,
    pub events: EventSink,
    pub out: mpsc::Sender<Vec<u8>>,
    pub guard: Option<Guard>,
    pub inherited: Inherited,
    pub waiters: Waiters,
    /// cgroup containment (cgroup.rs); `None`: process groups.
    pub cgroup: Option<super::cgroup::RunCgroup>,
    /// The control plane's output rings (`flowrun logs`), when it runs.
    pub logs: Option<std::sync::Arc<crate::control::ring::LogStore>>,
    /// The output readers' thread.
    pub relays: logs::Relays,
}

/// Catch signal `n`: every delivery becomes a [`Msg::Signal`] stamped
/// with its arrival time.
pub fn catch(n: i32, tx: &mpsc::UnboundedSender<Msg>) {
    let Ok(sig) = nix::sys::signal::Signal::try_from(n) else {
        return;
    };
    let Ok(mut stream) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(n))
    else {
        return;
    };
    let tx = tx.clone();
    tokio::spawn(async move {
        while stream.recv().await.is_some() {
            if tx.send(Msg::Signal(Sig(sig), Instant::now())).is_err() {
                break;
            }
        }
    });
}

/// What a reaped leader's exec error pipe held: where it failed, errno.
type ExecError = Option<(spawn::ExecStage, i32)>;

/// What is left of an incarnation whose leader is reaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Left {
    /// Nothing: it is down.
    Nothing,
    /// Members of its process group (looked at every [`GROUP_POLL`]).
    ProcessGroup,
    /// Members of its group's cgroup, which is `watched` (its
    /// `cgroup.events` changes arrive as [`Msg::CgroupEvents`]) or polled.
    Cgroup { watched: bool },
}

impl Left {
    fn polled(self) -> bool {
        matches!(self, Left::ProcessGroup | Left::Cgroup { watched: false })
    }
}

/// One incarnation as the OS sees it.
struct Live {
    gen: u64,
    pid: i32,
    /// Our own process group (`process-group own`), while it may have
    /// members.
    pgid: Option<i32>,
    leader_alive: bool,
    group_alive: bool,
    done_tx: Option<tokio::sync::oneshot::Sender<()>>,
    check: Option<JoinHandle<()>>,
    /// Kept until the incarnation is released (its socket lives there).
    _notify: Option<NotifyDir>,
    registered: bool,
    /// Where and why it failed before it could exec, read at spawn.
    failed: ExecError,
    /// Its leader's CPU time (and its waited-for children's), from its
    /// reaping.
    cpu_ms: Option<u64>,
    /// Its leader was stopped by a signal (as last reported by `wait4`).
    stopped: bool,
    /// It was sent a signal to act on (a ladder step, a forward).
    asked: bool,
    /// It was sent SIGKILL (a deadline, an escalation, leftovers).
    killed: bool,
}

/// A start that did not happen: retried later when the system is short
/// of processes or descriptors, else the group's failure.
fn start_failed(spec: &crate::plan::ProcessSpec, e: std::io::Error) -> Outcome {
    if spawn::is_backpressure(&e) {
        Outcome::Busy(e.to_string())
    } else {
        Outcome::Failed(format!(
            "{}: spawn failed: cannot execute {} ({e})",
            spec.id,
            spec.argv.first().map_or("", |s| s.as_str())
        ))
    }
}

/// What a start needs but could not get (its cgroup, its notify socket),
/// saying `why`: retried later when the system is short of descriptors or
/// memory (a batch holds many), else the group's failure.
fn shortage_or_failure(e: &std::io::Error, why: String) -> Outcome {
    if spawn::is_backpressure(e) {
        Outcome::Busy(why)
    } else {
        Outcome::Failed(why)
    }
}

/// A spawn made ready by [`Driver::stage`], started by the lanes, and
/// completed by [`Driver::finish`].
struct Staged {
    p: Ref,
    gen: u64,
    def: std::sync::Arc<crate::model::Group>,
    spec: std::sync::Arc<crate::plan::ProcessSpec>,
    cwd: PathBuf,
    env: Vec<(String, String)>,
    notify: Option<(NotifyDir, tokio::net::UnixDatagram)>,
    /// Held open until the start returned (the child is born inside).
    _cgroup: Option<std::os::fd::OwnedFd>,
    ready_cgroup: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// `ready when log`: its pattern, compiled.
    log_ready: Option<regex::Regex>,
    /// `ready when exec`: its command, split into words.
    check_argv: Option<Vec<String>>,
    job: Option<spawn::Job>,
}

pub struct Driver {
    core: Core,
    /// Control calls the core has not answered yet.
    calls: super::serve::Calls,
    ctx: Ctx,
    tx: mpsc::UnboundedSender<Msg>,
    /// Signals with a stream (a reload may add some).
    caught: Vec<i32>,
    live: HashMap<Ref, Live>,
    by_pid: HashMap<i32, Ref>,
    /// Spawns the core asked for, not yet attempted.
    spawns: VecDeque<(Ref, u64)>,
    /// The last `PATH` search, reused within one burst of starts.
    seen: Option<spawn::Resolved>,
    /// Threads that start services beside this one (made at the first
    /// burst of more than one start).
    lanes: Option<spawn::Lanes>,
    poll_armed: bool,
    /// Messages due at a time (the core's timers, the group poll), in
    /// order; the run loop sleeps until the first. One queue rather than a
    /// sleeping task per timer: a stop arms a drain deadline per process.
    timers: BTreeMap<(Instant, u64), Msg>,
    /// Breaks ties between timers due at the same instant: armed first,
    /// handled first.
    timer_seq: u64,
    code: Option<i32>,
    /// CPU time of the incarnation just released, for its `stopped` event.
    cpu_ms: Option<u64>,
    notify_seq: u64,
    /// Incarnations in [`Driver::live`] per slot: the group's last one is
    /// down only once the group's cgroup is empty too.
    per_slot: HashMap<usize, usize>,
    /// With cgroups: (slot, signal) → how many of the slot's processes
    /// were sent it `to group` in this step, for [`Driver::signal_strays`]
    /// (once per step).
    strays: HashMap<(usize, i32), usize>,
    /// Core steps being carried out (a step may feed another: the resume
    /// after a pause).
    feeding: u32,
}

/// Send `sig` to the leader, or to the whole group when `target` is
/// `group` and the process has its own group. Followed by SIGCONT so a
/// stopped process can act on it: always to a group (its members' state
/// is not known), to the leader when it is known to be stopped
/// (`leader_stopped`; a stop reported after the signal is answered by
/// [`Driver::stops`]).
fn signal_target(
    target: StopTarget,
    pid: Option<i32>,
    pgid: Option<i32>,
    sig: i32,
    leader_stopped: bool,
) {
    // `pid` is only given while the leader is unreaped and `pgid` while the
    // group may have members, so neither can have been recycled.
    let cont = sig != libc::SIGKILL && sig != libc::SIGCONT;
    // SAFETY: our own child or group (never 0, 1 or -1).
    unsafe {
        match (target, pgid, pid) {
            (StopTarget::Group, Some(g), _) | (StopTarget::Leader, Some(g), None) if g > 1 => {
                libc::kill(-g, sig);
                if cont {
                    libc::kill(-g, libc::SIGCONT);
                }
            }
            (_, _, Some(p)) if p > 1 => {
                libc::kill(p, sig);
                if cont && leader_stopped {
                    libc::kill(p, libc::SIGCONT);
                }
            }
            _ => {}
        }
    }
}

impl Driver {
    pub fn new(
        plan: Plan,
        replan: super::Replan,
        ctx: Ctx,
        tx: mpsc::UnboundedSender<Msg>,
        caught: Vec<i32>,
        hangup_drains: bool,
    ) -> Driver {
        let env = Env {
            hangup_drains,
            containment: if ctx.cgroup.is_some() {
                "cgroup"
            } else {
                "process-group"
            },
        };
        let mut core = Core::new(plan, replan.reload, env, Instant::now());
        core.set_scale(replan.scale);
        Driver {
            core,
            calls: super::serve::Calls::default(),
            ctx,
            tx,
            caught,
            live: HashMap::new(),
            by_pid: HashMap::new(),
            spawns: VecDeque::new(),
            seen: None,
            lanes: None,
            poll_armed: false,
            timers: BTreeMap::new(),
            timer_seq: 0,
            code: None,
            cpu_ms: None,
            notify_seq: 0,
            per_slot: HashMap::new(),
            strays: HashMap::new(),
            feeding: 0,
        }
    }

    /// Run until the core is done (every process group is gone); returns
    /// the exit status, the context (its relays may still be flushing) and
    /// the signal rules for the rest of `up`.
    pub async fn run(mut self, rx: &mut mpsc::UnboundedReceiver<Msg>) -> (i32, Ctx, Late) {
        let fx = self.core.start(Instant::now());
        self.apply_all(fx);
        self.flush();
        while !self.core.done() {
            if self.spawns.is_empty() {
                // A message (`None`: every sender is gone), or the first
                // timer is due (handled below).
                let due = self.timers.first_key_value().map(|(&(at, _), _)| at);
                let woke = match due {
                    None => Some(rx.recv().await),
                    Some(at) => tokio::select! {
                        m = rx.recv() => Some(m),
                        () = tokio::time::sleep_until(at.into()) => None,
                    },
                };
                match woke {
                    Some(None) => break,
                    Some(Some(msg)) => self.handle(msg),
                    None => {}
                }
            }
            // Handle what is already queued before spawning more, then
            // the timers that are due.
            while let Ok(msg) = rx.try_recv() {
                self.handle(msg);
            }
            self.fire_due();
            if !self.spawns.is_empty() {
                self.spawn_batch();
                if !self.spawns.is_empty() {
                    // A long start in progress: let the runtime poll its
                    // drivers (signals, exits) before the next batch.
                    // (Twice: the first lets the drivers wake the signal
                    // and reaper tasks, the second lets those tasks run.)
                    self.flush();
                    tokio::task::yield_now().await;
                    tokio::task::yield_now().await;
                }
            }
            self.flush();
        }
        self.flush();
        let late = self.core.late(Instant::now());
        let code = self.code.unwrap_or(0);
        let Driver { core, ctx, .. } = self;
        // The core's per-process state is not freed piece by piece at the
        // end of a stop: `up` is the last thing the process does, and its
        // exit returns the memory at once.
        std::mem::forget(core);
        (code, ctx, late)
    }

    /// End of a step: hand the batched events, guard removals and new
    /// output readers on.
    fn flush(&mut self) {
        self.ctx.relays.hand_over();
        self.ctx.events.flush();
        if let Some(guard) = &mut self.ctx.guard {
            guard.flush();
        }
    }

    fn feed(&mut self, msg: core::Msg, now: Instant) {
        let fx = self.core.handle(msg, now);
        self.feeding += 1;
        self.apply_all(fx);
        self.feeding -= 1;
        // Once per step, not within the reaps a long step makes.
        if self.feeding == 0 && !self.strays.is_empty() {
            self.signal_strays();
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Signal(sig, at) => self.feed(core::Msg::Signal(sig), at),
            Msg::Child => {
                // Every reaped leader is marked first: handling one exit
                // may signal the others, and a reaped pid is never
                // signalled.
                let mut exits = Vec::new();
                let mut orphan = false;
                let changes = reap::reap_all(&self.ctx.waiters);
                self.stops(&changes.stops);
                for r in changes.exits {
                    match self.reaped(r.pid, r.cpu_ms) {
                        Some((p, gen, failed)) => exits.push((p, gen, r.status, failed)),
                        None => orphan = true,
                    }
                }
                // Before anything else: unregister the ready checks'
                // process groups these reaps emptied (ready.rs).
                if let Some(g) = &mut self.ctx.guard {
                    g.sweep_checks(Some(&self.ctx.waiters));
                }
                for (p, gen, status, failed) in exits {
                    self.on_exit(p, gen, status, failed);
                }
                if orphan {
                    // An adopted orphan: a group waiting to empty may be
                    // done now.
                    self.check_groups();
                }
            }
            Msg::PollGroups => {
                self.poll_armed = false;
                self.check_groups();
            }
            Msg::CgroupEvents => self.check_groups(),
            Msg::Timer(id) => self.feed(core::Msg::Timer(id), Instant::now()),
            Msg::Ready { p, gen } => self.feed(core::Msg::Ready { p, gen }, Instant::now()),
            Msg::GuardLost => {
                if let Some(g) = &mut self.ctx.guard {
                    g.respawn(&self.ctx.events, &self.tx);
                }
            }
            Msg::ExecCheck(req) => {
                ready::spawn_check(req, &self.ctx.waiters, self.ctx.guard.as_mut());
            }
            Msg::Control(m) => {
                let msg = self.calls.accept(m);
                self.feed(msg, Instant::now());
            }
        }
    }

    // ----- exits --------------------------------------------------------------

    /// Leaders stopped or continued by a signal. A leader that was sent a
    /// signal to act on (a ladder step, a forward) and is stopped now is
    /// continued, so it can act on it: the SIGCONT that follows a signal
    /// goes to a leader only when it was known to be stopped then.
    fn stops(&mut self, stops: &[(i32, bool)]) {
        for &(pid, stopped) in stops {
            let Some(l) = self.by_pid.get(&pid).and_then(|p| self.live.get_mut(p)) else {
                continue;
            };
            if l.pid != pid || !l.leader_alive {
                continue;
            }
            l.stopped = stopped;
            if stopped && l.asked && pid > 1 {
                // SAFETY: our unreaped child.
                unsafe { libc::kill(pid, libc::SIGCONT) };
            }
        }
    }

    /// A child was reaped: the incarnation it led, and what its exec
    /// error pipe holds. `None` if it was none of our leaders.
    fn reaped(&mut self, pid: i32, cpu_ms: u64) -> Option<(Ref, u64, ExecError)> {
        let p = self.by_pid.remove(&pid)?;
        let l = self.live.get_mut(&p)?;
        if l.pid != pid || !l.leader_alive {
            return None;
        }
        l.leader_alive = false;
        l.cpu_ms = Some(cpu_ms);
        Some((p, l.gen, l.failed.take()))
    }

    fn on_exit(&mut self, p: Ref, gen: u64, status: Status, failed: ExecError) {
        let left = self.group_empty(p);
        self.exited(p, gen, status, failed, left);
    }

    /// Tell the core a leader exited, and whether its group is empty.
    fn exited(&mut self, p: Ref, gen: u64, status: Status, failed: ExecError, left: Left) {
        let now = Instant::now();
        if let Some((stage, errno)) = failed {
            let reason = self.exec_reason(p, stage, errno);
            self.feed(core::Msg::ExecFailed { p, gen, reason }, now);
        }
        self.feed(
            core::Msg::Exited {
                p,
                gen,
                status,
                group_empty: left == Left::Nothing,
            },
            now,
        );
        if left.polled() {
            self.arm_poll();
        }
    }

    fn exec_reason(&self, p: Ref, stage: spawn::ExecStage, errno: i32) -> String {
        let err = std::io::Error::from_raw_os_error(errno);
        let Some(spec) = self.core.spec(p) else {
            return err.to_string();
        };
        let what = match stage {
            spawn::ExecStage::Stdio => "cannot set up stdio".to_string(),
            spawn::ExecStage::Chdir => {
                let base = &self.ctx.opts.base_dir;
                let dir = spec.cwd.as_deref().map_or(base.clone(), |c| base.join(c));
                format!("cannot change directory to {}", dir.display())
            }
            spawn::ExecStage::Exec => format!(
                "cannot execute {}",
                spec.argv.first().map_or("", |s| s.as_str())
            ),
        };
        format!("{}: spawn failed: {what} ({err})", spec.id)
    }

    /// What is left of `p`, whose leader is reaped: its process group
    /// (remembered once empty) and, for its group's last process with
    /// cgroups, the group's cgroup (what is in it left its process
    /// group: cgroup.rs). A last process that was killed has what is
    /// left in the cgroup killed too: its SIGKILL may have come while
    /// others of its group still ran.
    fn group_empty(&mut self, p: Ref) -> Left {
        let last = self.per_slot.get(&p.0) == Some(&1);
        let Some(l) = self.live.get_mut(&p) else {
            return Left::Nothing;
        };
        if l.group_alive && !reap::group_alive(l.pgid.unwrap_or(0)) {
            l.group_alive = false;
        }
        if l.group_alive {
            return Left::ProcessGroup;
        }
        let killed = l.killed;
        let Some(c) = self.ctx.cgroup.as_mut().filter(|_| last) else {
            return Left::Nothing;
        };
        if !c.populated(p.0) {
            return Left::Nothing;
        }
        if killed && !c.killed(p.0) {
            c.kill(p.0);
        }
        // Watched from now on; read again once watched, so that an
        // emptying just before is not missed.
        let watched = c.watch(p.0);
        match c.populated(p.0) {
            false => Left::Nothing,
            true => Left::Cgroup { watched },
        }
    }

    /// Every incarnation whose leader is gone: report the ones now down.
    fn check_groups(&mut self) {
        let mut waiting: Vec<(Ref, u64)> = self
            .live
            .iter()
            .filter(|(_, l)| !l.leader_alive)
            .map(|(p, l)| (*p, l.gen))
            .collect();
        waiting.sort_unstable();
        let mut poll = false;
        for (p, gen) in waiting {
            match self.group_empty(p) {
                Left::Nothing => self.feed(core::Msg::GroupEmpty { p, gen }, Instant::now()),
                left => poll |= left.polled(),
            }
        }
        if poll {
            self.arm_poll();
        }
    }

    /// Look again in [`GROUP_POLL`]: the end of a process group's last
    /// member is not always ours to reap (its parent may be another
    /// member). (A watched `cgroup.events` also wakes the check.)
    fn arm_poll(&mut self) {
        if !self.poll_armed {
            self.poll_armed = true;
            self.after(GROUP_POLL, Msg::PollGroups);
        }
    }

    /// Handle `msg` once `d` has passed (from the run loop's timer queue).
    fn after(&mut self, d: Duration, msg: Msg) {
        if d.is_zero() {
            let _ = self.tx.send(msg);
            return;
        }
        self.timer_seq += 1;
        self.timers
            .insert((Instant::now() + d, self.timer_seq), msg);
    }

    /// Handle every timer that is due, in the order they are due.
    fn fire_due(&mut self) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > Instant::now() {
                break;
            }
            let msg = entry.remove();
            self.handle(msg);
        }
    }

    // ----- effects ------------------------------------------------------------

    fn apply_all(&mut self, fx: Vec<Effect>) {
        for e in fx {
            self.apply(e);
        }
    }

    fn apply(&mut self, e: Effect) {
        match e {
            Effect::Spawn { p, gen } => self.spawns.push_back((p, gen)),
            Effect::Signal {
                p,
                gen,
                sig,
                target,
            } => self.signal(p, gen, sig, target),
            Effect::Kill { p, gen } => self.kill(p, gen),
            Effect::Arm { id, after } => self.after(after, Msg::Timer(id)),
            Effect::Release { p, gen } => self.release(p, gen),
            Effect::Catch(sig) => {
                let n = sig.number();
                let catchable = n != libc::SIGKILL && n != libc::SIGSTOP && n != libc::SIGCHLD;
                if catchable && !self.caught.contains(&n) {
                    self.caught.push(n);
                    catch(n, &self.tx);
                }
            }
            Effect::Pause => self.pause(),
            Effect::Resume => self.send_all(libc::SIGCONT),
            Effect::Emit(ev) => self.emit(ev),
            Effect::Exit(code) => self.code = Some(code),
            Effect::Reply { id, mut result } => {
                super::serve::fill_cpu(&mut result, super::serve::leader_cpu_ms);
                self.calls.answer(id, result);
            }
        }
    }

    fn emit(&mut self, ev: Event) {
        let ev = match ev {
            // The core does not know the CPU time: it was read at the
            // leader's reaping, and kept at the release just before.
            Event::Stopped { who, cpu_ms: None } => Event::Stopped {
                who,
                cpu_ms: self.cpu_ms.take(),
            },
            ev => ev,
        };
        self.ctx.events.emit(ev);
    }

    fn signal(&mut self, p: Ref, gen: u64, sig: Sig, target: StopTarget) {
        let Some(l) = self.live.get_mut(&p).filter(|l| l.gen == gen) else {
            return;
        };
        let n = sig.number();
        signal_target(
            target,
            l.leader_alive.then_some(l.pid),
            l.pgid.filter(|_| l.group_alive),
            n,
            l.stopped,
        );
        l.asked = true;
        if target == StopTarget::Group && self.ctx.cgroup.is_some() {
            *self.strays.entry((p.0, n)).or_default() += 1;
        }
    }

    /// A step that sent a signal `to group` to every process of a group
    /// (a drain, a stop or restart of the group, the ladder of its last
    /// process, a forward) sends it to the rest of the group's cgroup too:
    /// the members outside every process group of its processes.
    /// A signal to only some of a group's processes does not: what left
    /// their process groups cannot be told apart from the others'.
    fn signal_strays(&mut self) {
        let Some(c) = &self.ctx.cgroup else {
            self.strays.clear();
            return;
        };
        for ((slot, sig), sent_to) in std::mem::take(&mut self.strays) {
            let live = self.per_slot.get(&slot).copied().unwrap_or(0);
            if sent_to < live {
                continue;
            }
            let groups: std::collections::HashSet<i32> = self
                .live
                .iter()
                .filter(|((s, _), l)| *s == slot && l.group_alive)
                .filter_map(|(_, l)| l.pgid)
                .collect();
            let by_pid = &self.by_pid;
            // A leader, or a member of a leader's process group, had it.
            let skip = |pid: i32| {
                by_pid.contains_key(&pid) || reap::pgid_of(pid).is_some_and(|g| groups.contains(&g))
            };
            c.signal_members(slot, sig, skip);
        }
    }

    /// SIGKILL the process group (or the lone process); the group's last
    /// process: its whole cgroup.
    fn kill(&mut self, p: Ref, gen: u64) {
        let last = self.per_slot.get(&p.0) == Some(&1);
        let Some(l) = self.live.get_mut(&p).filter(|l| l.gen == gen) else {
            return;
        };
        l.killed = true;
        match l.pgid {
            Some(g) if l.group_alive && g > 1 => {
                // SAFETY: our own group, still non-empty when last checked.
                unsafe { libc::kill(-g, libc::SIGKILL) };
            }
            _ => {
                if l.leader_alive && l.pid > 1 {
                    // SAFETY: our unreaped child.
                    unsafe { libc::kill(l.pid, libc::SIGKILL) };
                }
            }
        }
        let leader_alive = l.leader_alive;
        if let Some(c) = self.ctx.cgroup.as_mut().filter(|_| last) {
            c.kill(p.0);
        }
        if !leader_alive {
            self.arm_poll();
        }
    }

    /// The incarnation is down: unregister it from the guard, end its
    /// ready check, let its output relay finish, read its CPU time.
    fn release(&mut self, p: Ref, gen: u64) {
        if self.live.get(&p).map(|l| l.gen) != Some(gen) {
            return;
        }
        let Some(mut l) = self.live.remove(&p) else {
            return;
        };
        if self.by_pid.get(&l.pid) == Some(&p) {
            self.by_pid.remove(&l.pid);
        }
        if let Some(tx) = l.done_tx.take() {
            let _ = tx.send(());
        }
        if let Some(h) = l.check.take() {
            h.abort();
        }
        if l.registered {
            if let Some(guard) = &mut self.ctx.guard {
                match l.pgid {
                    Some(g) => guard.remove_group(g),
                    None => guard.remove_pid(l.pid),
                }
            }
        }
        self.cpu_ms = l.cpu_ms;
        if let Some(n) = self.per_slot.get_mut(&p.0) {
            *n = n.saturating_sub(1);
        }
    }

    fn send_all(&self, sig: i32) {
        for l in self.live.values() {
            let pid = l.leader_alive.then_some(l.pid);
            let pgid = l.pgid.filter(|_| l.group_alive);
            // SAFETY: our own unreaped child or non-empty group (see
            // `signal_target`); never 0, 1 or -1.
            unsafe {
                match (pgid, pid) {
                    (Some(g), _) if g > 1 => libc::kill(-g, sig),
                    (None, Some(p)) if p > 1 => libc::kill(p, sig),
                    _ => 0,
                };
            }
        }
    }

    /// Ctrl+Z: stop every process group, then the runner; when the runner
    /// is continued (`fg`, SIGCONT), tell the core, which continues them.
    fn pause(&mut self) {
        self.send_all(libc::SIGSTOP);
        self.flush();
        // Returns once the runner is continued.
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
        self.feed(core::Msg::Resumed, Instant::now());
    }

    // ----- spawning -------------------------------------------------------------

    /// Attempt at most [`SPAWN_BATCH`] queued spawns, up to
    /// [`spawn::LANES`] at once ([`spawn::Lanes`]); a drain cancels the
    /// ones not started yet.
    fn spawn_batch(&mut self) {
        let mut budget = SPAWN_BATCH;
        while budget > 0 && !self.core.done() {
            let mut staged = Vec::new();
            while staged.len() < spawn::LANES && budget > 0 && !self.core.done() {
                let Some((p, gen)) = self.spawns.pop_front() else {
                    break;
                };
                if self.core.draining() {
                    let outcome = Outcome::Cancelled;
                    self.feed(core::Msg::Spawned { p, gen, outcome }, Instant::now());
                    continue;
                }
                budget -= 1;
                match self.stage(p, gen) {
                    Ok(st) => staged.push(st),
                    Err(outcome) => {
                        self.feed(core::Msg::Spawned { p, gen, outcome }, Instant::now())
                    }
                }
            }
            if staged.is_empty() {
                if self.spawns.is_empty() {
                    break;
                }
                continue;
            }
            // A failure fed above may have begun a drain: no start after it.
            if self.core.draining() || self.core.done() {
                for st in staged {
                    let (p, gen) = (st.p, st.gen);
                    let outcome = Outcome::Cancelled;
                    self.feed(core::Msg::Spawned { p, gen, outcome }, Instant::now());
                }
                continue;
            }
            // A kill fed above may have hit a group cgroup a start is staged
            // for: a child born into a killed cgroup is killed at birth, so
            // it gets the group's new one (cgroup.rs).
            if let Some(c) = self.ctx.cgroup.as_mut() {
                for st in staged.iter_mut() {
                    if !c.killed(st.p.0) {
                        continue;
                    }
                    if let (Ok(fd), Some(job)) =
                        (c.procs_fd(st.p.0, &st.def.name.node), st.job.as_mut())
                    {
                        job.how.cgroup = Some(std::os::fd::AsRawFd::as_raw_fd(&fd));
                        st._cgroup = Some(fd);
                    }
                }
            }
            let results = if staged.len() == 1 {
                let j = staged[0].job.take().expect("staged with a job");
                vec![spawn::start_job(&j)]
            } else {
                let jobs = staged
                    .iter_mut()
                    .map(|st| st.job.take().expect("staged with a job"))
                    .collect();
                self.lanes
                    .get_or_insert_with(spawn::Lanes::new)
                    .start_all(jobs)
            };
            for (st, res) in staged.into_iter().zip(results) {
                let (p, gen) = (st.p, st.gen);
                let outcome = self.finish(st, res);
                self.feed(core::Msg::Spawned { p, gen, outcome }, Instant::now());
            }
        }
        if self.spawns.is_empty() {
            self.seen = None;
        }
    }

    /// Everything a start needs, made ready on this thread: checks of the
    /// ready probe, the cgroup, the notify socket, the command and its
    /// program's path. `Err`: the outcome, without a start.
    fn stage(&mut self, p: Ref, gen: u64) -> Result<Staged, Outcome> {
        let (Some(def), Some(spec)) = (self.core.group(p.0), self.core.spec(p)) else {
            return Err(Outcome::Cancelled);
        };
        let (def, spec) = (def.clone(), spec.clone());
        let s = p.0;
        let who = spec.id.clone();
        // A `log` regex that does not compile or an `exec` command that
        // does not split into words would never pass: fail instead (lint
        // refuses both, so only a plan built some other way gets here).
        let (mut log_ready, mut check_argv) = (None, None);
        if let Some(probe) = &spec.ready {
            match probe {
                Probe::Log(re) => match regex::Regex::new(re) {
                    Ok(re) => log_ready = Some(re),
                    Err(e) => {
                        let e = e.to_string();
                        let why = e.lines().last().unwrap_or("").trim_start_matches("error: ");
                        return Err(Outcome::Failed(format!(
                            "{who}: invalid ready log regex: {why}"
                        )));
                    }
                },
                Probe::Exec(c) => match shell_words::split(c) {
                    Ok(w) if !w.is_empty() => check_argv = Some(w),
                    Ok(_) => {
                        return Err(Outcome::Failed(format!("{who}: empty ready exec command")))
                    }
                    Err(e) => {
                        return Err(Outcome::Failed(format!("{who}: ready exec command: {e}")))
                    }
                },
                _ => {}
            }
        }
        // Containment: the group's cgroup, and its ready checks' cgroup.
        let exec_check = matches!(def.ready.as_ref().map(|r| &r.probe), Some(Probe::Exec(_)));
        let (cgroup, ready_cgroup) = match self.ctx.cgroup.as_mut() {
            Some(c) => match c.procs_fd(s, &def.name.node) {
                Ok(fd) => (
                    Some(fd),
                    exec_check
                        .then(|| c.ready_procs(s, &def.name.node).ok())
                        .flatten(),
                ),
                Err(e) => {
                    let why = format!("{who}: cannot create its cgroup: {e}");
                    return Err(shortage_or_failure(&e, why));
                }
            },
            None => (None, None),
        };
        let cwd = match &spec.cwd {
            Some(c) => self.ctx.opts.base_dir.join(c),
            None => self.ctx.opts.base_dir.clone(),
        };
        let mut env = spec.env.clone();
        let mut notify = None;
        if def.ready.as_ref().is_some_and(|r| r.probe == Probe::Notify) {
            self.notify_seq += 1;
            match NotifyDir::create(&self.notify_seq.to_string()) {
                Ok((dir, sock)) => {
                    env.push((
                        "NOTIFY_SOCKET".to_string(),
                        dir.socket.display().to_string(),
                    ));
                    notify = Some((dir, sock));
                }
                Err(e) => {
                    let why = format!("{who}: cannot create notify socket: {e}");
                    return Err(shortage_or_failure(&e, why));
                }
            }
        }
        let own = def.process_group == ProcessGroupMode::Own;
        let how = spawn::How {
            own_group: own,
            die_with_parent: def.die_with_parent,
            cgroup: cgroup.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
        };
        let cannot = |e| start_failed(&spec, e);
        let cmd = spawn::Prepared::new(&spec.argv, &env, &cwd).map_err(cannot)?;
        let prog = cmd.program(&mut self.seen).map_err(cannot)?;
        Ok(Staged {
            p,
            gen,
            def,
            spec,
            cwd,
            env,
            notify,
            _cgroup: cgroup,
            ready_cgroup,
            log_ready,
            check_argv,
            job: Some(spawn::Job {
                cmd,
                prog,
                how,
                inh: self.ctx.inherited,
            }),
        })
    }

    /// After a start: register with the guard, relay the output, run the
    /// ready check, and record the incarnation.
    fn finish(&mut self, st: Staged, res: std::io::Result<spawn::Spawned>) -> Outcome {
        let Staged {
            p,
            gen,
            def,
            spec,
            cwd,
            env,
            notify,
            ready_cgroup,
            log_ready: log_re,
            check_argv,
            ..
        } = st;
        let s = p.0;
        let who = spec.id.clone();
        let own = def.process_group == ProcessGroupMode::Own;
        let spawned = match res {
            Ok(sp) => sp,
            Err(e) => return start_failed(&spec, e),
        };
        let pid = spawned.pid;
        if def.die_with_parent {
            if let Some(guard) = &mut self.ctx.guard {
                if own {
                    guard.add_group(pid);
                } else {
                    guard.add_pid(pid);
                }
            }
        }
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();

        // Output relay.
        let log_ready = log_re.map(|re| {
            let tx = self.tx.clone();
            let fire: Box<dyn FnOnce() + Send> = Box::new(move || {
                let _ = tx.send(Msg::Ready { p, gen });
            });
            (re, fire)
        });
        if let Some(fd) = spawned.output {
            let cfg = ReaderCfg {
                prefix: logs::prefix(&who, self.core.group_index(s), self.ctx.opts.color),
                timestamps: self.ctx.opts.timestamps,
                out: self.ctx.out.clone(),
                done: done_rx,
                log_ready,
                log_file: super::logfile::sink(&self.ctx.opts.base_dir, spec.log.as_ref()),
            };
            let sink = self.ctx.logs.as_ref().map(|store| {
                let process = crate::control::ring::ProcKey {
                    group: def.name.node.clone(),
                    index: spec.index,
                };
                store.register(process.clone());
                logs::LogSink {
                    store: store.clone(),
                    process,
                }
            });
            self.ctx.relays.add(logs::Job { fd, cfg, sink });
        }

        // Ready check (the core times it: a pause stops its clock).
        let mut check = None;
        let mut notify_dir = None;
        if let (Some(rc), Some(probe)) = (&def.ready, &spec.ready) {
            let probe = match probe {
                Probe::Tcp(a) => Some(Check::Tcp(a.clone())),
                Probe::Http(u) => Some(Check::Http(u.clone())),
                Probe::File(f) => Some(Check::File(cwd.join(f))),
                Probe::Exec(_) => Some(Check::Exec {
                    argv: check_argv.unwrap_or_default(),
                    env: env.clone(),
                    cwd: cwd.clone(),
                    driver: self.tx.clone(),
                    inherited: self.ctx.inherited,
                    cgroup: ready_cgroup,
                }),
                Probe::Notify => notify.map(|(dir, sock)| {
                    notify_dir = Some(dir);
                    let from = ready::Sender {
                        leader: pid,
                        cgroup: self.ctx.cgroup.as_ref().and_then(|c| c.member_line(s)),
                    };
                    Check::Notify(sock, from)
                }),
                Probe::Log(_) => None,
            };
            if let Some(probe) = probe {
                let tx = self.tx.clone();
                let every = rc.every;
                check = Some(tokio::spawn(async move {
                    ready::passed(probe, every).await;
                    let _ = tx.send(Msg::Ready { p, gen });
                }));
            }
        }
        self.by_pid.insert(pid, p);
        self.live.insert(
            p,
            Live {
                gen,
                pid,
                pgid: own.then_some(pid),
                leader_alive: true,
                group_alive: own,
                done_tx: Some(done_tx),
                check,
                _notify: notify_dir,
                registered: def.die_with_parent,
                failed: spawned.failed,
                cpu_ms: None,
                stopped: false,
                asked: false,
                killed: false,
            },
        );
        *self.per_slot.entry(s).or_default() += 1;
        Outcome::Started { pid }
    }
}
