//! Log files: each process's output also written to a file that rotates by
//! size (`log file "PATH" rotate SIZE keep N`, docs/language.md).
//!
//! The relay ([`super::logs`]) hands the whole lines of each read to one
//! writer thread (`flowrun-logfile`) over a bounded queue ([`write`]), so
//! no file IO, a disk stalled by dirty-page throttling included, ever
//! blocks the runtime's thread (signals and deadlines go on); a full queue
//! makes the relay wait, so a slow disk slows the child, as a slow
//! terminal does, and memory stays bounded. A relay ends by waiting for
//! its lines to be written ([`flush`]), and `up` waits for its relays
//! (bounded by `FLUSH_LIMIT`), so nothing is lost at exit. The file holds
//! the lines as the process wrote them: no `group.index | ` prefix, no
//! colour, no timestamp (a line over [`super::logs::MAX_LINE`] is cut into
//! pieces exactly as on the terminal).
//!
//! Rotation is by size and never splits a line: when the next whole line
//! would take the file past `rotate_bytes`, the file is closed, `x.log.{K-1}`
//! … `x.log.1` are renamed one up (`x.log.{K-1}` replaces `x.log.K`, so at
//! most `keep` = K old files exist), `x.log` becomes `x.log.1` and a new
//! `x.log` is opened. A single line longer than the limit is written alone
//! into a file of its own (so a file exceeds the limit only by holding one
//! such line). The size is counted from the file's length when it is
//! opened, so a restarted process (or a new `up`) appends and rotates on.
//!
//! Several relays may write one path (a process's old relay draining while
//! its restart's relay starts, or two groups sharing a path despite FR206):
//! [`sink`] hands them one shared [`LogTarget`], so lines interleave whole
//! and one rotation happens at a time.
//!
//! Files are created with mode 0640 and directories with 0750, both less
//! the umask. A path is relative to the topology file's directory, like
//! `cwd`. A write error (a full disk) is reported once ([`set_reporter`];
//! stderr by default) until a write succeeds again; the lines of the
//! failed write are cut back out of the file (no torn line) and still reach
//! the terminal. [`prepare`] checks every path of a plan before anything
//! starts.

use crate::plan::{LogSpec, Plan};
use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Mode of a new log file, less the umask.
pub const FILE_MODE: u32 = 0o640;
/// Mode of a directory created for log files, less the umask.
pub const DIR_MODE: u32 = 0o750;

type Reporter = Box<dyn Fn(&str) + Send + Sync>;
static REPORTER: OnceLock<Reporter> = OnceLock::new();

/// Where a log-file problem is told: one line, without a `flowrun: `
/// prefix. Until set, it goes to stderr as `flowrun: …`; `up` may set it
/// once (false if it was set already) to emit it as an event instead, so
/// that `--log-format json` keeps stderr to JSON lines.
pub fn set_reporter(f: impl Fn(&str) + Send + Sync + 'static) -> bool {
    REPORTER.set(Box::new(f)).is_ok()
}

fn report(message: &str) {
    match REPORTER.get() {
        Some(f) => f(message),
        None => eprintln!("flowrun: {message}"),
    }
}

/// A file that rotates by size and keeps at most `keep` old files.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    limit: u64,
    keep: u32,
    /// The last error was reported; cleared by a successful write.
    reported: bool,
}

/// Create the parent directories of `path` (mode [`DIR_MODE`]) and open it
/// for appending (mode [`FILE_MODE`] when created).
fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// `x.log` → `x.log.N`.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl RotatingFile {
    /// Open (or create) `path` for appending; rotation at `limit` bytes
    /// (at least 1), keeping `keep` old files (at least 1).
    pub fn open(path: impl Into<PathBuf>, limit: u64, keep: u32) -> io::Result<Self> {
        let path = path.into();
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            file: Some(file),
            size,
            limit: limit.max(1),
            keep: keep.max(1),
            reported: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write whole lines, each ending with `\n` (a last line without one is
    /// written as it is). Rotates before a line that would not fit; never
    /// splits one. On an error, the part of the chunk being written that
    /// reached the file is cut back off it (the whole lines before stay).
    pub fn write_lines(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = self.limit.saturating_sub(self.size);
            let take = if (data.len() as u64) <= room {
                data.len()
            } else {
                // The whole lines that fit.
                let window = &data[..room as usize];
                match memchr::memrchr(b'\n', window) {
                    Some(nl) => nl + 1,
                    None if self.size > 0 => {
                        self.rotate()?;
                        continue;
                    }
                    // An empty file and a line longer than the limit: the
                    // line goes alone into this file.
                    None => memchr::memchr(b'\n', data).map_or(data.len(), |nl| nl + 1),
                }
            };
            self.write_chunk(&data[..take])?;
            data = &data[take..];
        }
        Ok(())
    }

    fn write_chunk(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(open_append(&self.path)?);
            self.size = self
                .file
                .as_ref()
                .map_or(Ok(0), |f| f.metadata().map(|m| m.len()))?;
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        match file.write_all(chunk) {
            Ok(()) => {
                self.size += chunk.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut a partly written chunk back off, so no torn line stays.
                let _ = file.set_len(self.size);
                Err(e)
            }
        }
    }

    /// `x.log.{K-1}` → `x.log.K`, …, `x.log` → `x.log.1`, a new `x.log`.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        for n in (1..self.keep).rev() {
            match std::fs::rename(numbered(&self.path, n), numbered(&self.path, n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        match std::fs::rename(&self.path, numbered(&self.path, 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.file = Some(open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }

    /// [`Self::write_lines`], reporting the first error of a run of errors
    /// once on stderr (the lines still reach the terminal).
    pub fn write_or_report(&mut self, data: &[u8]) {
        match self.write_lines(data) {
            Ok(()) => self.reported = false,
            Err(e) => {
                if !std::mem::replace(&mut self.reported, true) {
                    report(&format!(
                        "log file {}: {e}; its lines still go to the terminal",
                        self.path.display()
                    ));
                }
            }
        }
    }
}

/// One log path: its [`RotatingFile`], opened by the writer thread at the
/// first write (so no file IO happens on the runtime's thread).
#[derive(Debug)]
pub struct LogTarget {
    path: PathBuf,
    limit: u64,
    keep: u32,
    file: Option<RotatingFile>,
    /// An open failure was reported; cleared when the file opens.
    reported: bool,
}

impl LogTarget {
    /// Write whole lines, opening the file first if needed. A file that
    /// cannot be opened is reported once and tried again at the next write.
    pub fn write(&mut self, lines: &[u8]) {
        if self.file.is_none() {
            match RotatingFile::open(&self.path, self.limit, self.keep) {
                Ok(f) => {
                    self.file = Some(f);
                    self.reported = false;
                }
                Err(e) => {
                    if !std::mem::replace(&mut self.reported, true) {
                        report(&format!(
                            "cannot open log file {}: {e}; its lines go to the terminal only",
                            self.path.display()
                        ));
                    }
                    return;
                }
            }
        }
        if let Some(f) = self.file.as_mut() {
            f.write_or_report(lines);
        }
    }
}

/// A log file shared by every relay that writes its path.
pub type Sink = Arc<Mutex<LogTarget>>;

/// The log targets by path, so that every relay of one path shares one
/// [`LogTarget`]; the file is closed when the last relay of a path ends
/// and its last lines are written.
static OPEN: Mutex<Option<Registry>> = Mutex::new(None);

struct Registry {
    by_path: HashMap<PathBuf, Weak<Mutex<LogTarget>>>,
    /// Forget closed targets when the map reaches this size (then twice
    /// the live count): amortised constant time per spawn.
    sweep_at: usize,
}

/// Work for the writer thread, in order.
enum Job {
    Write(Sink, Vec<u8>),
    /// Answered once every job before it is done.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Batches in flight to the writer thread at most (each up to a read of a
/// pipe, 256 KiB): a slow disk then slows the children, not memory.
const QUEUE: usize = 64;

/// The writer thread's queue, started at the first use; `None` if the
/// thread could not be started (then the relay writes itself).
fn writer() -> Option<&'static tokio::sync::mpsc::Sender<Job>> {
    static WRITER: OnceLock<Option<tokio::sync::mpsc::Sender<Job>>> = OnceLock::new();
    WRITER
        .get_or_init(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(QUEUE);
            std::thread::Builder::new()
                .name("flowrun-logfile".into())
                .stack_size(256 * 1024)
                .spawn(move || {
                    while let Some(job) = rx.blocking_recv() {
                        match job {
                            Job::Write(sink, buf) => {
                                sink.lock().unwrap_or_else(|e| e.into_inner()).write(&buf);
                                POOL.give_back(buf);
                            }
                            Job::Flush(done) => {
                                let _ = done.send(());
                            }
                        }
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Hand whole lines (each ending with `\n`) to the writer thread for
/// `sink`, after the lines handed before; waits, without blocking the
/// runtime's thread, while the thread is [`QUEUE`] batches behind.
pub async fn write(sink: &Sink, lines: Vec<u8>) {
    if lines.is_empty() {
        return;
    }
    let job = Job::Write(sink.clone(), lines);
    let job = match writer() {
        Some(tx) => match tx.send(job).await {
            Ok(()) => return,
            Err(e) => e.0,
        },
        None => job,
    };
    if let Job::Write(sink, lines) = job {
        sink.lock().unwrap_or_else(|e| e.into_inner()).write(&lines);
    }
}

/// Wait until every line handed to [`write`] so far is written.
pub async fn flush() {
    if let Some(tx) = writer() {
        let (done, wait) = tokio::sync::oneshot::channel();
        if tx.send(Job::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Line buffers handed back by the writer thread, for the relays to reuse.
pub static POOL: super::logs::BufPool = super::logs::BufPool::new(8, 512 * 1024);

/// The absolute path of a plan's log path: relative ones are relative to
/// `base_dir` (the topology file's directory).
pub fn full_path(base_dir: &Path, spec: &LogSpec) -> PathBuf {
    base_dir.join(&spec.path)
}

/// The sink of a process's log file: the one its path already has, else a
/// new one (the file is opened, and its directories created, by the writer
/// thread at the first write; a failure is reported, see [`set_reporter`],
/// and the output still goes to the terminal). `None` without `log file`.
pub fn sink(base_dir: &Path, spec: Option<&LogSpec>) -> Option<Sink> {
    let spec = spec?;
    let path = full_path(base_dir, spec);
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    let open = open.get_or_insert_with(|| Registry {
        by_path: HashMap::new(),
        sweep_at: 64,
    });
    if let Some(s) = open.by_path.get(&path).and_then(Weak::upgrade) {
        return Some(s);
    }
    if open.by_path.len() >= open.sweep_at {
        open.by_path.retain(|_, w| w.strong_count() > 0);
        open.sweep_at = (2 * open.by_path.len()).max(64);
    }
    let s = Arc::new(Mutex::new(LogTarget {
        path: path.clone(),
        limit: spec.rotate_bytes,
        keep: spec.keep,
        file: None,
        reported: false,
    }));
    open.by_path.insert(path, Arc::downgrade(&s));
    Some(s)
}

/// Before `up` starts anything: create every log file's directories and
/// open each file once for appending, so that a path that cannot be
/// written is one clear error (`cannot open log file PATH of api.0:
/// Permission denied`) instead of a run without its logs. Lint does no IO,
/// so this is where a missing or read-only directory is found.
pub fn prepare(plan: &Plan, base_dir: &Path) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for p in &plan.processes {
        let Some(spec) = &p.log else { continue };
        let path = full_path(base_dir, spec);
        if !seen.insert(path.clone()) {
            continue;
        }
        if let Err(e) = open_append(&path) {
            return Err(format!(
                "cannot open log file {} of {}: {e}",
                path.display(),
                p.id
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("flowrun-logfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    /// Every file of the rotation, oldest first: `x.log.K` … `x.log.1`, `x.log`.
    fn all(path: &Path, keep: u32) -> Vec<String> {
        let mut out: Vec<String> = (1..=keep + 1)
            .rev()
            .map(|n| numbered(path, n))
            .filter(|p| p.exists())
            .map(|p| read(&p))
            .collect();
        out.push(read(path));
        out
    }

    #[test]
    fn rotates_before_a_line_that_would_not_fit_and_keeps_order() {
        let d = tmpdir("order");
        let path = d.join("x.log");
        let mut f = RotatingFile::open(&path, 10, 3).unwrap();
        // "aaaa\n" is 5 bytes: two fit in 10, the third starts a new file.
        for l in ["aaaa\n", "bbbb\n", "cccc\n", "dd\n", "eeeeee\n"] {
            f.write_lines(l.as_bytes()).unwrap();
        }
        assert_eq!(all(&path, 3), ["aaaa\nbbbb\n", "cccc\ndd\n", "eeeeee\n"]);
        assert_eq!(read(&numbered(&path, 2)), "aaaa\nbbbb\n");
        assert_eq!(read(&numbered(&path, 1)), "cccc\ndd\n");
    }

    #[test]
    fn one_call_with_many_lines_rotates_inside_it() {
        let d = tmpdir("batch");
        let path = d.join("x.log");
        let mut f = RotatingFile::open(&path, 9, 10).unwrap();
        f.write_lines(b"1\n22\n333\n4444\n55555\n").unwrap();
        assert_eq!(all(&path, 10), ["1\n22\n333\n", "4444\n", "55555\n"]);
    }

    #[test]
    fn keeps_at_most_keep_old_files_the_newest_ones() {
        let d = tmpdir("cap");
        let path = d.join("x.log");
        let mut f = RotatingFile::open(&path, 4, 2).unwrap();
        for i in 0..10 {
            f.write_lines(format!("{i}{i}{i}\n").as_bytes()).unwrap();
        }
        assert!(!numbered(&path, 3).exists());
        assert_eq!(read(&numbered(&path, 2)), "777\n");
        assert_eq!(read(&numbered(&path, 1)), "888\n");
        assert_eq!(read(&path), "999\n");
        let files = std::fs::read_dir(&d).unwrap().count();
        assert_eq!(files, 3);
    }

    #[test]
    fn a_line_longer_than_the_limit_is_written_whole_and_alone() {
        let d = tmpdir("long");
        let path = d.join("x.log");
        let mut f = RotatingFile::open(&path, 4, 5).unwrap();
        f.write_lines(b"ab\n").unwrap();
        f.write_lines(b"0123456789\nc\n").unwrap();
        f.write_lines(b"d\n").unwrap();
        assert_eq!(all(&path, 5), ["ab\n", "0123456789\n", "c\nd\n"]);
        // Two long lines in one call: each in its own file.
        f.write_lines(b"xxxxxxx\nyyyyyyy\n").unwrap();
        assert_eq!(
            all(&path, 5),
            ["ab\n", "0123456789\n", "c\nd\n", "xxxxxxx\n", "yyyyyyy\n"]
        );
    }

    #[test]
    fn appends_to_an_existing_file_and_counts_its_size() {
        let d = tmpdir("append");
        let path = d.join("x.log");
        std::fs::write(&path, "old1\nold2\n").unwrap();
        let mut f = RotatingFile::open(&path, 12, 1).unwrap();
        f.write_lines(b"new\n").unwrap();
        assert_eq!(all(&path, 1), ["old1\nold2\n", "new\n"]);
    }

    #[test]
    fn creates_directories_and_mode_is_0640_less_umask() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmpdir("mode");
        let path = d.join("a/b/x.log");
        let mut f = RotatingFile::open(&path, 100, 1).unwrap();
        f.write_lines(b"hi\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !FILE_MODE, 0, "mode {mode:o}");
        assert_eq!(mode & 0o600, 0o600);
    }

    #[test]
    fn every_line_arrives_once_whole_across_files() {
        let d = tmpdir("lossless");
        let path = d.join("x.log");
        let keep = 1000;
        let mut f = RotatingFile::open(&path, 1000, keep).unwrap();
        let mut batch = Vec::new();
        for i in 0..20_000u32 {
            batch.extend_from_slice(
                format!("line {i} {}\n", "x".repeat((i % 50) as usize)).as_bytes(),
            );
            if i % 97 == 0 {
                f.write_lines(&batch).unwrap();
                batch.clear();
            }
        }
        f.write_lines(&batch).unwrap();
        let text: String = all(&path, keep).concat();
        for (i, l) in text.lines().enumerate() {
            assert_eq!(l, format!("line {i} {}", "x".repeat(i % 50)));
        }
        assert_eq!(text.lines().count(), 20_000);
        for n in 1..=keep {
            let p = numbered(&path, n);
            if p.exists() {
                let s = read(&p);
                assert!(s.len() <= 1000 && s.ends_with('\n'));
            }
        }
    }

    fn plan_of(text: &str) -> Plan {
        let c = crate::compile(crate::source::SourceFile::new("t.pf", text), None);
        assert!(!c.has_errors(), "{:?}", c.diagnostics);
        crate::plan::build(c.model.as_ref().unwrap(), &Default::default())
    }

    #[test]
    fn prepare_creates_directories_and_names_a_path_it_cannot_open() {
        let d = tmpdir("prepare");
        let plan = plan_of(
            "topology t {\n  log file \"logs/{group}.{index}.log\"\n  group api {\n    run \"x\"\n    processes 2\n  }\n}\n",
        );
        prepare(&plan, &d).unwrap();
        assert!(d.join("logs/api.0.log").is_file());
        assert!(d.join("logs/api.1.log").is_file());
        // A regular file where a directory should be.
        let blocked = tmpdir("prepare-blocked");
        std::fs::write(blocked.join("logs"), "").unwrap();
        let err = prepare(&plan, &blocked).unwrap_err();
        assert!(err.starts_with("cannot open log file "), "{err}");
        assert!(err.contains("logs/api.0.log of api.0: "), "{err}");
    }

    #[test]
    fn lines_handed_to_the_writer_thread_are_written_when_flush_returns() {
        let d = tmpdir("thread");
        let spec = LogSpec {
            path: "t/x.log".into(),
            rotate_bytes: 1000,
            keep: 100,
        };
        let s = sink(&d, Some(&spec)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for i in 0..2000 {
                let mut b = POOL.take(16);
                b.extend_from_slice(format!("line {i}\n").as_bytes());
                write(&s, b).await;
            }
            flush().await;
        });
        let text = all(&d.join("t/x.log"), 100).concat();
        let want: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, want);
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_tried_again_at_the_next_write() {
        let d = tmpdir("retry");
        // A regular file where the directory should be.
        std::fs::write(d.join("logs"), "").unwrap();
        let spec = LogSpec {
            path: "logs/x.log".into(),
            rotate_bytes: 100,
            keep: 1,
        };
        let s = sink(&d, Some(&spec)).unwrap();
        s.lock().unwrap().write(b"lost\n");
        assert!(s.lock().unwrap().reported);
        std::fs::remove_file(d.join("logs")).unwrap();
        s.lock().unwrap().write(b"kept\n");
        assert_eq!(read(&d.join("logs/x.log")), "kept\n");
        assert!(!s.lock().unwrap().reported);
    }

    #[test]
    fn shared_sinks_are_one_file_per_path() {
        let d = tmpdir("shared");
        let spec = LogSpec {
            path: "s.log".into(),
            rotate_bytes: 100,
            keep: 1,
        };
        let a = sink(&d, Some(&spec)).unwrap();
        let b = sink(&d, Some(&spec)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(sink(&d, None).is_none());
    }
}
