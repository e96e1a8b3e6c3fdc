//! A recording world for the core's tests: it answers spawns, keeps a
//! virtual clock and fires armed timers, and records every effect. No
//! process is started.

use super::*;
use std::collections::BTreeMap;

pub fn plan(text: &str) -> Plan {
    let c = crate::compile(crate::source::SourceFile::new("t.pf", text), None);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    crate::plan::build(c.model.as_ref().unwrap(), &Default::default())
}

pub struct World {
    pub core: Core,
    pub now: Instant,
    /// Every effect so far, in order.
    pub log: Vec<Effect>,
    /// Armed timers: due time → ids.
    pub timers: BTreeMap<(Instant, u64), ()>,
    /// How the next spawns answer (front first); empty: started.
    pub outcomes: VecDeque<Outcome>,
    next_pid: i32,
    /// Live incarnations (by ref) → (gen, pid).
    pub live: HashMap<Ref, (u64, i32)>,
    /// Incarnations killed (SIGKILL): they cannot survive.
    pub exit_code: Option<i32>,
    /// Leave spawns unanswered (in flight, as in the OS layer's queue)
    /// until [`World::answer`].
    pub defer: bool,
    pub deferred: VecDeque<(Ref, u64)>,
}

impl World {
    pub fn new(text: &str) -> World {
        World::with(
            plan(text),
            Box::new(|| Err(vec!["no reload".into()])),
            Env::default(),
        )
    }

    pub fn with(plan: Plan, reload: Reload, env: Env) -> World {
        World::build(plan, reload, env, Vec::new())
    }

    /// Spawns answer `outcomes` first, then start.
    pub fn start_with(plan: Plan, outcomes: Vec<Outcome>) -> World {
        World::build(plan, Box::new(|| Err(vec![])), Env::default(), outcomes)
    }

    fn build(plan: Plan, reload: Reload, env: Env, outcomes: Vec<Outcome>) -> World {
        let t0 = Instant::now();
        let core = Core::new(plan, reload, env, t0);
        let mut w = World {
            core,

            now: t0,
            log: Vec::new(),
            timers: BTreeMap::new(),
            outcomes: outcomes.into(),
            next_pid: 1000,
            live: HashMap::new(),
            exit_code: None,
            defer: false,
            deferred: VecDeque::new(),
        };
        let fx = w.core.start(t0);
        w.absorb(fx);
        w
    }

    /// Record effects; answer spawns at once.
    pub fn absorb(&mut self, fx: Vec<Effect>) -> Vec<Effect> {
        let mut all = Vec::new();
        let mut pending = VecDeque::from(fx);
        while let Some(e) = pending.pop_front() {
            match &e {
                Effect::Arm { id, after } => {
                    self.timers.insert((self.now + *after, *id), ());
                }
                Effect::Spawn { p, gen } if self.defer => {
                    self.deferred.push_back((*p, *gen));
                }
                Effect::Spawn { p, gen } => {
                    let outcome = self.outcomes.pop_front().unwrap_or_else(|| {
                        self.next_pid += 1;
                        Outcome::Started { pid: self.next_pid }
                    });
                    if let Outcome::Started { pid } = outcome {
                        self.live.insert(*p, (*gen, pid));
                    }
                    let (p, gen) = (*p, *gen);
                    self.log.push(e.clone());
                    all.push(e);
                    let more = self.core.handle(Msg::Spawned { p, gen, outcome }, self.now);
                    pending.extend(more);
                    continue;
                }
                Effect::Exit(c) => self.exit_code = Some(*c),
                _ => {}
            }
            self.log.push(e.clone());
            all.push(e);
        }
        all
    }

    /// Answer the oldest deferred spawn.
    pub fn answer(&mut self, outcome: Outcome) -> Vec<Effect> {
        let (p, gen) = self.deferred.pop_front().expect("a deferred spawn");
        if let Outcome::Started { pid } = outcome {
            self.live.insert(p, (gen, pid));
        }
        self.send(Msg::Spawned { p, gen, outcome })
    }

    pub fn send(&mut self, msg: Msg) -> Vec<Effect> {
        let fx = self.core.handle(msg, self.now);
        self.absorb(fx)
    }

    pub fn signal(&mut self, sig: Sig) -> Vec<Effect> {
        self.send(Msg::Signal(sig))
    }

    /// Move the clock by `ms`, firing every timer due on the way.
    pub fn advance(&mut self, ms: u64) -> Vec<Effect> {
        let end = self.now + Duration::from_millis(ms);
        let mut all = Vec::new();
        while let Some((&(due, id), _)) = self.timers.iter().next() {
            if due > end {
                break;
            }
            self.timers.remove(&(due, id));
            self.now = self.now.max(due);
            all.extend(self.send(Msg::Timer(id)));
        }
        self.now = end;
        all
    }

    /// The process `name.index` exits with `status` (its group empty).
    pub fn exit(&mut self, name: &str, index: usize, status: Status) -> Vec<Effect> {
        let p = self.refer(name, index);
        let (gen, _) = self.live.remove(&p).expect("not live");
        self.send(Msg::Exited {
            p,
            gen,
            status,
            group_empty: true,
        })
    }

    pub fn refer(&self, name: &str, index: usize) -> Ref {
        let gid = self.core.plan.topology.group_by_name(name).expect("group");
        (self.core.cur[gid], index)
    }

    pub fn gen(&self, name: &str, index: usize) -> u64 {
        self.live[&self.refer(name, index)].0
    }

    pub fn events(fx: &[Effect]) -> Vec<&'static str> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Emit(ev) => Some(ev.name()),
                _ => None,
            })
            .collect()
    }

    pub fn all_events(&self) -> Vec<&'static str> {
        World::events(&self.log)
    }

    pub fn emitted(&self) -> Vec<&Event> {
        self.log
            .iter()
            .filter_map(|e| match e {
                Effect::Emit(ev) => Some(ev),
                _ => None,
            })
            .collect()
    }

    /// Ladder signals sent to `p`, in order.
    pub fn signals_to(fx: &[Effect], p: Ref) -> Vec<Sig> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Signal { p: q, sig, .. } if *q == p => Some(*sig),
                _ => None,
            })
            .collect()
    }

    pub fn spawns_of(&self, p: Ref) -> usize {
        self.log
            .iter()
            .filter(|e| matches!(e, Effect::Spawn { p: q, .. } if *q == p))
            .count()
    }

    /// Every live process exits as a SIGKILL would make it.
    pub fn kill_all_killed(&mut self) {
        let killed: Vec<Ref> = self
            .core
            .states()
            .filter(|(_, s)| matches!(s, PState::Killed { .. }))
            .map(|(p, _)| p)
            .collect();
        for p in killed {
            if let Some((gen, _)) = self.live.remove(&p) {
                self.send(Msg::Exited {
                    p,
                    gen,
                    status: Status::Signal(libc::SIGKILL),
                    group_empty: true,
                });
            }
        }
    }
}

impl World {
    /// Send control call `id`.
    pub fn call(&mut self, id: u64, request: Request) -> Vec<Effect> {
        self.send(Msg::Control { id, request })
    }

    /// Every answer so far, in order.
    pub fn replies(&self) -> Vec<(u64, Result<Reply, ControlError>)> {
        self.log
            .iter()
            .filter_map(|e| match e {
                Effect::Reply { id, result } => Some((*id, result.clone())),
                _ => None,
            })
            .collect()
    }

    /// The answers to call `id` so far.
    pub fn answers(&self, id: u64) -> Vec<Result<Reply, ControlError>> {
        self.replies()
            .into_iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, r)| r)
            .collect()
    }

    /// The live process `name.index` reports ready.
    pub fn ready(&mut self, name: &str, index: usize) -> Vec<Effect> {
        let p = self.refer(name, index);
        let gen = self.live[&p].0;
        self.send(Msg::Ready { p, gen })
    }
}

pub const OK: Status = Status::Code(0);
