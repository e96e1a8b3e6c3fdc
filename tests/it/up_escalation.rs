//! Guarantee: escalation. A second drain-triggering signal during a drain,
//! outside the first one's burst window, kills everything at once (unless
//! `escalate never`); signals inside the window are one request.

use crate::support::*;
use std::time::{Duration, Instant};

const TOPOLOGY: &str = r#"
# a drain that would take 30 s
topology hung {
  shutdown within 60s
  ESCALATE
  group stubborn {
    run "@PROBE@ --record @DIR@/s-{index}.rec --ignore SIGTERM"
    processes 3
    stop SIGTERM drain DRAIN
  }
}
"#;

fn start(name: &str, escalate: &str, drain: &str) -> (Harness, Up, Vec<i32>) {
    let h = Harness::new(name);
    let file = h.topology(
        &TOPOLOGY
            .replace("ESCALATE", escalate)
            .replace("DRAIN", drain),
    );
    let mut up = h.up(&file, &[]);
    let pids: Vec<i32> = started_and_armed(&mut up, 3)
        .iter()
        .map(|(_, p)| *p)
        .collect();
    up.signal_group(libc::SIGINT);
    up.wait_for("draining");
    up.wait_count("stopping", 3);
    // Every probe has recorded its SIGTERM: the drain is under way.
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(5), || {
        (0..3).all(|i| !read_records(&h.path(&format!("s-{i}.rec"))).is_empty())
    });
    assert!(ok, "probes never recorded their SIGTERM");
    // Drain signals within 100 ms of the first are one burst
    // (docs/events.md): the next one is a person's second Ctrl+C.
    std::thread::sleep(Duration::from_millis(300));
    (h, up, pids)
}

#[test]
fn second_sigint_during_drain_kills_at_once() {
    let (h, mut up, pids) = start("escalate-repeat", "", "30s");
    let watchers: Vec<_> = pids
        .iter()
        .map(|&p| std::thread::spawn(move || wait_death(p, Duration::from_secs(60))))
        .collect();
    let second = Instant::now();
    up.signal_group(libc::SIGINT);
    for w in watchers {
        let died = w.join().expect("watcher").expect("a probe never died");
        let after = died.duration_since(second);
        eprintln!("measured: probe died {after:?} after the second SIGINT");
        assert!(
            after < Duration::from_secs(2),
            "a probe died {after:?} after the second SIGINT"
        );
    }
    let code = up.exit_code();
    assert!(
        second.elapsed() < Duration::from_secs(10),
        "runner took {:?} to exit after escalating",
        second.elapsed()
    );
    let esc = up.wait_for("escalating");
    assert_eq!(esc["signal"], "SIGINT", "{esc}");
    let killed = up.events_named("killed");
    assert_eq!(killed.len(), 3, "{killed:?}");
    assert!(
        killed.iter().all(|k| k["reason"] == "escalation"),
        "{killed:?}"
    );
    let exited = up.events_named("exited");
    assert_eq!(exited.len(), 3, "{exited:?}");
    assert!(
        exited.iter().all(|e| e["signal"] == "SIGKILL"),
        "{exited:?}"
    );
    for i in 0..3 {
        let recs = read_records(&h.path(&format!("s-{i}.rec")));
        assert_eq!(
            recs.len(),
            1,
            "s-{i}: the second SIGINT is not forwarded: {recs:?}"
        );
    }
    // docs/events.md: an escalated drain exits 1.
    assert_eq!(code, 1, "stderr:\n{}", up.stderr_text());
    assert!(survivors(&h.marker).is_empty());
}

#[test]
fn escalate_never_keeps_draining_to_the_deadline() {
    let (h, mut up, pids) = start("escalate-never", "escalate never", "2s");
    up.signal_group(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        pids.iter().all(|&p| !is_dead(p)),
        "with `escalate never` a second SIGINT must not kill: {}",
        describe(&pids)
    );
    let code = up.exit_code();
    assert!(up.events_named("escalating").is_empty());
    let killed = up.events_named("killed");
    assert!(
        killed.iter().all(|k| k["reason"] == "deadline"),
        "{killed:?}"
    );
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    assert!(survivors(&h.marker).is_empty());
}
