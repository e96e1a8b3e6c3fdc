//! `flowrun-probe`: a small, fast-starting test program for the `flowrun up`
//! integration tests (tests/it/up_*.rs). It records every signal it receives,
//! can ignore chosen signals, print numbered lines or a checkable blob, spawn
//! grandchildren, become ready in the ways `ready when` checks, and exit or
//! crash on its own. With no action flags it sleeps until a signal stops it.
//!
//! Flags (all optional; a `SIGS` list is comma-separated names: `SIGTERM,SIGINT`):
//!
//! * `--record FILE` — append one line per received signal to FILE:
//!   `<unix_ns> <pid> <SIGNAME>`. The handler only stores the signal number
//!   and a `CLOCK_REALTIME` timestamp into a self-pipe (async-signal-safe);
//!   a recorder thread formats the line and appends it with a single
//!   `write(2)` on an `O_APPEND` descriptor, so lines from concurrent probes
//!   sharing a file never interleave. Recorded: SIGHUP, SIGINT, SIGQUIT,
//!   SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM (not SIGCONT, SIGCHLD,
//!   SIGWINCH: the runner may send SIGCONT after a stop signal by design).
//! * `--ignore SIGS` — record these but do not act on them.
//! * `--exit-on SIGS` — record these, then exit 0 (default: SIGTERM, SIGINT,
//!   SIGQUIT, SIGHUP). `--ignore` wins over `--exit-on`.
//! * `--record-exit` — when a stop signal makes the probe exit, append
//!   `<unix_ns> <pid> EXIT` to the record file just before `_exit(0)`: a
//!   lower bound of the moment it died, for ordering tests.
//! * `--linger-ms MS` — after an exit-on signal, keep recording for MS
//!   before exiting, so a duplicate stop signal would still be recorded.
//! * `--print-fds` — first thing, print `fds: 0 1 2` (the open descriptors
//!   from `/proc/self/fd`, without the one used to list them).
//! * `--print-status` — first thing, print the `SigIgn:`, `SigBlk:` and
//!   `SigCgt:` lines of `/proc/self/status` and `nofile: SOFT HARD`
//!   (getrlimit). Note: Rust's runtime ignores SIGPIPE before `main`, so
//!   `SigIgn` shows bit 13 (0x1000) even when the parent passed none.
//! * `--delay-ms MS` — wait this long before the readiness actions below.
//! * `--listen-tcp PORT` — bind and listen on 127.0.0.1:PORT (accepting and
//!   closing connections), for `ready when tcp`.
//! * `--notify` — send `READY=1` to the unix datagram socket `$NOTIFY_SOCKET`
//!   (`@name` is the abstract namespace).
//! * `--log-ready TEXT` — print TEXT as a line on stdout (for `ready when log`).
//! * `--spawn CMD` (repeatable) — start `/bin/sh -c CMD` as a grandchild and
//!   leave it running (it inherits the environment, so the test's marker).
//! * `--lines N [--line-bytes B] [--prefix S]` — print N lines
//!   `S:000042:xxxx…`, each exactly B bytes before the newline (default 64;
//!   at least as long as the header), written through a 64 KiB buffer.
//! * `--blob BYTES [--seed N]` — print exactly BYTES bytes of pseudo-random
//!   printable lines (each at most 100 bytes incl. its newline; see
//!   [`blob`]), reproducible from the seed, so a test regenerates and
//!   compares them exactly. The output ends with a newline when BYTES > 0.
//!   Without `--exit`, the probe exits 0 once the blob is written.
//! * `--no-newline-bytes N` — print N bytes `abc…zabc…` with no newline.
//! * `--exit CODE [--after-ms MS]` — after the output actions (and MS), exit
//!   with CODE.
//! * `--crash-after-ms MS` — exit 1 after MS (a crashing service).
//!
//! Order of actions: print-fds/print-status, signal set-up, spawn, delay,
//! listen/notify/log-ready, output, then exit or sleep forever.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// Write end of the self-pipe, read by the recorder thread.
static PIPE_W: AtomicI32 = AtomicI32::new(-1);

/// Signals the probe catches and records.
const CAUGHT: &[libc::c_int] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGTERM,
];

fn sig_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => "SIG?",
    }
}

fn sig_from_name(name: &str) -> Option<libc::c_int> {
    let n = name.trim();
    let n = n.strip_prefix("SIG").unwrap_or(n);
    CAUGHT
        .iter()
        .copied()
        .find(|&s| sig_name(s).strip_prefix("SIG") == Some(n))
}

/// The signal handler: timestamp + number into the pipe, one write(2).
extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: clock_gettime and write are async-signal-safe; errno is saved
    // and restored so the interrupted code does not see it change.
    unsafe {
        let errno = *libc::__errno_location();
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
        let ns = ts.tv_sec * 1_000_000_000 + ts.tv_nsec;
        let mut msg = [0u8; 16];
        msg[..4].copy_from_slice(&sig.to_ne_bytes());
        msg[8..].copy_from_slice(&ns.to_ne_bytes());
        let fd = PIPE_W.load(Ordering::Relaxed);
        if fd >= 0 {
            libc::write(fd, msg.as_ptr().cast(), msg.len());
        }
        *libc::__errno_location() = errno;
    }
}

struct Args {
    record: Option<String>,
    ignore: Vec<libc::c_int>,
    exit_on: Vec<libc::c_int>,
    linger_ms: u64,
    record_exit: bool,
    print_fds: bool,
    print_status: bool,
    delay_ms: u64,
    listen_tcp: Option<u16>,
    notify: bool,
    log_ready: Option<String>,
    spawn: Vec<String>,
    lines: Option<u64>,
    line_bytes: usize,
    prefix: String,
    blob: Option<u64>,
    seed: u64,
    no_newline: Option<u64>,
    exit: Option<i32>,
    after_ms: u64,
    crash_after_ms: Option<u64>,
}

fn usage(msg: &str) -> ! {
    eprintln!("flowrun-probe: {msg} (see the doc comment in src/bin/flowrun-probe.rs)");
    std::process::exit(64)
}

fn parse_sigs(list: &str) -> Vec<libc::c_int> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| sig_from_name(s).unwrap_or_else(|| usage(&format!("unknown signal {s}"))))
        .collect()
}

fn parse_args() -> Args {
    let mut a = Args {
        record: None,
        ignore: Vec::new(),
        exit_on: vec![libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGHUP],
        linger_ms: 0,
        record_exit: false,
        print_fds: false,
        print_status: false,
        delay_ms: 0,
        listen_tcp: None,
        notify: false,
        log_ready: None,
        spawn: Vec::new(),
        lines: None,
        line_bytes: 64,
        prefix: "L".into(),
        blob: None,
        seed: 1,
        no_newline: None,
        exit: None,
        after_ms: 0,
        crash_after_ms: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> T {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v}")))
        }
        match flag.as_str() {
            "--record" => a.record = Some(val()),
            "--ignore" => a.ignore = parse_sigs(&val()),
            "--exit-on" => a.exit_on = parse_sigs(&val()),
            "--record-exit" => a.record_exit = true,
            "--linger-ms" => a.linger_ms = num(&flag, val()),
            "--print-fds" => a.print_fds = true,
            "--print-status" => a.print_status = true,
            "--delay-ms" => a.delay_ms = num(&flag, val()),
            "--listen-tcp" => a.listen_tcp = Some(num(&flag, val())),
            "--notify" => a.notify = true,
            "--log-ready" => a.log_ready = Some(val()),
            "--spawn" => a.spawn.push(val()),
            "--lines" => a.lines = Some(num(&flag, val())),
            "--line-bytes" => a.line_bytes = num(&flag, val()),
            "--prefix" => a.prefix = val(),
            "--blob" => a.blob = Some(num(&flag, val())),
            "--seed" => a.seed = num(&flag, val()),
            "--no-newline-bytes" => a.no_newline = Some(num(&flag, val())),
            "--exit" => a.exit = Some(num(&flag, val())),
            "--after-ms" => a.after_ms = num(&flag, val()),
            "--crash-after-ms" => a.crash_after_ms = Some(num(&flag, val())),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    a
}

/// The open descriptors, without the directory handle used to list them.
fn open_fds() -> Vec<i32> {
    let mut fds = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        for e in dir.flatten() {
            let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            let t = target.to_string_lossy();
            if t.starts_with("/proc/") && t.ends_with("/fd") {
                continue; // the read_dir handle itself
            }
            fds.push(fd);
        }
    }
    fds.sort_unstable();
    fds
}

/// The blob: lines of pseudo-random letters and digits from an xorshift
/// generator seeded with `seed`, each line 1..=100 bytes including its
/// newline, exactly `len` bytes in all (the last line is cut to fit and
/// always ends with a newline). Tests keep an identical copy of this
/// function to regenerate the expected bytes.
pub fn blob(len: u64, seed: u64) -> Vec<u8> {
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = len as usize;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let line = 1 + (next() % 100) as usize; // incl. newline
        let line = line.min(len - out.len());
        for _ in 1..line {
            out.push(ALPHA[(next() % ALPHA.len() as u64) as usize]);
        }
        out.push(b'\n');
    }
    out
}

fn install_handlers(fd_w: i32) {
    PIPE_W.store(fd_w, Ordering::Relaxed);
    for &sig in CAUGHT {
        // SAFETY: a plain sigaction with an async-signal-safe handler.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn recorder(
    fd_r: i32,
    record: Option<std::fs::File>,
    ignore: Vec<i32>,
    exit_on: Vec<i32>,
    linger: Duration,
    record_exit: bool,
) {
    let pid = std::process::id();
    let exit = |code: i32| -> ! {
        if let (true, Some(f)) = (record_exit, &record) {
            let line = format!("{} {pid} EXIT\n", now_ns());
            // SAFETY: one write(2) of a local buffer to our own descriptor.
            unsafe { libc::write(f.as_raw_fd(), line.as_ptr().cast(), line.len()) };
        }
        // SAFETY: immediate exit; nothing to flush that matters.
        unsafe { libc::_exit(code) }
    };
    let mut exit_at: Option<std::time::Instant> = None;
    loop {
        if let Some(at) = exit_at {
            let left = at.saturating_duration_since(std::time::Instant::now());
            let mut pfd = libc::pollfd {
                fd: fd_r,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: polling our own pipe.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
            if n == 0 {
                exit(0); // the linger period is over
            }
        }
        let mut msg = [0u8; 16];
        // SAFETY: reading into a local buffer from our own pipe.
        let n = unsafe { libc::read(fd_r, msg.as_mut_ptr().cast(), msg.len()) };
        if n != 16 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            continue;
        }
        let sig = i32::from_ne_bytes(msg[..4].try_into().unwrap_or_default());
        let ns = i64::from_ne_bytes(msg[8..].try_into().unwrap_or_default());
        if let Some(f) = &record {
            let line = format!("{ns} {pid} {}\n", sig_name(sig));
            // One write(2) on an O_APPEND descriptor: atomic per line.
            // SAFETY: writing a local buffer to our own descriptor.
            unsafe {
                libc::write(f.as_raw_fd(), line.as_ptr().cast(), line.len());
            }
        }
        if !ignore.contains(&sig) && exit_on.contains(&sig) {
            if linger.is_zero() {
                exit(0);
            }
            exit_at.get_or_insert(std::time::Instant::now() + linger);
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        eprintln!("flowrun-probe: --notify but NOTIFY_SOCKET is not set");
        return;
    };
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = path.as_bytes();
    let addr = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name)
    } else {
        SocketAddr::from_pathname(std::path::Path::new(&path))
    };
    let sent = addr.and_then(|addr| {
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(b"READY=1", &addr)
    });
    if let Err(e) = sent {
        eprintln!("flowrun-probe: notify failed: {e}");
    }
}

fn main() {
    let a = parse_args();
    // SAFETY: fd 1 is our stdout; ManuallyDrop-like: we never close it.
    let mut out =
        std::io::BufWriter::with_capacity(65536, unsafe { std::fs::File::from_raw_fd(1) });

    if a.print_fds {
        let fds: Vec<String> = open_fds().iter().map(|f| f.to_string()).collect();
        let _ = writeln!(out, "fds: {}", fds.join(" "));
    }
    if a.print_status {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        for l in status.lines() {
            if l.starts_with("SigIgn:") || l.starts_with("SigBlk:") || l.starts_with("SigCgt:") {
                let _ = writeln!(out, "{l}");
            }
        }
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit into a local struct.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
        let _ = writeln!(out, "nofile: {} {}", rl.rlim_cur, rl.rlim_max);
    }
    let _ = out.flush();

    // Self-pipe (CLOEXEC, so grandchildren do not inherit it).
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 into a local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        usage("pipe2 failed");
    }
    let record = a.record.as_ref().map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap_or_else(|e| usage(&format!("cannot open {p}: {e}")))
    });
    install_handlers(fds[1]);
    let (ignore, exit_on, fd_r) = (a.ignore.clone(), a.exit_on.clone(), fds[0]);
    let linger = Duration::from_millis(a.linger_ms);
    let record_exit = a.record_exit;
    std::thread::spawn(move || recorder(fd_r, record, ignore, exit_on, linger, record_exit));

    let mut children = Vec::new();
    for cmd in &a.spawn {
        match std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::null())
            .spawn()
        {
            Ok(c) => children.push(c),
            Err(e) => eprintln!("flowrun-probe: cannot spawn {cmd}: {e}"),
        }
    }

    if let Some(ms) = a.crash_after_ms {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            // SAFETY: immediate exit of the whole process.
            unsafe { libc::_exit(1) };
        });
    }

    if a.delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(a.delay_ms));
    }
    if let Some(port) = a.listen_tcp {
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => {
                std::thread::spawn(move || {
                    for c in l.incoming() {
                        drop(c);
                    }
                });
            }
            Err(e) => {
                eprintln!("flowrun-probe: cannot listen on {port}: {e}");
                std::process::exit(3);
            }
        }
    }
    if a.notify {
        notify_ready();
    }
    if let Some(text) = &a.log_ready {
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    if let Some(n) = a.lines {
        let mut line = Vec::with_capacity(a.line_bytes + 32);
        for i in 0..n {
            line.clear();
            let _ = write!(line, "{}:{:06}:", a.prefix, i);
            while line.len() < a.line_bytes {
                line.push(b'x');
            }
            line.push(b'\n');
            if out.write_all(&line).is_err() {
                break;
            }
        }
        let _ = out.flush();
    }
    if let Some(len) = a.blob {
        let _ = out.write_all(&blob(len, a.seed));
        let _ = out.flush();
    }
    if let Some(n) = a.no_newline {
        let mut chunk = Vec::with_capacity(65536);
        let mut i = 0u64;
        while i < n {
            chunk.clear();
            while chunk.len() < 65536 && i < n {
                chunk.push(b'a' + (i % 26) as u8);
                i += 1;
            }
            if out.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = out.flush();
    }

    if let Some(code) = a.exit.or(a.blob.map(|_| 0)) {
        std::thread::sleep(Duration::from_millis(a.after_ms));
        let _ = out.flush();
        std::process::exit(code);
    }
    // Sleep forever; the recorder thread exits the process on a stop signal.
    loop {
        // Reap finished grandchildren so they do not linger as zombies.
        children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        std::thread::sleep(Duration::from_millis(500));
    }
}
