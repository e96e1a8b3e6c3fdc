//! `flowrun up` used as an operator would: under `timeout`, driven by `kill`
//! in scripts, paused with Ctrl+Z, reloaded with new handlers and groups,
//! out of file descriptors, in a terminal that closes. Each test is the
//! real-process side of a rule in docs/events.md.

use crate::support::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Three probes that ignore SIGTERM: a drain takes their 1 s deadline, so
/// a second signal has time to (wrongly) escalate.
const STUBBORN: &str = r#"
topology hostile {
  group slow {
    run "@PROBE@ --record @DIR@/s-{index}.rec --ignore SIGTERM"
    processes 3
    stop SIGTERM drain 1s
  }
}
"#;

fn records(h: &Harness, n: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| {
            read_records(&h.path(&format!("s-{i}.rec")))
                .into_iter()
                .map(|r| r.sig)
                .collect()
        })
        .collect()
}

/// One drain, no escalation, one SIGTERM each, exit 0.
fn assert_one_drain(h: &Harness, up: &mut Up, code: i32) {
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    assert!(
        up.events_named("escalating").is_empty(),
        "a burst escalated:\n{}",
        up.stderr_text()
    );
    assert_eq!(up.events_named("draining").len(), 1);
    for (i, r) in records(h, 3).iter().enumerate() {
        assert_eq!(r, &["SIGTERM"], "s-{i}");
    }
    let killed = up.events_named("killed");
    assert!(
        killed.iter().all(|k| k["reason"] == "deadline"),
        "{killed:?}"
    );
    assert!(survivors(&h.marker).is_empty());
}

fn under_timeout(name: &str, signal: &[&str]) {
    let h = Harness::new(name);
    let file = h.topology(STUBBORN);
    let file = file.to_string_lossy();
    let mut argv = vec!["timeout", "--preserve-status"];
    argv.extend_from_slice(signal);
    argv.extend(["3", FLOWRUN, "up", &file, "--log-format", "json"]);
    let mut up = h.spawn(&argv);
    let code = up.exit_code();
    assert_one_drain(&h, &mut up, code);
}

#[test]
fn timeout_with_sigint_is_one_drain() {
    under_timeout("hostile-timeout-int", &["-s", "INT"]);
}

#[test]
fn timeout_with_sigterm_is_one_drain() {
    under_timeout("hostile-timeout-term", &[]);
}

#[test]
fn back_to_back_kills_are_one_drain() {
    let h = Harness::new("hostile-triple");
    let file = h.topology(STUBBORN);
    let mut up = h.up(&file, &[]);
    started_and_armed(&mut up, 3);
    for _ in 0..3 {
        up.signal(libc::SIGINT);
    }
    let code = up.exit_code();
    assert_one_drain(&h, &mut up, code);
}

#[test]
fn signals_20ms_apart_are_one_drain() {
    let h = Harness::new("hostile-apart");
    let file = h.topology(STUBBORN);
    let mut up = h.up(&file, &[]);
    started_and_armed(&mut up, 3);
    up.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(20));
    up.signal(libc::SIGTERM);
    let code = up.exit_code();
    assert_one_drain(&h, &mut up, code);
}

#[test]
fn a_forward_is_the_ladder_step_a_drain_continues_from() {
    let h = Harness::new("hostile-forward");
    let file = h.topology(
        r#"
topology fwd {
  on SIGUSR2 {
    forward SIGTERM to worker
    wait worker within 10s
    restart worker
  }
  group worker {
    run "@PROBE@ --record @DIR@/s-0.rec --ignore SIGTERM"
    stop SIGTERM drain 2s
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    started_and_armed(&mut up, 1);
    up.signal(libc::SIGUSR2);
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(5), || {
        !records(&h, 1)[0].is_empty()
    });
    assert!(ok, "the forward never arrived");
    up.signal(libc::SIGINT);
    let code = up.exit_code();
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    assert_eq!(records(&h, 1)[0], ["SIGTERM"], "SIGTERM sent twice");
    assert!(survivors(&h.marker).is_empty());
}

#[test]
fn first_signal_during_a_finish_drain_changes_nothing() {
    let h = Harness::new("hostile-finish-ack");
    let file = h.topology(
        r#"
topology fin {
  finish when job exits
  group job {
    run "@PROBE@ --exit 0 --after-ms 300"
    once
  }
  group svc {
    run "@PROBE@ --record @DIR@/s-0.rec --ignore SIGTERM"
    stop SIGTERM drain 2s
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    up.wait_event("finish drain", EVENT_TIMEOUT, |e| {
        e["event"] == "draining" && e["reason"] == "finish"
    });
    up.signal(libc::SIGINT);
    let code = up.exit_code();
    assert!(
        up.events_named("escalating").is_empty(),
        "{}",
        up.stderr_text()
    );
    assert_eq!(code, 0, "the finish status stands:\n{}", up.stderr_text());
    assert!(survivors(&h.marker).is_empty());
}

#[test]
fn a_storm_of_handler_signals_queues_one_run() {
    let h = Harness::new("hostile-storm");
    let file = h.topology(
        r#"
topology storm {
  on SIGUSR1 restart worker
  group worker {
    run "@PROBE@ --linger-ms 500"
    stop SIGTERM drain 5s
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    started_and_armed(&mut up, 1);
    // Each restart takes at least 500 ms (the worker lingers after its
    // SIGTERM): every signal after the first arrives while a run is going.
    for _ in 0..30 {
        up.signal(libc::SIGUSR1);
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(2500));
    up.signal(libc::SIGINT);
    let code = up.exit_code();
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    let started = up.events_named("started").len();
    // The first start, the running restart and at most one queued one
    // (signals the kernel had not merged yet may add a run after that).
    assert!(
        (2..=4).contains(&started),
        "{started} starts for 30 signals:\n{}",
        up.stderr_text()
    );
}

const FINISH: &str = r#"
topology fin {
  finish when job WHEN
  group job {
    run "@PROBE@ --exit 3 --after-ms 100"
    once
  }
  group svc {
    run "@PROBE@"
  }
}
"#;

#[test]
fn finish_when_exits_takes_the_status() {
    let h = Harness::new("hostile-finish-exits");
    let mut up = h.up(&h.topology(&FINISH.replace("WHEN", "exits")), &[]);
    assert_eq!(up.exit_code(), 3, "{}", up.stderr_text());
    assert!(up.events_named("failed").is_empty());
}

#[test]
fn finish_when_succeeds_fails_when_the_group_fails() {
    let h = Harness::new("hostile-finish-succeeds");
    let mut up = h.up(&h.topology(&FINISH.replace("WHEN", "succeeds")), &[]);
    assert_eq!(up.exit_code(), 1, "{}", up.stderr_text());
    let failed = up.events_named("failed");
    assert!(
        failed.iter().any(|f| f["reason"]
            .as_str()
            .is_some_and(|r| r.contains("succeeds") && r.contains("code 3"))),
        "{failed:?}"
    );
}

#[test]
fn an_unmet_condition_names_itself() {
    let h = Harness::new("hostile-unmet");
    let file = h.topology(
        r#"
topology unmet {
  group x {
    run "@PROBE@ --exit 1 --after-ms 100"
    restart never
  }
  group y {
    run "@PROBE@"
    after x succeeded
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    assert_eq!(up.exit_code(), 1, "{}", up.stderr_text());
    let failed = up.events_named("failed");
    assert!(
        failed.iter().any(|f| f["group"] == "y"
            && f["reason"]
                .as_str()
                .is_some_and(|r| r.contains("after x succeeded"))),
        "{}",
        up.stderr_text()
    );
}

#[test]
fn reload_adds_a_handler() {
    let h = Harness::new("hostile-reload-handler");
    let v1 = "topology r {\n  group a {\n    run \"@PROBE@\"\n  }\n}\n";
    let file = h.topology(v1);
    let mut up = h.up(&file, &[]);
    started_and_armed(&mut up, 1);
    h.topology(&v1.replace("topology r {", "topology r {\n  on SIGALRM drain"));
    up.signal(libc::SIGHUP);
    let r = up.wait_for("reloaded");
    assert_eq!(r["handlers"], serde_json::json!(["SIGALRM"]), "{r}");
    up.signal(libc::SIGALRM);
    let code = up.exit_code();
    assert_eq!(code, 0, "{}", up.stderr_text());
    let d = up.wait_for("draining");
    assert_eq!(d["reason"], "SIGALRM");
}

#[test]
fn reload_keeps_dependencies_by_name() {
    let h = Harness::new("hostile-reload-deps");
    let port = free_port();
    let v1 = format!(
        "topology r {{\n  group db {{\n    run \"@PROBE@ --delay-ms 2500 --listen-tcp {port}\"\n    ready when tcp \"127.0.0.1:{port}\" every 50ms within 30s\n  }}\n  group api {{\n    run \"@PROBE@\"\n    after db ready\n  }}\n}}\n"
    );
    let file = h.topology(&v1);
    let mut up = h.up(&file, &[]);
    up.wait_for("started");
    h.topology(&v1.replace(
        "topology r {",
        "topology r {\n  group cache {\n    run \"@PROBE@\"\n  }",
    ));
    up.signal(libc::SIGHUP);
    up.wait_for("reloaded");
    let api = up.wait_event("api started", EVENT_TIMEOUT, |e| {
        e["event"] == "started" && e["group"] == "api"
    });
    let db_ready = up.wait_event("db ready", EVENT_TIMEOUT, |e| {
        e["event"] == "ready" && e["group"] == "db"
    });
    assert!(
        t(&api) >= t(&db_ready),
        "api started before db was ready:\n{}",
        up.stderr_text()
    );
    up.signal(libc::SIGINT);
    assert_eq!(up.exit_code(), 0, "{}", up.stderr_text());
}

#[test]
fn spawns_out_of_descriptors_are_reported_and_bounded() {
    let h = Harness::new("hostile-emfile");
    let file = h.topology(
        "topology fds {\n  group many {\n    run \"@PROBE@\"\n    processes 40\n  }\n}\n",
    );
    let cmd = format!(
        "ulimit -n 24 && exec {FLOWRUN} up {} --log-format json",
        file.display()
    );
    let mut up = h.spawn(&["/bin/sh", "-c", &cmd]);
    let code = up.exit_code();
    assert_eq!(code, 1, "{}", up.stderr_text());
    assert!(
        !up.events_named("spawn-retry").is_empty(),
        "{}",
        up.stderr_text()
    );
    let failed = up.events_named("failed");
    assert!(
        failed.iter().any(|f| f["reason"]
            .as_str()
            .is_some_and(|r| r.contains("spawn failed"))),
        "{failed:?}"
    );
    assert!(survivors(&h.marker).is_empty());
}

#[test]
fn ctrl_z_pauses_the_topology_and_its_deadlines() {
    let h = Harness::new("hostile-ctrl-z");
    let file = h.topology(
        r#"
topology pause {
  group slow {
    run "@PROBE@ --ignore SIGTERM"
    processes 2
    stop SIGTERM drain 1500ms
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let pids: Vec<i32> = started_and_armed(&mut up, 2).iter().map(|p| p.1).collect();
    up.signal(libc::SIGINT);
    up.wait_count("stopping", 2);
    up.signal(libc::SIGTSTP);
    let stopped = wait_until(EVENT_TIMEOUT, Duration::from_millis(10), || {
        pids.iter()
            .chain(std::iter::once(&up.pid))
            .all(|&p| proc_state(p) == Some('T'))
    });
    assert!(stopped, "not all stopped: {}", describe(&pids));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(up.events_named("killed").is_empty(), "killed while paused");
    let cont = Instant::now();
    up.signal(libc::SIGCONT);
    let running = wait_until(EVENT_TIMEOUT, Duration::from_millis(10), || {
        pids.iter().all(|&p| proc_state(p) != Some('T'))
    });
    assert!(running, "not continued: {}", describe(&pids));
    up.wait_for("killed");
    let after = cont.elapsed();
    eprintln!("measured: deadline kill {after:?} after SIGCONT");
    assert!(
        after >= Duration::from_millis(300),
        "the paused time counted against the deadline ({after:?})"
    );
    assert_eq!(up.exit_code(), 0, "{}", up.stderr_text());
    assert!(survivors(&h.marker).is_empty());
}

/// A worker someone stopped (`kill -STOP`) still stops gracefully: it is
/// continued after its ladder signal, whether its stop was seen long
/// before the drain (`w.0`) or reported just as the drain began (`w.1`),
/// and acts on the signal instead of waiting for the 20 s deadline's
/// SIGKILL. One SIGTERM each.
#[test]
fn a_stopped_worker_is_continued_to_act_on_its_stop_signal() {
    let h = Harness::new("hostile-stopped-worker");
    let file = h.topology(
        r#"
topology frozen {
  group w {
    run "@PROBE@ --record @DIR@/w-{index}.rec"
    processes 2
    stop SIGTERM drain 20s
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let started = started_and_armed(&mut up, 2);
    let pid = |name: &str| started.iter().find(|(n, _)| n == name).expect(name).1;
    let (early, late) = (pid("w.0"), pid("w.1"));
    // SAFETY: signals to the runner's children this test started.
    unsafe { libc::kill(early, libc::SIGSTOP) };
    let stopped = wait_until(EVENT_TIMEOUT, Duration::from_millis(10), || {
        proc_state(early) == Some('T')
    });
    assert!(stopped, "w.0 not stopped: {}", describe(&[early]));
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: as above.
    unsafe { libc::kill(late, libc::SIGSTOP) };
    let drain = Instant::now();
    up.signal(libc::SIGTERM);
    let code = up.exit_code();
    let took = drain.elapsed();
    assert_eq!(code, 0, "{}", up.stderr_text());
    assert!(
        took < Duration::from_secs(10),
        "a stopped worker waited for its deadline: {took:?}\n{}",
        up.stderr_text()
    );
    assert!(
        up.events_named("killed").is_empty(),
        "{:?}",
        up.events_named("killed")
    );
    for i in 0..2 {
        let sigs: Vec<String> = read_records(&h.path(&format!("w-{i}.rec")))
            .into_iter()
            .map(|r| r.sig)
            .collect();
        assert_eq!(sigs, ["SIGTERM"], "w.{i}");
    }
    assert!(survivors(&h.marker).is_empty());
}

// ----- a real terminal (tmux) ------------------------------------------------

fn tmux(h: &Harness, args: &[&str]) -> std::process::Output {
    Command::new("tmux")
        .arg("-L")
        .arg(&h.marker)
        .args(args)
        .env(MARKER_VAR, &h.marker)
        .output()
        .expect("tmux")
}

fn events_in(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `flowrun up` run by the shell of a tmux session, as a shell runs a
/// command (same controlling terminal and process group); `wrap` goes
/// before it (`nohup`). Returns the runner's pid.
fn in_tmux(h: &Harness, wrap: &str) -> i32 {
    let file = h.topology(
        "topology tty {\n  group a {\n    run \"@PROBE@ --record @DIR@/s-0.rec\"\n  }\n}\n",
    );
    let cmd = format!(
        "{wrap} {FLOWRUN} up {} --log-format json 2>{} >{} & wait",
        file.display(),
        h.path("events").display(),
        h.path("out").display()
    );
    let o = tmux(h, &["new-session", "-d", "-s", "t", &cmd]);
    assert!(o.status.success(), "{o:?}");
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(20), || {
        events_in(&h.path("events"))
            .iter()
            .any(|e| e["event"] == "ready")
    });
    assert!(
        ok,
        "never ready: {:?}",
        std::fs::read_to_string(h.path("events"))
    );
    let o = tmux(h, &["display-message", "-p", "-t", "t", "#{pane_pid}"]);
    let shell: i32 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("pane pid");
    let exe = std::fs::canonicalize(FLOWRUN).expect("flowrun path");
    children_of(shell)
        .into_iter()
        .find(|&c| std::fs::read_link(format!("/proc/{c}/exe")).is_ok_and(|e| e == exe))
        .expect("the runner is the shell's child")
}

#[test]
fn closing_the_terminal_drains() {
    let h = Harness::new("hostile-tty");
    let runner = in_tmux(&h, "");
    // Give the probe time to install its handlers.
    std::thread::sleep(Duration::from_millis(300));
    tmux(&h, &["kill-session", "-t", "t"]);
    let gone = wait_death(runner, EXIT_TIMEOUT);
    tmux(&h, &["kill-server"]);
    assert!(gone.is_some(), "the runner outlived its terminal");
    let ev = events_in(&h.path("events"));
    let draining: Vec<_> = ev.iter().filter(|e| e["event"] == "draining").collect();
    assert_eq!(draining.len(), 1, "{ev:?}");
    assert!(draining[0]["reason"]
        .as_str()
        .unwrap_or("")
        .starts_with("SIGHUP"));
    assert!(
        ev.iter().any(|e| e["event"] == "exit" && e["code"] == 0),
        "{ev:?}"
    );
    assert_eq!(
        read_records(&h.path("s-0.rec"))
            .iter()
            .map(|r| r.sig.as_str())
            .collect::<Vec<_>>(),
        ["SIGTERM"]
    );
    assert!(survivors(&h.marker).is_empty());
}

#[test]
fn nohup_keeps_hangup_as_reload() {
    let h = Harness::new("hostile-nohup");
    let runner = in_tmux(&h, "nohup");
    std::thread::sleep(Duration::from_millis(300));
    tmux(&h, &["kill-session", "-t", "t"]);
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(20), || {
        events_in(&h.path("events"))
            .iter()
            .any(|e| e["event"] == "reloaded")
    });
    tmux(&h, &["kill-server"]);
    assert!(ok, "{:?}", std::fs::read_to_string(h.path("events")));
    assert!(!is_dead(runner), "nohup: the runner must keep running");
    // SAFETY: our own test's runner (its pid is still alive, checked above).
    unsafe { libc::kill(runner, libc::SIGTERM) };
    assert!(wait_death(runner, EXIT_TIMEOUT).is_some());
    assert!(survivors(&h.marker).is_empty());
}
