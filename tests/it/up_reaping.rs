//! Guarantee: reaping. 2,000 short-lived children beside 200 orphan makers:
//! every exit status is reported right (the runner's own reaping is not
//! robbed by the subreaper's), no zombie remains, nothing panics.

use crate::support::*;
use std::time::Duration;

const GROUPS: usize = 8;
const PER_GROUP: usize = 250; // `exit {index}` stays within 0..=255
const ORPHAN_MAKERS: usize = 200;

#[test]
fn two_thousand_exits_and_two_hundred_orphan_makers() {
    let h = Harness::new("reaping");
    let mut text =
        String::from("# reaping under load\ntopology reaping {\n  shutdown within 30s\n");
    for g in 0..GROUPS {
        text.push_str(&format!(
            "  group exit{g} {{\n    sh \"exit {{index}}\"\n    processes {PER_GROUP}\n    restart never\n  }}\n"
        ));
    }
    text.push_str(&format!(
        "  group orphans {{\n    sh \"sleep 0.01 &\"\n    processes {ORPHAN_MAKERS}\n    restart never\n  }}\n"
    ));
    text.push_str("  group keeper {\n    run \"@PROBE@\"\n  }\n}\n");
    let file = h.topology(&text);
    let mut up = h.up(&file, &[]);
    let total = GROUPS * PER_GROUP + ORPHAN_MAKERS;
    let exited = up.wait_count_within("exited", total, Duration::from_secs(90));

    let mut seen = std::collections::BTreeSet::new();
    for e in &exited {
        let process = process(e).to_string();
        assert!(
            seen.insert(process.clone()),
            "two `exited` events for {process}"
        );
        let group = e["group"].as_str().unwrap_or("");
        let index = e["index"].as_i64().unwrap_or(-1);
        assert_eq!(e["signal"], serde_json::Value::Null, "{e}");
        assert_eq!(e["expected"], false, "{e}");
        let want = if group == "orphans" { 0 } else { index };
        assert_eq!(e["code"].as_i64(), Some(want), "wrong status: {e}");
        assert!(e["pid"].as_i64().unwrap_or(0) > 0, "{e}");
    }
    assert_eq!(seen.len(), total);

    // The orphans' sleeps (10 ms) are long gone; none may linger as a
    // zombie child of the runner.
    let runner = up.pid;
    let clean = wait_until(Duration::from_secs(2), Duration::from_millis(50), || {
        zombie_children(runner).is_empty()
    });
    let zombies = zombie_children(runner);
    assert!(
        clean,
        "{} zombies after 2 s: {}",
        zombies.len(),
        describe(&zombies)
    );

    up.signal_group(libc::SIGINT);
    let code = up.exit_code();
    let stderr = up.stderr_text();
    assert!(!stderr.contains("panicked"), "runner panicked:\n{stderr}");
    assert_eq!(code, 0, "stderr:\n{stderr}");
    assert!(survivors(&h.marker).is_empty());
}

/// SIGCHLD is held on every thread of the runner but the supervisor's,
/// which lets it through only while it waits for work: a stop's N exits
/// then coalesce into one pending signal instead of N interruptions (or
/// wake-ups of another thread to run the handler), and exits are still
/// reaped while idle.
#[test]
fn sigchld_is_held_on_every_thread_but_the_waiting_supervisors() {
    let h = Harness::new("sigchld-mask");
    let file = h.topology(
        "topology m {\n  group w {\n    run \"@PROBE@\"\n    processes 2\n  }\n  group once {\n    sh \"sleep 0.3\"\n    once\n  }\n}\n",
    );
    let mut up = h.up(&file, &[]);
    up.wait_count_within("started", 3, Duration::from_secs(20));
    let runner = up.pid;
    // SIGCHLD is signal 17: bit 16 of the mask.
    let chld = 1u64 << (libc::SIGCHLD - 1);
    // Each thread's name and held signals (`/proc/TID/status` is the
    // thread's own).
    let threads = || -> Vec<(i32, String, u64)> {
        std::fs::read_dir(format!("/proc/{runner}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
            .map(|tid| {
                let blocked = status_field(tid, "SigBlk")
                    .and_then(|b| u64::from_str_radix(&b, 16).ok())
                    .unwrap_or(0);
                (tid, status_field(tid, "Name").unwrap_or_default(), blocked)
            })
            .collect()
    };
    // The supervisor's thread waits (nothing to do): SIGCHLD goes through.
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            threads()
                .iter()
                .any(|(tid, _, blocked)| *tid == runner && blocked & chld == 0)
        }),
        "the idle supervisor holds SIGCHLD: {:?}",
        threads()
    );
    let all = threads();
    assert!(all.len() > 1, "{all:?}");
    for (tid, name, blocked) in &all {
        if *tid != runner {
            assert!(
                blocked & chld != 0,
                "thread {name} ({tid}) lets SIGCHLD through: {all:?}"
            );
        }
    }
    // The guard (a child of the runner started by std's spawn) holds
    // nothing, as the processes of the topology do.
    let children = std::fs::read_to_string(format!("/proc/{runner}/task/{runner}/children"))
        .unwrap_or_default();
    let guard: Vec<i32> = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "flowrun-guard")
        })
        .collect();
    assert_eq!(guard.len(), 1, "the guard among {children}");
    assert_eq!(
        status_field(guard[0], "SigBlk").as_deref(),
        Some("0000000000000000"),
        "SigBlk of the guard"
    );
    // An exit while it waits is reaped and reported as before.
    let exited = up.wait_for("exited");
    assert_eq!(exited["group"], "once", "{exited}");
    assert_eq!(exited["code"].as_i64(), Some(0), "{exited}");
    up.signal(libc::SIGTERM);
    assert_eq!(up.exit_code(), 0, "stderr:\n{}", up.stderr_text());
    assert!(survivors(&h.marker).is_empty());
}

/// With SIGCHLD held while the supervisor works, an exit during a long
/// start is still reported before the start ends (the one process of
/// 1,500 that exits at once, before the last one starts), and the run
/// still stops: held through the waits too, SIGCHLD would never reach the
/// runner and this `up` would not end.
#[test]
fn an_exit_during_a_long_start_is_reaped_before_the_start_ends() {
    const N: usize = 1500;
    let h = Harness::new("sigchld-burst");
    let file = h.topology(&format!(
        "topology b {{\n  shutdown within 30s\n  group w {{\n    sh \"[ {{index}} -eq 0 ] || exec sleep 600\"\n    processes {N}\n    restart never\n  }}\n}}\n"
    ));
    let mut up = h.up(&file, &[]);
    up.wait_count_within("started", N, Duration::from_secs(120));
    let exited = up.wait_for("exited");
    assert_eq!(process(&exited), "w.0", "{exited}");
    let events = up.events();
    let at = |name: &str, who: &str| {
        events
            .iter()
            .position(|e| e["event"] == name && process(e) == who)
            .unwrap_or_else(|| panic!("no {name} for {who}"))
    };
    assert!(
        at("exited", "w.0") < at("started", &format!("w.{}", N - 1)),
        "w.0's exit was reported only after the whole start"
    );
    up.signal(libc::SIGTERM);
    assert_eq!(up.exit_code(), 0, "stderr:\n{}", up.stderr_text());
    assert!(survivors(&h.marker).is_empty());
}
