//! Model-based test: random topologies driven by long random message
//! sequences (signals of every kind at every phase, exits, leftovers,
//! timers, ready results, spawn failures, reloads, handler forwards and
//! restarts, pauses, control calls), with the core's promises checked after
//! every step.
//!
//! A small seeded xorshift generator is enough here (no shrinking is
//! needed: a failure prints the seed, the episode and the step, and the
//! episode replays exactly). `FLOWRUN_CORE_SEED=N` replays a run;
//! `FLOWRUN_CORE_STEPS=N` changes its length (default 100,000 steps).

use super::testkit::*;
use super::*;
use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// A random topology that compiles. `variant` changes one group's command
/// (a reload then replaces it) or adds a group in front (ids move).
fn topology(rng: &mut Rng, variant: u64) -> String {
    let n = 1 + rng.below(4) as usize;
    let mut s = String::from("topology m {\n");
    if rng.chance(20) {
        s.push_str(" escalate never\n");
    }
    if rng.chance(30) {
        let when = if rng.chance(50) { "exits" } else { "succeeds" };
        s.push_str(&format!(" finish when g{} {when}\n", rng.below(n as u64)));
    }
    let target = rng.below(n as u64);
    match rng.below(6) {
        0 => s.push_str(&format!(" on SIGUSR1 restart g{target}\n")),
        1 => s.push_str(&format!(" on SIGUSR1 restart g{target} rolling\n")),
        2 => s.push_str(&format!(
            " on SIGUSR1 {{\n forward SIGTERM to g{target}\n wait g{target} within 1s\n restart g{target}\n }}\n"
        )),
        3 => s.push_str(&format!(" on SIGUSR1 drain g{target}\n")),
        4 => s.push_str(" on SIGUSR1 {\n ignore\n drain\n }\n"),
        _ => {}
    }
    if rng.chance(30) {
        s.push_str(&format!(
            " on SIGUSR2 forward to g{}\n",
            rng.below(n as u64)
        ));
    }
    if rng.chance(10) {
        s.push_str(" on SIGQUIT kill\n");
    }
    if variant % 3 == 2 {
        s.push_str(" group front {\n run \"front\"\n }\n");
    }
    for g in 0..n {
        s.push_str(&format!(
            " group g{g} {{\n run \"p{g} {}\"\n",
            variant % 3 == 1 && g == 0
        ));
        s.push_str(&format!(" processes {}\n", 1 + rng.below(3)));
        if rng.chance(30) {
            s.push_str(" ready when tcp \"127.0.0.1:1\" within 1s\n");
        }
        if rng.chance(15) {
            s.push_str(" once\n");
        }
        if g > 0 && rng.chance(60) {
            let state = *rng.pick(&["started", "ready", "succeeded", "exited"]);
            s.push_str(&format!(" after g{} {state}\n", rng.below(g as u64)));
        }
        match rng.below(4) {
            0 => s.push_str(" restart never\n"),
            1 => s.push_str(" restart on-failure backoff 10ms..200ms\n"),
            2 => s.push_str(" restart always backoff 10ms..200ms limit 3 per 1s\n"),
            _ => {}
        }
        let d = 50 + rng.below(1000);
        let ladder = if rng.chance(50) {
            format!(" stop SIGTERM drain {d}ms")
        } else {
            format!(
                " stop SIGINT drain {d}ms then SIGTERM drain {}ms",
                20 + rng.below(300)
            )
        };
        let to = *rng.pick(&["", " to leader", " to group"]);
        s.push_str(&format!("{ladder}{to}\n }}\n"));
    }
    s.push_str("}\n");
    s
}

fn compiles(text: &str) -> Option<Plan> {
    let c = crate::compile(crate::source::SourceFile::new("m.pf", text), None);
    if c.has_errors() {
        return None;
    }
    Some(crate::plan::build(c.model.as_ref()?, &Default::default()))
}

const SIGNALS: [nix::sys::signal::Signal; 9] = {
    use nix::sys::signal::Signal::*;
    [
        SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGTSTP, SIGCONT,
    ]
};

/// What the test knows independently of the core.
#[derive(Default)]
struct Oracle {
    /// Ladder signals sent per incarnation.
    sent: HashMap<(Ref, u64), HashSet<i32>>,
    draining: bool,
    /// The drain's cause, when it began.
    drain_signal: Option<bool>,
    burst_from: Option<Instant>,
    escalated: bool,
    /// The first of `failed` / `draining`: Some(None) failed, Some(Some(reason)).
    first_end: Option<Option<String>>,
    /// Last status delivered per process.
    status: HashMap<Ref, Status>,
    exits: usize,
    /// Control calls sent and not answered yet.
    calls: HashSet<u64>,
    next_call: u64,
    /// The codes `down` calls were answered with.
    down_codes: Vec<i32>,
}

struct Episode {
    w: World,
    rng: Rng,
    /// Leaders reaped whose groups are not empty yet.
    gone: HashSet<(Ref, u64)>,
    o: Oracle,
    hangup_drains: bool,
    kill_handler: bool,
    seen_steps: usize,
}

impl Episode {
    fn ladder(&self, p: Ref) -> Vec<i32> {
        self.w.core.slots[p.0]
            .def
            .stop
            .steps
            .iter()
            .map(|l| l.signal.number())
            .collect()
    }

    fn is_drain_signal(&self, sig: Sig) -> bool {
        let core = &self.w.core;
        if sig == Sig::HUP && self.hangup_drains && core.default_handler(sig) {
            return true;
        }
        core.plan.topology.handler(sig).is_some_and(|h| {
            h.steps.iter().any(|s| {
                matches!(&s.node, Step::Drain { groups } if groups.is_empty())
                    || matches!(s.node, Step::Kill)
            })
        })
    }

    fn first_step_drains(&self, sig: Sig) -> bool {
        let core = &self.w.core;
        if sig == Sig::HUP && self.hangup_drains && core.default_handler(sig) {
            return true;
        }
        core.plan.topology.handler(sig).is_some_and(|h| {
            matches!(h.steps.first().map(|s| &s.node), Some(Step::Drain { groups }) if groups.is_empty())
                || matches!(h.steps.first().map(|s| &s.node), Some(Step::Kill))
        })
    }

    /// Check the effects of one step. `signal` is the signal this step
    /// delivered, if any.
    fn check(&mut self, fx: &[Effect], signal: Option<Sig>, was_draining: bool) {
        let now = self.w.now;
        // Escalation as specified: decided from the signal and the times.
        let mut expect_escalation = false;
        if let Some(sig) = signal {
            let drains = self.is_drain_signal(sig);
            if was_draining && drains && !self.o.escalated {
                match self.o.burst_from {
                    None => self.o.burst_from = Some(now),
                    Some(t) if now.saturating_duration_since(t) < signals::BURST => {}
                    Some(_) => {
                        expect_escalation =
                            self.w.core.plan.topology.escalate == crate::ast::Escalate::OnRepeat
                    }
                }
            }
        }
        let mut draining_at = None;
        for (k, e) in fx.iter().enumerate() {
            match e {
                Effect::Emit(Event::Draining { reason }) => {
                    assert!(!self.o.draining, "a second drain");
                    self.o.draining = true;
                    draining_at = Some(k);
                    let by_signal = signal.is_some_and(|s| self.first_step_drains(s))
                        && !reason.starts_with("finish")
                        && reason != "failed";
                    self.o.drain_signal = Some(by_signal);
                    self.o.burst_from = by_signal.then_some(now);
                    // A `kill` handler is an escalation already.
                    let kills = signal.is_some_and(|s| {
                        self.w.core.plan.topology.handler(s).is_some_and(|h| {
                            matches!(h.steps.first().map(|s| &s.node), Some(Step::Kill))
                        })
                    });
                    if kills {
                        self.o.escalated = true;
                    }
                    if self.o.first_end.is_none() {
                        self.o.first_end = Some(Some(reason.clone()));
                    }
                }
                Effect::Emit(Event::Failed { .. }) if self.o.first_end.is_none() => {
                    self.o.first_end = Some(None);
                }
                Effect::Emit(Event::Escalating { .. }) => {
                    assert!(expect_escalation, "unexpected escalation");
                    assert!(!self.o.escalated, "escalated twice");
                    self.o.escalated = true;
                }
                Effect::Spawn { .. } => {
                    assert!(
                        !was_draining && draining_at.is_none() && self.o.exits == 0,
                        "a spawn after the drain began"
                    );
                }
                Effect::Signal { p, gen, sig, .. } => {
                    let ladder = self.ladder(*p);
                    if ladder.contains(&sig.number()) {
                        let sent = self.o.sent.entry((*p, *gen)).or_default();
                        assert!(
                            sent.insert(sig.number()),
                            "{} sent twice to {p:?} gen {gen}",
                            sig.name()
                        );
                    }
                    assert!(
                        self.w.live.get(p).is_some_and(|l| l.0 == *gen)
                            || self.gone.contains(&(*p, *gen)),
                        "signal to a dead incarnation"
                    );
                }
                Effect::Exit(_) => {
                    self.o.exits += 1;
                    assert!(
                        self.o.calls.is_empty(),
                        "calls left unanswered at the end: {:?}",
                        self.o.calls
                    );
                }
                Effect::Reply { id, result } => {
                    assert!(
                        self.o.calls.remove(id),
                        "call {id} answered twice or never sent"
                    );
                    if let Ok(Reply::Down { code }) = result {
                        self.o.down_codes.push(*code);
                    }
                }
                _ => {}
            }
        }
        // No incarnation outlives its process's removal (scale).
        for (p, (gen, _)) in &self.w.live {
            let exists = self
                .w
                .core
                .slots
                .get(p.0)
                .is_some_and(|s| s.procs.len() > p.1);
            assert!(exists, "{p:?} gen {gen} is alive but was removed");
        }
        if expect_escalation {
            assert!(self.o.escalated, "a repeated drain signal did not escalate");
        }
        // No deadline is overdue: each fired as a next step or a kill.
        for (p, st) in self.w.core.states() {
            if let PState::Stopping {
                deadline: Deadline::At { at, .. },
                ..
            } = st
            {
                assert!(at > now, "{p:?}: deadline overdue");
            }
            if self.o.draining {
                assert!(
                    !matches!(
                        st,
                        PState::Backoff { .. } | PState::Retry { .. } | PState::Held
                    ),
                    "{p:?} pending a restart during a drain: {st:?}"
                );
            }
        }
    }

    fn live_refs(&self) -> Vec<(Ref, u64)> {
        let mut v: Vec<(Ref, u64)> = self.w.live.iter().map(|(p, (g, _))| (*p, *g)).collect();
        v.sort();
        v
    }

    fn exit_one(&mut self, p: Ref, gen: u64, status: Status, empty: bool) -> Vec<Effect> {
        self.w.live.remove(&p);
        self.o.status.insert(p, status);
        if !empty {
            self.gone.insert((p, gen));
        }
        self.w.send(Msg::Exited {
            p,
            gen,
            status,
            group_empty: empty,
        })
    }

    /// A random control call: any command, on known or unknown targets.
    fn control(&mut self) -> Vec<Effect> {
        use crate::control::protocol::{ScaleTo, Target};
        let mut names: Vec<String> = self
            .w
            .core
            .plan
            .topology
            .groups
            .iter()
            .map(|g| g.name.node.clone())
            .collect();
        names.push("nope".into());
        if self.rng.chance(5) {
            return self.w.send(Msg::Refused {
                uid: 4242,
                pid: None,
            });
        }
        let k = 1 + self.rng.below(2) as usize;
        let groups: Vec<String> = (0..k).map(|_| self.rng.pick(&names).clone()).collect();
        let targets: Vec<Target> = groups
            .iter()
            .map(|g| Target {
                group: g.clone(),
                index: self.rng.chance(40).then(|| self.rng.below(4) as u32),
            })
            .collect();
        let request = match self.rng.below(60) {
            0..=1 => Request::Ps {},
            2..=11 | 50..=56 => Request::Restart {
                targets,
                rolling: self.rng.chance(50),
            },
            12..=17 => Request::Stop { groups },
            18..=25 => Request::Start { groups },
            26..=33 => Request::Scale {
                counts: groups
                    .iter()
                    .map(|g| ScaleTo {
                        group: g.clone(),
                        count: 1 + self.rng.below(4) as u32,
                    })
                    .collect(),
            },
            34..=39 => Request::Signal {
                signal: self
                    .rng
                    .pick(&["SIGHUP", "SIGTERM", "SIGINT", "SIGUSR1"])
                    .to_string(),
                targets,
            },
            40..=41 => Request::Reload {},
            42 => Request::Down {},
            _ => Request::Wait {
                ready: if self.rng.chance(50) {
                    Vec::new()
                } else {
                    groups
                },
                timeout_ms: None,
            },
        };
        // The server serialises changing calls on a group; the core must
        // cope anyway, so the walk does not.
        self.o.next_call += 1;
        let id = self.o.next_call;
        self.o.calls.insert(id);
        self.w.call(id, request)
    }

    fn step(&mut self) {
        let was_draining = self.w.core.draining();
        let mut signal = None;
        // Spawns may run out of resources or fail.
        if self.rng.chance(3) {
            let o = match self.rng.below(10) {
                0..=7 => Outcome::Busy("too many open files".into()),
                8 => Outcome::Cancelled,
                _ => Outcome::Failed("cannot execute".into()),
            };
            self.w.outcomes.push_back(o);
        }
        // Control calls mostly while running: during a drain and after the
        // end they are answered at once.
        let running = !self.w.core.draining() && !self.w.core.done();
        let control = if running { 30 } else { 2 };
        let fx = match self.rng.below(100 + control) {
            100.. => self.control(),
            0..=19 => {
                let s = Sig(*self.rng.pick(&SIGNALS));
                if s.number() == libc::SIGCONT {
                    self.w.send(Msg::Resumed)
                } else {
                    signal = Some(s);
                    self.w.signal(s)
                }
            }
            20..=44 => {
                let ms = *self.rng.pick(&[0, 1, 10, 50, 99, 100, 150, 400, 1500]);
                self.w.advance(ms)
            }
            45..=69 => {
                let live = self.live_refs();
                if live.is_empty() {
                    Vec::new()
                } else {
                    let (p, gen) = *self.rng.pick(&live);
                    // A killed process always dies; others as they like.
                    let status = if matches!(
                        self.w.core.slots[p.0].procs[p.1].state,
                        PState::Killed { .. }
                    ) {
                        Status::Signal(libc::SIGKILL)
                    } else {
                        *self.rng.pick(&[
                            Status::Code(0),
                            Status::Code(1),
                            Status::Code(3),
                            Status::Signal(libc::SIGTERM),
                        ])
                    };
                    let empty = self.rng.chance(80);
                    self.exit_one(p, gen, status, empty)
                }
            }
            70..=77 => {
                let gone: Vec<(Ref, u64)> = {
                    let mut v: Vec<_> = self.gone.iter().copied().collect();
                    v.sort();
                    v
                };
                if gone.is_empty() {
                    Vec::new()
                } else {
                    let (p, gen) = *self.rng.pick(&gone);
                    self.gone.remove(&(p, gen));
                    self.w.send(Msg::GroupEmpty { p, gen })
                }
            }
            78..=89 => {
                let live = self.live_refs();
                if live.is_empty() {
                    Vec::new()
                } else {
                    // (A ready check that times out is the core's own
                    // `within` timer, fired by the clock steps.)
                    let (p, gen) = *self.rng.pick(&live);
                    self.w.send(Msg::Ready { p, gen })
                }
            }
            90..=91 => {
                let live = self.live_refs();
                match live.first() {
                    Some(&(p, gen)) => self.w.send(Msg::ExecFailed {
                        p,
                        gen,
                        reason: "cannot execute".into(),
                    }),
                    None => Vec::new(),
                }
            }
            92..=94 => {
                // Stale messages: an old generation, an unknown timer.
                let live = self.live_refs();
                if let Some(&(p, gen)) = live.first() {
                    self.w.send(Msg::Exited {
                        p,
                        gen: gen.wrapping_sub(1),
                        status: Status::Code(0),
                        group_empty: true,
                    })
                } else {
                    self.w.send(Msg::Timer(u64::MAX))
                }
            }
            _ => {
                let s = Sig::INT;
                signal = Some(s);
                self.w.signal(s)
            }
        };
        self.seen_steps += 1;
        self.check(&fx, signal, was_draining);
    }

    /// Drive to the end: a drain, time, deaths. Every process must end down.
    fn finish(&mut self) {
        if !self.w.core.done() {
            let was = self.w.core.draining();
            let fx = self.w.send(Msg::Resumed);
            self.check(&fx, None, was);
            let fx = self.w.signal(Sig::INT);
            self.check(&fx, Some(Sig::INT), was);
        }
        for _ in 0..400 {
            if self.w.core.done() {
                break;
            }
            let was = self.w.core.draining();
            let fx = self.w.advance(200);
            self.check(&fx, None, was);
            // Killed processes die; the others leave when asked, mostly.
            for (p, gen) in self.live_refs() {
                let st = self.w.core.slots[p.0].procs[p.1].state;
                let dies = matches!(st, PState::Killed { .. })
                    || (matches!(st, PState::Stopping { .. }) && self.rng.chance(50));
                if dies {
                    let was = self.w.core.draining();
                    let fx = self.exit_one(p, gen, Status::Signal(libc::SIGTERM), true);
                    self.check(&fx, None, was);
                }
            }
            let gone: Vec<_> = self.gone.drain().collect();
            for (p, gen) in gone {
                let was = self.w.core.draining();
                let fx = self.w.send(Msg::GroupEmpty { p, gen });
                self.check(&fx, None, was);
            }
        }
        assert!(self.w.core.done(), "the core never finished");
        for (p, st) in self.w.core.states() {
            assert!(
                matches!(st, PState::Down | PState::Idle),
                "{p:?} ends {st:?}"
            );
        }
        assert_eq!(self.o.exits, 1, "exactly one exit");
        assert!(
            self.o.calls.is_empty(),
            "unanswered calls: {:?}",
            self.o.calls
        );
        let code = self.w.exit_code.expect("an exit code");
        for c in &self.o.down_codes {
            assert_eq!(*c, code, "`down` answered another status");
        }
        // The exit status of docs/events.md.
        let base = match &self.o.first_end {
            Some(None) => Some(1),
            Some(Some(r)) if r == "finish" => {
                let f = self.w.core.plan.topology.finish.as_ref().expect("finish");
                let s = self.w.core.cur[f.group.node];
                let n = self.w.core.slots[s].procs.len();
                let failing = (0..n)
                    .filter_map(|i| self.o.status.get(&(s, i)).copied())
                    .find(|st| !st.success());
                Some(failing.map_or(0, Status::exit_code))
            }
            Some(Some(_)) if self.kill_handler_fired() => Some(1),
            Some(Some(_)) => Some(0),
            None => None,
        };
        match base {
            Some(b) => {
                let want = if self.o.escalated && b == 0 { 1 } else { b };
                assert_eq!(code, want, "exit status (first end {:?})", self.o.first_end);
            }
            None => assert!(code == 0 || code == 1, "natural end with {code}"),
        }
    }

    fn kill_handler_fired(&self) -> bool {
        self.kill_handler
            && self.w.log.iter().any(|e| {
                matches!(
                    e,
                    Effect::Emit(Event::Killed {
                        reason: "escalation",
                        ..
                    })
                )
            })
    }
}

#[test]
fn random_message_sequences_keep_every_promise() {
    let seed: u64 = std::env::var("FLOWRUN_CORE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let total: usize = std::env::var("FLOWRUN_CORE_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    eprintln!("core model test: FLOWRUN_CORE_SEED={seed} ({total} steps)");
    let started = Instant::now();
    let mut rng = Rng(seed);
    let mut steps = 0;
    let mut episodes = 0;
    while steps < total {
        let ep_seed = rng.next() | 1;
        let result = std::panic::catch_unwind(|| run_episode(ep_seed));
        match result {
            Ok(n) => steps += n,
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let text = TEXT.with(|t| t.take());
                panic!("FLOWRUN_CORE_SEED={seed}: episode {episodes} (seed {ep_seed}) failed: {msg}\n{text}");
            }
        }
        episodes += 1;
    }
    eprintln!(
        "core model test: {steps} steps in {episodes} episodes, {:?}",
        started.elapsed()
    );
}

thread_local! {
    static TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// `flowrun scale` for the model: the plan with the groups' counts
/// changed (copies of process 0); a count of 4 breaks a "lint rule".
fn scaled(plan: &Plan, counts: &[(String, u32)]) -> Result<Plan, Vec<String>> {
    let mut plan = plan.clone();
    for (name, n) in counts {
        if *n == 4 {
            return Err(vec![format!("{name}: 4 processes break a rule")]);
        }
        let gid = plan.topology.group_by_name(name).ok_or_else(Vec::new)?;
        plan.topology.groups[gid].processes = *n;
        let first = plan
            .processes
            .iter()
            .position(|p| p.group == gid)
            .ok_or_else(Vec::new)?;
        let proto = plan.processes[first].clone();
        plan.processes.retain(|p| p.group != gid);
        for i in (0..*n).rev() {
            let mut spec = proto.clone();
            spec.index = i;
            spec.id = format!("{name}.{i}");
            plan.processes.insert(first, spec);
        }
    }
    Ok(plan)
}

/// One topology, one random run; returns the steps taken.
fn run_episode(seed: u64) -> usize {
    let mut rng = Rng(seed);
    // The same seed with another variant gives the same topology with one
    // group changed, or a group added in front: what a reload reads.
    let (base_seed, text, plan) = loop {
        let base_seed = rng.next() | 1;
        let t = topology(&mut Rng(base_seed), 0);
        if let Some(p) = compiles(&t) {
            break (base_seed, t, p);
        }
    };
    TEXT.with(|t| *t.borrow_mut() = text.clone());
    let hangup_drains = rng.chance(30);
    let kill_handler = text.contains("kill");
    // Reloads alternate between the same file, a changed group, a group
    // added in front, and a rejected file.
    let turn = Rc::new(Cell::new(rng.next()));
    let t2 = turn.clone();
    let reload: Reload = Box::new(move || {
        let v = t2.get().wrapping_add(1);
        t2.set(v);
        if v % 4 == 3 {
            return Err(vec!["m.pf:1:1: error[FR001] nope".into()]);
        }
        let mut r = Rng(base_seed);
        let t = topology(&mut r, v % 3);
        compiles(&t).ok_or_else(|| vec!["does not compile".into()])
    });
    let _ = turn;
    let mut w = World::with(
        plan,
        reload,
        Env {
            hangup_drains,
            containment: "process-group",
        },
    );
    w.core.set_scale(Box::new(scaled));
    let mut ep = Episode {
        w,
        rng,
        gone: HashSet::new(),
        o: Oracle::default(),
        hangup_drains,
        kill_handler,
        seen_steps: 0,
    };
    let start_fx = ep.w.log.clone();
    ep.check(&start_fx, None, false);
    let n = 50 + ep.rng.below(350) as usize;
    for _ in 0..n {
        ep.step();
    }
    ep.finish();
    ep.seen_steps
}
