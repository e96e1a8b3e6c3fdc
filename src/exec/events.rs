//! Lifecycle events (docs/events.md): one line each on stderr, as
//! `flowrun | …` text or as one JSON object.
//!
//! Events are built by the supervisor and handed to one writer thread that
//! owns stderr ([`EventSink`]); a closed stderr (EPIPE) drops them.
//! With [`EventSink::feed_to`], every event's JSON object also goes to
//! the control plane's event ring (`flowrun events`), in the same batches.

use super::LogFormat;
use crate::control::ring::EventFeed;
use serde_json::ser::{CompactFormatter, Formatter};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Instant;

/// Who a process event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Who {
    /// `group.index`
    pub process: String,
    pub group: String,
    pub index: u32,
}

/// One lifecycle event with exactly the fields of docs/events.md.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Starting {
        topology: String,
        groups: usize,
        processes: usize,
        /// `cgroup` or `process-group` (see cgroup.rs).
        containment: &'static str,
    },
    /// A process a dead run of the same topology left behind, killed
    /// before this run starts.
    Leftover {
        pid: i32,
        command: String,
    },
    /// The guard died while the runner lives; a new one took over.
    GuardRestarted {
        old_pid: i32,
        pid: i32,
    },
    Started {
        who: Who,
        pid: i32,
    },
    Ready {
        who: Who,
    },
    Exited {
        who: Who,
        pid: i32,
        code: Option<i32>,
        signal: Option<&'static str>,
        expected: bool,
    },
    Restarting {
        who: Who,
        in_ms: u64,
        attempt: u32,
    },
    Failed {
        group: String,
        reason: String,
    },
    Signal {
        signal: &'static str,
    },
    Draining {
        reason: String,
    },
    Stopping {
        who: Who,
        signal: &'static str,
        step: usize,
        target: &'static str,
    },
    Killed {
        who: Who,
        reason: &'static str,
    },
    Stopped {
        who: Who,
        /// CPU time of this incarnation and everything it started (cgroup
        /// containment only).
        cpu_ms: Option<u64>,
    },
    Escalating {
        signal: &'static str,
    },
    Reloading,
    Reloaded {
        changed: Vec<String>,
        /// Signals whose handler was added, changed or removed.
        handlers: Vec<String>,
    },
    /// A spawn ran out of a resource (EMFILE, EAGAIN, …); it is retried.
    SpawnRetry {
        who: Who,
        error: String,
        attempt: u32,
        in_ms: u64,
    },
    ReloadRejected {
        errors: Vec<String>,
    },
    /// Relaying to stdout stopped: a write failed, or the output could not
    /// be flushed in time at the end. The children's output is dropped
    /// from then on; supervision goes on.
    OutputStopped {
        reason: String,
    },
    /// A control-socket connection from another user was refused
    /// (docs/control.md, Peer credentials).
    Refused {
        uid: u32,
        pid: Option<i32>,
    },
    Exit {
        code: i32,
        /// CPU time per group over the whole run (cgroup containment only).
        cpu_ms: Option<Vec<(String, u64)>>,
    },
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::Starting { .. } => "starting",
            Event::Leftover { .. } => "leftover",
            Event::GuardRestarted { .. } => "guard-restarted",
            Event::Started { .. } => "started",
            Event::Ready { .. } => "ready",
            Event::Exited { .. } => "exited",
            Event::Restarting { .. } => "restarting",
            Event::Failed { .. } => "failed",
            Event::Signal { .. } => "signal",
            Event::Draining { .. } => "draining",
            Event::Stopping { .. } => "stopping",
            Event::Killed { .. } => "killed",
            Event::Stopped { .. } => "stopped",
            Event::Escalating { .. } => "escalating",
            Event::Reloading => "reloading",
            Event::Reloaded { .. } => "reloaded",
            Event::ReloadRejected { .. } => "reload-rejected",
            Event::SpawnRetry { .. } => "spawn-retry",
            Event::OutputStopped { .. } => "output-stopped",
            Event::Refused { .. } => "refused",
            Event::Exit { .. } => "exit",
        }
    }

    fn who(&self) -> Option<&Who> {
        match self {
            Event::Started { who, .. }
            | Event::Ready { who }
            | Event::Exited { who, .. }
            | Event::Restarting { who, .. }
            | Event::Stopping { who, .. }
            | Event::Killed { who, .. }
            | Event::Stopped { who, .. }
            | Event::SpawnRetry { who, .. } => Some(who),
            _ => None,
        }
    }

    /// Append this event's JSON object (no newline) to `out`: `event`, `t`,
    /// the process fields, then the event's own fields in documented order.
    ///
    /// Written straight into `out`, no `serde_json::Value` in between:
    /// strings through serde_json's own escaper, numbers through its
    /// formatter, so the bytes are exactly what serializing the object
    /// with serde_json gives.
    pub fn write_json(&self, t: f64, out: &mut Vec<u8>) {
        let mut o = JsonObject(out);
        // Event names are lower-case words and dashes: nothing to escape.
        o.0.extend_from_slice(b"{\"event\":\"");
        o.0.extend_from_slice(self.name().as_bytes());
        o.0.extend_from_slice(b"\",\"t\":");
        // Seconds rounded to microseconds; a non-finite time is written as 0.
        let t = (t * 1_000_000.0).round() / 1_000_000.0;
        if t.is_finite() {
            let _ = CompactFormatter.write_f64(o.0, t);
        } else {
            o.0.push(b'0');
        }
        if let Some(w) = self.who() {
            o.str("process", &w.process);
            o.str("group", &w.group);
            o.u64("index", w.index.into());
        }
        match self {
            Event::Starting {
                topology,
                groups,
                processes,
                containment,
            } => {
                o.str("topology", topology);
                o.u64("groups", *groups as u64);
                o.u64("processes", *processes as u64);
                o.str("containment", containment);
            }
            Event::Leftover { pid, command } => {
                o.i64("pid", (*pid).into());
                o.str("command", command);
            }
            Event::GuardRestarted { old_pid, pid } => {
                o.i64("old_pid", (*old_pid).into());
                o.i64("pid", (*pid).into());
            }
            Event::Started { pid, .. } => o.i64("pid", (*pid).into()),
            Event::Ready { .. } | Event::Reloading => {}
            Event::Exited {
                pid,
                code,
                signal,
                expected,
                ..
            } => {
                o.i64("pid", (*pid).into());
                match code {
                    Some(c) => o.i64("code", (*c).into()),
                    None => o.null("code"),
                }
                match signal {
                    Some(s) => o.str("signal", s),
                    None => o.null("signal"),
                }
                o.key("expected");
                o.0.extend_from_slice(if *expected { b"true" } else { b"false" });
            }
            Event::Restarting { in_ms, attempt, .. } => {
                o.u64("in_ms", *in_ms);
                o.u64("attempt", (*attempt).into());
            }
            Event::Failed { group, reason } => {
                o.str("group", group);
                o.str("reason", reason);
            }
            Event::Signal { signal } | Event::Escalating { signal } => o.str("signal", signal),
            Event::Draining { reason } | Event::OutputStopped { reason } => o.str("reason", reason),
            Event::Stopping {
                signal,
                step,
                target,
                ..
            } => {
                o.str("signal", signal);
                o.u64("step", *step as u64);
                o.str("target", target);
            }
            Event::Killed { reason, .. } => o.str("reason", reason),
            Event::Stopped { cpu_ms, .. } => {
                if let Some(ms) = cpu_ms {
                    o.u64("cpu_ms", *ms);
                }
            }
            Event::Reloaded { changed, handlers } => {
                o.strings("changed", changed);
                o.strings("handlers", handlers);
            }
            Event::SpawnRetry {
                error,
                attempt,
                in_ms,
                ..
            } => {
                o.str("error", error);
                o.u64("attempt", (*attempt).into());
                o.u64("in_ms", *in_ms);
            }
            Event::ReloadRejected { errors } => o.strings("errors", errors),
            Event::Refused { uid, pid } => {
                o.u64("uid", (*uid).into());
                match pid {
                    Some(p) => o.i64("pid", (*p).into()),
                    None => o.null("pid"),
                }
            }
            Event::Exit { code, cpu_ms } => {
                o.i64("code", (*code).into());
                if let Some(groups) = cpu_ms {
                    // A JSON object as serde_json's map builds it: keys
                    // sorted, a repeated key keeps its last value.
                    let groups: BTreeMap<&str, u64> =
                        groups.iter().map(|(g, ms)| (g.as_str(), *ms)).collect();
                    o.key("cpu_ms");
                    o.0.push(b'{');
                    for (i, (g, ms)) in groups.into_iter().enumerate() {
                        if i > 0 {
                            o.0.push(b',');
                        }
                        o.string(g);
                        o.0.push(b':');
                        let _ = CompactFormatter.write_u64(o.0, ms);
                    }
                    o.0.push(b'}');
                }
            }
        }
        o.0.push(b'}');
    }

    /// One JSON object (no newline): see [`write_json`](Event::write_json).
    pub fn json(&self, t: f64) -> String {
        let mut out = Vec::with_capacity(160);
        self.write_json(t, &mut out);
        // write_json appends only `&str` text, ASCII and serde_json's
        // output (always UTF-8): the lossy branch is never taken.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// The human line (no newline): `flowrun | api.0 started pid 4242`.
    /// Control characters in names, paths and reasons are escaped (`\n`),
    /// so one event is one line (a rejected reload's errors follow on
    /// lines of their own).
    pub fn human(&self) -> String {
        let mut out = Vec::with_capacity(64);
        self.write_human(&mut out);
        // Only `&str` text and numbers are written.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// [`human`](Event::human), appended to `out`: written in place, with
    /// no string per part (events are written at every start and stop).
    pub fn write_human(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let e = escape_controls;
        out.extend_from_slice(b"flowrun | ");
        // `write!` into a Vec cannot fail.
        macro_rules! w {
            ($($arg:tt)*) => {{
                let _ = write!(out, $($arg)*);
            }};
        }
        match self {
            Event::Starting {
                topology,
                groups,
                processes,
                containment,
            } => w!(
                "starting topology {}: {}, {} ({containment} containment)",
                e(topology),
                crate::plural(*groups, "group"),
                crate::plural(*processes, "process")
            ),
            Event::Leftover { pid, command } => w!(
                "killed pid {pid} left by a dead run of this topology: {}",
                e(command)
            ),
            Event::GuardRestarted { old_pid, pid } => {
                w!("guard pid {old_pid} died; restarted as pid {pid}")
            }
            Event::Started { who, pid } => w!("{} started pid {pid}", e(&who.process)),
            Event::Ready { who } => w!("{} ready", e(&who.process)),
            Event::Exited {
                who,
                pid,
                code,
                signal,
                expected,
            } => {
                w!("{} exited pid {pid} ", e(&who.process));
                match (code, signal) {
                    (Some(c), _) => w!("code {c}"),
                    (None, Some(s)) => w!("signal {s}"),
                    (None, None) => w!("status unknown"),
                }
                if *expected {
                    w!(" (expected)");
                }
            }
            Event::Restarting {
                who,
                in_ms,
                attempt,
            } => w!(
                "{} restarting in {in_ms}ms (attempt {attempt})",
                e(&who.process)
            ),
            Event::Failed { group, reason } => w!("group {} failed: {}", e(group), e(reason)),
            Event::Signal { signal } => w!("received {signal}"),
            Event::Draining { reason } => w!("draining ({})", e(reason)),
            Event::Stopping {
                who,
                signal,
                step,
                target,
            } => w!(
                "{} stopping: {signal} to {target} (step {step})",
                e(&who.process)
            ),
            Event::Killed { who, reason } => w!("{} killed ({reason})", e(&who.process)),
            Event::Stopped { who, cpu_ms } => match cpu_ms {
                Some(ms) => w!("{} stopped (cpu {})", e(&who.process), cpu_text(*ms)),
                None => w!("{} stopped", e(&who.process)),
            },
            Event::Escalating { signal } => {
                w!("escalating on repeated {signal}: killing everything")
            }
            Event::Reloading => w!("reloading"),
            Event::Reloaded { changed, handlers } => {
                let mut parts = Vec::new();
                if !changed.is_empty() {
                    let names: Vec<_> = changed.iter().map(|c| e(c)).collect();
                    parts.push(format!("changed {}", names.join(", ")));
                }
                if !handlers.is_empty() {
                    parts.push(format!("handlers {}", handlers.join(", ")));
                }
                if parts.is_empty() {
                    w!("reloaded: nothing changed")
                } else {
                    w!("reloaded: {}", parts.join("; "))
                }
            }
            Event::SpawnRetry {
                who,
                error,
                attempt,
                in_ms,
            } => w!(
                "{} cannot spawn yet ({}): retry {attempt} in {in_ms}ms",
                e(&who.process),
                e(error)
            ),
            Event::ReloadRejected { errors } => {
                w!("reload rejected ({})", crate::plural(errors.len(), "error"));
                for err in errors {
                    w!("\nflowrun |   {}", e(err));
                }
            }
            Event::OutputStopped { reason } => w!(
                "output stopped: {}; children's output is dropped",
                e(reason)
            ),
            Event::Refused { uid, pid } => match pid {
                Some(pid) => w!("refused a control connection from uid {uid} (pid {pid})"),
                None => w!("refused a control connection from uid {uid}"),
            },
            Event::Exit { code, cpu_ms } => match cpu_ms {
                Some(groups) if !groups.is_empty() => {
                    let per: Vec<String> = groups
                        .iter()
                        .map(|(g, ms)| format!("{} {}", e(g), cpu_text(*ms)))
                        .collect();
                    w!("exit {code} (cpu: {})", per.join(", "))
                }
                _ => w!("exit {code}"),
            },
        }
    }
}

/// `s` with every control character (newline, tab, escape, …) written as
/// a Rust-style escape (`\n`, `\t`, `\u{1b}`); other text is unchanged.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The members of a JSON object being written into a byte buffer, each
/// after a comma (the object's first member, `event`, is written by hand).
/// Writes into a `Vec` cannot fail: their `io::Result`s are dropped.
struct JsonObject<'a>(&'a mut Vec<u8>);

impl JsonObject<'_> {
    /// `,"k":` (member names are literals that need no escaping).
    fn key(&mut self, k: &str) {
        self.0.extend_from_slice(b",\"");
        self.0.extend_from_slice(k.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    /// A JSON string, escaped by serde_json.
    fn string(&mut self, v: &str) {
        let _ = serde_json::to_writer(&mut *self.0, v);
    }

    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        self.string(v);
    }

    fn strings(&mut self, k: &str, vs: &[String]) {
        self.key(k);
        self.0.push(b'[');
        for (i, v) in vs.iter().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            self.string(v);
        }
        self.0.push(b']');
    }

    fn u64(&mut self, k: &str, v: u64) {
        self.key(k);
        let _ = CompactFormatter.write_u64(self.0, v);
    }

    fn i64(&mut self, k: &str, v: i64) {
        self.key(k);
        let _ = CompactFormatter.write_i64(self.0, v);
    }

    fn null(&mut self, k: &str) {
        self.key(k);
        self.0.extend_from_slice(b"null");
    }
}

/// CPU time as the one duration formatter writes it.
fn cpu_text(ms: u64) -> String {
    crate::check::fmt_duration(std::time::Duration::from_millis(ms))
}

/// Sends formatted events to the stderr writer thread.
///
/// Events are collected in a buffer shared by every clone and handed to
/// the writer in one message per [`flush`](EventSink::flush) (the
/// supervisor flushes once per batch of messages it handles; a full buffer
/// and dropping a sink flush too), so a drain of thousands of processes
/// wakes the writer thread a few times instead of once per event.
#[derive(Clone)]
pub struct EventSink {
    format: LogFormat,
    start: Instant,
    tx: mpsc::Sender<Vec<u8>>,
    pending: Arc<Mutex<Vec<u8>>>,
    /// The control plane's event ring, once set, and the JSON objects
    /// waiting for the next flush.
    feed: Arc<OnceLock<Arc<EventFeed>>>,
    feed_pending: Arc<Mutex<Vec<String>>>,
}

/// Flush when this much is pending, whatever the supervisor is doing.
const FLUSH_AT: usize = 64 * 1024;

/// The stderr writer thread of [`EventSink::start`].
pub struct EventWriter {
    handle: std::thread::JoinHandle<()>,
    done: mpsc::Receiver<()>,
}

impl EventWriter {
    /// Wait up to `grace` for the thread to write what it has and end
    /// (every sink dropped); whether it did. A stderr nobody reads keeps
    /// it (and is left behind: the process is about to exit).
    pub fn finish_within(self, grace: std::time::Duration) -> bool {
        match self.done.recv_timeout(grace) {
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            _ => {
                let _ = self.handle.join();
                true
            }
        }
    }
}

impl EventSink {
    /// Start the stderr writer thread. Wait for it
    /// ([`EventWriter::finish_within`]) after dropping every sink to flush.
    pub fn start(format: LogFormat, start: Instant) -> (EventSink, EventWriter) {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let (done_tx, done) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("flowrun-events".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                // Dropped when the thread ends: wakes `finish_within`.
                let _done = done_tx;
                // Locked per batch, never for the thread's life: anything
                // else that writes to stderr (a message before the events
                // start, a panic's report) must not wait for the end.
                let err = std::io::stderr();
                let mut broken = false;
                let mut buf = Vec::new();
                while let Ok(line) = rx.recv() {
                    // Whole lines only; batch what is already queued.
                    buf.clear();
                    buf.extend_from_slice(&line);
                    while buf.len() < 64 * 1024 {
                        match rx.try_recv() {
                            Ok(more) => buf.extend_from_slice(&more),
                            Err(_) => break,
                        }
                    }
                    if !broken {
                        let mut err = err.lock();
                        if err.write_all(&buf).and_then(|_| err.flush()).is_err() {
                            broken = true;
                        }
                    }
                }
            })
            .expect("cannot start the event writer thread");
        let writer = EventWriter { handle, done };
        (
            EventSink {
                format,
                start,
                tx,
                pending: Arc::new(Mutex::new(Vec::new())),
                feed: Arc::default(),
                feed_pending: Arc::default(),
            },
            writer,
        )
    }

    /// From now on, also push every event's JSON object (docs/events.md)
    /// to `feed`, for `flowrun events`, in the same batches as stderr.
    /// For every clone; set once (a second call is ignored).
    pub fn feed_to(&self, feed: Arc<EventFeed>) {
        let _ = self.feed.set(feed);
    }

    /// Queue one event for the next flush. Its JSON object is built once:
    /// with `--log-format json` and a feed, the stderr line and the feed
    /// get the same text (the same `t`); without a feed it is written
    /// straight into the pending buffer.
    pub fn emit(&self, ev: Event) {
        let t = self.start.elapsed().as_secs_f64();
        let json = self.feed.get().map(|_| ev.json(t));
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match (self.format, &json) {
                (LogFormat::Human, _) => ev.write_human(&mut pending),
                (_, Some(line)) => pending.extend_from_slice(line.as_bytes()),
                (_, None) => ev.write_json(t, &mut pending),
            }
            pending.push(b'\n');
            pending.len() >= FLUSH_AT
        };
        if let Some(json) = json {
            self.feed_pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(json);
        }
        if full {
            self.flush();
        }
    }

    /// Hand every pending event to the writer thread.
    pub fn flush(&self) {
        if let Some(feed) = self.feed.get() {
            let json =
                std::mem::take(&mut *self.feed_pending.lock().unwrap_or_else(|e| e.into_inner()));
            if !json.is_empty() {
                feed.push(json);
            }
        }
        let batch = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.is_empty() {
                return;
            }
            std::mem::take(&mut *pending)
        };
        let _ = self.tx.send(batch);
    }
}

impl Drop for EventSink {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Whether another thread can take stderr's lock within 5 s.
    fn stderr_is_free() -> bool {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _held = std::io::stderr().lock();
            let _ = tx.send(());
        });
        rx.recv_timeout(std::time::Duration::from_secs(5)).is_ok()
    }

    #[test]
    fn the_event_writer_leaves_stderr_free_between_batches() {
        // A message written while events run (the control plane failing
        // to start, a panic's report) must not wait for the writer to end:
        // it held stderr's lock for its whole life, and `up` hung.
        let (sink, writer) = EventSink::start(LogFormat::Human, Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(stderr_is_free(), "the event writer keeps stderr locked");
        drop(sink);
        assert!(writer.finish_within(std::time::Duration::from_secs(5)));
    }

    /// The event-specific fields, in documented order.
    fn old_fields(ev: &Event) -> Vec<(&'static str, Value)> {
        let s = |v: &str| Value::String(v.to_string());
        let opt_s = |v: Option<&str>| v.map_or(Value::Null, s);
        match ev {
            Event::Starting {
                topology,
                groups,
                processes,
                containment,
            } => vec![
                ("topology", s(topology)),
                ("groups", (*groups).into()),
                ("processes", (*processes).into()),
                ("containment", s(containment)),
            ],
            Event::Leftover { pid, command } => {
                vec![("pid", (*pid).into()), ("command", s(command))]
            }
            Event::GuardRestarted { old_pid, pid } => {
                vec![("old_pid", (*old_pid).into()), ("pid", (*pid).into())]
            }
            Event::Stopped { cpu_ms, .. } => match cpu_ms {
                Some(ms) => vec![("cpu_ms", (*ms).into())],
                None => vec![],
            },
            Event::Started { pid, .. } => vec![("pid", (*pid).into())],
            Event::Ready { .. } | Event::Reloading => vec![],
            Event::Exited {
                pid,
                code,
                signal,
                expected,
                ..
            } => vec![
                ("pid", (*pid).into()),
                ("code", code.map_or(Value::Null, Value::from)),
                ("signal", opt_s(*signal)),
                ("expected", (*expected).into()),
            ],
            Event::Restarting { in_ms, attempt, .. } => {
                vec![("in_ms", (*in_ms).into()), ("attempt", (*attempt).into())]
            }
            Event::Failed { group, reason } => vec![("group", s(group)), ("reason", s(reason))],
            Event::Signal { signal } | Event::Escalating { signal } => vec![("signal", s(signal))],
            Event::Draining { reason } | Event::OutputStopped { reason } => {
                vec![("reason", s(reason))]
            }
            Event::Stopping {
                signal,
                step,
                target,
                ..
            } => vec![
                ("signal", s(signal)),
                ("step", (*step).into()),
                ("target", s(target)),
            ],
            Event::Killed { reason, .. } => vec![("reason", s(reason))],
            Event::Reloaded { changed, handlers } => vec![
                (
                    "changed",
                    Value::Array(changed.iter().map(|c| s(c)).collect()),
                ),
                (
                    "handlers",
                    Value::Array(handlers.iter().map(|c| s(c)).collect()),
                ),
            ],
            Event::SpawnRetry {
                error,
                attempt,
                in_ms,
                ..
            } => vec![
                ("error", s(error)),
                ("attempt", (*attempt).into()),
                ("in_ms", (*in_ms).into()),
            ],
            Event::ReloadRejected { errors } => vec![(
                "errors",
                Value::Array(errors.iter().map(|c| s(c)).collect()),
            )],
            Event::Refused { uid, pid } => vec![
                ("uid", (*uid).into()),
                ("pid", pid.map_or(Value::Null, Value::from)),
            ],
            Event::Exit { code, cpu_ms } => {
                let mut v = vec![("code", (*code).into())];
                if let Some(groups) = cpu_ms {
                    let m: serde_json::Map<String, Value> = groups
                        .iter()
                        .map(|(g, ms)| (g.clone(), (*ms).into()))
                        .collect();
                    v.push(("cpu_ms", Value::Object(m)));
                }
                v
            }
        }
    }

    /// The Value-based builder `json` replaced, kept as the oracle: one
    /// JSON object (no newline): `event`, `t`, process fields, then the
    /// event's own fields.
    fn old_json(ev: &Event, t: f64) -> String {
        let mut out = String::with_capacity(128);
        out.push_str("{\"event\":");
        out.push_str(&Value::from(ev.name()).to_string());
        out.push_str(",\"t\":");
        let t = (t * 1_000_000.0).round() / 1_000_000.0;
        out.push_str(&serde_json::Number::from_f64(t).map_or("0".into(), |n| n.to_string()));
        let mut fields = Vec::new();
        if let Some(w) = ev.who() {
            fields.push(("process", Value::from(w.process.as_str())));
            fields.push(("group", Value::from(w.group.as_str())));
            fields.push(("index", Value::from(w.index)));
        }
        fields.extend(old_fields(ev));
        for (k, v) in fields {
            out.push_str(",\"");
            out.push_str(k);
            out.push_str("\":");
            out.push_str(&v.to_string());
        }
        out.push('}');
        out
    }

    /// A sink writing to `tx`, without its thread.
    fn sink(format: LogFormat, tx: mpsc::Sender<Vec<u8>>) -> EventSink {
        EventSink {
            format,
            start: Instant::now(),
            tx,
            pending: Arc::new(Mutex::new(Vec::new())),
            feed: Arc::default(),
            feed_pending: Arc::default(),
        }
    }

    #[test]
    fn a_feed_gets_each_event_as_json_at_the_flush() {
        let (tx, rx) = mpsc::channel();
        let sink = sink(LogFormat::Human, tx);
        sink.emit(Event::Reloading); // before the feed: stderr only
        let feed = Arc::new(EventFeed::new(1 << 16));
        sink.clone().feed_to(feed.clone());
        sink.emit(Event::Refused { uid: 7, pid: None });
        sink.emit(Event::Reloading);
        assert_eq!(
            feed.read(feed.start(), 10).items.len(),
            0,
            "not before a flush"
        );
        sink.flush();
        let got: Vec<String> = feed
            .read(feed.start(), 10)
            .items
            .into_iter()
            .map(|(_, j)| j)
            .collect();
        assert_eq!(got.len(), 2);
        let v: Value = serde_json::from_str(&got[0]).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["uid"].as_u64()),
            (Some("refused"), Some(7))
        );
        assert!(got[1].starts_with("{\"event\":\"reloading\",\"t\":"));
        // stderr still gets the human lines, all three.
        let text: String = rx
            .try_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect();
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn events_are_batched_until_a_flush_and_a_drop_flushes() {
        let (tx, rx) = mpsc::channel();
        let sink = sink(LogFormat::Human, tx);
        let clone = sink.clone();
        sink.emit(Event::Exit {
            code: 0,
            cpu_ms: None,
        });
        clone.emit(Event::Exit {
            code: 1,
            cpu_ms: None,
        });
        assert!(rx.try_recv().is_err(), "nothing is sent before a flush");
        sink.flush();
        let batch = String::from_utf8(rx.try_recv().unwrap()).unwrap();
        assert_eq!(batch.lines().count(), 2, "{batch}");
        assert!(batch.ends_with('\n'));
        sink.flush();
        assert!(rx.try_recv().is_err(), "an empty flush sends nothing");
        clone.emit(Event::Exit {
            code: 2,
            cpu_ms: None,
        });
        drop(clone);
        assert_eq!(
            String::from_utf8(rx.try_recv().unwrap())
                .unwrap()
                .lines()
                .count(),
            1
        );
    }

    fn who() -> Who {
        Who {
            process: "api.0".into(),
            group: "api".into(),
            index: 0,
        }
    }

    #[test]
    fn json_has_documented_fields_in_order() {
        let e = Event::Exited {
            who: who(),
            pid: 42,
            code: None,
            signal: Some("SIGKILL"),
            expected: true,
        };
        assert_eq!(
            e.json(1.5),
            r#"{"event":"exited","t":1.5,"process":"api.0","group":"api","index":0,"pid":42,"code":null,"signal":"SIGKILL","expected":true}"#
        );
        let e = Event::ReloadRejected {
            errors: vec!["a \"b\"".into()],
        };
        assert_eq!(
            e.json(0.0),
            r#"{"event":"reload-rejected","t":0.0,"errors":["a \"b\""]}"#
        );
    }

    #[test]
    fn human_lines() {
        assert_eq!(
            Event::Started {
                who: who(),
                pid: 4242
            }
            .human(),
            "flowrun | api.0 started pid 4242"
        );
        assert_eq!(
            Event::Stopping {
                who: who(),
                signal: "SIGTERM",
                step: 0,
                target: "leader"
            }
            .human(),
            "flowrun | api.0 stopping: SIGTERM to leader (step 0)"
        );
    }

    #[test]
    fn human_lines_escape_control_characters_and_stay_one_line() {
        let e = Event::Failed {
            group: "odd".into(),
            reason: "odd.0: spawn failed: cannot execute /tmp/no\nsuch\t\u{1b}[31m (x)".into(),
        };
        assert_eq!(
            e.human(),
            "flowrun | group odd failed: odd.0: spawn failed: cannot execute \
             /tmp/no\\nsuch\\t\\u{1b}[31m (x)"
        );
        let e = Event::ReloadRejected {
            errors: vec!["a.pf:1:1: error[FR001] x\ny".into(), "b".into()],
        };
        assert_eq!(
            e.human(),
            "flowrun | reload rejected (2 errors)\nflowrun |   a.pf:1:1: error[FR001] x\\ny\nflowrun |   b"
        );
        assert_eq!(escape_controls("plain é"), "plain é");
    }

    #[test]
    fn human_counts_are_pluralised() {
        let one = Event::ReloadRejected {
            errors: vec!["x".into()],
        };
        assert!(one
            .human()
            .starts_with("flowrun | reload rejected (1 error)\n"));
        let start = |groups, processes| Event::Starting {
            topology: "t".into(),
            groups,
            processes,
            containment: "cgroup",
        };
        assert_eq!(
            start(1, 1).human(),
            "flowrun | starting topology t: 1 group, 1 process (cgroup containment)"
        );
        assert_eq!(
            start(2, 3).human(),
            "flowrun | starting topology t: 2 groups, 3 processes (cgroup containment)"
        );
    }

    #[test]
    fn output_stopped() {
        let e = Event::OutputStopped {
            reason: "cannot write to stdout: File too large (os error 27)".into(),
        };
        assert_eq!(
            e.json(2.0),
            r#"{"event":"output-stopped","t":2.0,"reason":"cannot write to stdout: File too large (os error 27)"}"#
        );
        assert_eq!(
            e.human(),
            "flowrun | output stopped: cannot write to stdout: File too large (os error 27); \
             children's output is dropped"
        );
    }

    /// Quotes, a backslash, a slash, the short escapes, other control
    /// characters (`\u0001`, `\u001f`), DEL (not escaped) and non-ASCII.
    const ODD: &str = "q\"b\\s/\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f} é✓😀";

    fn odd_who() -> Who {
        Who {
            process: format!("{ODD}.3"),
            group: ODD.into(),
            index: 3,
        }
    }

    /// One event per variant (some twice), each with the object
    /// docs/events.md describes for it at t = 12.345678.
    fn samples() -> Vec<(Event, Value)> {
        use serde_json::json;
        let t = 12.345678;
        let p = json!({"process": format!("{ODD}.3"), "group": ODD, "index": 3});
        let with = |event: &str, fields: Value| {
            let mut o = json!({"event": event, "t": t});
            for (k, v) in fields.as_object().unwrap() {
                o[k] = v.clone();
            }
            o
        };
        let proc = |event: &str, fields: Value| {
            let mut o = with(event, p.clone());
            for (k, v) in fields.as_object().unwrap() {
                o[k] = v.clone();
            }
            o
        };
        vec![
            (
                Event::Starting {
                    topology: ODD.into(),
                    groups: 2,
                    processes: 500,
                    containment: "process-group",
                },
                with(
                    "starting",
                    json!({"topology": ODD, "groups": 2, "processes": 500, "containment": "process-group"}),
                ),
            ),
            (
                Event::Leftover {
                    pid: 77,
                    command: ODD.into(),
                },
                with("leftover", json!({"pid": 77, "command": ODD})),
            ),
            (
                Event::GuardRestarted {
                    old_pid: 1,
                    pid: i32::MAX,
                },
                with("guard-restarted", json!({"old_pid": 1, "pid": i32::MAX})),
            ),
            (
                Event::Started {
                    who: odd_who(),
                    pid: 4242,
                },
                proc("started", json!({"pid": 4242})),
            ),
            (Event::Ready { who: odd_who() }, proc("ready", json!({}))),
            (
                Event::Exited {
                    who: odd_who(),
                    pid: 5,
                    code: Some(-1),
                    signal: None,
                    expected: false,
                },
                proc(
                    "exited",
                    json!({"pid": 5, "code": -1, "signal": null, "expected": false}),
                ),
            ),
            (
                Event::Exited {
                    who: odd_who(),
                    pid: 5,
                    code: None,
                    signal: Some("SIGKILL"),
                    expected: true,
                },
                proc(
                    "exited",
                    json!({"pid": 5, "code": null, "signal": "SIGKILL", "expected": true}),
                ),
            ),
            (
                Event::Restarting {
                    who: odd_who(),
                    in_ms: u64::MAX,
                    attempt: 9,
                },
                proc("restarting", json!({"in_ms": u64::MAX, "attempt": 9})),
            ),
            (
                Event::Failed {
                    group: ODD.into(),
                    reason: ODD.into(),
                },
                with("failed", json!({"group": ODD, "reason": ODD})),
            ),
            (
                Event::Signal { signal: "SIGINT" },
                with("signal", json!({"signal": "SIGINT"})),
            ),
            (
                Event::Draining { reason: ODD.into() },
                with("draining", json!({"reason": ODD})),
            ),
            (
                Event::Stopping {
                    who: odd_who(),
                    signal: "SIGTERM",
                    step: 1,
                    target: "group",
                },
                proc(
                    "stopping",
                    json!({"signal": "SIGTERM", "step": 1, "target": "group"}),
                ),
            ),
            (
                Event::Killed {
                    who: odd_who(),
                    reason: "deadline",
                },
                proc("killed", json!({"reason": "deadline"})),
            ),
            (
                Event::Stopped {
                    who: odd_who(),
                    cpu_ms: None,
                },
                proc("stopped", json!({})),
            ),
            (
                Event::Stopped {
                    who: odd_who(),
                    cpu_ms: Some(120),
                },
                proc("stopped", json!({"cpu_ms": 120})),
            ),
            (
                Event::Escalating { signal: "SIGINT" },
                with("escalating", json!({"signal": "SIGINT"})),
            ),
            (Event::Reloading, with("reloading", json!({}))),
            (
                Event::Reloaded {
                    changed: vec![],
                    handlers: vec![],
                },
                with("reloaded", json!({"changed": [], "handlers": []})),
            ),
            (
                Event::Reloaded {
                    changed: vec![ODD.into(), "b".into()],
                    handlers: vec!["SIGUSR1".into()],
                },
                with(
                    "reloaded",
                    json!({"changed": [ODD, "b"], "handlers": ["SIGUSR1"]}),
                ),
            ),
            (
                Event::SpawnRetry {
                    who: odd_who(),
                    error: ODD.into(),
                    attempt: 2,
                    in_ms: 100,
                },
                proc(
                    "spawn-retry",
                    json!({"error": ODD, "attempt": 2, "in_ms": 100}),
                ),
            ),
            (
                Event::ReloadRejected { errors: vec![] },
                with("reload-rejected", json!({"errors": []})),
            ),
            (
                Event::ReloadRejected {
                    errors: vec![ODD.into(), String::new()],
                },
                with("reload-rejected", json!({"errors": [ODD, ""]})),
            ),
            (
                Event::OutputStopped { reason: ODD.into() },
                with("output-stopped", json!({"reason": ODD})),
            ),
            (
                Event::Refused { uid: 0, pid: None },
                with("refused", json!({"uid": 0, "pid": null})),
            ),
            (
                Event::Refused {
                    uid: u32::MAX,
                    pid: Some(i32::MIN),
                },
                with("refused", json!({"uid": u32::MAX, "pid": i32::MIN})),
            ),
            (
                Event::Exit {
                    code: 0,
                    cpu_ms: None,
                },
                with("exit", json!({"code": 0})),
            ),
            (
                Event::Exit {
                    code: 143,
                    cpu_ms: Some(vec![]),
                },
                with("exit", json!({"code": 143, "cpu_ms": {}})),
            ),
            (
                Event::Exit {
                    code: 1,
                    // Not in order, and a repeated name: the object has
                    // the names sorted, the last value of a repeated one.
                    cpu_ms: Some(vec![
                        ("web".into(), 7),
                        (ODD.into(), 3),
                        ("api".into(), 1),
                        ("web".into(), 8),
                    ]),
                },
                with(
                    "exit",
                    json!({"code": 1, "cpu_ms": {"web": 8, ODD: 3, "api": 1}}),
                ),
            ),
        ]
    }

    /// Which variant `e` is; a new variant does not compile until it is
    /// listed here, and then `samples` must cover it.
    fn variant(e: &Event) -> usize {
        match e {
            Event::Starting { .. } => 0,
            Event::Leftover { .. } => 1,
            Event::GuardRestarted { .. } => 2,
            Event::Started { .. } => 3,
            Event::Ready { .. } => 4,
            Event::Exited { .. } => 5,
            Event::Restarting { .. } => 6,
            Event::Failed { .. } => 7,
            Event::Signal { .. } => 8,
            Event::Draining { .. } => 9,
            Event::Stopping { .. } => 10,
            Event::Killed { .. } => 11,
            Event::Stopped { .. } => 12,
            Event::Escalating { .. } => 13,
            Event::Reloading => 14,
            Event::Reloaded { .. } => 15,
            Event::SpawnRetry { .. } => 16,
            Event::ReloadRejected { .. } => 17,
            Event::OutputStopped { .. } => 18,
            Event::Refused { .. } => 19,
            Event::Exit { .. } => 20,
        }
    }
    const VARIANTS: usize = 21;

    #[test]
    fn json_is_the_documented_object_and_what_the_value_builder_wrote() {
        let samples = samples();
        let covered: std::collections::BTreeSet<usize> =
            samples.iter().map(|(e, _)| variant(e)).collect();
        assert_eq!(covered.len(), VARIANTS, "every variant has a sample");
        for (e, want) in &samples {
            let got = e.json(12.345678);
            assert_eq!(got, old_json(e, 12.345678), "byte for byte: {e:?}");
            let parsed: Value =
                serde_json::from_str(&got).unwrap_or_else(|err| panic!("{err}: {got}"));
            assert_eq!(&parsed, want, "{got}");
            let mut buf = b"before".to_vec();
            e.write_json(12.345678, &mut buf);
            assert_eq!(buf, [b"before", got.as_bytes()].concat(), "appends");
        }
    }

    #[test]
    fn json_escapes_as_serde_json_does() {
        // Written out, independent of serde_json: the short escapes, \u00XX
        // in lower-case hex for other controls, DEL and non-ASCII as is.
        let e = Event::Failed {
            group: "g".into(),
            reason: ODD.into(),
        };
        assert_eq!(
            e.json(0.25),
            "{\"event\":\"failed\",\"t\":0.25,\"group\":\"g\",\"reason\":\
             \"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\\u001f\u{7f} é✓😀\"}"
        );
        // Every character up to U+07FF, and some further ones.
        let chars = (0u32..0x800)
            .chain([0xfffd, 0xffff, 0x1_0000, 0x1f600, 0x10_ffff])
            .filter_map(char::from_u32);
        for c in chars {
            let e = Event::Draining {
                reason: format!("a{c}b{c}"),
            };
            assert_eq!(e.json(1.0), old_json(&e, 1.0), "{c:?}");
        }
    }

    #[test]
    fn json_time_is_written_as_before() {
        let mut ts = vec![
            0.0,
            -0.0,
            1e-7,
            4.9e-7,
            5e-7,
            0.1 + 0.2,
            1e21,
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            -3.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        ts.extend((0..40_000).map(|i| f64::from(i) * 0.000_731));
        ts.extend((0..20_000).map(|i| f64::from(i) * 1.37e-7));
        ts.extend((-9..=22).map(|k| 10f64.powi(k) * 1.234_567_891));
        for t in ts {
            assert_eq!(
                Event::Reloading.json(t),
                old_json(&Event::Reloading, t),
                "t = {t:e}"
            );
        }
        assert_eq!(
            Event::Reloading.json(f64::NAN),
            r#"{"event":"reloading","t":0}"#
        );
    }

    #[test]
    fn json_lines_on_stderr_and_the_feed_are_the_same_text() {
        let (tx, rx) = mpsc::channel();
        let sink = sink(LogFormat::Json, tx);
        let feed = Arc::new(EventFeed::new(1 << 16));
        sink.feed_to(feed.clone());
        for (e, _) in samples() {
            sink.emit(e);
        }
        sink.flush();
        let fed: Vec<String> = feed
            .read(feed.start(), 100)
            .items
            .into_iter()
            .map(|(_, j)| j)
            .collect();
        let text: String = rx
            .try_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, fed);
        assert_eq!(lines.len(), samples().len());
    }

    #[test]
    fn json_lines_without_a_feed() {
        let (tx, rx) = mpsc::channel();
        let sink = sink(LogFormat::Json, tx);
        let samples = samples();
        for (e, _) in &samples {
            sink.emit(e.clone());
        }
        sink.flush();
        let text = String::from_utf8(rx.try_recv().unwrap()).unwrap();
        assert!(text.ends_with('\n'));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), samples.len());
        for (line, (_, want)) in lines.iter().zip(&samples) {
            let mut got: Value = serde_json::from_str(line).unwrap();
            assert!(got["t"].as_f64().is_some_and(|t| t >= 0.0), "{line}");
            got["t"] = want["t"].clone();
            assert_eq!(&got, want, "{line}");
        }
    }
}
