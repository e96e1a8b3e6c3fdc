//! Every control command on a real running topology: `flowrun up` runs
//! `flowrun-probe` processes, and the real `flowrun` clients (or raw
//! sockets, where the bytes matter) act on it through its control socket
//! (docs/control.md). The harness kills the runner and every process of a
//! test when it ends, also when it fails.

use crate::support::{
    fuzz, is_dead, read_records, started_and_armed, survivors, wait_armed, wait_until, Harness, Up,
    EVENT_TIMEOUT, FLOWRUN, MARKER_VAR,
};
use flowrun::control::client::Client;
use flowrun::control::protocol::{Request, ServerMsg, Target};
use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
static N: AtomicUsize = AtomicUsize::new(0);

/// A running topology and the means to talk to it.
struct Ctl {
    h: Harness,
    file: PathBuf,
    up: Up,
}

impl Ctl {
    /// Write the topology, start `up` and wait until its socket answers.
    fn start(name: &str, text: &str) -> Ctl {
        Ctl::start_in(Harness::new(name), text)
    }

    fn start_in(h: Harness, text: &str) -> Ctl {
        let file = h.topology(text);
        let up = h.up(&file, &[]);
        let mut c = Ctl { h, file, up };
        let ok = wait_until(WAIT, Duration::from_millis(50), || {
            c.up.try_status().is_none() && c.run(&["ps", c.f()]).0 == 0
        });
        assert!(ok, "the runner never served ps:\n{}", c.up.stderr_text());
        c
    }

    fn f(&self) -> &str {
        self.file.to_str().unwrap()
    }

    fn xdg(&self) -> PathBuf {
        self.h.path("xdg")
    }

    /// The runner's socket (the only `.sock` in the runtime directory).
    fn socket(&self) -> PathBuf {
        fs::read_dir(self.xdg().join("flowrun"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "sock"))
            .expect("a control socket")
    }

    /// `[wrap…] flowrun ARGS…` with the test's runtime directory; stdout
    /// to `stdout` or a file.
    fn cli_with(&self, wrap: &[&str], args: &[&str], stdout: Option<Stdio>) -> Up {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let out = self.h.path(&format!("cli-out-{n}.txt"));
        let err = self.h.path(&format!("cli-err-{n}.txt"));
        let mut argv: Vec<&str> = wrap.to_vec();
        argv.push(FLOWRUN);
        argv.extend_from_slice(args);
        let stdout = stdout.unwrap_or_else(|| fs::File::create(&out).unwrap().into());
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .env(MARKER_VAR, &self.h.marker)
            .env("XDG_RUNTIME_DIR", self.xdg())
            .env("NO_COLOR", "1")
            .current_dir(&self.h.dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .expect("run flowrun");
        Up {
            pid: child.id() as i32,
            child,
            stdout: out,
            stderr: err,
            started: Instant::now(),
            status: None,
        }
    }

    fn cli(&self, args: &[&str]) -> Up {
        self.cli_with(&[], args, None)
    }

    /// Run to completion: (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_as(&[], args)
    }

    fn run_as(&self, wrap: &[&str], args: &[&str]) -> (i32, String, String) {
        let mut c = self.cli_with(wrap, args, None);
        let code = c.wait_exit(WAIT).code().unwrap_or(-1);
        (code, c.stdout_text(), c.stderr_text())
    }

    /// Run and insist on exit 0; stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "flowrun {args:?}: {out}{err}");
        out
    }

    /// `ps --json`: the reply object.
    fn ps(&self) -> Value {
        let out = self.ok(&["ps", self.f(), "--json"]);
        let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v["type"], "reply", "{v}");
        v["reply"].clone()
    }

    /// `ps --json` processes of `group`, by index.
    fn procs(&self, group: &str) -> Vec<Value> {
        let mut ps: Vec<Value> = self.ps()["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["group"] == group)
            .cloned()
            .collect();
        ps.sort_by_key(|p| p["index"].as_u64());
        ps
    }

    fn pid_of(&self, group: &str, index: u64) -> Option<i32> {
        self.procs(group)
            .iter()
            .find(|p| p["index"] == index)
            .and_then(|p| p["pid"].as_i64())
            .map(|p| p as i32)
    }

    fn group_summary(&self, group: &str) -> Value {
        self.ps()["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == group)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Wait until every process of the groups is ready (per `ps`).
    fn wait_ready(&self, groups: &[&str]) {
        let mut args = vec!["wait", self.f(), "--timeout", "60s", "--ready"];
        args.extend_from_slice(groups);
        self.ok(&args);
    }
}

fn events_of<'a>(evs: &'a [Value], name: &str, process: &str) -> Vec<&'a Value> {
    evs.iter()
        .filter(|e| e["event"] == name && e["process"] == process)
        .collect()
}

fn environ_var(pid: i32, var: &str) -> Option<String> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(&format!("{var}=")).map(|v| v.to_string())
    })
}

/// `n` consecutive ports that can all be bound now.
fn free_range(n: u16) -> u16 {
    let seed =
        std::process::id() as u16 ^ (N.fetch_add(1, Ordering::SeqCst) as u16).wrapping_mul(7919);
    for k in 0..500u16 {
        let base = 20_000 + (seed.wrapping_add(k.wrapping_mul(97)) % 30_000);
        let held: Vec<_> = (0..n)
            .map_while(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == n as usize {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

#[test]
fn ps_shows_every_field_in_text_and_json() {
    let c = Ctl::start(
        "ctlup-ps",
        r#"
topology t {
  group web {
    run "@PROBE@ --log-ready up"
    processes 2
    ready when log "up" every 50ms within 30s
  }
  group crashy {
    run "@PROBE@ --crash-after-ms 200"
    restart always backoff 100ms..200ms
  }
}
"#,
    );
    c.wait_ready(&["web"]);
    // The crashing process has restarted, with its last exit known.
    let ok = wait_until(WAIT, Duration::from_millis(100), || {
        c.procs("crashy")[0]["restarts"].as_u64() >= Some(2)
    });
    assert!(ok, "{}", c.ps());
    let started = c.up.started_pids();
    let web = c.procs("web");
    assert_eq!(web.len(), 2);
    for (i, p) in web.iter().enumerate() {
        let pid = p["pid"].as_i64().unwrap() as i32;
        assert!(
            started.contains(&(format!("web.{i}"), pid)),
            "{p} vs {started:?}"
        );
        assert_eq!(p["state"], "ready", "{p}");
        assert_eq!(p["restarts"], 0, "{p}");
        assert_eq!(p["attempt"], 0, "{p}");
        assert!(p["uptime_ms"].is_u64(), "{p}");
        assert!(p["last_exit"].is_null(), "{p}");
        assert!(p["cpu_ms"].is_u64(), "{p}");
    }
    let crashy = &c.procs("crashy")[0];
    assert_eq!(crashy["last_exit"]["code"], 1, "{crashy}");
    assert!(crashy["last_exit"]["signal"].is_null(), "{crashy}");
    assert!(crashy["attempt"].is_u64(), "{crashy}");
    let g = c.group_summary("web");
    assert_eq!(
        (g["processes"].as_u64(), g["ready"].as_u64()),
        (Some(2), Some(2)),
        "{g}"
    );
    assert_eq!(g["held"], false, "{g}");
    // The human table: a header, one line per process, a group summary.
    let out = c.ok(&["ps", c.f()]);
    let header = out.lines().next().unwrap();
    for col in [
        "PROCESS",
        "PID",
        "STATE",
        "RESTARTS",
        "UPTIME",
        "LAST EXIT",
        "CPU",
    ] {
        assert!(header.contains(col), "{out}");
    }
    for (i, p) in web.iter().enumerate() {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("web.{i} ")))
            .unwrap_or_else(|| panic!("no web.{i} line:\n{out}"));
        assert!(line.contains(&p["pid"].to_string()), "{line}");
        assert!(line.contains("ready"), "{line}");
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("crashy.0 ") && l.contains("exit 1")),
        "{out}"
    );
    assert!(out.contains("web: 2/2 up, 2 ready"), "{out}");
}

#[test]
fn a_rolling_restart_keeps_all_but_one_ready() {
    const N_WEB: usize = 3;
    let c = Ctl::start(
        "ctlup-rolling",
        r#"
topology t {
  group web {
    run "@PROBE@ --delay-ms 300 --log-ready up"
    processes 3
    ready when log "up" every 50ms within 30s
  }
}
"#,
    );
    c.wait_ready(&["web"]);
    let before: Vec<i32> = (0..N_WEB as u64)
        .map(|i| c.pid_of("web", i).unwrap())
        .collect();
    let mark = c.up.events().len();
    let mut restart = c.cli(&["restart", c.f(), "web", "--rolling"]);
    // Sample `ps --json` while it rolls.
    let mut samples = Vec::new();
    while restart.try_status().is_none() {
        let ready = c
            .procs("web")
            .iter()
            .filter(|p| p["state"] == "ready")
            .count();
        samples.push(ready);
        assert!(
            restart.started.elapsed() < WAIT * 2,
            "the rolling restart hung"
        );
    }
    assert_eq!(
        restart.wait_exit(WAIT).code(),
        Some(0),
        "{}",
        restart.stderr_text()
    );
    let out = restart.stdout_text();
    assert!(out.starts_with("restarted "), "{out}");
    assert!(
        samples.iter().all(|&r| r >= N_WEB - 1),
        "ready counts seen by ps: {samples:?}"
    );
    // The events tell the same: replay them from the moment of the request.
    let evs = c.up.events();
    let mut ready: std::collections::BTreeSet<String> =
        (0..N_WEB).map(|i| format!("web.{i}")).collect();
    let mut least = N_WEB;
    for e in &evs[mark..] {
        let p = e["process"].as_str().unwrap_or("").to_string();
        match e["event"].as_str() {
            Some("stopping") | Some("exited") | Some("started") => {
                ready.remove(&p);
            }
            Some("ready") => {
                ready.insert(p);
            }
            _ => {}
        }
        least = least.min(ready.len());
    }
    assert!(least >= N_WEB - 1, "at some point only {least} were ready");
    c.wait_ready(&["web"]);
    for (i, old) in before.iter().enumerate() {
        let new = c.pid_of("web", i as u64).unwrap();
        assert_ne!(new, *old, "web.{i} was restarted");
        assert!(is_dead(*old));
        assert_eq!(
            events_of(&evs[mark..], "started", &format!("web.{i}")).len(),
            1
        );
    }
}

#[test]
fn scale_up_and_down_with_ports_and_refuse_a_count_that_breaks_a_rule() {
    let base = free_range(4);
    let text = r#"
topology t {
  group web {
    run "@PROBE@ --record @DIR@/web.rec --listen-tcp {port}"
    processes 2
    port BASE
    ready when tcp "127.0.0.1:{port}" every 50ms within 30s
  }
  group other {
    run "@PROBE@"
    port OTHER
  }
  group high {
    run "@PROBE@"
    port 65530
  }
}
"#
    .replace("OTHER", &(base + 10).to_string())
    .replace("BASE", &base.to_string());
    let c = Ctl::start("ctlup-scale", &text);
    c.wait_ready(&["web"]);
    let first: Vec<i32> = (0..2).map(|i| c.pid_of("web", i).unwrap()).collect();
    // Up: the new processes get the next ports.
    let out = c.ok(&["scale", c.f(), "web=4"]);
    assert_eq!(out.trim(), "scaled web.2 web.3", "{out}");
    c.wait_ready(&["web"]);
    let web = c.procs("web");
    assert_eq!(web.len(), 4, "{web:?}");
    for i in 0..4u16 {
        let pid = web[i as usize]["pid"].as_i64().unwrap() as i32;
        assert_eq!(
            environ_var(pid, "FLOWRUN_PORT"),
            Some((base + i).to_string()),
            "web.{i}"
        );
        assert!(std::net::TcpStream::connect(("127.0.0.1", base + i)).is_ok());
    }
    assert_eq!(
        &[web[0]["pid"].as_i64(), web[1]["pid"].as_i64()],
        &[Some(first[0] as i64), Some(first[1] as i64)]
    );
    let gone: Vec<i32> = (2..4)
        .map(|i| web[i]["pid"].as_i64().unwrap() as i32)
        .collect();
    wait_armed(&gone);
    // Down: the highest indexes stop with their ladder and are removed.
    let out = c.ok(&["scale", c.f(), "web=2"]);
    assert!(out.starts_with("scaled"), "{out}");
    for &p in &gone {
        assert!(wait_until(WAIT, Duration::from_millis(20), || is_dead(p)));
    }
    let recs = read_records(&c.h.path("web.rec"));
    for &p in &gone {
        assert!(
            recs.iter().any(|r| r.pid == p && r.sig == "SIGTERM"),
            "{p} got its SIGTERM: {recs:?}"
        );
    }
    assert!(recs.iter().all(|r| !first.contains(&r.pid)), "{recs:?}");
    let web = c.procs("web");
    assert_eq!(web.len(), 2, "{web:?}");
    assert_eq!(c.pid_of("web", 0), Some(first[0]));
    assert_eq!(c.pid_of("web", 1), Some(first[1]));
    // Refused: ranges that overlap another group's, or run past 65535.
    let ps_before = c.procs("web").len() + c.procs("high").len();
    for (arg, code) in [("web=11", "FR204"), ("high=10", "FR104")] {
        let (status, out, err) = c.run(&["scale", c.f(), arg]);
        assert_eq!(status, 1, "{arg}: {out}{err}");
        assert!(err.contains(code), "{arg}: the finding is given: {err}");
        assert!(out.is_empty(), "{out}");
    }
    assert!(
        c.run(&["scale", c.f(), "web=11"]).2.contains("overlap"),
        "the overlap is named"
    );
    assert_eq!(c.procs("web").len() + c.procs("high").len(), ps_before);
    assert_eq!(c.pid_of("web", 0), Some(first[0]));
    assert_eq!(c.pid_of("web", 1), Some(first[1]));
}

#[test]
fn stop_holds_a_group_and_its_dependents_and_start_brings_them_back_in_order() {
    let mut c = Ctl::start(
        "ctlup-stopstart",
        r#"
topology t {
  group db {
    run "@PROBE@ --record @DIR@/db.rec --record-exit --delay-ms 200 --log-ready ok"
    ready when log "ok" every 50ms within 30s
  }
  group api {
    run "@PROBE@ --record @DIR@/api.rec --record-exit"
    after db ready
  }
  group worker {
    run "@PROBE@ --record @DIR@/worker.rec --record-exit"
    after api started
  }
  group other {
    run "@PROBE@"
  }
}
"#,
    );
    c.wait_ready(&["db", "api", "worker", "other"]);
    let pids: Vec<i32> = ["db", "api", "worker"]
        .iter()
        .map(|g| c.pid_of(g, 0).unwrap())
        .collect();
    wait_armed(&pids);
    let other = c.pid_of("other", 0).unwrap();
    let out = c.ok(&["stop", c.f(), "db"]);
    assert!(out.starts_with("stopped"), "{out}");
    for g in ["db", "api", "worker"] {
        assert!(out.contains(&format!("{g}.0")), "{out}");
    }
    // Each went through its ladder, dependents first.
    let exit_at = |g: &str| {
        let recs = fs::read_to_string(c.h.path(&format!("{g}.rec"))).unwrap_or_default();
        assert!(recs.contains("SIGTERM"), "{g}: {recs}");
        crate::support::exit_record(&c.h.path(&format!("{g}.rec")))
            .unwrap_or_else(|| panic!("{g} recorded no exit: {recs}"))
            .ns
    };
    let (db, api, worker) = (exit_at("db"), exit_at("api"), exit_at("worker"));
    assert!(
        worker <= api && api <= db,
        "worker {worker}, api {api}, db {db}"
    );
    for &p in &pids {
        assert!(wait_until(WAIT, Duration::from_millis(20), || is_dead(p)));
    }
    // They stay stopped: nothing restarts them.
    std::thread::sleep(Duration::from_secs(1));
    let text = c.ok(&["ps", c.f()]);
    for g in ["db", "api", "worker"] {
        let p = &c.procs(g)[0];
        assert_eq!(p["state"], "stopped", "{p}");
        let s = c.group_summary(g);
        assert_eq!(s["held"], true, "{s}");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{g}:")) && l.contains("held by `flowrun stop`")),
            "{g}:\n{text}"
        );
    }
    assert_eq!(c.pid_of("other", 0), Some(other), "other is untouched");
    let mark = c.up.events().len();
    // Start: db, then what it held, with their `after` conditions.
    let out = c.ok(&["start", c.f(), "db"]);
    assert!(out.starts_with("started"), "{out}");
    c.wait_ready(&["db", "api", "worker"]);
    let evs = c.up.events();
    let evs = &evs[mark..];
    let at = |name: &str, p: &str| {
        crate::support::t(
            events_of(evs, name, p)
                .first()
                .unwrap_or_else(|| panic!("no {name} of {p} after start:\n{}", c.up.stderr_text())),
        )
    };
    assert!(at("ready", "db.0") <= at("started", "api.0"));
    assert!(at("started", "api.0") <= at("started", "worker.0"));
    for g in ["db", "api", "worker"] {
        assert_eq!(c.group_summary(g)["held"], false);
        assert!(c.pid_of(g, 0).is_some());
    }
    c.up.wait_for("ready");
}

/// The test's end of a FIFO that `cat` relays as a process's output.
fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

#[test]
fn logs_follow_loses_nothing_while_a_slow_reader_is_told_what_it_missed() {
    const LINES: usize = 1_000_000;
    const WINDOW: usize = 1_000;
    let h = Harness::new("ctlup-logs-1m");
    let fifo = h.path("fifo");
    mkfifo(&fifo);
    let c = Ctl::start_in(
        h,
        r#"
topology t {
  group gen {
    run "cat @DIR@/fifo"
    restart never
  }
}
"#,
    );
    // The slow reader: `flowrun logs -f`, read a little at a time.
    let mut slow = c.cli_with(&[], &["logs", c.f(), "gen.0", "-f"], Some(Stdio::piped()));
    let mut slow_out = BufReader::new(slow.child.stdout.take().unwrap());
    // The fast reader: the library client, checking every line.
    let (mut fast, _) = Client::connect(&c.socket()).expect("connect");
    fast.start(Request::Logs {
        targets: vec![Target::parse("gen.0").unwrap()],
        tail: None,
        since_ms: None,
        follow: true,
    })
    .unwrap();
    let read = Arc::new(AtomicUsize::new(0));
    let reader = {
        let read = read.clone();
        std::thread::spawn(move || {
            let mut next = 0usize;
            let mut last_seq = None;
            while next < LINES {
                match fast.recv().unwrap() {
                    ServerMsg::Log { seq, line, .. } => {
                        assert_eq!(line, format!("L{next:07}"), "the fast reader lost nothing");
                        if let Some(s) = last_seq {
                            assert_eq!(seq, s + 1);
                        }
                        last_seq = Some(seq);
                        next += 1;
                        read.store(next, Ordering::SeqCst);
                    }
                    other => panic!("the fast reader got {other:?}"),
                }
            }
            next
        })
    };
    // A second fast reader: `flowrun logs -f` itself, read at once.
    let mut cli = c.cli_with(&[], &["logs", c.f(), "gen.0", "-f"], Some(Stdio::piped()));
    let cli_out = BufReader::new(cli.child.stdout.take().unwrap());
    let cli_read = Arc::new(AtomicUsize::new(0));
    let cli_reader = {
        let cli_read = cli_read.clone();
        std::thread::spawn(move || {
            let mut next = 0usize;
            for l in cli_out.lines() {
                let l = l.unwrap();
                assert_eq!(l, format!("gen.0 | L{next:07}"), "logs -f lost nothing");
                next += 1;
                cli_read.store(next, Ordering::SeqCst);
                if next == LINES {
                    break;
                }
            }
            next
        })
    };
    let both = || {
        read.load(Ordering::SeqCst)
            .min(cli_read.load(Ordering::SeqCst))
    };
    let mut w = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    // The first line reaches both readers before the rest is written.
    w.write_all(b"L0000000\n").unwrap();
    let mut line = String::new();
    slow_out.read_line(&mut line).unwrap();
    assert_eq!(line, "gen.0 | L0000000\n");
    assert!(wait_until(WAIT, Duration::from_millis(5), || both() == 1));
    // The writer keeps WINDOW lines ahead of the fast reader; the slow one
    // reads 4 KiB every 20 ms meanwhile, on its own thread.
    let slow_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow_thread = {
        let slow_done = slow_done.clone();
        std::thread::spawn(move || {
            let (mut lines, mut missed, mut markers) = (1usize, 0usize, 0usize);
            let mut last = 0usize;
            let mut buf = String::new();
            loop {
                if !slow_done.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                // About 4 KiB: 200 lines of 17 bytes.
                for _ in 0..200 {
                    buf.clear();
                    if slow_out.read_line(&mut buf).unwrap() == 0 {
                        return (lines, missed, markers);
                    }
                    let l = buf.trim_end();
                    if let Some(n) = l
                        .strip_prefix("flowrun | gen.0 missed ")
                        .and_then(|r| r.strip_suffix(" lines"))
                    {
                        missed += n.parse::<usize>().unwrap();
                        markers += 1;
                    } else {
                        let n: usize = l
                            .strip_prefix("gen.0 | L")
                            .unwrap_or_else(|| panic!("slow reader: {l}"))
                            .parse()
                            .unwrap();
                        assert!(n > last, "in order: {n} after {last}");
                        last = n;
                        lines += 1;
                    }
                    if lines + missed == LINES {
                        return (lines, missed, markers);
                    }
                }
            }
        })
    };
    let t = Instant::now();
    let mut written = 1;
    let mut chunk = Vec::new();
    while written < LINES {
        while written - both() > WINDOW {
            std::thread::sleep(Duration::from_micros(200));
            assert!(t.elapsed() < Duration::from_secs(600), "the writer stalled");
        }
        chunk.clear();
        let n = (WINDOW / 2).min(LINES - written);
        for i in written..written + n {
            writeln!(chunk, "L{i:07}").unwrap();
        }
        w.write_all(&chunk).unwrap();
        written += n;
    }
    assert_eq!(reader.join().unwrap(), LINES);
    assert_eq!(cli_reader.join().unwrap(), LINES);
    let _ = cli.child.kill();
    eprintln!("1,000,000 lines to the fast reader in {:?}", t.elapsed());
    slow_done.store(true, Ordering::SeqCst);
    let (lines, missed, markers) = slow_thread.join().unwrap();
    eprintln!("slow reader: {lines} lines, {missed} missed in {markers} markers");
    assert_eq!(lines + missed, LINES);
    assert!(markers >= 1 && missed > 0, "the slow reader fell behind");
    // The runner still serves, and its own output has every line.
    assert_eq!(c.run(&["ps", c.f()]).0, 0);
    let relayed = || {
        c.up.stdout_text()
            .lines()
            .filter(|l| l.contains(" L"))
            .count()
    };
    assert!(
        wait_until(WAIT, Duration::from_millis(200), || relayed() == LINES),
        "the runner's stdout has {} lines",
        relayed()
    );
    drop(w);
    let _ = slow.child.kill();
}

#[test]
fn logs_tail_and_since() {
    let c = Ctl::start(
        "ctlup-logs",
        r#"
topology t {
  group talk {
    sh "for i in 1 2 3 4 5 6 7 8 9 10; do echo early-$i; done; sleep 8; echo late; exec sleep 600"
  }
}
"#,
    );
    assert!(wait_until(WAIT, Duration::from_millis(50), || c
        .ok(&["logs", c.f(), "talk.0"])
        .contains("late")));
    let out = c.ok(&["logs", c.f(), "talk.0", "-n", "3"]);
    assert_eq!(out, "talk.0 | early-9\ntalk.0 | early-10\ntalk.0 | late\n");
    let out = c.ok(&["logs", c.f(), "talk", "--since", "4s"]);
    assert_eq!(out, "talk.0 | late\n");
    let out = c.ok(&["logs", c.f(), "--since", "1h"]);
    assert_eq!(out.lines().count(), 11, "{out}");
    let (code, _, err) = c.run(&["logs", c.f(), "nope.0"]);
    assert_ne!(code, 0);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn two_concurrent_restarts_are_two_orderly_restarts() {
    let mut c = Ctl::start(
        "ctlup-restart2",
        r#"
topology t {
  group web {
    run "@PROBE@ --record @DIR@/web.rec --linger-ms 100"
    processes 2
  }
}
"#,
    );
    started_and_armed(&mut c.up, 2);
    let a = c.cli(&["restart", c.f(), "web"]);
    let b = c.cli(&["restart", c.f(), "web"]);
    for mut r in [a, b] {
        assert_eq!(r.wait_exit(WAIT).code(), Some(0), "{}", r.stderr_text());
        assert_eq!(r.stdout_text().trim(), "restarted web.0 web.1");
    }
    c.up.wait_count("started", 6);
    let evs = c.up.events();
    for i in 0..2 {
        let p = format!("web.{i}");
        let started = events_of(&evs, "started", &p);
        assert_eq!(started.len(), 3, "{p}: twice restarted");
        // Never two ladders at once: at most one `stopping` per incarnation,
        // and each incarnation has exited before the next one starts.
        let mut live = 0;
        let mut stopping_in_life = 0;
        for e in evs.iter().filter(|e| e["process"] == p.as_str()) {
            match e["event"].as_str() {
                Some("started") => {
                    live += 1;
                    stopping_in_life = 0;
                    assert_eq!(live, 1, "{p}: two incarnations at once");
                }
                Some("stopping") => {
                    stopping_in_life += 1;
                    assert!(
                        stopping_in_life <= 1,
                        "{p}: two ladders for one incarnation"
                    );
                }
                Some("exited") => live -= 1,
                _ => {}
            }
        }
    }
    // Each of the first two incarnations was stopped, as expected, once.
    let exits: Vec<&Value> = evs.iter().filter(|e| e["event"] == "exited").collect();
    assert_eq!(exits.len(), 4, "{exits:?}");
    assert!(exits.iter().all(|e| e["expected"] == true), "{exits:?}");
    let mut pids: Vec<i64> = exits.iter().map(|e| e["pid"].as_i64().unwrap()).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 4, "{exits:?}");
}

#[test]
fn a_runtime_directory_that_is_not_ours_runs_the_topology_without_a_socket() {
    let h = Harness::new("ctlup-notours");
    let dir = h.path("xdg/flowrun");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let file = h.topology(
        r#"
topology t {
  group web {
    run "@PROBE@"
  }
}
"#,
    );
    let mut up = h.up(&file, &[]);
    up.wait_for("ready");
    let err = up.stderr_text();
    assert!(err.contains("no control socket for this run"), "{err}");
    let socks = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "sock"))
        .count();
    assert_eq!(socks, 0, "no socket in a directory others can write");
    up.signal_group(libc::SIGINT);
    assert_eq!(up.exit_code(), 0, "{}", up.stderr_text());
}

#[test]
fn a_stopped_runner_is_reported_not_waited_for_forever() {
    let c = Ctl::start(
        "ctlup-stopped",
        r#"
topology t {
  group web {
    run "@PROBE@"
  }
}
"#,
    );
    c.ok(&["ps", c.f()]);
    // SAFETY: the runner this test started (only it, not its group).
    unsafe { libc::kill(c.up.pid, libc::SIGSTOP) };
    let t = Instant::now();
    let (code, out, err) = c.run(&["ps", c.f()]);
    // SAFETY: as above.
    unsafe { libc::kill(c.up.pid, libc::SIGCONT) };
    assert_eq!(code, 2, "the socket could not be reached: {out}{err}");
    assert!(
        err.contains("did not answer within") && err.contains("stopped"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    // Continued, it answers again.
    c.ok(&["ps", c.f()]);
}

#[test]
fn a_client_killed_mid_stream_leaves_the_runner_serving() {
    let c = Ctl::start(
        "ctlup-killed",
        r#"
topology t {
  group chatty {
    sh "i=0; while :; do i=$((i+1)); echo line-$i; done"
  }
}
"#,
    );
    for _ in 0..5 {
        let mut f = c.cli(&["logs", c.f(), "-f"]);
        assert!(wait_until(WAIT, Duration::from_millis(10), || {
            fs::metadata(&f.stdout).is_ok_and(|m| m.len() > 10_000)
        }));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(f.pid, libc::SIGKILL) };
        f.wait_exit(WAIT);
        let out = c.ok(&["logs", c.f(), "chatty.0", "-n", "2"]);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert_eq!(c.procs("chatty").len(), 1);
    }
}

#[test]
fn signal_reaches_the_named_processes_only() {
    let mut c = Ctl::start(
        "ctlup-signal",
        r#"
topology t {
  group web {
    run "@PROBE@ --record @DIR@/web.rec --ignore SIGTERM"
    processes 2
  }
}
"#,
    );
    let started = started_and_armed(&mut c.up, 2);
    let out = c.ok(&["signal", c.f(), "USR1", "web.1"]);
    assert_eq!(out.trim(), "signalled web.1");
    let web1 = started.iter().find(|(p, _)| p == "web.1").unwrap().1;
    let rec = c.h.path("web.rec");
    assert!(wait_until(WAIT, Duration::from_millis(20), || {
        read_records(&rec)
            .iter()
            .any(|r| r.pid == web1 && r.sig == "SIGUSR1")
    }));
    let out = c.ok(&["signal", c.f(), "SIGUSR2", "web"]);
    assert_eq!(out.trim(), "signalled web.0 web.1");
    assert!(wait_until(
        WAIT,
        Duration::from_millis(20),
        || read_records(&rec)
            .iter()
            .filter(|r| r.sig == "SIGUSR2")
            .count()
            == 2
    ));
    let recs = read_records(&rec);
    assert_eq!(
        recs.iter().filter(|r| r.sig == "SIGUSR1").count(),
        1,
        "{recs:?}"
    );
    let (code, _, err) = c.run(&["signal", c.f(), "SIGNOPE", "web"]);
    assert_ne!(code, 0, "{err}");
    let (code, _, err) = c.run(&["signal", c.f(), "USR1", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn reload_restarts_a_changed_group_and_refuses_a_file_with_errors() {
    let text = r#"
topology t {
  group a {
    run "@PROBE@"
  }
  group b {
    run "@PROBE@ --record @DIR@/b.rec"
  }
}
"#;
    let mut c = Ctl::start("ctlup-reload", text);
    started_and_armed(&mut c.up, 2);
    let (a0, b0) = (c.pid_of("a", 0).unwrap(), c.pid_of("b", 0).unwrap());
    c.h.write(
        "topology.pf",
        &text.replace("b.rec\"", "b.rec --linger-ms 1\""),
    );
    let out = c.ok(&["reload", c.f()]);
    assert_eq!(out.trim(), "reloaded; changed: b");
    assert!(wait_until(WAIT, Duration::from_millis(20), || c
        .pid_of("b", 0)
        .is_some_and(|p| p != b0)));
    assert!(is_dead(b0) || wait_until(WAIT, Duration::from_millis(20), || is_dead(b0)));
    assert_eq!(c.pid_of("a", 0), Some(a0));
    // A file with errors is refused with them; nothing changes.
    c.h.write(
        "topology.pf",
        "topology t {\n  group a {\n    processes 0\n  }\n}\n",
    );
    let (code, out, err) = c.run(&["reload", c.f()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("error"), "{err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(c.pid_of("a", 0), Some(a0));
    assert!(c.pid_of("b", 0).is_some());
}

#[test]
fn down_waits_and_exits_with_ups_status() {
    let mut c = Ctl::start(
        "ctlup-down",
        r#"
topology t {
  group web {
    run "@PROBE@ --record @DIR@/web.rec --record-exit"
    processes 2
  }
}
"#,
    );
    let started = started_and_armed(&mut c.up, 2);
    let (code, out, err) = c.run(&["down", c.f()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "drained; up exits with status 0");
    // When down returns, the processes are gone.
    for (_, p) in &started {
        assert!(is_dead(*p), "{p} still alive after down returned");
    }
    assert_eq!(c.up.exit_code(), 0);
    let (code, _, err) = c.run(&["ps", c.f()]);
    assert_eq!(code, 2);
    assert!(err.contains("not running"), "{err}");
    assert!(survivors(&c.h.marker).is_empty());
}

#[test]
fn a_finished_test_leaves_no_runner_client_or_process() {
    let c = Ctl::start(
        "ctlup-cleanup",
        r#"
topology t {
  group web {
    run "@PROBE@"
    processes 2
  }
}
"#,
    );
    c.wait_ready(&["web"]);
    let follower = c.cli(&["logs", c.f(), "-f"]);
    let mut pids = vec![c.up.pid, follower.pid];
    pids.extend((0..2).map(|i| c.pid_of("web", i).unwrap()));
    let marker = c.h.marker.clone();
    assert!(pids.iter().all(|&p| !is_dead(p)));
    // What a failing test's unwinding does: the harness kills them all.
    drop(follower);
    drop(c);
    for p in pids {
        assert!(
            wait_until(WAIT, Duration::from_millis(10), || is_dead(p)),
            "{p} lives"
        );
    }
    assert!(survivors(&marker).is_empty());
}

#[test]
fn wait_for_ready_and_a_timeout() {
    let c = Ctl::start(
        "ctlup-wait",
        r#"
topology t {
  group web {
    run "@PROBE@ --delay-ms 500 --log-ready up"
    ready when log "up" every 50ms within 60s
  }
  group never {
    run "@PROBE@"
    ready when log "never printed" every 50ms within 120s
  }
}
"#,
    );
    let out = c.ok(&["wait", c.f(), "--ready", "web", "--timeout", "30s"]);
    assert_eq!(out.trim(), "ready: web");
    let t = Instant::now();
    let (code, out, err) = c.run(&["wait", c.f(), "--ready", "never", "--timeout", "1s"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert!(err.contains("not ready within 1s"), "{err}");
}

#[test]
fn events_history_and_follow_as_json_lines() {
    let mut c = Ctl::start(
        "ctlup-events",
        r#"
topology t {
  group web {
    run "@PROBE@"
  }
}
"#,
    );
    let started = started_and_armed(&mut c.up, 1);
    let out = c.ok(&["events", c.f()]);
    let evs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        evs.iter()
            .any(|e| e["event"] == "started" && e["pid"] == started[0].1),
        "{out}"
    );
    let f = c.cli(&["events", c.f(), "-f"]);
    // The follower is connected once it printed the history.
    assert!(wait_until(WAIT, Duration::from_millis(20), || f
        .stdout_text()
        .contains("\"started\"")));
    c.ok(&["restart", c.f(), "web"]);
    let new = c.pid_of("web", 0).unwrap();
    assert!(
        wait_until(WAIT, Duration::from_millis(20), || {
            f.stdout_text().lines().any(|l| {
                serde_json::from_str::<Value>(l)
                    .is_ok_and(|e| e["event"] == "started" && e["pid"] == new)
            })
        }),
        "live events: {}",
        f.stdout_text()
    );
    for l in f.stdout_text().lines() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

fn can_setpriv() -> bool {
    if flowrun::control::paths::euid() != 0 {
        eprintln!("skipped: not root, cannot run a client under another uid");
        return false;
    }
    let ok = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: setpriv cannot switch to uid 65534 here");
    }
    ok
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o777
}

#[test]
fn the_socket_is_private_and_another_uid_is_refused() {
    let mut c = Ctl::start(
        "ctlup-uid",
        r#"
topology t {
  group web {
    run "@PROBE@"
  }
}
"#,
    );
    let sock = c.socket();
    assert!(fs::symlink_metadata(&sock).unwrap().file_type().is_socket());
    assert_eq!(mode(&sock), 0o600);
    assert_eq!(mode(sock.parent().unwrap()), 0o700);
    if !can_setpriv() {
        return;
    }
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    // The directory keeps it out first.
    let (code, _, err) = c.run_as(&nobody, &["ps", c.f()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    // Loosened by mistake, the peer check still refuses.
    fs::set_permissions(sock.parent().unwrap(), fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o666)).unwrap();
    // The harness's directory must be reachable too.
    for d in [c.h.dir.clone(), c.xdg()] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (code, out, err) = c.run_as(&nobody, &["ps", c.f()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("uid 65534 may not control this runner"),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");
    let ev =
        c.up.wait_event("refused", EVENT_TIMEOUT, |e| e["event"] == "refused");
    assert_eq!(ev["uid"], 65534, "{ev}");
    let out = c.ok(&["events", c.f()]);
    assert!(out.contains(r#""event":"refused""#), "{out}");
    assert_eq!(c.run(&["ps", c.f()]).0, 0);
}

#[test]
fn a_stale_socket_is_replaced_and_a_second_up_is_refused() {
    let text = r#"
topology t {
  group web {
    run "@PROBE@"
  }
}
"#;
    let mut c = Ctl::start("ctlup-stale", text);
    // A second `up` of the running file is refused.
    let mut second = c.h.up(&c.file, &[]);
    let code = second.exit_code();
    assert_ne!(code, 0);
    assert!(
        second.stderr_text().contains("already running"),
        "{}",
        second.stderr_text()
    );
    assert_eq!(c.run(&["ps", c.f()]).0, 0, "the first still serves");
    let sock = c.socket();
    let ino = fs::metadata(&sock).unwrap().ino();
    c.up.signal(libc::SIGKILL);
    c.up.wait_exit(WAIT);
    assert!(sock.exists(), "SIGKILL leaves the socket behind");
    let (code, _, err) = c.run(&["ps", c.f()]);
    assert_eq!(code, 2);
    assert!(err.contains("not running"), "{err}");
    // The next `up` replaces it and serves.
    c.up = c.h.up(&c.file, &[]);
    assert!(
        wait_until(WAIT, Duration::from_millis(50), || c.run(&["ps", c.f()]).0
            == 0),
        "{}",
        c.up.stderr_text()
    );
    assert_eq!(c.socket(), sock);
    assert_ne!(fs::metadata(&sock).unwrap().ino(), ino, "a new socket");
    assert_eq!(mode(&sock), 0o600);
}

#[test]
fn ten_thousand_malformed_requests_leave_the_runner_serving() {
    let c = Ctl::start(
        "ctlup-fuzz",
        r#"
topology t {
  group web {
    run "@PROBE@"
  }
}
"#,
    );
    let mut served = 0;
    let tally = fuzz::flood(&c.socket(), || {
        let (code, out, err) = c.run(&["ps", c.f()]);
        assert_eq!(code, 0, "ps while fuzzing: {out}{err}");
        served += 1;
    });
    eprintln!("answers by code: {tally:?}; {served} ps calls served meanwhile");
    fuzz::assert_answered(&tally);
    // Nothing reached the topology, and it still serves.
    let ps = c.ps();
    assert_eq!(ps["processes"][0]["restarts"], 0, "{ps}");
    assert_eq!(c.run(&["ps", c.f()]).0, 0);
}

#[test]
fn refusals_and_the_end_of_streams() {
    let mut c = Ctl::start(
        "ctlup-edges",
        r#"
topology t {
  group web {
    run "@PROBE@"
    processes 2
  }
  group db {
    run "@PROBE@"
  }
}
"#,
    );
    started_and_armed(&mut c.up, 3);
    // Unknown groups and processes: exit 2, the groups listed.
    for args in [
        vec!["restart", c.f(), "nope"],
        vec!["restart", c.f(), "web.5"],
        vec!["stop", c.f(), "nope"],
        vec!["scale", c.f(), "nope=2"],
        vec!["wait", c.f(), "--ready", "nope", "--timeout", "5s"],
    ] {
        let (code, out, err) = c.run(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains("web") && err.contains("db"), "{args:?}: {err}");
    }
    // Bad usage: exit 2, one line.
    for args in [
        vec!["scale", c.f(), "web=0"],
        vec!["scale", c.f(), "web"],
        vec!["stop", c.f(), "web.0"],
        vec!["logs", c.f(), "--since", "soon"],
    ] {
        let (code, out, err) = c.run(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    // An unchanged file reloads to nothing.
    assert_eq!(c.ok(&["reload", c.f()]).trim(), "reloaded; nothing changed");
    // A stopped group cannot be restarted; stopping everything does not end up.
    c.ok(&["stop", c.f(), "web", "db"]);
    let (code, out, err) = c.run(&["restart", c.f(), "web"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        c.up.try_status().is_none(),
        "up goes on with every group stopped"
    );
    // Followers end, with status 0, when `down` ends the runner.
    let mut logs = c.cli(&["logs", c.f(), "-f"]);
    let mut events = c.cli(&["events", c.f(), "-f"]);
    assert!(wait_until(WAIT, Duration::from_millis(20), || events
        .stdout_text()
        .contains("\"started\"")));
    let (code, out, err) = c.run(&["down", c.f()]);
    assert_eq!(
        (code, out.trim()),
        (0, "drained; up exits with status 0"),
        "{err}"
    );
    assert_eq!(c.up.exit_code(), 0);
    assert_eq!(
        logs.wait_exit(WAIT).code(),
        Some(0),
        "{}",
        logs.stderr_text()
    );
    assert_eq!(
        events.wait_exit(WAIT).code(),
        Some(0),
        "{}",
        events.stderr_text()
    );
    let got = events.stdout_text();
    assert!(got.contains("\"draining\""), "{got}");
    // The follower gets the end too: the exit event, with up's status.
    let last = got.lines().last().unwrap_or("");
    assert!(
        last.contains("\"event\":\"exit\"") && last.contains("\"code\":0"),
        "{got}"
    );
}

#[test]
fn wait_fails_when_its_group_fails() {
    let mut c = Ctl::start(
        "ctlup-waitfail",
        r#"
topology t {
  group bad {
    run "@PROBE@"
    ready when log "never printed" every 50ms within 3s
  }
}
"#,
    );
    let (code, out, err) = c.run(&["wait", c.f(), "--ready", "bad", "--timeout", "60s"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("bad"), "{err}");
    assert_eq!(c.up.exit_code(), 1);
}

#[test]
fn a_follower_gets_the_lines_printed_during_the_drain() {
    let mut c = Ctl::start(
        "ctlup-drainlines",
        r#"
topology t {
  group bye {
    sh "trap 'i=0; while [ $i -lt 2000 ]; do i=$((i+1)); echo bye-$i; done; exit 0' TERM; echo hi; while :; do sleep 0.05; done"
  }
}
"#,
    );
    let mut f = c.cli(&["logs", c.f(), "-f"]);
    assert!(wait_until(WAIT, Duration::from_millis(20), || f
        .stdout_text()
        .contains("bye.0 | hi")));
    let (code, out, err) = c.run(&["down", c.f()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(c.up.exit_code(), 0);
    assert_eq!(f.wait_exit(WAIT).code(), Some(0), "{}", f.stderr_text());
    let text = f.stdout_text();
    let byes: Vec<&str> = text.lines().filter(|l| l.contains("| bye-")).collect();
    assert_eq!(byes.len(), 2000, "{text}");
    assert_eq!(byes.last(), Some(&"bye.0 | bye-2000"));
}

#[test]
fn a_ladder_signal_is_a_ladder_step_and_down_waits_for_a_restart_in_progress() {
    let mut c = Ctl::start(
        "ctlup-ladder",
        r#"
topology t {
  group web {
    run "@PROBE@ --record @DIR@/web.rec --ignore SIGTERM"
    stop SIGTERM drain 1s
    restart always backoff 100ms..200ms limit 10 per 60s
  }
}
"#,
    );
    let first = started_and_armed(&mut c.up, 1)[0].1;
    assert_eq!(
        c.ok(&["signal", c.f(), "TERM", "web"]).trim(),
        "signalled web.0"
    );
    let p = &c.procs("web")[0];
    assert_eq!(
        (&p["state"], &p["step"]),
        (&Value::from("stopping"), &Value::from(0)),
        "{p}"
    );
    assert!(c.ok(&["ps", c.f()]).contains("stopping step 0"));
    // Not sent twice to one incarnation; its deadline runs.
    c.ok(&["signal", c.f(), "SIGTERM", "web.0"]);
    let killed = c.up.wait_for("killed");
    assert_eq!(killed["reason"], "deadline", "{killed}");
    let exited = c.up.wait_for("exited");
    assert_eq!(
        (exited["pid"].as_i64(), &exited["signal"]),
        (Some(first as i64), &Value::from("SIGKILL"))
    );
    let recs = read_records(&c.h.path("web.rec"));
    assert_eq!(
        recs.iter().filter(|r| r.pid == first).count(),
        1,
        "{recs:?}"
    );
    // The restart policy brings it back.
    c.up.wait_count("started", 2);
    let second = c.up.started_pids()[1].1;
    wait_armed(&[second]);
    // A restart in its ladder, then `down`: down waits for it.
    let mut r = c.cli(&["restart", c.f(), "web"]);
    c.up.wait_count("stopping", 2);
    let (code, out, err) = c.run(&["down", c.f()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(r.wait_exit(WAIT).code(), Some(0), "{}", r.stderr_text());
    assert_eq!(c.up.exit_code(), 0);
    let evs = c.up.events();
    let pos = |pred: &dyn Fn(&Value) -> bool| evs.iter().position(pred);
    let third =
        pos(&|e: &Value| e["event"] == "started" && e["pid"] != first && e["pid"] != second);
    let draining = pos(&|e: &Value| e["event"] == "draining");
    assert!(
        third.is_some() && third < draining,
        "the restart completed before the drain"
    );
}
