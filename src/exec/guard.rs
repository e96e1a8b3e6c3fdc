//! The guard: a tiny single-threaded process forked before the tokio
//! runtime exists. The runner tells it, over a pipe, every process group
//! (`g PGID`) and lone process (`p PID`) it creates, and when one is gone
//! (`G PGID` / `P PID`). When the pipe reaches EOF — the runner finished, or
//! died, even by SIGKILL — the guard SIGKILLs every group and process still
//! registered, then exits. That is how "nothing survives a SIGKILL of the
//! runner" holds for grandchildren that stayed in their process group.
//!
//! The guard ignores the terminal's signals and leads its own process group,
//! so Ctrl+C cannot take it down before the runner. Its pipe's write end is
//! close-on-exec, so children never hold it open.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct Guard {
    pid: i32,
    pipe: Option<std::fs::File>,
    /// Removals not yet sent: they are batched (one write per supervisor
    /// step, [`Guard::flush`]); a registration is sent at once, after them,
    /// so the guard always sees removals and additions in order.
    removals: String,
}

impl Guard {
    /// Fork the guard. Must run while the process is single-threaded.
    /// `None` when it cannot be forked (the runner then works without it).
    pub fn fork() -> Option<Guard> {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 with a valid two-element array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return None;
        }
        // SAFETY: both fds were just created and are owned here.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the caller guarantees a single-threaded process, so the
        // child may allocate and use std freely.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return None;
        }
        if pid == 0 {
            drop(w);
            guard_main(r);
        }
        drop(r);
        Some(Guard {
            pid,
            pipe: Some(std::fs::File::from(w)),
            removals: String::new(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Send pending removals, then `line` (if any), in one write.
    fn send(&mut self, line: &str) {
        let mut buf = std::mem::take(&mut self.removals);
        buf.push_str(line);
        if buf.is_empty() {
            return;
        }
        if let Some(p) = &mut self.pipe {
            if p.write_all(buf.as_bytes()).is_err() {
                self.pipe = None;
            }
        }
    }

    /// Registrations are sent at once: a process must be known to the guard
    /// before anything of it can outlive the runner.
    pub fn add_group(&mut self, pgid: i32) {
        self.send(&format!("g {pgid}\n"));
    }
    pub fn add_pid(&mut self, pid: i32) {
        self.send(&format!("p {pid}\n"));
    }
    pub fn remove_group(&mut self, pgid: i32) {
        use std::fmt::Write as _;
        let _ = writeln!(self.removals, "G {pgid}");
    }
    pub fn remove_pid(&mut self, pid: i32) {
        use std::fmt::Write as _;
        let _ = writeln!(self.removals, "P {pid}");
    }

    /// Send the batched removals.
    pub fn flush(&mut self) {
        self.send("");
    }

    /// Close the pipe (the guard kills what is left and exits) and wait for
    /// the guard. Only call this when nothing else reaps.
    pub fn finish(mut self) {
        self.flush();
        self.pipe = None;
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

fn guard_main(r: OwnedFd) -> ! {
    // SAFETY: plain libc calls in a fresh single-threaded child.
    unsafe {
        libc::setpgid(0, 0);
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
        // stdio to /dev/null: the guard must not keep the runner's output
        // pipes open.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
        // Keep only the pipe: move it to fd 3, close the rest.
        let fd = r.as_raw_fd();
        if fd != 3 {
            libc::dup2(fd, 3);
        }
        std::mem::forget(r);
        if libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) != 0 {
            for f in 4..4096 {
                libc::close(f);
            }
        }
        let pipe = std::fs::File::from_raw_fd(3);
        let mut groups = std::collections::HashSet::new();
        let mut pids = std::collections::HashSet::new();
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let Some((kind, n)) = line.split_once(' ') else {
                continue;
            };
            let Ok(n) = n.parse::<i32>() else { continue };
            if n <= 1 {
                continue; // never kill(-1), killpg(0/1)
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
        for g in groups {
            libc::kill(-g, libc::SIGKILL);
        }
        for p in pids {
            libc::kill(p, libc::SIGKILL);
        }
        libc::_exit(0);
    }
}
