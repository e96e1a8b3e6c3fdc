//! Guarantee: `log file` loses nothing and tears nothing. Every line a
//! process writes is in its log file, or in one of the rotated `x.log.N`,
//! exactly once, whole and in order; no file is over the limit; at most
//! `keep` old files exist; a restarted process appends to its file. The
//! terminal still gets every line.

use crate::support::*;
use std::path::{Path, PathBuf};

/// The files of one log path, oldest first: `x.log.N` … `x.log.1`, `x.log`.
fn rotation(path: &Path) -> Vec<PathBuf> {
    let dir = path.parent().expect("a log path has a directory");
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut old: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .expect("the log directory exists")
        .filter_map(|e| {
            let p = e.ok()?.path();
            let f = p.file_name()?.to_string_lossy().into_owned();
            let n = f.strip_prefix(&format!("{name}."))?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    old.sort_by_key(|o| std::cmp::Reverse(o.0));
    let mut files: Vec<PathBuf> = old.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    files
}

/// The probe's line `n` of process `idx`: `p{idx}:{n:06}:` padded with `x`.
fn probe_line(idx: usize, n: usize, bytes: usize) -> Vec<u8> {
    let mut want = format!("p{idx}:{n:06}:").into_bytes();
    want.resize(bytes, b'x');
    want
}

/// Every file whole (ends with `\n`) and within `limit`; the lines of all
/// of them in order.
fn read_rotation(path: &Path, limit: u64) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for f in rotation(path) {
        let data = std::fs::read(&f).unwrap();
        assert!(
            data.len() as u64 <= limit,
            "{} holds {} bytes, over the {limit}-byte limit",
            f.display(),
            data.len()
        );
        if !data.is_empty() {
            assert_eq!(
                data.last(),
                Some(&b'\n'),
                "{} ends inside a line",
                f.display()
            );
        }
        lines.extend(
            data.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    lines
}

#[test]
fn every_line_arrives_once_whole_and_in_order_across_rotated_files() {
    const N: usize = 50_000;
    const BYTES: usize = 64;
    const LIMIT: u64 = 64 * 1024;
    let h = Harness::new("logfile-lossless");
    // 50,000 × 65 bytes = 3.1 MiB per process: 49 full files and a current one.
    let file = h.topology(
        r#"
topology chatty {
  log file "logs/{group}.{index}.log" rotate 64KB keep 60
  group talk {
    run "@PROBE@ --lines 50000 --line-bytes 64 --prefix p{index} --exit 0"
    processes 3
    once
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let code = up.exit_code();
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    for idx in 0..3 {
        let path = h.path(&format!("logs/talk.{idx}.log"));
        let files = rotation(&path);
        assert!(
            files.len() > 40 && files.len() <= 61,
            "talk.{idx}: {} files (want the current one and at most 60 old ones)",
            files.len()
        );
        let lines = read_rotation(&path, LIMIT);
        assert_eq!(lines.len(), N, "talk.{idx}: every line exactly once");
        for (n, l) in lines.iter().enumerate() {
            assert!(
                l == &probe_line(idx, n, BYTES),
                "talk.{idx}: line {n} torn, lost or out of order: {:?}",
                String::from_utf8_lossy(l)
            );
        }
    }
    // The terminal still has every line.
    let out = up.stdout_bytes();
    let relayed = out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    assert_eq!(relayed, 3 * N);
}

#[test]
fn keep_caps_the_old_files_and_the_newest_lines_survive() {
    const N: usize = 20_000;
    const BYTES: usize = 100;
    const LIMIT: u64 = 4 * 1024;
    let h = Harness::new("logfile-cap");
    let file = h.topology(
        r#"
topology capped {
  group talk {
    run "@PROBE@ --lines 20000 --line-bytes 100 --prefix p0 --exit 0"
    once
    log file "@DIR@/var/log/{group}.log" rotate 4KB keep 3
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let code = up.exit_code();
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    let path = h.path("var/log/talk.log");
    let files = rotation(&path);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["talk.log.3", "talk.log.2", "talk.log.1", "talk.log"],
        "three old files and the current one"
    );
    // What is left is the tail of the output: contiguous, ending at the last line.
    let lines = read_rotation(&path, LIMIT);
    let first = N - lines.len();
    for (k, l) in lines.iter().enumerate() {
        assert!(
            l == &probe_line(0, first + k, BYTES),
            "line {} torn or out of order: {:?}",
            first + k,
            String::from_utf8_lossy(l)
        );
    }
    // 40 lines of 101 bytes fill a 4 KiB file: the three old ones are full.
    assert!(lines.len() >= 3 * 40, "{} lines kept", lines.len());
}

#[test]
fn a_restarted_process_appends_to_its_file() {
    let h = Harness::new("logfile-restart");
    // Three runs (the first and two restarts), then the group fails.
    let file = h.topology(
        r#"
topology again {
  group flaky {
    run "@PROBE@ --lines 1000 --line-bytes 32 --prefix p0 --exit 1"
    restart on-failure backoff 10ms..10ms limit 2 per 60s
    log file "logs/flaky.log" rotate 1MB
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let code = up.exit_code();
    assert_eq!(code, 1, "stderr:\n{}", up.stderr_text());
    let lines = read_rotation(&h.path("logs/flaky.log"), 1 << 20);
    assert_eq!(lines.len(), 3000, "three runs of 1,000 lines");
    for (k, l) in lines.iter().enumerate() {
        assert!(
            l == &probe_line(0, k % 1000, 32),
            "line {k}: {:?}",
            String::from_utf8_lossy(l)
        );
    }
}

#[test]
fn a_log_path_that_cannot_be_written_stops_up_before_anything_starts() {
    let h = Harness::new("logfile-unwritable");
    // A regular file where the log directory should be: not even root can
    // create a directory there.
    std::fs::write(h.path("logs"), b"not a directory").unwrap();
    let file = h.topology(
        r#"
topology blocked {
  group talk {
    run "@PROBE@ --lines 1 --prefix started"
    log file "logs/talk.log"
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let code = up.exit_code();
    let err = up.stderr_text();
    assert_eq!(code, 1, "stderr:\n{err}");
    assert!(
        err.contains("log file") && err.contains("talk.0"),
        "one line naming the path and the process:\n{err}"
    );
    assert!(!err.contains("starting"), "nothing started:\n{err}");
    assert!(!up.stdout_text().contains("started"), "the probe never ran");
}
