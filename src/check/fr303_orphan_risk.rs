//! FR303 orphan-risk: processes that can outlive the runner.
//!
//! Fires on `die-with-parent no`, and on a command that backgrounds or
//! daemonizes itself, found by lexing the literal (see [`super::shell`]):
//! - in `sh` scripts, a background `&` (not `&&`, not `&>`/`>&`);
//! - a command word (after `NAME=value` assignments and wrappers such as
//!   `exec`, `env`, `nice`, `sudo`, `timeout`, `chpst`, `setpriv`, with
//!   their options *and the options' arguments*: `sudo -u www nohup x`
//!   finds `nohup`) that is `nohup`, `setsid`, `daemonize` or
//!   `start-stop-daemon`;
//! - a `--daemon`, `--daemonize`, `--detach`, `--background` or `--fork`
//!   flag, or its single-dash form (`-daemon`, as Kafka's scripts take),
//!   unless its value says no (`--daemonize no`, `--daemon=false`) or a
//!   foreground flag keeps the program attached (`--no-detach`,
//!   `--foreground`, `--nodaemon`, …);
//! - a subcommand that detaches and returns: `ray start` without
//!   `--block`, `celery multi start`;
//! - `-d` (alone or in a short cluster like `-itd`) only for
//!   `docker`/`podman`/`nerdctl`, and only among the CLI's own options:
//!   before the image of `run`/`create` or the container of `exec` (after
//!   it, `-d` is the inner program's: `compose exec -T db psql -d app`);
//!   elsewhere `-d` and `-D` mean too many other things to be reported;
//! - the same inside a nested `sh -c 'SCRIPT'` (or `bash -c`, …), reported
//!   on the script's word.

use super::shell::{self, Op, Text, Tok};
use super::Ctx;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::GroupId;
use crate::source::Span;

const DAEMONIZERS: &[&str] = &["nohup", "setsid", "daemonize", "start-stop-daemon"];
/// Programs that run the rest of their arguments as a command: each with
/// the options that take an argument (written as the next word) and how
/// many positional arguments come before the command (`timeout 1h cmd`).
const WRAPPERS: &[(&str, &[&str], usize)] = &[
    ("exec", &["-a"], 0),
    ("command", &[], 0),
    ("builtin", &[], 0),
    (
        "env",
        &["-u", "--unset", "-C", "--chdir", "-S", "--split-string"],
        0,
    ),
    ("nice", &["-n", "--adjustment"], 0),
    (
        "ionice",
        &[
            "-c",
            "--class",
            "-n",
            "--classdata",
            "-p",
            "--pid",
            "-P",
            "--pgid",
            "-u",
            "--uid",
        ],
        0,
    ),
    (
        "sudo",
        &[
            "-u",
            "--user",
            "-g",
            "--group",
            "-C",
            "--close-from",
            "-D",
            "--chdir",
            "-h",
            "--host",
            "-p",
            "--prompt",
            "-r",
            "--role",
            "-t",
            "--type",
            "-T",
            "--command-timeout",
            "-U",
            "--other-user",
            "-R",
            "--chroot",
        ],
        0,
    ),
    ("doas", &["-u", "-C"], 0),
    (
        "runuser",
        &[
            "-u",
            "--user",
            "-g",
            "--group",
            "-G",
            "--supp-group",
            "-w",
            "--whitelist-environment",
        ],
        0,
    ),
    ("time", &["-f", "--format", "-o", "--output"], 0),
    ("timeout", &["-s", "--signal", "-k", "--kill-after"], 1),
    (
        "stdbuf",
        &["-i", "--input", "-o", "--output", "-e", "--error"],
        0,
    ),
    ("chrt", &[], 1),
    ("taskset", &[], 1),
    (
        "chpst",
        &[
            "-u", "-U", "-b", "-e", "-/", "-C", "-n", "-l", "-L", "-m", "-d", "-o", "-p", "-f",
            "-c", "-r", "-t",
        ],
        0,
    ),
    (
        "setpriv",
        &[
            "--reuid",
            "--regid",
            "--ruid",
            "--rgid",
            "--euid",
            "--egid",
            "--groups",
            "--inh-caps",
            "--ambient-caps",
            "--bounding-set",
            "--securebits",
            "--pdeathsig",
            "--selinux-label",
            "--apparmor-profile",
            "--landlock-access",
            "--landlock-rule",
            "--seccomp-filter",
        ],
        0,
    ),
];
/// Daemon flags, with two dashes or (as Kafka's scripts take them) one.
const DAEMON_FLAGS: &[&str] = &[
    "--daemon",
    "--daemonize",
    "--detach",
    "--background",
    "--fork",
    "-daemon",
    "-daemonize",
    "-detach",
    "-background",
];
/// Options of `docker run`/`exec`/`create` (and podman's, nerdctl's, and
/// the global and `compose` ones) that take the next word as their value.
const CONTAINER_OPTS_WITH_ARG: &[&str] = &[
    "-e",
    "--env",
    "--env-file",
    "-v",
    "--volume",
    "-p",
    "--publish",
    "-w",
    "--workdir",
    "-u",
    "--user",
    "-l",
    "--label",
    "-h",
    "--hostname",
    "--name",
    "--network",
    "--net",
    "--entrypoint",
    "--mount",
    "-m",
    "--memory",
    "--cpus",
    "--restart",
    "--platform",
    "--pull",
    "--add-host",
    "--device",
    "--log-driver",
    "--log-opt",
    "--cap-add",
    "--cap-drop",
    "--ulimit",
    "--shm-size",
    "--gpus",
    "--runtime",
    "--tmpfs",
    "--dns",
    "-a",
    "--attach",
    "--detach-keys",
    "--user-ns",
    "--pid",
    "--ipc",
    "--uts",
    "--security-opt",
    "--stop-signal",
    "--stop-timeout",
    "--health-cmd",
    "--label-file",
    "--link",
    "--expose",
    "--group-add",
    "--cidfile",
    "-f",
    "--file",
    "--project-name",
    "--project-directory",
    "--profile",
    "-H",
    "--host",
    "--config",
    "--context",
    "--log-level",
    "-c",
    "--index",
    "--pod",
];
const NEGATIVE: &[&str] = &["no", "false", "0", "off"];
const CONTAINER_CLIS: &[&str] = &["docker", "podman", "nerdctl"];
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ash", "ksh"];

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    for (gi, g) in ctx.model.groups.iter().enumerate() {
        let name = ctx.name(gi);
        if !g.die_with_parent {
            // The whole `die-with-parent no` statement.
            let span = ctx
                .setting(gi, |s| {
                    matches!(s.kind, crate::ast::SettingKind::DieWithParent(_)).then_some(s.span)
                })
                .or(g.die_with_parent_span)
                .unwrap_or_else(|| ctx.name_span(gi));
            out.push(
                Diagnostic::new(
                    "FR303",
                    format!("`{name}` keeps running if the runner dies (`die-with-parent no`)"),
                    Label::new(span, "these processes are orphaned when the runner is killed"),
                )
                .with_help("remove `die-with-parent no`: if the runner is SIGKILLed or crashes, nothing would stop these processes"),
            );
        }
        command(ctx, gi, out);
    }
}

fn command(ctx: &Ctx, g: GroupId, out: &mut Vec<Diagnostic>) {
    let Some((is_sh, value, lit)) = ctx.command_literal(g) else {
        return;
    };
    let lexed = shell::lex(&Text::from_literal(ctx.source, lit, value));
    let name = ctx.name(g);
    let mut push = |span: Span, what: String, label: &str| {
        out.push(
            Diagnostic::new(
                "FR303",
                format!("`{name}` {what}: the runner loses track of the process, and it can outlive the topology"),
                Label::new(span, label),
            )
            .with_help("run the program in the foreground (drop the `&`, `nohup`, `setsid` or daemon flag) so the runner supervises, stops and reaps it"),
        );
    };
    scan(&lexed.toks, is_sh, 0, &mut push);
}

/// Report every backgrounding or daemonizing construct in `toks`, a shell
/// script when `is_sh`, else one command without a shell. A nested
/// `sh -c 'SCRIPT'` (or bash, dash, …) is scanned too, its findings placed
/// on the script's word.
fn scan(toks: &[Tok], is_sh: bool, depth: u8, push: &mut dyn FnMut(Span, String, &str)) {
    if is_sh {
        for t in toks {
            if let Tok::Op { op: Op::Amp, span } = t {
                push(
                    *span,
                    "runs a command in the background with `&`".into(),
                    "backgrounded here",
                );
            }
        }
    }
    let commands = if is_sh {
        shell::simple_commands(toks)
    } else {
        // `run` has no shell: every word belongs to one command.
        let words: Vec<&Tok> = toks.iter().filter(|t| t.word().is_some()).collect();
        vec![shell::Simple { words, end: None }]
    };
    for cmd in &commands {
        let words: Vec<(&str, Span)> = cmd
            .command_words()
            .filter_map(|t| t.word().map(|w| (w, t.span())))
            .collect();
        let i = skip_wrappers(&words);
        let Some(&(cmd_word, cmd_span)) = words.get(i) else {
            continue;
        };
        let base = shell::basename(cmd_word);
        if DAEMONIZERS.contains(&base) {
            push(
                cmd_span,
                format!("starts its program through `{base}`"),
                "made to outlive the runner",
            );
            continue;
        }
        let args = &words[i + 1..];
        if SHELLS.contains(&base) && depth < 2 {
            // `sh -c SCRIPT`, also `-ec`, `-lc`: the script is the next word.
            let script = args
                .iter()
                .position(|a| is_c_flag(a.0))
                .and_then(|k| args.get(k + 1));
            if let Some(&(script, span)) = script {
                let inner = shell::lex(&Text::plain(script, span));
                scan(&inner.toks, true, depth + 1, push);
                continue;
            }
        }
        let container = CONTAINER_CLIS.contains(&base);
        // For a container CLI, the words after the image (or the `exec`
        // target) belong to the program inside: `psql -d app` is no detach.
        let args = if container {
            &args[..container_target(args)]
        } else {
            args
        };
        // Programs that detach unless told otherwise, by subcommand.
        if let Some(what) = detaching_subcommand(base, args) {
            push(cmd_span, what, "detaches");
            continue;
        }
        // A later flag that keeps the program in the foreground cancels a
        // daemon flag (`rsync --daemon --no-detach`, `freshclam --daemon
        // --foreground`): the standard container forms.
        if args.iter().any(|a| FOREGROUND_FLAGS.contains(&a.0)) {
            continue;
        }
        for (k, &(w, span)) in args.iter().enumerate() {
            let (flag, value) = match w.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (w, None),
            };
            if DAEMON_FLAGS.contains(&flag) || (container && is_detach_cluster(w)) {
                let value = value.or_else(|| args.get(k + 1).map(|a| a.0));
                if value.is_some_and(|v| NEGATIVE.contains(&v.to_ascii_lowercase().as_str())) {
                    continue;
                }
                push(
                    span,
                    format!("passes `{w}`, so `{base}` daemonizes itself"),
                    "daemon flag",
                );
            }
        }
    }
}

/// Flags that keep a program in the foreground whatever else it is told.
const FOREGROUND_FLAGS: &[&str] = &[
    "--foreground",
    "--no-detach",
    "--nodetach",
    "--no-daemon",
    "--nodaemon",
    "--no-fork",
    "--nofork",
    "-foreground",
];

/// A program whose subcommand starts detached processes and returns:
/// `ray start` without `--block`, `celery multi start|restart`. The
/// message, if so.
fn detaching_subcommand(base: &str, args: &[(&str, Span)]) -> Option<String> {
    let words: Vec<&str> = args.iter().map(|a| a.0).collect();
    match base {
        "ray" if words.first() == Some(&"start") && !words.contains(&"--block") => Some(
            "runs `ray start` without `--block`, which starts Ray's processes in the background and returns".to_string(),
        ),
        "celery"
            if words
                .windows(2)
                .any(|w| w[0] == "multi" && matches!(w[1], "start" | "restart")) =>
        {
            Some("runs `celery multi`, which starts detached workers and returns".to_string())
        }
        _ => None,
    }
}

/// The index of the first word after the wrappers at the start of
/// `words` (`sudo -u www nohup x` → `nohup`), skipping their options, the
/// options' arguments, `NAME=value` words and leading positionals.
fn skip_wrappers(words: &[(&str, Span)]) -> usize {
    let mut i = 0;
    while let Some(&(_, with_arg, positionals)) = words.get(i).and_then(|w| {
        WRAPPERS
            .iter()
            .find(|(name, _, _)| *name == shell::basename(w.0))
    }) {
        i += 1;
        while let Some(&(w, _)) = words.get(i) {
            if w == "--" {
                i += 1;
                break;
            }
            if with_arg.contains(&w) {
                i += 2;
            } else if w.starts_with('-') && w.len() > 1 || w.contains('=') {
                i += 1;
            } else {
                break;
            }
        }
        i += positionals;
    }
    i.min(words.len())
}

/// How many of a container CLI's arguments are its own: those before the
/// image of `run`/`create` or the container of `exec` (`docker compose
/// exec -T db psql -d app` → `compose exec -T db`); all of them for other
/// subcommands (`compose up -d`).
fn container_target(args: &[(&str, Span)]) -> usize {
    let mut k = 0;
    let mut runs = false;
    while let Some(&(w, _)) = args.get(k) {
        if CONTAINER_OPTS_WITH_ARG.contains(&w) {
            k += 2;
            continue;
        }
        if w.starts_with('-') {
            k += 1;
            continue;
        }
        if runs {
            // The image, container or service: what follows is the program's.
            return k + 1;
        }
        match w {
            "run" | "exec" | "create" => runs = true,
            "compose" | "container" => {}
            _ => return args.len(),
        }
        k += 1;
    }
    args.len()
}

/// `-c`, `-ec`, `-lc`, `-xc`: a shell's "run this script" option.
fn is_c_flag(w: &str) -> bool {
    w.strip_prefix('-').is_some_and(|r| {
        !r.is_empty()
            && !r.starts_with('-')
            && r.ends_with('c')
            && r.chars().all(|c| c.is_ascii_alphabetic())
    })
}

/// `-d`, `-itd`, `-dp`: a short-option cluster containing `d`.
fn is_detach_cluster(w: &str) -> bool {
    let Some(rest) = w.strip_prefix('-') else {
        return false;
    };
    !rest.starts_with('-')
        && (1..=5).contains(&rest.len())
        && rest.chars().all(|c| c.is_ascii_alphabetic())
        && rest.contains('d')
}
