//! FR402 shell-swallows-stop: an `sh` script stopped `to leader` whose
//! program is not `exec`'d.
//!
//! With `to leader` (the default), the stop signal goes to the process
//! flowrun started: for `sh "…"` that is `/bin/sh`. Unless the script ends
//! by `exec`-ing its program, the shell is still the leader, it dies (or
//! waits) on SIGTERM, and its children get nothing until the SIGKILL at
//! the deadline.
//!
//! The script is lexed (see [`super::shell`]) and is accepted when:
//! - its last command is `exec PROGRAM …` (`exec` with only redirections
//!   does not replace the shell and does not count);
//! - it has no pipeline `|`, no background `&` and no `( … )` subshell;
//! - every command before the last is a quick built-in that finishes
//!   before the program starts: `cd`, `export`, `set`, `unset`,
//!   `readonly`, `umask`, `ulimit`, `true`, `:`, `test`/`[`, `echo`,
//!   `printf`, `exit`, `trap`, `.`/`source`, `shift`, `local`, `hash`,
//!   `wait`, or only `NAME=value` assignments;
//! - `if … fi` and `case … esac` are understood: when the script ends with
//!   one, the last command of every branch must `exec` (or `exit`), and
//!   the conditions count as commands before the program. Reserved words
//!   (`then`, `fi`, `esac`, `done`, …) are never commands; a script that
//!   ends in a `while`/`until`/`for` loop keeps the shell as the leader. So
//!   `cd app && exec gunicorn …` is fine; `python migrate.py && exec
//!   gunicorn …` is not (a stop during the migration reaches only the
//!   shell).
//!
//! One finding per group; the first problem is the primary label, the
//! others are related labels.

use super::shell::{self, Op, Text, Tok};
use super::Ctx;
use crate::ast::StopTarget;
use crate::diagnostic::{Diagnostic, Label};
use crate::model::Command;
use crate::source::Span;

/// Built-ins that finish at once, in the shell itself (no child).
const SETUP: &[&str] = &[
    "cd", "export", "set", "unset", "readonly", "umask", "ulimit", "true", ":", "test", "[",
    "echo", "printf", "exit", "trap", ".", "source", "shift", "local", "hash", "wait",
];

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    for (gi, g) in ctx.model.groups.iter().enumerate() {
        if g.stop.target != StopTarget::Leader || !matches!(g.command.node, Command::Sh { .. }) {
            continue;
        }
        let Some((true, value, lit)) = ctx.command_literal(gi) else {
            continue;
        };
        let lexed = shell::lex(&Text::from_literal(ctx.source, lit, value));
        let problems = problems(&lexed.toks);
        let Some(((span, first), rest)) = problems.split_first() else {
            continue;
        };
        let name = ctx.name(gi);
        let sig = g
            .stop
            .steps
            .first()
            .map_or("SIGTERM".to_string(), |s| s.signal.to_string());
        let mut d = Diagnostic::new(
            "FR402",
            format!("the `sh` script of `{name}` {first}: {sig} goes to the shell, not to the program"),
            Label::new(*span, "the shell stays the process group leader"),
        )
        .with_help(format!(
            "end the script with `exec PROGRAM …` so the program replaces the shell (setup like `cd dir &&` may come first), \
             or send the stop to every process with `stop {sig} drain … to group`"
        ));
        for (span, what) in rest {
            d = d.with_related(Label::new(*span, format!("also: {what}")));
        }
        out.push(d);
    }
}

/// Words that open, divide or close a compound command; they run nothing.
const RESERVED: &[&str] = &[
    "if", "then", "elif", "else", "fi", "case", "esac", "while", "until", "for", "do", "done", "{",
    "}", "!",
];

/// One simple command with its compound-command context.
struct Unit<'a> {
    cmd: &'a shell::Simple<'a>,
    /// The command's words after leading reserved words.
    words: Vec<&'a Tok>,
    /// Which top-level construct (command, `if`, `case`, loop) it is in.
    construct: usize,
    /// The last command of its branch (before `else`, `elif`, `fi`, `;;`,
    /// `esac`, or the end of the script).
    branch_final: bool,
    /// Inside an `if` or `case`.
    in_branch: bool,
}

/// Every reason the script is not a single `exec`'d command, in order of
/// importance, each with the span that shows it. `if` and `case` are
/// understood: a script whose every branch ends in `exec` is fine.
fn problems(toks: &[Tok]) -> Vec<(Span, String)> {
    let mut out = Vec::new();
    for t in toks {
        if let Tok::Op { op, span } = t {
            match op {
                Op::Pipe => out.push((*span, "runs a pipeline".to_string())),
                Op::Amp => out.push((*span, "runs a command in the background".to_string())),
                Op::LParen => out.push((*span, "runs a subshell".to_string())),
                _ => {}
            }
        }
    }
    let commands = shell::simple_commands(toks);
    let mut units: Vec<Unit> = Vec::new();
    // Open compound commands: `if`, `case`, or a loop.
    let mut stack: Vec<&str> = Vec::new();
    let mut construct = 0;
    let mut loops: Vec<(usize, Span, &str)> = Vec::new();
    for cmd in &commands {
        let mut words: Vec<&Tok> = cmd.words.clone();
        let mut ends_branch = false;
        while let Some(w) = words.first().and_then(|t| t.word()) {
            if !RESERVED.contains(&w) || matches!(words[0], Tok::Word { quoted: true, .. }) {
                break;
            }
            let span = words[0].span();
            words.remove(0);
            match w {
                "if" | "case" => stack.push(w),
                "while" | "until" | "for" => {
                    stack.push("loop");
                    loops.push((construct, span, w));
                }
                "fi" | "esac" | "done" => {
                    stack.pop();
                    ends_branch = true;
                }
                "elif" | "else" => ends_branch = true,
                _ => {}
            }
        }
        if ends_branch {
            if let Some(prev) = units.last_mut() {
                prev.branch_final = true;
            }
        }
        let in_case = stack.last() == Some(&"case");
        // `case WORD in`, `for NAME in …`: headers, not commands.
        let header = words.iter().any(|t| t.word() == Some("in"))
            && cmd
                .words
                .first()
                .and_then(|t| t.word())
                .is_some_and(|w| w == "case" || w == "for");
        // `pattern)` inside a `case`.
        let pattern = in_case && cmd.end.is_some_and(|(op, _)| op == Op::RParen);
        // `;;` ends a case branch: an empty command ended by `;`.
        if in_case && cmd.words.is_empty() && cmd.end.is_some_and(|(op, _)| op == Op::Semi) {
            if let Some(prev) = units.last_mut() {
                prev.branch_final = true;
            }
        }
        if !(header || pattern || words.is_empty()) {
            units.push(Unit {
                cmd,
                words,
                construct,
                branch_final: false,
                in_branch: !stack.is_empty(),
            });
        }
        if stack.is_empty() {
            construct += 1;
        }
    }
    if let Some(last) = units.last_mut() {
        last.branch_final = true;
    }
    let last_construct = units.last().map_or(0, |u| u.construct);
    let loop_last = loops.iter().find(|l| l.0 == last_construct);
    let mut last_problem =
        loop_last.map(|&(_, span, kw)| (span, format!("ends in a `{kw}` loop run by the shell")));
    for u in &units {
        if u.cmd.end.is_some_and(|(op, _)| op == Op::Pipe) {
            continue; // reported as a pipeline
        }
        let mut cw = u
            .words
            .iter()
            .copied()
            .skip_while(|w| matches!(w, Tok::Word { assign: true, .. }))
            .filter_map(Tok::word);
        let Some(word) = cw.next() else {
            continue; // only assignments
        };
        let execs = word == "exec" && cw.next().is_some();
        let span = u.words[0].span().join(u.words[u.words.len() - 1].span());
        if u.branch_final && u.construct == last_construct && loop_last.is_none() {
            if !execs && word != "exit" {
                let what = if u.in_branch {
                    format!("does not `exec` `{word}`, the last command of a branch")
                } else {
                    format!("does not `exec` its last command `{word}`")
                };
                last_problem.get_or_insert((span, what));
            }
        } else if !execs && !SETUP.contains(&word) {
            // `read` and `eval` run in the shell itself, but may take long.
            let how = if matches!(word, "read" | "eval") {
                "in the shell"
            } else {
                "as a child of the shell"
            };
            out.push((span, format!("runs `{word}` {how} before the program")));
        }
    }
    // The last command is the most telling problem; keep the others in order.
    if let Some(p) = last_problem {
        out.insert(0, p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Span;

    fn reasons(script: &str) -> Vec<String> {
        let lexed = shell::lex(&Text::plain(script, Span::new(0, 1)));
        problems(&lexed.toks).into_iter().map(|p| p.1).collect()
    }

    #[test]
    fn single_exec_is_fine() {
        assert!(reasons("exec pytest -x tests").is_empty());
        assert!(reasons("A=1 B=2 exec env").is_empty());
        assert!(reasons("cd app && exec gunicorn app:wsgi\n").is_empty());
        assert!(reasons("export X=1; exec foo >/dev/null 2>&1").is_empty());
        assert!(reasons("exec foo '|' 'a;b'").is_empty());
    }

    #[test]
    fn anything_else_is_reported() {
        assert_eq!(
            reasons("gunicorn app"),
            ["does not `exec` its last command `gunicorn`"]
        );
        assert_eq!(reasons("python m.py && exec gunicorn").len(), 1);
        assert_eq!(reasons("exec a | b").len(), 2);
        assert_eq!(
            reasons("exec 2>&1"),
            ["does not `exec` its last command `exec`"]
        );
        assert_eq!(
            reasons("a & exec b"),
            [
                "runs a command in the background",
                "runs `a` as a child of the shell before the program"
            ]
        );
        assert!(!reasons("(exec a)").is_empty());
        assert_eq!(
            reasons("trap 'x' TERM; . ./env.sh; while true; do app; done"),
            [
                "ends in a `while` loop run by the shell",
                "runs `app` as a child of the shell before the program"
            ]
        );
    }

    #[test]
    fn builtins_are_not_children() {
        assert_eq!(
            reasons("read -r line; exec app"),
            ["runs `read` in the shell before the program"]
        );
    }

    #[test]
    fn branches_that_all_exec_are_one_exec() {
        assert!(reasons("trap '' HUP; . ./env; exec app").is_empty());
        assert!(reasons("if [ -n \"$W\" ]; then exec worker; else exec web; fi").is_empty());
        assert!(reasons(
            "if [ -f a ]\nthen\n  cd a\n  exec x\nelif [ -f b ]; then exec y\nelse\n  exit 1\nfi\n"
        )
        .is_empty());
        assert!(reasons(
            "case \"$MODE\" in\n  web) exec gunicorn ;;\n  *) exec celery worker ;;\nesac"
        )
        .is_empty());
        assert!(reasons("if [ -z \"$X\" ]; then echo no; fi; exec app").is_empty());
        assert_eq!(
            reasons("if [ -f a ]; then exec x; else run-y; fi"),
            ["does not `exec` `run-y`, the last command of a branch"]
        );
        assert_eq!(
            reasons("case $M in a) exec x;; b) y;; esac"),
            ["does not `exec` `y`, the last command of a branch"]
        );
        assert_eq!(
            reasons("if pg_isready; then exec app; fi"),
            ["runs `pg_isready` as a child of the shell before the program"]
        );
    }
}
