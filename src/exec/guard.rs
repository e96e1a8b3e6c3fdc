//! The guard: a tiny process that kills the run when the runner goes away,
//! even by SIGKILL.
//!
//! It is the flowrun binary itself, re-executed as `flowrun-guard` (so it
//! can be started again at any time, from a multi-threaded runner). Its
//! stdin is a pipe from the runner; when the pipe reaches EOF — the runner
//! finished, or died — the guard kills the run and exits:
//!
//! - with cgroup containment it was given the run's cgroup and writes
//!   `cgroup.kill` there (everything of the run is inside), then waits for
//!   the cgroup to empty and removes it;
//! - with process groups the runner tells it every process group
//!   (`g PGID`) and lone process (`p PID`) it creates, and when one is gone
//!   (`G PGID` / `P PID`); the guard SIGKILLs what is still registered.
//!   That includes the process group of every `exec` ready check, from
//!   its spawn until a driver step finds it empty right after reaping
//!   ([`Guard::add_check_group`], [`Guard::sweep_checks`]; the order is
//!   argued in ready.rs). A process group is counted per registration, so
//!   two owners of one pgid (a stale one and a live one) never unregister
//!   each other's.
//!
//! The guard cannot be lost silently: the runner watches it with a pidfd
//! and, if it dies, emits `guard-restarted` and starts a new one with the
//! current registrations. Registrations never block the runner: the pipe
//! is non-blocking and what the guard has not read yet waits in a queue (a
//! stopped guard costs memory, not progress).
//!
//! The guard ignores the terminal's signals and leads its own process
//! group, so Ctrl+C cannot take it down before the runner. The pipe's
//! write end is close-on-exec, so children never hold it open.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The first argument that makes `flowrun` the guard.
pub const GUARD_ARG: &str = "__flowrun-guard";

pub struct Guard {
    pid: i32,
    pidfd: Option<OwnedFd>,
    pipe: Option<File>,
    /// Bytes the guard has not taken yet (the pipe was full).
    queue: Vec<u8>,
    /// Removals not yet sent: they are batched (one write per supervisor
    /// step, [`Guard::flush`]); a registration is queued at once, after
    /// them, so the guard always sees removals and additions in order.
    removals: String,
    /// Registered process groups, with how many owners registered each.
    groups: HashMap<i32, u32>,
    /// The `exec` ready checks' process groups among them, until found
    /// empty.
    checks: HashSet<i32>,
    pids: HashSet<i32>,
    /// The run's cgroup: registrations are not needed.
    cgroup: Option<PathBuf>,
    /// The run record's registration log (process-group containment).
    record: Option<File>,
}

/// Start a guard process; returns its pid, a pidfd and the pipe.
fn start(cgroup: Option<&Path>) -> std::io::Result<(i32, Option<OwnedFd>, File)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 with a valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("flowrun-guard")
        .arg(GUARD_ARG)
        .arg(cgroup.map_or_else(|| "-".into(), |p| p.as_os_str().to_owned()))
        .stdin(Stdio::from(r))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    // Never wait through std: the runner's reaper owns every status.
    drop(child);
    // SAFETY: our unreaped child (nothing reaps between spawn and here: the
    // reaper runs on this thread), so the pid is the guard's.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    // SAFETY: a new descriptor, owned from here.
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    // Only the runner's end is non-blocking.
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(w.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(w.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    Ok((pid, pidfd, File::from(w)))
}

impl Guard {
    /// Start the guard. `cgroup`: the run's cgroup (cgroup containment);
    /// `record`: where registrations are also logged for the next run
    /// (process-group containment). `None` when it cannot be started (the
    /// runner then works without it).
    pub fn start(cgroup: Option<PathBuf>, record: Option<File>) -> Option<Guard> {
        let (pid, pidfd, pipe) = start(cgroup.as_deref()).ok()?;
        Some(Guard {
            pid,
            pidfd,
            pipe: Some(pipe),
            queue: Vec::new(),
            removals: String::new(),
            groups: HashMap::new(),
            checks: HashSet::new(),
            pids: HashSet::new(),
            cgroup,
            record,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Watch the guard: `lost` is sent when it exits.
    pub fn watch(&self, tx: &tokio::sync::mpsc::UnboundedSender<super::driver::Msg>) {
        let Some(fd) = &self.pidfd else { return };
        let Ok(fd) = fd.try_clone() else { return };
        let tx = tx.clone();
        tokio::spawn(async move {
            // SAFETY: the fd is owned by the AsyncFd for its whole life.
            let Ok(afd) = (unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            }) else {
                return;
            };
            if afd.readable().await.is_ok() {
                let _ = tx.send(super::driver::Msg::GuardLost);
            }
        });
    }

    /// Whether the current guard process has exited.
    fn exited(&self, timeout_ms: i32) -> bool {
        let Some(fd) = &self.pidfd else {
            return false;
        };
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, timeout_ms) == 1 }
    }

    /// The guard died: start a new one with the current registrations, say
    /// so, and watch it.
    pub fn respawn(
        &mut self,
        events: &super::events::EventSink,
        tx: &tokio::sync::mpsc::UnboundedSender<super::driver::Msg>,
    ) {
        if !self.exited(0) {
            return;
        }
        let Ok((pid, pidfd, pipe)) = start(self.cgroup.as_deref()) else {
            return;
        };
        let old_pid = self.pid;
        self.pid = pid;
        self.pidfd = pidfd;
        self.pipe = Some(pipe);
        self.removals.clear();
        self.queue.clear();
        let mut all = String::new();
        for g in self.groups.keys() {
            all.push_str(&format!("g {g}\n"));
        }
        for p in &self.pids {
            all.push_str(&format!("p {p}\n"));
        }
        self.queue.extend_from_slice(all.as_bytes());
        self.push();
        events.emit(super::events::Event::GuardRestarted { old_pid, pid });
        self.watch(tx);
    }

    /// Write as much of the queue as the pipe takes now.
    fn push(&mut self) {
        let Some(p) = &mut self.pipe else {
            self.queue.clear();
            return;
        };
        while !self.queue.is_empty() {
            match p.write(&self.queue) {
                Ok(0) => break,
                Ok(n) => {
                    self.queue.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The guard is gone; its watcher restarts it.
                    self.queue.clear();
                    break;
                }
            }
        }
    }

    /// Queue pending removals, then `line` (if any), and push.
    fn send(&mut self, line: &str) {
        let mut buf = std::mem::take(&mut self.removals);
        buf.push_str(line);
        if !buf.is_empty() {
            if let Some(r) = &mut self.record {
                let _ = r.write_all(buf.as_bytes());
            }
            self.queue.extend_from_slice(buf.as_bytes());
        }
        if !self.queue.is_empty() {
            self.push();
        }
    }

    /// Registrations are queued at once: a process must be known to the
    /// guard before anything of it can outlive the runner. (With a cgroup
    /// the guard needs none.)
    pub fn add_group(&mut self, pgid: i32) {
        if self.cgroup.is_some() {
            return;
        }
        let owners = self.groups.entry(pgid).or_insert(0);
        *owners += 1;
        if *owners == 1 {
            self.send(&format!("g {pgid}\n"));
        }
    }
    pub fn add_pid(&mut self, pid: i32) {
        if self.cgroup.is_none() && self.pids.insert(pid) {
            self.send(&format!("p {pid}\n"));
        }
    }
    pub fn remove_group(&mut self, pgid: i32) {
        use std::fmt::Write as _;
        let Some(owners) = self.groups.get_mut(&pgid) else {
            return;
        };
        *owners -= 1;
        if *owners == 0 {
            self.groups.remove(&pgid);
            let _ = writeln!(self.removals, "G {pgid}");
        }
    }

    /// An `exec` ready check's process group, just spawned (its leader is
    /// unreaped): registered at once, until [`Guard::sweep_checks`] finds
    /// it empty.
    pub fn add_check_group(&mut self, pgid: i32) {
        if self.cgroup.is_none() && self.checks.insert(pgid) {
            self.add_group(pgid);
        }
    }

    /// Unregister every check's process group that has no member left (a
    /// zombie counts). Call it right after reaping, before anything is
    /// spawned: a group can only empty when its last member is reaped,
    /// and its id cannot be reused before (see ready.rs). The removals go
    /// out with the next [`Guard::flush`], before any later registration.
    ///
    /// `waiters`: the reaper's waiters; a group whose leader is still
    /// there is not reaped yet, so it has a member and is not probed (one
    /// `kill(-pgid, 0)` per check that outlived its leader, not per check).
    /// `None` (a reaper that bypasses the waiters): probe every group.
    pub fn sweep_checks(&mut self, waiters: Option<&super::reap::Waiters>) {
        if self.checks.is_empty() {
            return;
        }
        let waiting = waiters.and_then(|w| w.lock().ok());
        let empty: Vec<i32> = self
            .checks
            .iter()
            .copied()
            .filter(|g| !waiting.as_ref().is_some_and(|w| w.contains_key(g)))
            .filter(|&g| !super::reap::group_alive(g))
            .collect();
        drop(waiting);
        for g in empty {
            self.checks.remove(&g);
            self.remove_group(g);
        }
    }
    pub fn remove_pid(&mut self, pid: i32) {
        use std::fmt::Write as _;
        if self.pids.remove(&pid) {
            let _ = writeln!(self.removals, "P {pid}");
        }
    }

    /// Send the batched removals and whatever is queued.
    pub fn flush(&mut self) {
        self.send("");
    }

    /// The run is down: send what is queued and close the pipe, so the
    /// guard exits while the runner ends its own work ([`Guard::finish`]
    /// then only waits for it).
    pub fn release(&mut self) {
        self.flush();
        self.pipe = None;
    }

    /// Close the pipe (the guard kills what is left and exits) and wait for
    /// the guard, at most 2 s; a stopped guard (or one that takes longer)
    /// is killed: by now the run is empty. Only call this when nothing
    /// else reaps.
    pub fn finish(mut self) {
        self.flush();
        self.pipe = None;
        let stopped = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 1..];
                rest.split_whitespace()
                    .next()
                    .map(|st| st == "T" || st == "t")
            })
            .unwrap_or(false);
        if stopped || !self.exited(2000) {
            // SAFETY: our own child, unreaped (nothing else reaps now).
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::kill(self.pid, libc::SIGCONT);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

/// `flowrun __flowrun-guard CGROUP|-`: the guard's main. Returns the exit
/// status.
pub fn guard_main(cgroup: &str) -> i32 {
    // The runner holds SIGCHLD on its threads (exec/mod.rs), and std's
    // spawn passes that mask on: the guard starts with nothing held.
    super::let_sigchld_through(true);
    // SAFETY: plain libc calls in a fresh single-threaded process.
    unsafe {
        for sig in [
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGHUP,
            libc::SIGTERM,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGPIPE,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let name = c"flowrun-guard";
        libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
    let cgroup = (cgroup != "-").then(|| PathBuf::from(cgroup));
    // Opened now, so the kill works even if the path were renamed.
    let kill = cgroup.as_ref().and_then(|c| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(c.join("cgroup.kill"))
            .ok()
    });
    let mut groups = HashSet::new();
    let mut pids = HashSet::new();
    // SAFETY: fd 0 is the runner's pipe, owned by this process.
    let pipe = unsafe { File::from_raw_fd(0) };
    for line in BufReader::new(pipe).lines() {
        let Ok(line) = line else { break };
        apply(&line, &mut groups, &mut pids);
    }
    if let Some(mut k) = kill {
        let _ = k.write_all(b"1");
    }
    for g in groups {
        // SAFETY: a group the runner registered (never 0 or 1: see apply).
        unsafe { libc::kill(-g, libc::SIGKILL) };
    }
    for p in pids {
        // SAFETY: as above.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    if let Some(c) = cgroup {
        if c.exists() {
            super::cgroup::kill_and_remove(&c, std::time::Duration::from_secs(5));
        }
    }
    0
}

/// Apply one registration line.
pub fn apply(line: &str, groups: &mut HashSet<i32>, pids: &mut HashSet<i32>) {
    let Some((kind, n)) = line.split_once(' ') else {
        return;
    };
    let Ok(n) = n.trim().parse::<i32>() else {
        return;
    };
    if n <= 1 {
        return; // never kill(-1), killpg(0/1)
    }
    match kind {
        "g" => {
            groups.insert(n);
        }
        "G" => {
            groups.remove(&n);
        }
        "p" => {
            pids.insert(n);
        }
        "P" => {
            pids.remove(&n);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_replay_in_order() {
        let (mut g, mut p) = (HashSet::new(), HashSet::new());
        for l in [
            "g 10", "p 11", "G 10", "g 12", "g 1", "p 0", "g -5", "x 3", "g",
        ] {
            apply(l, &mut g, &mut p);
        }
        assert_eq!(g, HashSet::from([12]));
        assert_eq!(p, HashSet::from([11]));
    }

    /// A guard without a process: its registrations go only to `record`,
    /// the log the next run replays (and the pipe would carry).
    fn detached(record: File) -> Guard {
        Guard {
            pid: 0,
            pidfd: None,
            pipe: None,
            queue: Vec::new(),
            removals: String::new(),
            groups: HashMap::new(),
            checks: HashSet::new(),
            pids: HashSet::new(),
            cgroup: None,
            record: Some(record),
        }
    }

    /// What the guard (or the next run) would hold after the log so far.
    fn replayed(path: &Path) -> (HashSet<i32>, String) {
        let text = std::fs::read_to_string(path).expect("record");
        let (mut g, mut p) = (HashSet::new(), HashSet::new());
        for l in text.lines() {
            apply(l, &mut g, &mut p);
        }
        assert!(p.is_empty(), "{text}");
        (g, text)
    }

    fn log_file(name: &str) -> (PathBuf, File) {
        let path =
            std::env::temp_dir().join(format!("flowrun-guard-test-{name}-{}", std::process::id()));
        let f = File::create(&path).expect("log");
        (path, f)
    }

    fn spawn_in_group(prog: &str, args: &[&str], pgid: i32) -> std::process::Child {
        Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .process_group(pgid)
            .spawn()
            .expect("spawn")
    }

    #[test]
    fn a_group_registered_twice_stays_until_both_owners_remove_it() {
        let (path, f) = log_file("owners");
        let mut g = detached(f);
        g.add_group(4242);
        g.add_group(4242);
        g.flush();
        g.remove_group(4242);
        g.flush();
        let (now, text) = replayed(&path);
        assert_eq!(now, HashSet::from([4242]), "{text}");
        assert_eq!(text, "g 4242\n", "one line per change of the set");
        g.remove_group(4242);
        g.remove_group(4242); // a third removal changes nothing
        g.flush();
        let (now, text) = replayed(&path);
        assert!(now.is_empty(), "{text}");
        assert_eq!(text, "g 4242\nG 4242\n");
        let _ = std::fs::remove_file(path);
    }

    /// A check's group stays registered while it has a member — its
    /// leader's zombie, then a process left in it after the leader was
    /// reaped — and is unregistered by the first sweep after its last
    /// member is reaped.
    #[test]
    fn a_check_group_is_unregistered_once_empty_not_before() {
        let (path, f) = log_file("check");
        let mut g = detached(f);
        let mut leader = spawn_in_group("true", &[], 0);
        let pgid = leader.id() as i32;
        // A process left in the check's group (all ours, so this test
        // reaps every member itself).
        let mut member = spawn_in_group("sleep", &["0.3"], pgid);
        g.add_check_group(pgid);
        g.flush();
        // The leader has exited (or soon does) but is not reaped: a member.
        std::thread::sleep(std::time::Duration::from_millis(50));
        g.sweep_checks(None);
        g.flush();
        assert_eq!(replayed(&path).0, HashSet::from([pgid]));
        let _ = leader.wait();
        g.sweep_checks(None);
        g.flush();
        assert_eq!(
            replayed(&path).0,
            HashSet::from([pgid]),
            "unregistered while a member was left"
        );
        let _ = member.wait();
        g.sweep_checks(None);
        g.flush();
        let (now, text) = replayed(&path);
        assert!(now.is_empty(), "{text}");
        assert!(g.checks.is_empty() && g.groups.is_empty());
        let _ = std::fs::remove_file(path);
    }

    /// 200 checks come and go: no registration is left behind, and every
    /// one was made (one `g` and one `G` line each).
    #[test]
    fn checks_that_come_and_go_leave_no_registration() {
        let (path, f) = log_file("churn");
        let mut g = detached(f);
        for _ in 0..200 {
            let mut c = spawn_in_group("true", &[], 0);
            g.add_check_group(c.id() as i32);
            g.flush();
            let _ = c.wait();
            g.sweep_checks(None);
            g.flush();
        }
        let (now, text) = replayed(&path);
        assert!(now.is_empty(), "left registered: {now:?}");
        assert_eq!(text.lines().filter(|l| l.starts_with("g ")).count(), 200);
        assert_eq!(text.lines().filter(|l| l.starts_with("G ")).count(), 200);
        assert!(g.checks.is_empty() && g.groups.is_empty());
        let _ = std::fs::remove_file(path);
    }

    /// A group whose leader still awaits its status (it is in the
    /// reaper's waiters, so unreaped: a member) is not probed; once the
    /// reaper took the leader, the group is probed and, empty, unregistered.
    #[test]
    fn a_check_group_whose_leader_awaits_its_status_is_not_probed() {
        let (path, f) = log_file("waiters");
        let mut g = detached(f);
        let mut leader = spawn_in_group("true", &[], 0);
        let pgid = leader.id() as i32;
        let waiters = super::super::reap::Waiters::default();
        let (tx, _rx) = tokio::sync::oneshot::channel();
        waiters.lock().expect("waiters").insert(pgid, tx);
        g.add_check_group(pgid);
        let _ = leader.wait();
        // Still listed: trusted to be unreaped (here it is not, so a probe
        // would have found the group empty).
        g.sweep_checks(Some(&waiters));
        g.flush();
        assert_eq!(replayed(&path).0, HashSet::from([pgid]));
        waiters.lock().expect("waiters").remove(&pgid);
        g.sweep_checks(Some(&waiters));
        g.flush();
        assert!(replayed(&path).0.is_empty());
        let _ = std::fs::remove_file(path);
    }

    /// With a cgroup the guard needs no registrations, and keeps none.
    #[test]
    fn cgroup_guards_keep_no_check_groups() {
        let (path, f) = log_file("cgroup");
        let mut g = detached(f);
        g.cgroup = Some(PathBuf::from("/nonexistent"));
        g.add_check_group(4243);
        g.flush();
        assert!(g.checks.is_empty() && g.groups.is_empty());
        assert!(replayed(&path).1.is_empty());
        let _ = std::fs::remove_file(path);
    }
}
