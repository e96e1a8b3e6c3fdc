//! What `flowrun up` calls to run the control plane (docs/control.md)
//! beside the supervisor core: claim the socket, serve it, keep the log
//! rings registered, and carry calls between the server and the core.
//!
//! The wiring, in the OS layer's terms:
//!
//! 1. before the runtime starts: `serve::claim(&file)` (a second runner
//!    of the same file is refused here; elsewhere `up` may run without);
//! 2. inside it: `let ctl = serve::start(claimed, &plan)?;` then hand
//!    `ctl.link.logs` to the relay ([`super::logs::LogSink`]) and
//!    `ctl.link.events` to the event sink
//!    ([`super::events::EventSink::feed_to`]);
//! 3. in the loop: every `ToCore` from `ctl.calls` becomes a core message
//!    through [`Calls::accept`]; every `Effect::Reply { id, result }`
//!    goes back through [`Calls::answer`] (after [`fill_cpu`] for `ps`);
//!    after a reload or a scale, [`register`] the new plan's processes;
//! 4. at the end (after the core's `Exit`, so `down` got its answer):
//!    `ctl.server.shutdown(grace).await`.

use super::core::Msg;
use crate::control::protocol::{ControlError, Reply};
use crate::control::ring::{LogStore, ProcKey};
use crate::control::server::{self, Claimed, Limits, ServerHandle};
use crate::control::{paths, Link, ToCore};
use crate::plan::Plan;
use std::collections::HashMap;
use std::path::Path;
use tokio::sync::{mpsc, oneshot};

/// What claiming the control socket gave.
pub enum Claim {
    Served(Claimed),
    /// No control plane for this run (the runtime directory is not a
    /// private directory of ours, the socket cannot be bound, …): the
    /// topology still runs, as it does without a run record.
    Without(String),
}

/// Claim the control socket of topology file `file` in the runtime
/// directory (plain system calls: before or after the runtime starts).
/// `Err` only when a live runner of the same file holds it: a second `up`
/// of a running file is refused.
pub fn claim(file: &Path) -> Result<Claim, String> {
    let canonical = file
        .canonicalize()
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let dir = paths::runtime_dir();
    match server::claim(&dir, &canonical) {
        Ok(c) => Ok(Claim::Served(c)),
        Err(msg) => match paths::Endpoint::new(&dir, &canonical) {
            Ok(ep) if paths::is_alive(&ep.lock) => Err(msg),
            _ => Ok(Claim::Without(msg)),
        },
    }
}

/// The running control plane.
pub struct Control {
    /// What the relay and the event sink fill.
    pub link: Link,
    /// Calls and refusals for the core.
    pub calls: mpsc::Receiver<ToCore>,
    pub server: ServerHandle,
}

/// Register every process of `plan` in the rings, then serve `claimed` on
/// the current tokio runtime.
pub fn start(claimed: Claimed, plan: &Plan) -> Result<Control, String> {
    let (link, calls) = Link::new();
    register(&link.logs, plan);
    let server = server::serve(claimed, link.clone(), Limits::default())?;
    Ok(Control {
        link,
        calls,
        server,
    })
}

/// Make every process of `plan` known to the rings (readers can select a
/// process before it prints). Registering again is harmless.
pub fn register(logs: &LogStore, plan: &Plan) {
    for p in &plan.processes {
        let group = plan.topology.groups[p.group].name.node.clone();
        logs.register(ProcKey {
            group,
            index: p.index,
        });
    }
}

type Answer = oneshot::Sender<Result<Reply, ControlError>>;

/// The calls the core has not answered yet, by the id it knows them by.
#[derive(Default)]
pub struct Calls {
    next: u64,
    waiting: HashMap<u64, Answer>,
}

impl Calls {
    /// The core message for `m`; the call's reply sender is kept until
    /// [`Calls::answer`].
    pub fn accept(&mut self, m: ToCore) -> Msg {
        match m {
            ToCore::Call { request, reply, .. } => {
                self.next += 1;
                self.waiting.insert(self.next, reply);
                Msg::Control {
                    id: self.next,
                    request,
                }
            }
            ToCore::Refused { peer } => Msg::Refused {
                uid: peer.uid,
                pid: peer.pid,
            },
        }
    }

    /// Send the core's answer to call `id` (a client that hung up is
    /// simply gone). `false`: no such call is waiting.
    pub fn answer(&mut self, id: u64, result: Result<Reply, ControlError>) -> bool {
        match self.waiting.remove(&id) {
            Some(tx) => {
                let _ = tx.send(result);
                true
            }
            None => false,
        }
    }

    /// Calls not answered yet (the core answers each exactly once, so this
    /// is 0 once it has exited).
    pub fn pending(&self) -> usize {
        self.waiting.len()
    }
}

/// Fill `cpu_ms` of every process with a pid in a `ps` reply (the core
/// leaves it: CPU time is an OS fact), e.g. with [`leader_cpu_ms`].
pub fn fill_cpu(result: &mut Result<Reply, ControlError>, cpu: impl Fn(i32) -> Option<u64>) {
    if let Ok(Reply::Ps(ps)) = result {
        for p in &mut ps.processes {
            p.cpu_ms = p.pid.and_then(&cpu);
        }
    }
}

/// CPU time of process `pid` (the leader): its time on a CPU from
/// `/proc/PID/schedstat` (nanoseconds; the kernel formats three numbers,
/// where `/proc/PID/stat` costs it fifty-two), else `utime + stime` from
/// `/proc/PID/stat`; `None` when neither can be read. Three system calls
/// each (open, one read into a stack buffer, close): `ps` makes one call
/// per process on the runner's thread.
pub fn leader_cpu_ms(pid: i32) -> Option<u64> {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let mut buf = [0u8; 1024];
    if let Some(text) = read_small(&format!("/proc/{pid}/schedstat"), &mut buf) {
        if let Some(ns) = text
            .split_ascii_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
        {
            return Some(ns / 1_000_000);
        }
    }
    let ticks = *TICKS.get_or_init(|| {
        // SAFETY: sysconf reads a constant of the system; no memory is
        // passed. (nix's `sysconf` is behind a feature this crate does
        // not enable.)
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
    });
    stat_cpu_ms(&read_small(&format!("/proc/{pid}/stat"), &mut buf)?, ticks)
}

/// A short /proc file in one read (the line fits `buf`; a command cut
/// inside a UTF-8 sequence is not an error).
fn read_small<'a>(path: &str, buf: &'a mut [u8]) -> Option<std::borrow::Cow<'a, str>> {
    use std::io::Read;
    let n = std::fs::File::open(path).ok()?.read(buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]))
}

/// `utime + stime` of a `/proc/PID/stat` line in milliseconds. The
/// command (field 2) may hold spaces and parentheses: fields are counted
/// after its last `)`.
fn stat_cpu_ms(stat: &str, ticks_per_sec: u64) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After the command: state (3), ppid, pgrp, session, tty_nr, tpgid,
    // flags, minflt, cminflt, majflt, cmajflt, utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 1000 / ticks_per_sec.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::Request;
    use crate::control::Peer;

    #[test]
    fn cpu_time_is_read_after_the_command() {
        let line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(stat_cpu_ms(line, 100), Some(3000));
        assert_eq!(stat_cpu_ms("garbage", 100), None);
        // This test's own process has a readable, sane CPU time.
        let me = std::process::id() as i32;
        assert!(leader_cpu_ms(me).is_some());
    }

    #[test]
    fn calls_carry_each_answer_to_its_caller_once() {
        let mut calls = Calls::default();
        let peer = Peer {
            uid: 1,
            gid: 1,
            pid: Some(9),
        };
        let (tx, mut rx) = oneshot::channel();
        let msg = calls.accept(ToCore::Call {
            request: Request::Ps {},
            peer,
            reply: tx,
        });
        let Msg::Control { id, request } = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(request, Request::Ps {});
        assert_eq!(calls.pending(), 1);
        let done = Ok(Reply::Done {
            processes: vec!["a.0".into()],
        });
        assert!(calls.answer(id, done.clone()));
        assert!(!calls.answer(id, done.clone()), "answered twice");
        assert_eq!(rx.try_recv().unwrap(), done);
        assert_eq!(calls.pending(), 0);
        assert_eq!(
            calls.accept(ToCore::Refused { peer }),
            Msg::Refused {
                uid: 1,
                pid: Some(9)
            }
        );
    }

    /// The wiring of the module docs, with the core and a real socket: a
    /// client's `ps` and `restart` reach the core and its answers come back.
    #[test]
    fn a_client_call_reaches_the_core_and_its_answer_comes_back() {
        use crate::control::client::Client;
        use crate::exec::core::{Core, Effect, Env, Outcome};
        use std::time::Instant;
        let text = "topology t {\n group a {\n run \"a\"\n }\n}\n";
        let c = crate::compile(crate::source::SourceFile::new("t.pf", text), None);
        let plan = crate::plan::build(c.model.as_ref().unwrap(), &Default::default());
        let dir = std::env::temp_dir().join(format!("flowrun-serve-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let topology = std::env::temp_dir().join("t.pf");
        let claimed = server::claim(&dir, &topology).unwrap();
        let socket = claimed.endpoint.socket.clone();
        let (ps, restart, left) = rt.block_on(async move {
            let mut ctl = start(claimed, &plan).unwrap();
            let t0 = Instant::now();
            let mut core = Core::new(plan, Box::new(|| Err(vec![])), Env::default(), t0);
            // Start the one process as this test's own pid (for CPU time).
            let me = std::process::id() as i32;
            let mut fx = core.start(t0);
            let mut calls = Calls::default();
            let client = tokio::task::spawn_blocking(move || {
                let (mut c, _) = Client::connect(&socket).unwrap();
                let ps = c.call(Request::Ps {}).unwrap();
                let restart = c
                    .call(Request::Restart {
                        targets: vec![crate::control::protocol::Target::parse("a").unwrap()],
                        rolling: false,
                    })
                    .unwrap();
                (ps, restart)
            });
            loop {
                let mut next = Vec::new();
                for e in fx.drain(..) {
                    match e {
                        Effect::Spawn { p, gen } => next.push(Msg::Spawned {
                            p,
                            gen,
                            outcome: Outcome::Started { pid: me },
                        }),
                        // The "process" leaves at its first ladder signal.
                        Effect::Signal { p, gen, .. } => next.push(Msg::Exited {
                            p,
                            gen,
                            status: crate::exec::reap::Status::Code(0),
                            group_empty: true,
                        }),
                        Effect::Reply { id, mut result } => {
                            fill_cpu(&mut result, leader_cpu_ms);
                            assert!(calls.answer(id, result));
                        }
                        _ => {}
                    }
                }
                for m in next {
                    fx.extend(core.handle(m, Instant::now()));
                }
                if !fx.is_empty() {
                    continue;
                }
                if client.is_finished() {
                    break;
                }
                tokio::select! {
                    m = ctl.calls.recv() => {
                        let msg = calls.accept(m.expect("the server is running"));
                        fx = core.handle(msg, Instant::now());
                    }
                    _ = tokio::time::sleep(std::time::Duration::from_millis(10)) => {}
                }
            }
            let (ps, restart) = client.await.unwrap();
            let left = calls.pending();
            ctl.server.shutdown(std::time::Duration::from_secs(1)).await;
            (ps, restart, left)
        });
        let _ = std::fs::remove_dir_all(&dir);
        let Ok(Reply::Ps(ps)) = ps else {
            panic!("{ps:?}")
        };
        assert_eq!(ps.processes.len(), 1);
        assert_eq!(ps.processes[0].pid, Some(std::process::id() as i32));
        assert!(ps.processes[0].cpu_ms.is_some(), "{ps:?}");
        assert_eq!(
            restart,
            Ok(Reply::Done {
                processes: vec!["a.0".into()]
            })
        );
        assert_eq!(left, 0);
    }

    #[test]
    fn every_process_of_the_plan_is_registered() {
        let c = crate::compile(
            crate::source::SourceFile::new(
                "t.pf",
                "topology t {\n group a {\n run \"a\"\n processes 2\n }\n group b {\n run \"b\"\n }\n}\n",
            ),
            None,
        );
        let plan = crate::plan::build(c.model.as_ref().unwrap(), &Default::default());
        let logs = LogStore::new(1024);
        register(&logs, &plan);
        let names: Vec<String> = logs.processes().iter().map(|k| k.to_string()).collect();
        assert_eq!(names, ["a.0", "a.1", "b.0"]);
    }
}
