//! Guarantee: exactly once. A terminal Ctrl+C (SIGINT to the runner's whole
//! process group) makes every child receive exactly one stop signal — the
//! first step of its ladder — and never the terminal's SIGINT as well.
//! Repeated signals are coalesced into one drain.

use crate::support::*;

/// 2 groups × 3 probes; the ladder starts with SIGTERM, so a stray SIGINT
/// (the terminal's) would be visible in the records. Probes linger 300 ms
/// after their stop signal so a duplicate would still be recorded.
const TOPOLOGY: &str = r#"
# exactly-once delivery
topology once {
  shutdown within 30s
  ESCALATE
  group alpha {
    run "@PROBE@ --record @DIR@/alpha-{index}.rec --linger-ms 300"
    processes 3
    stop SIGTERM drain 10s
  }
  group beta {
    run "@PROBE@ --record @DIR@/beta-{index}.rec --linger-ms 300"
    processes 3
    stop SIGTERM drain 10s
  }
}
"#;

/// Every probe recorded exactly one signal, SIGTERM, from its own pid.
fn assert_one_sigterm_each(h: &Harness, started: &[(String, i32)]) {
    assert_eq!(started.len(), 6, "expected 6 started probes: {started:?}");
    for (process, pid) in started {
        let file = h.path(&format!("{}.rec", process.replace('.', "-")));
        let recs = read_records(&file);
        let sigs: Vec<&str> = recs.iter().map(|r| r.sig.as_str()).collect();
        assert_eq!(
            sigs,
            ["SIGTERM"],
            "{process} (pid {pid}) must record exactly one SIGTERM, got {recs:?}"
        );
        assert_eq!(
            recs[0].pid, *pid,
            "{process}: record from an unexpected pid"
        );
    }
}

fn run(name: &str, escalate: &str, sigints: usize) -> (Harness, i32, Up) {
    let h = Harness::new(name);
    let file = h.topology(&TOPOLOGY.replace("ESCALATE", escalate));
    let mut up = h.up(&file, &[]);
    let started = started_and_armed(&mut up, 6);
    for _ in 0..sigints {
        up.signal_group(libc::SIGINT);
    }
    let code = up.exit_code();
    assert_one_sigterm_each(&h, &started);
    let left = survivors(&h.marker);
    assert!(left.is_empty(), "left behind: {}", describe(&left));
    (h, code, up)
}

#[test]
fn one_sigint_to_the_group_gives_one_sigterm_each_and_exit_0() {
    let (_h, code, up) = run("once-single", "", 1);
    assert_eq!(
        code,
        0,
        "a clean signal drain exits 0; stderr:\n{}",
        up.stderr_text()
    );
    let drains = up.events_named("draining");
    assert_eq!(drains.len(), 1, "one drain: {drains:?}");
    assert_eq!(drains[0]["reason"], "SIGINT");
}

#[test]
fn five_sigints_within_a_millisecond_still_give_one_each() {
    // With the default `escalate on repeat` the extra SIGINTs may be
    // coalesced (exit 0) or count as a repeat (escalation, exit 1); either
    // way no child may see a second stop signal.
    let (_h, code, up) = run("once-five", "", 5);
    let escalated = !up.events_named("escalating").is_empty();
    let expected = if escalated { 1 } else { 0 };
    assert_eq!(
        code,
        expected,
        "exit status (escalated: {escalated}); stderr:\n{}",
        up.stderr_text()
    );
}

#[test]
fn five_sigints_with_escalate_never_are_one_drain() {
    let (_h, code, up) = run("once-five-never", "escalate never", 5);
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    assert_eq!(
        up.events_named("draining").len(),
        1,
        "repeated signals coalesce into one drain; stderr:\n{}",
        up.stderr_text()
    );
    assert!(up.events_named("escalating").is_empty());
}

/// The near miss FR302 exists for: a `process-group shared` group stopped
/// by the runner for SIGINT would also get the terminal's SIGINT. `up`
/// refuses to run it (lint errors block `up`: exit 2, nothing started).
#[test]
fn shared_process_group_stopped_on_sigint_is_refused() {
    let h = Harness::new("once-shared");
    let file = h.topology(
        r#"
topology shared {
  group web {
    run "@PROBE@ --record @DIR@/web.rec"
    process-group shared
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let code = up.exit_code();
    assert_eq!(
        code,
        2,
        "FR302 must block `up`; stderr:\n{}",
        up.stderr_text()
    );
    assert!(
        up.stderr_text().contains("FR302"),
        "the diagnostic names FR302; stderr:\n{}",
        up.stderr_text()
    );
    assert!(up.events_named("started").is_empty());
    assert!(!h.path("web.rec").exists() || read_records(&h.path("web.rec")).is_empty());
    assert!(survivors(&h.marker).is_empty());
}
