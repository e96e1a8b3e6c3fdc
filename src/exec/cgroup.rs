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
//! or process group. A process is down when its cgroup is empty: when its
//! leader is reaped, its `cgroup.events` says `populated 0`, or `rmdir`
//! of the cgroup succeeds (during a drain, see below). A cgroup that still
//! has members then is watched with inotify (the kernel notifies on every
//! change of `cgroup.events`), never polled; only those are watched, since
//! every watch costs at creation and the inotify instance's close waits
//! for the kernel to free all the watches it ever had. SIGKILL of a process's whole
//! tree is a write to `cgroup.kill`, which also catches processes forking
//! at that moment. The guard holds the run's `cgroup.kill`, so a runner
//! SIGKILL reaches everything. CPU time comes from `cpu.stat`
//! (`usage_usec`), which every non-root cgroup has even with no controller
//! enabled. The tree is removed at exit.
//!
//! Creating a cgroup costs more than the rest of a spawn (kernfs files,
//! per-CPU statistics), so the cgroups of queued spawns are made ahead on
//! a thread of their own ([`RunCgroup::prepare`]); a spawn that gets there
//! first makes its own. During a drain nothing starts again, so the same
//! thread reads each reaped leader's CPU time and removes its cgroup, and
//! that `rmdir` is the emptiness check ([`RunCgroup::finish`]): the
//! runner's main thread, which signals and reaps, does no kernfs work for
//! a process that stops cleanly. Leaves are opened and read relative to their
//! group's directory, and each kernfs file is read with one `read`.
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

/// One group's cgroup.
struct GroupDir {
    path: PathBuf,
    name: String,
    /// Shared with the maker thread's [`Work::Finish`] (no new
    /// descriptor).
    fd: std::sync::Arc<OwnedFd>,
}

/// One process's cgroup.
struct Leaf {
    path: PathBuf,
    /// Its name in its group's cgroup (`INDEX` or `INDEX.N`).
    rel: PathBuf,
    /// `usage_usec` when the current incarnation was spawned.
    cpu_at_spawn: u64,
    /// `cgroup.kill` was written to it: the next incarnation gets a new
    /// cgroup (see [`RunCgroup::proc_fd`]).
    killed: std::cell::Cell<bool>,
    /// Cgroups this process had (the next one is named `INDEX.N`).
    made: u32,
    /// Its `cgroup.events` is watched (see [`RunCgroup::watch`]).
    watched: bool,
}

/// The run's cgroup tree and the inotify instance watching it.
pub struct RunCgroup {
    pub path: PathBuf,
    /// The hierarchy's mount point.
    mount: PathBuf,
    /// Slot → (cgroup, group name).
    /// Slot → the group's cgroup, open (leaves are opened and read
    /// relative to it).
    groups: HashMap<usize, GroupDir>,
    leaves: HashMap<(usize, usize), Leaf>,
    ready: HashMap<usize, OwnedFd>,
    inotify: Option<nix::sys::inotify::Inotify>,
    /// Makes the cgroups of queued spawns ahead of them.
    maker: Option<Maker>,
    /// Cgroups the maker made (and watches) that no spawn used yet.
    made: std::collections::HashSet<PathBuf>,
    /// Cgroups handed to the maker that no spawn used yet (removed at exit).
    asked: std::collections::HashSet<PathBuf>,
}

/// A thread that creates process cgroups (`mkdir`) for spawns that are
/// queued, so that a burst of N starts does not pay N `mkdir`s on the
/// runner's main thread: creating a cgroup costs more than the rest of a
/// spawn (kernfs files, per-CPU statistics); and, during a drain, reads
/// and removes the cgroups of reaped leaders ([`RunCgroup::finish`]).
/// It never holds a descriptor of what it made (every
/// descriptor the runner holds is copied into each child it starts), and a
/// spawn whose cgroup is not made yet makes it itself (`mkdir` of an
/// existing cgroup is harmless).
struct Maker {
    tx: std::sync::mpsc::Sender<Work>,
    made: std::sync::mpsc::Receiver<PathBuf>,
}

/// What the maker thread does.
enum Work {
    /// Create a process cgroup.
    Make(PathBuf),
    /// Remove a process cgroup that is done with (it must be empty).
    Remove(PathBuf),
    /// Read a process cgroup's CPU time, then remove it; tell `reply`
    /// which happened (see [`RunCgroup::finish`]).
    Finish {
        group: std::sync::Arc<OwnedFd>,
        rel: PathBuf,
        cpu_at_spawn: u64,
        reply: Reply,
    },
}

/// The answer to a [`RunCgroup::finish`], given exactly once: if the
/// maker thread is gone before it answered (the queued work is dropped),
/// the answer is [`Finished::Populated`], so the caller looks for itself
/// and no exit is left unanswered.
pub struct Reply(Option<Box<dyn FnOnce(Finished) + Send>>);

impl Reply {
    pub fn new(f: impl FnOnce(Finished) + Send + 'static) -> Reply {
        Reply(Some(Box::new(f)))
    }

    fn send(mut self, outcome: Finished) {
        if let Some(f) = self.0.take() {
            f(outcome);
        }
    }

    /// Never answer (the work was not queued: the caller does it itself).
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Finished::Populated);
        }
    }
}

/// How [`RunCgroup::finish`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The cgroup was empty and is removed; the incarnation's CPU time in
    /// milliseconds, when it could be read.
    Removed(Option<u64>),
    /// Something is still in it (`rmdir` said EBUSY): it stays.
    Populated,
}

impl Maker {
    fn start() -> Option<Maker> {
        let (tx, rx) = std::sync::mpsc::channel::<Work>();
        let (made_tx, made) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("flowrun-cgroups".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                for work in rx {
                    match work {
                        Work::Make(path) => {
                            if make_leaf(&path).is_ok() && made_tx.send(path).is_err() {
                                return;
                            }
                        }
                        Work::Remove(path) => {
                            let _ = fs::remove_dir(path);
                        }
                        Work::Finish {
                            group,
                            rel,
                            cpu_at_spawn,
                            reply,
                        } => reply.send(finish_leaf(&group, &rel, cpu_at_spawn)),
                    }
                }
            })
            .ok()?;
        Some(Maker { tx, made })
    }
}

/// Create a process's cgroup (it may exist). It is not watched: see
/// [`RunCgroup::watch`].
fn make_leaf(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Read a process cgroup's CPU time, then remove it. `rmdir` is also the
/// emptiness check: it fails with EBUSY while anything is in the cgroup
/// (the kernel's own test), so no `cgroup.events` read is needed.
/// `rel` is its name in its group's cgroup, `group`.
fn finish_leaf(group: &OwnedFd, rel: &Path, cpu_at_spawn: u64) -> Finished {
    let usage = usage_at(Some(group), &rel.join("cpu.stat"));
    match nix::unistd::unlinkat(
        Some(group.as_raw_fd()),
        rel,
        nix::unistd::UnlinkatFlags::RemoveDir,
    ) {
        Ok(()) => Finished::Removed(usage.map(|u| u.saturating_sub(cpu_at_spawn) / 1000)),
        Err(nix::errno::Errno::ENOENT) => Finished::Removed(None),
        Err(_) => Finished::Populated,
    }
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
            maker: Maker::start(),
            inotify,
            made: std::collections::HashSet::new(),
            asked: std::collections::HashSet::new(),
        })
    }

    /// A copy of the inotify descriptor (non-blocking): readable when some
    /// watched `cgroup.events` changed. Watches added later count too.
    pub fn inotify_fd(&self) -> Option<OwnedFd> {
        use std::os::fd::AsFd;
        self.inotify.as_ref()?.as_fd().try_clone_to_owned().ok()
    }

    fn group_dir(&mut self, slot: usize, name: &str) -> io::Result<&GroupDir> {
        if !self.groups.contains_key(&slot) {
            let path = self.path.join(format!("{slot}-{}", sanitize(name)));
            match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            let fd = open_dir(&path)?;
            self.groups.insert(
                slot,
                GroupDir {
                    path,
                    name: name.to_string(),
                    fd: std::sync::Arc::new(fd),
                },
            );
        }
        Ok(&self.groups[&slot])
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
            let rel = leaf_name(index, made);
            let path = self.group_dir(slot, name)?.path.join(&rel);
            if let Some(m) = &self.maker {
                self.made.extend(m.made.try_iter());
            }
            self.asked.remove(&path);
            if !self.made.remove(&path) {
                make_leaf(&path)?;
            }
            self.leaves.insert(
                (slot, index),
                Leaf {
                    path,
                    rel,
                    cpu_at_spawn: 0,
                    killed: std::cell::Cell::new(false),
                    made: made + 1,
                    watched: false,
                },
            );
        }
        let cpu_at_spawn = if fresh {
            // A new cgroup has used no CPU yet.
            0
        } else {
            self.leaf_usage(slot, index).unwrap_or(0)
        };
        let gfd = &self.groups[&slot].fd;
        let leaf = self.leaves.get_mut(&(slot, index)).expect("just inserted");
        leaf.cpu_at_spawn = cpu_at_spawn;
        let fd = nix::fcntl::openat(
            Some(gfd.as_raw_fd()),
            &leaf.rel,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        // SAFETY: just opened, owned here.
        Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    }

    /// `usage_usec` of a process's cgroup.
    fn leaf_usage(&self, slot: usize, index: usize) -> Option<u64> {
        let l = self.leaf(slot, index)?;
        usage_at(Some(&self.groups.get(&slot)?.fd), &l.rel.join("cpu.stat"))
    }

    /// A spawn of process `index` is queued: have its cgroup made ahead,
    /// if it will need a new one ([`RunCgroup::proc_fd`]).
    pub fn prepare(&mut self, slot: usize, name: &str, index: usize) {
        let made = match self.leaves.get(&(slot, index)) {
            None => 0,
            Some(old) if old.killed.get() => old.made,
            Some(_) => return,
        };
        let Ok(g) = self.group_dir(slot, name) else {
            return;
        };
        let path = g.path.join(leaf_name(index, made));
        if let Some(m) = &self.maker {
            if m.tx.send(Work::Make(path.clone())).is_ok() {
                self.asked.insert(path);
            }
        }
    }

    /// The cgroup the group's `exec` ready checks join: an open
    /// `cgroup.procs` (write `0` to join).
    pub fn ready_procs(&mut self, slot: usize, name: &str) -> io::Result<std::sync::Arc<OwnedFd>> {
        if !self.ready.contains_key(&slot) {
            let g = self.group_dir(slot, name)?;
            let path = g.path.join("ready");
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

    /// Process `index` is down and will not start again (the run is
    /// draining): its cgroup is removed now, off this thread, instead of
    /// at exit.
    pub fn retire(&mut self, slot: usize, index: usize) {
        let Some(leaf) = self.leaves.remove(&(slot, index)) else {
            return;
        };
        match &self.maker {
            Some(m) => {
                if let Err(std::sync::mpsc::SendError(Work::Remove(path))) =
                    m.tx.send(Work::Remove(leaf.path))
                {
                    let _ = fs::remove_dir(path);
                }
            }
            None => {
                let _ = fs::remove_dir(&leaf.path);
            }
        }
    }

    /// Watch this process's `cgroup.events` from now on (once its leader
    /// is gone and something is left in it): its emptying then arrives
    /// through [`RunCgroup::inotify_fd`]. Only such cgroups are watched:
    /// an inotify watch costs at creation, and the instance's close waits
    /// for the kernel to free every watch it ever had. The caller reads
    /// [`RunCgroup::populated`] again after this, so an emptying between
    /// its first read and the watch is not missed.
    /// Returns whether the watch is new.
    pub fn watch(&mut self, slot: usize, index: usize) -> bool {
        let (Some(ino), Some(l)) = (&self.inotify, self.leaves.get_mut(&(slot, index))) else {
            return false;
        };
        if l.watched {
            return false;
        }
        l.watched = ino
            .add_watch(
                &l.path.join("cgroup.events"),
                nix::sys::inotify::AddWatchFlags::IN_MODIFY,
            )
            .is_ok();
        l.watched
    }

    /// Process `index`'s leader is reaped and nothing will start in its
    /// cgroup again (the run is draining): on the maker thread, read the
    /// incarnation's CPU time and remove the cgroup, then call `reply`
    /// there. Returns false (and `reply` is never called) when there is
    /// no such thread or cgroup: the caller checks
    /// [`RunCgroup::populated`] itself. After [`Finished::Removed`], call
    /// [`RunCgroup::forget`].
    pub fn finish(&self, slot: usize, index: usize, reply: Reply) -> bool {
        let (Some(m), Some(l), Some(g)) = (
            &self.maker,
            self.leaves.get(&(slot, index)),
            self.groups.get(&slot),
        ) else {
            reply.disarm();
            return false;
        };
        let work = Work::Finish {
            group: g.fd.clone(),
            rel: l.rel.clone(),
            cpu_at_spawn: l.cpu_at_spawn,
            reply,
        };
        match m.tx.send(work) {
            Ok(()) => true,
            Err(std::sync::mpsc::SendError(work)) => {
                if let Work::Finish { reply, .. } = work {
                    reply.disarm();
                }
                false
            }
        }
    }

    /// The cgroup of process `index` was removed by [`RunCgroup::finish`].
    pub fn forget(&mut self, slot: usize, index: usize) {
        self.leaves.remove(&(slot, index));
    }

    /// Whether any process of this process's cgroup is left.
    pub fn populated(&self, slot: usize, index: usize) -> bool {
        let (Some(l), Some(g)) = (self.leaf(slot, index), self.groups.get(&slot)) else {
            return false;
        };
        populated_at(Some(&g.fd), &l.rel.join("cgroup.events"))
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
        let now = self.leaf_usage(slot, index)?;
        Some(now.saturating_sub(self.leaf(slot, index)?.cpu_at_spawn) / 1000)
    }

    /// CPU time of every group so far (all incarnations and ready checks),
    /// in milliseconds, by group name, in slot order.
    pub fn group_cpu_ms(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(usize, String, u64)> = self
            .groups
            .iter()
            .filter_map(|(s, g)| Some((*s, g.name.clone(), cpu_usec(&g.path)? / 1000)))
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

    /// Remove the tree (after [`RunCgroup::sweep`]): the cgroups it made,
    /// deepest first, each with one `rmdir`; then whatever is left (a
    /// cgroup a process made inside its own), by listing.
    pub fn remove(&mut self) -> io::Result<()> {
        self.ready.clear();
        self.inotify = None;
        // Stop the maker first: nothing is made behind the removal.
        if let Some(m) = self.maker.take() {
            drop(m.tx);
            for _ in m.made.iter() {}
        }
        for (_, leaf) in self.leaves.drain() {
            let _ = fs::remove_dir(&leaf.path);
        }
        for path in self.asked.drain() {
            let _ = fs::remove_dir(path);
        }
        for g in std::mem::take(&mut self.groups).into_values() {
            let _ = fs::remove_dir(g.path.join("ready"));
            let _ = fs::remove_dir(g.path);
        }
        match fs::remove_dir(&self.path) {
            Ok(()) => Ok(()),
            Err(_) => remove_tree(&self.path),
        }
    }
}

/// A process cgroup's name in its group's: `INDEX`, then `INDEX.N` after N
/// killed ones.
fn leaf_name(index: usize, made: u32) -> PathBuf {
    PathBuf::from(if made == 0 {
        index.to_string()
    } else {
        format!("{index}.{made}")
    })
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
    /// its process cgroup `(0, index)`. Whatever happens to the test, a
    /// failed assertion included, dropping it kills and reaps the child
    /// and removes the tree.
    struct Sandbox {
        run: RunCgroup,
        /// The child, until reaped.
        child: Option<i32>,
    }

    impl Sandbox {
        /// `None` (saying why) where no writable cgroup2 hierarchy exists.
        fn new(tag: &str, index: usize, capture: bool) -> Option<Sandbox> {
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
            let mut sandbox = Sandbox { run, child: None };
            let fd = sandbox.run.proc_fd(0, "g", index).expect("leaf");
            let argv = ["sleep".to_string(), "600".to_string()];
            let spec = super::super::spawn::SpawnSpec {
                argv: &argv,
                env: &[],
                cwd: Path::new("/"),
                own_group: true,
                die_with_parent: true,
                capture,
                cgroup: Some(fd.as_raw_fd()),
            };
            let inh = super::super::spawn::Inherited {
                nofile: libc::rlimit {
                    rlim_cur: 1024,
                    rlim_max: 1024,
                },
                runner_pid: pid as i32,
            };
            let child = super::super::spawn::spawn_service(&spec, inh).expect("spawn");
            sandbox.child = Some(child.pid);
            Some(sandbox)
        }

        /// Kill the child's cgroup and reap it: its wait status.
        fn kill_and_reap(&mut self, index: usize) -> i32 {
            self.run.kill(0, index);
            let mut st = 0;
            if let Some(pid) = self.child.take() {
                // SAFETY: our own child, not reaped yet.
                unsafe { libc::waitpid(pid, &mut st, 0) };
            }
            st
        }
    }

    impl Drop for Sandbox {
        fn drop(&mut self) {
            if let Some(pid) = self.child.take() {
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

    /// A real run cgroup: a child born in its cgroup (clone3) is seen as
    /// `populated`, `cgroup.kill` ends it and the tree is removed. Skips,
    /// saying why, where no writable cgroup2 hierarchy exists.
    #[test]
    fn spawned_into_its_cgroup_then_killed_and_removed() {
        let Some(mut sb) = Sandbox::new("", 0, true) else {
            return;
        };
        let pid = sb.child.expect("a child");
        let line = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let want = sb.run.member_line(0, 0).unwrap();
        let born_inside = line.lines().any(|l| l == want);
        let seen = sb.run.populated(0, 0);
        // Watched once (a second call adds nothing); its emptying then
        // makes the inotify descriptor readable.
        let (first, again) = (sb.run.watch(0, 0), sb.run.watch(0, 0));
        let ino = sb.run.inotify_fd().expect("an inotify descriptor");
        let st = sb.kill_and_reap(0);
        let killed = libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL;
        let mut pfd = libc::pollfd {
            fd: ino.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let noticed = unsafe { libc::poll(&mut pfd, 1, 5000) } == 1;
        let empty_now = !sb.run.populated(0, 0);
        sb.run.sweep(|| {});
        let path = sb.run.path.clone();
        sb.run.remove().expect("remove the tree");
        assert!(seen, "a live member, but not populated");
        assert!(first && !again, "watch: {first} then {again}");
        assert!(noticed && empty_now, "the emptying was not notified");
        assert!(born_inside, "{line:?} lacks {want:?}");
        assert!(killed, "status {st:#x}");
        assert!(!path.exists());
    }

    #[test]
    fn finish_removes_an_empty_cgroup_and_leaves_a_populated_one() {
        // Process 1 lives in its cgroup; process 0's is empty.
        let Some(mut sb) = Sandbox::new("f", 1, false) else {
            return;
        };
        let _empty = sb.run.proc_fd(0, "g", 0).expect("leaf 0");
        let (tx, rx) = std::sync::mpsc::channel();
        let answers: Vec<_> = [0, 1]
            .into_iter()
            .map(|i| {
                let tx = tx.clone();
                let queued = sb
                    .run
                    .finish(0, i, Reply::new(move |o| tx.send((i, o)).unwrap()));
                let got = rx.recv_timeout(std::time::Duration::from_secs(10));
                (queued, got)
            })
            .collect();
        let leaf0 = sb.run.path.join("0-g/0");
        sb.kill_and_reap(1);
        sb.run.sweep(|| {});
        sb.run.remove().expect("remove the tree");
        assert!(
            matches!(answers[0], (true, Ok((0, Finished::Removed(Some(_)))))),
            "{:?}",
            answers[0]
        );
        assert!(!leaf0.exists());
        assert!(
            matches!(answers[1], (true, Ok((1, Finished::Populated)))),
            "{:?}",
            answers[1]
        );
    }

    #[test]
    fn a_reply_is_given_once_populated_if_dropped_and_never_if_disarmed() {
        let (tx, rx) = std::sync::mpsc::channel();
        let reply =
            |tx: std::sync::mpsc::Sender<Finished>| Reply::new(move |o| tx.send(o).unwrap());
        reply(tx.clone()).send(Finished::Removed(Some(3)));
        drop(reply(tx.clone()));
        reply(tx.clone()).disarm();
        drop(tx);
        let got: Vec<Finished> = rx.iter().collect();
        assert_eq!(got, [Finished::Removed(Some(3)), Finished::Populated]);
    }

    #[test]
    fn names_are_safe_directory_names() {
        assert_eq!(sanitize("api_2-x"), "api_2-x");
        assert_eq!(sanitize("../a b"), "___a_b");
    }
}
