//! Lifecycle events (docs/events.md): one line each on stderr, as
//! `flowrun | …` text or as one JSON object.
//!
//! Events are built by the supervisor and handed to one writer thread that
//! owns stderr ([`EventSink`]); a closed stderr (EPIPE) drops them.
//! With [`EventSink::feed_to`], every event's JSON object also goes to
//! the control plane's event ring (`flowrun events`), in the same batches.

use super::LogFormat;
use crate::control::ring::EventFeed;
use serde_json::Value;
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

    /// The event-specific fields, in documented order.
    fn fields(&self) -> Vec<(&'static str, Value)> {
        let s = |v: &str| Value::String(v.to_string());
        let opt_s = |v: Option<&str>| v.map_or(Value::Null, s);
        match self {
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

    /// One JSON object (no newline): `event`, `t`, process fields, then the
    /// event's own fields.
    pub fn json(&self, t: f64) -> String {
        let mut out = String::with_capacity(128);
        out.push_str("{\"event\":");
        out.push_str(&Value::from(self.name()).to_string());
        out.push_str(",\"t\":");
        let t = (t * 1_000_000.0).round() / 1_000_000.0;
        out.push_str(&serde_json::Number::from_f64(t).map_or("0".into(), |n| n.to_string()));
        let mut fields = Vec::new();
        if let Some(w) = self.who() {
            fields.push(("process", Value::from(w.process.as_str())));
            fields.push(("group", Value::from(w.group.as_str())));
            fields.push(("index", Value::from(w.index)));
        }
        fields.extend(self.fields());
        for (k, v) in fields {
            out.push_str(",\"");
            out.push_str(k);
            out.push_str("\":");
            out.push_str(&v.to_string());
        }
        out.push('}');
        out
    }

    /// The human line (no newline): `flowrun | api.0 started pid 4242`.
    /// Control characters in names, paths and reasons are escaped (`\n`),
    /// so one event is one line (a rejected reload's errors follow on
    /// lines of their own).
    pub fn human(&self) -> String {
        let e = escape_controls;
        let body = match self {
            Event::Starting {
                topology,
                groups,
                processes,
                containment,
            } => format!(
                "starting topology {}: {}, {} ({containment} containment)",
                e(topology),
                crate::plural(*groups, "group"),
                crate::plural(*processes, "process")
            ),
            Event::Leftover { pid, command } => {
                format!(
                    "killed pid {pid} left by a dead run of this topology: {}",
                    e(command)
                )
            }
            Event::GuardRestarted { old_pid, pid } => {
                format!("guard pid {old_pid} died; restarted as pid {pid}")
            }
            Event::Started { who, pid } => format!("{} started pid {pid}", e(&who.process)),
            Event::Ready { who } => format!("{} ready", e(&who.process)),
            Event::Exited {
                who,
                pid,
                code,
                signal,
                expected,
            } => {
                let how = match (code, signal) {
                    (Some(c), _) => format!("code {c}"),
                    (None, Some(s)) => format!("signal {s}"),
                    (None, None) => "status unknown".to_string(),
                };
                let exp = if *expected { " (expected)" } else { "" };
                format!("{} exited pid {pid} {how}{exp}", e(&who.process))
            }
            Event::Restarting {
                who,
                in_ms,
                attempt,
            } => {
                format!(
                    "{} restarting in {in_ms}ms (attempt {attempt})",
                    e(&who.process)
                )
            }
            Event::Failed { group, reason } => {
                format!("group {} failed: {}", e(group), e(reason))
            }
            Event::Signal { signal } => format!("received {signal}"),
            Event::Draining { reason } => format!("draining ({})", e(reason)),
            Event::Stopping {
                who,
                signal,
                step,
                target,
            } => format!(
                "{} stopping: {signal} to {target} (step {step})",
                e(&who.process)
            ),
            Event::Killed { who, reason } => format!("{} killed ({reason})", e(&who.process)),
            Event::Stopped { who, cpu_ms } => match cpu_ms {
                Some(ms) => format!("{} stopped (cpu {})", e(&who.process), cpu_text(*ms)),
                None => format!("{} stopped", e(&who.process)),
            },
            Event::Escalating { signal } => {
                format!("escalating on repeated {signal}: killing everything")
            }
            Event::Reloading => "reloading".to_string(),
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
                    "reloaded: nothing changed".to_string()
                } else {
                    format!("reloaded: {}", parts.join("; "))
                }
            }
            Event::SpawnRetry {
                who,
                error,
                attempt,
                in_ms,
            } => format!(
                "{} cannot spawn yet ({}): retry {attempt} in {in_ms}ms",
                e(&who.process),
                e(error)
            ),
            Event::ReloadRejected { errors } => {
                let mut s = format!("reload rejected ({})", crate::plural(errors.len(), "error"));
                for err in errors {
                    s.push_str("\nflowrun |   ");
                    s.push_str(&e(err));
                }
                s
            }
            Event::OutputStopped { reason } => {
                format!(
                    "output stopped: {}; children's output is dropped",
                    e(reason)
                )
            }
            Event::Refused { uid, pid } => match pid {
                Some(pid) => format!("refused a control connection from uid {uid} (pid {pid})"),
                None => format!("refused a control connection from uid {uid}"),
            },
            Event::Exit { code, cpu_ms } => match cpu_ms {
                Some(groups) if !groups.is_empty() => {
                    let per: Vec<String> = groups
                        .iter()
                        .map(|(g, ms)| format!("{} {}", e(g), cpu_text(*ms)))
                        .collect();
                    format!("exit {code} (cpu: {})", per.join(", "))
                }
                _ => format!("exit {code}"),
            },
        };
        format!("flowrun | {body}")
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

impl EventSink {
    /// Start the stderr writer thread. Join the handle after dropping every
    /// sink to flush.
    pub fn start(format: LogFormat, start: Instant) -> (EventSink, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let handle = std::thread::Builder::new()
            .name("flowrun-events".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut err = std::io::stderr().lock();
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
                    if !broken && err.write_all(&buf).and_then(|_| err.flush()).is_err() {
                        broken = true;
                    }
                }
            })
            .expect("cannot start the event writer thread");
        (
            EventSink {
                format,
                start,
                tx,
                pending: Arc::new(Mutex::new(Vec::new())),
                feed: Arc::default(),
                feed_pending: Arc::default(),
            },
            handle,
        )
    }

    /// From now on, also push every event's JSON object (docs/events.md)
    /// to `feed`, for `flowrun events`, in the same batches as stderr.
    /// For every clone; set once (a second call is ignored).
    pub fn feed_to(&self, feed: Arc<EventFeed>) {
        let _ = self.feed.set(feed);
    }

    pub fn emit(&self, ev: Event) {
        if self.feed.get().is_some() {
            let json = ev.json(self.start.elapsed().as_secs_f64());
            self.feed_pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(json);
        }
        let mut line = match self.format {
            LogFormat::Human => ev.human(),
            LogFormat::Json => ev.json(self.start.elapsed().as_secs_f64()),
        };
        line.push('\n');
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.extend_from_slice(line.as_bytes());
            pending.len() >= FLUSH_AT
        };
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

    /// A human-format sink writing to `tx`, without its thread.
    fn human_sink(tx: mpsc::Sender<Vec<u8>>) -> EventSink {
        EventSink {
            format: LogFormat::Human,
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
        let sink = human_sink(tx);
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
        let sink = human_sink(tx);
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
}
