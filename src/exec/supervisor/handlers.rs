//! Signals and handler steps (drain, drain G, restart [rolling], reload,
//! forward, wait, kill, ignore), run one at a time as ordinary steps of the
//! supervisor's state machine, never in signal context.

use super::*;

impl Sup {
    // ----- signals and handlers -------------------------------------------

    /// Ctrl+Z: stop every process group, then the runner; when the runner
    /// is continued (`fg`, SIGCONT), continue them. The time spent stopped
    /// does not count against ladder deadlines.
    pub(super) fn pause(&mut self) {
        let live: Vec<(Option<i32>, Option<i32>)> = self
            .groups
            .iter()
            .flat_map(|g| &g.procs)
            .filter(|p| p.phase == Phase::Running)
            .map(|p| {
                (
                    p.leader_alive.then_some(p.pid),
                    p.pgid.filter(|_| p.group_alive),
                )
            })
            .collect();
        let send = |sig: i32| {
            for &(pid, pgid) in &live {
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
        };
        send(libc::SIGSTOP);
        self.flush();
        let start = Instant::now();
        // Returns once the runner is continued.
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
        let paused = start.elapsed();
        send(libc::SIGCONT);
        for p in self.groups.iter_mut().flat_map(|g| &mut g.procs) {
            if let Some(StopState { due: Some(due), .. }) = &mut p.stop {
                *due += paused;
            }
        }
    }

    pub(super) fn is_drain_handler(&self, sig: Sig) -> bool {
        if sig == Sig::HUP && self.hangup_drains {
            return true;
        }
        self.plan.topology.handler(sig).is_some_and(|h| {
            h.steps.iter().any(|s| {
                matches!(&s.node, Step::Drain { groups } if groups.is_empty())
                    || matches!(s.node, Step::Kill)
            })
        })
    }

    pub(super) fn on_signal(&mut self, sig: Sig, at: Instant) {
        self.emit(Event::Signal {
            signal: sig_name(sig),
        });
        if sig.number() == libc::SIGTSTP {
            self.pause();
            return;
        }
        let drains = self.is_drain_handler(sig);
        match self.mode {
            Mode::Done => {}
            Mode::Draining => {
                let escalate = self.plan.topology.escalate;
                let verdict = self
                    .drain
                    .as_mut()
                    .map_or(Verdict::Same, |d| d.on_signal(drains, at, escalate));
                if verdict == Verdict::Escalate && !self.escalated {
                    self.escalate(sig);
                }
            }
            Mode::Running => {
                if sig == Sig::HUP && self.hangup_drains {
                    self.handler = None;
                    self.queue.clear();
                    self.begin_drain_at("SIGHUP (hangup)".to_string(), 0, Cause::Signal, at);
                    return;
                }
                let Some(h) = self.plan.topology.handler(sig) else {
                    return; // no handler: ignored (logged above)
                };
                let steps: Vec<Step> = h.steps.iter().map(|s| s.node.clone()).collect();
                if steps.first() == Some(&Step::Drain { groups: vec![] }) {
                    // A whole-topology drain preempts any running handler.
                    self.handler = None;
                    self.queue.clear();
                    self.begin_drain_at(sig_name(sig).to_string(), 0, Cause::Signal, at);
                    return;
                }
                // While a run of this handler is pending, another is dropped.
                signals::enqueue(&mut self.queue, sig);
            }
        }
    }

    pub(super) fn escalate(&mut self, sig: Sig) {
        self.escalated = true;
        self.emit(Event::Escalating {
            signal: sig_name(sig),
        });
        self.code = Some(self.code.map_or(1, |c| if c == 0 { 1 } else { c }));
        self.kill_everything("escalation");
    }

    pub(super) fn kill_everything(&mut self, reason: &'static str) {
        for s in 0..self.groups.len() {
            for i in 0..self.groups[s].procs.len() {
                if self.groups[s].procs[i].phase == Phase::Running {
                    self.kill_proc(s, i, reason);
                }
            }
        }
    }

    pub(super) fn start_next_handler(&mut self) {
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

    pub(super) fn slots_of(&self, groups: &[crate::source::Spanned<GroupId>]) -> Vec<usize> {
        groups
            .iter()
            .filter_map(|g| self.cur.get(g.node).copied())
            .collect()
    }

    pub(super) fn hold(&mut self, slots: &[usize]) {
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
    pub(super) fn run_handler(&mut self) {
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

    pub(super) fn release(&mut self, held: &[usize]) {
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

    pub(super) fn exec_step(&mut self, sig: Sig, step: Step, rest: &[Step]) {
        match step {
            Step::Ignore => {}
            Step::Kill => {
                self.begin_drain(sig_name(sig).to_string(), 1, Cause::Signal);
                self.escalated = true;
                self.kill_everything("escalation");
            }
            Step::Drain { groups } if groups.is_empty() => {
                // Not the handler's first step (that one drains at once).
                self.begin_drain(sig_name(sig).to_string(), 0, Cause::Topology);
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

    pub(super) fn set_waiting(&mut self, w: Waiting) {
        if let Some(h) = &mut self.handler {
            h.waiting = Some(w);
        }
    }

    pub(super) fn slots_down(&self, slots: &[usize]) -> bool {
        slots.iter().all(|&s| !self.groups[s].alive())
    }

    /// `Some` while the wait continues.
    pub(super) fn advance_wait(&mut self, w: Waiting) -> Option<Waiting> {
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

    pub(super) fn respawn(&mut self, s: usize, i: usize) {
        let p = &mut self.groups[s].procs[i];
        if p.phase != Phase::Running {
            p.restart_pending = false;
            p.deferred = false;
            self.spawn_proc(s, i);
        }
    }

    pub(super) fn forward(&mut self, s: usize, i: usize, sig: Sig) {
        let g = &self.groups[s];
        let p = &g.procs[i];
        if p.phase != Phase::Running {
            return;
        }
        // A signal of the group's ladder is that ladder step: the ladder
        // continues from there (deadline included), and a step already
        // sent to this incarnation (or passed) is not sent again.
        if let Some(k) = g.def.stop.steps.iter().position(|l| l.signal == sig) {
            if p.stop.as_ref().is_some_and(|st| st.step >= k) || p.leftovers_killed {
                return;
            }
            self.groups[s].procs[i].stop = Some(StopState::at(k));
            self.send_step(s, i, k);
            return;
        }
        let target = self.target_of(s, i);
        let pid = p.leader_alive.then_some(p.pid);
        // With a cgroup the group is the cgroup (its process group may be
        // empty, and its pgid reusable, while escaped members remain).
        if let Some(c) = &self.ctx.cgroup {
            if p.pgid.is_some() && (target == StopTarget::Group || pid.is_none()) {
                c.signal(s, i, sig.number());
                return;
            }
        }
        let pgid = p.pgid.filter(|_| p.group_alive);
        signal_target(target, pid, pgid, sig.number());
    }

    // ----- reload ------------------------------------------------------------

    /// The signals whose handler a reload to `plan` adds, changes or
    /// removes; new ones are caught from now on.
    fn reload_handlers(&mut self, plan: &Plan) -> Vec<String> {
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
        let mut out = Vec::new();
        for sig in sigs {
            if steps_of(plan, sig) != steps_of(&self.plan, sig) {
                out.push(sig_name(sig).to_string());
            }
            let n = sig.number();
            let catchable = n != libc::SIGKILL && n != libc::SIGSTOP && n != libc::SIGCHLD;
            if plan.topology.handler(sig).is_some() && catchable && !self.caught.contains(&n) {
                self.caught.push(n);
                catch(n, &self.tx);
            }
        }
        out
    }

    pub(super) fn reload(&mut self) {
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
                    // Same definition, but its `after` edges must use the
                    // new plan's ids: dependencies stay by name.
                    self.groups[s].def = g.clone();
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
        let handlers = self.reload_handlers(&plan);
        self.cur = new_cur;
        self.plan = plan;
        self.stop_slots(&retire);
        changed.sort();
        self.emit(Event::Reloaded { changed, handlers });
    }
}
