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

use super::shell::{self, Op, Text, Tok};
use super::Ctx;
use crate::diagnostic::{Diagnostic, Label};
use crate::source::Span;

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    for gi in 0..ctx.model.groups.len() {
        let Some((false, value, lit)) = ctx.command_literal(gi) else {
            continue;
        };
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
            continue;
        };
        let name = ctx.name(gi);
        let mut d = Diagnostic::new(
            "FR401",
            format!("`run` in `{name}` contains {first}, but `run` is not run by a shell"),
            Label::new(first_span, "passed to the program as a literal argument"),
        )
        .with_help(format!(
            "use `sh \"exec …\"` to run it through /bin/sh (keep the `exec` so the program gets the stop signal), \
             or remove the shell syntax{}",
            if found.len() > 1 { format!(" ({} places)", found.len()) } else { String::new() }
        ));
        for (span, what) in found.into_iter().skip(1) {
            d = d.with_related(Label::new(span, format!("also {what}")));
        }
        out.push(d);
    }
}
