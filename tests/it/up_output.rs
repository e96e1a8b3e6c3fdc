//! Guarantee: no lost or torn output. Every byte a child writes before it
//! exits appears in the runner's stdout, prefixed `group.index | `, whole
//! lines only; a final partial line is flushed with a newline, an over-long
//! line is split into 64 KiB pieces, and memory stays bounded.

use crate::support::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// Split the runner's stdout into (prefix, payload) per line.
fn relayed(stdout: &[u8]) -> Vec<(String, &[u8])> {
    stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let sep = l.windows(3).position(|w| w == b" | ").unwrap_or_else(|| {
                panic!(
                    "line without a prefix: {:?}",
                    String::from_utf8_lossy(&l[..l.len().min(200)])
                )
            });
            (
                String::from_utf8_lossy(&l[..sep]).into_owned(),
                &l[sep + 3..],
            )
        })
        .collect()
}

#[test]
fn four_probes_times_100k_lines_arrive_whole_once_and_in_order() {
    const N: usize = 100_000;
    let h = Harness::new("output-lines");
    let file = h.topology(
        r#"
topology chatty {
  group talk {
    run "@PROBE@ --lines 100000 --line-bytes 64 --prefix p{index} --exit 0"
    processes 4
    once
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let code = up.exit_code();
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    let out = up.stdout_bytes();
    let mut next: BTreeMap<String, usize> = BTreeMap::new();
    for (prefix, payload) in relayed(&out) {
        let idx: usize = prefix
            .strip_prefix("talk.")
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("unexpected prefix {prefix:?}"));
        let n = next.entry(prefix.clone()).or_insert(0);
        let mut want = format!("p{idx}:{:06}:", *n).into_bytes();
        want.resize(64, b'x');
        assert_eq!(
            payload,
            &want[..],
            "{prefix}: line {} torn, lost or out of order: got {:?}",
            *n,
            String::from_utf8_lossy(payload)
        );
        *n += 1;
    }
    let counts: Vec<(String, usize)> = next.into_iter().collect();
    assert_eq!(
        counts,
        (0..4).map(|i| (format!("talk.{i}"), N)).collect::<Vec<_>>(),
        "every probe's {N} lines, exactly once"
    );
}

#[test]
fn one_megabyte_written_while_the_runner_drains_arrives_intact() {
    const LEN: u64 = 1 << 20;
    let h = Harness::new("output-blob");
    // Probe i waits i × 100 ms, so the writes straddle the runner's SIGTERM:
    // it ignores its own SIGTERM, writes 1 MiB and exits 0 on its own.
    let file = h.topology(
        r#"
topology blob {
  shutdown within 60s
  group blob {
    run "@PROBE@ --ignore SIGTERM --delay-ms {index}00 --blob 1048576 --seed {index} --exit 0"
    processes 3
    stop SIGTERM drain 30s
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    started_and_armed(&mut up, 3);
    up.signal(libc::SIGTERM);
    let code = up.exit_code();
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    let out = up.stdout_bytes();
    let mut got: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (prefix, payload) in relayed(&out) {
        let v = got.entry(prefix).or_default();
        v.extend_from_slice(payload);
        v.push(b'\n');
    }
    for i in 0..3u64 {
        let want = blob(LEN, i);
        let key = format!("blob.{i}");
        let have = got.get(&key).map(|v| v.as_slice()).unwrap_or(&[]);
        assert!(
            have == want.as_slice(),
            "{key}: relayed {} bytes, want {} (first difference at byte {:?})",
            have.len(),
            want.len(),
            have.iter().zip(&want).position(|(a, b)| a != b)
        );
    }
}

#[test]
fn ten_megabyte_line_is_split_and_memory_stays_bounded() {
    // Not a multiple of 64 KiB: the last piece is a partial line that
    // only a flush at end of stream delivers.
    const LEN: usize = (10 << 20) + 1000;
    let h = Harness::new("output-long");
    let file = h.topology(
        r#"
topology long {
  group long {
    run "@PROBE@ --no-newline-bytes 10486760 --exit 0"
    once
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let runner = up.pid;
    let sampler = std::thread::spawn(move || {
        let mut peak_kb = 0u64;
        // A zombie's status has no Vm lines: the loop ends at exit.
        while let Some(v) = status_field(runner, "VmHWM") {
            let kb: u64 = v.trim_end_matches("kB").trim().parse().unwrap_or(0);
            peak_kb = peak_kb.max(kb);
            std::thread::sleep(Duration::from_millis(5));
        }
        peak_kb
    });
    let code = up.exit_code();
    let peak_kb = sampler.join().expect("sampler");
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    assert!(peak_kb > 0, "could not sample the runner's memory");
    eprintln!("measured: runner peak RSS {peak_kb} kB for a 10 MiB line");
    assert!(
        peak_kb < 64 * 1024,
        "runner peak RSS {} MiB for a 10 MiB line",
        peak_kb / 1024
    );
    let out = up.stdout_bytes();
    let mut all = Vec::with_capacity(LEN);
    let mut pieces = 0;
    for (prefix, payload) in relayed(&out) {
        assert_eq!(prefix, "long.0");
        assert!(
            payload.len() <= 64 * 1024,
            "a piece of {} bytes",
            payload.len()
        );
        all.extend_from_slice(payload);
        pieces += 1;
    }
    assert!(
        pieces >= 160,
        "10 MiB in {pieces} pieces of at most 64 KiB?"
    );
    assert_eq!(all.len(), LEN, "bytes relayed");
    let bad = all
        .iter()
        .enumerate()
        .position(|(i, &b)| b != b'a' + (i % 26) as u8);
    assert_eq!(bad, None, "content differs at byte {bad:?}");
}

/// Output still in the pipe when its writer exits is relayed: 40 probes
/// each put 60 KB in their pipe (it fits, so the write never blocks) and
/// exit at once, all racing the runner's exit handling.
#[test]
fn output_buffered_in_the_pipe_at_exit_is_not_lost() {
    const LEN: u64 = 60_000;
    let h = Harness::new("output-at-exit");
    let file = h.topology(
        r#"
topology burst {
  group burst {
    run "@PROBE@ --blob 60000 --seed {index} --exit 0"
    processes 40
    once
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    let code = up.exit_code();
    assert_eq!(code, 0, "stderr:\n{}", up.stderr_text());
    let out = up.stdout_bytes();
    let mut got: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (prefix, payload) in relayed(&out) {
        let v = got.entry(prefix).or_default();
        v.extend_from_slice(payload);
        v.push(b'\n');
    }
    for i in 0..40u64 {
        let key = format!("burst.{i}");
        let have = got.get(&key).map(|v| v.len()).unwrap_or(0);
        assert!(
            got.get(&key).map(|v| v.as_slice()) == Some(blob(LEN, i).as_slice()),
            "{key}: relayed {have} of {LEN} bytes"
        );
    }
}

/// When the runner's stdout goes away (`flowrun up … | head -1`), it keeps
/// supervising: restarts go on, a Ctrl+C still drains, nothing is orphaned.
#[test]
fn runner_keeps_supervising_after_its_stdout_closes() {
    let h = Harness::new("output-epipe");
    let file = h.topology(
        r#"
topology epipe {
  shutdown within 30s
  group chatty {
    run "@PROBE@ --lines 100000 --record @DIR@/chatty.rec"
  }
  group flaky {
    run "@PROBE@ --lines 10 --crash-after-ms 200"
    restart on-failure backoff 100ms..100ms limit 1000 per 60s
  }
}
"#,
    );
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 into a local array; both ends are owned right below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors, each owned exactly once.
    let (r, w) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    let file_s = file.to_string_lossy().into_owned();
    let mut up = h.spawn_with_stdout(
        &[FLOWRUN, "up", &file_s, "--log-format", "json"],
        Some(w.into()),
    );
    let mut first = [0u8; 64];
    let mut reader = r;
    std::io::Read::read(&mut reader, &mut first).expect("read the first output");
    drop(reader); // like `head -c 64` exiting
    let before = up.events_named("restarting").len();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        up.try_status().is_none(),
        "runner died: {}",
        up.stderr_text()
    );
    let after = up.events_named("restarting").len();
    assert!(
        after >= before + 3,
        "supervision stopped after EPIPE: {before} → {after} restarts"
    );
    up.signal_group(libc::SIGINT);
    let code = up.exit_code();
    let stderr = up.stderr_text();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, 0, "stderr:\n{stderr}");
    assert_eq!(read_records(&h.path("chatty.rec")).len(), 1);
    assert!(survivors(&h.marker).is_empty());
}
