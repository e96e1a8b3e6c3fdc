//! Where a running topology's control socket lives, and the lock that
//! proves its runner is alive.
//!
//! The directory is `$XDG_RUNTIME_DIR/flowrun/` when `XDG_RUNTIME_DIR` is
//! set to an absolute path, else `$TMPDIR/flowrun-<uid>/` (`/tmp` when
//! `TMPDIR` is unset). The runner creates it with mode 0700 and refuses to
//! use one that is a symlink, is not owned by its effective uid, or is
//! open to group or others — a directory in a shared `/tmp` that somebody
//! else created first is never trusted.
//!
//! Each topology file (by canonical path) gets two names in it:
//! `<stem>-<hash>.sock` (the socket, mode 0600) and `<stem>-<hash>.lock`
//! (a JSON line naming the file, the runner's pid and the socket). The
//! runner holds an exclusive `flock` on the lock file for as long as it
//! runs; the kernel releases it when the runner dies, even by SIGKILL. So
//! a socket whose lock is not held is stale: the next runner replaces it
//! (bind to a temporary name, chmod, rename over it), and clients report
//! the topology as not running instead of trusting it.

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Unix socket paths are limited to 107 bytes (`sun_path`, NUL included).
const MAX_SOCKET_PATH: usize = 107;

/// The effective uid. (libc rather than nix: nix's `user` feature is
/// not enabled for this one call.)
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The per-user directory of control sockets (not created).
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if Path::new(&d).is_absolute() => Path::new(&d).join("flowrun"),
        _ => std::env::temp_dir().join(format!("flowrun-{}", euid())),
    }
}

/// Create `dir` (mode 0700) if needed and check that it is private: a
/// real directory, owned by the effective uid, no group/other access.
pub fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let md =
        fs::symlink_metadata(dir).map_err(|e| format!("cannot stat {}: {e}", dir.display()))?;
    let me = euid();
    if !md.file_type().is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if md.uid() != me {
        return Err(format!(
            "{} belongs to uid {}, not to uid {me}; refusing to put a control socket there",
            dir.display(),
            md.uid()
        ));
    }
    if md.mode() & 0o077 != 0 {
        return Err(format!(
            "{} has mode {:o}; it must be private (0700)",
            dir.display(),
            md.mode() & 0o777
        ));
    }
    Ok(())
}

/// FNV-1a, 64 bits: a stable name for a path (not a security boundary:
/// the directory is private).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The socket and lock file of one topology file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The topology file, canonical.
    pub topology: PathBuf,
    pub socket: PathBuf,
    pub lock: PathBuf,
}

impl Endpoint {
    /// The names for `topology` (already canonical) in `dir`.
    pub fn new(dir: &Path, topology: &Path) -> Result<Endpoint, String> {
        use std::os::unix::ffi::OsStrExt;
        let stem: String = topology
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(24)
            .collect();
        let base = format!("{stem}-{:016x}", fnv1a(topology.as_os_str().as_bytes()));
        let socket = dir.join(format!("{base}.sock"));
        Ok(Endpoint {
            topology: topology.to_path_buf(),
            lock: dir.join(format!("{base}.lock")),
            socket,
        })
    }
}

/// What a runner writes into its lock file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    pub topology: PathBuf,
    pub pid: u32,
    pub socket: PathBuf,
}

/// The runner's exclusive lock on its lock file; released on drop (and
/// by the kernel when the process dies).
#[derive(Debug)]
pub struct Lock {
    _flock: Flock<File>,
    path: PathBuf,
}

impl Lock {
    /// Take the lock of `ep` and write the lock info, retrying for up to
    /// `patience` (a client probing liveness holds a shared lock for a
    /// moment). `Err` names the live runner when there is one.
    pub fn acquire(ep: &Endpoint, patience: Duration) -> Result<Lock, String> {
        let end = Instant::now() + patience;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(&ep.lock)
                .map_err(|e| format!("cannot open {}: {e}", ep.lock.display()))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut fl) => {
                    // The previous holder may have unlinked the file after
                    // we opened it: only a lock on the file at the path
                    // counts.
                    let same = match (fs::symlink_metadata(&ep.lock), fl.metadata()) {
                        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                        _ => false,
                    };
                    if !same {
                        continue;
                    }
                    let info = LockInfo {
                        topology: ep.topology.clone(),
                        pid: std::process::id(),
                        socket: ep.socket.clone(),
                    };
                    let mut text = serde_json::to_string(&info).unwrap_or_default();
                    text.push('\n');
                    fl.set_len(0)
                        .and_then(|()| fl.rewind())
                        .and_then(|()| fl.write_all(text.as_bytes()))
                        .map_err(|e| format!("cannot write {}: {e}", ep.lock.display()))?;
                    return Ok(Lock {
                        _flock: fl,
                        path: ep.lock.clone(),
                    });
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    let who = read_info(&ep.lock)
                        .map(|i| format!(" (pid {})", i.pid))
                        .unwrap_or_default();
                    return Err(format!("{} is already running{who}", ep.topology.display()));
                }
                Err((_, e)) => return Err(format!("cannot lock {}: {e}", ep.lock.display())),
            }
        }
    }

    /// Remove the lock file (while still holding the lock) and release it.
    pub fn release(self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn read_info(path: &Path) -> Option<LockInfo> {
    let mut s = String::new();
    File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_string(&mut s)
        .ok()?;
    serde_json::from_str(s.trim()).ok()
}

/// Whether a runner holds a lock file.
#[derive(Debug)]
pub enum Liveness {
    Alive,
    /// No lock file, or nobody holds it: any socket next to it is stale.
    Dead,
    /// The lock file could not be checked (e.g. it belongs to another
    /// user).
    Unknown(std::io::Error),
}

/// Probe the lock at `path`: a shared lock taken and released at once.
pub fn liveness(path: &Path) -> Liveness {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Liveness::Dead,
        Err(e) => return Liveness::Unknown(e),
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_released_on_drop) => Liveness::Dead,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Liveness::Alive,
        Err((_, e)) => Liveness::Unknown(e.into()),
    }
}

/// Remove the lock file at `path` and its socket when no runner holds
/// the lock (its runner died without cleaning up: SIGKILL). Safe against
/// a runner taking the lock at the same time: the files are removed while
/// holding the lock on the file at the path, as [`Lock::release`] does,
/// and [`Lock::acquire`] only trusts a lock on the file at the path.
/// Only a regular file is removed, and opening never blocks (a FIFO by
/// that name would).
pub fn remove_if_stale(path: &Path) {
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    else {
        return;
    };
    let Ok(fl) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
        return; // held: its runner is alive (or a client is probing it)
    };
    let same = match (fs::symlink_metadata(path), fl.metadata()) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev() && b.is_file(),
        _ => false,
    };
    if same {
        let _ = fs::remove_file(path.with_extension("sock"));
        let _ = fs::remove_file(path);
    }
}

/// Whether a runner is known to hold the lock at `path`.
pub fn is_alive(path: &Path) -> bool {
    matches!(liveness(path), Liveness::Alive)
}

/// The live runners in `dir`, sorted by topology path.
pub fn running(dir: &Path) -> Vec<LockInfo> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<LockInfo> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "lock"))
        .filter(|p| is_alive(p))
        .filter_map(|p| read_info(&p))
        .collect();
    out.sort_by(|a, b| a.topology.cmp(&b.topology));
    out
}

/// A name for `path` that fits a unix socket address (108 bytes): the
/// path itself when it fits, else `/proc/self/fd/N/NAME` through an
/// `O_PATH` descriptor of its directory (kept open by the caller while
/// the name is used), so a long `XDG_RUNTIME_DIR` still works.
pub fn socket_name(path: &Path) -> std::io::Result<(PathBuf, Option<std::os::fd::OwnedFd>)> {
    use std::os::fd::AsRawFd;
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok((path.to_path_buf(), None));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default();
    let fd: std::os::fd::OwnedFd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)?
        .into();
    let short = Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())).join(name);
    Ok((short, Some(fd)))
}

/// Bind the socket of `ep` (whose lock the caller holds): bind to a
/// temporary name, chmod 0600, rename over whatever stale socket is there.
pub fn bind(ep: &Endpoint) -> Result<std::os::unix::net::UnixListener, String> {
    let dir = ep.socket.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".tmp-{}.sock", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let listener = socket_name(&tmp)
        .and_then(|(name, _dir)| std::os::unix::net::UnixListener::bind(name))
        .map_err(|e| format!("cannot bind {}: {e}", tmp.display()))?;
    let done = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
        .and_then(|()| fs::rename(&tmp, &ep.socket));
    if let Err(e) = done {
        let _ = fs::remove_file(&tmp);
        return Err(format!("cannot install {}: {e}", ep.socket.display()));
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("flowrun-paths-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn names_are_stable_short_and_distinct() {
        let d = Path::new("/run/user/1000/flowrun");
        let a = Endpoint::new(d, Path::new("/srv/app/topology.pf")).unwrap();
        let b = Endpoint::new(d, Path::new("/srv/other/topology.pf")).unwrap();
        assert_ne!(a.socket, b.socket);
        assert_eq!(
            a,
            Endpoint::new(d, Path::new("/srv/app/topology.pf")).unwrap()
        );
        assert!(a
            .socket
            .to_string_lossy()
            .starts_with("/run/user/1000/flowrun/topology-"));
    }

    #[test]
    fn a_socket_in_a_long_directory_binds_and_connects() {
        let d = tmpdir("long").join("x".repeat(120));
        fs::create_dir_all(&d).unwrap();
        let path = d.join("t.sock");
        assert!(path.as_os_str().len() > MAX_SOCKET_PATH);
        let (name, _dir) = socket_name(&path).unwrap();
        assert!(name.as_os_str().len() <= MAX_SOCKET_PATH, "{name:?}");
        let listener = std::os::unix::net::UnixListener::bind(&name).unwrap();
        assert!(path.exists(), "the socket is at its real path");
        let (name, _dir) = socket_name(&path).unwrap();
        let _client = std::os::unix::net::UnixStream::connect(&name).unwrap();
        assert!(listener.accept().is_ok());
        let _ = fs::remove_dir_all(d.parent().unwrap());
    }

    #[test]
    fn a_directory_open_to_others_is_refused() {
        let d = tmpdir("open");
        ensure_private_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(ensure_private_dir(&d)
            .unwrap_err()
            .contains("must be private"));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_lock_is_exclusive_and_names_its_holder() {
        let d = tmpdir("lock");
        ensure_private_dir(&d).unwrap();
        let ep = Endpoint::new(&d, Path::new("/x/t.pf")).unwrap();
        assert!(!is_alive(&ep.lock));
        let lock = Lock::acquire(&ep, Duration::ZERO).unwrap();
        assert!(is_alive(&ep.lock));
        let err = Lock::acquire(&ep, Duration::from_millis(50)).unwrap_err();
        assert!(err.contains("already running"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        let live = running(&d);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].topology, Path::new("/x/t.pf"));
        lock.release();
        assert!(!is_alive(&ep.lock));
        assert!(running(&d).is_empty());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn only_a_lock_nobody_holds_is_removed_with_its_socket() {
        let d = tmpdir("stale");
        ensure_private_dir(&d).unwrap();
        let live = Endpoint::new(&d, Path::new("/x/live.pf")).unwrap();
        let dead = Endpoint::new(&d, Path::new("/x/dead.pf")).unwrap();
        let held = Lock::acquire(&live, Duration::ZERO).unwrap();
        fs::write(&live.socket, "").unwrap();
        // What a runner killed by SIGKILL leaves: its lock file, not held,
        // and its socket.
        drop(Lock::acquire(&dead, Duration::ZERO).unwrap());
        fs::write(&dead.socket, "").unwrap();
        for ep in [&live, &dead] {
            remove_if_stale(&ep.lock);
        }
        assert!(live.lock.exists() && live.socket.exists());
        assert!(!dead.lock.exists() && !dead.socket.exists());
        // Something else by a lock's name is neither waited on nor removed.
        let fifo = d.join("f.lock");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        remove_if_stale(&fifo);
        assert!(!is_alive(&fifo));
        assert!(fifo.exists());
        // A held lock is never removed, and a stale one can be taken again.
        assert!(is_alive(&live.lock));
        held.release();
        assert!(Lock::acquire(&dead, Duration::ZERO).is_ok());
        fs::remove_dir_all(&d).unwrap();
    }
}
