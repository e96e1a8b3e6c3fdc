//! Control calls (docs/control.md, the contract in `control/mod.rs`):
//! [`Msg::Control`] in, exactly one [`Effect::Reply`] with the same id out.
//!
//! `ps`, `signal`, `reload` and refusals are answered at once. `restart`,
//! `stop`, `start`, `scale`, `down` and `wait` become a pending [`Call`]
//! that every `handle` advances (after the handler runs, so a handler and
//! a call see the same state) until it can be answered. A drain answers
//! every pending call but `down` with `unavailable`; the end of the run
//! answers `down` with the exit status.
//!
//! The calls reuse the handlers' machinery: a `restart` holds its groups
//! as a handler's restart does (their restart policy stands aside while
//! the ladder runs), a rolling one is advanced by the handlers'
//! `Waiting::Rolling`, `signal` is a handler's `forward`, `reload` is the
//! handlers' reload. `stop G` marks G and, transitively, its dependents
//! (the groups a drain stops before it) `kept`: drained (no policy, no
//! start by conditions), dependents stopped first; `start G` starts G and
//! the groups kept only because G was stopped, their conditions applying.

use super::*;
use crate::control::protocol::{
    ErrorCode, ExitStatus, GroupStatus, ProcState, ProcessStatus, PsReply, Target,
};

pub(super) struct Call {
    id: u64,
    pending: Pending,
}

enum Pending {
    /// Stopping `procs` with their ladders (`started`: false), then
    /// starting them again (true).
    Restart {
        procs: Vec<Ref>,
        slots: Vec<usize>,
        started: bool,
    },
    /// One process at a time, each ready before the next.
    Rolling {
        wait: Option<Waiting>,
        procs: Vec<Ref>,
        slots: Vec<usize>,
    },
    /// Each slot stops once the named slots it waits for are down.
    Stop {
        slots: Vec<usize>,
        waits: Vec<Vec<usize>>,
    },
    Start {
        slots: Vec<usize>,
    },
    /// Scaled: `leaving` stop and are removed (slot, new count); `fresh`
    /// start.
    Scale {
        leaving: Vec<(usize, usize)>,
        fresh: Vec<Ref>,
        names: Vec<String>,
    },
    Down,
    /// Group names; empty: every current group.
    Wait {
        groups: Vec<String>,
    },
}

fn err(code: ErrorCode, message: impl Into<String>) -> ControlError {
    ControlError::new(code, message)
}

fn unavailable() -> ControlError {
    err(
        ErrorCode::Unavailable,
        "the topology is stopping and takes no requests",
    )
}

impl Core {
    fn reply(&mut self, id: u64, result: Result<Reply, ControlError>) {
        self.out.push(Effect::Reply { id, result });
    }

    fn answer_unavailable(&mut self, id: u64) {
        self.reply(id, Err(unavailable()));
    }

    /// Why a drain ends a pending call: `failed` when a group it acts on
    /// (or waits for) failed, else `unavailable`.
    fn drain_answer(&self, pending: &Pending) -> ControlError {
        let slots: Vec<usize> = match pending {
            Pending::Restart { slots, .. }
            | Pending::Rolling { slots, .. }
            | Pending::Start { slots }
            | Pending::Stop { slots, .. } => slots.clone(),
            Pending::Scale { fresh, .. } => fresh.iter().map(|p| p.0).collect(),
            Pending::Wait { groups } if groups.is_empty() => self.cur.clone(),
            Pending::Wait { groups } => groups
                .iter()
                .filter_map(|g| self.slot_named(g).ok())
                .collect(),
            Pending::Down => Vec::new(),
        };
        match slots.iter().find(|&&s| self.slots[s].failed) {
            Some(&s) => err(
                ErrorCode::Failed,
                format!("group {} failed", self.slots[s].def.name.node),
            ),
            None => unavailable(),
        }
    }

    pub(super) fn on_control(&mut self, id: u64, request: Request) {
        if let Request::Ps {} = request {
            let ps = self.ps();
            self.reply(id, Ok(Reply::Ps(ps)));
            return;
        }
        match self.mode {
            Mode::Running => {}
            Mode::Done if matches!(request, Request::Down {}) => {
                let code = self.code.unwrap_or(0);
                return self.reply(id, Ok(Reply::Down { code }));
            }
            Mode::Draining(_) if matches!(request, Request::Down {}) => {
                self.calls.push(Call {
                    id,
                    pending: Pending::Down,
                });
                return;
            }
            _ => return self.answer_unavailable(id),
        }
        match self.start_call(request) {
            Ok(Ok(reply)) => self.reply(id, Ok(reply)),
            Ok(Err(pending)) => self.calls.push(Call { id, pending }),
            Err(e) => self.reply(id, Err(e)),
        }
    }

    /// Act on a request: `Ok(Ok(reply))` answers at once, `Ok(Err(p))`
    /// waits as `p`.
    fn start_call(&mut self, request: Request) -> Result<Result<Reply, Pending>, ControlError> {
        match request {
            Request::Ps {} => Ok(Ok(Reply::Ps(self.ps()))),
            Request::Logs { .. } | Request::Events { .. } => Err(err(
                ErrorCode::BadRequest,
                format!("`{}` is answered by the server", request.name()),
            )),
            Request::Restart { targets, rolling } => {
                let procs = self.resolve(&targets)?;
                let mut slots: Vec<usize> = procs.iter().map(|p| p.0).collect();
                slots.dedup();
                for &s in &slots {
                    let g = &self.slots[s];
                    let name = &g.def.name.node;
                    if g.kept {
                        return Err(err(
                            ErrorCode::Failed,
                            format!("{name} is stopped: `flowrun start {name}` starts it"),
                        ));
                    }
                    if !g.started {
                        return Err(err(
                            ErrorCode::Failed,
                            format!("{name} has not started yet (its `after` conditions)"),
                        ));
                    }
                }
                for &s in &slots {
                    self.slots[s].ctl_hold = true;
                }
                if rolling {
                    Ok(Err(Pending::Rolling {
                        wait: Some(Waiting::Rolling {
                            todo: procs.iter().copied().collect(),
                            current: None,
                        }),
                        procs,
                        slots,
                    }))
                } else {
                    for &p in &procs {
                        self.stop_proc(p);
                    }
                    Ok(Err(Pending::Restart {
                        procs,
                        slots,
                        started: false,
                    }))
                }
            }
            Request::Stop { groups } => {
                let named = self.resolve_groups(&groups)?;
                let all = crate::graph::stop_waits_for(&self.plan.topology);
                let gid_of = |core: &Core, s: usize| core.cur.iter().position(|&c| c == s);
                // The named groups and, transitively, their dependents:
                // the groups a drain stops before them.
                let mut slots = named.clone();
                let mut because: Vec<(usize, usize)> = Vec::new();
                let mut k = 0;
                while k < slots.len() {
                    let s = slots[k];
                    let root = because
                        .iter()
                        .find(|&&(d, _)| d == s)
                        .map_or(s, |&(_, r)| r);
                    let deps = gid_of(self, s)
                        .and_then(|g| all.get(g))
                        .cloned()
                        .unwrap_or_default();
                    for d in deps.iter().filter_map(|&d| self.cur.get(d).copied()) {
                        if !slots.contains(&d) {
                            slots.push(d);
                            because.push((d, root));
                        }
                    }
                    k += 1;
                }
                let waits = slots
                    .iter()
                    .map(|&s| {
                        let before = gid_of(self, s)
                            .and_then(|g| all.get(g))
                            .cloned()
                            .unwrap_or_default();
                        before
                            .iter()
                            .filter_map(|&d| self.cur.get(d).copied())
                            .filter(|d| slots.contains(d))
                            .collect()
                    })
                    .collect();
                for &s in &slots {
                    let g = &mut self.slots[s];
                    if !g.kept {
                        // A dependent remembers which stop took it down,
                        // so that starting that group starts it too.
                        g.kept_because = because.iter().find(|&&(d, _)| d == s).map(|&(_, r)| r);
                    }
                    if named.contains(&s) {
                        g.kept_because = None;
                    }
                    g.kept = true;
                    g.drained = true;
                }
                Ok(Err(Pending::Stop { slots, waits }))
            }
            Request::Start { groups } => {
                let mut slots = self.resolve_groups(&groups)?;
                // And the groups stopped only because one of these was.
                for (s, g) in self.slots.iter().enumerate() {
                    if g.kept
                        && !slots.contains(&s)
                        && g.kept_because.is_some_and(|r| slots.contains(&r))
                    {
                        slots.push(s);
                    }
                }
                for &s in &slots {
                    let g = &mut self.slots[s];
                    if !g.kept {
                        continue;
                    }
                    // Started again as if for the first time: its
                    // conditions, and its dependents' conditions on it,
                    // apply again.
                    g.kept = false;
                    g.kept_because = None;
                    g.drained = false;
                    g.started = false;
                    for pr in &mut g.procs {
                        pr.ever_started = false;
                        pr.ever_ready = false;
                        pr.status = None;
                    }
                }
                Ok(Err(Pending::Start { slots }))
            }
            Request::Scale { counts } => self.scale_call(counts),
            Request::Signal { signal, targets } => {
                let sig = Sig::parse(&signal).ok_or_else(|| {
                    err(ErrorCode::BadRequest, format!("unknown signal {signal}"))
                })?;
                let procs = self.resolve(&targets)?;
                let mut done = Vec::new();
                for p in procs {
                    let pr = &self.slots[p.0].procs[p.1];
                    if matches!(pr.state, PState::Running { .. } | PState::Stopping { .. }) {
                        done.push(pr.who.process.clone());
                        self.forward(p, sig);
                    }
                }
                Ok(Ok(Reply::Done { processes: done }))
            }
            Request::Reload {} => match self.reload() {
                Ok(changed) => Ok(Ok(Reply::Reloaded { changed })),
                Err(errors) => Err(err(
                    ErrorCode::Refused,
                    "the topology file has errors; nothing changed",
                )
                .with_details(errors)),
            },
            Request::Down {} => {
                self.begin_drain("flowrun down".to_string(), 0, Cause::Topology);
                Ok(Err(Pending::Down))
            }
            Request::Wait { ready, .. } => {
                self.resolve_groups(&ready)?;
                Ok(Err(Pending::Wait { groups: ready }))
            }
        }
    }

    fn scale_call(
        &mut self,
        counts: Vec<crate::control::protocol::ScaleTo>,
    ) -> Result<Result<Reply, Pending>, ControlError> {
        let names: Vec<String> = counts.iter().map(|c| c.group.clone()).collect();
        self.resolve_groups(&names)?;
        if let Some(c) = counts.iter().find(|c| c.count == 0) {
            // The server refuses it already; a group never has no process.
            return Err(err(
                ErrorCode::BadRequest,
                format!("{}: a group runs at least one process", c.group),
            ));
        }
        let Some(scale) = self.scale.as_mut() else {
            return Err(err(ErrorCode::Unavailable, "this runner cannot scale"));
        };
        let asked: Vec<(String, u32)> = counts.iter().map(|c| (c.group.clone(), c.count)).collect();
        let plan = scale(&self.plan, &asked).map_err(|findings| {
            err(
                ErrorCode::Refused,
                "the new process counts break lint rules; nothing changed",
            )
            .with_details(findings)
        })?;
        // A scaled plan has the same groups in the same order.
        let same = plan.topology.groups.len() == self.cur.len()
            && plan
                .topology
                .groups
                .iter()
                .zip(&self.cur)
                .all(|(g, &s)| g.name.node == self.slots[s].def.name.node);
        if !same {
            return Err(err(
                ErrorCode::Internal,
                "the scaled plan does not have the running plan's groups",
            ));
        }
        let mut leaving = Vec::new();
        let mut fresh = Vec::new();
        let mut acted = Vec::new();
        for (name, _) in &asked {
            let Some(gid) = plan.topology.group_by_name(name) else {
                continue;
            };
            let s = self.cur[gid];
            let specs: Vec<&ProcessSpec> =
                plan.processes.iter().filter(|p| p.group == gid).collect();
            let n = specs.len();
            let old = self.slots[s].procs.len();
            self.slots[s].def = Arc::new(plan.topology.groups[gid].clone());
            self.slots[s].fingerprint = fingerprint(&plan, gid);
            // The processes that stay get the new plan's spec (their
            // `{processes}` and FLOWRUN_PROCESSES changed): it applies at
            // their next start.
            for (pr, spec) in self.slots[s].procs.iter_mut().zip(&specs) {
                pr.spec = Arc::new((*spec).clone());
            }
            for spec in specs.iter().skip(old) {
                // A generation no earlier incarnation of this index used.
                let gen = self.next_id;
                self.next_id += 1;
                let now = self.now;
                let slot = &mut self.slots[s];
                slot.procs.push(Proc {
                    who: Who {
                        process: spec.id.clone(),
                        group: name.clone(),
                        index: spec.index,
                    },
                    state: PState::Idle,
                    gen,
                    status: None,
                    ever_started: false,
                    ever_ready: false,
                    attempts: 0,
                    window: Window::default(),
                    started_at: now,
                    sent: 0,
                    starts: 0,
                    last_exit: None,
                    leaving: false,
                    exec_failed: None,
                    spec: Arc::new((*spec).clone()),
                });
                let p = (s, slot.procs.len() - 1);
                acted.push(spec.id.clone());
                fresh.push(p);
                if slot.started && !slot.drained && !slot.failed {
                    self.slots[s].procs[p.1].state = PState::Down;
                    self.spawn(p);
                }
            }
            if n < old {
                for i in n..old {
                    self.slots[s].procs[i].leaving = true;
                    acted.push(self.slots[s].procs[i].who.process.clone());
                    self.stop_proc((s, i));
                }
                leaving.push((s, n));
            }
        }
        self.plan = plan;
        Ok(Err(Pending::Scale {
            leaving,
            fresh,
            names: acted,
        }))
    }

    /// Every target's processes, sorted, without duplicates.
    fn resolve(&self, targets: &[Target]) -> Result<Vec<Ref>, ControlError> {
        let mut out = Vec::new();
        for t in targets {
            let s = self.slot_named(&t.group)?;
            let n = self.slots[s].procs.len();
            match t.index {
                Some(i) if (i as usize) < n => out.push((s, i as usize)),
                Some(i) => {
                    return Err(self.unknown(format!(
                        "{} has no process {i} ({})",
                        t.group,
                        crate::plural(n, "process")
                    )))
                }
                None => out.extend((0..n).map(|i| (s, i))),
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn resolve_groups(&self, names: &[String]) -> Result<Vec<usize>, ControlError> {
        let mut out = Vec::new();
        for name in names {
            let s = self.slot_named(name)?;
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Ok(out)
    }

    fn slot_named(&self, name: &str) -> Result<usize, ControlError> {
        self.plan
            .topology
            .group_by_name(name)
            .and_then(|gid| self.cur.get(gid).copied())
            .ok_or_else(|| self.unknown(format!("the topology has no group {name}")))
    }

    fn unknown(&self, message: String) -> ControlError {
        let known = self
            .plan
            .topology
            .groups
            .iter()
            .map(|g| g.name.node.clone())
            .collect();
        err(ErrorCode::UnknownGroup, message).with_details(known)
    }

    fn names(&self, procs: &[Ref]) -> Vec<String> {
        procs
            .iter()
            .filter_map(|&p| Some(self.slots.get(p.0)?.procs.get(p.1)?.who.process.clone()))
            .collect()
    }

    fn slot_procs(&self, slots: &[usize]) -> Vec<Ref> {
        slots
            .iter()
            .flat_map(|&s| (0..self.slots[s].procs.len()).map(move |i| (s, i)))
            .collect()
    }

    /// Hand held processes of `slots` back to their restart policy.
    fn unhold(&mut self, slots: &[usize]) {
        for &s in slots {
            self.slots[s].ctl_hold = false;
            if self.slots[s].hold {
                continue; // a handler still manages it and releases it
            }
            for i in 0..self.slots[s].procs.len() {
                if self.slots[s].procs[i].state == PState::Held {
                    self.slots[s].procs[i].state = PState::Down;
                    self.apply_policy((s, i));
                }
            }
        }
    }

    /// Stop again what started while it was being stopped (a spawn that
    /// was in flight).
    fn restop(&mut self, procs: &[Ref]) {
        for &p in procs {
            if matches!(self.slots[p.0].procs[p.1].state, PState::Running { .. }) {
                self.stop_proc(p);
            }
        }
    }

    pub(super) fn advance_calls(&mut self) {
        if self.calls.is_empty() {
            return;
        }
        let calls = std::mem::take(&mut self.calls);
        let mut answered = false;
        let mut removed = Vec::new();
        for mut c in calls {
            if !matches!(self.mode, Mode::Running) {
                self.calls.push(c);
                continue;
            }
            match self.advance_call(&mut c.pending) {
                Some(result) => {
                    answered = true;
                    if let Pending::Scale { leaving, .. } = &c.pending {
                        removed.extend(leaving.iter().copied());
                    }
                    self.reply(c.id, result);
                }
                None => self.calls.push(c),
            }
        }
        for (s, n) in removed {
            self.remove_from(s, n);
        }
        if !matches!(self.mode, Mode::Running) {
            self.calls_drain_began();
        }
        if answered {
            // An answer can release held processes or end a stop; the
            // topology's rules run again on the new state.
            self.progress();
        }
    }

    /// `Some(answer)` when the call is complete.
    fn advance_call(&mut self, pending: &mut Pending) -> Option<Result<Reply, ControlError>> {
        match pending {
            Pending::Down => None,
            Pending::Restart {
                procs,
                slots,
                started,
            } => {
                if !*started {
                    self.restop(procs);
                    if procs
                        .iter()
                        .any(|&p| self.slots[p.0].procs[p.1].state.live())
                    {
                        return None;
                    }
                    for &p in procs.iter() {
                        self.respawn(p);
                    }
                    *started = true;
                }
                let starting = procs.iter().any(|&p| {
                    matches!(
                        self.slots[p.0].procs[p.1].state,
                        PState::Spawning { .. } | PState::Retry { .. }
                    )
                });
                if starting {
                    return None;
                }
                let (procs, slots) = (procs.clone(), slots.clone());
                let result = self.restarted(&procs, false);
                self.unhold(&slots);
                Some(result)
            }
            Pending::Rolling { wait, procs, slots } => {
                if let Some(Waiting::Rolling {
                    current: Some((p, false)),
                    ..
                }) = wait
                {
                    let p = *p;
                    self.restop(&[p]);
                }
                let w = wait.take()?;
                *wait = self.advance_wait(w);
                if wait.is_some() {
                    return None;
                }
                let (procs, slots) = (procs.clone(), slots.clone());
                let result = self.restarted(&procs, true);
                self.unhold(&slots);
                Some(result)
            }
            Pending::Stop { slots, waits } => {
                for (k, &s) in slots.iter().enumerate() {
                    if waits[k].iter().all(|&d| !self.slots[d].alive()) {
                        self.stop_slots(&[s]);
                        let procs = self.slot_procs(&[s]);
                        self.restop(&procs);
                    }
                }
                if slots.iter().any(|&s| self.slots[s].alive()) {
                    return None;
                }
                let procs = self.slot_procs(slots);
                Some(Ok(Reply::Done {
                    processes: self.names(&procs),
                }))
            }
            Pending::Start { slots } => {
                let started = slots.iter().all(|&s| {
                    let g = &self.slots[s];
                    g.started && g.procs.iter().all(|p| p.ever_started)
                });
                if !started {
                    return None;
                }
                let procs = self.slot_procs(slots);
                Some(Ok(Reply::Done {
                    processes: self.names(&procs),
                }))
            }
            Pending::Scale {
                leaving,
                fresh,
                names,
            } => {
                let gone: Vec<Ref> = leaving
                    .iter()
                    .flat_map(|&(s, n)| (n..self.slots[s].procs.len()).map(move |i| (s, i)))
                    .collect();
                self.restop(&gone);
                if gone
                    .iter()
                    .any(|&p| self.slots[p.0].procs[p.1].state.live())
                {
                    return None;
                }
                let starting = fresh.iter().any(|&p| {
                    matches!(
                        self.slots[p.0].procs[p.1].state,
                        PState::Spawning { .. } | PState::Retry { .. }
                    )
                });
                if starting {
                    return None;
                }
                // `advance_calls` removes them once every call is back.
                Some(Ok(Reply::Done {
                    processes: std::mem::take(names),
                }))
            }
            Pending::Wait { groups } => {
                let slots: Vec<usize> = if groups.is_empty() {
                    self.cur.clone()
                } else {
                    groups
                        .iter()
                        .filter_map(|g| self.slot_named(g).ok())
                        .collect()
                };
                if let Some(&s) = slots.iter().find(|&&s| self.slots[s].failed) {
                    let name = &self.slots[s].def.name.node;
                    return Some(Err(err(ErrorCode::Failed, format!("group {name} failed"))));
                }
                let ready = slots.iter().all(|&s| {
                    let g = &self.slots[s];
                    g.started
                        && g.procs.iter().all(|p| match p.state {
                            PState::Running { ready, .. } => ready,
                            // A `once` step that ran to completion.
                            PState::Down => p.ever_ready && p.status.is_some_and(Status::success),
                            _ => false,
                        })
                });
                if !ready {
                    return None;
                }
                let mut names: Vec<String> = slots
                    .iter()
                    .map(|&s| self.slots[s].def.name.node.clone())
                    .collect();
                names.sort();
                Some(Ok(Reply::Ready { groups: names }))
            }
        }
    }

    /// The answer to a restart whose processes are no longer starting:
    /// `failed` if one of them is not running (and, `rolling`, ready).
    fn restarted(&self, procs: &[Ref], rolling: bool) -> Result<Reply, ControlError> {
        for &p in procs {
            let pr = &self.slots[p.0].procs[p.1];
            let ok = match pr.state {
                PState::Running { ready, .. } => ready || !rolling,
                _ => false,
            };
            if !ok {
                return Err(err(
                    ErrorCode::Failed,
                    format!("{} did not come back up", pr.who.process),
                ));
            }
        }
        Ok(Reply::Done {
            processes: self.names(procs),
        })
    }

    /// Remove the scaled-away processes `n..` of slot `s` (all down), and
    /// every timer, handler wait or call that still names them.
    fn remove_from(&mut self, s: usize, n: usize) {
        let gone = |p: &Ref| p.0 == s && p.1 >= n;
        let purge = |w: &mut Waiting| {
            if let Waiting::Rolling { todo, current } = w {
                todo.retain(|p| !gone(p));
                if current.is_some_and(|(p, _)| gone(&p)) {
                    *current = None;
                }
            }
        };
        for c in &mut self.calls {
            match &mut c.pending {
                Pending::Restart { procs, .. } => procs.retain(|p| !gone(p)),
                Pending::Rolling { wait, procs, .. } => {
                    procs.retain(|p| !gone(p));
                    if let Some(w) = wait {
                        purge(w);
                    }
                }
                Pending::Scale { fresh, .. } => fresh.retain(|p| !gone(p)),
                _ => {}
            }
        }
        self.timers.retain(|_, t| match &t.kind {
            TimerKind::Deadline(p, _)
            | TimerKind::Restart(p)
            | TimerKind::Retry(p)
            | TimerKind::Ready(p, _) => !gone(p),
            TimerKind::Wait => true,
        });
        if let Some(Run {
            waiting: Some(w), ..
        }) = &mut self.run
        {
            purge(w);
        }
        self.slots[s].procs.truncate(n);
    }

    /// A drain began: it answers every call but `down`, which waits for
    /// the end.
    pub(super) fn calls_drain_began(&mut self) {
        let calls = std::mem::take(&mut self.calls);
        for c in calls {
            match c.pending {
                Pending::Down => self.calls.push(c),
                _ => {
                    let e = self.drain_answer(&c.pending);
                    self.reply(c.id, Err(e));
                }
            }
        }
    }

    /// The run ended with `code`.
    pub(super) fn calls_finished(&mut self, code: i32) {
        for c in std::mem::take(&mut self.calls) {
            match c.pending {
                Pending::Down => self.reply(c.id, Ok(Reply::Down { code })),
                _ => {
                    let e = self.drain_answer(&c.pending);
                    self.reply(c.id, Err(e));
                }
            }
        }
    }

    /// `ps`: every process of the current groups, then those of retired
    /// groups still alive; `cpu_ms` is left for the OS layer.
    fn ps(&self) -> PsReply {
        let mut slots: Vec<usize> = self.cur.clone();
        slots.extend(
            (0..self.slots.len()).filter(|&s| self.slots[s].retired && self.slots[s].alive()),
        );
        let mut processes = Vec::new();
        let mut groups = Vec::new();
        for s in slots {
            let g = &self.slots[s];
            let mut sum = GroupStatus {
                group: g.def.name.node.clone(),
                processes: 0,
                ready: 0,
                running: 0,
                stopped: 0,
                failed: 0,
                held: g.kept,
            };
            for pr in &g.procs {
                let st = self.status_of(g, pr);
                sum.processes += 1;
                match st.state {
                    ProcState::Ready => sum.ready += 1,
                    ProcState::Running => sum.running += 1,
                    ProcState::Stopped => sum.stopped += 1,
                    ProcState::Failed => sum.failed += 1,
                    _ => {}
                }
                processes.push(st);
            }
            if !g.retired {
                groups.push(sum);
            }
        }
        PsReply { processes, groups }
    }

    fn status_of(&self, g: &Slot, pr: &Proc) -> ProcessStatus {
        let has_ready = g.def.ready.is_some();
        let (state, pid, step) = match pr.state {
            PState::Spawning { .. } | PState::Retry { .. } => (ProcState::Starting, None, None),
            PState::Running { pid, ready, .. } => (
                match (ready, has_ready) {
                    (false, _) => ProcState::Starting,
                    (true, true) => ProcState::Ready,
                    (true, false) => ProcState::Running,
                },
                Some(pid),
                None,
            ),
            PState::Stopping { pid, step, .. } => {
                (ProcState::Stopping, Some(pid), Some(step as u32))
            }
            PState::Killed { pid, .. } => (
                ProcState::Stopping,
                Some(pid),
                Some(g.def.stop.steps.len() as u32),
            ),
            PState::Backoff { .. } => (ProcState::BackingOff, None, None),
            PState::Idle | PState::Held | PState::Down if g.failed => {
                (ProcState::Failed, None, None)
            }
            PState::Idle | PState::Held | PState::Down => (ProcState::Stopped, None, None),
        };
        let uptime = pid.map(|_| self.now.saturating_duration_since(pr.started_at));
        ProcessStatus {
            group: g.def.name.node.clone(),
            index: pr.who.index,
            pid,
            state,
            step,
            restarts: pr.starts.saturating_sub(1),
            attempt: policy::current_attempt(pr.attempts, uptime, g.def.restart.backoff_max),
            uptime_ms: uptime.map(|d| d.as_millis() as u64),
            last_exit: pr.last_exit.map(|st| ExitStatus {
                code: match st {
                    Status::Code(c) => Some(c),
                    Status::Signal(_) => None,
                },
                signal: st.signal_name().map(str::to_string),
            }),
            cpu_ms: None,
        }
    }
}
