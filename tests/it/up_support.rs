//! Self-tests of the runtime tests' tools, without `flowrun up`: the
//! probe records signals as documented, its blob matches the copy the
//! tests regenerate, and the harness's marker cleanup kills a whole tree
//! even when a test panics.

use crate::support::*;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn probe_records_each_signal_once_with_its_pid() {
    let h = Harness::new("support-record");
    let rec = h.path("p.rec");
    let rec_s = rec.to_string_lossy().into_owned();
    let mut p = h.spawn(&[PROBE, "--record", &rec_s, "--ignore", "SIGTERM"]);
    wait_armed(&[p.pid]);
    let before = now_ns();
    p.signal(libc::SIGTERM);
    assert!(wait_until(EVENT_TIMEOUT, Duration::from_millis(5), || {
        read_records(&rec).len() == 1
    }));
    p.signal(libc::SIGUSR1);
    assert!(wait_until(EVENT_TIMEOUT, Duration::from_millis(5), || {
        read_records(&rec).len() == 2
    }));
    assert!(
        !is_dead(p.pid),
        "an ignored SIGTERM must not stop the probe"
    );
    p.signal(libc::SIGINT);
    let status = p.wait_exit(EVENT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "SIGINT exits 0 by default");
    let recs = read_records(&rec);
    let sigs: Vec<&str> = recs.iter().map(|r| r.sig.as_str()).collect();
    assert_eq!(sigs, ["SIGTERM", "SIGUSR1", "SIGINT"]);
    assert!(recs.iter().all(|r| r.pid == p.pid && r.ns >= before));
    assert!(recs.windows(2).all(|w| w[0].ns <= w[1].ns));
}

#[test]
fn probe_lingers_and_records_a_duplicate() {
    let h = Harness::new("support-linger");
    let rec = h.path("p.rec");
    let rec_s = rec.to_string_lossy().into_owned();
    let mut p = h.spawn(&[PROBE, "--record", &rec_s, "--linger-ms", "300"]);
    wait_armed(&[p.pid]);
    p.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(50));
    p.signal(libc::SIGTERM);
    p.wait_exit(EVENT_TIMEOUT);
    assert_eq!(read_records(&rec).len(), 2, "a duplicate is visible");
}

#[test]
fn probe_blob_matches_the_tests_copy() {
    for (len, seed) in [(0u64, 1u64), (1, 2), (99, 3), (1 << 20, 7)] {
        let out = Command::new(PROBE)
            .args([
                "--blob",
                &len.to_string(),
                "--seed",
                &seed.to_string(),
                "--exit",
                "0",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run probe");
        assert!(out.status.success());
        assert_eq!(out.stdout.len() as u64, len);
        assert!(out.stdout == blob(len, seed), "blob({len}, {seed}) differs");
        assert!(len == 0 || out.stdout.ends_with(b"\n"));
    }
}

#[test]
fn probe_lines_and_unterminated_bytes_have_the_documented_shape() {
    let out = Command::new(PROBE)
        .args(["--lines", "3", "--line-bytes", "16", "--prefix", "q"])
        .args(["--no-newline-bytes", "28", "--exit", "0"])
        .stdin(Stdio::null())
        .output()
        .expect("run probe");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "q:000000:xxxxxxx\nq:000001:xxxxxxx\nq:000002:xxxxxxx\nabcdefghijklmnopqrstuvwxyzab"
    );
}

#[test]
fn harness_cleanup_kills_the_marked_tree_even_on_panic() {
    let result = std::panic::catch_unwind(|| {
        let h = Harness::new("support-cleanup");
        let marker = h.marker.clone();
        let sh = h.spawn(&[
            "/bin/sh",
            "-c",
            "sleep 600 & (setsid sleep 600 &) ; exec sleep 600",
        ]);
        let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(10), || {
            survivors(&marker).len() >= 3
        });
        assert!(ok, "tree did not start: {}", describe(&survivors(&marker)));
        std::mem::forget(sh); // leave the child to the marker cleanup
        std::panic::panic_any(marker);
    });
    let marker = *result
        .expect_err("the closure panics")
        .downcast::<String>()
        .expect("the marker");
    let left = survivors(&marker);
    // The harness keeps a panicking test's files; this panic was on purpose.
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("flowrun-test-{marker}")));
    assert!(left.is_empty(), "cleanup left: {}", describe(&left));
}
