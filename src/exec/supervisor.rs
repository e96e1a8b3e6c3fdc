//! The supervisor: one state machine, driven by one message queue.
//!
//! Everything that happens — a signal, a reaped child, a ladder deadline, a
//! ready check, a restart timer — becomes a [`Msg`] on one channel, handled
//! one at a time by [`Sup::handle`]. There is no shared mutable state and no
//! work in signal context. The topology is `Running` (start groups as their
//! `after` conditions hold, supervise, run handlers) or `Draining` (stop
//! stages in reverse dependency order), then done.
//!
//! A process is addressed by `(slot, index)`: `slot` is its group's place in
//! [`Sup::groups`], which only grows (a reload retires a slot and adds a
//! new one), so addresses stay valid. Every spawn gets a fresh generation
//! number; timers and checks carry it, and stale ones are ignored.
//!
//! Stop-sent is per incarnation ([`Proc::stop`]): a process is never sent
//! its ladder twice, however many drain signals arrive.

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
    Reaped(i32, Status),
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
    drain_stage: usize,
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
            drain_stage: 0,
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
        });
        self.progress();
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
        }
        let code = self.code.unwrap_or(0);
        (code, self.ctx, std::mem::take(&mut self.readers))
    }

    // ----- messages -------------------------------------------------------

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Signal(sig) => self.on_signal(sig),
            Msg::Reaped(pid, status) => self.on_reaped(pid, status),
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

    // ----- signals and handlers -------------------------------------------

    fn is_drain_handler(&self, sig: Sig) -> bool {
        self.plan.topology.handler(sig).is_some_and(|h| {
            h.steps.iter().any(|s| {
                matches!(&s.node, Step::Drain { groups } if groups.is_empty())
                    || matches!(s.node, Step::Kill)
            })
        })
    }

    fn on_signal(&mut self, sig: Sig) {
        self.emit(Event::Signal {
            signal: sig_name(sig),
        });
        let drains = self.is_drain_handler(sig);
        match self.mode {
            Mode::Done => {}
            Mode::Draining => {
                let within = self.drain_batch == Some(self.batch);
                if drains
                    && !within
                    && !self.escalated
                    && self.plan.topology.escalate == crate::ast::Escalate::OnRepeat
                {
                    self.escalate(sig);
                }
            }
            Mode::Running => {
                let Some(h) = self.plan.topology.handler(sig) else {
                    return; // no handler: ignored (logged above)
                };
                let steps: Vec<Step> = h.steps.iter().map(|s| s.node.clone()).collect();
                if steps.first() == Some(&Step::Drain { groups: vec![] }) {
                    // A whole-topology drain preempts any running handler.
                    self.handler = None;
                    self.queue.clear();
                    self.begin_drain(sig_name(sig).to_string(), 0);
                    return;
                }
                self.queue.push_back(sig);
            }
        }
    }

    fn escalate(&mut self, sig: Sig) {
        self.escalated = true;
        self.emit(Event::Escalating {
            signal: sig_name(sig),
        });
        self.code = Some(self.code.map_or(1, |c| if c == 0 { 1 } else { c }));
        self.kill_everything("escalation");
    }

    fn kill_everything(&mut self, reason: &'static str) {
        for s in 0..self.groups.len() {
            for i in 0..self.groups[s].procs.len() {
                if self.groups[s].procs[i].phase == Phase::Running {
                    self.kill_proc(s, i, reason);
                }
            }
        }
    }

    fn start_next_handler(&mut self) {
        while self.handler.is_none() && self.mode == Mode::Running {
            let Some(sig) = self.queue.pop_front() else {
                return;
            };
            let Some(h) = self.plan.topology.handler(sig) else {
                continue;
            };
            let steps = h.steps.iter().map(|s| s.node.clone()).collect();
            self.handler = Some(HandlerRun {
                sig,
                steps,
                next: 0,
                waiting: None,
                held: Vec::new(),
            });
        }
    }

    fn slots_of(&self, groups: &[crate::source::Spanned<GroupId>]) -> Vec<usize> {
        groups
            .iter()
            .filter_map(|g| self.cur.get(g.node).copied())
            .collect()
    }

    fn hold(&mut self, slots: &[usize]) {
        for &s in slots {
            self.groups[s].hold = true;
            if let Some(h) = &mut self.handler {
                if !h.held.contains(&s) {
                    h.held.push(s);
                }
            }
        }
    }

    /// Advance the current handler as far as it can go now.
    fn run_handler(&mut self) {
        loop {
            if self.mode != Mode::Running {
                self.handler = None;
                return;
            }
            self.start_next_handler();
            let Some(h) = &mut self.handler else { return };
            if let Some(w) = h.waiting.take() {
                match self.advance_wait(w) {
                    Some(w) => {
                        if let Some(h) = &mut self.handler {
                            h.waiting = Some(w);
                        }
                        return;
                    }
                    None => continue,
                }
            }
            let Some(h) = &mut self.handler else { return };
            if h.next >= h.steps.len() {
                let held = std::mem::take(&mut h.held);
                self.handler = None;
                self.release(&held);
                continue;
            }
            let step = h.steps[h.next].clone();
            let sig = h.sig;
            let rest: Vec<Step> = h.steps[h.next + 1..].to_vec();
            h.next += 1;
            self.exec_step(sig, step, &rest);
        }
    }

    fn release(&mut self, held: &[usize]) {
        for &s in held {
            self.groups[s].hold = false;
            for i in 0..self.groups[s].procs.len() {
                if self.groups[s].procs[i].deferred {
                    self.groups[s].procs[i].deferred = false;
                    self.groups[s].procs[i].expected = false;
                    self.apply_policy(s, i);
                }
            }
        }
    }

    fn exec_step(&mut self, sig: Sig, step: Step, rest: &[Step]) {
        match step {
            Step::Ignore => {}
            Step::Kill => {
                self.begin_drain(sig_name(sig).to_string(), 1);
                self.escalated = true;
                self.kill_everything("escalation");
            }
            Step::Drain { groups } if groups.is_empty() => {
                self.begin_drain(sig_name(sig).to_string(), 0);
            }
            Step::Drain { groups } => {
                let slots = self.slots_of(&groups);
                for &s in &slots {
                    self.groups[s].drained = true;
                }
                self.hold(&slots);
                self.stop_slots(&slots);
                self.set_waiting(Waiting::Down(slots));
            }
            Step::Restart { groups, rolling } => {
                let slots: Vec<usize> = self
                    .slots_of(&groups)
                    .into_iter()
                    .filter(|&s| self.groups[s].started)
                    .collect();
                self.hold(&slots);
                for &s in &slots {
                    self.groups[s].drained = false;
                }
                if rolling {
                    let todo = slots
                        .iter()
                        .flat_map(|&s| (0..self.groups[s].procs.len()).map(move |i| (s, i)))
                        .collect();
                    self.set_waiting(Waiting::Rolling {
                        todo,
                        current: None,
                    });
                } else {
                    self.stop_slots(&slots);
                    self.set_waiting(Waiting::RestartStop(slots));
                }
            }
            Step::Reload => self.reload(),
            Step::Forward { signal, groups } => {
                let fsig = signal.map_or(sig, |s| s.node);
                let slots = self.slots_of(&groups);
                // The handler waits for or restarts these groups later: their
                // exits are expected.
                let managed: Vec<usize> = slots
                    .iter()
                    .copied()
                    .filter(|&s| {
                        rest.iter().any(|st| match st {
                            Step::Wait { groups, .. } | Step::Restart { groups, .. } => {
                                self.slots_of(groups).contains(&s)
                            }
                            _ => false,
                        })
                    })
                    .collect();
                self.hold(&managed);
                for &s in &slots {
                    for i in 0..self.groups[s].procs.len() {
                        self.forward(s, i, fsig);
                    }
                }
            }
            Step::Wait { groups, within } => {
                let slots = self.slots_of(&groups);
                let id = self.next_timer_id;
                self.next_timer_id += 1;
                if let Some(Timeout::Finite(d)) = within {
                    self.after_ms(d, Msg::HandlerTimeout { id });
                }
                self.set_waiting(Waiting::Wait { slots, id });
            }
        }
    }

    fn set_waiting(&mut self, w: Waiting) {
        if let Some(h) = &mut self.handler {
            h.waiting = Some(w);
        }
    }

    fn slots_down(&self, slots: &[usize]) -> bool {
        slots.iter().all(|&s| !self.groups[s].alive())
    }

    /// `Some` while the wait continues.
    fn advance_wait(&mut self, w: Waiting) -> Option<Waiting> {
        match w {
            Waiting::Down(slots) => (!self.slots_down(&slots)).then_some(Waiting::Down(slots)),
            Waiting::Wait { slots, id } => {
                (!self.slots_down(&slots)).then_some(Waiting::Wait { slots, id })
            }
            Waiting::RestartStop(slots) => {
                if !self.slots_down(&slots) {
                    return Some(Waiting::RestartStop(slots));
                }
                for &s in &slots {
                    for i in 0..self.groups[s].procs.len() {
                        self.respawn(s, i);
                    }
                }
                None
            }
            Waiting::Rolling { mut todo, current } => {
                match current {
                    Some((s, i, false)) => {
                        if self.groups[s].procs[i].phase == Phase::Running {
                            return Some(Waiting::Rolling { todo, current });
                        }
                        self.respawn(s, i);
                        return Some(Waiting::Rolling {
                            todo,
                            current: Some((s, i, true)),
                        });
                    }
                    Some((s, i, true)) => {
                        let p = &self.groups[s].procs[i];
                        if p.phase == Phase::Running && !p.ready {
                            return Some(Waiting::Rolling { todo, current });
                        }
                    }
                    None => {}
                }
                let (s, i) = todo.pop_front()?;
                self.stop_proc(s, i);
                Some(Waiting::Rolling {
                    todo,
                    current: Some((s, i, false)),
                })
            }
        }
    }

    fn respawn(&mut self, s: usize, i: usize) {
        let p = &mut self.groups[s].procs[i];
        if p.phase != Phase::Running {
            p.restart_pending = false;
            p.deferred = false;
            self.spawn_proc(s, i);
        }
    }

    fn forward(&mut self, s: usize, i: usize, sig: Sig) {
        let g = &self.groups[s];
        let p = &g.procs[i];
        if p.phase != Phase::Running {
            return;
        }
        let target = self.target_of(s, i);
        let pid = p.leader_alive.then_some(p.pid);
        let pgid = p.pgid.filter(|_| p.group_alive);
        signal_target(target, pid, pgid, sig.number());
    }

    // ----- reload ------------------------------------------------------------

    fn reload(&mut self) {
        self.emit(Event::Reloading);
        let file = &self.ctx.opts.file;
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                self.emit(Event::ReloadRejected {
                    errors: vec![format!("{}: {e}", file.display())],
                });
                return;
            }
        };
        let src = crate::source::SourceFile::new(file.display().to_string(), text);
        let compiled = crate::compile(src, None);
        let model = match (&compiled.model, compiled.has_errors()) {
            (Some(m), false) => m.clone(),
            _ => {
                let errors = compiled
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity == crate::diagnostic::Severity::Error)
                    .map(|d| crate::render::short_line(&compiled.source, d))
                    .collect();
                self.emit(Event::ReloadRejected { errors });
                return;
            }
        };
        let plan = crate::plan::build(&model, &self.ctx.opts.scale);
        let mut new_cur = Vec::new();
        let mut changed = Vec::new();
        let mut kept = Vec::new();
        for (gid, g) in plan.topology.groups.iter().enumerate() {
            let fp = fingerprint(&plan, gid);
            let old = self
                .cur
                .iter()
                .copied()
                .find(|&s| self.groups[s].def.name.node == g.name.node);
            match old {
                Some(s) if self.groups[s].fingerprint == fp => {
                    // Unchanged: keep running; only its id in the new plan moves.
                    self.groups[s].gid = gid;
                    for p in &mut self.groups[s].procs {
                        p.spec.group = gid;
                    }
                    kept.push(s);
                    new_cur.push(s);
                }
                _ => {
                    changed.push(g.name.node.clone());
                    new_cur.push(self.add_group(&plan, gid, g));
                }
            }
        }
        // Retire every old slot that is not kept (changed or removed).
        let mut retire = Vec::new();
        for &s in &self.cur {
            if !kept.contains(&s) {
                self.groups[s].retired = true;
                self.groups[s].drained = true;
                retire.push(s);
                let name = &self.groups[s].def.name.node;
                if !plan.topology.groups.iter().any(|g| &g.name.node == name)
                    && !changed.contains(name)
                {
                    changed.push(name.clone());
                }
            }
        }
        self.cur = new_cur;
        self.plan = plan;
        self.stop_slots(&retire);
        changed.sort();
        self.emit(Event::Reloaded { changed });
    }

    // ----- starting ---------------------------------------------------------

    fn condition_met(&self, dep: GroupId, state: AfterState) -> bool {
        let Some(&s) = self.cur.get(dep) else {
            return true;
        };
        let g = &self.groups[s];
        if !g.started {
            return false;
        }
        match state {
            AfterState::Started => g.procs.iter().all(|p| p.ever_started),
            AfterState::Ready => g.procs.iter().all(|p| p.ever_ready),
            AfterState::Succeeded => {
                g.ended()
                    && g.procs
                        .iter()
                        .all(|p| p.status.is_some_and(Status::success))
            }
            AfterState::Exited => g.ended(),
        }
    }

    fn try_start_groups(&mut self) {
        if self.mode != Mode::Running {
            return;
        }
        let mut order: Vec<GroupId> = self.plan.start_stages.iter().flatten().copied().collect();
        for gid in 0..self.cur.len() {
            if !order.contains(&gid) {
                order.push(gid);
            }
        }
        for gid in order {
            let Some(&s) = self.cur.get(gid) else {
                continue;
            };
            let g = &self.groups[s];
            if g.started || g.drained || self.mode != Mode::Running {
                continue;
            }
            let deps_ok = g
                .def
                .after
                .iter()
                .all(|a| self.condition_met(a.group, a.state));
            // A reloaded group waits until its retired predecessor is gone.
            let name = &g.def.name.node;
            let predecessor_alive = self
                .groups
                .iter()
                .any(|o| o.retired && &o.def.name.node == name && o.alive());
            if deps_ok && !predecessor_alive {
                self.groups[s].started = true;
                for p in &mut self.groups[s].procs {
                    p.want_spawn = true;
                }
            }
        }
        self.spawn_pending();
    }

    /// Spawn queued processes, at most [`SPAWN_BATCH`] at a time, so that
    /// signals and exits are handled while a large topology starts.
    fn spawn_pending(&mut self) {
        let mut budget = SPAWN_BATCH;
        for s in 0..self.groups.len() {
            for i in 0..self.groups[s].procs.len() {
                if !self.groups[s].procs[i].want_spawn {
                    continue;
                }
                if budget == 0 || self.mode != Mode::Running {
                    if self.mode == Mode::Running {
                        let _ = self.tx.send(Msg::Continue);
                    }
                    return;
                }
                self.groups[s].procs[i].want_spawn = false;
                if self.groups[s].procs[i].phase != Phase::Running {
                    self.spawn_proc(s, i);
                    budget -= 1;
                }
            }
        }
        if budget < SPAWN_BATCH && self.mode == Mode::Running {
            // New processes may satisfy `after … started` conditions.
            let _ = self.tx.send(Msg::Continue);
        }
    }

    fn spawn_proc(&mut self, s: usize, i: usize) {
        if self.mode != Mode::Running {
            return;
        }
        if let Err(reason) = self.validate_ready(s, i) {
            self.fail_group(s, reason);
            return;
        }
        let group_index = self.groups[s].gid;
        let g = &self.groups[s];
        let p = &g.procs[i];
        let cwd = match &p.spec.cwd {
            Some(c) => self.ctx.opts.base_dir.join(c),
            None => self.ctx.opts.base_dir.clone(),
        };
        let mut env = p.spec.env.clone();
        let mut notify = None;
        if let Some(rc) = &g.def.ready {
            if rc.probe == Probe::Notify {
                match NotifyDir::create(&format!("{}", self.next_gen)) {
                    Ok((dir, sock)) => {
                        env.push((
                            "NOTIFY_SOCKET".to_string(),
                            dir.socket.display().to_string(),
                        ));
                        notify = Some((dir, sock));
                    }
                    Err(e) => {
                        let reason = format!("{}: cannot create notify socket: {e}", p.who.process);
                        self.fail_group(s, reason);
                        return;
                    }
                }
            }
        }
        let own = g.def.process_group == ProcessGroupMode::Own;
        let spec = SpawnSpec {
            argv: &p.spec.argv,
            env: &env,
            cwd: &cwd,
            own_group: own,
            die_with_parent: g.def.die_with_parent,
            capture: true,
        };
        let spawned = match spawn::spawn_service(&spec, self.ctx.inherited) {
            Ok(sp) => sp,
            Err(e) if spawn::is_backpressure(&e) => {
                self.groups[s].procs[i].restart_pending = true;
                self.after_ms(SPAWN_RETRY, Msg::SpawnRetry { slot: s, index: i });
                return;
            }
            Err(e) => {
                let reason = format!(
                    "{}: spawn failed: cannot execute {} ({e})",
                    p.who.process,
                    p.spec.argv.first().map_or("", |s| s.as_str())
                );
                self.fail_group(s, reason);
                return;
            }
        };
        let gen = self.next_gen;
        self.next_gen += 1;
        let pid = spawned.pid;
        let die_with_parent = g.def.die_with_parent;
        if die_with_parent {
            if let Some(guard) = &mut self.ctx.guard {
                if own {
                    guard.add_group(pid);
                } else {
                    guard.add_pid(pid);
                }
            }
        }
        let (done_tx, done_rx) = watch::channel(false);
        let ready_def = self.groups[s].def.ready.clone();
        let p = &mut self.groups[s].procs[i];
        p.gen = gen;
        p.pid = pid;
        p.pgid = own.then_some(pid);
        p.leader_alive = true;
        p.group_alive = own;
        p.phase = Phase::Running;
        p.ready = false;
        p.ever_started = true;
        p.status = None;
        p.stop = None;
        p.expected = false;
        p.leftovers_killed = false;
        p.started_at = Instant::now();
        p.restart_pending = false;
        p.deferred = false;
        p.done_tx = Some(done_tx);
        p.registered = die_with_parent;
        p.exec_err = spawned.exec_err;
        p.exec_failed = None;
        self.by_pid.insert(pid, (s, i));
        let who = p.who.clone();
        self.emit(Event::Started { who, pid });

        // Output relay.
        let mut log_ready = None;
        if let Some(rc) = &ready_def {
            if let Probe::Log(re) = &rc.probe {
                let re = self.expand_for(s, i, re);
                if let Ok(re) = regex::Regex::new(&re) {
                    let tx = self.tx.clone();
                    let fire: Box<dyn FnOnce() + Send> = Box::new(move || {
                        let _ = tx.send(Msg::Ready { gen });
                    });
                    log_ready = Some((re, fire));
                }
            }
        }
        if let Some(fd) = spawned.output {
            let cfg = ReaderCfg {
                prefix: logs::prefix(
                    &self.groups[s].procs[i].who.process,
                    group_index,
                    self.ctx.opts.color,
                ),
                timestamps: self.ctx.opts.timestamps,
                out: self.ctx.out.clone(),
                done: done_rx,
                log_ready,
            };
            self.readers.retain(|h| !h.is_finished());
            self.readers.push(tokio::spawn(logs::relay(fd, cfg)));
        }

        // Ready check.
        match ready_def {
            None => {
                let p = &mut self.groups[s].procs[i];
                p.ready = true;
                p.ever_ready = true;
                let who = p.who.clone();
                self.emit(Event::Ready { who });
            }
            Some(rc) => {
                let check = match &rc.probe {
                    Probe::Tcp(a) => Some(Check::Tcp(self.expand_for(s, i, a))),
                    Probe::Http(u) => Some(Check::Http(self.expand_for(s, i, u))),
                    Probe::File(f) => Some(Check::File(cwd.join(self.expand_for(s, i, f)))),
                    Probe::Exec(c) => {
                        let c = self.expand_for(s, i, c);
                        Some(Check::Exec {
                            argv: shell_words::split(&c).unwrap_or_default(),
                            env: env.clone(),
                            cwd: cwd.clone(),
                            waiters: self.ctx.waiters.clone(),
                            inherited: self.ctx.inherited,
                        })
                    }
                    Probe::Notify => notify.map(|(dir, sock)| {
                        self.groups[s].procs[i].notify = Some(dir);
                        Check::Notify(sock)
                    }),
                    Probe::Log(_) => None,
                };
                let tx = self.tx.clone();
                let within = match rc.within {
                    Timeout::Finite(d) => Some(d),
                    Timeout::Forever => None,
                };
                let every = rc.every;
                let handle = tokio::spawn(async move {
                    let passed = async {
                        match check {
                            Some(c) => ready::passed(c, every).await,
                            None => std::future::pending::<()>().await,
                        }
                    };
                    let msg = match within {
                        Some(d) => match tokio::time::timeout(d, passed).await {
                            Ok(()) => Msg::Ready { gen },
                            Err(_) => Msg::ReadyTimeout { gen },
                        },
                        None => {
                            passed.await;
                            Msg::Ready { gen }
                        }
                    };
                    let _ = tx.send(msg);
                });
                self.groups[s].procs[i].check = Some(handle);
            }
        }
    }

    /// A `log` regex that does not compile or an `exec` command that does
    /// not split into words would never pass: fail the group instead.
    fn validate_ready(&self, s: usize, i: usize) -> Result<(), String> {
        let Some(rc) = &self.groups[s].def.ready else {
            return Ok(());
        };
        let who = &self.groups[s].procs[i].who.process;
        match &rc.probe {
            Probe::Log(re) => regex::Regex::new(&self.expand_for(s, i, re))
                .map(|_| ())
                .map_err(|e| {
                    let e = e.to_string();
                    let why = e.lines().last().unwrap_or("").trim_start_matches("error: ");
                    format!("{who}: invalid ready log regex: {why}")
                }),
            Probe::Exec(c) => match shell_words::split(&self.expand_for(s, i, c)) {
                Ok(w) if !w.is_empty() => Ok(()),
                Ok(_) => Err(format!("{who}: empty ready exec command")),
                Err(e) => Err(format!("{who}: ready exec command: {e}")),
            },
            _ => Ok(()),
        }
    }

    fn expand_for(&self, s: usize, i: usize, text: &str) -> String {
        let g = &self.groups[s];
        let p = &g.procs[i];
        Placeholders {
            group: &g.def.name.node,
            index: p.spec.index,
            processes: g.procs.len() as u32,
            coroutines: g.def.coroutines,
            port: p.spec.port,
        }
        .expand(text)
    }

    // ----- exits ------------------------------------------------------------

    fn on_reaped(&mut self, pid: i32, status: Status) {
        if let Some((s, i)) = self.by_pid.remove(&pid) {
            let held = self.groups[s].hold;
            let p = &mut self.groups[s].procs[i];
            if p.pid == pid && p.leader_alive {
                p.leader_alive = false;
                p.status = Some(status);
                if let Some(fd) = p.exec_err.take() {
                    p.exec_failed = spawn::exec_error(&fd);
                }
                let expected = p.expected || p.stop.is_some() || held;
                let who = p.who.clone();
                self.emit(Event::Exited {
                    who,
                    pid,
                    code: match status {
                        Status::Code(c) => Some(c),
                        Status::Signal(_) => None,
                    },
                    signal: status.signal_name(),
                    expected,
                });
                self.check_group(s, i);
                return;
            }
        }
        // An adopted orphan: a group waiting to empty may be done now.
        self.check_all_groups();
    }

    fn check_all_groups(&mut self) {
        for s in 0..self.groups.len() {
            for i in 0..self.groups[s].procs.len() {
                let p = &self.groups[s].procs[i];
                if p.phase == Phase::Running && !p.leader_alive {
                    self.check_group(s, i);
                }
            }
        }
    }

    fn target_of(&self, s: usize, _i: usize) -> StopTarget {
        self.groups[s].def.stop.target
    }

    /// After the leader exited: is the group empty? Kill leftovers of a
    /// leader that exited on its own (or under `to leader`).
    fn check_group(&mut self, s: usize, i: usize) {
        let target = self.target_of(s, i);
        let p = &mut self.groups[s].procs[i];
        if p.leader_alive || p.phase != Phase::Running {
            return;
        }
        if p.group_alive {
            let pgid = p.pgid.unwrap_or(0);
            if !reap::group_alive(pgid) {
                p.group_alive = false;
            } else {
                let ladder_continues = p.stop.is_some() && target == StopTarget::Group;
                if !ladder_continues && !p.leftovers_killed {
                    p.leftovers_killed = true;
                    // SAFETY: our own, non-empty group (see reap.rs).
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                    let who = p.who.clone();
                    self.emit(Event::Killed {
                        who,
                        reason: "leftovers",
                    });
                }
                self.arm_poll();
                return;
            }
        }
        self.proc_down(s, i);
    }

    fn arm_poll(&mut self) {
        if !self.poll_armed {
            self.poll_armed = true;
            self.after_ms(GROUP_POLL, Msg::PollGroups);
        }
    }

    /// The process group is empty: the process is stopped.
    fn proc_down(&mut self, s: usize, i: usize) {
        let p = &mut self.groups[s].procs[i];
        p.phase = Phase::Down;
        p.ready = false;
        if let Some(tx) = p.done_tx.take() {
            let _ = tx.send(true);
        }
        if let Some(h) = p.check.take() {
            h.abort();
        }
        p.notify = None;
        if p.registered {
            p.registered = false;
            if let Some(guard) = &mut self.ctx.guard {
                match p.pgid {
                    Some(g) => guard.remove_group(g),
                    None => guard.remove_pid(p.pid),
                }
            }
        }
        let who = p.who.clone();
        self.emit(Event::Stopped { who });
        self.apply_policy(s, i);
    }

    fn apply_policy(&mut self, s: usize, i: usize) {
        if self.mode != Mode::Running {
            return;
        }
        let g = &self.groups[s];
        let p = &g.procs[i];
        if g.drained || g.retired || g.failed {
            return;
        }
        if g.hold {
            self.groups[s].procs[i].deferred = true;
            return;
        }
        if p.expected {
            return;
        }
        if let Some((stage, errno)) = p.exec_failed {
            let err = std::io::Error::from_raw_os_error(errno);
            let what = match stage {
                spawn::ExecStage::Stdio => "cannot set up stdio".to_string(),
                spawn::ExecStage::Chdir => format!(
                    "cannot change directory to {}",
                    p.spec.cwd.as_deref().unwrap_or(".")
                ),
                spawn::ExecStage::Exec => format!(
                    "cannot execute {}",
                    p.spec.argv.first().map_or("", |s| s.as_str())
                ),
            };
            let reason = format!("{}: spawn failed: {what} ({err})", p.who.process);
            self.fail_group(s, reason);
            return;
        }
        let status = p.status.unwrap_or(Status::Code(0));
        let restart = &g.def.restart;
        if !policy::wants_restart(restart.mode, status.success()) {
            let is_finish = self
                .plan
                .topology
                .finish
                .as_ref()
                .is_some_and(|f| self.cur.get(f.group.node) == Some(&s));
            if g.def.once && !status.success() && !is_finish {
                let reason = format!(
                    "{} exited with {}",
                    p.who.process,
                    match status {
                        Status::Code(c) => format!("code {c}"),
                        Status::Signal(_) => status.signal_name().unwrap_or("").to_string(),
                    }
                );
                self.fail_group(s, reason);
            }
            return;
        }
        let now = Instant::now();
        let (min, max) = (restart.backoff_min, restart.backoff_max);
        let limit = restart.limit.as_ref().map(|l| (l.count, l.per));
        let p = &mut self.groups[s].procs[i];
        if let Some((count, per)) = limit {
            if !p.window.admit(now, count, per) {
                let reason = format!(
                    "{} exceeded its restart limit ({count} per {}ms)",
                    p.who.process,
                    per.as_millis()
                );
                self.fail_group(s, reason);
                return;
            }
        }
        let uptime = now.duration_since(p.started_at);
        p.attempts = if uptime > max.max(Duration::from_secs(1)) {
            1
        } else {
            p.attempts + 1
        };
        let delay = policy::backoff(min, max, p.attempts);
        p.restart_pending = true;
        let (who, attempt, gen) = (p.who.clone(), p.attempts, p.gen);
        self.emit(Event::Restarting {
            who,
            in_ms: delay.as_millis() as u64,
            attempt,
        });
        if delay.is_zero() {
            let _ = self.tx.send(Msg::RestartDue { gen });
        } else {
            self.after_ms(delay, Msg::RestartDue { gen });
        }
    }

    fn fail_group(&mut self, s: usize, reason: String) {
        if self.groups[s].failed {
            return;
        }
        self.groups[s].failed = true;
        self.emit(Event::Failed {
            group: self.groups[s].def.name.node.clone(),
            reason,
        });
        if self.code.map_or(true, |c| c == 0) {
            self.code = Some(1);
        }
        self.begin_drain("failed".to_string(), 1);
    }

    // ----- stopping ---------------------------------------------------------

    fn stop_slots(&mut self, slots: &[usize]) {
        for &s in slots {
            for i in 0..self.groups[s].procs.len() {
                let p = &mut self.groups[s].procs[i];
                p.restart_pending = false;
                self.stop_proc(s, i);
            }
        }
    }

    /// Start the ladder for this incarnation, exactly once.
    fn stop_proc(&mut self, s: usize, i: usize) {
        let p = &mut self.groups[s].procs[i];
        p.expected = true;
        if p.phase != Phase::Running || p.stop.is_some() {
            return;
        }
        p.stop = Some(StopState { step: 0 });
        self.send_step(s, i, 0);
    }

    fn send_step(&mut self, s: usize, i: usize, step: usize) {
        let g = &self.groups[s];
        let Some(ls) = g.def.stop.steps.get(step) else {
            self.kill_proc(s, i, "deadline");
            return;
        };
        let p = &g.procs[i];
        let mut target = g.def.stop.target;
        if target == StopTarget::Leader && !p.leader_alive {
            target = StopTarget::Group;
        }
        signal_target(
            target,
            p.leader_alive.then_some(p.pid),
            p.pgid.filter(|_| p.group_alive),
            ls.signal.number(),
        );
        let target_name = match (target, p.pgid) {
            (StopTarget::Group, Some(_)) => "group",
            _ => "leader",
        };
        let ev = Event::Stopping {
            who: p.who.clone(),
            signal: ls.signal.name(),
            step,
            target: target_name,
        };
        let gen = p.gen;
        let drain = ls.drain;
        self.emit(ev);
        if let Timeout::Finite(d) = drain {
            self.after_ms(d + DEADLINE_GRACE, Msg::Deadline { gen, step });
        }
    }

    fn on_deadline(&mut self, gen: u64, step: usize) {
        let Some((s, i)) = self.find_gen(gen) else {
            return;
        };
        let p = &mut self.groups[s].procs[i];
        if p.phase != Phase::Running {
            return;
        }
        let Some(st) = &mut p.stop else { return };
        if st.step != step {
            return;
        }
        st.step += 1;
        let next = st.step;
        if next < self.groups[s].def.stop.steps.len() {
            self.send_step(s, i, next);
        } else {
            self.kill_proc(s, i, "deadline");
        }
    }

    /// SIGKILL the whole process group (or the lone process when shared).
    fn kill_proc(&mut self, s: usize, i: usize, reason: &'static str) {
        let p = &mut self.groups[s].procs[i];
        if p.phase != Phase::Running {
            return;
        }
        p.expected = true;
        // The whole group gets SIGKILL now: no separate leftovers kill.
        p.leftovers_killed = true;
        if p.stop.is_none() {
            p.stop = Some(StopState { step: usize::MAX });
        }
        match p.pgid {
            Some(g) if p.group_alive => {
                // SAFETY: our own group, still non-empty when last checked.
                unsafe { libc::kill(-g, libc::SIGKILL) };
            }
            _ => {
                if p.leader_alive {
                    // SAFETY: our unreaped child.
                    unsafe { libc::kill(p.pid, libc::SIGKILL) };
                }
            }
        }
        let who = p.who.clone();
        self.emit(Event::Killed { who, reason });
        self.arm_poll();
    }

    fn begin_drain(&mut self, reason: String, code: i32) {
        if self.mode != Mode::Running {
            return;
        }
        self.mode = Mode::Draining;
        self.drain_batch = Some(self.batch);
        if self.code.is_none() {
            self.code = Some(code);
        }
        self.handler = None;
        self.queue.clear();
        self.emit(Event::Draining { reason });
        for g in &mut self.groups {
            for p in &mut g.procs {
                p.restart_pending = false;
                p.want_spawn = false;
            }
        }
        self.drain_stage = 0;
    }

    /// Stop stage by stage: a stage starts when the previous one is down.
    fn advance_drain(&mut self) {
        let stages: Vec<Vec<usize>> = self
            .plan
            .stop_stages
            .iter()
            .map(|st| {
                st.iter()
                    .filter_map(|&g| self.cur.get(g).copied())
                    .collect()
            })
            .collect();
        // Retired slots and groups missing from the stages stop first.
        let mut first: Vec<usize> = (0..self.groups.len())
            .filter(|s| !stages.iter().any(|st| st.contains(s)))
            .collect();
        first.sort_unstable();
        let all: Vec<Vec<usize>> = std::iter::once(first).chain(stages).collect();
        while self.drain_stage < all.len() {
            let stage = &all[self.drain_stage];
            self.stop_slots(stage);
            if stage.iter().any(|&s| self.groups[s].alive()) {
                return;
            }
            self.drain_stage += 1;
        }
        if self.groups.iter().all(|g| !g.alive()) {
            self.mode = Mode::Done;
        }
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
