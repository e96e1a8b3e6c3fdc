//! Spawning one child cleanly (std `Command`, never tokio::process).
//!
//! Every input of the `pre_exec` hook is computed before the fork; the hook
//! itself makes only async-signal-safe raw calls: reset every signal (1–64)
//! to its default action, empty the signal mask, restore the inherited
//! `RLIMIT_NOFILE`, mark every descriptor above 2 close-on-exec, and (for
//! `die-with-parent`) arm `PR_SET_PDEATHSIG` and check the parent is still
//! the runner. All spawns happen on the runner's main thread (the
//! current-thread runtime's only thread), which lives as long as the
//! runner, so the death signal cannot fire early (RUNTIME-NOTES 1). Reaping
//! happens on that same thread, so std's own `waitpid` after a failed exec
//! never races the reaper (RUNTIME-NOTES 2).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
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
}

pub struct Spawned {
    pub pid: i32,
    /// The runner's (non-blocking) read end of the output pipe.
    pub output: Option<OwnedFd>,
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
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fds[0], libc::F_GETFL);
        libc::fcntl(fds[0], libc::F_SETFL, fl | libc::O_NONBLOCK);
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
    // SAFETY: the hook only makes async-signal-safe libc calls on values
    // computed before the fork (see the module comment).
    unsafe {
        cmd.pre_exec(move || {
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
    Ok(Spawned { pid, output })
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
unsafe fn child_setup(nofile: libc::rlimit, pdeath: bool, parent: i32) {
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
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
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
}
