//! Spawning one child cleanly. Never tokio::process.
//!
//! Services are started with [`spawn_service`]: `clone(CLONE_VM |
//! CLONE_VFORK)` on a stack of its own, then `execve` — what `posix_spawn`
//! does, so no page tables are copied and nothing is copied on write; with
//! cgroup containment `clone3` with `CLONE_INTO_CGROUP` as well, so the
//! child is born in its cgroup (no window in which it, or anything it
//! starts, is outside). A child that cannot chdir or exec writes its errno
//! into the memory it shares with its suspended parent, and the child
//! shares the runner's descriptor table only until its first call gives it
//! a small one of its own ([`reserve_low_fds`]), so a start does not pay
//! for the runner's open descriptors. (`posix_spawn` itself cannot restore the rlimit, arm
//! the death signal, or reset glibc's reserved signals.) `exec` ready
//! checks use std's `Command` ([`spawn`]); they join their cgroup between
//! fork and exec.
//!
//! Every input of the child is computed before the fork (or clone); the child makes
//! only async-signal-safe raw calls (`child_setup`): reset every signal
//! (1–64) to its default action, restore the inherited `RLIMIT_NOFILE`,
//! mark every descriptor above 2 close-on-exec, (for `die-with-parent`)
//! arm `PR_SET_PDEATHSIG` and check the parent is still the runner, and
//! last empty the signal mask. Spawns happen on the runner's main thread
//! (the current-thread runtime's thread) and, for bursts, on the
//! spawn lanes ([`Lanes`]); all of them live as long as the runner, so the
//! death signal cannot fire early (it fires when the forking *thread*
//! exits, not the process).
//! Reaping happens on the main thread, never while lanes run (it waits
//! for their whole batch), so std's own `waitpid` after a failed exec never
//! races the reaper (a blind `waitpid(-1)` would steal it).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

pub struct SpawnSpec<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    /// Lead a new process group (`process-group own`).
    pub own_group: bool,
    pub die_with_parent: bool,
    /// Relay stdout and stderr through a pipe (else /dev/null).
    pub capture: bool,
    /// [`spawn_service`]: a cgroup directory to be born in
    /// (`CLONE_INTO_CGROUP`); [`spawn`]: an open `cgroup.procs` the child
    /// writes `0` to (joins) before it execs. `None`: the runner's cgroup.
    pub cgroup: Option<RawFd>,
}

pub struct Spawned {
    pub pid: i32,
    /// The runner's (non-blocking) read end of the output pipe.
    pub output: Option<OwnedFd>,
    /// [`start_job`] only: where and why the child failed before it could
    /// exec (it exited with 127), or `None` if it exec'd.
    pub failed: Option<(ExecStage, i32)>,
}

/// The `RLIMIT_NOFILE` flowrun inherited; children get it back.
#[derive(Clone, Copy)]
pub struct Inherited {
    pub nofile: libc::rlimit,
    pub runner_pid: i32,
}

/// True for errors that mean "too many processes or descriptors right now":
/// retry later instead of failing the group.
pub fn is_backpressure(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::EAGAIN) | Some(libc::ENOMEM)
    )
}

/// Capacity asked for each output pipe (see [`crate::exec::logs`]).
const PIPE_SIZE: libc::c_int = 256 * 1024;

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: valid array; both ends are owned right after.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Only the runner's read end is non-blocking.
    // SAFETY: fcntl on an fd we own (a new pipe end's status flags are
    // just O_RDONLY).
    unsafe {
        libc::fcntl(fds[0], libc::F_SETFL, libc::O_RDONLY | libc::O_NONBLOCK);
        // A larger pipe means fewer wake-ups per byte for chatty children
        // (4x fewer reads and context switches than the 64 KiB default).
        // Best effort: past the user's pipe-user-pages limit it fails and
        // the default stays. Pages are only used while data is buffered.
        libc::fcntl(fds[0], libc::F_SETPIPE_SZ, PIPE_SIZE);
    }
    Ok((r, w))
}

pub fn spawn(spec: &SpawnSpec<'_>, inh: Inherited) -> io::Result<Spawned> {
    let Some(program) = spec.argv.first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(spec.cwd)
        .stdin(Stdio::null());
    let mut output = None;
    if spec.capture {
        let (r, w) = pipe()?;
        let w2 = w.try_clone()?;
        cmd.stdout(Stdio::from(w)).stderr(Stdio::from(w2));
        output = Some(r);
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    if spec.own_group {
        cmd.process_group(0);
    }
    let pdeath = spec.die_with_parent;
    let nofile = inh.nofile;
    let parent = inh.runner_pid;
    let join = spec.cgroup;
    // SAFETY: the hook only makes async-signal-safe libc calls on values
    // computed before the fork (see the module comment).
    unsafe {
        cmd.pre_exec(move || {
            // Join the cgroup before anything of the command runs: what it
            // starts is born inside. A failed join fails the spawn.
            if let Some(fd) = join {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            child_setup(nofile, pdeath, parent);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    // Never wait through std: the reaper owns every exit status. Dropping
    // the Command closes the runner's copies of the pipe's write end.
    drop(child);
    drop(cmd);
    Ok(Spawned {
        pid,
        output,
        failed: None,
    })
}

/// The kernel's `struct sigaction` (with `sa_restorer`, as on x86-64 and
/// arm64).
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Runs in the child between fork and exec.
///
/// # Safety
/// Only in a child that has not exec'd yet (it resets every signal
/// disposition and the signal mask of the calling process).
unsafe fn child_setup(nofile: libc::rlimit, pdeath: bool, parent: i32) {
    // SAFETY: runs in a child between its fork (std's `pre_exec`) or
    // CLONE_VM|CLONE_VFORK clone and its exec: only system calls, on
    // pointers to locals, and `_exit`; nothing allocates or takes a lock
    // the parent might hold.
    unsafe {
        // Every signal, real-time ones included (libc refuses 32 and 33, which
        // glibc reserves, so this is the raw system call): an ignored
        // disposition would survive exec.
        let sa = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &sa as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                );
            }
        }
        libc::setrlimit(libc::RLIMIT_NOFILE, &nofile);
        // Only 0, 1, 2 survive exec. CLOSE_RANGE_CLOEXEC = 4.
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32) != 0 {
            for fd in 3..65536 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        if pdeath {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            if libc::getppid() != parent {
                libc::_exit(1);
            }
        }
        // Last: every disposition is the default by now.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Where a [`spawn_service`] child failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecStage {
    Stdio = 0,
    Chdir = 1,
    Exec = 2,
}

/// What a [`start_job`] child reported before exiting (it could not set up
/// stdio, chdir or exec): `(stage + 1) << 32 | errno`, written into the
/// memory it shares with the suspended parent (`CLONE_VM`); 0 if it exec'd.
fn exec_error(word: u64) -> Option<(ExecStage, i32)> {
    let stage = match word >> 32 {
        0 => return None,
        1 => ExecStage::Stdio,
        2 => ExecStage::Chdir,
        _ => ExecStage::Exec,
    };
    Some((stage, word as u32 as i32))
}

fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argument"))
}

/// The runner's own environment as `K=V` strings, with each key's
/// length, built once: nothing in the runner changes its environment after
/// start.
fn runner_env() -> &'static [(CString, usize)] {
    static ENV: std::sync::OnceLock<Vec<(CString, usize)>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
                kv.extend_from_slice(k.as_bytes());
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                Some((CString::new(kv).ok()?, k.len()))
            })
            .collect()
    })
}

/// The runner's environment with `env` added (later entries win): the
/// process's own `K=V` strings, and which of the runner's it replaces.
fn environment(env: &[(String, String)]) -> io::Result<(Vec<CString>, Vec<usize>)> {
    let mut own: Vec<(&str, &str)> = Vec::with_capacity(env.len());
    for (k, v) in env {
        match own.iter_mut().find(|(ok, _)| *ok == k) {
            Some(slot) => slot.1 = v,
            None => own.push((k, v)),
        }
    }
    let replaced = runner_env()
        .iter()
        .enumerate()
        .filter(|(_, (kv, klen))| {
            let key = &kv.as_bytes()[..*klen];
            own.iter().any(|(k, _)| k.as_bytes() == key)
        })
        .map(|(i, _)| i)
        .collect();
    let own = own
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
        .collect::<io::Result<_>>()?;
    Ok((own, replaced))
}

/// What `execve` needs for one start of a service process: its arguments,
/// environment and directory as C strings. The environment is the
/// runner's (built once, shared by every start) with the process's own
/// variables in place of those they replace. The program is searched in
/// `PATH` at each start ([`Prepared::program`]), as a shell would.
pub struct Prepared {
    program: String,
    /// The `PATH` the search uses: the process's, else the runner's.
    path: std::ffi::OsString,
    args: Vec<CString>,
    /// The process's own variables, `K=V`.
    vars: Vec<CString>,
    /// Indices of the runner's variables that `vars` replace (ascending).
    replaced: Vec<usize>,
    cwd: CString,
}

impl Prepared {
    pub fn new(argv: &[String], env: &[(String, String)], cwd: &Path) -> io::Result<Prepared> {
        let Some(program) = argv.first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| std::ffi::OsString::from(v))
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        let (vars, replaced) = environment(env)?;
        Ok(Prepared {
            program: program.clone(),
            path,
            args: argv
                .iter()
                .map(|a| cstring(a.as_bytes()))
                .collect::<io::Result<_>>()?,
            vars,
            replaced,
            cwd: cstring(cwd.as_os_str().as_bytes())?,
        })
    }

    /// The `envp` array: pointers into the runner's and this process's
    /// strings, NULL-terminated.
    fn envp(&self) -> Vec<*const libc::c_char> {
        let runner = runner_env();
        let mut envp = Vec::with_capacity(runner.len() + self.vars.len() + 1);
        let mut skip = self.replaced.iter().peekable();
        for (i, (kv, _)) in runner.iter().enumerate() {
            if skip.next_if_eq(&&i).is_none() {
                envp.push(kv.as_ptr());
            }
        }
        envp.extend(self.vars.iter().map(|v| v.as_ptr()));
        envp.push(std::ptr::null());
        envp
    }

    /// The program's path for this start: as written when it contains a
    /// `/`, else the first executable file of that name in `PATH`. A burst
    /// of starts of one program searches once: `seen` remembers the last
    /// search (program, `PATH`, result), and a remembered result is used
    /// while it is still an executable file.
    pub fn program(&self, seen: &mut Option<Resolved>) -> io::Result<CString> {
        if self.program.contains('/') {
            return cstring(self.program.as_bytes());
        }
        if let Some(r) = seen {
            if r.program == self.program && r.path == self.path && executable(&r.found) {
                return Ok(r.found.clone());
            }
        }
        for dir in std::env::split_paths(&self.path) {
            let candidate = dir.join(&self.program);
            let found = cstring(candidate.as_os_str().as_bytes())?;
            if executable(&found) {
                *seen = Some(Resolved {
                    program: self.program.clone(),
                    path: self.path.clone(),
                    found: found.clone(),
                });
                return Ok(found);
            }
        }
        Err(io::Error::from_raw_os_error(libc::ENOENT))
    }
}

/// The last `PATH` search of [`Prepared::program`].
pub struct Resolved {
    program: String,
    path: std::ffi::OsString,
    found: CString,
}

/// Whether `path` is a regular file someone may execute.
fn executable(path: &CString) -> bool {
    std::fs::metadata(std::ffi::OsStr::from_bytes(path.to_bytes()))
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `/dev/null`, opened once and kept: every child's stdin. Only a
/// success is kept: a first open that fails (EMFILE while a burst of
/// starts holds many descriptors) returns its own error, which is retried
/// like any other shortage, instead of failing every later start.
fn dev_null() -> io::Result<i32> {
    static NULL: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(f) = NULL.get() {
        return Ok(f.as_raw_fd());
    }
    let f = OwnedFd::from(std::fs::File::open("/dev/null")?);
    // Two lanes may race here: the loser's descriptor is closed.
    Ok(NULL.get_or_init(|| f).as_raw_fd())
}

/// Start a service process, relaying its stdout and stderr through one
/// pipe: [`start_job`] with a [`Prepared`] built for this one start.
pub fn spawn_service(spec: &SpawnSpec<'_>, inh: Inherited) -> io::Result<Spawned> {
    let cmd = Prepared::new(spec.argv, spec.env, spec.cwd)?;
    let prog = cmd.program(&mut None)?;
    let how = How {
        own_group: spec.own_group,
        die_with_parent: spec.die_with_parent,
        cgroup: spec.cgroup,
    };
    start_resolved(&cmd, &prog, &how, inh)
}

/// How [`start_job`] starts a service, besides its [`Prepared`] command.
#[derive(Clone, Copy)]
pub struct How {
    /// Lead a new process group (`process-group own`).
    pub own_group: bool,
    pub die_with_parent: bool,
    /// A cgroup directory to be born in (`CLONE_INTO_CGROUP`); `None`: the
    /// runner's cgroup.
    pub cgroup: Option<RawFd>,
}

/// Low descriptors reserved by [`reserve_low_fds`] (see there).
struct LowFds {
    /// `/dev/null`, the children's stdin.
    null: RawFd,
    /// One per spawning thread, taken on its first start: `/dev/null`
    /// while idle, the output pipe's write end during a start.
    slots: Vec<RawFd>,
    taken: std::sync::atomic::AtomicUsize,
    /// Every reserved descriptor is below it.
    limit: u32,
}

static LOW_FDS: std::sync::OnceLock<LowFds> = std::sync::OnceLock::new();

thread_local! {
    /// This thread's slot in [`LOW_FDS`]: `None` until its first start,
    /// then `Some(None)` when every slot was taken.
    static LOW_SLOT: std::cell::Cell<Option<Option<RawFd>>> = const { std::cell::Cell::new(None) };
}

/// Make starts cost the same however many descriptors the runner holds.
///
/// A child gets a copy of its parent's descriptor table (every open
/// descriptor referenced once more), and its `execve` closes them again:
/// with N processes running, each start paid for the runner's N output
/// pipes, N² in all. With this, a child is cloned sharing the runner's
/// table (`CLONE_FILES`) and its first act is `close_range(limit, ~0,
/// CLOSE_RANGE_UNSHARE)`, which gives it a table of its own holding only
/// the descriptors below `limit` (Linux 5.9): the runner's standard
/// streams and these reserved ones. The starting thread puts the output
/// pipe's write end into its own reserved slot just before the clone and
/// `/dev/null` back once the child has exec'd; no other thread touches that
/// slot, and a child of another thread that copies it closes it at exec.
///
/// Call once, early, while the runner holds few descriptors: the reserved
/// ones are the lowest free ones (nothing inherited is touched). Without
/// it, on an older kernel, or when the runner was started with one of its
/// standard streams closed (a reserved descriptor would then be 0, 1 or 2,
/// and the runner's own output would go where the slot points), children
/// copy the whole table.
pub fn reserve_low_fds() {
    if LOW_FDS.get().is_some() || !kernel_at_least(5, 9) {
        return;
    }
    let Ok(null) = std::fs::File::open("/dev/null").map(OwnedFd::from) else {
        return;
    };
    let mut slots = Vec::new();
    for _ in 0..LANES + 1 {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own; the new one is
        // owned here.
        let fd = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return;
        }
        // SAFETY: just made.
        slots.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    if null.as_raw_fd() <= 2 {
        return;
    }
    // Kept for the runner's life from here.
    let slots: Vec<RawFd> = slots
        .into_iter()
        .map(std::os::fd::IntoRawFd::into_raw_fd)
        .collect();
    let null = std::os::fd::IntoRawFd::into_raw_fd(null);
    let limit = slots.iter().copied().chain([null]).max().unwrap_or(2) as u32 + 1;
    let _ = LOW_FDS.set(LowFds {
        null,
        slots,
        taken: std::sync::atomic::AtomicUsize::new(0),
        limit,
    });
}

/// This thread's reserved slot, `/dev/null`'s descriptor and the limit.
fn low_slot() -> Option<(RawFd, RawFd, u32)> {
    let low = LOW_FDS.get()?;
    let slot = LOW_SLOT.with(|s| {
        if let Some(slot) = s.get() {
            return slot;
        }
        let i = low.taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let slot = low.slots.get(i).copied();
        s.set(Some(slot));
        slot
    })?;
    Some((slot, low.null, low.limit))
}

/// Whether the running kernel's release is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(u) = nix::sys::utsname::uname() else {
        return false;
    };
    let release = u.release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let num = |p: Option<&str>| p.and_then(|x| x.parse::<u32>().ok()).unwrap_or(0);
    (num(parts.next()), num(parts.next())) >= (major, minor)
}

thread_local! {
    /// The stack a child runs on until it execs, reused: the calling
    /// thread is suspended while the child uses it (`CLONE_VFORK`), so one
    /// stack per spawning thread is enough.
    static CHILD_STACK_BUF: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(vec![0u8; CHILD_STACK]);
}

/// Start a service process, relaying its stdout and stderr through one
/// pipe. Everything the child needs is computed before the clone; the child
/// makes only raw async-signal-safe calls (see `child_setup`). All
/// signals are blocked around the clone so no handler of the runner ever
/// runs in the child; the child resets every disposition, then empties its
/// mask. A child that could not set up stdio, chdir or exec wrote why into
/// the plan it shares with this thread (`CLONE_VM`) before exiting; when
/// the clone returns, the child has exec'd or exited (vfork semantics), so
/// it is read at once ([`Spawned::failed`]).
fn start_resolved(
    cmd: &Prepared,
    prog: &CString,
    how: &How,
    inh: Inherited,
) -> io::Result<Spawned> {
    let mut argv: Vec<*const libc::c_char> = cmd.args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp = cmd.envp();
    let (out_r, out_w) = pipe()?;
    // With reserved low descriptors, the child shares our table until its
    // first call gives it one of its own with only those (reserve_low_fds).
    let low = low_slot();
    let (null, out, unshare_below) = match low {
        Some((slot, null, limit)) => {
            // SAFETY: dup3 onto this thread's own reserved slot.
            if unsafe { libc::dup3(out_w.as_raw_fd(), slot, libc::O_CLOEXEC) } < 0 {
                return Err(io::Error::last_os_error());
            }
            (null, slot, limit)
        }
        None => (dev_null()?, out_w.as_raw_fd(), 0),
    };
    let plan = ChildPlan {
        prog: prog.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: cmd.cwd.as_ptr(),
        null,
        out,
        unshare_below,
        failed: std::sync::atomic::AtomicU64::new(0),
        own_group: how.own_group,
        pdeath: how.die_with_parent,
        nofile: inh.nofile,
        parent: inh.runner_pid,
    };
    let cloned = CHILD_STACK_BUF.with(|stack| {
        let mut stack = stack.borrow_mut();
        // SAFETY: signals are blocked around the clone and restored in the
        // parent; the child runs only `child_main`, which makes raw
        // syscalls on the pointers above. They, and the stack, stay alive:
        // this thread is suspended until the child has exec'd or exited.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            // vfork semantics on a stack of its own (what posix_spawn does):
            // no page tables are copied and no page is copied on write; this
            // thread resumes once the child has exec'd or exited.
            let arg = (&plan as *const ChildPlan).cast_mut().cast();
            let files = if unshare_below > 0 {
                libc::CLONE_FILES
            } else {
                0
            };
            let (pid, e) = match how.cgroup {
                Some(cg) => clone3_into(&mut stack, cg, files, arg),
                None => {
                    let top = stack.as_mut_ptr().add(CHILD_STACK - 64);
                    let top = top.sub(top as usize % 16);
                    let pid = libc::clone(
                        child_entry,
                        top.cast(),
                        libc::CLONE_VM | libc::CLONE_VFORK | files | libc::SIGCHLD,
                        arg,
                    );
                    (pid, io::Error::last_os_error())
                }
            };
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            if pid < 0 {
                Err(e)
            } else {
                Ok(pid)
            }
        }
    });
    if let Some((slot, null, _)) = low {
        // The child has its own table by now (it exec'd or exited): the
        // slot holds /dev/null again, so only the child holds the write end.
        // SAFETY: dup3 onto this thread's own reserved slot.
        unsafe { libc::dup3(null, slot, libc::O_CLOEXEC) };
    }
    let pid = cloned?;
    drop(out_w);
    Ok(Spawned {
        pid,
        output: Some(out_r),
        failed: exec_error(plan.failed.load(std::sync::atomic::Ordering::Acquire)),
    })
}

/// One service start (on this thread, [`start_job`], or on [`Lanes`]): a
/// [`Prepared`] command, its program's path already found.
pub struct Job {
    pub cmd: Prepared,
    pub prog: CString,
    pub how: How,
    pub inh: Inherited,
}

/// Start a [`Job`] on the calling thread.
pub fn start_job(job: &Job) -> io::Result<Spawned> {
    start_resolved(&job.cmd, &job.prog, &job.how, job.inh)
}

/// How many starts [`Lanes::start_all`] runs at once. Measured at N=500
/// on 2 CPUs (`bench/run --scenarios start,start-loaded`): beside two
/// busy loops, 1, 2, 3 and 6 lanes started in about 1,290, 650-740,
/// 450-600 and 380-480 ms; on a quiet machine, in 350-375, 285-295,
/// 280-325 and 310-355 ms (the busier the CPUs, the longer each child
/// waits to be scheduled, and the more waits must overlap).
pub const LANES: usize = 6;

/// Starts services on several threads at once. A `CLONE_VFORK` clone
/// suspends only the calling thread until the child has exec'd; on one
/// thread, a burst of N starts waits N times for a child to be scheduled
/// and reach `execve`, serially (on a busy machine, each wait is a
/// scheduler slice). Lanes overlap those waits. The extra threads block
/// every signal, live as long as the runner (a child's death signal fires
/// when the *thread* that started it exits), never reap, and run only
/// while the calling thread waits for the whole batch: a reap on the
/// runner's thread cannot race a start.
pub struct Lanes {
    jobs: Vec<std::sync::mpsc::Sender<(usize, Job)>>,
    done: std::sync::mpsc::Receiver<(usize, Job, io::Result<Spawned>)>,
}

impl Lanes {
    /// `LANES - 1` threads (the caller is a lane too); fewer if a thread
    /// cannot be made.
    pub fn new() -> Lanes {
        let (done_tx, done) = std::sync::mpsc::channel();
        let mut jobs = Vec::new();
        for n in 1..LANES {
            let (tx, rx) = std::sync::mpsc::channel::<(usize, Job)>();
            let done_tx = done_tx.clone();
            let made = std::thread::Builder::new()
                .name(format!("flowrun-spawn-{n}"))
                .stack_size(64 * 1024)
                .spawn(move || {
                    // SAFETY: a local, fully initialised signal set.
                    unsafe {
                        let mut all: libc::sigset_t = std::mem::zeroed();
                        libc::sigfillset(&mut all);
                        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
                    }
                    for (k, job) in rx {
                        let res = start_resolved(&job.cmd, &job.prog, &job.how, job.inh);
                        if done_tx.send((k, job, res)).is_err() {
                            return;
                        }
                    }
                });
            if made.is_ok() {
                jobs.push(tx);
            }
        }
        Lanes { jobs, done }
    }

    /// Start every job, at most [`LANES`] at once (the first on this
    /// thread); the results in the jobs' order.
    pub fn start_all(&self, jobs: Vec<Job>) -> Vec<io::Result<Spawned>> {
        let n = jobs.len();
        let mut out: Vec<Option<io::Result<Spawned>>> = (0..n).map(|_| None).collect();
        let mut mine = Vec::new();
        let mut sent = 0;
        for (k, job) in jobs.into_iter().enumerate() {
            // Job k goes to lane k % LANES; lane 0 is this thread.
            let lane = k % (self.jobs.len() + 1);
            if lane == 0 {
                mine.push((k, job));
            } else if let Err(std::sync::mpsc::SendError((k, job))) =
                self.jobs[lane - 1].send((k, job))
            {
                mine.push((k, job));
            } else {
                sent += 1;
            }
        }
        for (k, job) in mine {
            out[k] = Some(start_resolved(&job.cmd, &job.prog, &job.how, job.inh));
        }
        for _ in 0..sent {
            match self.done.recv() {
                Ok((k, _, res)) => out[k] = Some(res),
                Err(_) => break,
            }
        }
        // A lane that is gone took its job with it.
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("spawn lane lost"))))
            .collect()
    }
}

impl Default for Lanes {
    fn default() -> Self {
        Lanes::new()
    }
}

/// The kernel's `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (linux/sched.h).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)` on `stack`: the
/// child starts in the cgroup `cgroup` (a directory descriptor) and runs
/// [`child_entry`]`(arg)`, which never returns; the caller resumes once it
/// has exec'd or exited. Returns the pid (or -1) and the error.
///
/// # Safety
/// As for `libc::clone` with `CLONE_VM | CLONE_VFORK`: `arg` must be a
/// `ChildPlan` alive until the call returns, and signals should be blocked.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_into(
    stack: &mut [u8],
    cgroup: RawFd,
    files: libc::c_int,
    arg: *mut libc::c_void,
) -> (i32, io::Error) {
    // The kernel starts the child with its stack pointer at
    // `stack + stack_size`; keep it 16-byte aligned so the `call` below
    // enters `child_entry` with the ABI's alignment.
    let base = stack.as_mut_ptr() as usize;
    let top = (base + stack.len()) & !15;
    let args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK | files) as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: base as u64,
        stack_size: (top - base) as u64,
        cgroup: cgroup as u64,
        ..Default::default()
    };
    let entry: extern "C" fn(*mut libc::c_void) -> libc::c_int = child_entry;
    let ret: i64;
    // The parent returns from the syscall with every register but rax, rcx
    // and r11 intact. The child (rax = 0) is on its own stack with the
    // parent's registers: it calls `entry(arg)` from r12/r13 and never
    // comes back (child_main execs or exits; ud2 if it ever did).
    // SAFETY: `args` and the stack outlive the call (CLONE_VFORK suspends
    // us until the child has exec'd or exited); the clobbered registers are
    // declared; the caller keeps `arg` alive (see # Safety).
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &args as *const CloneArgs,
            in("rsi") size_of::<CloneArgs>(),
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        )
    };
    if ret < 0 {
        (-1, io::Error::from_raw_os_error(-ret as i32))
    } else {
        (ret as i32, io::Error::from_raw_os_error(0))
    }
}

/// Other architectures: never called. Cgroup containment is refused
/// there ([`super::cgroup::find_parent`]), so `up` uses process groups;
/// were it called, every start would fail with ENOSYS.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_into(
    stack: &mut [u8],
    cgroup: RawFd,
    files: libc::c_int,
    arg: *mut libc::c_void,
) -> (i32, io::Error) {
    let _ = (stack, cgroup, files, arg);
    (-1, io::Error::from_raw_os_error(libc::ENOSYS))
}

struct ChildPlan {
    prog: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    null: i32,
    out: i32,
    /// Nonzero: cloned sharing the parent's descriptor table; unshare it
    /// first, keeping only the descriptors below this ([`reserve_low_fds`]).
    unshare_below: u32,
    /// Where and why the child failed ([`exec_error`]), written by the child.
    failed: std::sync::atomic::AtomicU64,
    own_group: bool,
    pdeath: bool,
    nofile: libc::rlimit,
    parent: i32,
}

/// Stack size of a [`spawn_service`] child until it execs.
const CHILD_STACK: usize = 64 * 1024;

extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildPlan` of the suspended parent (CLONE_VM +
    // CLONE_VFORK), alive until this child execs or exits.
    unsafe { child_main(&*(arg as *const ChildPlan)) }
}

/// The child of [`spawn_service`]: never returns.
///
/// # Safety
/// Only in the child of [`clone3_into`], with `p` the suspended parent's
/// plan.
unsafe fn child_main(p: &ChildPlan) -> ! {
    // SAFETY: `p` and every pointer in it stay valid until this child
    // execs or exits (the parent is suspended: CLONE_VFORK); between clone
    // and exec only system calls and `_exit` run, as in `child_setup`.
    unsafe {
        let fail = |stage: ExecStage| -> ! {
            let errno = *libc::__errno_location() as u32 as u64;
            p.failed.store(
                (stage as u64 + 1) << 32 | errno,
                std::sync::atomic::Ordering::Release,
            );
            libc::_exit(127)
        };
        // First, before anything touches a descriptor: a table of our own.
        // CLOSE_RANGE_UNSHARE = 2.
        if p.unshare_below > 0
            && libc::syscall(libc::SYS_close_range, p.unshare_below, u32::MAX, 2u32) != 0
        {
            fail(ExecStage::Stdio);
        }
        if p.own_group {
            libc::setpgid(0, 0);
        }
        if libc::dup2(p.null, 0) < 0 || libc::dup2(p.out, 1) < 0 || libc::dup2(p.out, 2) < 0 {
            fail(ExecStage::Stdio);
        }
        if libc::chdir(p.cwd) != 0 {
            fail(ExecStage::Chdir);
        }
        // Resets dispositions (while all signals are still blocked), restores
        // the limit, marks fds ≥ 3 close-on-exec, arms the death signal, and
        // finally empties the mask.
        child_setup(p.nofile, p.pdeath, p.parent);
        libc::execve(p.prog, p.argv, p.envp);
        fail(ExecStage::Exec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(program: &str, env: &[(String, String)]) -> io::Result<CString> {
        let argv = [program.to_string()];
        Prepared::new(&argv, env, Path::new("/"))?.program(&mut None)
    }

    #[test]
    fn programs_are_found_in_the_childs_path() {
        let p = resolve("sh", &[]).unwrap();
        assert!(p.to_bytes().ends_with(b"/sh"), "{p:?}");
        // The group's PATH wins over the runner's.
        let env = [("PATH".to_string(), "/nonexistent-dir".to_string())];
        let e = resolve("sh", &env).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        // A path is taken as written (relative to the child's cwd).
        assert_eq!(resolve("./bin/x", &env).unwrap().to_bytes(), b"./bin/x");
        assert!(resolve("a\0b/c", &[]).is_err());
    }

    #[test]
    fn a_remembered_search_is_reused_only_for_the_same_program_and_path() {
        let dir = std::env::temp_dir().join(format!("flowrun-spawn-seen-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let tool = |d: &Path| {
            let f = d.join("tool");
            std::fs::write(&f, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
            f
        };
        let in_b = tool(&b);
        let path = format!("{}:{}", a.display(), b.display());
        let argv = ["tool".to_string()];
        let cmd = Prepared::new(&argv, &[("PATH".into(), path)], Path::new("/")).unwrap();
        let mut seen = None;
        assert_eq!(
            cmd.program(&mut seen).unwrap().to_bytes(),
            in_b.as_os_str().as_bytes()
        );
        // Another PATH searches again.
        let other = Prepared::new(
            &argv,
            &[("PATH".into(), a.display().to_string())],
            Path::new("/"),
        )
        .unwrap();
        assert!(other.program(&mut seen).is_err());
        // Gone from where it was found: searched again, not reused.
        let in_a = tool(&a);
        assert_eq!(
            cmd.program(&mut seen).unwrap().to_bytes(),
            in_b.as_os_str().as_bytes()
        );
        std::fs::remove_file(&in_b).unwrap();
        assert_eq!(
            cmd.program(&mut seen).unwrap().to_bytes(),
            in_a.as_os_str().as_bytes()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn environment_overrides_and_appends_in_order() {
        let env = [
            ("FLOWRUN_SPAWN_TEST_A".to_string(), "1".to_string()),
            ("FLOWRUN_SPAWN_TEST_A".to_string(), "2".to_string()),
            ("PATH".to_string(), "/x".to_string()),
        ];
        let cmd = Prepared::new(&["true".to_string()], &env, Path::new("/")).unwrap();
        let envp = cmd.envp();
        assert!(envp.last().unwrap().is_null());
        let vars: Vec<&[u8]> = envp[..envp.len() - 1]
            .iter()
            // SAFETY: non-null pointers into `cmd`'s and the runner's strings.
            .map(|&p| unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes())
            .collect();
        assert_eq!(
            vars.iter()
                .filter(|v| v.starts_with(b"FLOWRUN_SPAWN_TEST_A="))
                .collect::<Vec<_>>(),
            [&&b"FLOWRUN_SPAWN_TEST_A=2"[..]]
        );
        assert_eq!(vars.iter().filter(|v| v.starts_with(b"PATH=")).count(), 1);
        assert!(vars.contains(&&b"PATH=/x"[..]));
    }

    #[test]
    fn a_start_with_reserved_descriptors_relays_and_frees_its_slot() {
        reserve_low_fds();
        let Some(low) = LOW_FDS.get() else {
            eprintln!("SKIPPED: no CLOSE_RANGE_UNSHARE (kernel older than 5.9)");
            return;
        };
        let argv: Vec<String> = ["sh", "-c", "echo hi; ls /proc/self/fd"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        let spec = SpawnSpec {
            argv: &argv,
            env: &[],
            cwd: Path::new("/"),
            own_group: true,
            die_with_parent: true,
            capture: true,
            cgroup: None,
        };
        let inh = Inherited {
            nofile: libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            },
            runner_pid: std::process::id() as i32,
        };
        let child = spawn_service(&spec, inh).expect("spawn");
        let out = child.output.expect("a pipe");
        // Read until EOF, which comes only if the child alone held the
        // write end (a slot still holding it would keep the pipe open).
        let mut text = Vec::new();
        let mut eof = false;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !eof && std::time::Instant::now() < deadline {
            let mut pfd = libc::pollfd {
                fd: out.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 100) };
            let mut buf = [0u8; 4096];
            // SAFETY: reading into a local buffer from our own descriptor.
            let n = unsafe { libc::read(out.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match n {
                0 => eof = true,
                n if n > 0 => text.extend_from_slice(&buf[..n as usize]),
                _ => {}
            }
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        let mut st = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(child.pid, &mut st, 0) };
        let (slot, _, limit) = low_slot().expect("this thread's slot");
        let held = std::fs::read_link(format!("/proc/self/fd/{slot}")).unwrap_or_default();
        assert!(eof, "no EOF: the write end is held elsewhere ({text:?})");
        assert!(text.starts_with("hi\n"), "{text:?}");
        // The child's own descriptors: 0, 1, 2 and the one `ls` opened.
        let fds: Vec<&str> = text.lines().skip(1).collect();
        assert!(
            fds.len() <= 4 && fds.starts_with(&["0", "1", "2"]),
            "{fds:?}"
        );
        assert!(child.failed.is_none() && libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
        assert_eq!(
            held,
            Path::new("/dev/null"),
            "slot {slot} still holds the pipe"
        );
        assert!((slot as u32) < limit && (low.null as u32) < limit);
    }

    #[test]
    fn exec_errors_are_read_back() {
        let word = (ExecStage::Chdir as u64 + 1) << 32 | libc::ENOENT as u64;
        assert_eq!(exec_error(word), Some((ExecStage::Chdir, libc::ENOENT)));
        assert_eq!(exec_error(1 << 32), Some((ExecStage::Stdio, 0)));
        // Nothing written: the child exec'd.
        assert_eq!(exec_error(0), None);
    }
}
