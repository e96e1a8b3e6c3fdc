//! The supervisor: one state machine, driven by one message queue.
//!
//! Everything that happens — a signal, a reaped child, a ladder deadline, a
//! ready check, a restart timer — becomes a [`Msg`] on one channel, handled
//! one at a time by `Sup::handle`. There is no shared mutable state and no
//! work in signal context. The topology is `Running` (start groups as their
//! `after` conditions hold, supervise, run handlers) or `Draining` (stop
//! stages in reverse dependency order), then done.
//!
//! A process is addressed by `(slot, index)`: `slot` is its group's place in
//! `Sup::groups`, which only grows (a reload retires a slot and adds a
//! new one), so addresses stay valid. Every spawn gets a fresh generation
//! number; timers and checks carry it, and stale ones are ignored.
//!
//! Stop-sent is per incarnation (`Proc::stop`): a process is never sent
//! its ladder twice, however many drain signals arrive, and a forwarded
//! ladder signal is that ladder step. Bursts, acknowledgement, escalation,
//! the hangup rule and handler coalescing are decided by `core::signals`.
//!
//! This file holds the types, the message loop and the end conditions;
//! `handlers.rs` the signal handlers and reload, `lifecycle.rs` starting,
//! exits, restarts and stop ladders.

use super::core::signals::{self, Cause, Drain, Verdict};
use super::events::{Event, EventSink, Who};
use super::guard::Guard;
use super::logs::{self, ReaderCfg};
use super::policy::{self, Window};
use super::ready::{self, Check, NotifyDir};
use super::reap::{self, Status, Waiters};
use super::spawn::{self, Inherited, SpawnSpec};
use super::UpOptions;
use crate::ast::{AfterState, FinishWhen, Probe, ProcessGroupMode, StopTarget, Timeout};
use crate::model::{Group, GroupId, Sig, Step};
use crate::plan::{Placeholders, Plan, ProcessSpec};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

mod handlers;
mod lifecycle;

/// Added to every ladder step's drain: the child sees the signal a little
/// after it is sent (scheduling), and it is owed the whole drain from then.
/// Well inside the 100 ms precision the README promises for the SIGKILL
/// at a deadline.
const DEADLINE_GRACE: Duration = Duration::from_millis(10);
/// How often a group whose leader is gone is checked for emptiness.
const GROUP_POLL: Duration = Duration::from_millis(20);
/// Processes spawned between two looks at the message queue.
const SPAWN_BATCH: usize = 128;
/// First retry delay when a spawn hits EMFILE/EAGAIN (doubling to 1 s,
/// at most `core::SPAWN_TRIES` tries).
use super::core::SPAWN_RETRY;

#[derive(Debug)]
pub enum Msg {
    /// A signal and when its stream delivered it (the burst window is
    /// measured between arrivals, not between supervisor steps).
    Signal(Sig, Instant),
    /// SIGCHLD arrived (at least once): reap every exited child now.
    Child,
    Deadline {
        gen: u64,
        step: usize,
    },
    RestartDue {
        gen: u64,
    },
    SpawnRetry {
        slot: usize,
        index: usize,
    },
    PollGroups,
    /// More spawns are pending: handle what is queued, then go on.
    Continue,
    Ready {
        gen: u64,
    },
    ReadyTimeout {
        gen: u64,
    },
    HandlerTimeout {
        id: u64,
    },
    /// The guard process died (its pidfd fired): start a new one.
    GuardLost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Never spawned in this slot (or waiting for a spawn retry).
    Idle,
    /// Leader or process group alive.
    Running,
    /// Leader reaped and group empty.
    Down,
}

struct StopState {
    step: usize,
    /// When the current step's drain ends; a pause moves it later.
    due: Option<Instant>,
}

impl StopState {
    /// Started for this incarnation by a ladder step or a forward.
    fn at(step: usize) -> StopState {
        StopState { step, due: None }
    }
}

struct Proc {
    spec: ProcessSpec,
    who: Who,
    gen: u64,
    phase: Phase,
    pid: i32,
    /// Our own process group, while it may have members.
    pgid: Option<i32>,
    leader_alive: bool,
    group_alive: bool,
    ready: bool,
    ever_started: bool,
    ever_ready: bool,
    status: Option<Status>,
    /// The ladder was started for this incarnation (never twice).
    stop: Option<StopState>,
    /// The exit is expected (a stop or a handler caused it).
    expected: bool,
    /// The whole process group was sent SIGKILL (leftovers, deadline or
    /// escalation): it is only waited for now.
    leftovers_killed: bool,
    started_at: Instant,
    attempts: u32,
    window: Window,
    restart_pending: bool,
    /// Exited while a handler held the group: the policy runs on release.
    deferred: bool,
    done_tx: Option<watch::Sender<bool>>,
    check: Option<JoinHandle<()>>,
    notify: Option<NotifyDir>,
    registered: bool,
    /// Reports a failed chdir/exec of the current incarnation.
    exec_err: Option<std::os::fd::OwnedFd>,
    exec_failed: Option<(spawn::ExecStage, i32)>,
    /// Its group has started; the spawn is queued (see `spawn_pending`).
    want_spawn: bool,
    /// Spawns in a row that ran out of a resource (EMFILE, EAGAIN, …).
    spawn_tries: u32,
}

struct GroupRt {
    def: Group,
    gid: GroupId,
    procs: Vec<Proc>,
    started: bool,
    /// Drained by a handler (`drain G`): stays down.
    drained: bool,
    /// A handler is managing it: its restart policy stands aside.
    hold: bool,
    failed: bool,
    retired: bool,
    /// Serialised definition, to detect changes on reload.
    fingerprint: String,
}

impl GroupRt {
    fn alive(&self) -> bool {
        self.procs.iter().any(|p| p.phase == Phase::Running)
    }
    /// Every process ran and is down with no restart coming.
    fn ended(&self) -> bool {
        self.started
            && self
                .procs
                .iter()
                .all(|p| p.phase == Phase::Down && !p.restart_pending && p.ever_started)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Running,
    Draining,
    Done,
}

enum Waiting {
    /// Until every process of these slots is down.
    Down(Vec<usize>),
    /// `restart` (not rolling): stop all, then start all.
    RestartStop(Vec<usize>),
    /// `restart rolling`: the remaining (slot, index) pairs; `current` is
    /// stopping (false) or starting and awaiting ready (true).
    Rolling {
        todo: VecDeque<(usize, usize)>,
        current: Option<(usize, usize, bool)>,
    },
    /// `wait G… within D`
    Wait { slots: Vec<usize>, id: u64 },
}

struct HandlerRun {
    sig: Sig,
    steps: Vec<Step>,
    next: usize,
    waiting: Option<Waiting>,
    held: Vec<usize>,
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

/// The signal rules that still apply once the supervisor has returned and
/// the output is being flushed: the drain's burst window and escalation go
/// on until `up` returns (docs/events.md, "Ending").
pub struct Late {
    drain: Drain,
    drain_sigs: Vec<Sig>,
    escalate: crate::ast::Escalate,
}

impl Late {
    /// A signal arrived at `at` after the topology was down.
    pub fn on_signal(&mut self, sig: Sig, at: Instant) -> Verdict {
        self.drain
            .on_signal(self.drain_sigs.contains(&sig), at, self.escalate)
    }
}

pub struct Sup {
    plan: Plan,
    /// Signals with a stream (a reload may add some).
    caught: Vec<i32>,
    /// SIGHUP is a terminal hangup: it drains (`core::signals`).
    hangup_drains: bool,
    ctx: Ctx,
    tx: mpsc::UnboundedSender<Msg>,
    groups: Vec<GroupRt>,
    /// Plan GroupId → slot.
    cur: Vec<usize>,
    by_pid: HashMap<i32, (usize, usize)>,
    next_gen: u64,
    mode: Mode,
    /// The whole-topology drain, as the signal rules see it (burst window,
    /// acknowledgement; `core::signals`).
    drain: Option<Drain>,
    escalated: bool,
    code: Option<i32>,
    readers: Vec<JoinHandle<()>>,
    queue: VecDeque<Sig>,
    handler: Option<HandlerRun>,
    next_timer_id: u64,
    poll_armed: bool,
    /// Per plan group: the groups that must be down before it stops (set
    /// when the drain begins; the plan cannot change while draining).
    stop_waits: Vec<Vec<crate::model::GroupId>>,
}

use super::core::fingerprint;

fn status_text(st: Status) -> String {
    match st {
        Status::Code(c) => format!("code {c}"),
        Status::Signal(_) => st.signal_name().unwrap_or("a signal").to_string(),
    }
}

fn sig_name(s: Sig) -> &'static str {
    s.name()
}

impl Sup {
    pub fn new(
        plan: Plan,
        ctx: Ctx,
        tx: mpsc::UnboundedSender<Msg>,
        caught: Vec<i32>,
        hangup_drains: bool,
    ) -> Sup {
        let mut sup = Sup {
            plan,
            caught,
            hangup_drains,
            ctx,
            tx,
            groups: Vec::new(),
            cur: Vec::new(),
            by_pid: HashMap::new(),
            next_gen: 1,
            mode: Mode::Running,
            drain: None,
            escalated: false,
            code: None,
            readers: Vec::new(),
            queue: VecDeque::new(),
            handler: None,
            next_timer_id: 1,
            poll_armed: false,
            stop_waits: Vec::new(),
        };
        let plan = sup.plan.clone();
        sup.cur = sup.add_groups(&plan);
        sup
    }

    fn add_groups(&mut self, plan: &Plan) -> Vec<usize> {
        let mut cur = Vec::new();
        for (gid, g) in plan.topology.groups.iter().enumerate() {
            cur.push(self.add_group(plan, gid, g));
        }
        cur
    }

    fn add_group(&mut self, plan: &Plan, gid: GroupId, g: &Group) -> usize {
        let specs: Vec<ProcessSpec> = plan
            .processes
            .iter()
            .filter(|p| p.group == gid)
            .cloned()
            .collect();
        let fp = fingerprint(plan, gid);
        let procs = specs
            .into_iter()
            .map(|spec| Proc {
                who: Who {
                    process: spec.id.clone(),
                    group: g.name.node.clone(),
                    index: spec.index,
                },
                spec,
                gen: 0,
                phase: Phase::Idle,
                pid: 0,
                pgid: None,
                leader_alive: false,
                group_alive: false,
                ready: false,
                ever_started: false,
                ever_ready: false,
                status: None,
                stop: None,
                expected: false,
                leftovers_killed: false,
                started_at: Instant::now(),
                attempts: 0,
                window: Window::default(),
                restart_pending: false,
                deferred: false,
                done_tx: None,
                check: None,
                notify: None,
                registered: false,
                exec_err: None,
                exec_failed: None,
                want_spawn: false,
                spawn_tries: 0,
            })
            .collect();
        self.groups.push(GroupRt {
            def: g.clone(),
            gid,
            procs,
            started: false,
            drained: false,
            hold: false,
            failed: false,
            retired: false,
            fingerprint: fp,
        });
        self.groups.len() - 1
    }

    fn emit(&self, e: Event) {
        self.ctx.events.emit(e);
    }

    /// End of a step: hand the batched events and guard removals on.
    fn flush(&mut self) {
        self.ctx.events.flush();
        if let Some(guard) = &mut self.ctx.guard {
            guard.flush();
        }
    }

    fn after_ms(&self, d: Duration, msg: Msg) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            let _ = tx.send(msg);
        });
    }

    /// Run until every process group is gone; returns the exit status, the
    /// context and the output readers still flushing.
    pub async fn run(
        mut self,
        rx: &mut mpsc::UnboundedReceiver<Msg>,
    ) -> (i32, Ctx, Vec<JoinHandle<()>>, Late) {
        self.emit(Event::Starting {
            topology: self.plan.topology.name.node.clone(),
            groups: self.plan.topology.groups.len(),
            processes: self.plan.processes.len(),
            containment: if self.ctx.cgroup.is_some() {
                "cgroup"
            } else {
                "process-group"
            },
        });
        self.progress();
        self.flush();
        while self.mode != Mode::Done {
            let Some(msg) = rx.recv().await else { break };
            let mut more = matches!(msg, Msg::Continue);
            self.handle(msg);
            // Handle what is already queued before re-evaluating.
            while let Ok(msg) = rx.try_recv() {
                more |= matches!(msg, Msg::Continue);
                self.handle(msg);
            }
            if more {
                // A long start in progress: let the runtime poll its
                // drivers (signals, exits) before the next batch of spawns.
                // (Twice: the first lets the drivers wake the signal and
                // reaper tasks, the second lets those tasks run.)
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                while let Ok(msg) = rx.try_recv() {
                    self.handle(msg);
                }
            }
            self.progress();
            self.flush();
        }
        self.flush();
        let code = self.code.unwrap_or(0);
        let drain_sigs = self
            .plan
            .topology
            .handlers
            .iter()
            .map(|h| h.signal.node)
            .chain(self.hangup_drains.then_some(Sig::HUP))
            .filter(|&s| self.is_drain_handler(s))
            .collect();
        let late = Late {
            // A run that ended by itself: the first request is only
            // acknowledged, as during a drain the topology began.
            drain: self
                .drain
                .unwrap_or_else(|| Drain::new(Cause::Topology, Instant::now())),
            drain_sigs,
            escalate: self.plan.topology.escalate,
        };
        (code, self.ctx, std::mem::take(&mut self.readers), late)
    }

    // ----- messages -------------------------------------------------------

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Signal(sig, at) => self.on_signal(sig, at),
            Msg::Child => {
                for (pid, status) in reap::reap_all(&self.ctx.waiters) {
                    self.on_reaped(pid, status);
                }
            }
            Msg::Deadline { gen, step } => self.on_deadline(gen, step),
            Msg::RestartDue { gen } => {
                if let Some((s, i)) = self.find_gen(gen) {
                    let p = &mut self.groups[s].procs[i];
                    if p.restart_pending && p.phase == Phase::Down {
                        p.restart_pending = false;
                        if self.mode == Mode::Running {
                            self.spawn_proc(s, i);
                        }
                    }
                }
            }
            Msg::SpawnRetry { slot, index } => {
                let p = &self.groups[slot].procs[index];
                if self.mode == Mode::Running && p.phase != Phase::Running && p.restart_pending {
                    self.groups[slot].procs[index].restart_pending = false;
                    self.spawn_proc(slot, index);
                }
            }
            Msg::PollGroups => {
                self.poll_armed = false;
                self.check_all_groups();
            }
            Msg::Continue => {}
            Msg::Ready { gen } => {
                if let Some((s, i)) = self.find_gen(gen) {
                    let p = &mut self.groups[s].procs[i];
                    if p.phase == Phase::Running && !p.ready {
                        p.ready = true;
                        p.ever_ready = true;
                        let who = p.who.clone();
                        self.emit(Event::Ready { who });
                    }
                }
            }
            Msg::ReadyTimeout { gen } => {
                if let Some((s, i)) = self.find_gen(gen) {
                    let p = &self.groups[s].procs[i];
                    if p.phase == Phase::Running && !p.ready && p.stop.is_none() {
                        let reason = format!("{} ready check timed out", p.who.process);
                        self.fail_group(s, reason);
                    }
                }
            }
            Msg::GuardLost => {
                if let Some(g) = &mut self.ctx.guard {
                    g.respawn(&self.ctx.events, &self.tx);
                }
            }
            Msg::HandlerTimeout { id } => {
                if let Some(h) = &mut self.handler {
                    if matches!(&h.waiting, Some(Waiting::Wait { id: w, .. }) if *w == id) {
                        h.waiting = None;
                    }
                }
            }
        }
    }

    fn find_gen(&self, gen: u64) -> Option<(usize, usize)> {
        for (s, g) in self.groups.iter().enumerate() {
            for (i, p) in g.procs.iter().enumerate() {
                if p.gen == gen {
                    return Some((s, i));
                }
            }
        }
        None
    }

    // ----- progress ---------------------------------------------------------

    fn progress(&mut self) {
        if self.mode == Mode::Running {
            self.run_handler();
        }
        if self.mode == Mode::Running {
            self.try_start_groups();
            self.check_finish();
        }
        if self.mode == Mode::Draining {
            self.advance_drain();
        }
    }

    fn check_finish(&mut self) {
        if let Some(f) = &self.plan.topology.finish {
            if let Some(&s) = self.cur.get(f.group.node) {
                let g = &self.groups[s];
                if g.ended() {
                    let failing = g.procs.iter().find_map(|p| {
                        p.status
                            .filter(|st| !st.success())
                            .map(|st| (p.who.process.clone(), st))
                    });
                    match (f.when, failing) {
                        (FinishWhen::Exits, failing) => {
                            let code = failing.map_or(0, |(_, st)| st.exit_code());
                            self.begin_drain("finish".to_string(), code, Cause::Topology);
                        }
                        (FinishWhen::Succeeds, None) => {
                            self.begin_drain("finish".to_string(), 0, Cause::Topology);
                        }
                        (FinishWhen::Succeeds, Some((who, st))) => {
                            let reason = format!(
                                "`finish when {} succeeds` can no longer be met: {who} exited with {}",
                                g.def.name.node,
                                status_text(st)
                            );
                            self.fail_group(s, reason);
                        }
                    }
                    return;
                }
            }
        }
        // Nothing alive, nothing pending, no handler running: every group
        // has ended (or can never start).
        let idle = self.groups.iter().all(|g| {
            g.procs
                .iter()
                .all(|p| p.phase != Phase::Running && !p.restart_pending && !p.want_spawn)
        });
        if idle && self.handler.is_none() && self.queue.is_empty() {
            let current: Vec<&GroupRt> = self.cur.iter().map(|&s| &self.groups[s]).collect();
            let clean = current.iter().all(|g| {
                g.drained
                    || (g.started
                        && g.procs
                            .iter()
                            .all(|p| p.status.map_or(true, Status::success)))
            });
            if self.code.is_none() {
                self.code = Some(if clean { 0 } else { 1 });
            }
            self.mode = Mode::Done;
        }
    }
}

/// Send `sig` to the leader, or to the whole group when `target` is
/// `group` and the process has its own group. Followed by SIGCONT so a
/// stopped process can act on it.
fn signal_target(target: StopTarget, pid: Option<i32>, pgid: Option<i32>, sig: i32) {
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
                if cont {
                    libc::kill(p, libc::SIGCONT);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Plan {
        let c = crate::compile(crate::source::SourceFile::new("t.pf", text), None);
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
        crate::plan::build(c.model.as_ref().unwrap(), &Default::default())
    }

    fn fp(p: &Plan, name: &str) -> String {
        fingerprint(p, p.topology.group_by_name(name).unwrap())
    }

    #[test]
    fn fingerprint_ignores_position_but_sees_every_change() {
        let a = plan(
            "topology t {\n group db { run \"db\" }\n group api { run \"api {index}\"\n processes 2\n after db started }\n}\n",
        );
        // A new group before both moves every index, and `api` is unchanged.
        let b = plan(
            "topology t {\n group cache { run \"c\" }\n group db { run \"db\" }\n group api { run \"api {index}\"\n processes 2\n after db started }\n}\n",
        );
        assert_eq!(fp(&a, "api"), fp(&b, "api"));
        assert_eq!(fp(&a, "db"), fp(&b, "db"));
        let c = plan(
            "topology t {\n group db { run \"db\" }\n group api { run \"api {index}\"\n processes 3\n after db started }\n}\n",
        );
        assert_ne!(fp(&a, "api"), fp(&c, "api"));
        let d = plan(
            "topology t {\n group db { run \"db\" }\n group api { run \"api {index}\"\n processes 2\n env { A = \"1\" }\n after db started }\n}\n",
        );
        assert_ne!(fp(&a, "api"), fp(&d, "api"));
    }
}
