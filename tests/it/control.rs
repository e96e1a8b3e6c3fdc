//! The control socket's transport, driven through the real server with
//! `TestCore` (control/responder.rs), a test stand-in for the supervisor
//! core. These tests prove the socket, its security and its bounds, the
//! per-group serialisation and the log streams; they do not prove the
//! commands on a running topology (the core is not wired to the server
//! yet; see docs/control.md).
//!
//! Clients are the real `flowrun` binary where the command line matters
//! (locating the topology, exit codes, another uid) and the library's
//! blocking client or raw sockets where the bytes matter (fuzzing).

mod responder;
mod schema;

use crate::support::{fuzz, wait_until, Harness, Up, FLOWRUN, MARKER_VAR};
use flowrun::control::client::Client;
use flowrun::control::paths;
use flowrun::control::protocol::*;
use flowrun::control::ring::ProcKey;
use responder::{Fake, TestCore};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
static N: AtomicUsize = AtomicUsize::new(0);

/// A harness with a topology file and a private `XDG_RUNTIME_DIR`.
struct Setup {
    h: Harness,
    xdg: PathBuf,
    file: PathBuf,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let h = Harness::new(name);
        let xdg = h.path("run");
        fs::create_dir_all(&xdg).unwrap();
        let file = h.topology("group api { run \"true\" }\n");
        Setup { h, xdg, file }
    }

    /// The runtime directory the server and the CLI agree on.
    fn dir(&self) -> PathBuf {
        self.xdg.join("flowrun")
    }

    fn core(&self, fake: Fake) -> TestCore {
        TestCore::start(&self.dir(), &self.file, fake).expect("start the test server")
    }

    /// `flowrun ARGS…` in the test directory with the test's runtime dir;
    /// `wrap` (e.g. setpriv …) goes in front.
    fn cli(&self, wrap: &[&str], args: &[&str]) -> Up {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let out = self.h.path(&format!("cli-out-{n}.txt"));
        let err = self.h.path(&format!("cli-err-{n}.txt"));
        let mut argv: Vec<&str> = wrap.to_vec();
        argv.push(FLOWRUN);
        argv.extend_from_slice(args);
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .env(MARKER_VAR, &self.h.marker)
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .current_dir(&self.h.dir)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
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

    /// Run to completion: (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_as(&[], args)
    }

    fn run_as(&self, wrap: &[&str], args: &[&str]) -> (i32, String, String) {
        let mut up = self.cli(wrap, args);
        let code = up.wait_exit(WAIT).code().unwrap_or(-1);
        (code, up.stdout_text(), up.stderr_text())
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o777
}

fn client(core: &TestCore) -> Client {
    Client::connect(&core.socket).expect("connect").0
}

#[test]
fn socket_directory_and_lock_have_private_modes() {
    let s = Setup::new("ctl-modes");
    let core = s.core(Fake::default());
    assert_eq!(mode(&s.dir()), 0o700);
    let md = fs::symlink_metadata(&core.socket).unwrap();
    assert!(md.file_type().is_socket());
    assert_eq!(md.mode() & 0o777, 0o600);
    assert_eq!(md.uid(), paths::euid());
    let lock = core.socket.with_extension("lock");
    assert_eq!(mode(&lock), 0o600);
    assert!(paths::is_alive(&lock));
    // A second server for the same topology is refused while this one lives.
    let err = TestCore::start(&s.dir(), &s.file, Fake::default())
        .err()
        .expect("a second claim must fail");
    assert!(err.contains("already running"), "{err}");
    core.stop();
    assert!(!core_socket_exists(&s), "the socket is removed at shutdown");
}

fn core_socket_exists(s: &Setup) -> bool {
    fs::read_dir(s.dir())
        .map(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "sock"))
        })
        .unwrap_or(false)
}

#[test]
fn a_shared_fallback_directory_is_not_trusted() {
    let s = Setup::new("ctl-shared");
    let dir = s.dir();
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let err = TestCore::start(&dir, &s.file, Fake::default())
        .err()
        .expect("an open directory must be refused");
    assert!(err.contains("must be private"), "{err}");
}

#[test]
fn cli_ps_finds_the_topology_and_prints_human_and_json() {
    let s = Setup::new("ctl-ps");
    let _core = s.core(Fake::default());
    // FILE omitted: the one .pf in the current directory.
    let (code, out, err) = s.run(&["ps"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("PROCESS"), "{out}");
    assert!(lines[1].starts_with("api.0"), "{out}");
    assert!(out.contains("api: 2/2 up, 2 ready"), "{out}");
    let (code, out, _) = s.run(&["ps", s.file.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["type"], "reply");
    assert_eq!(v["reply"]["kind"], "ps");
    assert_eq!(v["reply"]["processes"].as_array().unwrap().len(), 3);
    // Errors from the stand-in come back as structured errors and exit codes.
    let (code, _, err) = s.run(&["restart", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no group `nope`") && err.contains("  api"),
        "{err}"
    );
    let (code, _, err) = s.run(&["scale", "api=1000"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("FR204"), "{err}");
    let (code, out, err) = s.run(&["wait", "--ready", "web", "--timeout", "300ms"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("not ready within 300ms"), "{err}");
    let (code, out, _) = s.run(&["signal", "HUP", "api.1"]);
    assert_eq!((code, out.as_str()), (0, "signalled api.1\n"));
    let (code, _, err) = s.run(&["signal", "NOPE", "api"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown signal `NOPE`"), "{err}");
    let (code, _, err) = s.run(&["restart", "Api.x"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("not a group name") || err.contains("GROUP.N"),
        "{err}"
    );
}

#[test]
fn cli_without_a_runner_lists_the_running_topologies() {
    let s = Setup::new("ctl-none");
    let other = s.h.write("other.pf", "group x { run \"true\" }\n");
    let _core = TestCore::start(&s.dir(), &other, Fake::default()).unwrap();
    let (code, _, err) = s.run(&["ps", s.file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("is not running"), "{err}");
    assert!(err.contains("other.pf (pid "), "{err}");
    // Two .pf files here and no FILE: name one.
    let (code, _, err) = s.run(&["ps"]);
    assert_eq!(code, 2);
    assert!(err.contains("2 .pf files here"), "{err}");
}

/// setpriv is needed, and only root may use it to become another uid.
fn can_setpriv() -> bool {
    if paths::euid() != 0 {
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

const NOBODY: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

#[test]
fn a_client_under_another_uid_is_refused() {
    if !can_setpriv() {
        return;
    }
    let s = Setup::new("ctl-uid");
    let core = s.core(Fake::default());
    let file = s.file.to_str().unwrap();
    // The first layer: the 0700 directory keeps the socket out of reach.
    let (code, _, err) = s.run_as(NOBODY, &["ps", file]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(core.journal().is_empty());
    // The second layer, reached by loosening the modes on purpose (as a
    // mistaken chmod would): the server checks SO_PEERCRED and refuses.
    fs::set_permissions(s.dir(), fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(&core.socket, fs::Permissions::from_mode(0o666)).unwrap();
    let (code, out, err) = s.run_as(NOBODY, &["ps", file]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("uid 65534 may not control this runner"),
        "{err}"
    );
    assert!(out.is_empty(), "nothing is served: {out}");
    // Reported through the boundary, and visible as an event.
    assert!(wait_until(WAIT, Duration::from_millis(20), || core
        .journal()
        .contains(&"refused 65534".to_string())));
    let (code, out, _) = s.run(&["events", file]);
    assert_eq!(code, 0);
    assert!(out.contains(r#""event":"control-refused""#), "{out}");
    assert!(out.contains(r#""uid":65534"#), "{out}");
    // Root (the runner's uid here) is still served.
    assert_eq!(s.run(&["ps", file]).0, 0);
}

/// Entry point of the server process killed by
/// `a_stale_socket_of_a_killed_server_is_replaced` (runs only when that
/// test starts it).
#[test]
#[ignore = "helper process for a_stale_socket_of_a_killed_server_is_replaced"]
fn helper_server_process() {
    let (Some(dir), Some(file)) = (
        std::env::var_os("FLOWRUN_TEST_CONTROL_DIR"),
        std::env::var_os("FLOWRUN_TEST_CONTROL_FILE"),
    ) else {
        return;
    };
    let _core = TestCore::start(Path::new(&dir), Path::new(&file), Fake::default()).unwrap();
    println!("serving");
    std::thread::sleep(Duration::from_secs(300));
}

#[test]
fn a_stale_socket_of_a_killed_server_is_replaced() {
    let s = Setup::new("ctl-stale");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "control::helper_server_process",
            "--nocapture",
        ])
        .env(MARKER_VAR, &s.h.marker)
        .env("FLOWRUN_TEST_CONTROL_DIR", s.dir())
        .env("FLOWRUN_TEST_CONTROL_FILE", &s.file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("serving") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "helper died");
    }
    let file = s.file.to_str().unwrap();
    assert_eq!(s.run(&["ps", file]).0, 0, "the helper serves");
    // SIGKILL: no cleanup runs; the socket file stays behind.
    child.kill().unwrap();
    child.wait().unwrap();
    let sock = fs::read_dir(s.dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "sock"))
        .expect("the killed server's socket is left behind");
    assert!(!paths::is_alive(&sock.with_extension("lock")));
    // Clients do not trust it: not running, exit 2.
    let (code, _, err) = s.run(&["ps", file]);
    assert_eq!(code, 2);
    assert!(err.contains("is not running"), "{err}");
    // The next server replaces it and serves.
    let ino = fs::metadata(&sock).unwrap().ino();
    let core = s.core(Fake::default());
    assert_eq!(core.socket, sock);
    assert_ne!(fs::metadata(&sock).unwrap().ino(), ino, "a new socket");
    assert_eq!(mode(&sock), 0o600);
    assert_eq!(s.run(&["ps", file]).0, 0);
}

#[test]
fn ten_thousand_fuzzed_and_malformed_requests_leave_it_serving() {
    let s = Setup::new("ctl-fuzz");
    let fake = Fake {
        limits: flowrun::control::server::Limits {
            send_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        ..Fake::default()
    };
    let core = s.core(fake);
    let tally = fuzz::flood(&core.socket, || {
        let mut c = client(&core);
        assert!(matches!(c.call(Request::Ps {}).unwrap(), Ok(Reply::Ps(_))));
    });
    eprintln!("fuzz answers by code: {tally:?}");
    fuzz::assert_answered(&tally);
    // Every connection was let go, and the server still serves.
    assert!(
        wait_until(WAIT, Duration::from_millis(20), || core
            .connections
            .load(Ordering::SeqCst)
            == 0),
        "{} connections still held",
        core.connections.load(Ordering::SeqCst)
    );
    assert_eq!(s.run(&["ps"]).0, 0);
}

#[test]
fn version_mismatch_and_busy_are_clear_errors() {
    let s = Setup::new("ctl-vers");
    let fake = Fake {
        limits: flowrun::control::server::Limits {
            max_connections: 4,
            ..Default::default()
        },
        ..Fake::default()
    };
    let core = s.core(fake);
    let mut c = UnixStream::connect(&core.socket).unwrap();
    c.write_all(b"{\"type\":\"hello\",\"protocol\":99}\n")
        .unwrap();
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"]["code"], "version-mismatch", "{line}");
    assert_eq!(v["error"]["details"][0], "1", "{line}");
    // Fill every slot, then one more is told the server is busy.
    let held: Vec<Client> = (0..4).map(|_| client(&core)).collect();
    let err = match Client::connect(&core.socket) {
        Err(flowrun::control::client::ClientError::Refused(e)) => e,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a fifth connection was served"),
    };
    assert_eq!(err.code, ErrorCode::Busy);
    drop(held);
    assert!(wait_until(WAIT, Duration::from_millis(10), || {
        Client::connect(&core.socket).is_ok()
    }));
}

/// `begin`/`end` pairs of the journal, in order.
fn restarts(journal: &[String]) -> Vec<String> {
    journal
        .iter()
        .filter(|l| l.contains("restart"))
        .cloned()
        .collect()
}

#[test]
fn two_concurrent_restarts_of_one_group_are_serialised() {
    let s = Setup::new("ctl-serial");
    let slow = Fake {
        restart_takes: Duration::from_secs(1),
        ..Fake::default()
    };
    let core = s.core(slow.clone());
    let a = s.cli(&[], &["restart", "api"]);
    let b = s.cli(&[], &["restart", "api.1"]);
    for mut up in [a, b] {
        assert_eq!(up.wait_exit(WAIT).code(), Some(0), "{}", up.stderr_text());
    }
    let j = restarts(&core.journal());
    assert_eq!(j.len(), 4, "{j:?}");
    // Never two restarts of api in progress at once.
    assert!(
        j[0].starts_with("begin") && j[1].starts_with("end"),
        "{j:?}"
    );
    assert!(
        j[2].starts_with("begin") && j[3].starts_with("end"),
        "{j:?}"
    );
    assert_eq!(j[0].replace("begin", ""), j[1].replace("end", ""), "{j:?}");
    // The control: different groups do overlap, so the stand-in itself
    // does not serialise (and the check above could fail).
    let core2 = {
        drop(core);
        s.core(slow)
    };
    let a = s.cli(&[], &["restart", "api"]);
    let b = s.cli(&[], &["restart", "web"]);
    for mut up in [a, b] {
        assert_eq!(up.wait_exit(WAIT).code(), Some(0));
    }
    let j = restarts(&core2.journal());
    assert_eq!(j.len(), 4, "{j:?}");
    assert!(
        j[0].starts_with("begin") && j[1].starts_with("begin"),
        "different groups run concurrently: {j:?}"
    );
    // `reload` waits for a restart in progress.
    let a = s.cli(&[], &["restart", "web"]);
    assert!(wait_until(WAIT, Duration::from_millis(5), || core2
        .journal()
        .iter()
        .filter(|l| l.starts_with("begin"))
        .count()
        == 3));
    let (code, _, _) = s.run(&["reload"]);
    assert_eq!(code, 0);
    let j = core2.journal();
    let end = j.iter().rposition(|l| l == "end restart web");
    let reload = j.iter().position(|l| l == "reload");
    assert!(
        end.is_some() && end < reload,
        "reload came after the restart: {j:?}"
    );
    drop(a);
}

fn push_lines(core: &TestCore, p: &ProcKey, from: usize, n: usize) {
    let batch: Vec<String> = (from..from + n).map(|i| format!("line {i:07}")).collect();
    core.logs.push(p, batch);
}

#[test]
fn a_client_killed_mid_stream_is_let_go() {
    let s = Setup::new("ctl-kill");
    let core = s.core(Fake::default());
    let p = ProcKey {
        group: "api".into(),
        index: 0,
    };
    push_lines(&core, &p, 0, 10);
    let mut follower = s.cli(&[], &["logs", "-f", "api.0"]);
    assert!(wait_until(WAIT, Duration::from_millis(10), || follower
        .stdout_text()
        .contains("line 0000009")));
    assert_eq!(core.connections.load(Ordering::SeqCst), 1);
    // Mid-stream: lines keep coming while it dies.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pusher = {
        let (logs, p, stop) = (core.logs.clone(), p.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 10;
            while !stop.load(Ordering::SeqCst) {
                logs.push(&p, (i..i + 100).map(|n| format!("line {n:07}")));
                i += 100;
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(follower.pid, libc::SIGKILL) };
    follower.wait_exit(WAIT);
    assert!(
        wait_until(WAIT, Duration::from_millis(10), || core
            .connections
            .load(Ordering::SeqCst)
            == 0),
        "the dead client's connection is let go"
    );
    stop.store(true, Ordering::SeqCst);
    pusher.join().unwrap();
    let (code, out, _) = s.run(&["logs", "api.0", "-n", "1"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(s.run(&["ps"]).0, 0);
}

#[test]
fn a_slow_follower_is_told_what_it_missed_and_a_fast_one_loses_nothing() {
    const LINES: usize = 200_000;
    let s = Setup::new("ctl-slow");
    let core = s.core(Fake {
        ring_bytes: 64 * 1024,
        ..Fake::default()
    });
    let p = ProcKey {
        group: "api".into(),
        index: 0,
    };
    // The slow reader: `flowrun logs -f`, stopped (SIGSTOP) while the
    // lines are written. Stopped once its stream runs (the first lines
    // have reached it), not once it has connected: stopped before its
    // request was read, it would follow from after the last line, and
    // miss nothing.
    let mut slow = s.cli(&[], &["logs", "-f", "api.0"]);
    push_lines(&core, &p, 0, 100);
    assert!(wait_until(WAIT, Duration::from_millis(10), || slow
        .stdout_text()
        .contains("line 0000099")));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(slow.pid, libc::SIGSTOP) };
    // The fast reader: the library client on a thread, counting.
    let mut fast = client(&core);
    let id = fast
        .start(Request::Logs {
            targets: vec![Target::parse("api.0").unwrap()],
            tail: None,
            since_ms: None,
            follow: true,
        })
        .unwrap();
    let read = Arc::new(AtomicUsize::new(0));
    let reader = {
        let read = read.clone();
        std::thread::spawn(move || {
            let mut next_seq = 0u64;
            loop {
                match fast.recv().unwrap() {
                    ServerMsg::Log { seq, line, .. } => {
                        assert_eq!(seq, next_seq, "the fast reader lost nothing");
                        assert_eq!(line, format!("line {seq:07}"));
                        next_seq += 1;
                        read.store(next_seq as usize, Ordering::SeqCst);
                    }
                    ServerMsg::End { id: got } if got == id => return next_seq,
                    other => panic!("fast reader got {other:?}"),
                }
            }
        })
    };
    // The writer goes as fast as the fast reader reads, within the ring:
    // the stopped reader does not hold it back.
    let t = Instant::now();
    let mut written = 100;
    while written < LINES {
        while written - read.load(Ordering::SeqCst) > 200 {
            std::thread::sleep(Duration::from_micros(200));
            assert!(t.elapsed() < Duration::from_secs(120), "the writer stalled");
        }
        push_lines(&core, &p, written, 100);
        written += 100;
    }
    assert!(wait_until(WAIT, Duration::from_millis(10), || read
        .load(Ordering::SeqCst)
        == LINES));
    let took = t.elapsed();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(slow.pid, libc::SIGCONT) };
    // Once the resumed reader has caught up to where the ring lost lines
    // for it (a fixed pause was too short on a loaded machine), shut the
    // server down: both streams end.
    wait_until(WAIT, Duration::from_millis(10), || {
        slow.stdout_text().contains("flowrun | api.0 missed ")
    });
    core.stop();
    assert_eq!(reader.join().unwrap(), LINES as u64);
    assert_eq!(
        slow.wait_exit(WAIT).code(),
        Some(0),
        "{}",
        slow.stderr_text()
    );
    let out = slow.stdout_text();
    let (mut lines, mut missed, mut markers) = (0usize, 0usize, 0usize);
    for l in out.lines() {
        if let Some(rest) = l.strip_prefix("flowrun | api.0 missed ") {
            missed += rest.trim_end_matches(" lines").parse::<usize>().unwrap();
            markers += 1;
        } else {
            assert!(l.starts_with("api.0 | line "), "{l}");
            lines += 1;
        }
    }
    eprintln!(
        "{LINES} lines in {took:?}; slow reader: {lines} lines, {markers} markers, {missed} missed"
    );
    assert!(markers >= 1 && missed > 0, "the slow reader was told");
    assert_eq!(
        lines + missed,
        LINES,
        "every line is either read or counted missed"
    );
}

#[test]
fn logs_history_tail_and_unknown_process() {
    let s = Setup::new("ctl-logs");
    let core = s.core(Fake::default());
    for i in 0..2 {
        push_lines(
            &core,
            &ProcKey {
                group: "api".into(),
                index: i,
            },
            0,
            5,
        );
    }
    let (code, out, _) = s.run(&["logs", "api", "-n", "2"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "api.0 | line 0000003\napi.0 | line 0000004\napi.1 | line 0000003\napi.1 | line 0000004\n"
    );
    let (code, out, _) = s.run(&["logs", "--json", "api.1", "-n", "1"]);
    assert_eq!(code, 0);
    let l: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(l.len(), 2, "{out}");
    assert_eq!(l[0]["type"], "log");
    assert_eq!(l[0]["seq"], 4);
    assert_eq!(l[1]["type"], "end");
    let (code, _, err) = s.run(&["logs", "api.7"]);
    assert_eq!(code, 2);
    assert!(err.contains("no process `api.7`"), "{err}");
    let (code, out, _) = s.run(&["logs", "--since", "1h", "web"]);
    assert_eq!((code, out.as_str()), (0, ""));
}
