//! The output relay under hostile stdout and the human event lines: a
//! stdout nobody reads bounds the end of `up` (and signals stay handled
//! meanwhile), `ulimit -f` on the output file stops relaying once without
//! killing the runner, and human events stay one line each with exact
//! wording (plurals, the directory a spawn could not enter).

use crate::support::*;
use std::fs::File;
use std::time::{Duration, Instant};

/// The bound on flushing output at the end (`logs::FLUSH_LIMIT`,
/// docs/events.md "Ending").
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// A pipe: (read end, write end).
fn pipe() -> (File, File) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 into a local array; both ends are owned right below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors, each owned exactly once.
    unsafe {
        use std::os::fd::FromRawFd;
        (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))
    }
}

const CHATTY: &str = r#"
topology stall {
  @ESCALATE@
  group chatty {
    run "@PROBE@ --lines 1000000"
  }
}
"#;

/// `flowrun up` of [`CHATTY`] whose stdout is a pipe the test holds open
/// and never reads; returns once the relay has certainly filled it and the
/// runner has drained and brought the topology down after a SIGINT.
fn stalled(h: &Harness, escalate: &str) -> (Up, File, Instant) {
    let file = h.topology(&CHATTY.replace("@ESCALATE@", escalate));
    let (r, w) = pipe();
    let file_s = file.to_string_lossy().into_owned();
    let mut up = h.spawn_with_stdout(
        &[FLOWRUN, "up", &file_s, "--log-format", "json"],
        Some(w.into()),
    );
    up.wait_for("ready");
    // 1,000,000 lines do not fit a 64 KiB pipe: the writer is blocked in
    // write(2) by now, and the probe in its own.
    std::thread::sleep(Duration::from_millis(500));
    up.signal(libc::SIGINT);
    let sigint = Instant::now();
    up.wait_for("stopped");
    (up, r, sigint)
}

#[test]
fn a_stalled_stdout_reader_delays_the_exit_by_the_flush_bound_only() {
    let h = Harness::new("relay-stall");
    let (mut up, _unread, sigint) = stalled(&h, "");
    let status = up.wait_exit(FLUSH_LIMIT + Duration::from_secs(15));
    let took = sigint.elapsed();
    let stderr = up.stderr_text();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    let stopped = up.events_named("output-stopped");
    assert_eq!(stopped.len(), 1, "one output-stopped event:\n{stderr}");
    let reason = stopped[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not flushed within 2s"), "{reason}");
    // The bound is counted from the end of the topology, not from the
    // SIGINT: the runner cannot have given up earlier than that.
    assert!(took >= FLUSH_LIMIT, "gave up after {took:?}");
    let last = up.events().last().cloned().unwrap_or_default();
    assert_eq!(last["event"], "exit", "exit is the last event:\n{stderr}");
    assert!(survivors(&h.marker).is_empty());
    eprintln!("stalled stdout: exit {took:?} after SIGINT");
}

#[test]
fn a_second_sigint_during_a_stalled_flush_is_handled_and_escalates() {
    let h = Harness::new("relay-stall-escalate");
    let (mut up, _unread, _) = stalled(&h, "");
    // The topology is down; the runner is flushing into the stalled pipe.
    std::thread::sleep(Duration::from_millis(200));
    up.signal(libc::SIGINT);
    let second = Instant::now();
    let code = up.exit_code();
    let took = second.elapsed();
    let stderr = up.stderr_text();
    assert_eq!(
        up.events_named("signal").len(),
        2,
        "both reported:\n{stderr}"
    );
    assert_eq!(up.events_named("escalating").len(), 1, "{stderr}");
    assert_eq!(code, 1, "an escalated end exits 1:\n{stderr}");
    assert!(
        up.events_named("output-stopped").is_empty(),
        "escalation ends the flush before its bound:\n{stderr}"
    );
    assert!(survivors(&h.marker).is_empty());
    eprintln!("second SIGINT during a stalled flush: exit after {took:?}");
}

#[test]
fn with_escalate_never_signals_during_a_stalled_flush_are_reported_and_the_bound_holds() {
    let h = Harness::new("relay-stall-never");
    let (mut up, _unread, _) = stalled(&h, "escalate never");
    std::thread::sleep(Duration::from_millis(200));
    up.signal(libc::SIGTERM);
    up.wait_count("signal", 2);
    let status = up.wait_exit(FLUSH_LIMIT + Duration::from_secs(15));
    let stderr = up.stderr_text();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    let signals: Vec<_> = up
        .events_named("signal")
        .iter()
        .map(|e| e["signal"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(signals, ["SIGINT", "SIGTERM"], "{stderr}");
    assert!(up.events_named("escalating").is_empty(), "{stderr}");
    assert_eq!(up.events_named("output-stopped").len(), 1, "{stderr}");
}

#[test]
fn after_a_finish_drain_the_first_sigint_during_a_stalled_flush_is_acknowledged_and_a_later_one_escalates(
) {
    let h = Harness::new("relay-stall-finish");
    let file = h.topology(
        r#"
topology done {
  finish when t exits
  group chatty {
    run "@PROBE@ --lines 1000000"
  }
  group t {
    run "@PROBE@ --exit 0 --after-ms 700"
    once
  }
}
"#,
    );
    let (_unread, w) = pipe();
    let file_s = file.to_string_lossy().into_owned();
    let mut up = h.spawn_with_stdout(
        &[FLOWRUN, "up", &file_s, "--log-format", "json"],
        Some(w.into()),
    );
    up.wait_count("stopped", 2);
    std::thread::sleep(Duration::from_millis(200));
    up.signal(libc::SIGINT);
    up.wait_count("signal", 1);
    std::thread::sleep(Duration::from_millis(300));
    let stderr = up.stderr_text();
    assert!(up.events_named("escalating").is_empty(), "{stderr}");
    assert!(
        up.try_status().is_none(),
        "the first SIGINT ended the run:\n{stderr}"
    );
    up.signal(libc::SIGINT);
    let code = up.exit_code();
    let stderr = up.stderr_text();
    assert_eq!(up.events_named("signal").len(), 2, "{stderr}");
    assert_eq!(up.events_named("escalating").len(), 1, "{stderr}");
    assert_eq!(code, 1, "{stderr}");
}

#[test]
fn ulimit_f_on_the_output_file_stops_relaying_once_and_supervision_goes_on() {
    let h = Harness::new("relay-efbig");
    let file = h.topology(
        r#"
topology efbig {
  shutdown within 30s
  group chatty {
    run "@PROBE@ --lines 100000"
  }
  group flaky {
    run "@PROBE@ --lines 10 --crash-after-ms 200"
    restart on-failure backoff 100ms..100ms limit 1000 per 60s
  }
}
"#,
    );
    let file_s = file.to_string_lossy().into_owned();
    // 64 blocks: 32 KiB in sh's 512-byte blocks (64 KiB in 1 KiB ones).
    let mut up = h.spawn(&[
        "/bin/sh",
        "-c",
        "ulimit -f 64 && exec \"$0\" \"$@\"",
        FLOWRUN,
        "up",
        &file_s,
        "--log-format",
        "json",
    ]);
    let stopped = up.wait_for("output-stopped");
    let reason = stopped["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("File too large"), "{reason}");
    let before = up.events_named("restarting").len();
    std::thread::sleep(Duration::from_millis(1500));
    let stderr = up.stderr_text();
    assert!(up.try_status().is_none(), "runner died:\n{stderr}");
    let after = up.events_named("restarting").len();
    assert!(
        after >= before + 3,
        "supervision stopped after EFBIG: {before} → {after} restarts"
    );
    up.signal_group(libc::SIGINT);
    let code = up.exit_code();
    let stderr = up.stderr_text();
    assert_eq!(code, 0, "stderr:\n{stderr}");
    assert_eq!(
        up.events_named("output-stopped").len(),
        1,
        "said once:\n{stderr}"
    );
    assert_eq!(up.events_named("exit").len(), 1, "{stderr}");
    let size = std::fs::metadata(&up.stdout).map(|m| m.len()).unwrap_or(0);
    assert!(size <= 64 * 1024, "output file grew past the limit: {size}");
    assert!(survivors(&h.marker).is_empty());
}

/// `flowrun up FILE --log-format human`; stderr lines so far.
fn up_human(h: &Harness, file: &std::path::Path) -> Up {
    let file_s = file.to_string_lossy().into_owned();
    h.spawn(&[FLOWRUN, "up", &file_s, "--log-format", "human"])
}

fn wait_line(up: &mut Up, needle: &str) -> String {
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(10), || {
        up.stderr_text().contains(needle)
    });
    let text = up.stderr_text();
    assert!(ok, "no line with {needle:?}; stderr:\n{text}");
    text
}

#[test]
fn a_program_path_with_a_newline_stays_on_one_human_event_line() {
    let h = Harness::new("relay-newline");
    let file = h.topology(
        r#"
topology nl {
  group odd {
    run "'@DIR@/no\nsuch'"
  }
}
"#,
    );
    let mut up = up_human(&h, &file);
    let code = up.exit_code();
    let text = up.stderr_text();
    assert_eq!(code, 1, "a spawn failure fails the group:\n{text}");
    for line in text.lines() {
        assert!(
            line.starts_with("flowrun | "),
            "split event line {line:?} in:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.contains("failed") && l.contains("/no\\nsuch")),
        "the path is escaped in the failed line:\n{text}"
    );
}

#[test]
fn a_reload_rejected_with_one_error_says_one_error() {
    let h = Harness::new("relay-plural");
    let good = "topology p {\n  group a {\n    run \"@PROBE@\"\n  }\n}\n";
    let file = h.topology(good);
    let mut up = up_human(&h, &file);
    let start = wait_line(&mut up, " ready");
    assert!(
        start.contains("starting topology p: 1 group, 1 process ("),
        "{start}"
    );
    h.topology("topology p {\n  group a {\n    run \"@PROBE@\"\n    bogus 1\n  }\n}\n");
    up.signal(libc::SIGHUP);
    let text = wait_line(&mut up, "reload rejected");
    assert!(text.contains("reload rejected (1 error)\n"), "{text}");
    up.signal(libc::SIGINT);
    assert_eq!(up.exit_code(), 0, "{}", up.stderr_text());
}

/// A crashing service whose directory (`cwd`, if given) is removed after
/// its first start: its restart fails, naming that directory.
fn gone_directory_is_named(name: &str, cwd: Option<&str>) {
    let h = Harness::new(name);
    let dir = h.path("gone");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    let cwd_line = cwd.map_or(String::new(), |c| format!("cwd \"{c}\""));
    let file = h.write(
        "gone/topology.pf",
        &format!(
            "topology gone {{\n  group g {{\n    run \"@PROBE@ --crash-after-ms 300\"\n    \
             {cwd_line}\n    restart on-failure backoff 100ms..100ms\n  }}\n}}\n"
        ),
    );
    let mut up = h.up(&file, &[]);
    up.wait_for("started");
    std::fs::remove_dir_all(&dir).expect("rm -r");
    let code = up.exit_code();
    let stderr = up.stderr_text();
    assert_eq!(code, 1, "{stderr}");
    let failed = up.events_named("failed");
    let reason = failed
        .first()
        .and_then(|e| e["reason"].as_str())
        .unwrap_or_default();
    let mut want = h
        .dir
        .canonicalize()
        .expect("canonical test dir")
        .join("gone");
    if let Some(c) = cwd {
        want = want.join(c);
    }
    let want = format!(
        "g.0: spawn failed: cannot change directory to {} (",
        want.display()
    );
    assert!(reason.starts_with(&want), "want {want:?}, got {reason:?}");
}

#[test]
fn a_topology_directory_that_disappeared_is_named() {
    gone_directory_is_named("relay-cwd-base", None);
}

#[test]
fn a_group_cwd_that_disappeared_is_named_in_full() {
    gone_directory_is_named("relay-cwd-sub", Some("sub"));
}
