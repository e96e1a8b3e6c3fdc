//! Handler runs (one at a time, in arrival order) and reload.

use super::*;

impl Core {
    pub(super) fn run_handler(&mut self) {
        loop {
            if !matches!(self.mode, Mode::Running) {
                self.run = None;
                return;
            }
            if self.run.is_none() {
                let Some(sig) = self.queue.pop_front() else {
                    return;
                };
                let Some(h) = self.plan.topology.handler(sig) else {
                    continue;
                };
                let steps = h.steps.iter().map(|s| s.node.clone()).collect();
                self.run = Some(Run {
                    sig,
                    steps,
                    next: 0,
                    waiting: None,
                    held: Vec::new(),
                });
            }
            let Some(run) = &mut self.run else { return };
            if let Some(w) = run.waiting.take() {
                match self.advance_wait(w) {
                    Some(w) => {
                        if let Some(run) = &mut self.run {
                            run.waiting = Some(w);
                        }
                        return;
                    }
                    None => continue,
                }
            }
            let Some(run) = &mut self.run else { return };
            if run.next >= run.steps.len() {
                let held = std::mem::take(&mut run.held);
                self.run = None;
                self.release(&held);
                continue;
            }
            let step = run.steps[run.next].clone();
            let rest = run.steps[run.next + 1..].to_vec();
            let first = run.next == 0;
            let sig = run.sig;
            run.next += 1;
            self.exec_step(sig, step, &rest, first);
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
            self.slots[s].hold = true;
            if let Some(run) = &mut self.run {
                if !run.held.contains(&s) {
                    run.held.push(s);
                }
            }
        }
    }

    fn release(&mut self, held: &[usize]) {
        for &s in held {
            self.slots[s].hold = false;
            for i in 0..self.slots[s].procs.len() {
                if self.slots[s].procs[i].state == PState::Held {
                    self.slots[s].procs[i].state = PState::Down;
                    self.apply_policy((s, i));
                }
            }
        }
    }

    fn set_waiting(&mut self, w: Waiting) {
        if let Some(run) = &mut self.run {
            run.waiting = Some(w);
        }
    }

    fn exec_step(&mut self, sig: Sig, step: Step, rest: &[Step], first: bool) {
        match step {
            Step::Ignore => {}
            Step::Kill => {
                self.begin_drain(sig.name().to_string(), 1, Cause::Signal);
                self.escalated = true;
                self.kill_everything();
            }
            Step::Drain { groups } if groups.is_empty() => {
                let cause = if first {
                    Cause::Signal
                } else {
                    Cause::Topology
                };
                self.begin_drain(sig.name().to_string(), 0, cause);
            }
            Step::Drain { groups } => {
                let slots = self.slots_of(&groups);
                for &s in &slots {
                    self.slots[s].drained = true;
                }
                self.hold(&slots);
                self.stop_slots(&slots);
                self.set_waiting(Waiting::Down(slots));
            }
            Step::Restart { groups, rolling } => {
                let slots: Vec<usize> = self
                    .slots_of(&groups)
                    .into_iter()
                    // A group `flowrun stop` holds stays stopped until
                    // `flowrun start`.
                    .filter(|&s| {
                        let g = &self.slots[s];
                        g.started && !g.failed && !g.kept
                    })
                    .collect();
                self.hold(&slots);
                for &s in &slots {
                    self.slots[s].drained = false;
                }
                if rolling {
                    let todo = slots
                        .iter()
                        .flat_map(|&s| (0..self.slots[s].procs.len()).map(move |i| (s, i)))
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
            Step::Reload => {
                let _ = self.reload();
            }
            Step::Forward { signal, groups } => {
                let fsig = signal.map_or(sig, |s| s.node);
                let slots = self.slots_of(&groups);
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
                    for i in 0..self.slots[s].procs.len() {
                        self.forward((s, i), fsig);
                    }
                }
            }
            Step::Wait { groups, within } => {
                let slots = self.slots_of(&groups);
                let timer = match within {
                    Some(Timeout::Finite(d)) => Some(self.arm(d, TimerKind::Wait)),
                    _ => None,
                };
                self.set_waiting(Waiting::Wait { slots, timer });
            }
        }
    }

    /// Forward `sig`. A signal of the group's ladder counts as that ladder
    /// step (the ladder continues from there, deadline included); one
    /// already sent to this incarnation is not sent again.
    pub(super) fn forward(&mut self, p: Ref, sig: Sig) {
        let slot = &self.slots[p.0];
        let pr = &slot.procs[p.1];
        let (gen, current) = match pr.state {
            PState::Running { gen, .. } => (gen, None),
            PState::Stopping {
                gen, step, leader, ..
            } => {
                if !leader && slot.def.stop.target == StopTarget::Leader {
                    return;
                }
                (gen, Some(step))
            }
            _ => return,
        };
        if pr.sent & bit(sig) != 0 {
            return;
        }
        let step = slot.def.stop.steps.iter().position(|l| l.signal == sig);
        match step {
            Some(k) if current.map_or(true, |c| k > c) => {
                if let PState::Stopping {
                    deadline: Deadline::At { timer, .. },
                    ..
                } = pr.state
                {
                    self.timers.remove(&timer);
                }
                self.send_step(p, k);
            }
            _ => {
                let target = match pr.state {
                    PState::Stopping { leader: false, .. } => StopTarget::Group,
                    _ => slot.def.stop.target,
                };
                if step.is_some() {
                    self.slots[p.0].procs[p.1].sent |= bit(sig);
                }
                self.out.push(Effect::Signal {
                    p,
                    gen,
                    sig,
                    target,
                });
            }
        }
    }

    fn slots_down(&self, slots: &[usize]) -> bool {
        slots.iter().all(|&s| !self.slots[s].alive())
    }

    pub(super) fn respawn(&mut self, p: Ref) {
        let pr = &mut self.slots[p.0].procs[p.1];
        match pr.state {
            PState::Backoff { timer } | PState::Retry { timer, .. } => {
                self.timers.remove(&timer);
                pr.state = PState::Down;
            }
            PState::Held | PState::Idle => pr.state = PState::Down,
            _ => {}
        }
        if self.slots[p.0].procs[p.1].state == PState::Down {
            self.spawn(p);
        }
    }

    /// `Some` while the wait continues.
    pub(super) fn advance_wait(&mut self, w: Waiting) -> Option<Waiting> {
        match w {
            Waiting::Down(slots) => (!self.slots_down(&slots)).then_some(Waiting::Down(slots)),
            Waiting::Wait { slots, timer } => {
                if self.slots_down(&slots) {
                    if let Some(t) = timer {
                        self.timers.remove(&t);
                    }
                    None
                } else {
                    Some(Waiting::Wait { slots, timer })
                }
            }
            Waiting::RestartStop(slots) => {
                if !self.slots_down(&slots) {
                    return Some(Waiting::RestartStop(slots));
                }
                for &s in &slots {
                    for i in 0..self.slots[s].procs.len() {
                        self.respawn((s, i));
                    }
                }
                None
            }
            Waiting::Rolling { mut todo, current } => {
                match current {
                    Some((p, false)) => {
                        if self.slots[p.0].procs[p.1].state.live() {
                            return Some(Waiting::Rolling { todo, current });
                        }
                        self.respawn(p);
                        return Some(Waiting::Rolling {
                            todo,
                            current: Some((p, true)),
                        });
                    }
                    Some((p, true)) => {
                        if matches!(
                            self.slots[p.0].procs[p.1].state,
                            PState::Spawning { .. } | PState::Running { ready: false, .. }
                        ) {
                            return Some(Waiting::Rolling { todo, current });
                        }
                    }
                    None => {}
                }
                let p = todo.pop_front()?;
                self.stop_proc(p);
                Some(Waiting::Rolling {
                    todo,
                    current: Some((p, false)),
                })
            }
        }
    }

    /// Reload; the changed groups, or the errors that rejected it.
    pub(super) fn reload(&mut self) -> Result<Vec<String>, Vec<String>> {
        self.emit(Event::Reloading);
        let plan = match (self.reload)() {
            Ok(plan) => plan,
            Err(errors) => {
                self.emit(Event::ReloadRejected {
                    errors: errors.clone(),
                });
                return Err(errors);
            }
        };
        let mut new_cur = Vec::new();
        let mut changed = Vec::new();
        let mut kept = Vec::new();
        for (gid, g) in plan.topology.groups.iter().enumerate() {
            let fp = fingerprint(&plan, gid);
            let old = self
                .cur
                .iter()
                .copied()
                .find(|&s| self.slots[s].def.name.node == g.name.node);
            match old {
                Some(s) if self.slots[s].fingerprint == fp => {
                    // Unchanged, but its `after` edges now use the new
                    // plan's ids: dependencies stay by name.
                    self.slots[s].def = Arc::new(g.clone());
                    kept.push(s);
                    new_cur.push(s);
                }
                _ => {
                    changed.push(g.name.node.clone());
                    new_cur.push(self.add_slot(&plan, gid));
                }
            }
        }
        let mut retire = Vec::new();
        for &s in &self.cur {
            if !kept.contains(&s) {
                self.slots[s].retired = true;
                self.slots[s].drained = true;
                retire.push(s);
                let name = &self.slots[s].def.name.node;
                if !changed.contains(name) {
                    changed.push(name.clone());
                }
            }
        }
        let mut handlers = Vec::new();
        let steps_of = |p: &Plan, sig: Sig| {
            p.topology
                .handler(sig)
                .map(|h| h.steps.iter().map(|s| s.node.clone()).collect::<Vec<_>>())
        };
        let mut sigs: Vec<Sig> = plan
            .topology
            .handlers
            .iter()
            .chain(&self.plan.topology.handlers)
            .map(|h| h.signal.node)
            .collect();
        sigs.sort_by_key(|s| s.number());
        sigs.dedup();
        for sig in sigs {
            if steps_of(&plan, sig) != steps_of(&self.plan, sig) {
                handlers.push(sig.name().to_string());
            }
            if plan.topology.handler(sig).is_some() && !self.caught.contains(&sig) {
                self.caught.push(sig);
                self.out.push(Effect::Catch(sig));
            }
        }
        self.cur = new_cur;
        self.plan = plan;
        self.stop_slots(&retire);
        changed.sort();
        self.emit(Event::Reloaded {
            changed: changed.clone(),
            handlers,
        });
        Ok(changed)
    }
}
