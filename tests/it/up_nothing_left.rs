//! Guarantee: nothing left behind. After `up` returns, no process of the
//! topology remains, grandchildren included; within 1 s after the runner
//! itself is SIGKILLed, none remains either.

use crate::support::*;
use std::time::{Duration, Instant};

/// Shell workers whose grandchildren stay in their process group, and
/// probes that spawn grandchildren (one of them a shell with its own
/// background child).
const TOPOLOGY: &str = r#"
# grandchildren everywhere
topology leftovers {
  shutdown within 30s
  group shells {
    sh "sleep 600 & sleep 600"
    processes 2
    stop SIGTERM drain 2s
  }
  group spawner {
    run "@PROBE@ --spawn \"sleep 600\" --spawn \"sleep 600 & sleep 600\""
    processes 2
    stop SIGTERM drain 2s
  }
}
"#;

/// Start the topology and wait until every leader has its grandchildren.
fn start(name: &str) -> (Harness, Up) {
    let h = Harness::new(name);
    let file = h.topology(TOPOLOGY);
    let mut up = h.up(&file, &[]);
    up.wait_count("started", 4);
    let leaders: Vec<i32> = up.started_pids().iter().map(|(_, p)| *p).collect();
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(10), || {
        leaders.iter().all(|&p| !children_of(p).is_empty())
    });
    assert!(
        ok,
        "leaders never got their grandchildren: {}",
        describe(&leaders)
    );
    // The probes' `sh -c "sleep 600 & sleep 600"` grandchildren: 2 sleeps each.
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(10), || {
        let sleeps = survivors(&h.marker)
            .into_iter()
            .filter(|&p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .map(|c| c.starts_with(b"sleep\0"))
                    .unwrap_or(false)
            })
            .count();
        // shells: 2 × 2 sleeps; spawner: 2 × (1 + 2) sleeps.
        sleeps >= 10
    });
    assert!(
        ok,
        "grandchildren did not all start: {}",
        describe(&survivors(&h.marker))
    );
    (h, up)
}

#[test]
fn nothing_left_after_up_returns() {
    let (h, mut up) = start("left-return");
    up.signal_group(libc::SIGINT);
    let code = up.exit_code();
    let left = survivors(&h.marker);
    assert!(
        left.is_empty(),
        "processes left after `up` returned: {}",
        describe(&left)
    );
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
}

#[test]
fn nothing_left_within_one_second_of_runner_sigkill() {
    let (h, mut up) = start("left-sigkill");
    // Only the runner: whatever cleans up must survive it.
    up.signal(libc::SIGKILL);
    let killed_at = Instant::now();
    up.wait_exit(Duration::from_secs(5));
    let budget = Duration::from_secs(1).saturating_sub(killed_at.elapsed());
    let gone = wait_until(budget, Duration::from_millis(20), || {
        survivors(&h.marker).is_empty()
    });
    let left = survivors(&h.marker);
    eprintln!(
        "measured: marked processes gone {:.3} s after SIGKILL of the runner",
        killed_at.elapsed().as_secs_f64()
    );
    assert!(
        gone && left.is_empty(),
        "{} s after SIGKILL of the runner these remain: {}",
        killed_at.elapsed().as_secs_f64(),
        describe(&left)
    );
}
