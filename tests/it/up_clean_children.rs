//! Guarantee: children start clean — default signal dispositions, an empty
//! signal mask, stdin from /dev/null, no descriptors but 0, 1, 2, and the
//! inherited soft `RLIMIT_NOFILE` — even when the runner itself was started
//! with SIGINT and SIGHUP ignored and a lowered soft limit.

use crate::support::*;
use std::time::Duration;

fn fds_of(pid: i32) -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.sort_unstable();
    fds
}

/// Soft "Max open files" from /proc/PID/limits.
fn soft_nofile(pid: i32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn children_have_default_signals_empty_mask_and_only_fds_0_1_2() {
    let h = Harness::new("clean");
    let file = h.topology(
        r#"
topology clean {
  group plain {
    run "sleep 600"
    processes 2
  }
  group probe {
    run "@PROBE@ --print-fds --print-status"
  }
}
"#,
    );
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a local struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
    let soft = hard.rlim_max.min(1000);
    let script = format!(
        "trap '' INT HUP; ulimit -Sn {soft} && exec {FLOWRUN} up {} --log-format json",
        file.display()
    );
    let mut up = h.spawn(&["/bin/sh", "-c", &script]);
    up.wait_count("started", 3);
    let started = up.started_pids();
    let sleeps: Vec<i32> = started
        .iter()
        .filter(|(p, _)| p.starts_with("plain."))
        .map(|(_, p)| *p)
        .collect();
    // Wait until both have exec'd `sleep` (the pid exists from fork on).
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(5), || {
        sleeps.iter().all(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| c.starts_with(b"sleep\0"))
                .unwrap_or(false)
        })
    });
    assert!(ok, "sleep never started: {}", describe(&sleeps));
    // The runner really was started with INT and HUP ignored.
    let runner_ign = status_field(up.pid, "SigIgn").unwrap_or_default();
    eprintln!("runner SigIgn {runner_ign}");

    for &pid in &sleeps {
        assert_eq!(
            status_field(pid, "SigIgn").as_deref(),
            Some("0000000000000000"),
            "SigIgn of child {pid}"
        );
        assert_eq!(
            status_field(pid, "SigBlk").as_deref(),
            Some("0000000000000000"),
            "SigBlk of child {pid}"
        );
        assert_eq!(fds_of(pid), [0, 1, 2], "descriptors of child {pid}");
        let stdin = std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap_or_default();
        assert_eq!(stdin.to_string_lossy(), "/dev/null", "stdin of child {pid}");
        assert_eq!(
            soft_nofile(pid),
            Some(soft),
            "soft RLIMIT_NOFILE of child {pid}"
        );
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let env: Vec<String> = env
            .split(|&b| b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let index = started
            .iter()
            .find(|(_, p)| *p == pid)
            .map(|(name, _)| name.trim_start_matches("plain.").to_string())
            .unwrap_or_default();
        for want in [
            "FLOWRUN_TOPOLOGY=clean".to_string(),
            "FLOWRUN_GROUP=plain".to_string(),
            format!("FLOWRUN_INDEX={index}"),
            "FLOWRUN_PROCESSES=2".to_string(),
            "FLOWRUN_COROUTINES=1".to_string(),
        ] {
            assert!(env.contains(&want), "child {pid} lacks {want}: {env:?}");
        }
    }

    // The probe's own view (Rust's runtime ignores SIGPIPE itself: 0x1000).
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(10), || {
        up.stdout_text().contains("nofile:")
    });
    assert!(ok, "probe output missing; stdout:\n{}", up.stdout_text());
    let out = up.stdout_text();
    let line = |key: &str| {
        out.lines()
            .find_map(|l| {
                l.split_once(" | ")
                    .map(|x| x.1)
                    .filter(|p| p.starts_with(key))
            })
            .map(|p| p[key.len()..].trim().to_string())
            .unwrap_or_else(|| panic!("no {key} in stdout:\n{out}"))
    };
    assert_eq!(line("fds:"), "0 1 2");
    assert_eq!(line("SigBlk:"), "0000000000000000");
    assert_eq!(line("SigIgn:"), "0000000000001000");
    assert_eq!(
        line("nofile:").split(' ').next(),
        Some(soft.to_string().as_str())
    );

    up.signal(libc::SIGTERM);
    let code = up.exit_code();
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    assert!(survivors(&h.marker).is_empty());
}

/// Descriptors at scale. With an inherited soft
/// `RLIMIT_NOFILE` of 1024, 2,000 children start and stop, and each still
/// gets the inherited 1024 and only fds 0, 1, 2.
#[test]
fn two_thousand_children_under_an_inherited_soft_limit_of_1024() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a local struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if lim.rlim_max < 8192 {
        eprintln!(
            "SKIPPED: hard RLIMIT_NOFILE {} is too low for 2,000 children",
            lim.rlim_max
        );
        return;
    }
    let h = Harness::new("clean-scale");
    let file = h.topology(
        r#"
topology many {
  shutdown within 60s
  group sleepers {
    run "sleep 600"
    processes 2000
  }
}
"#,
    );
    let script = format!(
        "ulimit -Sn 1024 && exec {FLOWRUN} up {} --log-format json",
        file.display()
    );
    let mut up = h.spawn(&["/bin/sh", "-c", &script]);
    up.wait_count_within("started", 2000, Duration::from_secs(120));
    let pids: Vec<i32> = up.started_pids().iter().map(|(_, p)| *p).collect();
    for &pid in pids.iter().step_by(97) {
        let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(5), || {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.starts_with(b"sleep\0"))
                .unwrap_or(false)
        });
        assert!(ok, "child {pid} never exec'd sleep");
        assert_eq!(soft_nofile(pid), Some(1024), "soft RLIMIT_NOFILE of {pid}");
        assert_eq!(fds_of(pid), [0, 1, 2], "descriptors of child {pid}");
    }
    assert!(
        pids.iter().all(|&p| !is_dead(p)),
        "children died early; stderr:\n{}",
        up.stderr_text()
    );
    up.signal(libc::SIGTERM);
    let code = up.exit_code();
    assert_eq!(code, 0, "stderr tail:\n{}", tail(&up.stderr_text()));
    assert_eq!(up.events_named("exited").len(), 2000);
    assert!(survivors(&h.marker).is_empty());
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
