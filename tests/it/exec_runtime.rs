//! Runtime behaviours beyond the per-guarantee tests (tests/up_*.rs):
//! handler steps, reload, `finish` and `once` exit statuses, timestamps.
//! Each test runs the real `flowrun up` on a real process tree, with a
//! marker environment variable so that a failing test still kills every
//! process it started.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MARKER: &str = "FLOWRUN_EXEC_TEST_MARKER";
static N: AtomicUsize = AtomicUsize::new(0);

struct Run {
    child: Child,
    dir: PathBuf,
    marker: String,
}

fn start(name: &str, topology: &str, args: &[&str]) -> Run {
    let marker = format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let dir = std::env::temp_dir().join(format!("flowrun-exec-{marker}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("t.pf");
    std::fs::write(&file, topology).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_flowrun"))
        .arg("up")
        .arg(&file)
        .args(["--log-format", "json"])
        .args(args)
        .env(MARKER, &marker)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("out")).unwrap())
        .stderr(std::fs::File::create(dir.join("err")).unwrap())
        .spawn()
        .unwrap();
    Run { child, dir, marker }
}

impl Run {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("out")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("err")).unwrap_or_default()
    }

    fn events(&self) -> Vec<Value> {
        self.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// Wait until `pred` holds over the events (10 s at most).
    fn wait_until(&self, what: &str, pred: impl Fn(&[Value]) -> bool) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if pred(&self.events()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out waiting for {what}; stderr:\n{}", self.stderr());
    }

    fn wait_count(&self, name: &str, n: usize) {
        self.wait_until(&format!("{n} × {name}"), |evs| {
            evs.iter().filter(|e| e["event"] == name).count() >= n
        });
    }

    fn exit_code(&mut self) -> i32 {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "flowrun did not exit; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Processes (other than flowrun itself) that carry this test's marker.
    fn survivors(&self) -> Vec<i32> {
        let needle = format!("{MARKER}={}", self.marker);
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid == self.pid() {
                continue;
            }
            if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
                if env.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
                    out.push(pid);
                }
            }
        }
        out
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.survivors() {
            // SAFETY: a process carrying this test's unique marker.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn of(evs: &[Value], name: &str, process: &str) -> usize {
    evs.iter()
        .filter(|e| e["event"] == name && e["process"] == process)
        .count()
}

#[test]
fn forward_wait_restart_keeps_the_restart_policy_aside() {
    let mut run = start(
        "fwd",
        r#"topology fwd {
  on SIGUSR2 {
    forward SIGTERM to w
    wait w within 5s
    restart w
  }
  group w {
    run "sleep 600"
    processes 2
  }
}
"#,
        &[],
    );
    run.wait_count("started", 2);
    run.signal(libc::SIGUSR2);
    run.wait_count("started", 4);
    let evs = run.events();
    let exited = run.named("exited");
    assert_eq!(exited.len(), 2, "{exited:?}");
    assert!(
        exited
            .iter()
            .all(|e| e["signal"] == "SIGTERM" && e["expected"] == true),
        "{exited:?}"
    );
    assert!(
        run.named("restarting").is_empty(),
        "the policy must stand aside"
    );
    assert_eq!(of(&evs, "started", "w.0"), 2);
    run.signal(libc::SIGTERM);
    assert_eq!(run.exit_code(), 0, "{}", run.stderr());
    assert!(run.survivors().is_empty());
}

#[test]
fn drain_group_stays_down_while_the_rest_runs() {
    let mut run = start(
        "draing",
        r#"topology dg {
  on SIGUSR1 drain w
  group w {
    run "sleep 600"
    processes 2
  }
  group other {
    run "sleep 600"
  }
}
"#,
        &[],
    );
    run.wait_count("started", 3);
    run.signal(libc::SIGUSR1);
    run.wait_count("stopped", 2);
    std::thread::sleep(Duration::from_millis(400));
    let evs = run.events();
    assert_eq!(run.named("started").len(), 3, "w must stay down");
    assert!(run.named("draining").is_empty());
    assert_eq!(of(&evs, "stopped", "other.0"), 0);
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "up must keep running"
    );
    run.signal(libc::SIGTERM);
    assert_eq!(run.exit_code(), 0, "{}", run.stderr());
}

#[test]
fn rolling_restart_goes_one_process_at_a_time() {
    let mut run = start(
        "rolling",
        r#"topology roll {
  on SIGUSR1 restart w rolling
  group w {
    sh "sleep 0.2; echo up; exec sleep 600"
    processes 2
    ready when log "^up$"
  }
}
"#,
        &[],
    );
    run.wait_count("ready", 2);
    run.signal(libc::SIGUSR1);
    run.wait_count("ready", 4);
    let seq: Vec<String> = run
        .events()
        .iter()
        .skip_while(|e| e["event"] != "signal")
        .filter(|e| ["stopping", "started", "ready"].contains(&e["event"].as_str().unwrap_or("")))
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap(),
                e["process"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        seq,
        [
            "stopping w.0",
            "started w.0",
            "ready w.0",
            "stopping w.1",
            "started w.1",
            "ready w.1"
        ]
    );
    run.signal(libc::SIGINT);
    assert_eq!(run.exit_code(), 0, "{}", run.stderr());
}

#[test]
fn reload_restarts_only_changed_groups_and_rejects_bad_files() {
    let v1 = r#"topology rl {
  group a {
    run "sleep 600"
    processes 2
  }
  group b {
    sh "echo b v1; exec sleep 600"
    after a started
  }
}
"#;
    let mut run = start("reload", v1, &[]);
    run.wait_count("started", 3);
    let file = run.dir.join("t.pf");
    std::fs::write(&file, "topology broken {\n  group {\n}\n").unwrap();
    run.signal(libc::SIGHUP);
    run.wait_count("reload-rejected", 1);
    let rej = &run.named("reload-rejected")[0];
    let errors = rej["errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "{rej}");
    assert!(errors[0].as_str().unwrap().contains("error[FR"), "{rej}");
    std::fs::write(&file, v1.replace("b v1", "b v2")).unwrap();
    run.signal(libc::SIGHUP);
    run.wait_count("reloaded", 1);
    run.wait_count("started", 4);
    let reloaded = &run.named("reloaded")[0];
    assert_eq!(reloaded["changed"], serde_json::json!(["b"]));
    let evs = run.events();
    assert_eq!(of(&evs, "started", "a.0"), 1, "a is unchanged");
    assert_eq!(of(&evs, "started", "b.0"), 2);
    run.wait_until("b v2 output", |_| run.stdout().contains("b.0 | b v2"));
    run.signal(libc::SIGTERM);
    assert_eq!(run.exit_code(), 0, "{}", run.stderr());
}

#[test]
fn finish_group_status_is_the_exit_status() {
    let mut run = start(
        "finish",
        r#"topology fin {
  finish when t exits
  group svc {
    run "sleep 600"
  }
  group t {
    sh "exit 7"
    once
    after svc started
  }
}
"#,
        &[],
    );
    assert_eq!(run.exit_code(), 7, "{}", run.stderr());
    let d = run.named("draining");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["reason"], "finish");
    assert_eq!(run.named("exit")[0]["code"], 7);
}

#[test]
fn failed_once_group_without_finish_exits_1() {
    let mut run = start(
        "oncefail",
        r#"topology of {
  group m {
    sh "exit 3"
    once
  }
  group api {
    run "sleep 600"
    after m succeeded
  }
}
"#,
        &[],
    );
    assert_eq!(run.exit_code(), 1, "{}", run.stderr());
    assert_eq!(run.named("failed").len(), 1);
    assert!(
        run.named("started").iter().all(|e| e["group"] != "api"),
        "api must not start after m failed"
    );
}

#[test]
fn successful_once_groups_end_the_topology_with_0() {
    let mut run = start(
        "oncedone",
        r#"topology od {
  group m {
    sh "echo migrated"
    once
  }
  group job {
    sh "echo job done"
    once
    after m succeeded
  }
}
"#,
        &["--timestamps"],
    );
    assert_eq!(run.exit_code(), 0, "{}", run.stderr());
    let out = run.stdout();
    let re = regex::Regex::new(r"^\d\d:\d\d:\d\d\.\d{3} job\.0 \| job done$").unwrap();
    assert!(out.lines().any(|l| re.is_match(l)), "{out}");
}

#[test]
fn kill_step_kills_everything_and_exits_1() {
    let mut run = start(
        "killstep",
        r#"topology k {
  on SIGUSR1 kill
  on SIGUSR2 ignore
  group w {
    sh "trap '' TERM; sleep 600"
    processes 2
    stop SIGTERM drain 30s
  }
}
"#,
        &[],
    );
    run.wait_count("started", 2);
    run.signal(libc::SIGUSR2);
    run.wait_count("signal", 1);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "ignore must ignore"
    );
    let t = Instant::now();
    run.signal(libc::SIGUSR1);
    assert_eq!(run.exit_code(), 1, "{}", run.stderr());
    assert!(t.elapsed() < Duration::from_secs(5));
    let killed = run.named("killed");
    assert_eq!(killed.len(), 2, "{killed:?}");
    assert!(run.survivors().is_empty());
}

#[test]
fn a_program_that_cannot_start_fails_its_group_without_restarting() {
    for (name, group, want) in [
        (
            "noprog",
            "run \"flowrun-no-such-program\"",
            "cannot execute flowrun-no-such-program",
        ),
        (
            "nocwd",
            "run \"sleep 600\"\n    cwd \"no/such/dir\"",
            // The full path: the topology's directory joined with `cwd`.
            "/no/such/dir (No such file or directory",
        ),
    ] {
        let mut run = start(
            name,
            &format!("topology s {{\n  group a {{\n    {group}\n  }}\n}}\n"),
            &[],
        );
        assert_eq!(run.exit_code(), 1, "{}", run.stderr());
        let failed = run.named("failed");
        assert_eq!(failed.len(), 1, "{}", run.stderr());
        let reason = failed[0]["reason"].as_str().unwrap();
        assert!(reason.contains(want), "{reason}");
        assert!(run.named("restarting").is_empty(), "{}", run.stderr());
    }
}

#[test]
fn http_file_and_exec_ready_checks_gate_dependents() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut run = start(
        "readychecks",
        &format!(
            r#"topology rc {{
  finish when z exits
  group web {{
    run "python3 -m http.server {{port}} --bind 127.0.0.1"
    port {port}
    ready when http "http://127.0.0.1:{{port}}/" every 100ms within 20s
  }}
  group f {{
    sh "sleep 0.3; touch ready.flag; exec sleep 600"
    ready when file "ready.flag" every 50ms within 10s
  }}
  group e {{
    run "sleep 600"
    ready when exec "test -e ready.flag" every 50ms within 10s
  }}
  group z {{
    sh "echo all ready"
    once
    after web ready
    after f ready
    after e ready
  }}
}}
"#
        ),
        &[],
    );
    assert_eq!(run.exit_code(), 0, "{}", run.stderr());
    let evs = run.events();
    let pos = |name: &str, process: &str| {
        evs.iter()
            .position(|e| e["event"] == name && e["process"] == process)
            .unwrap_or_else(|| panic!("no {name} for {process}: {}", run.stderr()))
    };
    let z = pos("started", "z.0");
    for p in ["web.0", "f.0", "e.0"] {
        assert!(pos("ready", p) < z, "{p} must be ready before z starts");
    }
    // The file check cannot pass before the file exists (~0.3 s).
    let t = |i: usize| evs[i]["t"].as_f64().unwrap();
    assert!(t(pos("ready", "f.0")) - t(pos("started", "f.0")) >= 0.25);
    assert!(run.stdout().contains("z.0 | all ready"));
}
