//! cgroup v2 containment.
//!
//! Where a writable cgroup2 hierarchy exists, every run gets a cgroup of
//! its own, created under the runner's cgroup when the runner may create
//! cgroups there, else under the hierarchy's root:
//!
//! ```text
//! flowrun-KEY-PID/            the run (KEY: the topology, see runrecord.rs)
//!   SLOT-GROUP/               one per group (a reload adds a new slot)
//!     INDEX/                  one per process of the group
//!     ready/                  the group's `exec` ready checks
//! ```
//!
//! Services are born inside their process's cgroup (`clone3` with
//! `CLONE_INTO_CGROUP`, spawn.rs), ready checks join theirs between fork
//! and exec, so nothing they start can be outside it, whatever its session
//! or process group. A process is down when its cgroup's `cgroup.events`
//! says `populated 0`; the files are watched with inotify (the kernel
//! notifies on every change), never polled. SIGKILL of a process's whole
//! tree is a write to `cgroup.kill`, which also catches processes forking
//! at that moment. The guard holds the run's `cgroup.kill`, so a runner
//! SIGKILL reaches everything. CPU time comes from `cpu.stat`
//! (`usage_usec`), which every non-root cgroup has even with no controller
//! enabled. The tree is removed at exit.
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

/// `populated` of a cgroup's `cgroup.events`; a missing cgroup is empty.
pub fn populated(dir: &Path) -> bool {
    match fs::read_to_string(dir.join("cgroup.events")) {
        Ok(t) => t.lines().any(|l| l == "populated 1"),
        Err(_) => false,
    }
}

/// `usage_usec` of a cgroup's `cpu.stat` (its descendants included).
pub fn cpu_usec(dir: &Path) -> Option<u64> {
    let t = fs::read_to_string(dir.join("cpu.stat")).ok()?;
    t.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
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

/// One process's cgroup.
struct Leaf {
    path: PathBuf,
    /// `usage_usec` when the current incarnation was spawned.
    cpu_at_spawn: u64,
    /// `cgroup.kill` was written to it: the next incarnation gets a new
    /// cgroup (see [`RunCgroup::proc_fd`]).
    killed: std::cell::Cell<bool>,
    /// Cgroups this process had (the next one is named `INDEX.N`).
    made: u32,
}

/// The run's cgroup tree and the inotify instance watching it.
pub struct RunCgroup {
    pub path: PathBuf,
    /// The hierarchy's mount point.
    mount: PathBuf,
    /// Slot → (cgroup, group name).
    groups: HashMap<usize, (PathBuf, String)>,
    leaves: HashMap<(usize, usize), Leaf>,
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
            leaves: HashMap::new(),
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

    fn group_dir(&mut self, slot: usize, name: &str) -> io::Result<PathBuf> {
        if let Some((p, _)) = self.groups.get(&slot) {
            return Ok(p.clone());
        }
        let p = self.path.join(format!("{slot}-{}", sanitize(name)));
        match fs::create_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.groups.insert(slot, (p.clone(), name.to_string()));
        Ok(p)
    }

    /// The cgroup of process `index` of the group in `slot`, created (and
    /// watched) on first use; a descriptor to be born into, to keep open
    /// until the spawn returns. (Not kept: every descriptor the runner
    /// holds is copied into, and closed by, every child it starts.)
    ///
    /// A cgroup that was killed through `cgroup.kill` is never born into
    /// again: on the 6.18 kernel this was written on, a child cloned with
    /// `CLONE_INTO_CGROUP` into a cgroup killed earlier was itself
    /// SIGKILLed at birth, every time (observed, not traced into the
    /// kernel; a fresh cgroup ends it). The next incarnation gets a new,
    /// empty cgroup `INDEX.N`, and the old one is removed (it is empty:
    /// the process was down before it restarts).
    pub fn proc_fd(&mut self, slot: usize, name: &str, index: usize) -> io::Result<OwnedFd> {
        let mut made = 0;
        if let Some(old) = self.leaves.get(&(slot, index)) {
            if old.killed.get() {
                made = old.made;
                let _ = fs::remove_dir(&old.path);
                self.leaves.remove(&(slot, index));
            }
        }
        let fresh = !self.leaves.contains_key(&(slot, index));
        if fresh {
            let g = self.group_dir(slot, name)?;
            let path = if made == 0 {
                g.join(index.to_string())
            } else {
                g.join(format!("{index}.{made}"))
            };
            match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            if let Some(ino) = &self.inotify {
                let _ = ino.add_watch(
                    &path.join("cgroup.events"),
                    nix::sys::inotify::AddWatchFlags::IN_MODIFY,
                );
            }
            self.leaves.insert(
                (slot, index),
                Leaf {
                    path,
                    cpu_at_spawn: 0,
                    killed: std::cell::Cell::new(false),
                    made: made + 1,
                },
            );
        }
        let leaf = self.leaves.get_mut(&(slot, index)).expect("just inserted");
        // A new cgroup has used no CPU yet.
        leaf.cpu_at_spawn = if fresh {
            0
        } else {
            cpu_usec(&leaf.path).unwrap_or(0)
        };
        open_dir(&leaf.path)
    }

    /// The cgroup the group's `exec` ready checks join: an open
    /// `cgroup.procs` (write `0` to join).
    pub fn ready_procs(&mut self, slot: usize, name: &str) -> io::Result<std::sync::Arc<OwnedFd>> {
        if !self.ready.contains_key(&slot) {
            let g = self.group_dir(slot, name)?;
            let path = g.join("ready");
            match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            let f = fs::OpenOptions::new()
                .write(true)
                .open(path.join("cgroup.procs"))?;
            self.ready.insert(slot, OwnedFd::from(f));
        }
        // The fd is shared with each check's spawn; dup it for the Arc.
        let fd = self.ready[&slot].try_clone()?;
        Ok(std::sync::Arc::new(fd))
    }

    fn leaf(&self, slot: usize, index: usize) -> Option<&Leaf> {
        self.leaves.get(&(slot, index))
    }

    /// Whether any process of this process's cgroup is left.
    pub fn populated(&self, slot: usize, index: usize) -> bool {
        self.leaf(slot, index).is_some_and(|l| populated(&l.path))
    }

    /// SIGKILL everything in this process's cgroup.
    pub fn kill(&self, slot: usize, index: usize) {
        if let Some(l) = self.leaf(slot, index) {
            l.killed.set(true);
            let _ = kill_dir(&l.path);
        }
    }

    /// Send `sig` (then SIGCONT, so a stopped member can act on it) to
    /// every process in this process's cgroup: `to group` stops reach
    /// members of any session or process group. Each listed pid is pinned
    /// with a pidfd and signalled only if it is still in this cgroup, so a
    /// pid freed and reused after the listing is never signalled.
    pub fn signal(&self, slot: usize, index: usize, sig: i32) {
        let Some(l) = self.leaf(slot, index) else {
            return;
        };
        let Some(want) = self.member_line(slot, index) else {
            return;
        };
        let cont = sig != libc::SIGKILL && sig != libc::SIGCONT;
        for pid in procs_tree(&l.path) {
            if pid <= 1 {
                continue;
            }
            // SAFETY: pidfd_open returns a new descriptor (owned below).
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
            if fd < 0 {
                continue;
            }
            // SAFETY: just opened, owned here.
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            let member = fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|t| t.lines().any(|line| line == want));
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
        }
    }

    /// Whether changes of `cgroup.events` arrive through inotify.
    pub fn watched(&self) -> bool {
        self.inotify.is_some()
    }

    /// CPU time of the current incarnation so far, in milliseconds.
    pub fn cpu_ms(&self, slot: usize, index: usize) -> Option<u64> {
        let l = self.leaf(slot, index)?;
        let now = cpu_usec(&l.path)?;
        Some(now.saturating_sub(l.cpu_at_spawn) / 1000)
    }

    /// CPU time of every group so far (all incarnations and ready checks),
    /// in milliseconds, by group name, in slot order.
    pub fn group_cpu_ms(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(usize, String, u64)> = self
            .groups
            .iter()
            .filter_map(|(s, (p, n))| Some((*s, n.clone(), cpu_usec(p)? / 1000)))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, n, ms)| (n, ms)).collect()
    }

    /// The `/proc/PID/cgroup` line of a member of this process's cgroup.
    pub fn member_line(&self, slot: usize, index: usize) -> Option<String> {
        let l = self.leaf(slot, index)?;
        let rel = l.path.strip_prefix(&self.mount).ok()?;
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

    /// Remove the tree (after [`RunCgroup::sweep`]).
    pub fn remove(&mut self) -> io::Result<()> {
        self.leaves.clear();
        self.ready.clear();
        self.inotify = None;
        remove_tree(&self.path)
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

    /// A real run cgroup: a child born in its cgroup (clone3) is seen as
    /// `populated`, `cgroup.kill` ends it and the tree is removed. Skips,
    /// saying why, where no writable cgroup2 hierarchy exists.
    #[test]
    fn spawned_into_its_cgroup_then_killed_and_removed() {
        let parent = match find_parent(&format!("flowrun-unit-probe-{}", std::process::id())) {
            Ok(p) => p,
            Err(why) => {
                eprintln!("SKIPPED: {why}");
                return;
            }
        };
        let name = format!("flowrun-unit-{}", std::process::id());
        let mut run = RunCgroup::create(&parent, &name).expect("create the run cgroup");
        let fd = run.proc_fd(0, "g", 0).expect("leaf");
        let argv = ["sleep".to_string(), "600".to_string()];
        let spec = super::super::spawn::SpawnSpec {
            argv: &argv,
            env: &[],
            cwd: Path::new("/"),
            own_group: true,
            die_with_parent: true,
            capture: true,
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
        let line = fs::read_to_string(format!("/proc/{}/cgroup", child.pid)).unwrap();
        let want = run.member_line(0, 0).unwrap();
        let born_inside = line.lines().any(|l| l == want);
        let seen = run.populated(0, 0);
        run.kill(0, 0);
        let mut st = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(child.pid, &mut st, 0) };
        let killed = libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL;
        run.sweep(|| {});
        let path = run.path.clone();
        run.remove().expect("remove the tree");
        assert!(seen, "a live member, but not populated");
        assert!(born_inside, "{line:?} lacks {want:?}");
        assert!(killed, "status {st:#x}");
        assert!(!path.exists());
    }

    #[test]
    fn names_are_safe_directory_names() {
        assert_eq!(sanitize("api_2-x"), "api_2-x");
        assert_eq!(sanitize("../a b"), "___a_b");
    }
}
