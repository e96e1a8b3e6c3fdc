//! The seed story for real: examples/python-pool.pf runs a Python worker
//! pool (4 processes × 2 threads); a terminal Ctrl+C drains it cleanly —
//! exit 0, no traceback, one drain summary per worker, no orphan.

use crate::support::*;
use std::path::Path;
use std::time::Duration;

#[test]
fn python_pool_drains_cleanly_on_ctrl_c() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        eprintln!("SKIPPED up_python_pool: python3 is not installed");
        return;
    }
    let h = Harness::new("python-pool");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python-pool.pf");
    let mut up = h.up(&file, &[]);
    up.wait_count("started", 4);
    // Each worker says so once its signal handlers are installed.
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(20), || {
        up.stdout_text().matches(" started 2 threads").count() == 4
    });
    assert!(
        ok,
        "workers did not all start; stdout:\n{}",
        up.stdout_text()
    );
    std::thread::sleep(Duration::from_millis(300)); // let them do some jobs

    up.signal_group(libc::SIGINT);
    let code = up.exit_code();
    let (out, err) = (up.stdout_text(), up.stderr_text());
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        !out.contains("Traceback") && !err.contains("Traceback"),
        "a traceback:\n{out}\n{err}"
    );
    for i in 0..4 {
        let summaries: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with(&format!("pool.{i} | worker {i} drained: ")))
            .collect();
        assert_eq!(summaries.len(), 1, "pool.{i} drain summaries:\n{out}");
        assert!(
            summaries[0].ends_with(" after SIGTERM"),
            "pool.{i} got exactly one SIGTERM: {}",
            summaries[0]
        );
    }
    let exited = up.events_named("exited");
    assert_eq!(exited.len(), 4, "{exited:?}");
    assert!(exited.iter().all(|e| e["code"] == 0), "{exited:?}");
    let left = survivors(&h.marker);
    assert!(left.is_empty(), "orphans: {}", describe(&left));
}
