//! A process's life: starting groups when their `after` conditions hold,
//! spawning, exits and leftovers, the restart policy, and stop ladders.

use super::*;

impl Sup {
    // ----- starting ---------------------------------------------------------

    pub(super) fn condition_met(&self, dep: GroupId, state: AfterState) -> bool {
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

    /// Why `after dep state` can never hold any more, if it cannot.
    pub(super) fn condition_never(&self, dep: GroupId, state: AfterState) -> Option<String> {
        let &s = self.cur.get(dep)?;
        let g = &self.groups[s];
        let name = &g.def.name.node;
        let why = if g.failed || (g.drained && !g.started) {
            format!("{name} failed or was drained")
        } else if g.ended() {
            match state {
                AfterState::Succeeded => g.procs.iter().find_map(|p| {
                    p.status
                        .filter(|st| !st.success())
                        .map(|st| format!("{} exited with {}", p.who.process, status_text(st)))
                })?,
                AfterState::Ready => g
                    .procs
                    .iter()
                    .find(|p| !p.ever_ready)
                    .map(|p| format!("{} ended without being ready", p.who.process))?,
                _ => return None,
            }
        } else {
            return None;
        };
        let state = match state {
            AfterState::Started => "started",
            AfterState::Ready => "ready",
            AfterState::Succeeded => "succeeded",
            AfterState::Exited => "exited",
        };
        Some(format!(
            "`after {name} {state}` can no longer be met: {why}"
        ))
    }

    pub(super) fn try_start_groups(&mut self) {
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
            if g.started || g.drained || g.failed || self.mode != Mode::Running {
                continue;
            }
            let never = g.def.after.iter().find_map(|a| {
                (!self.condition_met(a.group, a.state))
                    .then(|| self.condition_never(a.group, a.state))
                    .flatten()
            });
            if let Some(reason) = never {
                self.fail_group(s, reason);
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
    pub(super) fn spawn_pending(&mut self) {
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

    pub(super) fn spawn_proc(&mut self, s: usize, i: usize) {
        if self.mode != Mode::Running {
            return;
        }
        if let Err(reason) = self.validate_ready(s, i) {
            self.fail_group(s, reason);
            return;
        }
        // Containment: the process's cgroup, and its group's ready cgroup.
        let exec_check = matches!(
            self.groups[s].def.ready.as_ref().map(|r| &r.probe),
            Some(Probe::Exec(_))
        );
        let (cgroup, ready_cgroup) = match self.ctx.cgroup.as_mut() {
            Some(c) => {
                let name = &self.groups[s].def.name.node;
                match c.proc_fd(s, name, i) {
                    Ok(fd) => (
                        Some(fd),
                        exec_check.then(|| c.ready_procs(s, name).ok()).flatten(),
                    ),
                    Err(e) => {
                        let who = &self.groups[s].procs[i].who.process;
                        self.fail_group(s, format!("{who}: cannot create its cgroup: {e}"));
                        return;
                    }
                }
            }
            None => (None, None),
        };
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
            cgroup: cgroup.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
        };
        let spawned = match spawn::spawn_service(&spec, self.ctx.inherited) {
            Ok(sp) => sp,
            Err(e) if spawn::is_backpressure(&e) => {
                let p = &mut self.groups[s].procs[i];
                p.spawn_tries += 1;
                let tries = p.spawn_tries;
                if tries >= crate::exec::core::SPAWN_TRIES {
                    let reason = format!("{}: spawn failed: {e}, {tries} tries", p.who.process);
                    self.fail_group(s, reason);
                    return;
                }
                let delay = policy::backoff(SPAWN_RETRY, Duration::from_secs(1), tries);
                p.restart_pending = true;
                let who = p.who.clone();
                self.emit(Event::SpawnRetry {
                    who,
                    error: e.to_string(),
                    attempt: tries,
                    in_ms: delay.as_millis() as u64,
                });
                self.after_ms(delay, Msg::SpawnRetry { slot: s, index: i });
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
        p.group_alive = own || cgroup.is_some();
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
        p.spawn_tries = 0;
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
                log_file: crate::exec::logfile::sink(
                    &self.ctx.opts.base_dir,
                    self.groups[s].procs[i].spec.log.as_ref(),
                ),
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
                            cgroup: ready_cgroup.clone(),
                        })
                    }
                    Probe::Notify => notify.map(|(dir, sock)| {
                        self.groups[s].procs[i].notify = Some(dir);
                        let from = ready::Sender {
                            leader: pid,
                            cgroup: self.ctx.cgroup.as_ref().and_then(|c| c.member_line(s, i)),
                        };
                        Check::Notify(sock, from)
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
    pub(super) fn validate_ready(&self, s: usize, i: usize) -> Result<(), String> {
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

    pub(super) fn expand_for(&self, s: usize, i: usize, text: &str) -> String {
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

    pub(super) fn on_reaped(&mut self, pid: i32, status: Status) {
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

    pub(super) fn check_all_groups(&mut self) {
        for s in 0..self.groups.len() {
            for i in 0..self.groups[s].procs.len() {
                let p = &self.groups[s].procs[i];
                if p.phase == Phase::Running && !p.leader_alive {
                    self.check_group(s, i);
                }
            }
        }
    }

    pub(super) fn target_of(&self, s: usize, _i: usize) -> StopTarget {
        self.groups[s].def.stop.target
    }

    /// After the leader exited: is the group empty? Kill leftovers of a
    /// leader that exited on its own (or under `to leader`).
    pub(super) fn check_group(&mut self, s: usize, i: usize) {
        let target = self.target_of(s, i);
        let in_cgroup = self.ctx.cgroup.as_ref().map(|c| c.populated(s, i));
        let p = &mut self.groups[s].procs[i];
        if p.leader_alive || p.phase != Phase::Running {
            return;
        }
        if p.group_alive {
            let pgid = p.pgid.unwrap_or(0);
            if !in_cgroup.unwrap_or_else(|| reap::group_alive(pgid)) {
                p.group_alive = false;
            } else {
                let ladder_continues = p.stop.is_some() && target == StopTarget::Group;
                if !ladder_continues && !p.leftovers_killed {
                    p.leftovers_killed = true;
                    match &self.ctx.cgroup {
                        Some(c) => c.kill(s, i),
                        // SAFETY: our own, non-empty group (see reap.rs).
                        None => {
                            unsafe { libc::kill(-pgid, libc::SIGKILL) };
                        }
                    }
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

    pub(super) fn arm_poll(&mut self) {
        // cgroup.events is watched: its changes arrive as PollGroups.
        if self.ctx.cgroup.as_ref().is_some_and(|c| c.watched()) {
            return;
        }
        if !self.poll_armed {
            self.poll_armed = true;
            self.after_ms(GROUP_POLL, Msg::PollGroups);
        }
    }

    /// The process group is empty: the process is stopped.
    pub(super) fn proc_down(&mut self, s: usize, i: usize) {
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
        let cpu_ms = self.ctx.cgroup.as_ref().and_then(|c| c.cpu_ms(s, i));
        self.emit(Event::Stopped { who, cpu_ms });
        self.apply_policy(s, i);
    }

    pub(super) fn apply_policy(&mut self, s: usize, i: usize) {
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
                spawn::ExecStage::Chdir => {
                    let base = &self.ctx.opts.base_dir;
                    let dir = p.spec.cwd.as_deref().map_or(base.clone(), |c| base.join(c));
                    format!("cannot change directory to {}", dir.display())
                }
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

    pub(super) fn fail_group(&mut self, s: usize, reason: String) {
        if self.groups[s].failed {
            return;
        }
        self.groups[s].failed = true;
        self.emit(Event::Failed {
            group: self.groups[s].def.name.node.clone(),
            reason,
        });
        // A failure during a drain (a spawn that was in flight when it
        // began) is reported, but the drain keeps the status it began with.
        if self.mode == Mode::Running && self.code.map_or(true, |c| c == 0) {
            self.code = Some(1);
        }
        self.begin_drain("failed".to_string(), 1, Cause::Topology);
    }

    // ----- stopping ---------------------------------------------------------

    pub(super) fn stop_slots(&mut self, slots: &[usize]) {
        for &s in slots {
            for i in 0..self.groups[s].procs.len() {
                let p = &mut self.groups[s].procs[i];
                p.restart_pending = false;
                self.stop_proc(s, i);
            }
        }
    }

    /// Start the ladder for this incarnation, exactly once.
    pub(super) fn stop_proc(&mut self, s: usize, i: usize) {
        let p = &mut self.groups[s].procs[i];
        p.expected = true;
        if p.phase != Phase::Running || p.stop.is_some() {
            return;
        }
        p.stop = Some(StopState::at(0));
        self.send_step(s, i, 0);
    }

    pub(super) fn send_step(&mut self, s: usize, i: usize, step: usize) {
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
        match &self.ctx.cgroup {
            // The cgroup is the group: every member, whatever its session.
            Some(c) if target == StopTarget::Group && p.pgid.is_some() => {
                c.signal(s, i, ls.signal.number());
            }
            _ => signal_target(
                target,
                p.leader_alive.then_some(p.pid),
                p.pgid.filter(|_| p.group_alive),
                ls.signal.number(),
            ),
        }
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
            if let Some(st) = &mut self.groups[s].procs[i].stop {
                st.due = Some(Instant::now() + d + DEADLINE_GRACE);
            }
            self.after_ms(d + DEADLINE_GRACE, Msg::Deadline { gen, step });
        }
    }

    pub(super) fn on_deadline(&mut self, gen: u64, step: usize) {
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
        // A pause moved the deadline: wait for the rest.
        if let Some(due) = st.due {
            let now = Instant::now();
            if due > now {
                self.after_ms(due - now, Msg::Deadline { gen, step });
                return;
            }
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
    pub(super) fn kill_proc(&mut self, s: usize, i: usize, reason: &'static str) {
        let p = &mut self.groups[s].procs[i];
        if p.phase != Phase::Running {
            return;
        }
        p.expected = true;
        // The whole group gets SIGKILL now: no separate leftovers kill.
        p.leftovers_killed = true;
        if p.stop.is_none() {
            p.stop = Some(StopState::at(usize::MAX));
        }
        match p.pgid {
            _ if self.ctx.cgroup.is_some() => {
                if let Some(c) = &self.ctx.cgroup {
                    c.kill(s, i);
                }
            }
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

    pub(super) fn begin_drain(&mut self, reason: String, code: i32, cause: Cause) {
        self.begin_drain_at(reason, code, cause, Instant::now());
    }

    /// `at`: when the signal that began it arrived (the burst starts there).
    pub(super) fn begin_drain_at(&mut self, reason: String, code: i32, cause: Cause, at: Instant) {
        if self.mode != Mode::Running {
            return;
        }
        self.mode = Mode::Draining;
        self.drain = Some(Drain::new(cause, at));
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
        self.stop_waits = crate::graph::stop_waits_for(&self.plan.topology);
    }

    /// Stop each group as soon as every running group that waits for it is
    /// down (`graph::stop_waits_for`): dependents first, independent groups
    /// in parallel, and no group waits for an unrelated group that happens
    /// to share its stop stage — so the teardown never takes longer than the
    /// worst-case path FR203 checks against `shutdown within`.
    pub(super) fn advance_drain(&mut self) {
        let mut planned = vec![false; self.groups.len()];
        for gid in 0..self.cur.len() {
            let s = self.cur[gid];
            planned[s] = true;
            let blocked = self.stop_waits.get(gid).is_some_and(|waits| {
                waits
                    .iter()
                    .any(|&d| self.cur.get(d).is_some_and(|&ds| self.groups[ds].alive()))
            });
            if !blocked {
                self.stop_slots(&[s]);
            }
        }
        // Slots retired by a reload have no place in the plan: stop them now.
        let retired: Vec<usize> = (0..self.groups.len()).filter(|&s| !planned[s]).collect();
        self.stop_slots(&retired);
        if self.groups.iter().all(|g| !g.alive()) {
            self.mode = Mode::Done;
        }
    }
}
