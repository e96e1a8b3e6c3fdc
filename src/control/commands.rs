//! The control subcommands of the CLI: thin clients of the control
//! socket. Each finds the running topology, sends one request and prints
//! the answer (human text, or with `--json` the server's lines as they
//! are).
//!
//! Exit codes: 0 success; 1 the runner answered that the command was
//! refused or failed (`refused`, `failed`, `timeout`); 2 misuse, no
//! running topology, a connection or protocol failure, or any other error
//! code. `down` exits with `up`'s status.

use super::client::{Client, ClientError};
use super::paths;
use super::protocol::*;
use crate::check::fmt_duration;
use clap::Subcommand;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum ControlCommand {
    /// Show each process of a running topology and a summary per group.
    Ps(FileArgs),
    /// Print the recent output of processes; with -f, follow it.
    Logs(LogsArgs),
    /// Restart groups or processes through their stop ladders.
    Restart(RestartArgs),
    /// Stop groups (dependents first) and keep them stopped.
    Stop(GroupArgs),
    /// Start stopped groups again.
    Start(GroupArgs),
    /// Change how many processes groups run, live.
    Scale(ScaleArgs),
    /// Send a signal to groups or processes.
    Signal(SignalArgs),
    /// Re-read the topology file and apply the changes.
    Reload(FileArgs),
    /// Drain the whole topology and wait for `up` to finish.
    Down(FileArgs),
    /// Block until groups are ready (for scripts and CI).
    Wait(WaitArgs),
    /// Print lifecycle events as JSON lines; with -f, follow them.
    Events(EventsArgs),
}

#[derive(Debug, clap::Args)]
pub struct FileArgs {
    /// The topology file [default: the one .pf in this directory].
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print the runner's JSON lines (docs/control.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    /// An optional topology file (ending in .pf), then the groups.
    #[arg(value_name = "[FILE] GROUP", required = true)]
    pub args: Vec<String>,
    /// Print the runner's JSON lines (docs/control.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// An optional topology file (ending in .pf), then GROUP=COUNT.
    #[arg(value_name = "[FILE] G=N", required = true)]
    pub args: Vec<String>,
    /// Print the runner's JSON lines (docs/control.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    /// An optional topology file (ending in .pf), then GROUP or GROUP.N.
    #[arg(value_name = "[FILE] GROUP[.N]", required = true)]
    pub args: Vec<String>,
    /// One process at a time, each ready before the next.
    #[arg(long)]
    pub rolling: bool,
    /// Print the runner's JSON lines (docs/control.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SignalArgs {
    /// An optional topology file (ending in .pf), the signal (HUP or
    /// SIGHUP), then GROUP or GROUP.N.
    #[arg(value_name = "[FILE] SIG GROUP[.N]", required = true)]
    pub args: Vec<String>,
    /// Print the runner's JSON lines (docs/control.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// An optional topology file (ending in .pf), then GROUP or GROUP.N
    /// [default: every process].
    #[arg(value_name = "[FILE] GROUP[.N]")]
    pub args: Vec<String>,
    /// Keep printing new lines.
    #[arg(short, long)]
    pub follow: bool,
    /// The last N lines of each process.
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<u64>,
    /// Only lines from the last D (`30s`, `5m`).
    #[arg(long, value_name = "D")]
    pub since: Option<String>,
    /// Print the runner's JSON lines (docs/control.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// The topology file [default: the one .pf in this directory].
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Groups to wait for [default: every group].
    #[arg(long, value_name = "GROUP", num_args = 1..)]
    pub ready: Vec<String>,
    /// Fail (exit 1) after D (`30s`).
    #[arg(long, value_name = "D")]
    pub timeout: Option<String>,
    /// Print the runner's JSON lines (docs/control.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Keep printing new events.
    #[arg(short, long)]
    pub follow: bool,
    /// Print the runner's JSON lines (docs/control.md).
    #[arg(long)]
    pub json: bool,
}

/// A failure before or outside a runner's answer: the message and the
/// exit code.
struct Fail(String, i32);

fn usage(msg: impl Into<String>) -> Fail {
    Fail(msg.into(), 2)
}

/// Run a control subcommand; returns the exit code.
pub fn run(cmd: ControlCommand) -> i32 {
    match dispatch(cmd) {
        Ok(code) => code,
        Err(Fail(msg, code)) => {
            eprintln!("flowrun: {msg}");
            code
        }
    }
}

/// A leading `.pf` argument is the topology file.
fn split_file(args: &[String]) -> (Option<PathBuf>, &[String]) {
    match args.first() {
        Some(a) if a.ends_with(".pf") => (Some(PathBuf::from(a)), &args[1..]),
        _ => (None, args),
    }
}

fn targets(args: &[String]) -> Result<Vec<Target>, Fail> {
    args.iter()
        .map(|a| {
            if a.ends_with(".pf") {
                return Err(usage(format!(
                    "`{a}`: the topology file comes first, before everything else"
                )));
            }
            Target::parse(a).map_err(usage)
        })
        .collect()
}

fn groups(args: &[String]) -> Result<Vec<String>, Fail> {
    targets(args)?
        .into_iter()
        .map(|t| match t.index {
            None => Ok(t.group),
            Some(_) => Err(usage(format!(
                "`{t}`: this command takes whole groups, not processes"
            ))),
        })
        .collect()
}

fn need(args: &[String], what: &str) -> Result<(), Fail> {
    if args.is_empty() {
        Err(usage(format!("name at least one {what}")))
    } else {
        Ok(())
    }
}

fn duration(s: &str, flag: &str) -> Result<Duration, Fail> {
    match crate::parse::duration_millis(s) {
        Some(ms) if !s.is_empty() => Ok(Duration::from_millis(ms)),
        _ => Err(usage(format!(
            "{flag} {s}: expected a duration like 30s, 5m or 1m30s"
        ))),
    }
}

fn dispatch(cmd: ControlCommand) -> Result<i32, Fail> {
    match cmd {
        ControlCommand::Ps(a) => one(a.file, Request::Ps {}, a.json),
        ControlCommand::Reload(a) => one(a.file, Request::Reload {}, a.json),
        ControlCommand::Down(a) => one(a.file, Request::Down {}, a.json),
        ControlCommand::Restart(a) => {
            let (file, rest) = split_file(&a.args);
            need(rest, "group or process")?;
            let request = Request::Restart {
                targets: targets(rest)?,
                rolling: a.rolling,
            };
            one(file, request, a.json)
        }
        ControlCommand::Stop(a) => {
            let (file, rest) = split_file(&a.args);
            need(rest, "group")?;
            one(
                file,
                Request::Stop {
                    groups: groups(rest)?,
                },
                a.json,
            )
        }
        ControlCommand::Start(a) => {
            let (file, rest) = split_file(&a.args);
            need(rest, "group")?;
            one(
                file,
                Request::Start {
                    groups: groups(rest)?,
                },
                a.json,
            )
        }
        ControlCommand::Scale(a) => {
            let (file, rest) = split_file(&a.args);
            need(rest, "G=N")?;
            let counts =
                rest.iter()
                    .map(|s| {
                        let (g, n) = s
                            .split_once('=')
                            .ok_or_else(|| usage(format!("`{s}`: expected G=N, e.g. worker=4")))?;
                        let group = groups(&[g.to_string()])?.remove(0);
                        let count =
                            n.parse::<u32>().ok().filter(|&n| n >= 1).ok_or_else(|| {
                                usage(format!("`{s}`: N must be a whole number ≥ 1"))
                            })?;
                        Ok(ScaleTo { group, count })
                    })
                    .collect::<Result<Vec<_>, Fail>>()?;
            one(file, Request::Scale { counts }, a.json)
        }
        ControlCommand::Signal(a) => {
            let (file, rest) = split_file(&a.args);
            let Some((sig, rest)) = rest.split_first().filter(|(_, rest)| !rest.is_empty()) else {
                return Err(usage(
                    "expected SIG GROUP[.N]…, e.g. `flowrun signal HUP api`",
                ));
            };
            let request = Request::Signal {
                signal: sig.clone(),
                targets: targets(rest)?,
            };
            one(file, request, a.json)
        }
        ControlCommand::Wait(a) => {
            let timeout_ms = match &a.timeout {
                Some(t) => Some(duration(t, "--timeout")?.as_millis() as u64),
                None => None,
            };
            let ready = groups(&a.ready)?;
            one(a.file, Request::Wait { ready, timeout_ms }, a.json)
        }
        ControlCommand::Logs(a) => {
            let (file, rest) = split_file(&a.args);
            let since_ms = match &a.since {
                Some(s) => Some(duration(s, "--since")?.as_millis() as u64),
                None => None,
            };
            let request = Request::Logs {
                targets: targets(rest)?,
                tail: a.lines,
                since_ms,
                follow: a.follow,
            };
            stream(file, request, a.json)
        }
        ControlCommand::Events(a) => stream(a.file, Request::Events { follow: a.follow }, a.json),
    }
}

/// `running topologies: …` or `no topology is running (DIR)`.
fn running_list(dir: &Path) -> String {
    let live = paths::running(dir);
    if live.is_empty() {
        return format!("no topology is running (none in {})", dir.display());
    }
    let items: Vec<String> = live
        .iter()
        .map(|i| format!("{} (pid {})", i.topology.display(), i.pid))
        .collect();
    format!("running topologies: {}", items.join(", "))
}

/// The socket of the running topology named by `file`, or of the one
/// `.pf` in the current directory.
pub fn locate(file: Option<&Path>) -> Result<PathBuf, String> {
    let dir = paths::runtime_dir();
    let file = match file {
        Some(f) => f.to_path_buf(),
        None => {
            let mut pfs: Vec<PathBuf> = std::fs::read_dir(".")
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "pf") && p.is_file())
                        .collect()
                })
                .unwrap_or_default();
            if pfs.len() != 1 {
                pfs.sort();
                let found = if pfs.is_empty() {
                    "no .pf file here".to_string()
                } else {
                    format!("{} .pf files here", pfs.len())
                };
                return Err(format!(
                    "name the topology FILE ({found}); {}",
                    running_list(&dir)
                ));
            }
            pfs.remove(0)
        }
    };
    let canonical = file.canonicalize().map_err(|e| {
        format!(
            "cannot find {}: {}; {}",
            file.display(),
            e.kind(),
            running_list(&dir)
        )
    })?;
    let ep = paths::Endpoint::new(&dir, &canonical)?;
    match paths::liveness(&ep.lock) {
        paths::Liveness::Alive => {}
        paths::Liveness::Dead => {
            return Err(format!(
                "{} is not running; {}",
                canonical.display(),
                running_list(&dir)
            ))
        }
        // Not ours to check (another user's directory): let the
        // connection, and the runner, decide.
        paths::Liveness::Unknown(_) => {}
    }
    Ok(ep.socket)
}

fn connect(file: Option<PathBuf>) -> Result<Client, Fail> {
    let socket = locate(file.as_deref()).map_err(|m| Fail(m, 2))?;
    match Client::connect(&socket) {
        Ok((c, _)) => Ok(c),
        Err(ClientError::Refused(e)) => Err(Fail(e.message, e.code.exit_code())),
        Err(e) => Err(Fail(
            format!("cannot talk to the runner at {}: {e}", socket.display()),
            2,
        )),
    }
}

fn print(s: &str) -> Result<(), Fail> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // `flowrun logs | head`: stop quietly.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Fail(String::new(), 0)),
        Err(e) => Err(Fail(format!("cannot write output: {e}"), 2)),
    }
}

fn error_text(cmd: &str, e: &ControlError) -> String {
    let mut s = format!("{cmd}: {}", e.message);
    for d in &e.details {
        s.push_str(&format!("\n  {d}"));
    }
    s
}

/// A request with one answer.
fn one(file: Option<PathBuf>, request: Request, json: bool) -> Result<i32, Fail> {
    let name = request.name();
    let mut client = connect(file)?;
    let answer = client
        .call(request)
        .map_err(|e| Fail(format!("{name}: {e}"), 2))?;
    if json {
        let line = client.last_line.clone();
        quiet_pipe(print(&line))?;
        return Ok(match answer {
            Ok(Reply::Down { code }) => code,
            Ok(_) => 0,
            Err(e) => e.code.exit_code(),
        });
    }
    match answer {
        Ok(reply) => {
            let code = match &reply {
                Reply::Down { code } => *code,
                _ => 0,
            };
            quiet_pipe(print(&human(name, &reply)))?;
            Ok(code)
        }
        Err(e) => Err(Fail(error_text(name, &e), e.code.exit_code())),
    }
}

/// A closed stdout ends the command with status 0 and no message.
fn quiet_pipe(r: Result<(), Fail>) -> Result<(), Fail> {
    match r {
        Err(Fail(m, 0)) if m.is_empty() => Err(Fail(String::new(), 0)),
        other => other,
    }
}

/// The human text of a reply.
pub fn human(cmd: &str, reply: &Reply) -> String {
    match reply {
        Reply::Ps(ps) => ps_table(ps),
        Reply::Done { processes } => {
            let verb = match cmd {
                "restart" => "restarted",
                "stop" => "stopped",
                "start" => "started",
                "scale" => "scaled",
                "signal" => "signalled",
                other => other,
            };
            if processes.is_empty() {
                format!("{verb}: no process\n")
            } else {
                format!("{verb} {}\n", processes.join(" "))
            }
        }
        Reply::Reloaded { changed } if changed.is_empty() => "reloaded; nothing changed\n".into(),
        Reply::Reloaded { changed } => format!("reloaded; changed: {}\n", changed.join(" ")),
        Reply::Down { code } => format!("drained; up exits with status {code}\n"),
        Reply::Ready { groups } => format!("ready: {}\n", groups.join(" ")),
    }
}

/// One line per process, aligned, then one summary line per group.
pub fn ps_table(ps: &PsReply) -> String {
    let mut rows: Vec<[String; 7]> = vec![[
        "PROCESS".into(),
        "PID".into(),
        "STATE".into(),
        "RESTARTS".into(),
        "UPTIME".into(),
        "LAST EXIT".into(),
        "CPU".into(),
    ]];
    let dash = || "-".to_string();
    for p in &ps.processes {
        let state = match (p.state, p.step) {
            (ProcState::Stopping, Some(k)) => format!("stopping step {k}"),
            (ProcState::BackingOff, _) => format!("backing off (attempt {})", p.attempt),
            (s, _) => s.as_str().to_string(),
        };
        let exit = match &p.last_exit {
            None => dash(),
            Some(ExitStatus {
                signal: Some(s), ..
            }) => s.clone(),
            Some(ExitStatus { code: Some(c), .. }) => format!("exit {c}"),
            Some(_) => "?".into(),
        };
        rows.push([
            format!("{}.{}", p.group, p.index),
            p.pid.map_or_else(dash, |x| x.to_string()),
            state,
            p.restarts.to_string(),
            p.uptime_ms
                .map_or_else(dash, |ms| fmt_duration(Duration::from_secs(ms / 1000))),
            exit,
            p.cpu_ms
                .map_or_else(dash, |ms| fmt_duration(Duration::from_millis(ms))),
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    for g in &ps.groups {
        // Up: ready, or running with no ready check to pass. The ready
        // count is only said when some are.
        let mut parts = vec![format!("{}/{} up", g.ready + g.running, g.processes)];
        for (n, what) in [
            (g.ready, "ready"),
            (g.stopped, "stopped"),
            (g.failed, "failed"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if g.held {
            parts.push("held by `flowrun stop`".into());
        }
        s.push_str(&format!("{}: {}\n", g.group, parts.join(", ")));
    }
    s
}

/// A streaming request (`logs`, `events`): print until `end`.
fn stream(file: Option<PathBuf>, request: Request, json: bool) -> Result<i32, Fail> {
    let name = request.name();
    let events = matches!(request, Request::Events { .. });
    let mut client = connect(file)?;
    let id = client
        .start(request)
        .map_err(|e| Fail(format!("{name}: {e}"), 2))?;
    loop {
        let msg = client.recv().map_err(|e| Fail(format!("{name}: {e}"), 2))?;
        if json {
            let line = client.last_line.clone();
            quiet_pipe(print(&line))?;
        }
        let text = match msg {
            ServerMsg::End { id: got } if got == id => return Ok(0),
            ServerMsg::Error { error, .. } => {
                if json {
                    return Ok(error.code.exit_code());
                }
                return Err(Fail(error_text(name, &error), error.code.exit_code()));
            }
            _ if json => continue,
            ServerMsg::Log { process, line, .. } => format!("{process} | {line}\n"),
            ServerMsg::Missed {
                process: Some(p),
                count,
                ..
            } => format!("flowrun | {p} missed {count} lines\n"),
            ServerMsg::Missed { count, .. } => format!("{{\"missed\":{count}}}\n"),
            ServerMsg::Event { event, .. } if events => format!("{event}\n"),
            other => {
                return Err(Fail(
                    format!("{name}: unexpected message from the runner: {other:?}"),
                    2,
                ))
            }
        };
        quiet_pipe(print(&text))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_pf_argument_is_the_file() {
        let a: Vec<String> = vec!["x.pf".into(), "api".into()];
        let (f, rest) = split_file(&a);
        assert_eq!(f, Some(PathBuf::from("x.pf")));
        assert_eq!(rest, &a[1..]);
        let b: Vec<String> = vec!["api".into()];
        assert_eq!(split_file(&b).0, None);
    }

    #[test]
    fn ps_table_aligns_and_summarises() {
        let ps = PsReply {
            processes: vec![
                ProcessStatus {
                    group: "api".into(),
                    index: 0,
                    pid: Some(4242),
                    state: ProcState::Ready,
                    step: None,
                    restarts: 0,
                    attempt: 0,
                    uptime_ms: Some(61_500),
                    last_exit: None,
                    cpu_ms: Some(120),
                },
                ProcessStatus {
                    group: "api".into(),
                    index: 1,
                    pid: None,
                    state: ProcState::BackingOff,
                    step: None,
                    restarts: 3,
                    attempt: 2,
                    uptime_ms: None,
                    last_exit: Some(ExitStatus {
                        code: Some(1),
                        signal: None,
                    }),
                    cpu_ms: None,
                },
            ],
            groups: vec![GroupStatus {
                group: "api".into(),
                processes: 2,
                ready: 1,
                running: 0,
                stopped: 1,
                failed: 0,
                held: false,
            }],
        };
        let t = ps_table(&ps);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[1].starts_with("api.0    4242  ready"), "{t}");
        assert!(lines[1].contains("1m1s"), "{t}");
        assert!(lines[2].contains("backing off (attempt 2)"), "{t}");
        assert!(lines[2].contains("exit 1"), "{t}");
        assert_eq!(lines[3], "api: 1/2 up, 1 ready, 1 stopped");
        // Columns line up: PID starts at the same column on every row.
        let col = lines[0].find("PID").unwrap();
        assert_eq!(&lines[1][col..col + 4], "4242");
    }
}
