//! cgroup v2 containment.
//!
//! Where a writable cgroup2 hierarchy exists, every run gets a cgroup of
//! its own, created under the runner's cgroup when the runner may create
//! cgroups there, else under the hierarchy's root:
//!
//! ```text
//! flowrun-KEY-PID/            the run (KEY: the topology, see runrecord.rs)
//!   SLOT-GROUP/               one per group (a reload adds a new slot);
//!                             its cpu.stat is the group's CPU time
//!     procs/                  the group's processes (procs.N after N kills)
//!     ready/                  the group's `exec` ready checks
//! ```
//!
//! Services are born inside their group's cgroup (`clone3` with
//! `CLONE_INTO_CGROUP`, spawn.rs), ready checks join theirs between fork
//! and exec, so nothing they start can be outside it, whatever its session
//! or process group. One cgroup per group, not per process: a group is
//! what a systemd service is (its N processes are one service's workers),
//! and each cgroup costs about as much as the rest of a spawn to make and
//! again to remove (kernfs files, per-CPU statistics), which at N = 500
//! was most of what start and stop cost beyond the fork/exec floor.
//!
//! Each process still has a process group of its own, and a process's
//! tree is its process group, as without cgroups: its signals, its
//! leftovers' SIGKILL and its end (`kill(-pgid, 0)`) go there. The
//! group's cgroup is what catches the rest, the descendants that left
//! their process group (`setsid`, `setpgid`, a double-forked daemon):
//! the group's last process is down only when the cgroup is empty (a
//! cgroup with members left is then watched with inotify, the kernel
//! notifies on every change of `cgroup.events`, never polled); what is
//! left then is killed with the rest of that process's tree; a `to group`
//! signal sent to every process of the group (a drain, a stop or restart
//! of the group) reaches them too (listed, each signalled through a pidfd
//! after its membership is checked). SIGKILL of
//! the cgroup is a write to `cgroup.kill`, which also catches processes
//! forking at that moment. The guard holds the run's `cgroup.kill`, so a
//! runner SIGKILL reaches everything. CPU time comes from `cpu.stat`
//! (`usage_usec`), which every non-root cgroup has even with no
//! controller enabled. The tree is removed at exit.
//!
//! The hierarchy is found in `/proc/self/mountinfo` (filesystem type
//! `cgroup2`), the runner's own cgroup in `/proc/self/cgroup` (`0::PATH`).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// How the run's processes are contained (`--containment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Containment {
    /// cgroup v2 where a writable hierarchy exists, else process groups.
    #[default]
    Auto,
    /// cgroup v2, or refuse to start.
    Cgroup,
    /// Process groups and the guard only.
    ProcessGroup,
}

/// The mount point of the cgroup2 hierarchy, from mountinfo text.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let mut f = left.split_whitespace();
        let root = f.nth(3)?;
        let mount = f.next()?;
        // A bind mount of a sub-tree would hide our own cgroup's path.
        if root != "/" {
            continue;
        }
        return Some(PathBuf::from(unescape_mount(mount)));
    }
    None
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The runner's cgroup v2 path (relative to the hierarchy), from
/// `/proc/self/cgroup` text.
pub fn own_cgroup(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_start_matches('/').to_string())
}

/// Whether `clone3` exists (it answers a null argument with EINVAL, or
/// EFAULT, instead of ENOSYS).
pub fn have_clone3() -> bool {
    // SAFETY: clone3 with a zero size fails before touching the pointer.
    let r = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
    r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}

/// The cgroup2 mount and the parent under which a run cgroup can be made:
/// the runner's own cgroup if we may create one there, else the root.
/// `Err` says why cgroups cannot be used.
pub fn find_parent(probe_name: &str) -> Result<PathBuf, String> {
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let mount = cgroup2_mount(&info).ok_or("no cgroup2 hierarchy is mounted")?;
    if !have_clone3() {
        return Err("the kernel has no clone3".into());
    }
    if !cfg!(target_arch = "x86_64") {
        return Err("spawning into a cgroup (clone3) is implemented for x86_64 only".into());
    }
    let own = fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| own_cgroup(&t));
    let mut candidates = Vec::new();
    if let Some(own) = own.filter(|o| !o.is_empty()) {
        candidates.push(mount.join(own));
    }
    candidates.push(mount.clone());
    let mut last = String::new();
    for c in candidates {
        if !c.join("cgroup.kill").exists() && c != mount {
            continue;
        }
        let probe = c.join(probe_name);
        match fs::create_dir(&probe) {
            Ok(()) => {
                let ok = probe.join("cgroup.kill").exists();
                let _ = fs::remove_dir(&probe);
                if ok {
                    return Ok(c);
                }
                last = format!(
                    "{} has no cgroup.kill (kernel older than 5.14)",
                    c.display()
                );
            }
            Err(e) => last = format!("cannot create a cgroup in {}: {e}", c.display()),
        }
    }
    Err(last)
}

/// Write `1` to a `cgroup.kill` file.
pub fn kill_dir(dir: &Path) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.kill"))?
        .write_all(b"1")
}

/// The first bytes of a small kernfs file, in one `read` (these files are
/// generated whole at each read; no `stat`, no growing buffer). With
/// `dir`, `path` is relative to that directory (a shorter lookup).
fn head<'b>(dir: Option<&OwnedFd>, path: &Path, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    use nix::fcntl::OFlag;
    let fd = nix::fcntl::openat(
        dir.map(AsRawFd::as_raw_fd),
        path,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    // SAFETY: just opened, owned here.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let n = nix::unistd::read(fd.as_raw_fd(), buf).ok()?;
    Some(&buf[..n])
}

/// `populated` of a `cgroup.events` (its first line); a missing cgroup is
/// empty.
fn populated_at(dir: Option<&OwnedFd>, events: &Path) -> bool {
    let mut buf = [0u8; 32];
    head(dir, events, &mut buf).is_some_and(|t| t.starts_with(b"populated 1"))
}

/// `usage_usec` of a `cpu.stat` (its first line; descendants included).
fn usage_at(dir: Option<&OwnedFd>, stat: &Path) -> Option<u64> {
    let mut buf = [0u8; 64];
    let t = head(dir, stat, &mut buf)?;
    let line = t.split(|&b| b == b'\n').next()?;
    std::str::from_utf8(line.strip_prefix(b"usage_usec ")?)
        .ok()?
        .parse()
        .ok()
}

/// `populated` of a cgroup's `cgroup.events`; a missing cgroup is empty.
pub fn populated(dir: &Path) -> bool {
    populated_at(None, &dir.join("cgroup.events"))
}

/// `usage_usec` of a cgroup's `cpu.stat` (its descendants included).
pub fn cpu_usec(dir: &Path) -> Option<u64> {
    usage_at(None, &dir.join("cpu.stat"))
}

/// Every pid in a cgroup and its descendants.
pub fn procs_tree(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(t) = fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    out
}

/// Remove a cgroup tree, deepest first (only empty cgroups can go).
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = remove_tree(&e.path());
            }
        }
    }
    fs::remove_dir(dir)
}

/// Kill everything in a cgroup tree, wait (up to `within`) for it to
/// empty, and remove it. Returns whether it is gone.
pub fn kill_and_remove(dir: &Path, within: std::time::Duration) -> bool {
    let _ = kill_dir(dir);
    let end = std::time::Instant::now() + within;
    while populated(dir) && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    remove_tree(dir).is_ok() || !dir.exists()
}

/// One group's cgroups: `SLOT-GROUP/` (the group's CPU time) with its
/// processes' cgroup `procs/` and its ready checks' `ready/` inside.
struct GroupDir {
    name: String,
    /// `SLOT-GROUP/`.
    path: PathBuf,
    /// The cgroup its processes are born into now: `procs`, then
    /// `procs.N` after N kills (see [`RunCgroup::procs_fd`]).
    procs: PathBuf,
    fd: OwnedFd,
    /// `cgroup.kill` was written to `procs`: the next spawn gets a new one.
    killed: bool,
    /// Process cgroups this group had (the next one is `procs.N`).
    made: u32,
    /// `procs`'s `cgroup.events` is watched (see [`RunCgroup::watch`]).
    watched: bool,
}

/// The run's cgroup tree and the inotify instance watching it.
pub struct RunCgroup {
    pub path: PathBuf,
    /// The hierarchy's mount point.
    mount: PathBuf,
    /// Slot → the group's cgroups.
    groups: HashMap<usize, GroupDir>,
    ready: HashMap<usize, OwnedFd>,
    inotify: Option<nix::sys::inotify::Inotify>,
}

impl RunCgroup {
    /// Create `parent/name` (`parent` from [`find_parent`]).
    pub fn create(parent: &Path, name: &str) -> io::Result<RunCgroup> {
        let info = fs::read_to_string("/proc/self/mountinfo")?;
        let mount = cgroup2_mount(&info).ok_or(io::ErrorKind::NotFound)?;
        let path = parent.join(name);
        fs::create_dir(&path)?;
        let inotify = nix::sys::inotify::Inotify::init(
            nix::sys::inotify::InitFlags::IN_NONBLOCK | nix::sys::inotify::InitFlags::IN_CLOEXEC,
        )
        .ok();
        Ok(RunCgroup {
            path,
            mount,
            groups: HashMap::new(),
            ready: HashMap::new(),
            inotify,
        })
    }

    /// A copy of the inotify descriptor (non-blocking): readable when some
    /// watched `cgroup.events` changed. Watches added later count too.
    pub fn inotify_fd(&self) -> Option<OwnedFd> {
        use std::os::fd::AsFd;
        self.inotify.as_ref()?.as_fd().try_clone_to_owned().ok()
    }

    /// The group in `slot`, its cgroups made on first use, and a new
    /// process cgroup if the last one was killed.
    ///
    /// A cgroup that was killed through `cgroup.kill` is never born into
    /// again: on the 6.18 kernel this was written on, a child cloned with
    /// `CLONE_INTO_CGROUP` into a cgroup killed earlier was itself
    /// SIGKILLed at birth, every time (observed, not traced into the
    /// kernel; a fresh cgroup ends it). The group's next process gets a
    /// new, empty `procs.N`, and the old one is removed (it is empty: a
    /// group's process cgroup is killed only when its last process is
    /// down, and that process is down once the cgroup is empty).
    fn group(&mut self, slot: usize, name: &str) -> io::Result<&GroupDir> {
        if !self.groups.contains_key(&slot) {
            let path = self.path.join(format!("{slot}-{}", sanitize(name)));
            make_dir(&path)?;
            let procs = path.join("procs");
            make_dir(&procs)?;
            let fd = open_dir(&procs)?;
            self.groups.insert(
                slot,
                GroupDir {
                    name: name.to_string(),
                    path,
                    procs,
                    fd,
                    killed: false,
                    made: 1,
                    watched: false,
                },
            );
        }
        let g = self.groups.get_mut(&slot).expect("just made");
        if g.killed {
            let procs = g.path.join(format!("procs.{}", g.made));
            make_dir(&procs)?;
            let fd = open_dir(&procs)?;
            let old = std::mem::replace(&mut g.procs, procs);
            let _ = fs::remove_dir(old);
            g.fd = fd;
            g.killed = false;
            g.made += 1;
            g.watched = false;
        }
        Ok(g)
    }

    /// The cgroup the processes of the group in `slot` are born into
    /// (made on first use): a descriptor to keep open until the spawn
    /// returns. (Not kept: every descriptor the runner holds is copied
    /// into, and closed by, every child it starts.)
    pub fn procs_fd(&mut self, slot: usize, name: &str) -> io::Result<OwnedFd> {
        self.group(slot, name)?.fd.try_clone()
    }

    /// The cgroup the group's `exec` ready checks join: an open
    /// `cgroup.procs` (write `0` to join).
    pub fn ready_procs(&mut self, slot: usize, name: &str) -> io::Result<std::sync::Arc<OwnedFd>> {
        if !self.ready.contains_key(&slot) {
            let path = self.group(slot, name)?.path.join("ready");
            make_dir(&path)?;
            let f = fs::OpenOptions::new()
                .write(true)
                .open(path.join("cgroup.procs"))?;
            self.ready.insert(slot, OwnedFd::from(f));
        }
        // The fd is shared with each check's spawn; dup it for the Arc.
        let fd = self.ready[&slot].try_clone()?;
        Ok(std::sync::Arc::new(fd))
    }

    /// Watch the `cgroup.events` of the group's process cgroup from now on
    /// (once its last process's leader is gone and something is left in
    /// it): its emptying then arrives through [`RunCgroup::inotify_fd`].
    /// Only such cgroups are watched: an inotify watch costs at creation,
    /// and the instance's close waits for the kernel to free every watch
    /// it ever had. The caller reads [`RunCgroup::populated`] again after
    /// this, so an emptying between its first read and the watch is not
    /// missed. Returns whether it is watched (a second call adds nothing).
    pub fn watch(&mut self, slot: usize) -> bool {
        let (Some(ino), Some(g)) = (&self.inotify, self.groups.get_mut(&slot)) else {
            return false;
        };
        if g.watched {
            return true;
        }
        g.watched = ino
            .add_watch(
                &g.procs.join("cgroup.events"),
                nix::sys::inotify::AddWatchFlags::IN_MODIFY,
            )
            .is_ok();
        g.watched
    }

    /// Whether `cgroup.kill` was written to the group's process cgroup
    /// (the next [`RunCgroup::procs_fd`] makes a new one).
    pub fn killed(&self, slot: usize) -> bool {
        self.groups.get(&slot).is_some_and(|g| g.killed)
    }

    /// Whether any process is left in the group's process cgroup.
    pub fn populated(&self, slot: usize) -> bool {
        self.groups
            .get(&slot)
            .is_some_and(|g| populated_at(Some(&g.fd), Path::new("cgroup.events")))
    }

    /// SIGKILL everything in the group's process cgroup (its next process
    /// is born into a new one).
    pub fn kill(&mut self, slot: usize) {
        if let Some(g) = self.groups.get_mut(&slot) {
            g.killed = true;
            let _ = kill_dir(&g.procs);
        }
    }

    /// Send `sig` (then SIGCONT, so a stopped member can act on it) to every
    /// member of the group's process cgroup for which `skip(pid)` is false:
    /// the members that left their process's process group, which a
    /// process-group signal does not reach. Each listed pid is pinned with
    /// a pidfd and signalled only if it is still in this cgroup, so a pid
    /// freed and reused after the listing is never signalled. Returns the
    /// pids signalled.
    pub fn signal_members(
        &self,
        slot: usize,
        sig: i32,
        mut skip: impl FnMut(i32) -> bool,
    ) -> Vec<i32> {
        let mut sent = Vec::new();
        let (Some(g), Some(want)) = (self.groups.get(&slot), self.member_line(slot)) else {
            return sent;
        };
        let cont = sig != libc::SIGKILL && sig != libc::SIGCONT;
        for pid in procs_tree(&g.procs) {
            if pid <= 1 || skip(pid) {
                continue;
            }
            // SAFETY: pidfd_open returns a new descriptor (owned below).
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
            if fd < 0 {
                continue;
            }
            // SAFETY: just opened, owned here.
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            let member = fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|t| {
                t.lines().any(|line| {
                    line == want || line.strip_prefix(&want).is_some_and(|r| r.starts_with('/'))
                })
            });
            if !member {
                continue;
            }
            for s in [Some(sig), cont.then_some(libc::SIGCONT)]
                .into_iter()
                .flatten()
            {
                // SAFETY: a pidfd we own; null siginfo, no flags.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        s,
                        std::ptr::null::<libc::siginfo_t>(),
                        0u32,
                    )
                };
            }
            sent.push(pid);
        }
        sent
    }

    /// CPU time of every group so far (all its processes and ready checks,
    /// removed process cgroups included: the kernel adds a removed
    /// cgroup's time to its parent), in milliseconds, by group name, in
    /// slot order.
    pub fn group_cpu_ms(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(usize, String, u64)> = self
            .groups
            .iter()
            .filter_map(|(s, g)| Some((*s, g.name.clone(), cpu_usec(&g.path)? / 1000)))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, n, ms)| (n, ms)).collect()
    }

    /// The `/proc/PID/cgroup` line of a process born into the group's
    /// process cgroup.
    pub fn member_line(&self, slot: usize) -> Option<String> {
        let g = self.groups.get(&slot)?;
        let rel = g.procs.strip_prefix(&self.mount).ok()?;
        Some(format!("0::/{}", rel.display()))
    }

    /// Exit: SIGKILL the whole run and return once it is empty, reaping
    /// our children meanwhile (adopted orphans count as populated while
    /// they are zombies). No round limit: `cgroup.kill` also kills what
    /// forks while it runs.
    pub fn sweep(&self, mut reap: impl FnMut()) {
        loop {
            reap();
            if !populated(&self.path) {
                return;
            }
            let _ = kill_dir(&self.path);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Remove the tree (after [`RunCgroup::sweep`]): the cgroups it made,
    /// deepest first, each with one `rmdir`; then whatever is left (a
    /// cgroup a process made inside its own), by listing.
    pub fn remove(&mut self) -> io::Result<()> {
        self.ready.clear();
        self.inotify = None;
        for g in std::mem::take(&mut self.groups).into_values() {
            let _ = fs::remove_dir(&g.procs);
            let _ = fs::remove_dir(g.path.join("ready"));
            let _ = fs::remove_dir(&g.path);
        }
        match fs::remove_dir(&self.path) {
            Ok(()) => Ok(()),
            Err(_) => remove_tree(&self.path),
        }
    }
}

/// Create a cgroup (it may exist).
fn make_dir(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn open_dir(p: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(p)?;
    Ok(OwnedFd::from(f))
}

/// A group name as a directory name (names are identifiers already; this
/// only guards against the unexpected).
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_among_v1_mounts() {
        let info = "\
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
31 25 0:27 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/cpu rw shared:9 - cgroup cgroup rw,cpu
";
        assert_eq!(
            cgroup2_mount(info),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let only_v1 = "42 31 0:39 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(cgroup2_mount(only_v1), None);
        let escaped = "41 31 0:38 / /mnt/a\\040b rw shared:1 - cgroup2 none rw\n";
        assert_eq!(cgroup2_mount(escaped), Some(PathBuf::from("/mnt/a b")));
        let sub = "41 31 0:38 /sub /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(sub), None);
    }

    #[test]
    fn own_cgroup_is_the_unified_line() {
        let t = "9:name=systemd:/\n4:memory:/x/y\n0::/user.slice/a.scope\n";
        assert_eq!(own_cgroup(t).as_deref(), Some("user.slice/a.scope"));
        assert_eq!(own_cgroup("0::/\n").as_deref(), Some(""));
        assert_eq!(own_cgroup("4:memory:/x\n"), None);
    }

    /// A real run cgroup for a unit test, with a `sleep` born (clone3) in
    /// the process cgroup of group 0. Whatever happens to the test, a
    /// failed assertion included, dropping it kills and reaps its children
    /// and removes the tree.
    struct Sandbox {
        run: RunCgroup,
        /// Its children, until reaped.
        children: Vec<i32>,
    }

    impl Sandbox {
        /// `None` (saying why) where no writable cgroup2 hierarchy exists.
        fn new(tag: &str) -> Option<Sandbox> {
            let pid = std::process::id();
            let parent = match find_parent(&format!("flowrun-unit-probe-{tag}{pid}")) {
                Ok(p) => p,
                Err(why) => {
                    eprintln!("SKIPPED: {why}");
                    return None;
                }
            };
            let run = RunCgroup::create(&parent, &format!("flowrun-unit-{tag}{pid}"))
                .expect("create the run cgroup");
            let mut sandbox = Sandbox {
                run,
                children: Vec::new(),
            };
            sandbox.spawn(&["sleep", "600"], true);
            Some(sandbox)
        }

        /// Start `argv` in group 0's process cgroup (in a process group of
        /// its own when `own`): its pid.
        fn spawn(&mut self, argv: &[&str], own: bool) -> i32 {
            let fd = self.run.procs_fd(0, "g").expect("the group's cgroup");
            let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
            let spec = super::super::spawn::SpawnSpec {
                argv: &argv,
                env: &[],
                cwd: Path::new("/"),
                own_group: own,
                die_with_parent: true,
                capture: false,
                cgroup: Some(fd.as_raw_fd()),
            };
            let inh = super::super::spawn::Inherited {
                nofile: libc::rlimit {
                    rlim_cur: 1024,
                    rlim_max: 1024,
                },
                runner_pid: std::process::id() as i32,
            };
            let child = super::super::spawn::spawn_service(&spec, inh).expect("spawn");
            self.children.push(child.pid);
            child.pid
        }

        /// Reap child `pid` (waiting for it): its wait status.
        fn reap(&mut self, pid: i32) -> i32 {
            let mut st = 0;
            if let Some(i) = self.children.iter().position(|&c| c == pid) {
                self.children.remove(i);
                // SAFETY: our own child, not reaped yet.
                unsafe { libc::waitpid(pid, &mut st, 0) };
            }
            st
        }
    }

    impl Drop for Sandbox {
        fn drop(&mut self) {
            for pid in std::mem::take(&mut self.children) {
                // SAFETY: our own child, not reaped yet (so its pid is ours).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut 0, 0);
                }
            }
            self.run.sweep(|| {});
            let _ = self.run.remove();
        }
    }

    fn killed_by(st: i32, sig: i32) -> bool {
        libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == sig
    }

    /// A real run cgroup: a child born in its group's cgroup (clone3) is
    /// seen as `populated`, `cgroup.kill` ends it, the emptying is
    /// notified, and the tree is removed. Skips, saying why, where no
    /// writable cgroup2 hierarchy exists.
    #[test]
    fn spawned_into_its_cgroup_then_killed_and_removed() {
        let Some(mut sb) = Sandbox::new("") else {
            return;
        };
        let pid = sb.children[0];
        let line = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let want = sb.run.member_line(0).unwrap();
        let born_inside = line.lines().any(|l| l == want);
        let seen = sb.run.populated(0);
        // Watched (a second call finds it watched); its emptying then
        // makes the inotify descriptor readable.
        let (first, again) = (sb.run.watch(0), sb.run.watch(0));
        let ino = sb.run.inotify_fd().expect("an inotify descriptor");
        sb.run.kill(0);
        let st = sb.reap(pid);
        let mut pfd = libc::pollfd {
            fd: ino.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let noticed = unsafe { libc::poll(&mut pfd, 1, 5000) } == 1;
        let empty_now = !sb.run.populated(0);
        sb.run.sweep(|| {});
        let path = sb.run.path.clone();
        sb.run.remove().expect("remove the tree");
        assert!(seen, "a live member, but not populated");
        assert!(first && again, "watch: {first} then {again}");
        assert!(noticed && empty_now, "the emptying was not notified");
        assert!(born_inside, "{line:?} lacks {want:?}");
        assert!(killed_by(st, libc::SIGKILL), "status {st:#x}");
        assert!(!path.exists());
    }

    /// After a `cgroup.kill`, the group's next process is born into a new
    /// cgroup and runs (it is not SIGKILLed at birth), and the killed one
    /// is gone.
    #[test]
    fn a_process_after_a_kill_is_born_into_a_new_cgroup() {
        let Some(mut sb) = Sandbox::new("k") else {
            return;
        };
        let first = sb.children[0];
        let old = sb.run.member_line(0).unwrap();
        sb.run.kill(0);
        let st = sb.reap(first);
        let next = sb.spawn(&["sh", "-c", "exit 7"], true);
        let st2 = sb.reap(next);
        let new = sb.run.member_line(0).unwrap();
        let old_dir = sb.run.mount.join(old.trim_start_matches("0::/"));
        assert!(killed_by(st, libc::SIGKILL), "status {st:#x}");
        assert!(
            libc::WIFEXITED(st2) && libc::WEXITSTATUS(st2) == 7,
            "the next process did not run: status {st2:#x}"
        );
        assert_ne!(old, new);
        assert!(!old_dir.exists(), "{old_dir:?} left");
    }

    /// `signal_members` reaches a member outside every process group it
    /// is told to skip, and only members of the group's cgroup.
    #[test]
    fn members_outside_the_skipped_are_signalled() {
        let Some(mut sb) = Sandbox::new("s") else {
            return;
        };
        let skipped = sb.children[0];
        let stray = sb.spawn(&["sleep", "600"], false);
        let sent = sb
            .run
            .signal_members(0, libc::SIGTERM, |pid| pid == skipped);
        let st = sb.reap(stray);
        // SAFETY: our own unreaped child.
        let skipped_alive = unsafe { libc::kill(skipped, 0) } == 0;
        assert_eq!(sent, [stray]);
        assert!(killed_by(st, libc::SIGTERM), "status {st:#x}");
        assert!(skipped_alive);
    }

    #[test]
    fn names_are_safe_directory_names() {
        assert_eq!(sanitize("api_2-x"), "api_2-x");
        assert_eq!(sanitize("../a b"), "___a_b");
    }
}
