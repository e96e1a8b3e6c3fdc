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
//! its ladder twice, however many drain signals arrive.
//!
//! This file holds the types, the message loop and the end conditions;
//! `handlers.rs` the signal handlers and reload, `lifecycle.rs` starting,
//! exits, restarts and stop ladders.

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
/// Well inside the 100 ms precision the spec promises.
const DEADLINE_GRACE: Duration = Duration::from_millis(10);
/// How often a group whose leader is gone is checked for emptiness.
const GROUP_POLL: Duration = Duration::from_millis(20);
/// Processes spawned between two looks at the message queue.
const SPAWN_BATCH: usize = 128;
/// Retry delay when a spawn hits EMFILE/EAGAIN.
const SPAWN_RETRY: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub enum Msg {
    Signal(Sig),
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

pub struct Sup {
    plan: Plan,
    ctx: Ctx,
    tx: mpsc::UnboundedSender<Msg>,
    groups: Vec<GroupRt>,
    /// Plan GroupId → slot.
    cur: Vec<usize>,
    by_pid: HashMap<i32, (usize, usize)>,
    next_gen: u64,
    mode: Mode,
    /// The message batch in which the drain began: repeats of the drain
    /// signal already queued with it are one burst, not an escalation.
    drain_batch: Option<u64>,
    batch: u64,
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

/// A group's resolved definition, independent of its position in the file:
/// the group model with `after` edges by name, and every process's spec
/// without its group index.
fn fingerprint(plan: &Plan, gid: GroupId) -> String {
    let g = &plan.topology.groups[gid];
    let mut v = serde_json::to_value(g).unwrap_or_default();
    if let Some(after) = v.get_mut("after").and_then(|a| a.as_array_mut()) {
        for (a, model) in after.iter_mut().zip(&g.after) {
            let name = plan
                .topology
                .groups
                .get(model.group)
                .map(|d| d.name.node.clone());
            a["group"] = name.into();
        }
    }
    let mut out = v.to_string();
    for p in plan.processes.iter().filter(|p| p.group == gid) {
        let mut pv = serde_json::to_value(p).unwrap_or_default();
        if let Some(o) = pv.as_object_mut() {
            o.remove("group");
        }
        out.push_str(&pv.to_string());
    }
    out
}

fn sig_name(s: Sig) -> &'static str {
    s.name()
}

impl Sup {
    pub fn new(plan: Plan, ctx: Ctx, tx: mpsc::UnboundedSender<Msg>) -> Sup {
        let mut sup = Sup {
            plan,
            ctx,
            tx,
            groups: Vec::new(),
            cur: Vec::new(),
            by_pid: HashMap::new(),
            next_gen: 1,
            mode: Mode::Running,
            drain_batch: None,
            batch: 0,
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
        mut rx: mpsc::UnboundedReceiver<Msg>,
    ) -> (i32, Ctx, Vec<JoinHandle<()>>) {
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
            self.batch += 1;
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
        (code, self.ctx, std::mem::take(&mut self.readers))
    }

    // ----- messages -------------------------------------------------------

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Signal(sig) => self.on_signal(sig),
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
                    let code = g
                        .procs
                        .iter()
                        .filter_map(|p| p.status)
                        .find(|st| !st.success())
                        .map_or(0, Status::exit_code);
                    let code = match f.when {
                        FinishWhen::Exits | FinishWhen::Succeeds => code,
                    };
                    self.begin_drain("finish".to_string(), code);
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
