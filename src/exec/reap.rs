//! Reaping. flowrun is a child subreaper, so orphaned grandchildren become
//! its children; the supervisor reaps every child with `waitpid(-1,
//! WNOHANG)` while handling a SIGCHLD message, and updates its state in the
//! same step: whenever it believes a leader runs, the leader is alive or a
//! zombie, so signalling its pid is safe. This is safe because nothing else waits: no
//! tokio::process, and std's `Command` is only used to spawn (its internal
//! `waitpid` after a failed exec runs synchronously on the same thread as
//! this reaper, so the two can never interleave).
//!
//! Leaders are reaped as soon as they exit. Their process-group id cannot be
//! recycled while any member of the group lives (the kernel keeps the pid
//! allocated while it is in use as a pgid), and flowrun stops signalling a
//! group as soon as `kill(-pgid, 0)` reports it empty, so a `killpg` never
//! reaches a group flowrun did not create.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Code(i32),
    Signal(i32),
}

impl Status {
    pub fn success(self) -> bool {
        self == Status::Code(0)
    }

    /// The shell convention: the code, or 128 + the signal number.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Code(c) => c,
            Status::Signal(s) => 128 + s,
        }
    }

    pub fn signal_name(self) -> Option<&'static str> {
        match self {
            Status::Signal(s) => Some(
                nix::sys::signal::Signal::try_from(s)
                    .map(|s| s.as_str())
                    .unwrap_or("SIGUNKNOWN"),
            ),
            Status::Code(_) => None,
        }
    }
}

/// Pids whose status someone awaits directly (exec ready checks).
pub type Waiters = Arc<Mutex<HashMap<i32, oneshot::Sender<Status>>>>;

/// A reaped child: its pid, how it ended, and the CPU time (user and
/// system) it and the children it waited for used, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reaped {
    pub pid: i32,
    pub status: Status,
    pub cpu_ms: u64,
}

/// What [`reap_all`] saw: children that ended (reaped), and children that
/// were stopped (`true`) or continued (`false`) by a signal since the last
/// look, in order.
#[derive(Debug, Default)]
pub struct Changes {
    pub exits: Vec<Reaped>,
    pub stops: Vec<(i32, bool)>,
}

/// Reap every exited child (those not claimed by a waiter are returned),
/// and collect the job-control changes of the others.
pub fn reap_all(waiters: &Waiters) -> Changes {
    let mut out = Changes::default();
    loop {
        let mut st = 0;
        // SAFETY: all-zero is a valid rusage (plain integers).
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 with valid out-pointers.
        let pid = unsafe {
            libc::wait4(
                -1,
                &mut st,
                libc::WNOHANG | libc::WUNTRACED | libc::WCONTINUED,
                &mut ru,
            )
        };
        if pid <= 0 {
            break;
        }
        let status = if libc::WIFEXITED(st) {
            Status::Code(libc::WEXITSTATUS(st))
        } else if libc::WIFSIGNALED(st) {
            Status::Signal(libc::WTERMSIG(st))
        } else {
            if libc::WIFSTOPPED(st) || libc::WIFCONTINUED(st) {
                out.stops.push((pid, libc::WIFSTOPPED(st)));
            }
            continue;
        };
        let waiter = waiters.lock().ok().and_then(|mut w| w.remove(&pid));
        match waiter {
            Some(tx) => {
                let _ = tx.send(status);
            }
            None => out.exits.push(Reaped {
                pid,
                status,
                cpu_ms: ms(ru.ru_utime) + ms(ru.ru_stime),
            }),
        }
    }
    out
}

fn ms(t: libc::timeval) -> u64 {
    (t.tv_sec.max(0) as u64) * 1000 + (t.tv_usec.max(0) as u64) / 1000
}

/// The process group of `pid`, from `/proc/PID/stat`.
pub fn pgid_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may contain spaces and parens):
    // state, ppid, pgrp.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Whether the process group still has a member (a zombie counts).
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(-pgid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Our remaining children other than `except`, at exit: adopted orphans
/// that escaped their process group. Read from the kernel's list of each of
/// our threads' children (`/proc/self/task/*/children`: an orphan is
/// re-parented to one of the subreaper's threads), which costs O(our
/// children); only where that file does not exist (kernels without
/// CONFIG_PROC_CHILDREN) is every process's `/proc/PID/stat` scanned.
pub fn remaining_children(except: &[i32]) -> Vec<i32> {
    let mut out = Vec::new();
    match children_from_tasks() {
        Some(children) => out.extend(children),
        None => out.extend(children_from_scan()),
    }
    out.retain(|pid| !except.contains(pid));
    out.sort_unstable();
    out.dedup();
    out
}

fn children_from_tasks() -> Option<Vec<i32>> {
    let leader = std::process::id().to_string();
    let list = |tid: &str| std::fs::read_to_string(format!("/proc/self/task/{tid}/children"));
    let mut out = Vec::new();
    let mut add =
        |l: String| out.extend(l.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    // A thread that ends hands its children to the first live thread of
    // the process, the leader (kernel/exit.c, find_alive_thread): so the
    // other threads' lists are read first, a thread gone meanwhile is
    // skipped, and the leader's list, read last, holds whatever moved.
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let tid = task.file_name();
        let tid = tid.to_str().unwrap_or_default();
        if tid != leader {
            if let Ok(l) = list(tid) {
                add(l);
            }
        }
    }
    // Only the leader's list failing means there are no lists (no
    // CONFIG_PROC_CHILDREN).
    add(list(&leader).ok()?);
    Some(out)
}

fn children_from_scan() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command (which may contain spaces and parens).
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let _state = f.next();
        if f.next().and_then(|p| p.parse::<i32>().ok()) == Some(me) {
            out.push(pid);
        }
    }
    out
}

#[cfg(test)]
mod children_tests {
    use super::*;

    #[test]
    fn task_children_list_matches_a_full_scan() {
        let mut kids: Vec<std::process::Child> = (0..3)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("5")
                    .spawn()
                    .expect("spawn sleep")
            })
            .collect();
        let pids: Vec<i32> = kids.iter().map(|c| c.id() as i32).collect();
        let from_tasks = children_from_tasks().expect("CONFIG_PROC_CHILDREN");
        let from_scan = children_from_scan();
        for pid in &pids {
            assert!(
                from_tasks.contains(pid),
                "{pid} missing from the task lists"
            );
            assert!(from_scan.contains(pid), "{pid} missing from the scan");
        }
        let found = remaining_children(&pids[..1]);
        // Threads that end while the lists are read: the children are
        // still all found, from the lists, never from the full scan.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::thread::spawn(|| ()).join();
                }
            })
        };
        for _ in 0..300 {
            let listed = children_from_tasks().expect("read from the task lists");
            assert!(pids.iter().all(|p| listed.contains(p)));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().expect("churn thread");
        // The child of a thread that has ended is the leader's now.
        let mut orphaned = std::thread::spawn(|| {
            std::process::Command::new("sleep")
                .arg("5")
                .spawn()
                .expect("spawn sleep")
        })
        .join()
        .expect("spawning thread");
        let listed = children_from_tasks().expect("read from the task lists");
        assert!(listed.contains(&(orphaned.id() as i32)));
        let _ = orphaned.kill();
        let _ = orphaned.wait();
        assert!(!found.contains(&pids[0]) && found.contains(&pids[1]));
        for k in &mut kids {
            let _ = k.kill();
            let _ = k.wait();
        }
    }
}
