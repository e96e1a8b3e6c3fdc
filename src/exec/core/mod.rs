//! The supervisor's rules as a pure state machine: [`Core::handle`] takes
//! one [`Msg`] (a signal, a spawn result, a child's exit, a timer, a ready
//! result, a resume, a control call) and the time, and returns the
//! [`Effect`]s to carry out (spawn, signal, kill, arm a timer, release a
//! process, emit an event, pause or resume the topology, answer a control
//! call, exit). Control calls are `control.rs`. It starts no process, reads no
//! clock and does no IO, so every lifecycle path can be walked in a unit
//! test and by the model test in `model_test.rs`.
//!
//! Each process is in exactly one [`PState`]; its history (generation,
//! last status, whether it ever started or was ready, restart attempts) is
//! kept beside it, never as a second state.
//!
//! Status: this is what `flowrun up` runs. The OS layer (`driver.rs`)
//! turns signals, reaped children, spawn results, timers and ready checks
//! into [`Msg`]s and carries out the [`Effect`]s; it decides nothing. The
//! signal rules themselves (burst window, acknowledgement, escalation,
//! hangup, handler coalescing) are in [`signals`].
//!
//! Time is what the caller says it is: every clock of the core (ladder
//! deadlines, ready-check `within`, restart and spawn-retry delays, `wait
//! … within`) is a timer it arms, and a pause (Ctrl+Z) stops them all.

pub mod signals;

mod control;
#[cfg(test)]
mod control_tests;
#[cfg(test)]
mod model_test;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

use super::events::{Event, Who};
use super::policy::{self, Window};
use super::reap::Status;
use crate::ast::{AfterState, FinishWhen, ProcessGroupMode, StopTarget, Timeout};
use crate::control::protocol::{ControlError, Reply, Request};
use crate::model::{Group, GroupId, LadderStep, Sig, Step};
use crate::plan::{Plan, ProcessSpec};
use signals::{Cause, Drain, Verdict};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A process: its group's slot (slots only grow; a reload adds new ones)
/// and its index in the group.
pub type Ref = (usize, usize);

/// Spawns that fail for lack of resources (EMFILE, EAGAIN, …) are retried
/// this many times, [`SPAWN_RETRY`] doubling up to 1 s apart, then the
/// group fails.
pub const SPAWN_TRIES: u32 = 8;
pub const SPAWN_RETRY: Duration = Duration::from_millis(50);
/// Added to every ladder deadline (see docs/events.md, Deadlines).
pub const DEADLINE_GRACE: Duration = Duration::from_millis(10);

#[derive(Clone, Debug, PartialEq)]
pub enum Msg {
    Signal(Sig),
    /// The answer to [`Effect::Spawn`].
    Spawned {
        p: Ref,
        gen: u64,
        outcome: Outcome,
    },
    /// The leader was reaped; `group_empty` says whether its process group
    /// (or the lone process) is gone too.
    Exited {
        p: Ref,
        gen: u64,
        status: Status,
        group_empty: bool,
    },
    /// The process group of a reaped leader is empty now.
    GroupEmpty {
        p: Ref,
        gen: u64,
    },
    /// The incarnation's chdir or exec failed (read from the child's error
    /// pipe when it is reaped, before [`Msg::Exited`]): once it is down,
    /// its group fails instead of restarting it.
    ExecFailed {
        p: Ref,
        gen: u64,
        reason: String,
    },
    /// A timer armed by [`Effect::Arm`] expired.
    Timer(u64),
    Ready {
        p: Ref,
        gen: u64,
    },
    /// The runner was continued (SIGCONT) after a pause.
    Resumed,
    /// A control call (`control::ToCore::Call`): answered exactly once by
    /// an [`Effect::Reply`] with the same `id` (see `control.rs`).
    Control {
        id: u64,
        request: Request,
    },
    /// A control connection was refused for its credentials
    /// (`control::ToCore::Refused`): reported as a `refused` event.
    Refused {
        uid: u32,
        pid: Option<i32>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Started {
        pid: i32,
    },
    /// Out of a resource (EMFILE, ENFILE, EAGAIN, ENOMEM): worth retrying.
    Busy(String),
    Failed(String),
    /// Not attempted: the OS layer had it queued when a drain began.
    Cancelled,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Spawn {
        p: Ref,
        gen: u64,
    },
    /// Send `sig` to the leader or the process group, then SIGCONT.
    Signal {
        p: Ref,
        gen: u64,
        sig: Sig,
        target: StopTarget,
    },
    /// SIGKILL the process group (or the lone process).
    Kill {
        p: Ref,
        gen: u64,
    },
    /// Deliver `Msg::Timer(id)` after `after`.
    Arm {
        id: u64,
        after: Duration,
    },
    /// The process is down: unregister it from the guard, end its ready
    /// check and let its output relay finish.
    Release {
        p: Ref,
        gen: u64,
    },
    /// Start catching this signal (a handler added by a reload).
    Catch(Sig),
    /// Stop every live process group, then the runner itself.
    Pause,
    /// Continue every live process group.
    Resume,
    Emit(Event),
    /// The answer to `Msg::Control { id, .. }`: send it on that call's
    /// `oneshot`. A `Ps` reply leaves `cpu_ms` to the OS layer.
    Reply {
        id: u64,
        result: Result<Reply, ControlError>,
    },
    Exit(i32),
}

/// Where a ladder deadline stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    At {
        timer: u64,
        at: Instant,
    },
    /// The topology is paused: this much is left when it resumes.
    Paused {
        left: Duration,
    },
    Never,
}

/// One process incarnation's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PState {
    /// Its group has not started.
    Idle,
    /// [`Effect::Spawn`] issued; waiting for its outcome. `tries` spawns
    /// of it already ran out of resources.
    Spawning {
        gen: u64,
        tries: u32,
    },
    Running {
        gen: u64,
        pid: i32,
        ready: bool,
    },
    /// Ladder step `step` was sent; `leader` while the leader is unreaped.
    Stopping {
        gen: u64,
        pid: i32,
        leader: bool,
        step: usize,
        deadline: Deadline,
    },
    /// SIGKILL sent to its group (deadline, escalation, or leftovers of a
    /// leader that exited on its own); waiting for the group to empty.
    Killed {
        gen: u64,
        pid: i32,
        leader: bool,
    },
    /// Down; a restart is due when timer `timer` fires.
    Backoff {
        timer: u64,
    },
    /// A spawn ran out of resources; retry number `tries` when `timer` fires.
    Retry {
        tries: u32,
        timer: u64,
    },
    /// Down while a handler manages its group: its restart policy runs when
    /// the handler ends.
    Held,
    /// Down, nothing pending.
    Down,
}

impl PState {
    pub fn gen(self) -> Option<u64> {
        match self {
            PState::Spawning { gen, .. }
            | PState::Running { gen, .. }
            | PState::Stopping { gen, .. }
            | PState::Killed { gen, .. } => Some(gen),
            _ => None,
        }
    }
    /// A process (or its group) may exist.
    pub fn live(self) -> bool {
        self.gen().is_some()
    }
}

struct Proc {
    who: Who,
    state: PState,
    /// The generation of the latest spawn (0: never).
    gen: u64,
    status: Option<Status>,
    ever_started: bool,
    ever_ready: bool,
    attempts: u32,
    window: Window,
    started_at: Instant,
    /// Ladder signals sent to this incarnation (signal numbers as bits).
    sent: u64,
    /// This incarnation's chdir or exec failed ([`Msg::ExecFailed`]).
    exec_failed: Option<String>,
    /// Shared with the driver, which keys what it prepared for a spawn by
    /// this pointer (a scale or reload puts a new one here).
    spec: Arc<ProcessSpec>,
    /// Incarnations started (`ps` shows all but the first as restarts).
    starts: u32,
    /// How the previous incarnation ended (kept across a restart).
    last_exit: Option<Status>,
    /// Scaled away: stopped and never restarted; removed once down.
    leaving: bool,
}

struct Slot {
    /// Shared with the driver (as `Proc::spec`).
    def: Arc<Group>,
    fingerprint: u64,
    procs: Vec<Proc>,
    started: bool,
    /// `drain G`, or retired by a reload: stays down.
    drained: bool,
    retired: bool,
    failed: bool,
    /// A handler manages it: its restart policy stands aside.
    hold: bool,
    /// A control call (restart) manages it: its restart policy stands aside.
    ctl_hold: bool,
    /// Stopped by `flowrun stop`: kept down (with `drained`) until
    /// `flowrun start`; groups that wait on it wait.
    kept: bool,
    /// Kept because `flowrun stop` stopped this slot's group (a dependent
    /// stopped with it); `flowrun start` of that group starts it too.
    kept_because: Option<usize>,
    /// During a drain: when the drain last walked this slot, every process
    /// was stopping, killed or down. Nothing leaves those states for one a
    /// drain acts on while draining (no spawn, no restart, no handler), so
    /// the slot is not walked again at every later message.
    settled: bool,
}

impl Slot {
    fn alive(&self) -> bool {
        self.procs.iter().any(|p| p.state.live())
    }
    /// Started, and every process down with nothing pending.
    fn ended(&self) -> bool {
        self.started
            && self
                .procs
                .iter()
                .all(|p| p.state == PState::Down && p.ever_started)
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Running,
    Draining(Drain),
    Done,
}

enum Waiting {
    Down(Vec<usize>),
    RestartStop(Vec<usize>),
    Rolling {
        todo: VecDeque<Ref>,
        /// The process being replaced: stopping (false) or starting (true).
        current: Option<(Ref, bool)>,
    },
    Wait {
        slots: Vec<usize>,
        timer: Option<u64>,
    },
}

struct Run {
    sig: Sig,
    steps: Vec<Step>,
    next: usize,
    waiting: Option<Waiting>,
    held: Vec<usize>,
}

enum TimerKind {
    Deadline(Ref, u64),
    Restart(Ref),
    Retry(Ref),
    Wait,
    /// A ready check's `within`.
    Ready(Ref, u64),
}

/// When an armed timer is due. A pause turns every `At` into what is
/// left; the resume arms that again.
#[derive(Clone, Copy, Debug)]
enum Due {
    At(Instant),
    Paused(Duration),
}

struct Timer {
    kind: TimerKind,
    due: Due,
}

/// The function a reload calls: the new plan, or the errors to report.
pub type Reload = Box<dyn FnMut() -> Result<Plan, Vec<String>>>;

/// Facts about the runner the core's rules depend on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Env {
    /// SIGHUP is a terminal hangup ([`signals::hangup_drains`]).
    pub hangup_drains: bool,
    /// How processes are contained (`cgroup` or `process-group`), for the
    /// `starting` event; the OS layer chose it.
    pub containment: &'static str,
}

pub struct Core {
    plan: Plan,
    reload: Reload,
    env: Env,
    slots: Vec<Slot>,
    /// Plan group id → slot.
    cur: Vec<usize>,
    mode: Mode,
    code: Option<i32>,
    escalated: bool,
    paused: Option<Instant>,
    run: Option<Run>,
    queue: VecDeque<Sig>,
    timers: HashMap<u64, Timer>,
    next_id: u64,
    caught: Vec<Sig>,
    /// Per plan group, the groups that must be down before it stops (set
    /// when a drain begins; the plan cannot change while draining).
    stop_waits: Vec<Vec<GroupId>>,
    /// The whole-topology drain the run ended with, for [`Core::late`].
    ended: Option<Drain>,
    now: Instant,
    out: Vec<Effect>,
    /// Control calls not answered yet.
    calls: Vec<control::Call>,
    /// Builds and lints a scaled plan (`flowrun scale`).
    scale: Option<Scale>,
}

/// The function a `scale` calls: the current plan with the given groups'
/// process counts, compiled and linted; or the findings that refuse it.
pub type Scale = Box<dyn FnMut(&Plan, &[(String, u32)]) -> Result<Plan, Vec<String>>>;

/// A group's resolved definition, independent of its position in the file:
/// a hash of the group's JSON with `after` edges by name, and of every
/// process's spec without its group index. Equal fingerprints mean a
/// reload keeps the group. (Computed for every group at start: the specs
/// are written straight into the hasher, without a `Value` or a string.)
pub fn fingerprint(plan: &Plan, gid: GroupId) -> u64 {
    use std::hash::Hasher;
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
    // The default hasher's keys are fixed: equal input, equal hash, for
    // as long as a run lasts (fingerprints are never stored).
    let mut h = std::hash::DefaultHasher::new();
    h.write(v.to_string().as_bytes());
    let mut buf = Vec::new();
    for p in plan.processes.iter().filter(|p| p.group == gid) {
        buf.clear();
        if serde_json::to_writer(&mut buf, p).is_err() {
            continue;
        }
        // `{"group":N,` comes first (the field order of `ProcessSpec`):
        // the rest is the spec without its group index.
        let rest = buf
            .strip_prefix(b"{\"group\":")
            .and_then(|r| r.iter().position(|&b| b == b',').map(|i| &r[i + 1..]))
            .unwrap_or(&buf);
        h.write_usize(rest.len());
        h.write(rest);
    }
    h.finish()
}

fn bit(sig: Sig) -> u64 {
    1u64 << (sig.number() as u32 & 63)
}

fn status_text(st: Status) -> String {
    match st {
        Status::Code(c) => format!("code {c}"),
        Status::Signal(_) => st.signal_name().unwrap_or("a signal").to_string(),
    }
}

impl Core {
    /// A core for `plan`; `handle` nothing until [`Core::start`].
    pub fn new(plan: Plan, reload: Reload, env: Env, now: Instant) -> Core {
        let slots: Vec<Slot> = (0..plan.topology.groups.len())
            .map(|gid| Core::slot(&plan, gid, now))
            .collect();
        let caught = plan
            .topology
            .handlers
            .iter()
            .map(|h| h.signal.node)
            .collect();
        Core {
            cur: (0..slots.len()).collect(),
            slots,
            caught,
            plan,
            reload,
            env,
            mode: Mode::Running,
            code: None,
            escalated: false,
            paused: None,
            run: None,
            queue: VecDeque::new(),
            timers: HashMap::new(),
            next_id: 1,
            stop_waits: Vec::new(),
            ended: None,
            now,
            out: Vec::new(),
            calls: Vec::new(),
            scale: None,
        }
    }

    fn add_slot(&mut self, plan: &Plan, gid: GroupId) -> usize {
        let slot = Core::slot(plan, gid, self.now);
        self.slots.push(slot);
        self.slots.len() - 1
    }

    /// A slot for group `gid` of `plan`, its processes idle.
    fn slot(plan: &Plan, gid: GroupId, now: Instant) -> Slot {
        let g = &plan.topology.groups[gid];
        let procs = plan
            .processes
            .iter()
            .filter(|p| p.group == gid)
            .map(|spec| Proc {
                who: Who {
                    process: spec.id.clone(),
                    group: g.name.node.clone(),
                    index: spec.index,
                },
                state: PState::Idle,
                gen: 0,
                status: None,
                ever_started: false,
                ever_ready: false,
                attempts: 0,
                window: Window::default(),
                started_at: now,
                sent: 0,
                exec_failed: None,
                spec: Arc::new(spec.clone()),
                starts: 0,
                last_exit: None,
                leaving: false,
            })
            .collect();
        Slot {
            def: Arc::new(g.clone()),
            fingerprint: fingerprint(plan, gid),
            procs,
            started: false,
            drained: false,
            retired: false,
            failed: false,
            hold: false,
            ctl_hold: false,
            kept: false,
            kept_because: None,
            settled: false,
        }
    }

    /// Begin: the `starting` event and the first spawns.
    pub fn start(&mut self, now: Instant) -> Vec<Effect> {
        self.now = now;
        self.emit(Event::Starting {
            topology: self.plan.topology.name.node.clone(),
            groups: self.plan.topology.groups.len(),
            processes: self.plan.processes.len(),
            containment: self.env.containment,
        });
        self.progress();
        std::mem::take(&mut self.out)
    }

    /// Handle one message at `now`.
    pub fn handle(&mut self, msg: Msg, now: Instant) -> Vec<Effect> {
        self.now = now;
        if !matches!(self.mode, Mode::Done) {
            self.dispatch(msg);
            self.progress();
            self.advance_calls();
        } else if let Msg::Control { id, request } = msg {
            self.on_control(id, request);
        }
        std::mem::take(&mut self.out)
    }

    /// Hand the core the function `flowrun scale` uses; without one,
    /// `scale` is answered `unavailable`.
    pub fn set_scale(&mut self, scale: Scale) {
        self.scale = Some(scale);
    }

    /// The current plan (a reload or a scale replaces it): the OS layer
    /// finds the spec of a spawned process by [`Core::who`]'s `process`.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Who process `p` is (`group.index`), retired slots included.
    pub fn who(&self, p: Ref) -> Option<&Who> {
        Some(&self.slots.get(p.0)?.procs.get(p.1)?.who)
    }

    /// The state of process `index` of the current group `name`.
    pub fn state(&self, name: &str, index: usize) -> Option<PState> {
        let gid = self.plan.topology.group_by_name(name)?;
        Some(self.slots[*self.cur.get(gid)?].procs.get(index)?.state)
    }

    /// Every process's state, retired slots included.
    pub fn states(&self) -> impl Iterator<Item = (Ref, PState)> + '_ {
        self.slots.iter().enumerate().flat_map(|(s, slot)| {
            slot.procs
                .iter()
                .enumerate()
                .map(move |(i, p)| ((s, i), p.state))
        })
    }

    pub fn done(&self) -> bool {
        matches!(self.mode, Mode::Done)
    }

    pub fn draining(&self) -> bool {
        matches!(self.mode, Mode::Draining(_))
    }

    /// The definition of slot `s`'s group.
    pub fn group(&self, s: usize) -> Option<&Arc<Group>> {
        self.slots.get(s).map(|g| &g.def)
    }

    /// Where slot `s`'s group stands in the current plan (retired: where
    /// it stood last).
    pub fn group_index(&self, s: usize) -> usize {
        let name = self.slots.get(s).map(|g| &g.def.name.node);
        self.plan
            .topology
            .groups
            .iter()
            .position(|g| Some(&g.name.node) == name)
            .unwrap_or(0)
    }

    /// How many processes slot `s`'s group has.
    pub fn group_len(&self, s: usize) -> usize {
        self.slots.get(s).map_or(0, |g| g.procs.len())
    }

    /// What process `p` runs.
    pub fn spec(&self, p: Ref) -> Option<&Arc<ProcessSpec>> {
        Some(&self.slots.get(p.0)?.procs.get(p.1)?.spec)
    }

    /// The signal rules once the run is over (the output is being flushed
    /// and signals are still handled; docs/events.md, "Ending"): the drain
    /// it ended with, or for a run that ended by itself, one the topology
    /// began at `now` (the first request is only acknowledged).
    pub fn late(&self, now: Instant) -> signals::Late {
        let mut sigs: Vec<Sig> = self
            .plan
            .topology
            .handlers
            .iter()
            .map(|h| h.signal.node)
            .collect();
        sigs.push(Sig::HUP);
        sigs.retain(|&s| self.is_drain_signal(s));
        signals::Late::new(
            self.ended
                .unwrap_or_else(|| Drain::new(Cause::Topology, now)),
            sigs,
            self.plan.topology.escalate,
        )
    }

    fn emit(&mut self, e: Event) {
        self.out.push(Effect::Emit(e));
    }

    /// Arm a timer; while paused it is only noted, and armed on resume.
    fn arm(&mut self, after: Duration, kind: TimerKind) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let due = if self.paused.is_some() {
            Due::Paused(after)
        } else {
            self.out.push(Effect::Arm { id, after });
            Due::At(self.now + after)
        };
        self.timers.insert(id, Timer { kind, due });
        id
    }

    fn proc(&mut self, p: Ref) -> Option<&mut Proc> {
        self.slots.get_mut(p.0)?.procs.get_mut(p.1)
    }

    fn is_drain_signal(&self, sig: Sig) -> bool {
        if sig == Sig::HUP && self.env.hangup_drains && self.default_handler(sig) {
            return true;
        }
        self.plan.topology.handler(sig).is_some_and(|h| {
            h.steps.iter().any(|s| {
                matches!(&s.node, Step::Drain { groups } if groups.is_empty())
                    || matches!(s.node, Step::Kill)
            })
        })
    }

    fn default_handler(&self, sig: Sig) -> bool {
        self.plan.topology.handler(sig).map_or(true, |h| h.default)
    }

    // ----- messages ---------------------------------------------------------

    fn dispatch(&mut self, msg: Msg) {
        match msg {
            Msg::Signal(sig) => self.on_signal(sig),
            Msg::Spawned { p, gen, outcome } => self.on_spawned(p, gen, outcome),
            Msg::Exited {
                p,
                gen,
                status,
                group_empty,
            } => self.on_exited(p, gen, status, group_empty),
            Msg::GroupEmpty { p, gen } => {
                let Some(pr) = self.proc(p) else { return };
                if pr.state.gen() != Some(gen) {
                    return;
                }
                match pr.state {
                    PState::Stopping { leader: false, .. }
                    | PState::Killed { leader: false, .. } => self.down(p),
                    _ => {}
                }
            }
            Msg::Timer(id) => self.on_timer(id),
            Msg::ExecFailed { p, gen, reason } => {
                if let Some(pr) = self.proc(p) {
                    if pr.state.gen() == Some(gen) {
                        pr.exec_failed = Some(reason);
                    }
                }
            }
            Msg::Ready { p, gen } => {
                let Some(pr) = self.proc(p) else { return };
                if let PState::Running {
                    gen: g,
                    pid,
                    ready: false,
                } = pr.state
                {
                    if g == gen {
                        pr.state = PState::Running {
                            gen,
                            pid,
                            ready: true,
                        };
                        pr.ever_ready = true;
                        let who = pr.who.clone();
                        self.emit(Event::Ready { who });
                    }
                }
            }
            Msg::Resumed => self.resume(),
            Msg::Control { id, request } => self.on_control(id, request),
            Msg::Refused { uid, pid } => self.emit(Event::Refused { uid, pid }),
        }
    }

    fn on_signal(&mut self, sig: Sig) {
        self.emit(Event::Signal { signal: sig.name() });
        if sig.number() == libc::SIGTSTP {
            self.pause();
            return;
        }
        if sig.number() == libc::SIGCONT {
            self.resume();
            return;
        }
        let drains = self.is_drain_signal(sig);
        match self.mode {
            Mode::Done => {}
            Mode::Draining(mut d) => {
                let verdict = d.on_signal(drains, self.now, self.plan.topology.escalate);
                self.mode = Mode::Draining(d);
                if verdict == Verdict::Escalate && !self.escalated {
                    self.escalate(sig);
                }
            }
            Mode::Running => {
                if drains && sig == Sig::HUP && self.default_handler(sig) {
                    self.begin_drain(format!("{} (hangup)", sig.name()), 0, Cause::Signal);
                    return;
                }
                let Some(h) = self.plan.topology.handler(sig) else {
                    return;
                };
                match h.steps.first().map(|s| &s.node) {
                    Some(Step::Drain { groups }) if groups.is_empty() => {
                        self.begin_drain(sig.name().to_string(), 0, Cause::Signal);
                    }
                    Some(Step::Kill) => {
                        self.begin_drain(sig.name().to_string(), 1, Cause::Signal);
                        self.escalated = true;
                        self.kill_everything();
                    }
                    _ => {
                        signals::enqueue(&mut self.queue, sig);
                    }
                }
            }
        }
    }

    fn ready_timed_out(&mut self, p: Ref, gen: u64) {
        let running = matches!(self.mode, Mode::Running);
        let Some(pr) = self.proc(p) else { return };
        if running && matches!(pr.state, PState::Running { gen: g, ready: false, .. } if g == gen) {
            let reason = format!("{} ready check timed out", pr.who.process);
            self.fail_group(p.0, reason);
        }
    }

    /// Ctrl+Z: the topology stops, and so does every clock of the core
    /// (ladder deadlines, ready-check timeouts, restart and retry delays,
    /// `wait … within`): each keeps what was left of it for the resume.
    fn pause(&mut self) {
        if self.paused.is_some() || matches!(self.mode, Mode::Done) {
            return;
        }
        self.paused = Some(self.now);
        let now = self.now;
        for slot in &mut self.slots {
            for pr in &mut slot.procs {
                if let PState::Stopping { deadline, .. } = &mut pr.state {
                    if let Deadline::At { timer, at } = *deadline {
                        self.timers.remove(&timer);
                        *deadline = Deadline::Paused {
                            left: at.saturating_duration_since(now),
                        };
                    }
                }
            }
        }
        for t in self.timers.values_mut() {
            if let Due::At(at) = t.due {
                t.due = Due::Paused(at.saturating_duration_since(now));
            }
        }
        self.out.push(Effect::Pause);
    }

    fn resume(&mut self) {
        if self.paused.take().is_none() {
            return;
        }
        self.out.push(Effect::Resume);
        let mut ids: Vec<u64> = self.timers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(t) = self.timers.get_mut(&id) {
                if let Due::Paused(left) = t.due {
                    t.due = Due::At(self.now + left);
                    self.out.push(Effect::Arm { id, after: left });
                }
            }
        }
        let refs: Vec<Ref> = self.states().map(|(p, _)| p).collect();
        for p in refs {
            let pr = &self.slots[p.0].procs[p.1];
            if let PState::Stopping {
                gen,
                deadline: Deadline::Paused { left },
                ..
            } = pr.state
            {
                let timer = self.arm(left, TimerKind::Deadline(p, gen));
                let at = self.now + left;
                if let PState::Stopping { deadline, .. } = &mut self.slots[p.0].procs[p.1].state {
                    *deadline = Deadline::At { timer, at };
                }
            }
        }
    }

    fn on_timer(&mut self, id: u64) {
        let Some(t) = self.timers.get(&id) else {
            return;
        };
        match t.due {
            // Armed again on resume.
            Due::Paused(_) => return,
            // Armed before a pause moved it: wait for the rest.
            Due::At(at) if self.now < at => {
                let after = at - self.now;
                self.out.push(Effect::Arm { id, after });
                return;
            }
            Due::At(_) => {}
        }
        let Some(Timer { kind, .. }) = self.timers.remove(&id) else {
            return;
        };
        match kind {
            TimerKind::Ready(p, gen) => self.ready_timed_out(p, gen),
            TimerKind::Deadline(p, gen) => {
                let pr = &self.slots[p.0].procs[p.1];
                if let PState::Stopping {
                    gen: g,
                    step,
                    deadline: Deadline::At { timer, .. },
                    ..
                } = pr.state
                {
                    if g == gen && timer == id {
                        self.send_step(p, step + 1);
                    }
                }
            }
            TimerKind::Restart(p) => {
                if matches!(self.slots[p.0].procs[p.1].state, PState::Backoff { timer } if timer == id)
                {
                    self.slots[p.0].procs[p.1].state = PState::Down;
                    self.spawn(p);
                }
            }
            TimerKind::Retry(p) => {
                if let PState::Retry { tries, timer } = self.slots[p.0].procs[p.1].state {
                    if timer == id {
                        self.slots[p.0].procs[p.1].state = PState::Down;
                        self.spawn_try(p, tries);
                    }
                }
            }
            TimerKind::Wait => {
                if let Some(run) = &mut self.run {
                    if matches!(&run.waiting, Some(Waiting::Wait { timer: Some(t), .. }) if *t == id)
                    {
                        run.waiting = None;
                    }
                }
            }
        }
    }

    // ----- spawning -----------------------------------------------------------

    fn spawn(&mut self, p: Ref) {
        self.spawn_try(p, 0);
    }

    fn spawn_try(&mut self, p: Ref, tries: u32) {
        if !matches!(self.mode, Mode::Running) {
            self.slots[p.0].procs[p.1].state = PState::Down;
            return;
        }
        let pr = &mut self.slots[p.0].procs[p.1];
        if pr.state.live() {
            return;
        }
        if pr.leaving {
            // Scaled away: nothing starts it again (a handler's restart).
            pr.state = PState::Down;
            return;
        }
        pr.gen += 1;
        let gen = pr.gen;
        pr.state = PState::Spawning { gen, tries };
        pr.sent = 0;
        pr.exec_failed = None;
        self.out.push(Effect::Spawn { p, gen });
    }

    fn on_spawned(&mut self, p: Ref, gen: u64, outcome: Outcome) {
        let Some(pr) = self.proc(p) else { return };
        let PState::Spawning { gen: g, tries } = pr.state else {
            return;
        };
        if g != gen {
            return;
        }
        match outcome {
            Outcome::Started { pid } => {
                let has_ready = self.slots[p.0].def.ready.is_some();
                let now = self.now;
                let pr = &mut self.slots[p.0].procs[p.1];
                pr.state = PState::Running {
                    gen,
                    pid,
                    ready: !has_ready,
                };
                pr.ever_started = true;
                pr.started_at = now;
                pr.status = None;
                pr.starts += 1;
                let who = pr.who.clone();
                self.emit(Event::Started {
                    who: who.clone(),
                    pid,
                });
                if !has_ready {
                    self.slots[p.0].procs[p.1].ever_ready = true;
                    self.emit(Event::Ready { who });
                } else if let Some(Timeout::Finite(d)) =
                    self.slots[p.0].def.ready.as_ref().map(|r| r.within)
                {
                    self.arm(d, TimerKind::Ready(p, gen));
                }
                let slot = &self.slots[p.0];
                if !matches!(self.mode, Mode::Running) || slot.drained || slot.failed {
                    self.stop_proc(p);
                }
            }
            Outcome::Busy(_) if !matches!(self.mode, Mode::Running) => {
                // A drain began while it was being spawned: not retried.
                self.slots[p.0].procs[p.1].state = PState::Down;
            }
            Outcome::Busy(what) => {
                let tries = tries + 1;
                if tries >= SPAWN_TRIES {
                    self.slots[p.0].procs[p.1].state = PState::Down;
                    let reason = format!(
                        "{}: spawn failed: {what}, {tries} tries",
                        self.slots[p.0].procs[p.1].who.process
                    );
                    self.fail_group(p.0, reason);
                    return;
                }
                let delay = policy::backoff(SPAWN_RETRY, Duration::from_secs(1), tries);
                let timer = self.arm(delay, TimerKind::Retry(p));
                let pr = &mut self.slots[p.0].procs[p.1];
                pr.state = PState::Retry { tries, timer };
                let who = pr.who.clone();
                self.emit(Event::SpawnRetry {
                    who,
                    error: what,
                    attempt: tries,
                    in_ms: delay.as_millis() as u64,
                });
            }
            Outcome::Failed(reason) => {
                self.slots[p.0].procs[p.1].state = PState::Down;
                self.fail_group(p.0, reason);
            }
            Outcome::Cancelled => self.slots[p.0].procs[p.1].state = PState::Down,
        }
    }

    // ----- exits --------------------------------------------------------------

    fn on_exited(&mut self, p: Ref, gen: u64, status: Status, group_empty: bool) {
        let hold = self.slots.get(p.0).is_some_and(|s| s.hold);
        let target = self.slots.get(p.0).map(|s| s.def.stop.target);
        let Some(pr) = self.proc(p) else { return };
        if pr.state.gen() != Some(gen) {
            return;
        }
        let (pid, expected) = match pr.state {
            PState::Running { pid, .. } => (pid, hold),
            PState::Stopping {
                pid, leader: true, ..
            }
            | PState::Killed {
                pid, leader: true, ..
            } => (pid, true),
            _ => return,
        };
        pr.status = Some(status);
        pr.last_exit = Some(status);
        let who = pr.who.clone();
        let state = pr.state;
        self.emit(Event::Exited {
            who: who.clone(),
            pid,
            code: match status {
                Status::Code(c) => Some(c),
                Status::Signal(_) => None,
            },
            signal: status.signal_name(),
            expected,
        });
        if group_empty {
            self.down(p);
            return;
        }
        let pr = &mut self.slots[p.0].procs[p.1];
        match state {
            PState::Stopping { step, deadline, .. } if target == Some(StopTarget::Group) => {
                // The rest of the group keeps following the ladder.
                pr.state = PState::Stopping {
                    gen,
                    pid,
                    leader: false,
                    step,
                    deadline,
                };
            }
            PState::Killed { .. } => {
                pr.state = PState::Killed {
                    gen,
                    pid,
                    leader: false,
                };
            }
            _ => {
                pr.state = PState::Killed {
                    gen,
                    pid,
                    leader: false,
                };
                self.out.push(Effect::Kill { p, gen });
                self.emit(Event::Killed {
                    who,
                    reason: "leftovers",
                });
            }
        }
    }

    /// The process group is empty: the incarnation is over.
    fn down(&mut self, p: Ref) {
        let pr = &mut self.slots[p.0].procs[p.1];
        let Some(gen) = pr.state.gen() else { return };
        pr.state = PState::Down;
        let who = pr.who.clone();
        self.out.push(Effect::Release { p, gen });
        // CPU time is read by the OS layer, which knows the cgroup.
        self.emit(Event::Stopped { who, cpu_ms: None });
        // Drains, `drain G`, retired and held groups keep the policy out.
        self.apply_policy(p);
    }

    fn apply_policy(&mut self, p: Ref) {
        if !matches!(self.mode, Mode::Running) {
            return;
        }
        let slot = &self.slots[p.0];
        if slot.drained || slot.retired || slot.failed || slot.procs[p.1].leaving {
            return;
        }
        if slot.hold || slot.ctl_hold {
            self.slots[p.0].procs[p.1].state = PState::Held;
            return;
        }
        if let Some(reason) = self.slots[p.0].procs[p.1].exec_failed.take() {
            self.fail_group(p.0, reason);
            return;
        }
        let slot = &self.slots[p.0];
        let pr = &slot.procs[p.1];
        let status = pr.status.unwrap_or(Status::Code(0));
        let restart = slot.def.restart.clone();
        if !policy::wants_restart(restart.mode, status.success()) {
            // The finish group's end is judged by `finish` (its reason
            // names the condition).
            let is_finish = self
                .plan
                .topology
                .finish
                .as_ref()
                .is_some_and(|f| self.cur.get(f.group.node) == Some(&p.0));
            if slot.def.once && !status.success() && !is_finish {
                let reason = format!("{} exited with {}", pr.who.process, status_text(status));
                self.fail_group(p.0, reason);
            }
            return;
        }
        let now = self.now;
        let pr = &mut self.slots[p.0].procs[p.1];
        if let Some(l) = &restart.limit {
            if !pr.window.admit(now, l.count, l.per) {
                let reason = format!(
                    "{} exceeded its restart limit ({} per {}ms)",
                    pr.who.process,
                    l.count,
                    l.per.as_millis()
                );
                self.fail_group(p.0, reason);
                return;
            }
        }
        let uptime = now.saturating_duration_since(pr.started_at);
        pr.attempts = policy::next_attempt(pr.attempts, uptime, restart.backoff_max);
        let delay = policy::backoff(restart.backoff_min, restart.backoff_max, pr.attempts);
        let (who, attempt) = (pr.who.clone(), pr.attempts);
        let timer = self.arm(delay, TimerKind::Restart(p));
        self.slots[p.0].procs[p.1].state = PState::Backoff { timer };
        self.emit(Event::Restarting {
            who,
            in_ms: delay.as_millis() as u64,
            attempt,
        });
    }

    fn fail_group(&mut self, s: usize, reason: String) {
        if self.slots[s].failed {
            return;
        }
        self.slots[s].failed = true;
        self.emit(Event::Failed {
            group: self.slots[s].def.name.node.clone(),
            reason,
        });
        // A failure during a drain (a spawn that was in flight when it
        // began) is reported, but the drain keeps the status it began with.
        if matches!(self.mode, Mode::Running) && self.code.map_or(true, |c| c == 0) {
            self.code = Some(1);
        }
        self.begin_drain("failed".to_string(), 1, Cause::Topology);
    }

    // ----- stopping -----------------------------------------------------------

    /// Start the ladder for this incarnation (once); a process that is not
    /// running yet is simply not started again.
    fn stop_proc(&mut self, p: Ref) {
        let pr = &mut self.slots[p.0].procs[p.1];
        match pr.state {
            PState::Running { .. } => self.send_step(p, 0),
            PState::Backoff { timer } | PState::Retry { timer, .. } => {
                self.timers.remove(&timer);
                pr.state = PState::Down;
            }
            PState::Held | PState::Idle => pr.state = PState::Down,
            _ => {}
        }
    }

    /// Send ladder step `step` (or SIGKILL past the last one).
    fn send_step(&mut self, p: Ref, step: usize) {
        let slot = &self.slots[p.0];
        let stop = &slot.def.stop;
        let pr = &slot.procs[p.1];
        let (gen, pid, leader) = match pr.state {
            PState::Running { gen, pid, .. } => (gen, pid, true),
            PState::Stopping {
                gen, pid, leader, ..
            } => (gen, pid, leader),
            _ => return,
        };
        let Some(&LadderStep {
            signal,
            drain: wait,
            ..
        }) = stop.steps.get(step)
        else {
            self.kill_proc(p, "deadline");
            return;
        };
        let who = pr.who.clone();
        let already = pr.sent & bit(signal) != 0;
        let target = if !leader {
            StopTarget::Group
        } else {
            stop.target
        };
        // A process in the runner's group has no group of its own: only
        // its leader is signalled.
        let shared = slot.def.process_group == ProcessGroupMode::Shared;
        if !already {
            self.out.push(Effect::Signal {
                p,
                gen,
                sig: signal,
                target,
            });
            self.emit(Event::Stopping {
                who,
                signal: signal.name(),
                step,
                target: match target {
                    StopTarget::Group if !shared => "group",
                    _ => "leader",
                },
            });
        }
        let deadline = match wait {
            Timeout::Finite(d) if self.paused.is_some() => Deadline::Paused {
                left: d + DEADLINE_GRACE,
            },
            Timeout::Finite(d) => {
                let timer = self.arm(d + DEADLINE_GRACE, TimerKind::Deadline(p, gen));
                Deadline::At {
                    timer,
                    at: self.now + d + DEADLINE_GRACE,
                }
            }
            Timeout::Forever => Deadline::Never,
        };
        let pr = &mut self.slots[p.0].procs[p.1];
        pr.sent |= bit(signal);
        pr.state = PState::Stopping {
            gen,
            pid,
            leader,
            step,
            deadline,
        };
    }

    fn kill_proc(&mut self, p: Ref, reason: &'static str) {
        let pr = &mut self.slots[p.0].procs[p.1];
        let (gen, pid, leader) = match pr.state {
            PState::Running { gen, pid, .. } => (gen, pid, true),
            PState::Stopping {
                gen,
                pid,
                leader,
                deadline,
                ..
            } => {
                if let Deadline::At { timer, .. } = deadline {
                    self.timers.remove(&timer);
                }
                (gen, pid, leader)
            }
            _ => return,
        };
        pr.state = PState::Killed { gen, pid, leader };
        let who = pr.who.clone();
        self.out.push(Effect::Kill { p, gen });
        self.emit(Event::Killed { who, reason });
    }

    fn kill_everything(&mut self) {
        let refs: Vec<Ref> = self.states().map(|(p, _)| p).collect();
        for p in refs {
            self.kill_proc(p, "escalation");
        }
    }

    fn escalate(&mut self, sig: Sig) {
        self.escalated = true;
        self.emit(Event::Escalating { signal: sig.name() });
        self.code = Some(self.code.map_or(1, |c| if c == 0 { 1 } else { c }));
        self.kill_everything();
    }

    fn begin_drain(&mut self, reason: String, code: i32, cause: Cause) {
        if !matches!(self.mode, Mode::Running) {
            return;
        }
        self.mode = Mode::Draining(Drain::new(cause, self.now));
        self.stop_waits = crate::graph::stop_waits_for(&self.plan.topology);
        if self.code.is_none() {
            self.code = Some(code);
        }
        self.calls_drain_began();
        if let Some(run) = self.run.take() {
            if let Some(Waiting::Wait { timer: Some(t), .. }) = run.waiting {
                self.timers.remove(&t);
            }
        }
        self.queue.clear();
        self.emit(Event::Draining { reason });
        let refs: Vec<Ref> = self.states().map(|(p, _)| p).collect();
        for p in refs {
            match self.slots[p.0].procs[p.1].state {
                PState::Backoff { timer } | PState::Retry { timer, .. } => {
                    self.timers.remove(&timer);
                    self.slots[p.0].procs[p.1].state = PState::Down;
                }
                PState::Held | PState::Idle => self.slots[p.0].procs[p.1].state = PState::Down,
                _ => {}
            }
        }
    }

    fn stop_slots(&mut self, slots: &[usize]) {
        for &s in slots {
            for i in 0..self.slots[s].procs.len() {
                self.stop_proc((s, i));
            }
        }
    }

    // ----- progress -------------------------------------------------------------

    fn progress(&mut self) {
        if matches!(self.mode, Mode::Running) {
            self.run_handler();
        }
        // A finish drain begins before dependents of what just ended start:
        // they would only be stopped again.
        if matches!(self.mode, Mode::Running) {
            self.check_finish_group();
        }
        if matches!(self.mode, Mode::Running) {
            self.start_groups();
            self.check_finish();
        }
        if matches!(self.mode, Mode::Draining(_)) {
            self.advance_drain();
        }
    }

    fn met(&self, dep: GroupId, state: AfterState) -> Result<bool, String> {
        let Some(&s) = self.cur.get(dep) else {
            return Ok(true);
        };
        let g = &self.slots[s];
        if g.kept {
            // Stopped by `flowrun stop`: its dependents wait for `start`.
            return Ok(false);
        }
        let name = &g.def.name.node;
        let met = g.started
            && match state {
                AfterState::Started => g.procs.iter().all(|p| p.ever_started),
                AfterState::Ready => g.procs.iter().all(|p| p.ever_ready),
                AfterState::Succeeded => {
                    g.ended()
                        && g.procs
                            .iter()
                            .all(|p| p.status.is_some_and(Status::success))
                }
                AfterState::Exited => g.ended(),
            };
        if met {
            return Ok(true);
        }
        let never = if g.failed || (g.drained && !g.started) {
            Some(format!("{name} failed or was drained"))
        } else if g.ended() {
            match state {
                AfterState::Succeeded => g
                    .procs
                    .iter()
                    .find_map(|p| p.status.filter(|s| !s.success()).map(|s| (p, s)))
                    .map(|(p, s)| format!("{} exited with {}", p.who.process, status_text(s))),
                AfterState::Ready => g
                    .procs
                    .iter()
                    .find(|p| !p.ever_ready)
                    .map(|p| format!("{} ended without being ready", p.who.process)),
                _ => None,
            }
        } else {
            None
        };
        match never {
            Some(why) => Err(format!(
                "`after {name} {}` can no longer be met: {why}",
                match state {
                    AfterState::Started => "started",
                    AfterState::Ready => "ready",
                    AfterState::Succeeded => "succeeded",
                    AfterState::Exited => "exited",
                }
            )),
            None => Ok(false),
        }
    }

    fn start_groups(&mut self) {
        let mut order: Vec<GroupId> = self.plan.start_stages.iter().flatten().copied().collect();
        for gid in 0..self.cur.len() {
            if !order.contains(&gid) {
                order.push(gid);
            }
        }
        for gid in order {
            if !matches!(self.mode, Mode::Running) {
                return;
            }
            let Some(&s) = self.cur.get(gid) else {
                continue;
            };
            let g = &self.slots[s];
            if g.started || g.drained || g.failed {
                continue;
            }
            let mut ok = true;
            for a in &g.def.after {
                match self.met(a.group, a.state) {
                    Ok(true) => {}
                    Ok(false) => ok = false,
                    Err(why) => {
                        self.fail_group(s, why);
                        return;
                    }
                }
            }
            let name = &g.def.name.node;
            let predecessor_alive = self
                .slots
                .iter()
                .any(|o| o.retired && &o.def.name.node == name && o.alive());
            if ok && !predecessor_alive {
                self.slots[s].started = true;
                for i in 0..self.slots[s].procs.len() {
                    self.spawn((s, i));
                }
            }
        }
    }

    /// The `finish` group ended: drain (or fail). Whether it did.
    fn check_finish_group(&mut self) -> bool {
        let Some(f) = self.plan.topology.finish.clone() else {
            return false;
        };
        let Some(&s) = self.cur.get(f.group.node) else {
            return false;
        };
        let g = &self.slots[s];
        if !g.ended() || g.kept {
            return false;
        }
        let failing = g
            .procs
            .iter()
            .find_map(|p| p.status.filter(|s| !s.success()).map(|s| (p, s)));
        match (f.when, failing) {
            (FinishWhen::Exits, _) | (FinishWhen::Succeeds, None) => {
                let code = failing.map_or(0, |(_, s)| s.exit_code());
                self.begin_drain("finish".to_string(), code, Cause::Topology);
            }
            (FinishWhen::Succeeds, Some((p, st))) => {
                let why = format!(
                    "`finish when {} succeeds` can no longer be met: {} exited with {}",
                    g.def.name.node,
                    p.who.process,
                    status_text(st)
                );
                self.fail_group(s, why);
            }
        }
        true
    }

    fn check_finish(&mut self) {
        if self.check_finish_group() {
            return;
        }
        let idle = self.slots.iter().all(|g| {
            g.procs
                .iter()
                .all(|p| matches!(p.state, PState::Idle | PState::Down))
        });
        // A group kept stopped by `flowrun stop` waits for `flowrun start`.
        let kept = self.cur.iter().any(|&s| self.slots[s].kept);
        if idle && !kept && self.run.is_none() && self.queue.is_empty() {
            let clean = self.cur.iter().all(|&s| {
                let g = &self.slots[s];
                g.drained
                    || (g.started
                        && g.procs
                            .iter()
                            .all(|p| p.status.map_or(true, Status::success)))
            });
            if self.code.is_none() {
                self.code = Some(if clean { 0 } else { 1 });
            }
            self.finish();
        }
    }

    fn finish(&mut self) {
        if let Mode::Draining(d) = self.mode {
            self.ended = Some(d);
        }
        self.mode = Mode::Done;
        let code = self.code.unwrap_or(0);
        self.calls_finished(code);
        self.out.push(Effect::Exit(code));
    }

    fn advance_drain(&mut self) {
        let mut planned = vec![false; self.slots.len()];
        for gid in 0..self.cur.len() {
            let s = self.cur[gid];
            planned[s] = true;
            let blocked = self.stop_waits.get(gid).is_some_and(|w| {
                w.iter()
                    .any(|&d| self.cur.get(d).is_some_and(|&ds| self.slots[ds].alive()))
            });
            if !blocked {
                self.drain_slot(s);
            }
        }
        let retired = planned.iter().enumerate().filter(|(_, &p)| !p);
        for s in retired.map(|(s, _)| s).collect::<Vec<_>>() {
            self.drain_slot(s);
        }
        if self.slots.iter().all(|g| !g.alive()) {
            self.finish();
        }
    }

    /// Stop what a drain must stop in slot `s`, unless it is settled: a
    /// drain of N processes then walks each slot once per message only
    /// until it is settled, not N times N.
    fn drain_slot(&mut self, s: usize) {
        let settled = |g: &Slot| {
            g.procs.iter().all(|p| {
                matches!(
                    p.state,
                    PState::Stopping { .. } | PState::Killed { .. } | PState::Down
                )
            })
        };
        if self.slots[s].settled {
            debug_assert!(
                settled(&self.slots[s]),
                "a settled slot moved during a drain"
            );
            return;
        }
        self.stop_slots(&[s]);
        self.slots[s].settled = settled(&self.slots[s]);
    }
}

mod handlers;
