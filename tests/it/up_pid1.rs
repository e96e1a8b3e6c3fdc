//! Guarantee: as PID 1 (a container's init), the runner handles SIGTERM with
//! a graceful drain, reaps orphans, flushes its output and exits with the
//! documented status (0). Skipped, with the reason printed, where
//! `unshare --pid` is not permitted.

use crate::support::*;
use std::process::Command;
use std::time::Duration;

/// The unshare arguments that work here, or why none do.
fn unshare_args() -> Result<Vec<&'static str>, String> {
    let mut why = Vec::new();
    for args in [
        vec!["--pid", "--fork", "--mount-proc"],
        vec![
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "--mount-proc",
        ],
    ] {
        match Command::new("unshare").args(&args).arg("true").output() {
            Ok(o) if o.status.success() => return Ok(args),
            Ok(o) => why.push(format!(
                "unshare {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => why.push(format!("unshare: {e}")),
        }
    }
    Err(why.join("; "))
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

#[test]
fn pid1_drains_on_sigterm_reaps_and_exits_0() {
    let args = match unshare_args() {
        Ok(a) => a,
        Err(why) => {
            eprintln!("SKIPPED up_pid1: unshare --pid is not permitted here: {why}");
            return;
        }
    };
    let h = Harness::new("pid1");
    let file = h.topology(
        r#"
topology container {
  shutdown within 30s
  group web {
    run "@PROBE@ --record @DIR@/web-{index}.rec --linger-ms 200"
    processes 2
  }
  group orphans {
    sh "(sleep 0.05 &); (sleep 0.1 &); exec @PROBE@ --record @DIR@/orphans-{index}.rec"
    processes 2
  }
}
"#,
    );
    let file_s = file.to_string_lossy().into_owned();
    let mut argv = vec!["unshare"];
    argv.extend(args);
    argv.extend([FLOWRUN, "up", &file_s, "--log-format", "json"]);
    let mut up = h.spawn(&argv);
    up.wait_count("started", 4);

    // The runner is unshare's child (PID 1 inside the namespace).
    let unshare_pid = up.pid;
    let mut runner = 0;
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(10), || {
        runner = children_of(unshare_pid)
            .into_iter()
            .find(|&p| cmdline(p).contains(" up "))
            .unwrap_or(0);
        runner != 0
    });
    assert!(ok, "no runner under unshare {unshare_pid}");
    assert_eq!(
        status_field(runner, "NSpid")
            .and_then(|v| v.split_whitespace().last().map(str::to_string))
            .as_deref(),
        Some("1"),
        "the runner is PID 1 in its namespace"
    );
    // Probes, seen from outside (the events carry namespace pids).
    let mut probes = Vec::new();
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(10), || {
        probes = survivors(&h.marker)
            .into_iter()
            .filter(|&p| cmdline(p).starts_with(PROBE))
            .collect();
        probes.len() == 4
    });
    assert!(ok, "expected 4 probes: {}", describe(&probes));
    wait_armed(&probes);

    // The orphaned sleeps were adopted by PID 1 and must be reaped.
    std::thread::sleep(Duration::from_millis(1000));
    let zombies = zombie_children(runner);
    assert!(
        zombies.is_empty(),
        "zombies under PID 1: {}",
        describe(&zombies)
    );

    // SAFETY: signalling the runner we started (via unshare).
    unsafe { libc::kill(runner, libc::SIGTERM) };
    let code = up.exit_code();
    assert_eq!(
        code,
        0,
        "documented exit status; stderr:\n{}",
        up.stderr_text()
    );

    for name in ["web-0", "web-1", "orphans-0", "orphans-1"] {
        let recs = read_records(&h.path(&format!("{name}.rec")));
        assert_eq!(
            recs.iter().map(|r| r.sig.as_str()).collect::<Vec<_>>(),
            ["SIGTERM"],
            "{name}: one graceful stop signal"
        );
    }
    let drain = up.wait_for("draining");
    assert_eq!(drain["reason"], "SIGTERM", "{drain}");
    // Output was flushed before PID 1 exited (its exit kills the namespace).
    let exit = up.wait_for("exit");
    assert_eq!(exit["code"], 0, "{exit}");
    assert!(survivors(&h.marker).is_empty());
}
