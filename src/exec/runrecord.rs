//! Run records: what a run leaves for the next run of the same topology to
//! find if the runner and its guard die together.
//!
//! Records live in the control plane's private runtime directory
//! (`$XDG_RUNTIME_DIR/flowrun`, else `$TMPDIR/flowrun-UID`: created 0700,
//! refused unless it is a real directory owned by us and closed to
//! others). A run of topology KEY (a hash of the file's canonical path)
//! by runner PID writes `KEY.PID`:
//!
//! ```text
//! runner PID STARTTIME BOOT_ID
//! cgroup PATH                       (cgroup containment)
//! g PGID / G PGID / p PID / P PID   (process groups: the guard's log)
//! ```
//!
//! and keeps its notify sockets in `KEY.PID.d/`. A normal exit removes
//! both. Before a run starts, every record of the same KEY whose runner is
//! gone (no process with that pid and start time) is a dead run: every
//! process still in its cgroup — or, without one, in a process group it
//! registered and started after it — is reported and killed, then the
//! cgroup, the record and its directory are removed. Directories of dead
//! runs of other topologies are removed too, and so are their cgroups and
//! records once nothing of them is left (an empty cgroup; without one, no
//! process in any group or pid it registered); otherwise they stay for
//! that topology's next run. The same pass removes the control files of
//! every topology whose runner is gone (a lock nobody holds, and its
//! socket: see [`crate::control::paths::remove_if_stale`]), so runs
//! killed by SIGKILL do not leave files behind for good.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The private directory for run records, created if needed: the control
/// plane's runtime directory (the two share it).
pub fn private_dir() -> Result<PathBuf, String> {
    let dir = crate::control::paths::runtime_dir();
    crate::control::paths::ensure_private_dir(&dir)?;
    Ok(dir)
}

/// A stable key for a topology file: FNV-1a of its canonical path.
pub fn key(file: &Path) -> String {
    let path = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A process's start time (clock ticks after boot), from `/proc/PID/stat`.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn pgid_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// This boot's id (read once: a scan compares it with every record).
fn boot_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
}

/// A process's command line, for reports.
pub fn command_of(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let s: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if s.is_empty() {
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| format!("[{}]", c.trim()))
            .unwrap_or_else(|_| "?".into())
    } else {
        s.join(" ")
    }
}

/// This run's record.
pub struct RunRecord {
    pub file: PathBuf,
    /// Private directory for this run's notify sockets, made by the first
    /// one.
    pub run_dir: PathBuf,
}

impl RunRecord {
    /// Write the record; returns it and an append handle for the guard's
    /// registration log.
    pub fn create(
        dir: &Path,
        key: &str,
        cgroup: Option<&Path>,
    ) -> io::Result<(RunRecord, fs::File)> {
        let pid = std::process::id() as i32;
        let file = dir.join(format!("{key}.{pid}"));
        // Made by the first notify socket (ready.rs), not here: a run
        // without one has no directory to remove at its end (an `rmdir`
        // on the record's file system costs about as much as the rest of
        // the end). One a dead runner of the same pid left goes now.
        let run_dir = dir.join(format!("{key}.{pid}.d"));
        let _ = fs::remove_dir_all(&run_dir);
        let mut f = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&file)?;
        let mut text = format!(
            "runner {pid} {} {}\n",
            start_time(pid).unwrap_or(0),
            boot_id()
        );
        if let Some(c) = cgroup {
            text.push_str(&format!("cgroup {}\n", c.display()));
        }
        f.write_all(text.as_bytes())?;
        let log = fs::OpenOptions::new().append(true).open(&file)?;
        Ok((RunRecord { file, run_dir }, log))
    }

    /// Normal exit: nothing is left.
    pub fn remove(&self) {
        let _ = fs::remove_dir_all(&self.run_dir);
        let _ = fs::remove_file(&self.file);
    }
}

/// A run whose runner is gone.
struct Dead {
    file: PathBuf,
    runner_start: u64,
    same_boot: bool,
    cgroup: Option<PathBuf>,
    groups: HashSet<i32>,
    pids: HashSet<i32>,
}

fn parse(file: &Path) -> Option<(i32, Dead)> {
    let text = fs::read_to_string(file).ok()?;
    let mut lines = text.lines();
    let mut head = lines.next()?.split_whitespace();
    if head.next()? != "runner" {
        return None;
    }
    let pid: i32 = head.next()?.parse().ok()?;
    let runner_start: u64 = head.next()?.parse().ok()?;
    let same_boot = head.next().unwrap_or("") == boot_id();
    let mut d = Dead {
        file: file.to_path_buf(),
        runner_start,
        same_boot,
        cgroup: None,
        groups: HashSet::new(),
        pids: HashSet::new(),
    };
    for l in lines {
        match l.strip_prefix("cgroup ") {
            Some(p) => d.cgroup = Some(PathBuf::from(p)),
            None => super::guard::apply(l, &mut d.groups, &mut d.pids),
        }
    }
    Some((pid, d))
}

/// `KEY.PID`: a [`key`] (hexadecimal) and a pid.
fn is_record_name(name: &str) -> bool {
    name.split_once('.').is_some_and(|(k, pid)| {
        !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_hexdigit())
            && !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
    })
}

fn runner_alive(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Kill what dead runs of topology `key` left; returns (pid, command) of
/// every process killed. Cleans the directories of every dead run.
pub fn reap_dead_runs(dir: &Path, key: &str) -> Vec<(i32, String)> {
    let mut killed = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return killed;
    };
    // Only records are read: the directory also holds other runs' notify
    // directories and the control plane's sockets and locks (of which the
    // stale ones are removed).
    let mut entries = Vec::new();
    for name in rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
    {
        if is_record_name(&name) {
            entries.push(name);
        } else if name.ends_with(".lock") {
            crate::control::paths::remove_if_stale(&dir.join(&name));
        }
    }
    entries.sort();
    for name in entries {
        let path = dir.join(&name);
        let Some((pid, dead)) = parse(&path) else {
            continue;
        };
        if dead.same_boot && runner_alive(pid, dead.runner_start) {
            continue;
        }
        if name.starts_with(&format!("{key}.")) {
            if dead.same_boot {
                killed.extend(kill_leftovers(&dead));
            }
            let _ = fs::remove_file(&dead.file);
        } else if let Some(cg) = dead.cgroup.as_deref() {
            // Another topology's dead run: only an empty cgroup (nothing to
            // kill) and its record are cleaned up here.
            if !dead.same_boot || !super::cgroup::populated(cg) {
                let _ = super::cgroup::remove_tree(cg);
                if !cg.exists() {
                    let _ = fs::remove_file(&dead.file);
                }
            }
        } else if !dead.same_boot || nothing_left(&dead) {
            // Another topology's dead run without a cgroup, of which no
            // registered group or process is left.
            let _ = fs::remove_file(&dead.file);
        }
        let _ = fs::remove_dir_all(dir.join(format!("{name}.d")));
    }
    killed
}

/// No process group and no process the dead run registered exists any
/// more. (One that exists may be a reused number: the record is kept for
/// its topology's next run, which checks start times.)
fn nothing_left(dead: &Dead) -> bool {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    let gone = |target: Pid| kill(target, None) == Err(nix::errno::Errno::ESRCH);
    dead.groups.iter().all(|&g| gone(Pid::from_raw(-g)))
        && dead.pids.iter().all(|&p| gone(Pid::from_raw(p)))
}

fn kill_leftovers(dead: &Dead) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    if let Some(cg) = &dead.cgroup {
        if cg.exists() {
            for pid in super::cgroup::procs_tree(cg) {
                out.push((pid, command_of(pid)));
            }
            super::cgroup::kill_and_remove(cg, std::time::Duration::from_secs(5));
        }
        return out;
    }
    if dead.groups.is_empty() && dead.pids.is_empty() {
        return out;
    }
    // Process groups: members started no earlier than the dead runner
    // (an older process cannot be one of its descendants).
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let member =
            dead.pids.contains(&pid) || pgid_of(pid).is_some_and(|g| dead.groups.contains(&g));
        if !member || start_time(pid).map_or(true, |t| t < dead.runner_start) {
            continue;
        }
        out.push((pid, command_of(pid)));
        // SAFETY: a member of a process group the dead run created,
        // started after it.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_records_are_read() {
        let k = key(Path::new("/tmp/t.pf"));
        assert!(is_record_name(&format!("{k}.4242")));
        for other in [
            format!("{k}.4242.d"),
            format!("t-{k}.sock"),
            format!("t-{k}.lock"),
            format!("{k}."),
            ".4242".to_string(),
            format!("{k}.42x"),
        ] {
            assert!(!is_record_name(&other), "{other}");
        }
    }

    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(
            key(Path::new("/nonexistent/a.pf")),
            key(Path::new("/nonexistent/a.pf"))
        );
        assert_ne!(
            key(Path::new("/nonexistent/a.pf")),
            key(Path::new("/nonexistent/b.pf"))
        );
        assert_eq!(key(Path::new("/x")).len(), 16);
    }

    #[test]
    fn a_dead_run_of_another_topology_is_forgotten_once_nothing_of_it_is_left() {
        let dir = std::env::temp_dir().join(format!("flowrun-rr-gone-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // Records of runners that are gone (pid 0 is never a process's),
        // one of whose registered groups still exists (ours), one whose
        // groups and processes are all gone (a pid past pid_max).
        let boot = boot_id();
        let ours = nix::unistd::getpgrp().as_raw();
        let kept = dir.join("aa.1");
        let gone = dir.join("bb.2");
        fs::write(&kept, format!("runner 0 1 {boot}\ng {ours}\n")).unwrap();
        fs::write(
            &gone,
            format!("runner 0 1 {boot}\ng 99999999\np 99999998\n"),
        )
        .unwrap();
        fs::create_dir(dir.join("bb.2.d")).unwrap();
        // And the control files a runner killed by SIGKILL left: a lock
        // nobody holds, and its socket.
        fs::write(dir.join("t-dd.lock"), "{}").unwrap();
        fs::write(dir.join("t-dd.sock"), "").unwrap();
        assert!(reap_dead_runs(&dir, "cc").is_empty());
        assert!(kept.exists(), "a group of it may still be alive");
        assert!(!gone.exists() && !dir.join("bb.2.d").exists());
        assert!(!dir.join("t-dd.lock").exists() && !dir.join("t-dd.sock").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_parse_back() {
        let dir = std::env::temp_dir().join(format!("flowrun-rr-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let (rec, mut log) = RunRecord::create(&dir, "k", Some(Path::new("/cg/x"))).unwrap();
        log.write_all(b"g 100\np 7\nG 100\ng 200\n").unwrap();
        let (pid, d) = parse(&rec.file).unwrap();
        assert_eq!(pid, std::process::id() as i32);
        assert!(d.same_boot && runner_alive(pid, d.runner_start));
        assert_eq!(d.cgroup.as_deref(), Some(Path::new("/cg/x")));
        assert_eq!(d.groups, HashSet::from([200]));
        assert_eq!(d.pids, HashSet::from([7]));
        // Our own live run is not a dead one.
        assert!(reap_dead_runs(&dir, "k").is_empty());
        // Its directory is made by the first notify socket.
        assert!(rec.file.exists() && !rec.run_dir.exists());
        fs::create_dir(&rec.run_dir).unwrap();
        fs::write(rec.run_dir.join("notify"), b"").unwrap();
        rec.remove();
        assert!(!rec.file.exists() && !rec.run_dir.exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
