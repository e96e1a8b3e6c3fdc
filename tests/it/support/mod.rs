//! Shared helpers for the `flowrun up` integration tests (tests/up_*.rs).
//!
//! Every test builds a [`Harness`]: a fresh temporary directory and a unique
//! marker (`FLOWRUN_TEST_MARKER=<test>-<pid>-<n>`) that every process the
//! test starts inherits. Dropping the harness — also when the test panics —
//! SIGKILLs every process whose `/proc/PID/environ` carries that marker (and
//! the process group it leads), and never touches a process without it.
//!
//! [`Harness::up`] runs `flowrun up FILE --log-format json` as the leader of
//! a new session (`setsid`), so a test can signal its whole process group
//! the way a terminal's Ctrl+C does; stdout and stderr go to files, and the
//! JSON event lines on stderr (docs/events.md) are parsed on demand.
#![allow(dead_code)] // not every helper is used by every module

pub mod fuzz;

use serde_json::Value;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const FLOWRUN: &str = env!("CARGO_BIN_EXE_flowrun");
pub const PROBE: &str = env!("CARGO_BIN_EXE_flowrun-probe");
pub const MARKER_VAR: &str = "FLOWRUN_TEST_MARKER";

/// Generous default waits: the test machine is shared and loaded.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Wall-clock nanoseconds since the epoch (the probe's record timestamps).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Poll `cond` every `every` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// `n` distinct free ports, all held until every one is chosen.
pub fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

fn proc_pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

/// Live processes (zombies have an empty environ and are not counted) whose
/// environment carries `FLOWRUN_TEST_MARKER=marker`.
pub fn survivors(marker: &str) -> Vec<i32> {
    let needle = format!("{MARKER_VAR}={marker}\0");
    let me = std::process::id() as i32;
    proc_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .map(|env| {
                    env.windows(needle.len())
                        .enumerate()
                        .any(|(i, w)| w == needle.as_bytes() && (i == 0 || env[i - 1] == 0))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// A human description of some pids, for assertion messages.
pub fn describe(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| {
            let cmd = fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            format!("{p} [{}] {}", proc_state(*p).unwrap_or('?'), cmd.trim())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// SIGKILL every process carrying the marker, and the process group of
/// each marked group leader; repeat until none is left (or 5 s).
pub fn kill_marked(marker: &str) {
    // SAFETY: getpgrp has no preconditions.
    let own_pgrp = unsafe { libc::getpgrp() };
    for _ in 0..250 {
        let pids = survivors(marker);
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: signalling a process that carries our marker.
            unsafe {
                let pgid = libc::getpgid(pid);
                if pgid == pid && pgid > 1 && pgid != own_pgrp {
                    libc::killpg(pgid, libc::SIGKILL);
                }
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`, …), `None` if gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// The parent pid from `/proc/PID/stat`.
pub fn proc_ppid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Direct children of `ppid` (any state).
pub fn children_of(ppid: i32) -> Vec<i32> {
    proc_pids()
        .into_iter()
        .filter(|&p| proc_ppid(p) == Some(ppid))
        .collect()
}

/// Zombie children of `ppid`.
pub fn zombie_children(ppid: i32) -> Vec<i32> {
    children_of(ppid)
        .into_iter()
        .filter(|&p| proc_state(p) == Some('Z'))
        .collect()
}

/// One field line (`SigIgn:` …) of `/proc/PID/status`, without its name.
pub fn status_field(pid: i32, field: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// True when `pid` has exited (gone, or a zombie).
pub fn is_dead(pid: i32) -> bool {
    matches!(proc_state(pid), None | Some('Z') | Some('X'))
}

/// Block until `pid` (not necessarily our child) terminates, using a pidfd;
/// returns the instant it was seen dead, or `None` after `timeout`. Falls
/// back to polling `/proc` every 2 ms when `pidfd_open` is unavailable.
pub fn wait_death(pid: i32, timeout: Duration) -> Option<Instant> {
    let end = Instant::now() + timeout;
    // SAFETY: pidfd_open returns a new descriptor we close below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd >= 0 {
        let mut seen = None;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: polling one descriptor we own.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
            if n > 0 {
                seen = Some(Instant::now());
                break;
            }
            if n == 0 || Instant::now() >= end {
                break;
            }
        }
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(fd) };
        return seen;
    }
    loop {
        if is_dead(pid) {
            return Some(Instant::now());
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One line of a probe's `--record` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub ns: i64,
    pub pid: i32,
    pub sig: String,
}

/// The signal records in `path` (an absent file is no records); the
/// `EXIT` line of `--record-exit` is left out (see [`exit_record`]).
pub fn read_records(path: &Path) -> Vec<Record> {
    read_all_records(path)
        .into_iter()
        .filter(|r| r.sig != "EXIT")
        .collect()
}

/// The `EXIT` line a `--record-exit` probe wrote just before dying.
pub fn exit_record(path: &Path) -> Option<Record> {
    read_all_records(path).into_iter().find(|r| r.sig == "EXIT")
}

fn read_all_records(path: &Path) -> Vec<Record> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some(Record {
                ns: it.next()?.parse().ok()?,
                pid: it.next()?.parse().ok()?,
                sig: it.next()?.to_string(),
            })
        })
        .collect()
}

/// The probe's blob (a copy of `blob` in src/bin/flowrun-probe.rs: keep in
/// sync): `len` bytes of pseudo-random alphanumeric lines.
pub fn blob(len: u64, seed: u64) -> Vec<u8> {
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = len as usize;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let line = 1 + (next() % 100) as usize;
        let line = line.min(len - out.len());
        for _ in 1..line {
            out.push(ALPHA[(next() % ALPHA.len() as u64) as usize]);
        }
        out.push(b'\n');
    }
    out
}

/// A test's temporary directory and marker; cleans up on drop.
pub struct Harness {
    pub name: String,
    pub dir: PathBuf,
    pub marker: String,
}

impl Harness {
    pub fn new(name: &str) -> Harness {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let marker = format!("{name}-{pid}-{n}");
        let dir = std::env::temp_dir().join(format!("flowrun-test-{marker}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create test dir");
        Harness {
            name: name.to_string(),
            dir,
            marker,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Write `topology.pf` after replacing `@PROBE@` with the probe's path
    /// and `@DIR@` with the test directory. Returns the file's path.
    pub fn topology(&self, text: &str) -> PathBuf {
        self.write("topology.pf", text)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let text = text
            .replace("@PROBE@", PROBE)
            .replace("@DIR@", &self.dir.to_string_lossy());
        let p = self.path(rel);
        fs::write(&p, text).expect("write test file");
        p
    }

    /// `flowrun up FILE --log-format json [extra…]` in a new session.
    pub fn up(&self, file: &Path, extra: &[&str]) -> Up {
        let mut argv: Vec<String> = vec![
            FLOWRUN.into(),
            "up".into(),
            file.to_string_lossy().into_owned(),
            "--log-format".into(),
            "json".into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = argv.iter().map(|s| s.as_str()).collect();
        self.spawn(&refs)
    }

    /// Run any command with the marker, as the leader of a new session,
    /// stdin from /dev/null, stdout/stderr to files in the test directory.
    pub fn spawn(&self, argv: &[&str]) -> Up {
        self.spawn_with_stdout(argv, None)
    }

    /// [`Harness::spawn`] with stdout sent to `stdout` instead of a file
    /// (e.g. a pipe the test closes); `Up::stdout` then names an empty file.
    pub fn spawn_with_stdout(&self, argv: &[&str], stdout: Option<Stdio>) -> Up {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let out = self.path(&format!("stdout-{n}.txt"));
        let err = self.path(&format!("stderr-{n}.txt"));
        let stdout = stdout.unwrap_or_else(|| fs::File::create(&out).expect("stdout file").into());
        let mut cmd = Command::new(argv[0]);
        let xdg = self.path("xdg");
        let _ = fs::create_dir(&xdg);
        cmd.args(&argv[1..])
            .env(MARKER_VAR, &self.marker)
            // Run records (and the cgroups they name) stay in the test dir.
            .env("XDG_RUNTIME_DIR", &xdg)
            .env("NO_COLOR", "1")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(fs::File::create(&err).expect("stderr file"));
        // SAFETY: setsid is async-signal-safe and takes no inputs.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
        Up {
            pid: child.id() as i32,
            child,
            stdout: out,
            stderr: err,
            started: Instant::now(),
            status: None,
        }
    }
}

/// The cgroups named by run records under `dir` (see exec/runrecord.rs).
pub fn recorded_cgroups(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir.join("xdg").join("flowrun")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.strip_prefix("cgroup "))
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        })
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("flowrun-"))
        })
        .collect()
}

impl Drop for Harness {
    fn drop(&mut self) {
        kill_marked(&self.marker);
        // Cgroups of runs whose runner and guard both died.
        for cg in recorded_cgroups(&self.dir) {
            if cg.exists() {
                flowrun::exec::cgroup::kill_and_remove(&cg, Duration::from_secs(5));
            }
        }
        if std::thread::panicking() {
            eprintln!("[{}] test files kept in {}", self.name, self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A running `flowrun up` (or wrapper) started by [`Harness::spawn`].
pub struct Up {
    pub pid: i32,
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub started: Instant,
    pub status: Option<ExitStatus>,
}

/// A signal number's name, for messages.
pub fn sig_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| sig.to_string())
}

impl Up {
    /// Send `sig` to the runner's whole process group (a terminal's Ctrl+C).
    pub fn signal_group(&self, sig: i32) {
        // SAFETY: the runner leads its own session and process group.
        let r = unsafe { libc::killpg(self.pid, sig) };
        assert_eq!(r, 0, "killpg({}, {})", self.pid, sig_name(sig));
    }

    /// Send `sig` to the runner process only.
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid, sig) };
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stdout_bytes(&self) -> Vec<u8> {
        fs::read(&self.stdout).unwrap_or_default()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout_bytes()).into_owned()
    }

    /// Every JSON event line on stderr so far.
    pub fn events(&self) -> Vec<Value> {
        self.stderr_text()
            .lines()
            .filter(|l| l.trim_start().starts_with('{'))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("event").is_some())
            .collect()
    }

    /// Events named `name`.
    pub fn events_named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// Wait for the first event satisfying `pred`; panics with the stderr
    /// seen so far after `timeout` (or when the runner has exited).
    pub fn wait_event(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let end = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            let exited = self.try_status().is_some();
            if exited {
                // One last look: the event may have been written just before exit.
                if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                    return e;
                }
            }
            if exited || Instant::now() >= end {
                panic!(
                    "no event {what} (runner {}) after {:?}; stderr:\n{}",
                    if exited { "exited" } else { "still running" },
                    self.started.elapsed(),
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait for an event by name.
    pub fn wait_for(&mut self, name: &str) -> Value {
        self.wait_event(name, EVENT_TIMEOUT, |e| e["event"] == name)
    }

    /// Wait for `n` events named `name`; returns them.
    pub fn wait_count(&mut self, name: &str, n: usize) -> Vec<Value> {
        self.wait_count_within(name, n, EVENT_TIMEOUT)
    }

    /// [`Up::wait_count`] with an explicit timeout.
    pub fn wait_count_within(&mut self, name: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let end = Instant::now() + timeout;
        loop {
            let evs = self.events_named(name);
            if evs.len() >= n {
                return evs;
            }
            if self.try_status().is_some() || Instant::now() >= end {
                panic!(
                    "expected {n} `{name}` events, saw {}; stderr:\n{}",
                    evs.len(),
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The pids of every `started` event, by process id (`api.0`).
    pub fn started_pids(&self) -> Vec<(String, i32)> {
        self.events_named("started")
            .iter()
            .filter_map(|e| {
                Some((
                    e["process"].as_str()?.to_string(),
                    e["pid"].as_i64()? as i32,
                ))
            })
            .collect()
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Wait for the runner to exit; panics (with its stderr) after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return s;
            }
            if Instant::now() >= end {
                panic!(
                    "runner still running after {:?}; stderr:\n{}",
                    self.started.elapsed(),
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The exit code (panics with stderr if killed by a signal).
    pub fn exit_code(&mut self) -> i32 {
        let s = self.wait_exit(EXIT_TIMEOUT);
        s.code().unwrap_or_else(|| {
            panic!(
                "runner died by a signal ({s:?}); stderr:\n{}",
                self.stderr_text()
            )
        })
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `t` of an event, in seconds.
pub fn t(e: &Value) -> f64 {
    e["t"].as_f64().unwrap_or(f64::NAN)
}

/// `process` of an event.
pub fn process(e: &Value) -> &str {
    e["process"].as_str().unwrap_or("")
}

/// Wait until every pid runs the probe (`/proc/PID/exe`: a forked copy of
/// a probe that has not exec'd yet shows its parent's handlers) and has
/// installed its handlers (its `SigCgt` has SIGTERM), or has already
/// exited, so a stop signal is recorded rather than killing it early.
pub fn wait_armed(pids: &[i32]) {
    let term_bit = 1u64 << (libc::SIGTERM - 1);
    let probe = fs::canonicalize(PROBE).unwrap_or_else(|_| PROBE.into());
    let ok = wait_until(EVENT_TIMEOUT, Duration::from_millis(5), || {
        pids.iter().all(|&p| {
            // A probe that already exited on its own cannot be raced.
            is_dead(p)
                || (fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == probe)
                    && status_field(p, "SigCgt")
                        .and_then(|v| u64::from_str_radix(&v, 16).ok())
                        .is_some_and(|m| m & term_bit != 0))
        })
    });
    assert!(ok, "probes never armed their handlers: {}", describe(pids));
}

/// Start `up`, wait for `n` `started` events and for those probes to be
/// armed; returns the `(process, pid)` pairs.
pub fn started_and_armed(up: &mut Up, n: usize) -> Vec<(String, i32)> {
    up.wait_count("started", n);
    let started = up.started_pids();
    let pids: Vec<i32> = started.iter().map(|(_, p)| *p).collect();
    wait_armed(&pids);
    started
}

/// Every `*.pf` in the repository folder `dir` (e.g. `examples`), sorted
/// by file name.
pub fn pf_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "pf"))
        .collect();
    files.sort();
    files
}

/// `path` as a source named from the repository root (`dir/NAME.pf`), as
/// `flowrun lint dir/*.pf` names it, so snapshots hold no absolute path.
pub fn load_pf(dir: &str, path: &Path) -> flowrun::source::SourceFile {
    let name = format!(
        "{dir}/{}",
        path.file_name().expect("file name").to_string_lossy()
    );
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    flowrun::source::SourceFile::new(name, text)
}

/// Compile every file of `dir`: each must parse; every finding is
/// returned as a short line (an empty list is a lint-clean folder).
pub fn findings_in(dir: &str) -> Vec<String> {
    let mut found = Vec::new();
    for path in pf_files(dir) {
        let compiled = flowrun::compile(load_pf(dir, &path), None);
        assert!(
            compiled.model.is_some(),
            "{} does not parse",
            path.display()
        );
        for d in &compiled.diagnostics {
            found.push(flowrun::render::short_line(&compiled.source, d));
        }
    }
    found
}
