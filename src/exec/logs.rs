//! Output relay: one reader task per child pipe (all on the relays' own
//! thread, [`Relays`]), one writer thread that owns stdout.
//!
//! A reader splits the child's bytes into whole lines (a line longer than
//! [`MAX_LINE`] is cut into pieces, a final partial line is completed with a
//! newline), prefixes each with `group.index | ` and sends whole records to
//! the writer over a bounded channel, so a slow stdout slows the children
//! (they block on their pipe) instead of growing memory. The reader stops at
//! EOF, or — once the supervisor says the process group is gone — after
//! [`QUIET`] without data (a setsid'd grandchild may hold the pipe open).
//! The writer survives a failing stdout (EPIPE, EFBIG, …): it reports the
//! error once, stops writing and keeps draining. At the end, flushing is
//! bounded by [`FLUSH_LIMIT`] (a stdout nobody reads cannot hold `up`).
//!
//! In the common case (no timestamps, no `ready when log` pattern, no log
//! file) a read's whole lines are found 64 bytes at a time and copied
//! straight from it; the splitter only finishes a line carried over from
//! the last read and keeps the read's partial end.
//!
//! With a [`LogSink`] ([`relay_to`]), a reader also copies every line of a
//! read, without its prefix, into the process's control-plane ring: it
//! locks that ring (only that one: each ring has its own lock) once per
//! read, copies the lines that lie back to back in the read (the ring
//! keeps each line with its newline) in one go and a line carried over
//! from the previous read on its own (no intermediate buffer), and wakes
//! the followers once per read. A `ready when log` match is acted on after
//! the lock is released.

use regex::Regex;
use std::cell::RefCell;
use std::future::Future;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

use crate::control::ring::{LinePusher, LogWriter};

/// Longest relayed line; longer ones are split into pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;
/// How long a pipe may stay silent after its process group is gone.
pub const QUIET: Duration = Duration::from_millis(200);
/// The longest a pipe is read after its process group is gone.
pub const LINGER: Duration = Duration::from_secs(2);

/// Calls `each` with the index of every newline in `data`, in order, until
/// it returns `false`. A relay's lines are short: a `memchr` call per line
/// (which picks its implementation and sets it up per call) costs more
/// than looking at 64 bytes at a time, as a mask of where their newlines
/// are.
#[inline]
fn for_each_newline(data: &[u8], mut each: impl FnMut(usize) -> bool) {
    let mut base = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        while base + 64 <= data.len() {
            let p = data[base..base + 64].as_ptr().cast::<__m128i>();
            // SAFETY: SSE2 is part of x86_64; the four unaligned 16-byte
            // loads read the 64 bytes of the slice `p` points into.
            let mut mask = unsafe {
                let nl = _mm_set1_epi8(b'\n' as i8);
                let m = |k: usize| {
                    let v = _mm_loadu_si128(p.add(k));
                    u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, nl)) as u16) << (16 * k)
                };
                m(0) | m(1) | m(2) | m(3)
            };
            while mask != 0 {
                if !each(base + mask.trailing_zeros() as usize) {
                    return;
                }
                mask &= mask - 1;
            }
            base += 64;
        }
    }
    for i in memchr::memchr_iter(b'\n', &data[base..]) {
        if !each(base + i) {
            return;
        }
    }
}

/// The first newline in `data`.
fn first_newline(data: &[u8]) -> Option<usize> {
    let mut first = None;
    for_each_newline(data, |i| {
        first = Some(i);
        false
    });
    first
}

/// Splits a byte stream into lines of at most `max` bytes (without `\n`).
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
    /// The last thing emitted was a full-size piece: a newline right after
    /// it ends that line instead of making an empty one.
    after_piece: bool,
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        LineSplitter {
            buf: Vec::new(),
            max: max.max(1),
            after_piece: false,
        }
    }

    /// Feed bytes; `emit` gets every complete line or full-size piece.
    pub fn push(&mut self, data: &[u8], emit: &mut impl FnMut(&[u8])) {
        self.feed::<false>(data, emit)
    }

    /// As [`LineSplitter::push`], but `emit` gets each line or piece with a
    /// `\n` after it: for a line that lies whole in `data`, the slice of
    /// `data` up to and with its newline (so a relay copies a record's text
    /// in one go).
    pub fn push_terminated(&mut self, data: &[u8], emit: &mut impl FnMut(&[u8])) {
        self.feed::<true>(data, emit)
    }

    fn feed<const NL: bool>(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8])) {
        while !data.is_empty() {
            if std::mem::take(&mut self.after_piece) && data[0] == b'\n' {
                data = &data[1..];
                continue;
            }
            let room = self.max - self.buf.len();
            let window = &data[..data.len().min(room)];
            match first_newline(window) {
                Some(nl) => {
                    // With NL, up to and with the newline.
                    let end = nl + usize::from(NL);
                    if self.buf.is_empty() {
                        emit(&window[..end]);
                    } else {
                        self.buf.extend_from_slice(&window[..end]);
                        emit(&self.buf);
                        self.buf.clear();
                    }
                    data = &data[nl + 1..];
                }
                None => {
                    self.buf.extend_from_slice(window);
                    data = &data[window.len()..];
                    if self.buf.len() == self.max {
                        // A piece of an over-long line.
                        if NL {
                            self.buf.push(b'\n');
                        }
                        emit(&self.buf);
                        self.buf.clear();
                        self.after_piece = true;
                    }
                }
            }
        }
        if self.buf.capacity() > self.max + 1 && self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }

    /// Nothing is carried over: the next byte starts a line.
    fn at_line_start(&self) -> bool {
        self.buf.is_empty() && !self.after_piece
    }

    /// Nothing is buffered (no partial line to finish).
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// End of stream: emit a final partial line, if any.
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.buf.is_empty() {
            emit(&self.buf);
            self.buf = Vec::new();
        }
    }
}

const COLORS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

/// `api.0 | `, coloured by group when `color`.
pub fn prefix(id: &str, group_index: usize, color: bool) -> Vec<u8> {
    if color {
        format!("\x1b[{}m{id} |\x1b[0m ", COLORS[group_index % COLORS.len()]).into_bytes()
    } else {
        format!("{id} | ").into_bytes()
    }
}

/// `HH:MM:SS.mmm ` in local time.
pub fn timestamp() -> String {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: plain libc calls with valid out-pointers.
    unsafe {
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&ts.tv_sec, &mut tm);
        format!(
            "{:02}:{:02}:{:02}.{:03} ",
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec,
            ts.tv_nsec / 1_000_000
        )
    }
}

/// What a reader needs besides its pipe.
pub struct ReaderCfg {
    pub prefix: Vec<u8>,
    pub timestamps: bool,
    pub out: mpsc::Sender<Vec<u8>>,
    /// Completes when the process group is gone (sent, or its sender
    /// dropped: the supervisor is gone). A oneshot (about 80 bytes) rather
    /// than a watch channel (about 350): there is one per process.
    pub done: oneshot::Receiver<()>,
    /// `ready when log`: called once, on the first matching line.
    pub log_ready: Option<(Regex, Box<dyn FnOnce() + Send>)>,
    /// `log file`: every line is also written here, unprefixed, by the
    /// log-file writer thread ([`super::logfile`]).
    pub log_file: Option<super::logfile::Sink>,
}

/// One read: as large as a child's pipe (spawn sets 256 KiB), so a busy
/// pipe is emptied in one read and one batch.
const READ_SIZE: usize = 256 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0u8; READ_SIZE]);
    /// Line ends of a run of lines for the ring ([`lines_to_records`]),
    /// kept between reads.
    static RUN_ENDS: std::cell::Cell<Vec<usize>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A pool of byte buffers handed back after a write, for the next batch
/// to reuse: a busy relay then allocates (and faults in) no fresh memory
/// per read. At most `max` buffers are kept, none larger than `keep`.
pub struct BufPool {
    bufs: Mutex<Vec<Vec<u8>>>,
    max: usize,
    keep: usize,
}

impl BufPool {
    pub const fn new(max: usize, keep: usize) -> BufPool {
        BufPool {
            bufs: Mutex::new(Vec::new()),
            max,
            keep,
        }
    }

    /// An empty buffer with room for `cap` bytes, reused when one is free.
    pub fn take(&self, cap: usize) -> Vec<u8> {
        let reused = self.bufs.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut buf = reused.unwrap_or_default();
        buf.reserve(cap);
        buf
    }

    /// Hand a written buffer back.
    pub fn give_back(&self, mut buf: Vec<u8>) {
        if buf.capacity() > self.keep {
            return;
        }
        buf.clear();
        let mut bufs = self.bufs.lock().unwrap_or_else(|e| e.into_inner());
        if bufs.len() < self.max {
            bufs.push(buf);
        }
    }
}

/// Batches of the readers, handed back by the stdout writer.
static POOL: BufPool = BufPool::new(4, 2 * READ_SIZE);

/// Where a reader copies its lines for `flowrun logs`: the process's ring
/// (the relay looks it up once, as a [`LogWriter`]).
#[derive(Clone, Debug)]
pub struct LogSink {
    pub store: std::sync::Arc<crate::control::ring::LogStore>,
    pub process: crate::control::ring::ProcKey,
}

/// Relay one pipe until EOF (or quiet after the group is gone).
pub async fn relay(fd: OwnedFd, cfg: ReaderCfg) {
    relay_to(fd, cfg, None).await
}

/// [`relay`], also pushing every line to `sink` when there is one.
///
/// The task lives as long as its process, idle nearly always: what it
/// carries while waiting is kept small (one per process). The waits that
/// only a busy or ending pipe needs (a full writer channel, the log file's
/// writer, the linger timer, the end) are boxed and allocated only then,
/// and the arguments are kept once (an `async fn` would keep a second
/// copy of them).
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn relay_to(
    fd: OwnedFd,
    mut cfg: ReaderCfg,
    sink: Option<LogSink>,
) -> impl Future<Output = ()> + Send {
    // The ring itself, looked up once (and smaller to carry than the sink).
    let ring = sink.map(|s| s.store.writer(&s.process));
    async move {
        // SAFETY: the fd is owned by the AsyncFd for its whole life and is
        // closed only when it is dropped.
        let Ok(afd) = (unsafe { AsyncFd::register(fd) }) else {
            return;
        };
        let mut split = LineSplitter::new(MAX_LINE);
        let mut gone_at: Option<tokio::time::Instant> = None;
        loop {
            let ready = match gone_at {
                None => {
                    // Polled by hand rather than through `readable()` and
                    // `select!`: the waiting task then carries no future
                    // state for it (the fd keeps the task's waker).
                    let (fd, done) = (&afd, &mut cfg.done);
                    let woke = std::future::poll_fn(move |cx| {
                        // Sent, or the supervisor is gone: the group is gone
                        // (checked first, as a busy pipe must not hide it).
                        if Pin::new(&mut *done).poll(cx).is_ready() {
                            return Poll::Ready(None);
                        }
                        fd.poll_read_ready(cx).map(Some)
                    })
                    .await;
                    match woke {
                        Some(r) => r,
                        None => {
                            gone_at = Some(tokio::time::Instant::now());
                            continue;
                        }
                    }
                }
                Some(t) => {
                    if t.elapsed() >= LINGER {
                        break;
                    }
                    // Whatever still writes is not the process (it has exited
                    // and its group is empty): an escaped grandchild. Stop
                    // after a quiet period, or LINGER at most.
                    // Usually the end of file is already there (a group
                    // ends with its pipes closed): no timer for it.
                    let now = std::future::poll_fn(|cx| Poll::Ready(afd.poll_read_ready(cx)));
                    if let Poll::Ready(r) = now.await {
                        r
                    } else {
                        let wait = QUIET.min(LINGER.saturating_sub(t.elapsed()));
                        match Box::pin(tokio::time::timeout(wait, afd.readable())).await {
                            Ok(r) => r,
                            Err(_) => break,
                        }
                    }
                }
            };
            let Ok(mut guard) = ready else { break };
            // Hung up with nothing left to read (a pipe's writers are all
            // gone and it is empty): the end, without a read to learn it.
            // At a stop that is a read saved per process.
            let r = guard.ready();
            if r.is_read_closed() && !r.is_readable() {
                break;
            }
            let res = guard.try_io(|inner| {
                SCRATCH.with(|s| {
                    let mut s = s.borrow_mut();
                    // SAFETY: reading into a buffer we own, of its length.
                    let n = unsafe {
                        libc::read(inner.get_ref().as_raw_fd(), s.as_mut_ptr().cast(), s.len())
                    };
                    if n < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let n = n as usize;
                    if n > 0 {
                        let data = &s[..n];
                        let (batch, file, matched) = match &ring {
                            None => lines_to_records(&mut split, data, &cfg, None),
                            // The ring locked once for the read.
                            Some(w) => {
                                w.push_with(|r| lines_to_records(&mut split, data, &cfg, Some(r)))
                            }
                        };
                        // Outside the ring's lock.
                        if matched {
                            if let Some((_, fire)) = cfg.log_ready.take() {
                                fire();
                            }
                        }
                        Ok((n, batch, file))
                    } else {
                        Ok((0, Vec::new(), None))
                    }
                })
            });
            match res {
                Ok(Ok((0, _, _))) => break,
                Ok(Ok((n, batch, file))) => {
                    if n < READ_SIZE {
                        // A short read emptied the pipe: wait for the next
                        // edge instead of paying a read for its EAGAIN. A
                        // write after the read is a newer edge, which this
                        // does not clear.
                        guard.clear_ready();
                    }
                    if !batch.is_empty() {
                        // A gone writer is not an error: the pipe is drained anyway.
                        send(&cfg.out, batch).await;
                    }
                    if let (Some(sink), Some(file)) = (&cfg.log_file, file) {
                        Box::pin(super::logfile::write(sink, file)).await;
                    }
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(_)) => break,
                Err(_would_block) => {}
            }
        }
        if !split.is_empty() || cfg.log_file.is_some() {
            Box::pin(finish(split, cfg, ring)).await;
        }
    }
}

/// Hand a batch to the writer; when its channel is full (a slow stdout),
/// wait for room in a boxed future. `Err`: the writer is gone.
async fn send(out: &mpsc::Sender<Vec<u8>>, batch: Vec<u8>) {
    if let Err(mpsc::error::TrySendError::Full(batch)) = out.try_send(batch) {
        let _ = Box::pin(out.send(batch)).await;
    }
}

/// The end of a relay: the last partial line to stdout, the ring and the
/// log file, then every line of this pipe is in the file.
async fn finish(mut split: LineSplitter, mut cfg: ReaderCfg, ring: Option<LogWriter>) {
    let mut batch = Vec::new();
    let ts = cfg.timestamps.then(timestamp);
    let mut tail = Vec::new();
    split.finish(&mut |line| tail.push(line.to_vec()));
    let mut file_tail = Vec::new();
    if let Some(w) = &ring {
        w.push_with(|r| tail.iter().for_each(|l| r.push(l)));
    }
    for line in tail {
        check_log(&mut cfg, &line);
        push_record(&mut batch, ts.as_deref(), &cfg.prefix, &line);
        file_tail.extend_from_slice(&line);
        file_tail.push(b'\n');
    }
    if !batch.is_empty() {
        let _ = cfg.out.send(batch).await;
    }
    if let Some(sink) = &cfg.log_file {
        super::logfile::write(sink, file_tail).await;
        // Every line of this pipe is in the file before the relay ends.
        super::logfile::flush().await;
    }
}

fn check_log(cfg: &mut ReaderCfg, line: &[u8]) {
    if let Some((re, _)) = &cfg.log_ready {
        if re.is_match(&String::from_utf8_lossy(line)) {
            if let Some((_, fire)) = cfg.log_ready.take() {
                fire();
            }
        }
    }
}

fn push_record(batch: &mut Vec<u8>, ts: Option<&str>, prefix: &[u8], line: &[u8]) {
    if let Some(ts) = ts {
        batch.extend_from_slice(ts.as_bytes());
    }
    batch.extend_from_slice(prefix);
    batch.extend_from_slice(line);
    batch.push(b'\n');
}

/// The prefixed records of one read for stdout, (with `log file`) its
/// lines unprefixed for the file, and whether a line matched the `ready
/// when log` pattern (the caller fires it); with a `ring`, its lines go
/// there too: those that lie in `data` back to back (with their newlines)
/// as runs, one copy each, and a line carried over from the previous read
/// (or a piece of an over-long one) on its own.
fn lines_to_records(
    split: &mut LineSplitter,
    data: &[u8],
    cfg: &ReaderCfg,
    ring: Option<&mut LinePusher<'_>>,
) -> (Vec<u8>, Option<Vec<u8>>, bool) {
    let mut out = Records {
        data,
        prefix: &cfg.prefix,
        ts: cfg.timestamps.then(timestamp),
        re: cfg.log_ready.as_ref().map(|(re, _)| re),
        matched: false,
        batch: POOL.take(data.len() + data.len() / 4 + cfg.prefix.len()),
        file_buf: cfg
            .log_file
            .as_ref()
            .map(|_| super::logfile::POOL.take(data.len() + 64)),
        ring,
        run: 0..0,
        ends: RUN_ENDS.take(),
    };
    out.ends.clear();
    let mut at = 0;
    if out.ts.is_none() && out.re.is_none() && out.file_buf.is_none() {
        // The common case: no timestamps, no pattern, no log file. A line
        // carried over from the last read is finished by the splitter;
        // the whole lines after it are found 64 bytes at a time and copied
        // straight from the read. The splitter gets the rest (a partial
        // last line, or a line it must cut into pieces).
        if !split.at_line_start() {
            if let Some(nl) = first_newline(data) {
                split.push_terminated(&data[..=nl], &mut |r| out.record(r));
                at = nl + 1;
            }
        }
        if split.at_line_start() {
            at = out.whole_lines(at, split.max);
        }
    }
    split.push_terminated(&data[at..], &mut |r| out.record(r));
    out.flush_run();
    RUN_ENDS.set(out.ends);
    (out.batch, out.file_buf, out.matched)
}

/// What one read becomes ([`lines_to_records`]): the prefixed records for
/// stdout, the plain lines for the log file, and the lines for the ring,
/// where those that lie in the read back to back (with their newlines)
/// make a run, copied in one go.
struct Records<'a, 'p, 'r> {
    data: &'a [u8],
    prefix: &'a [u8],
    ts: Option<String>,
    re: Option<&'a Regex>,
    matched: bool,
    batch: Vec<u8>,
    file_buf: Option<Vec<u8>>,
    ring: Option<&'p mut LinePusher<'r>>,
    /// The current run: its range in `data`, and where each of its lines
    /// ends (after its newline), from the run's start.
    run: std::ops::Range<usize>,
    ends: Vec<usize>,
}

impl Records<'_, '_, '_> {
    /// One line or piece from the splitter, with its newline.
    fn record(&mut self, record: &[u8]) {
        let line = &record[..record.len() - 1];
        if !self.matched {
            if let Some(re) = self.re {
                self.matched = re.is_match(&String::from_utf8_lossy(line));
            }
        }
        if let Some(ts) = &self.ts {
            self.batch.extend_from_slice(ts.as_bytes());
        }
        self.batch.extend_from_slice(self.prefix);
        // The line and its newline, copied together.
        self.batch.extend_from_slice(record);
        if let Some(f) = self.file_buf.as_mut() {
            f.extend_from_slice(record);
        }
        if self.ring.is_some() {
            // In `data` (then whole in it), or the splitter's own buffer.
            let at = (record.as_ptr() as usize).wrapping_sub(self.data.as_ptr() as usize);
            if at < self.data.len() {
                self.extend_run(at, at + record.len());
            } else {
                self.flush_run();
                if let Some(r) = self.ring.as_deref_mut() {
                    r.push(line);
                }
            }
        }
    }

    /// The whole lines of `data` from `at` on, each shorter than `max`
    /// (without timestamps, pattern or log file); returns where the first
    /// line not taken starts.
    fn whole_lines(&mut self, mut at: usize, max: usize) -> usize {
        let (data, prefix) = (self.data, self.prefix);
        let ring = self.ring.is_some();
        if ring {
            self.run_from(at);
        }
        let (batch, ends, run_start) = (&mut self.batch, &mut self.ends, self.run.start);
        let from = at;
        for_each_newline(&data[from..], |i| {
            let end = from + i + 1;
            if end - at > max {
                return false;
            }
            batch.extend_from_slice(prefix);
            batch.extend_from_slice(&data[at..end]);
            if ring {
                ends.push(end - run_start);
            }
            at = end;
            true
        });
        if ring {
            self.run.end = at;
        }
        at
    }

    /// Add the line at `start..end` of `data` to the current run (a new
    /// one if it does not follow it).
    fn extend_run(&mut self, start: usize, end: usize) {
        self.run_from(start);
        self.run.end = end;
        self.ends.push(end - self.run.start);
    }

    /// Lines from `start` on continue the current run, or begin a new one
    /// (the current one handed to the ring first).
    fn run_from(&mut self, start: usize) {
        if start != self.run.end {
            self.flush_run();
            self.run = start..start;
        }
    }

    /// Hand the current run to the ring.
    fn flush_run(&mut self) {
        if let Some(r) = self.ring.as_deref_mut() {
            r.push_run(&self.data[self.run.clone()], &self.ends);
        }
        self.ends.clear();
    }
}

/// A pipe to relay: what [`relay_to`] takes.
pub struct Job {
    pub fd: OwnedFd,
    pub cfg: ReaderCfg,
    pub sink: Option<LogSink>,
}

/// The relays' thread. Every reader task runs on a current-thread runtime
/// of its own, beside the supervisor's: the pipes are read, and at a stop
/// their ends are handled (an end of file, an `epoll_ctl` and a `close`
/// each, about as much work as the supervisor's reaps and events for the
/// same processes), while the supervisor's thread reaps. Readers are
/// handed over in one batch per driver step ([`Relays::hand_over`]): one
/// wake of this thread per step, not per process. Where the thread cannot
/// be started (descriptors or threads at their limit: it needs an epoll
/// instance and an eventfd), the readers run as tasks of the supervisor's
/// own runtime instead.
pub struct Relays {
    pending: Vec<Job>,
    way: Way,
}

enum Way {
    Thread {
        jobs: mpsc::UnboundedSender<Vec<Job>>,
        ending: Ending,
    },
    /// On the supervisor's runtime; finished tasks are forgotten when the
    /// list reaches `forget_at` (not at every spawn: a burst of N spawns
    /// would scan N²/2 handles).
    Here {
        tasks: Vec<tokio::task::JoinHandle<()>>,
        forget_at: usize,
    },
}

/// The end of [`Relays`]: it completes ([`Ending::ended`]) once every
/// reader has ended; dropped, it drops the readers still running.
pub struct Ending(EndWay);

enum EndWay {
    Thread {
        /// Sent once no reader is left (after the last hand-over).
        ended: Option<oneshot::Receiver<()>>,
        /// Dropped: the thread drops the readers left and ends (it is not
        /// waited for: a reader stuck in a write must not hold `up`).
        _stop: oneshot::Sender<()>,
    },
    Here(Vec<tokio::task::JoinHandle<()>>),
}

impl Relays {
    pub fn start() -> Relays {
        let way = match Relays::thread() {
            Ok((jobs, ending)) => Way::Thread { jobs, ending },
            Err(_) => Way::Here {
                tasks: Vec::new(),
                forget_at: 64,
            },
        };
        Relays {
            pending: Vec::new(),
            way,
        }
    }

    fn thread() -> std::io::Result<(mpsc::UnboundedSender<Vec<Job>>, Ending)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (jobs, mut rx) = mpsc::unbounded_channel::<Vec<Job>>();
        let (ended_tx, ended) = oneshot::channel();
        let (stop, mut stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("flowrun-relay".into())
            .stack_size(512 * 1024)
            .spawn(move || {
                rt.block_on(async move {
                    // Each reader holds a sender: the channel closes when
                    // the last one has ended.
                    let (alive, mut all_ended) = mpsc::channel::<()>(1);
                    let taking = async {
                        while let Some(batch) = rx.recv().await {
                            for job in batch {
                                let alive = alive.clone();
                                tokio::spawn(async move {
                                    relay_to(job.fd, job.cfg, job.sink).await;
                                    drop(alive);
                                });
                            }
                        }
                        drop(alive);
                        let _ = all_ended.recv().await;
                        let _ = ended_tx.send(());
                        std::future::pending::<()>().await;
                    };
                    tokio::select! {
                        _ = &mut stopped => {}
                        _ = taking => {}
                    }
                });
                // Dropping the runtime drops the readers left (closing
                // their pipes).
                drop(rt);
            })?;
        let ending = Ending(EndWay::Thread {
            ended: Some(ended),
            _stop: stop,
        });
        Ok((jobs, ending))
    }

    /// Relay `job`: from the next hand-over on, or at once on the
    /// supervisor's runtime (which this must then be called on).
    pub fn add(&mut self, job: Job) {
        match &mut self.way {
            Way::Thread { .. } => self.pending.push(job),
            Way::Here { tasks, forget_at } => {
                if tasks.len() >= *forget_at {
                    tasks.retain(|t| !t.is_finished());
                    *forget_at = (2 * tasks.len()).max(64);
                }
                tasks.push(tokio::spawn(relay_to(job.fd, job.cfg, job.sink)));
            }
        }
    }

    /// Hand the readers added since the last call to the thread.
    pub fn hand_over(&mut self) {
        if let Way::Thread { jobs, .. } = &self.way {
            if !self.pending.is_empty() {
                // A thread that is gone drops the batch: its pipes close.
                let _ = jobs.send(std::mem::take(&mut self.pending));
            }
        }
    }

    /// No more readers: hand over the last ones; the [`Ending`] completes
    /// once every reader has ended.
    pub fn close(mut self) -> Ending {
        self.hand_over();
        match self.way {
            Way::Thread { ending, .. } => ending,
            Way::Here { tasks, .. } => Ending(EndWay::Here(tasks)),
        }
    }
}

impl Ending {
    /// Completes when every reader has ended (at once if the relays'
    /// thread is gone).
    pub async fn ended(&mut self) {
        match &mut self.0 {
            EndWay::Thread { ended, .. } => {
                if let Some(rx) = ended.as_mut() {
                    let _ = rx.await;
                    *ended = None;
                }
            }
            EndWay::Here(tasks) => {
                for t in tasks.iter_mut() {
                    let _ = t.await;
                }
                tasks.clear();
            }
        }
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        // (The thread's way: dropping the stop sender is enough.)
        if let EndWay::Here(tasks) = &self.0 {
            for t in tasks {
                t.abort();
            }
        }
    }
}

/// The longest the relayed output may take to reach stdout once every
/// process group is gone (docs/events.md, "Ending"): a stdout nobody reads
/// must not keep the runner alive.
pub const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// The thread that owns stdout.
pub struct Writer {
    /// Whole records to write; the thread ends when every sender is gone.
    pub tx: mpsc::Sender<Vec<u8>>,
    /// Completes when the thread has written (or dropped) every record and
    /// ended. It never completes while a write blocks.
    pub done: oneshot::Receiver<()>,
}

/// Start the thread that owns stdout. `on_error` is called once, with the
/// first write error (EPIPE: the reader went away; EFBIG: the output file
/// reached `ulimit -f`; …); from then on records are read and dropped, so
/// the children never block on their pipes.
pub fn start_writer(on_error: impl FnOnce(&std::io::Error) + Send + 'static) -> Writer {
    // Batches are up to a read's worth of lines (plus prefixes): 64 of them
    // in flight bound the memory a slow stdout can pin at about 20 MiB.
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let (done_tx, done) = oneshot::channel();
    std::thread::Builder::new()
        .name("flowrun-stdout".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            // Locked per batch, never for the thread's life (see the
            // event writer).
            let stdout = std::io::stdout();
            let mut on_error = Some(on_error);
            let mut fail = |e: std::io::Error| {
                if let Some(f) = on_error.take() {
                    f(&e);
                }
            };
            let mut broken = false;
            while let Some(rec) = rx.blocking_recv() {
                if broken {
                    continue;
                }
                let mut out = stdout.lock();
                let res =
                    out.write_all(&rec)
                        .and_then(|_| if rx.is_empty() { out.flush() } else { Ok(()) });
                drop(out);
                POOL.give_back(rec);
                if let Err(e) = res {
                    broken = true;
                    fail(e);
                }
            }
            if !broken {
                if let Err(e) = stdout.lock().flush() {
                    fail(e);
                }
            }
            let _ = done_tx.send(());
        })
        .expect("cannot start the stdout writer thread");
    Writer { tx, done }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(max: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut |l| {
                out.push(String::from_utf8_lossy(l).into_owned())
            });
        }
        s.finish(&mut |l| out.push(String::from_utf8_lossy(l).into_owned()));
        out
    }

    #[test]
    fn whole_lines_across_chunks() {
        assert_eq!(run(64, &[b"ab", b"c\nde", b"f\n"]), ["abc", "def"]);
        assert_eq!(run(64, &[b"a\n\nb\n"]), ["a", "", "b"]);
    }

    #[test]
    fn partial_last_line_is_flushed() {
        assert_eq!(run(64, &[b"x\ntail"]), ["x", "tail"]);
    }

    #[test]
    fn long_lines_are_split_not_dropped() {
        assert_eq!(run(4, &[b"abcdefghij\n"]), ["abcd", "efgh", "ij"]);
        // A newline right after a full piece ends the line (no empty line).
        assert_eq!(run(4, &[b"abcd", b"\nxy\n"]), ["abcd", "xy"]);
        assert_eq!(run(4, &[b"abcdefgh\n"]), ["abcd", "efgh"]);
    }

    /// `input` relayed in reads of `chunk` bytes through
    /// [`lines_to_records`] with a ring, lines cut at `max`, and a `ready
    /// when log` pattern when given (then the fast path is not taken); with
    /// `finish`, the final partial line too. Returns the ring's lines and
    /// the stdout records.
    fn relay_in_reads(
        input: &[u8],
        chunk: usize,
        max: usize,
        pattern: Option<&Regex>,
        finish: bool,
    ) -> (Vec<Vec<u8>>, Vec<u8>) {
        use crate::control::ring::{LogItem, LogStore, ProcKey, Select};
        let store = std::sync::Arc::new(LogStore::new(1 << 22));
        let key = ProcKey {
            group: "w".into(),
            index: 0,
        };
        let ring = store.writer(&key);
        let (out, _rx) = mpsc::channel(1);
        let (_done_tx, done) = oneshot::channel();
        let cfg = ReaderCfg {
            prefix: b"w.0 | ".to_vec(),
            timestamps: false,
            out,
            done,
            log_ready: pattern.map(|re| (re.clone(), Box::new(|| ()) as Box<_>)),
            log_file: None,
        };
        let mut split = LineSplitter::new(max);
        let mut stdout = Vec::new();
        for data in input.chunks(chunk) {
            let (batch, _, matched) =
                ring.push_with(|r| lines_to_records(&mut split, data, &cfg, Some(r)));
            assert!(!matched);
            stdout.extend_from_slice(&batch);
        }
        if finish {
            split.finish(&mut |l| {
                ring.push_with(|r| r.push(l));
                stdout.extend_from_slice(&[b"w.0 | ", l, b"\n"].concat());
            });
        }
        let mut cursor = store.cursor(Select::All, None, None);
        let lines = store
            .read(&mut cursor, 100_000)
            .into_iter()
            .map(|item| match item {
                LogItem::Line { line, .. } => line.text.into_bytes(),
                LogItem::Missed { .. } => panic!("nothing is evicted"),
            })
            .collect();
        (lines, stdout)
    }

    /// The records of `lines` on stdout.
    fn records(lines: &[Vec<u8>]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| [b"w.0 | ", &l[..], b"\n"].concat())
            .collect()
    }

    #[test]
    fn every_line_of_the_reads_reaches_the_ring_and_stdout_in_order() {
        // Lines carried over between reads, lines cut into pieces (at 8),
        // empty lines, runs of whole lines: the ring gets every line once,
        // in order, and stdout the same lines as records.
        let input: &[u8] = b"ab\ncdefghijklmnopq\nrs\n\n\ntu\nvwxyz0123456789\n\nend";
        let mut want = Vec::new();
        let mut plain = LineSplitter::new(8);
        plain.push(input, &mut |l| want.push(l.to_vec()));
        for chunk in 1..=input.len() {
            let (lines, stdout) = relay_in_reads(input, chunk, 8, None, false);
            assert_eq!(lines, want, "reads of {chunk}");
            assert!(stdout == records(&want), "reads of {chunk}");
        }
    }

    #[test]
    fn terminated_lines_are_the_same_lines_with_a_newline() {
        let inputs: [&[u8]; 5] = [
            b"ab\ncd\n\nlast",
            b"abcdefghij\nxy\n",
            b"abcd\nabcdefgh\n\n\n",
            b"\n\nno newline at all but long",
            b"",
        ];
        for input in inputs {
            for max in [1, 3, 4, 64] {
                for chunk in 1..=input.len().max(1) {
                    let (mut a, mut b) = (LineSplitter::new(max), LineSplitter::new(max));
                    let (mut plain, mut terminated) = (Vec::new(), Vec::new());
                    for c in input.chunks(chunk) {
                        a.push(c, &mut |l| plain.push(l.to_vec()));
                        b.push_terminated(c, &mut |l| terminated.push(l.to_vec()));
                    }
                    a.finish(&mut |l| plain.push(l.to_vec()));
                    b.finish(&mut |l| terminated.push([l, b"\n"].concat()));
                    let want: Vec<Vec<u8>> =
                        plain.iter().map(|l| [l, &b"\n"[..]].concat()).collect();
                    assert_eq!(terminated, want, "{input:?} max {max} chunk {chunk}");
                }
            }
        }
    }

    #[test]
    fn the_stdout_writer_leaves_stdout_free_between_batches() {
        let w = start_writer(|_| {});
        std::thread::sleep(Duration::from_millis(100));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _held = std::io::stdout().lock();
            let _ = tx.send(());
        });
        let free = rx.recv_timeout(Duration::from_secs(5)).is_ok();
        drop(w.tx);
        assert!(free, "the stdout writer keeps stdout locked");
    }

    /// Bytes with lines of every length from 0 to past 2 × `max`, some
    /// empty, newlines on and across 64-byte boundaries.
    fn varied_lines(max: usize) -> Vec<u8> {
        let mut data = Vec::new();
        let mut x: u32 = 7;
        for _ in 0..300 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let len = (x >> 8) as usize % (2 * max + 3);
            data.extend((0..len).map(|i| b'a' + (i % 26) as u8));
            data.push(b'\n');
        }
        data.extend_from_slice(b"partial");
        data
    }

    #[test]
    fn newlines_are_found_where_they_are() {
        let data = varied_lines(100);
        for from in [0, 1, 63, 64, 65, 200] {
            let part = &data[from..];
            let want: Vec<usize> = (0..part.len()).filter(|&i| part[i] == b'\n').collect();
            let mut got = Vec::new();
            for_each_newline(part, |i| {
                got.push(i);
                true
            });
            assert_eq!(got, want, "from {from}");
            // Stopping early stops.
            let mut some = Vec::new();
            for_each_newline(part, |i| {
                some.push(i);
                some.len() < 5
            });
            assert_eq!(some, want[..5]);
        }
    }

    #[test]
    fn a_plain_relay_and_a_relay_with_a_pattern_give_the_same_lines() {
        // Without timestamps, pattern or log file the relay takes its fast
        // path; a pattern that never matches sends it through the splitter
        // alone. Both give the stdout records and ring lines of the plain
        // splitter, for reads of any size.
        let max = 100;
        let input = varied_lines(max);
        let mut want = Vec::new();
        let mut plain = LineSplitter::new(max);
        plain.push(&input, &mut |l| want.push(l.to_vec()));
        plain.finish(&mut |l| want.push(l.to_vec()));
        let never = Regex::new("^never$").unwrap();
        for pattern in [None, Some(&never)] {
            for chunk in [1, 7, 63, 64, 65, 150, 1000, input.len()] {
                let (lines, stdout) = relay_in_reads(&input, chunk, max, pattern, true);
                assert_eq!(lines, want, "pattern {pattern:?}, reads of {chunk}");
                assert!(
                    stdout == records(&want),
                    "pattern {pattern:?}, reads of {chunk}"
                );
            }
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let mut s = LineSplitter::new(1024);
        let chunk = vec![b'x'; 4096];
        let mut n = 0;
        for _ in 0..1000 {
            s.push(&chunk, &mut |l| {
                assert_eq!(l.len(), 1024);
                n += 1;
            });
            assert!(s.buf.capacity() <= 2048);
        }
        assert_eq!(n, 4000);
    }

    /// Relays on their own thread, and on the caller's runtime where the
    /// thread cannot be started: each relays every pipe to its end, and
    /// its ending completes once they are all read.
    #[test]
    fn relays_on_their_thread_or_on_the_runtime_read_every_pipe_to_its_end() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for on_thread in [true, false] {
            let mut relays = if on_thread {
                Relays::start()
            } else {
                Relays {
                    pending: Vec::new(),
                    way: Way::Here {
                        tasks: Vec::new(),
                        forget_at: 1,
                    },
                }
            };
            assert_eq!(matches!(relays.way, Way::Thread { .. }), on_thread);
            let out = rt.block_on(async {
                let (tx, mut rx) = mpsc::channel(64);
                let mut writers = Vec::new();
                let mut groups = Vec::new();
                for i in 0..3 {
                    let (r, w) = nix::unistd::pipe().unwrap();
                    let mut w = std::fs::File::from(w);
                    w.write_all(format!("first {i}\n").as_bytes()).unwrap();
                    writers.push(w);
                    let (done_tx, done) = oneshot::channel();
                    groups.push(done_tx);
                    relays.add(Job {
                        fd: r,
                        cfg: ReaderCfg {
                            prefix: prefix(&format!("w.{i}"), 0, false),
                            timestamps: false,
                            out: tx.clone(),
                            done,
                            log_ready: None,
                            log_file: None,
                        },
                        sink: None,
                    });
                }
                relays.hand_over();
                let mut ending = relays.close();
                // Written after the hand-over, then the ends of file.
                for (i, mut w) in writers.into_iter().enumerate() {
                    w.write_all(format!("last {i}\n").as_bytes()).unwrap();
                }
                tokio::time::timeout(Duration::from_secs(10), ending.ended())
                    .await
                    .expect("every relay ended at its end of file");
                drop(groups);
                let mut out = Vec::new();
                while let Ok(b) = rx.try_recv() {
                    out.extend(b);
                }
                out
            });
            let mut lines: Vec<_> = String::from_utf8(out)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect();
            lines.sort();
            assert_eq!(
                lines,
                [
                    "w.0 | first 0",
                    "w.0 | last 0",
                    "w.1 | first 1",
                    "w.1 | last 1",
                    "w.2 | first 2",
                    "w.2 | last 2"
                ],
                "on their thread: {on_thread}"
            );
        }
    }

    #[test]
    fn a_sink_gets_every_line_without_its_prefix() {
        use crate::control::ring::{LogItem, LogStore, ProcKey, Select};
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut w = std::fs::File::from(w);
        w.write_all(b"one\ntwo\n\xffbad\nlast").unwrap();
        drop(w);
        let store = std::sync::Arc::new(LogStore::new(1 << 16));
        let process = ProcKey {
            group: "api".into(),
            index: 0,
        };
        let (tx, mut rx) = mpsc::channel(16);
        let (_done_tx, done) = oneshot::channel();
        let cfg = ReaderCfg {
            prefix: prefix("api.0", 0, false),
            timestamps: false,
            out: tx,
            done,
            log_ready: None,
            log_file: None,
        };
        let sink = LogSink {
            store: store.clone(),
            process: process.clone(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(relay_to(r, cfg, Some(sink)));
        let mut out = Vec::new();
        while let Ok(b) = rx.try_recv() {
            out.extend(b);
        }
        assert_eq!(
            String::from_utf8_lossy(&out),
            "api.0 | one\napi.0 | two\napi.0 | \u{fffd}bad\napi.0 | last\n"
        );
        let mut cursor = store.cursor(Select::All, None, None);
        let lines: Vec<String> = store
            .read(&mut cursor, 100)
            .into_iter()
            .filter_map(|i| match i {
                LogItem::Line {
                    process: p, line, ..
                } if p == process => Some(line.text),
                _ => None,
            })
            .collect();
        assert_eq!(lines, ["one", "two", "\u{fffd}bad", "last"]);
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix("api.0", 0, false), b"api.0 | ");
        assert_eq!(prefix("api.0", 1, true), b"\x1b[33mapi.0 |\x1b[0m ");
    }
}
