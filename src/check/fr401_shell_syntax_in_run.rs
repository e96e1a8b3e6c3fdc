//! FR401 shell-syntax-in-run: shell syntax in a `run` command.
//!
//! `run` splits its text into words the way a shell would and executes
//! them directly: no shell ever sees `|`, `&&`, `||`, `;`, `&`,
//! redirections (`>`, `>>`, `<`, `2>`, `2>&1`, `&>`) or expansions
//! (`$VAR`, `${VAR}`, `$(…)`, backticks); they reach the program as
//! literal arguments. The literal is lexed from the raw source text (quotes
//! respected: `'a|b'` is one plain argument, while `"$HOME"` is still an
//! expansion a shell would do), so the label points at the offending
//! characters. One finding per `run`; further offences are related labels.
//!
//! A `ready when exec "…"` command is split and run the same way, so it
//! gets the same check.

use super::shell::{self, Op, Text, Tok};
use super::Ctx;
use crate::ast::{Probe, SettingKind};
use crate::diagnostic::{Diagnostic, Label};
use crate::source::Span;

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    for gi in 0..ctx.model.groups.len() {
        if let Some((false, value, lit)) = ctx.command_literal(gi) {
            check_literal(ctx, gi, value, lit, false, out);
        }
        let exec_probe = ctx.setting(gi, |s| match &s.kind {
            SettingKind::Ready(r) => match &r.probe.node {
                Probe::Exec(cmd) => Some((cmd.as_str(), r.probe.span)),
                _ => None,
            },
            _ => None,
        });
        if let Some((value, probe)) = exec_probe {
            // The literal is the quoted part of `exec "…"`.
            let raw = ctx.source.slice(probe);
            if let Some(q) = raw.find('"') {
                let lit = Span::new(probe.start + q, probe.end);
                check_literal(ctx, gi, value, lit, true, out);
            }
        }
    }
}

fn check_literal(
    ctx: &Ctx,
    gi: usize,
    value: &str,
    lit: Span,
    ready: bool,
    out: &mut Vec<Diagnostic>,
) {
    {
        let lexed = shell::lex(&Text::from_literal(ctx.source, lit, value));
        let mut found: Vec<(Span, String)> = Vec::new();
        for t in &lexed.toks {
            match t {
                Tok::Op { op, span } if !matches!(op, Op::Newline | Op::LParen | Op::RParen) => {
                    found.push((*span, op.describe().to_string()));
                }
                Tok::Redirect { text, span } => {
                    found.push((*span, format!("a `{text}` redirection")));
                }
                _ => {}
            }
        }
        for e in &lexed.expansions {
            let what = match e.text.as_str() {
                "`" | "$(" => "a command substitution".to_string(),
                t => format!("a `{t}` expansion"),
            };
            found.push((e.span, what));
        }
        found.sort_by_key(|(s, _)| (s.start, s.end));
        let Some((first_span, first)) = found.first().cloned() else {
            return;
        };
        let name = ctx.name(gi);
        let places = if found.len() > 1 {
            format!(" ({} places)", found.len())
        } else {
            String::new()
        };
        let (message, help) = if ready {
            (
                format!("`ready when exec` in `{name}` contains {first}, but the check is not run by a shell"),
                format!("write `ready when exec \"sh -c '…'\"` to run it through /bin/sh, or remove the shell syntax{places}"),
            )
        } else {
            (
                format!("`run` in `{name}` contains {first}, but `run` is not run by a shell"),
                format!(
                    "use `sh \"exec …\"` to run it through /bin/sh (keep the `exec` so the program gets the stop signal), \
                     or remove the shell syntax{places}"
                ),
            )
        };
        let mut d = Diagnostic::new(
            "FR401",
            message,
            Label::new(first_span, "passed to the program as a literal argument"),
        )
        .with_help(help);
        for (span, what) in found.into_iter().skip(1) {
            d = d.with_related(Label::new(span, format!("also {what}")));
        }
        out.push(d);
    }
}
