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
//!   `printf`, `exit`, or only `NAME=value` assignments. So
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

const SETUP: &[&str] = &[
    "cd", "export", "set", "unset", "readonly", "umask", "ulimit", "true", ":", "test", "[",
    "echo", "printf", "exit",
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

/// Every reason the script is not a single `exec`'d command, in order of
/// importance, each with the span that shows it.
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
    let commands: Vec<shell::Simple> = shell::simple_commands(toks)
        .into_iter()
        .filter(|c| !c.words.is_empty())
        .collect();
    let Some((last, before)) = commands.split_last() else {
        return out;
    };
    for c in before {
        if c.end.is_some_and(|(op, _)| op == Op::Pipe) {
            continue; // reported as a pipeline
        }
        let Some(word) = c.command_words().find_map(Tok::word) else {
            continue; // only assignments
        };
        if !SETUP.contains(&word) {
            if let Some(span) = c.span() {
                out.push((
                    span,
                    format!("runs `{word}` as a child of the shell before the program"),
                ));
            }
        }
    }
    let mut words = last.command_words().filter_map(Tok::word);
    let exec_ok = words.next() == Some("exec") && words.next().is_some();
    if !exec_ok {
        if let Some(span) = last.span() {
            let word = last.command_words().find_map(Tok::word).unwrap_or("");
            out.push((span, format!("does not `exec` its last command `{word}`")));
        }
    }
    // The last command is the most telling problem; keep the others in order.
    if !exec_ok {
        if let Some(p) = out.pop() {
            out.insert(0, p);
        }
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
    }
}
