//! Unit tests of the core: feed messages, assert effects. No process is
//! started; time is virtual (see `testkit.rs`).

use super::testkit::*;
use super::*;

const SIMPLE: &str = "topology t {\n group web {\n run \"web\"\n processes 2\n stop SIGTERM drain 1s then SIGQUIT drain 1s\n }\n}\n";

const USR1: Sig = Sig(nix::sys::signal::Signal::SIGUSR1);
const USR2: Sig = Sig(nix::sys::signal::Signal::SIGUSR2);

fn fail(code: i32) -> Status {
    Status::Code(code)
}

#[test]
fn start_spawns_every_process_and_reports_it() {
    let w = World::new(SIMPLE);
    assert_eq!(w.spawns_of(w.refer("web", 0)), 1);
    assert_eq!(w.spawns_of(w.refer("web", 1)), 1);
    assert_eq!(
        w.all_events(),
        ["starting", "started", "ready", "started", "ready"]
    );
    assert!(matches!(
        w.core.state("web", 0),
        Some(PState::Running { ready: true, .. })
    ));
}

#[test]
fn drain_walks_the_ladder_to_a_kill() {
    let mut w = World::new(SIMPLE);
    let fx = w.signal(Sig::INT);
    assert_eq!(
        World::events(&fx),
        ["signal", "draining", "stopping", "stopping"]
    );
    let p0 = w.refer("web", 0);
    assert_eq!(World::signals_to(&fx, p0), [Sig::TERM]);
    // web.1 leaves at once; web.0 ignores SIGTERM.
    w.exit("web", 1, OK);
    let fx = w.advance(1010);
    assert_eq!(World::signals_to(&fx, p0), [Sig::QUIT]);
    let fx = w.advance(1010);
    assert!(
        fx.contains(&Effect::Kill {
            p: p0,
            gen: w.gen("web", 0)
        }),
        "{fx:?}"
    );
    assert!(World::events(&fx).contains(&"killed"));
    w.kill_all_killed();
    assert_eq!(w.exit_code, Some(0));
    assert!(w.core.done());
}

#[test]
fn a_burst_is_one_drain_and_a_later_signal_escalates() {
    let mut w = World::new(SIMPLE);
    w.signal(Sig::INT);
    w.advance(20);
    let fx = w.signal(Sig::TERM);
    let fx2 = {
        w.advance(30);
        w.signal(Sig::INT)
    };
    assert!(!World::events(&fx).contains(&"escalating"));
    assert!(!World::events(&fx2).contains(&"escalating"));
    w.advance(250);
    let fx = w.signal(Sig::INT);
    assert!(World::events(&fx).contains(&"escalating"), "{fx:?}");
    let p0 = w.refer("web", 0);
    assert_eq!(
        World::signals_to(&w.log, p0),
        [Sig::TERM],
        "one ladder signal"
    );
    w.kill_all_killed();
    assert_eq!(w.exit_code, Some(1));
}

#[test]
fn escalate_never_keeps_the_ladder() {
    let mut w = World::new(&SIMPLE.replace("topology t {", "topology t {\n escalate never"));
    w.signal(Sig::INT);
    w.advance(500);
    let fx = w.signal(Sig::INT);
    assert!(!World::events(&fx).contains(&"escalating"));
}

const FORWARD: &str = "topology t {\n on SIGUSR2 {\n forward SIGTERM to worker\n wait worker within 10s\n restart worker\n }\n group worker {\n run \"w\"\n stop SIGTERM drain 5s\n }\n}\n";

#[test]
fn a_forwarded_stop_signal_is_that_ladder_step() {
    let mut w = World::new(FORWARD);
    let p = w.refer("worker", 0);
    let fx = w.signal(USR2);
    assert_eq!(World::signals_to(&fx, p), [Sig::TERM]);
    w.advance(1000);
    let fx = w.signal(Sig::INT);
    assert_eq!(World::events(&fx), ["signal", "draining"]);
    assert!(
        World::signals_to(&fx, p).is_empty(),
        "SIGTERM twice: {fx:?}"
    );
    // The ladder continues from the forward: its deadline kills.
    let fx = w.advance(4100);
    assert!(
        matches!(
            fx.as_slice(),
            [
                ..,
                Effect::Emit(Event::Killed {
                    reason: "deadline",
                    ..
                })
            ]
        ),
        "{fx:?}"
    );
    w.kill_all_killed();
    assert_eq!(w.exit_code, Some(0));
}

#[test]
fn a_forward_then_restart_replaces_the_process() {
    let mut w = World::new(FORWARD);
    let p = w.refer("worker", 0);
    w.signal(USR2);
    let fx = w.exit("worker", 0, Status::Signal(libc::SIGTERM));
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Emit(Event::Exited { expected: true, .. }))));
    assert_eq!(w.spawns_of(p), 2);
    assert!(matches!(
        w.core.state("worker", 0),
        Some(PState::Running { .. })
    ));
}

const FINISH: &str = "topology t {\n finish when job WHEN\n group job {\n run \"j\"\n once\n }\n group svc {\n run \"s\"\n stop SIGTERM drain 5s\n }\n}\n";

#[test]
fn first_signal_during_a_finish_drain_is_acknowledged() {
    let mut w = World::new(&FINISH.replace("WHEN", "exits"));
    let fx = w.exit("job", 0, OK);
    assert!(World::events(&fx).contains(&"draining"));
    w.advance(500);
    let fx = w.signal(Sig::INT);
    assert_eq!(World::events(&fx), ["signal"], "acknowledged only");
    w.advance(50);
    let fx = w.signal(Sig::TERM);
    assert_eq!(World::events(&fx), ["signal"], "same burst");
    w.exit("svc", 0, OK);
    assert_eq!(w.exit_code, Some(0), "the finish status stands");
}

#[test]
fn second_signal_during_a_failure_drain_escalates_keeping_the_code() {
    let mut w = World::new(&FINISH.replace("WHEN", "exits"));
    w.exit("job", 0, fail(3));
    w.advance(200);
    w.signal(Sig::INT);
    w.advance(300);
    let fx = w.signal(Sig::INT);
    assert!(World::events(&fx).contains(&"escalating"));
    w.kill_all_killed();
    assert_eq!(w.exit_code, Some(3));
}

#[test]
fn a_spawn_in_flight_when_a_drain_begins_is_stopped_once_it_starts() {
    // web.1's restart is in flight (queued by the OS layer) when SIGINT
    // arrives; the drain stops web.0 at once, and web.1 as soon as its
    // spawn reports it started, after a message that changed nothing for
    // it (web.0's exit).
    let text = "topology t {\n group web {\n run \"web\"\n processes 2\n restart always backoff 10ms..10ms\n stop SIGTERM drain 1s\n }\n}\n";
    let mut w = World::new(text);
    w.exit("web", 1, fail(1));
    w.defer = true;
    w.advance(10);
    assert_eq!(w.deferred.len(), 1);
    let fx = w.signal(Sig::INT);
    assert_eq!(World::signals_to(&fx, w.refer("web", 0)), [Sig::TERM]);
    let fx = w.exit("web", 0, OK);
    assert_eq!(World::signals_to(&fx, w.refer("web", 1)), []);
    let fx = w.answer(Outcome::Started { pid: 4242 });
    assert_eq!(
        World::signals_to(&fx, w.refer("web", 1)),
        [Sig::TERM],
        "{fx:?}"
    );
    let fx = w.exit("web", 1, OK);
    assert!(fx.contains(&Effect::Exit(0)), "{fx:?}");
    assert!(w.core.done());
}

#[test]
fn a_failure_during_a_finish_drain_keeps_the_finish_status() {
    // `svc`'s restart is in flight (queued by the OS layer) when `job`
    // ends and the finish drain begins; the spawn then fails. Reported,
    // but the drain's status (job succeeded: 0) stands.
    let text = "topology t {\n finish when job succeeds\n group job {\n run \"j\"\n once\n }\n group svc {\n run \"s\"\n restart always backoff 10ms..10ms\n }\n}\n";
    let mut w = World::new(text);
    w.exit("svc", 0, fail(1));
    w.defer = true;
    w.advance(10);
    assert_eq!(w.deferred.len(), 1);
    let fx = w.exit("job", 0, OK);
    let events = World::events(&fx);
    assert!(events.contains(&"draining"), "{events:?}");
    let fx = w.answer(Outcome::Failed("cannot execute s".into()));
    assert!(World::events(&fx).contains(&"failed"), "{fx:?}");
    assert_eq!(w.exit_code, Some(0));
}

#[test]
fn a_finish_drain_begins_before_dependents_start() {
    // `dep` could start in the step where `job` ends, but the finish drain
    // begins first: it is never spawned only to be stopped.
    let text = "topology t {\n finish when job exits\n group job {\n run \"j\"\n once\n }\n group dep {\n run \"d\"\n after job exited\n }\n}\n";
    let mut w = World::new(text);
    let fx = w.exit("job", 0, OK);
    assert!(World::events(&fx).contains(&"draining"), "{fx:?}");
    assert_eq!(w.spawns_of(w.refer("dep", 0)), 0, "{fx:?}");
    assert_eq!(w.exit_code, Some(0));
}

#[test]
fn finish_when_exits_takes_the_groups_status() {
    let mut w = World::new(&FINISH.replace("WHEN", "exits"));
    w.exit("job", 0, fail(3));
    w.exit("svc", 0, OK);
    assert_eq!(w.exit_code, Some(3));
    assert!(!w.all_events().contains(&"failed"));
}

#[test]
fn finish_when_succeeds_fails_when_the_group_fails() {
    let mut w = World::new(&FINISH.replace("WHEN", "succeeds"));
    let fx = w.exit("job", 0, fail(3));
    let failed = fx.iter().find_map(|e| match e {
        Effect::Emit(Event::Failed { reason, .. }) => Some(reason.clone()),
        _ => None,
    });
    assert!(
        failed.is_some_and(|r| r.contains("succeeds") && r.contains("job.0 exited with code 3")),
        "{fx:?}"
    );
    w.exit("svc", 0, OK);
    assert_eq!(w.exit_code, Some(1));
    let mut w = World::new(&FINISH.replace("WHEN", "succeeds"));
    w.exit("job", 0, OK);
    w.exit("svc", 0, OK);
    assert_eq!(w.exit_code, Some(0));
}

#[test]
fn an_unmet_condition_is_reported() {
    let mut w = World::new("topology t {\n group x {\n run \"x\"\n restart never\n }\n group y {\n run \"y\"\n after x succeeded\n }\n}\n");
    assert_eq!(w.spawns_of(w.refer("y", 0)), 0);
    let fx = w.exit("x", 0, fail(1));
    let reason = fx.iter().find_map(|e| match e {
        Effect::Emit(Event::Failed { group, reason }) => Some((group.clone(), reason.clone())),
        _ => None,
    });
    let (group, reason) = reason.expect("a failed event");
    assert_eq!(group, "y");
    assert!(
        reason.contains("after x succeeded") && reason.contains("x.0 exited with code 1"),
        "{reason}"
    );
    assert_eq!(w.exit_code, Some(1));
}

#[test]
fn after_ready_waits_for_the_ready_result() {
    let mut w = World::new("topology t {\n group db {\n run \"db\"\n ready when tcp \"127.0.0.1:1\"\n }\n group api {\n run \"api\"\n after db ready\n }\n}\n");
    assert_eq!(w.spawns_of(w.refer("api", 0)), 0);
    let p = w.refer("db", 0);
    let gen = w.gen("db", 0);
    w.send(Msg::Ready { p, gen });
    assert_eq!(w.spawns_of(w.refer("api", 0)), 1);
}

#[test]
fn a_ready_timeout_fails_the_group() {
    let mut w = World::new("topology t {\n group db {\n run \"db\"\n ready when tcp \"127.0.0.1:1\" within 1s\n }\n}\n");
    assert!(World::events(&w.advance(999)).is_empty());
    let fx = w.advance(1);
    assert_eq!(World::events(&fx), ["failed", "draining", "stopping"]);
}

#[test]
fn handler_runs_coalesce() {
    let mut w = World::new("topology t {\n on SIGUSR1 restart worker\n group worker {\n run \"w\"\n stop SIGTERM drain 5s\n }\n}\n");
    let p = w.refer("worker", 0);
    for _ in 0..30 {
        w.signal(USR1);
    }
    // One run is stopping the worker; one more is queued.
    w.exit("worker", 0, OK);
    w.exit("worker", 0, OK);
    assert_eq!(w.spawns_of(p), 3, "start + one run + one queued run");
    assert!(matches!(
        w.core.state("worker", 0),
        Some(PState::Running { .. })
    ));
}

#[test]
fn leftovers_are_killed_then_the_policy_runs() {
    let mut w = World::new(
        "topology t {\n group a {\n run \"a\"\n restart always backoff 100ms..1s\n }\n}\n",
    );
    let p = w.refer("a", 0);
    let gen = w.gen("a", 0);
    w.live.remove(&p);
    let fx = w.send(Msg::Exited {
        p,
        gen,
        status: fail(1),
        group_empty: false,
    });
    assert!(fx.contains(&Effect::Kill { p, gen }));
    assert_eq!(World::events(&fx), ["exited", "killed"]);
    let fx = w.send(Msg::GroupEmpty { p, gen });
    assert_eq!(World::events(&fx), ["stopped", "restarting"]);
    w.advance(100);
    assert_eq!(w.spawns_of(p), 2);
}

#[test]
fn a_restart_limit_fails_the_group() {
    let mut w = World::new("topology t {\n group a {\n run \"a\"\n restart always backoff 10ms..10ms limit 2 per 1m\n }\n}\n");
    for _ in 0..2 {
        w.exit("a", 0, fail(1));
        w.advance(10);
    }
    let fx = w.exit("a", 0, fail(1));
    assert!(World::events(&fx).contains(&"failed"));
    assert_eq!(w.exit_code, Some(1));
}

#[test]
fn spawn_retries_are_reported_and_bounded() {
    let busy = || Outcome::Busy("too many open files".into());
    // Two busy spawns, then one that works.
    let mut w = World::start_with(plan(SIMPLE), vec![busy(), busy()]);
    let retries = w
        .emitted()
        .iter()
        .filter(|e| matches!(e, Event::SpawnRetry { .. }))
        .count();
    assert_eq!(retries, 2);
    w.advance(1000);
    assert!(matches!(
        w.core.state("web", 0),
        Some(PState::Running { .. })
    ));
    assert!(!w.all_events().contains(&"failed"));
    // Always busy: bounded, then the group fails.
    let mut w = World::start_with(plan(SIMPLE), (0..100).map(|_| busy()).collect());
    w.advance(60_000);
    let ev = w.emitted();
    let retries = ev
        .iter()
        .filter(|e| matches!(e, Event::SpawnRetry { who, .. } if who.index == 0))
        .count();
    assert_eq!(retries as u32, SPAWN_TRIES - 1);
    assert!(ev.iter().any(
        |e| matches!(e, Event::Failed { reason, .. } if reason.contains("too many open files"))
    ));
    assert_eq!(w.exit_code, Some(1));
}

#[test]
fn pause_stops_the_clock_of_deadlines() {
    let mut w = World::new(SIMPLE);
    w.signal(Sig::INT);
    w.advance(200);
    let fx = w.signal(Sig(nix::sys::signal::Signal::SIGTSTP));
    assert!(fx.contains(&Effect::Pause));
    let fx = w.advance(10_000);
    assert!(fx.is_empty(), "no deadline while paused: {fx:?}");
    let fx = w.send(Msg::Resumed);
    assert!(fx.contains(&Effect::Resume));
    let left: Vec<Duration> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Arm { after, .. } => Some(*after),
            _ => None,
        })
        .collect();
    assert_eq!(left, [Duration::from_millis(810); 2]);
    let fx = w.advance(810);
    assert_eq!(World::signals_to(&fx, w.refer("web", 0)), [Sig::QUIT]);
}

#[test]
fn pause_stops_the_clock_of_ready_checks_and_restarts() {
    let text = "topology t {\n group db {\n run \"db\"\n ready when tcp \"127.0.0.1:1\" within 1s\n }\n group web {\n run \"web\"\n restart always backoff 500ms..500ms\n }\n}\n";
    let mut w = World::new(text);
    let web = w.refer("web", 0);
    w.exit("web", 0, fail(1));
    w.advance(400);
    w.signal(Sig(nix::sys::signal::Signal::SIGTSTP));
    let fx = w.advance(10_000);
    assert!(
        World::events(&fx).is_empty(),
        "nothing while paused: {fx:?}"
    );
    assert_eq!(w.spawns_of(web), 1);
    w.send(Msg::Resumed);
    // 100 ms of the backoff and 600 ms of the ready check's `within` left.
    w.advance(99);
    assert_eq!(w.spawns_of(web), 1);
    w.advance(1);
    assert_eq!(w.spawns_of(web), 2);
    let fx = w.advance(499);
    assert!(!World::events(&fx).contains(&"failed"), "{fx:?}");
    let fx = w.advance(1);
    assert!(World::events(&fx).contains(&"failed"), "{fx:?}");
}

#[test]
fn hangup_with_a_terminal_drains_and_without_one_reloads() {
    let text = SIMPLE;
    let mut w = World::with(
        plan(text),
        Box::new(|| Err(vec!["x".into()])),
        Env {
            hangup_drains: true,
            containment: "process-group",
        },
    );
    let fx = w.signal(Sig::HUP);
    assert_eq!(World::events(&fx)[..2], ["signal", "draining"]);
    let mut w = World::new(text);
    let fx = w.signal(Sig::HUP);
    assert_eq!(
        World::events(&fx),
        ["signal", "reloading", "reload-rejected"]
    );
    // An explicit SIGHUP handler is kept even with a terminal.
    let text = SIMPLE.replace("topology t {", "topology t {\n on SIGHUP ignore");
    let mut w = World::with(
        plan(&text),
        Box::new(|| Err(vec![])),
        Env {
            hangup_drains: true,
            containment: "process-group",
        },
    );
    let fx = w.signal(Sig::HUP);
    assert_eq!(World::events(&fx), ["signal"]);
}

#[test]
fn reload_adds_a_handler_and_reports_it() {
    let v2 = SIMPLE.replace("topology t {", "topology t {\n on SIGALRM drain");
    let mut w = World::with(
        plan(SIMPLE),
        Box::new(move || Ok(plan(&v2))),
        Env::default(),
    );
    let fx = w.signal(Sig::HUP);
    let alrm = Sig(nix::sys::signal::Signal::SIGALRM);
    assert!(fx.contains(&Effect::Catch(alrm)), "{fx:?}");
    assert!(fx.iter().any(|e| matches!(e, Effect::Emit(Event::Reloaded { changed, handlers }) if changed.is_empty() && handlers == &["SIGALRM"])), "{fx:?}");
    let fx = w.signal(alrm);
    assert!(World::events(&fx).contains(&"draining"));
}

#[test]
fn reload_keeps_dependencies_by_name() {
    let v1 = "topology t {\n group db {\n run \"db\"\n ready when tcp \"127.0.0.1:1\"\n }\n group api {\n run \"api\"\n after db ready\n }\n}\n";
    let v2 = "topology t {\n group cache {\n run \"c\"\n }\n group db {\n run \"db\"\n ready when tcp \"127.0.0.1:1\"\n }\n group api {\n run \"api\"\n after db ready\n }\n}\n";
    let mut w = World::with(plan(v1), Box::new(move || Ok(plan(v2))), Env::default());
    w.signal(Sig::HUP);
    assert_eq!(w.spawns_of(w.refer("cache", 0)), 1);
    // db kept its place in the running topology, not ready yet: api waits.
    assert_eq!(w.spawns_of(w.refer("api", 0)), 0);
    let p = w.refer("db", 0);
    let gen = w.gen("db", 0);
    w.send(Msg::Ready { p, gen });
    assert_eq!(w.spawns_of(w.refer("api", 0)), 1);
}

#[test]
fn reload_replaces_a_changed_group_after_the_old_one_is_gone() {
    let v2 = SIMPLE.replace("\"web\"", "\"web2\"");
    let mut w = World::with(
        plan(SIMPLE),
        Box::new(move || Ok(plan(&v2))),
        Env::default(),
    );
    let old = w.refer("web", 0);
    let fx = w.signal(Sig::HUP);
    assert_eq!(World::signals_to(&fx, old), [Sig::TERM]);
    let new = w.refer("web", 0);
    assert_ne!(old, new);
    assert_eq!(w.spawns_of(new), 0, "waits for the old processes");
    for i in 0..2 {
        let (gen, _) = w.live.remove(&(old.0, i)).unwrap();
        w.send(Msg::Exited {
            p: (old.0, i),
            gen,
            status: OK,
            group_empty: true,
        });
    }
    assert_eq!(w.spawns_of(new), 1);
}

#[test]
fn a_kill_handler_kills_everything_and_exits_1() {
    let mut w = World::new(&SIMPLE.replace("topology t {", "topology t {\n on SIGQUIT kill"));
    let fx = w.signal(Sig::QUIT);
    assert_eq!(
        fx.iter()
            .filter(|e| matches!(e, Effect::Kill { .. }))
            .count(),
        2
    );
    w.kill_all_killed();
    assert_eq!(w.exit_code, Some(1));
}

#[test]
fn drain_group_keeps_it_down() {
    let mut w = World::new("topology t {\n on SIGUSR1 drain a\n group a {\n run \"a\"\n restart always\n }\n group b {\n run \"b\"\n }\n}\n");
    w.signal(USR1);
    w.exit("a", 0, OK);
    assert_eq!(w.core.state("a", 0), Some(PState::Down));
    assert!(matches!(w.core.state("b", 0), Some(PState::Running { .. })));
}

#[test]
fn rolling_restart_waits_for_ready() {
    let mut w = World::new("topology t {\n on SIGUSR2 restart w rolling\n group w {\n run \"w\"\n processes 2\n ready when tcp \"127.0.0.1:1\"\n }\n}\n");
    for i in 0..2 {
        let (p, gen) = (w.refer("w", i), w.gen("w", i));
        w.send(Msg::Ready { p, gen });
    }
    let fx = w.signal(USR2);
    assert_eq!(World::signals_to(&fx, w.refer("w", 0)), [Sig::TERM]);
    assert!(World::signals_to(&fx, w.refer("w", 1)).is_empty());
    w.exit("w", 0, OK);
    assert_eq!(w.spawns_of(w.refer("w", 0)), 2);
    assert!(
        World::signals_to(&w.log, w.refer("w", 1)).is_empty(),
        "waits for ready"
    );
    let (p, gen) = (w.refer("w", 0), w.gen("w", 0));
    let fx = w.send(Msg::Ready { p, gen });
    assert_eq!(World::signals_to(&fx, w.refer("w", 1)), [Sig::TERM]);
}

#[test]
fn ending_on_its_own_reports_failure() {
    let mut w = World::new("topology t {\n group a {\n run \"a\"\n restart never\n }\n}\n");
    w.exit("a", 0, fail(2));
    assert_eq!(w.exit_code, Some(1));
    let mut w = World::new("topology t {\n group a {\n run \"a\"\n restart never\n }\n}\n");
    w.exit("a", 0, OK);
    assert_eq!(w.exit_code, Some(0));
}

#[test]
fn under_to_group_the_ladder_outlives_the_leader() {
    let mut w = World::new(
        "topology t {\n group a {\n run \"a\"\n stop SIGTERM drain 1s to group\n }\n}\n",
    );
    w.signal(Sig::INT);
    let p = w.refer("a", 0);
    let (gen, _) = w.live.remove(&p).unwrap();
    let fx = w.send(Msg::Exited {
        p,
        gen,
        status: OK,
        group_empty: false,
    });
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::Kill { .. })),
        "{fx:?}"
    );
    let fx = w.advance(1010);
    assert!(fx.contains(&Effect::Kill { p, gen }));
    w.send(Msg::GroupEmpty { p, gen });
    assert_eq!(w.exit_code, Some(0));
}

#[test]
fn an_exec_failure_fails_the_group_without_restarts() {
    let mut w = World::new("topology t {\n group a {\n run \"nope\"\n restart always\n }\n}\n");
    let (p, gen) = (w.refer("a", 0), w.gen("a", 0));
    // Read from the error pipe when the child is reaped, just before its exit.
    let fx = w.send(Msg::ExecFailed {
        p,
        gen,
        reason: "a.0: spawn failed: cannot execute nope".into(),
    });
    assert!(World::events(&fx).is_empty(), "{fx:?}");
    let fx = w.exit("a", 0, Status::Code(127));
    assert_eq!(
        World::events(&fx),
        ["exited", "stopped", "failed", "draining"]
    );
    assert!(!World::events(&fx).contains(&"restarting"), "{fx:?}");
    assert_eq!(w.exit_code, Some(1));
}

#[test]
fn a_cancelled_spawn_is_down_without_failing() {
    let mut w = World::start_with(plan(SIMPLE), vec![Outcome::Cancelled]);
    assert_eq!(w.core.state("web", 0), Some(PState::Down));
    assert!(!w.all_events().contains(&"failed"));
    w.signal(Sig::INT);
    w.exit("web", 1, OK);
    assert_eq!(w.exit_code, Some(0));
}

#[test]
fn fingerprint_ignores_position_but_sees_every_change() {
    let fp = |p: &Plan, name: &str| fingerprint(p, p.topology.group_by_name(name).unwrap());
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
