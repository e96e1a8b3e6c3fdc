//! Guarantee: bounded drain. A process that ignores its ladder is SIGKILLed
//! with its whole process group at the deadline (within 100 ms of it); a
//! multi-step ladder is followed in order.

use crate::support::*;
use std::time::Duration;

/// Watch `pid` die on another thread; yields the wall-clock ns of death.
fn watch_death(pid: i32) -> std::thread::JoinHandle<Option<i64>> {
    std::thread::spawn(move || wait_death(pid, Duration::from_secs(60)).map(|_| now_ns()))
}

fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

#[test]
fn sigterm_ignored_is_killed_between_2_0_and_2_3_s() {
    let h = Harness::new("deadline-one");
    let file = h.topology(
        r#"
topology deadline {
  shutdown within 30s
  group stubborn {
    run "@PROBE@ --record @DIR@/stubborn.rec --ignore SIGTERM"
    stop SIGTERM drain 2s
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let started = started_and_armed(&mut up, 1);
    let pid = started[0].1;
    let death = watch_death(pid);
    let sent = now_ns();
    up.signal_group(libc::SIGINT);
    let died_ns = death
        .join()
        .expect("watcher")
        .expect("the probe never died");
    let code = up.exit_code();

    let recs = read_records(&h.path("stubborn.rec"));
    assert_eq!(
        recs.iter().map(|r| r.sig.as_str()).collect::<Vec<_>>(),
        ["SIGTERM"],
        "{recs:?}"
    );
    // Lower bound from our SIGINT (before the drain starts), upper bound
    // from the probe's SIGTERM (after it): delivery latency under load can
    // only make the check stricter, never flaky.
    let early = secs(died_ns - sent);
    let waited = secs(died_ns - recs[0].ns);
    eprintln!("measured: SIGTERM → death {waited:.3} s (SIGINT → death {early:.3} s)");
    assert!(
        early >= 2.0 && waited <= 2.3,
        "SIGKILL came {waited:.3} s after SIGTERM, {early:.3} s after the SIGINT \
         (want 2.0–2.3 s); stderr:\n{}",
        up.stderr_text()
    );

    // The runner's own account agrees: stopping → killed(deadline) ≈ 2 s.
    let stopping = up.wait_for("stopping");
    assert_eq!(stopping["signal"], "SIGTERM");
    assert_eq!(stopping["step"], 0);
    let killed = up.wait_for("killed");
    assert_eq!(killed["reason"], "deadline", "{killed}");
    let dt = t(&killed) - t(&stopping);
    assert!(
        (1.995..=2.3).contains(&dt),
        "killed {dt:.3} s after stopping"
    );
    let exited = up.wait_for("exited");
    assert_eq!(exited["signal"], "SIGKILL", "{exited}");
    assert_eq!(exited["expected"], true, "{exited}");
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    assert!(survivors(&h.marker).is_empty());
}

#[test]
fn two_step_ladder_is_followed_in_order() {
    let h = Harness::new("deadline-ladder");
    let file = h.topology(
        r#"
topology ladder {
  shutdown within 30s
  group stubborn {
    run "@PROBE@ --record @DIR@/stubborn.rec --ignore SIGTERM,SIGQUIT"
    stop SIGTERM drain 1s then SIGQUIT drain 1s
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let started = started_and_armed(&mut up, 1);
    let death = watch_death(started[0].1);
    let sent = now_ns();
    up.signal_group(libc::SIGINT);
    let died_ns = death
        .join()
        .expect("watcher")
        .expect("the probe never died");
    let code = up.exit_code();

    let recs = read_records(&h.path("stubborn.rec"));
    let sigs: Vec<&str> = recs.iter().map(|r| r.sig.as_str()).collect();
    assert_eq!(sigs, ["SIGTERM", "SIGQUIT"], "{recs:?}");
    // Each record is timestamped on delivery; allow the first one's
    // latency on the lower bound of the gaps.
    let gap = secs(recs[1].ns - recs[0].ns);
    assert!(
        (0.95..=1.3).contains(&gap),
        "SIGQUIT {gap:.3} s after SIGTERM"
    );
    let kill = secs(died_ns - recs[1].ns);
    eprintln!("measured: SIGTERM → SIGQUIT {gap:.3} s, SIGQUIT → death {kill:.3} s");
    assert!(
        (0.95..=1.3).contains(&kill) && secs(died_ns - sent) >= 2.0,
        "SIGKILL {kill:.3} s after SIGQUIT"
    );

    let steps: Vec<(String, i64)> = up
        .events_named("stopping")
        .iter()
        .map(|e| {
            (
                e["signal"].as_str().unwrap_or("").to_string(),
                e["step"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [("SIGTERM".to_string(), 0), ("SIGQUIT".to_string(), 1)],
        "stopping events"
    );
    let exited = up.wait_for("exited");
    assert_eq!(exited["signal"], "SIGKILL", "{exited}");
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    assert!(survivors(&h.marker).is_empty());
}

/// `to group`: the ladder's signal reaches every process of the group, and
/// the deadline SIGKILL takes the grandchild that ignored it too.
#[test]
fn to_group_signals_the_whole_group_and_kills_it_at_the_deadline() {
    let h = Harness::new("deadline-group");
    let file = h.topology(
        r#"
topology grouped {
  shutdown within 30s
  group tree {
    run "@PROBE@ --record @DIR@/leader.rec --ignore SIGTERM --spawn \"exec @PROBE@ --record @DIR@/child.rec --ignore SIGTERM\""
    stop SIGTERM drain 1s to group
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let started = started_and_armed(&mut up, 1);
    let leader = started[0].1;
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(5), || {
        children_of(leader).len() == 1
    });
    assert!(ok, "the leader's child did not start");
    let child = children_of(leader)[0];
    wait_armed(&[child]);
    let child_death = watch_death(child);
    let sent = now_ns();
    up.signal_group(libc::SIGINT);
    let child_died = child_death
        .join()
        .expect("watcher")
        .expect("the grandchild never died");
    let code = up.exit_code();
    let leader_recs = read_records(&h.path("leader.rec"));
    let child_recs = read_records(&h.path("child.rec"));
    assert_eq!(leader_recs.len(), 1, "leader: {leader_recs:?}");
    assert_eq!(child_recs.len(), 1, "grandchild: {child_recs:?}");
    assert_eq!(child_recs[0].sig, "SIGTERM");
    let waited = secs(child_died - leader_recs[0].ns);
    assert!(
        secs(child_died - sent) >= 1.0 && waited <= 1.3,
        "grandchild killed {waited:.3} s after SIGTERM"
    );
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    assert!(survivors(&h.marker).is_empty());
}

/// Every stop signal is followed by SIGCONT: a process that was stopped
/// (SIGSTOP, e.g. a debugger or a terminal's Ctrl+Z) still gets to handle
/// its SIGTERM and exits gracefully instead of waiting for the SIGKILL.
#[test]
fn a_stopped_process_is_continued_and_drains_gracefully() {
    let h = Harness::new("deadline-stopped");
    let file = h.topology(
        r#"
topology frozen {
  shutdown within 30s
  group frozen {
    run "@PROBE@ --record @DIR@/frozen.rec"
    stop SIGTERM drain 10s
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let pid = started_and_armed(&mut up, 1)[0].1;
    // SAFETY: stopping the probe we started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(5), || {
        proc_state(pid) == Some('T')
    });
    assert!(ok, "the probe did not stop");
    let death = watch_death(pid);
    let sent = now_ns();
    up.signal_group(libc::SIGINT);
    let died = death.join().expect("watcher").expect("never died");
    let code = up.exit_code();
    let took = secs(died - sent);
    assert!(
        took < 5.0,
        "a stopped probe needed {took:.3} s: no SIGCONT?"
    );
    let recs = read_records(&h.path("frozen.rec"));
    assert_eq!(
        recs.iter().map(|r| r.sig.as_str()).collect::<Vec<_>>(),
        ["SIGTERM"]
    );
    let exited = up.wait_for("exited");
    assert_eq!(exited["code"], 0, "graceful exit, not SIGKILL: {exited}");
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
}
