//! Guarantee (PDEATHSIG fires when the forking thread exits): children are not killed behind the
//! runner's back. `PR_SET_PDEATHSIG` fires when the *thread* that forked a
//! child exits; tokio's idle blocking threads exit after 10 s. Children
//! spawned at different times must all be alive after the runner has idled
//! for longer than that, and a restarted child must end by its own exit,
//! not by SIGKILL.

use crate::support::*;
use std::time::Duration;

#[test]
fn children_outlive_idle_runner_threads() {
    let h = Harness::new("early-death");
    let file = h.topology(
        r#"
topology idle {
  shutdown within 30s
  group steady {
    run "@PROBE@ --record @DIR@/steady-{index}.rec"
    processes 2
  }
  group flaky {
    run "@PROBE@ --crash-after-ms 300"
    restart on-failure backoff 1s..1s limit 100 per 60s
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let first = started_and_armed(&mut up, 3);
    // Longer than tokio's 10 s keep-alive for idle blocking threads.
    std::thread::sleep(Duration::from_secs(12));
    for (process, pid) in first.iter().filter(|(p, _)| p.starts_with("steady.")) {
        assert!(
            !is_dead(*pid),
            "{process} (pid {pid}) died while the runner idled"
        );
    }
    let exits = up.events_named("exited");
    assert!(
        exits.iter().all(|e| e["group"] == "flaky"),
        "only flaky exits: {exits:?}"
    );
    assert!(
        exits.len() >= 5,
        "flaky restarted only {} times",
        exits.len()
    );
    for e in &exits {
        assert_eq!(e["code"], 1, "flaky ends by its own exit 1: {e}");
    }
    up.signal_group(libc::SIGINT);
    let code = up.exit_code();
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    for i in 0..2 {
        let recs = read_records(&h.path(&format!("steady-{i}.rec")));
        assert_eq!(recs.len(), 1, "steady.{i}: {recs:?}");
    }
    assert!(survivors(&h.marker).is_empty());
}
