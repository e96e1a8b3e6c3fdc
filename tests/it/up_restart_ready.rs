//! Guarantee: supervision. Restarts follow the policy with exponential
//! backoff; a group that exceeds its limit is failed and the topology
//! drains with a non-zero exit. Readiness (`tcp`, `log`, `notify`) gates
//! dependents; a ready check that times out fails the group.

use crate::support::*;
use serde_json::Value;

fn by_process<'a>(evs: &'a [Value], process: &str) -> &'a Value {
    evs.iter()
        .find(|e| e["process"] == process)
        .unwrap_or_else(|| panic!("no event for {process} in {evs:?}"))
}

#[test]
fn crashing_probe_backs_off_then_fails_the_topology() {
    let h = Harness::new("restart-crash");
    let file = h.topology(
        r#"
topology crashy {
  group crashy {
    run "@PROBE@ --crash-after-ms 50"
    restart on-failure backoff 100ms..5s limit 3 per 60s
  }
  group bystander {
    run "@PROBE@ --record @DIR@/bystander.rec"
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let code = up.exit_code();
    let stderr = up.stderr_text();
    assert_eq!(code, 1, "a failed group exits 1; stderr:\n{stderr}");

    let restarting = up.events_named("restarting");
    let delays: Vec<i64> = restarting
        .iter()
        .map(|e| e["in_ms"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(delays.len(), 3, "limit 3 → 3 restarts; stderr:\n{stderr}");
    assert!(delays[0] >= 100, "first backoff {} ms < min", delays[0]);
    assert!(
        delays.windows(2).all(|w| w[1] > w[0]),
        "backoff must grow: {delays:?}"
    );
    let attempts: Vec<i64> = restarting
        .iter()
        .map(|e| e["attempt"].as_i64().unwrap_or(-1))
        .collect();
    assert!(
        attempts.windows(2).all(|w| w[1] > w[0]),
        "attempts {attempts:?}"
    );

    // The restarts really waited: each start is at least ~in_ms after the
    // exit that scheduled it.
    let crashy_starts: Vec<f64> = up
        .events_named("started")
        .iter()
        .filter(|e| e["group"] == "crashy")
        .map(t)
        .collect();
    assert_eq!(
        crashy_starts.len(),
        4,
        "1 start + 3 restarts; stderr:\n{stderr}"
    );
    for (i, r) in restarting.iter().enumerate() {
        let gap = crashy_starts[i + 1] - t(r);
        let want = delays[i] as f64 / 1000.0;
        assert!(
            gap >= want * 0.9,
            "restart {i} after {gap:.3} s, scheduled in {want} s"
        );
    }

    let failed = up.wait_for("failed");
    assert_eq!(failed["group"], "crashy", "{failed}");
    let draining = up.wait_for("draining");
    assert_eq!(draining["reason"], "failed", "{draining}");
    assert!(t(&draining) >= t(&failed));
    // The bystander was drained (one SIGTERM), not left running.
    let recs = read_records(&h.path("bystander.rec"));
    assert_eq!(
        recs.iter().map(|r| r.sig.as_str()).collect::<Vec<_>>(),
        ["SIGTERM"]
    );
    assert!(survivors(&h.marker).is_empty());
}

#[test]
fn dependents_wait_for_tcp_log_and_notify_readiness() {
    let h = Harness::new("ready-kinds");
    let port = free_port();
    let text = r#"
topology ready {
  shutdown within 30s
  group viatcp {
    run "@PROBE@ --delay-ms 700 --listen-tcp PORT"
    ready when tcp "127.0.0.1:PORT" every 50ms within 30s
  }
  group vialog {
    run "@PROBE@ --delay-ms 700 --log-ready \"db is up\""
    ready when log "is up" within 30s
  }
  group vianotify {
    run "@PROBE@ --delay-ms 700 --notify"
    ready when notify within 30s
  }
  group deptcp {
    run "@PROBE@"
    after viatcp ready
  }
  group deplog {
    run "@PROBE@"
    after vialog ready
  }
  group depnotify {
    run "@PROBE@"
    after vianotify ready
  }
}
"#
    .replace("PORT", &port.to_string());
    let file = h.topology(&text);
    let mut up = h.up(&file, &[]);
    up.wait_count("started", 6);
    started_and_armed(&mut up, 6);
    let started = up.events_named("started");
    let ready = up.events_named("ready");
    for (base, dep) in [
        ("viatcp", "deptcp"),
        ("vialog", "deplog"),
        ("vianotify", "depnotify"),
    ] {
        let b_start = by_process(&started, &format!("{base}.0"));
        let b_ready = by_process(&ready, &format!("{base}.0"));
        let d_start = by_process(&started, &format!("{dep}.0"));
        let waited = t(b_ready) - t(b_start);
        assert!(
            waited >= 0.6,
            "{base} declared ready {waited:.3} s after start, before the probe could be"
        );
        assert!(
            t(d_start) >= t(b_ready),
            "{dep} started at {} before {base} was ready at {}",
            t(d_start),
            t(b_ready)
        );
    }
    up.signal_group(libc::SIGINT);
    let code = up.exit_code();
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    assert!(survivors(&h.marker).is_empty());
}

#[test]
fn ready_check_that_times_out_fails_the_group() {
    let h = Harness::new("ready-timeout");
    let port = free_port();
    let text = r#"
topology late {
  group never {
    run "@PROBE@"
    ready when tcp "127.0.0.1:PORT" every 100ms within 1s
  }
  group dependent {
    run "@PROBE@ --record @DIR@/dependent.rec"
    after never ready
  }
}
"#
    .replace("PORT", &port.to_string());
    let file = h.topology(&text);
    let mut up = h.up(&file, &[]);
    let code = up.exit_code();
    assert_eq!(code, 1, "stderr:\n{}", up.stderr_text());
    let failed = up.wait_for("failed");
    assert_eq!(failed["group"], "never", "{failed}");
    assert!(
        up.events_named("started")
            .iter()
            .all(|e| e["group"] != "dependent"),
        "the dependent must never start"
    );
    assert!(survivors(&h.marker).is_empty());
}
