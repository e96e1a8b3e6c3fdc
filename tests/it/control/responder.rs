//! `TestCore`: a TEST STAND-IN for the supervisor core, answering the
//! control server's calls from a fixed, fake topology. It exists to test
//! the transport (socket, credentials, bounds, serialisation, streams),
//! not the commands: nothing here starts, stops or signals a process.
//!
//! It runs the real server ([`flowrun::control::server`]) on a
//! current-thread tokio runtime in its own thread, as the runner would,
//! and handles every call in its own task (so that the server, not the
//! responder, is what serialises calls on one group). Calls are recorded
//! in a journal: `begin restart api`, `end restart api`, `refused 65534`…
//! Also used by bench/control_ps.rs.
#![allow(dead_code)]

use flowrun::control::protocol::*;
use flowrun::control::ring::{EventFeed, LogStore, ProcKey};
use flowrun::control::server::{self, Limits};
use flowrun::control::{Link, ToCore};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The fake topology and the stand-in's behaviour.
#[derive(Clone, Debug)]
pub struct Fake {
    /// Groups and their process counts.
    pub groups: Vec<(String, u32)>,
    /// How long a `restart` takes.
    pub restart_takes: Duration,
    /// Bound of each process's log ring.
    pub ring_bytes: usize,
    pub limits: Limits,
}

impl Default for Fake {
    fn default() -> Fake {
        Fake {
            groups: vec![("api".into(), 2), ("web".into(), 1)],
            restart_takes: Duration::from_millis(300),
            ring_bytes: flowrun::control::ring::DEFAULT_RING_BYTES,
            limits: Limits::default(),
        }
    }
}

pub struct TestCore {
    pub socket: PathBuf,
    pub logs: Arc<LogStore>,
    pub events: Arc<EventFeed>,
    pub journal: Arc<Mutex<Vec<String>>>,
    pub connections: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestCore {
    /// Claim the socket of `topology` in `dir` and serve it; `Err` is the
    /// claim's error (e.g. another live server holds the lock).
    pub fn start(dir: &Path, topology: &Path, fake: Fake) -> Result<TestCore, String> {
        let claimed = server::claim(dir, &topology.canonicalize().map_err(|e| e.to_string())?)?;
        let socket = claimed.endpoint.socket.clone();
        let (link, rx) = Link::new();
        let link = Link {
            logs: Arc::new(LogStore::new(fake.ring_bytes)),
            ..link
        };
        for (g, n) in &fake.groups {
            for index in 0..*n {
                link.logs.register(ProcKey {
                    group: g.clone(),
                    index,
                });
            }
        }
        let journal = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (logs, events) = (link.logs.clone(), link.events.clone());
        let j = journal.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let limits = fake.limits.clone();
                let handle = server::serve(claimed, link.clone(), limits).expect("serve");
                let _ = ready_tx.send(handle.connection_counter());
                tokio::select! {
                    _ = respond(rx, link, fake, j) => {}
                    _ = stopped => {}
                }
                handle.shutdown(Duration::from_secs(2)).await;
            });
        });
        let connections = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the test server did not start".to_string())?;
        Ok(TestCore {
            socket,
            logs,
            events,
            journal,
            connections,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn journal(&self) -> Vec<String> {
        self.journal.lock().unwrap().clone()
    }

    /// Shut the server down (streams get `end`) and join its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestCore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn note(j: &Mutex<Vec<String>>, s: String) {
    j.lock().unwrap().push(s);
}

async fn respond(
    mut rx: tokio::sync::mpsc::Receiver<ToCore>,
    link: Link,
    fake: Fake,
    journal: Arc<Mutex<Vec<String>>>,
) {
    let fake = Arc::new(fake);
    while let Some(msg) = rx.recv().await {
        match msg {
            ToCore::Refused { peer } => {
                note(&journal, format!("refused {}", peer.uid));
                link.events.push([format!(
                    r#"{{"event":"control-refused","t":0.0,"uid":{}}}"#,
                    peer.uid
                )]);
            }
            ToCore::Call { request, reply, .. } => {
                let (fake, journal) = (fake.clone(), journal.clone());
                tokio::spawn(async move {
                    let answer = answer(request, &fake, &journal).await;
                    let _ = reply.send(answer);
                });
            }
        }
    }
}

fn check_groups<'a>(fake: &Fake, names: impl Iterator<Item = &'a str>) -> Result<(), ControlError> {
    for n in names {
        if !fake.groups.iter().any(|(g, _)| g == n) {
            return Err(ControlError::new(
                ErrorCode::UnknownGroup,
                format!("no group `{n}` in this topology"),
            )
            .with_details(fake.groups.iter().map(|(g, _)| g.clone()).collect()));
        }
    }
    Ok(())
}

fn processes_of(fake: &Fake, targets: &[Target]) -> Vec<String> {
    let mut out = Vec::new();
    for t in targets {
        let n = fake
            .groups
            .iter()
            .find(|(g, _)| *g == t.group)
            .map_or(0, |g| g.1);
        match t.index {
            Some(i) => out.push(format!("{}.{i}", t.group)),
            None => out.extend((0..n).map(|i| format!("{}.{i}", t.group))),
        }
    }
    out
}

/// A `ps` of the fake topology: every process ready.
pub fn fake_ps(fake: &Fake) -> PsReply {
    let mut processes = Vec::new();
    let mut groups = Vec::new();
    let mut pid = 1000;
    for (g, n) in &fake.groups {
        for index in 0..*n {
            pid += 1;
            processes.push(ProcessStatus {
                group: g.clone(),
                index,
                pid: Some(pid),
                state: ProcState::Ready,
                step: None,
                restarts: 0,
                attempt: 0,
                uptime_ms: Some(12_000),
                last_exit: None,
                cpu_ms: Some(30),
            });
        }
        groups.push(GroupStatus {
            group: g.clone(),
            processes: *n,
            ready: *n,
            running: 0,
            stopped: 0,
            failed: 0,
            held: false,
        });
    }
    PsReply { processes, groups }
}

async fn answer(
    request: Request,
    fake: &Fake,
    journal: &Mutex<Vec<String>>,
) -> Result<Reply, ControlError> {
    match request {
        Request::Ps {} => Ok(Reply::Ps(fake_ps(fake))),
        Request::Restart { targets, .. } => {
            check_groups(fake, targets.iter().map(|t| t.group.as_str()))?;
            let what: Vec<String> = targets.iter().map(ToString::to_string).collect();
            note(journal, format!("begin restart {}", what.join(" ")));
            tokio::time::sleep(fake.restart_takes).await;
            note(journal, format!("end restart {}", what.join(" ")));
            Ok(Reply::Done {
                processes: processes_of(fake, &targets),
            })
        }
        Request::Signal { signal, targets } => {
            check_groups(fake, targets.iter().map(|t| t.group.as_str()))?;
            note(journal, format!("signal {signal}"));
            Ok(Reply::Done {
                processes: processes_of(fake, &targets),
            })
        }
        Request::Stop { groups } | Request::Start { groups } => {
            check_groups(fake, groups.iter().map(String::as_str))?;
            let targets: Vec<Target> = groups
                .into_iter()
                .map(|group| Target { group, index: None })
                .collect();
            Ok(Reply::Done {
                processes: processes_of(fake, &targets),
            })
        }
        Request::Scale { counts } => {
            check_groups(fake, counts.iter().map(|c| c.group.as_str()))?;
            match counts.iter().find(|c| c.count > 100) {
                Some(c) => Err(ControlError::new(
                    ErrorCode::Refused,
                    format!("scaling {} to {} breaks a lint rule", c.group, c.count),
                )
                .with_details(vec!["error[FR204] (stand-in finding)".into()])),
                None => Ok(Reply::Done { processes: vec![] }),
            }
        }
        Request::Reload {} => {
            note(journal, "reload".into());
            Ok(Reply::Reloaded { changed: vec![] })
        }
        Request::Down {} => Ok(Reply::Down { code: 0 }),
        Request::Wait { ready, .. } => {
            check_groups(fake, ready.iter().map(String::as_str))?;
            // The stand-in never considers `web` ready: the server's
            // timeout is what answers.
            if ready.iter().any(|g| g == "web") {
                std::future::pending::<()>().await;
            }
            Ok(Reply::Ready { groups: ready })
        }
        Request::Logs { .. } | Request::Events { .. } => Err(ControlError::new(
            ErrorCode::Internal,
            "logs and events are served by the server, never sent to the core",
        )),
    }
}
