//! FR310 secret-in-file: a secret written in the topology file.
//!
//! Fires on an `env` entry whose name looks secret (the names
//! [`crate::plan::redact::secret_name`] accepts: a word of the name is a
//! token, secret, password or a credential's key, not merely contains one)
//! with a non-empty value, on the argument of a
//! `--token`-style option in `run` or `sh` (`--api-key=…` or `--token …`),
//! and on a password in a URL (`scheme://user:password@host`) in a command,
//! an `env` value or a readiness probe. One finding per group; further
//! places are related labels. The message never repeats the secret.

use super::shell::{self, Text, Tok};
use super::Ctx;
use crate::ast::SettingKind;
use crate::diagnostic::{Diagnostic, Label};
use crate::plan::redact::{is_reference, secret_name, secret_option, url_password};
use crate::source::Span;

/// The span of `value[a..b]` inside the literal at `lit`, when the
/// literal is written plainly; else the whole literal.
fn inner(ctx: &Ctx, lit: Span, value: &str, (a, b): (usize, usize)) -> Span {
    let raw = ctx.source.slice(lit);
    match raw.get(1..raw.len().saturating_sub(1)) {
        Some(body) if body == value => Span::new(lit.start + 1 + a, lit.start + 1 + b),
        _ => lit,
    }
}

pub fn check(ctx: &Ctx, out: &mut Vec<Diagnostic>) {
    for gi in 0..ctx.model.groups.len() {
        let Some(g) = ctx.ast_group(gi) else {
            continue;
        };
        let mut found: Vec<(Span, String)> = Vec::new();
        if let Some((_, value, lit)) = ctx.command_literal(gi) {
            let lexed = shell::lex(&Text::from_literal(ctx.source, lit, value));
            let mut hide_next: Option<String> = None;
            for t in &lexed.toks {
                let Tok::Word { text, span, .. } = t else {
                    hide_next = None;
                    continue;
                };
                if let Some(opt) = hide_next.take() {
                    if !is_reference(text) {
                        found.push((*span, format!("the value of `--{opt}`")));
                    }
                    continue;
                }
                match secret_option(text) {
                    Some((name, true)) => {
                        let value = text.split_once('=').map_or("", |(_, v)| v);
                        if !value.is_empty() && !is_reference(value) {
                            found.push((*span, format!("the value of `--{name}`")));
                        }
                    }
                    Some((name, false)) => hide_next = Some(name.to_string()),
                    None if url_password(text).is_some() => {
                        found.push((*span, "a password in a URL".into()));
                    }
                    None => {}
                }
            }
        }
        for s in &g.settings {
            match &s.kind {
                SettingKind::Env(vars) => {
                    for v in vars {
                        let (key, value) = (&v.key.node, &v.value.node);
                        if secret_name(key) && !value.is_empty() && !is_reference(value) {
                            found.push((v.value.span, format!("the value of `{key}`")));
                        } else if let Some(range) = url_password(value) {
                            found.push((
                                inner(ctx, v.value.span, value, range),
                                format!("a password in the URL in `{key}`"),
                            ));
                        }
                    }
                }
                SettingKind::Ready(r) => {
                    use crate::ast::Probe;
                    if let Probe::Http(t) | Probe::Tcp(t) = &r.probe.node {
                        if url_password(t).is_some() {
                            found.push((r.probe.span, "a password in the probe's URL".into()));
                        }
                    }
                }
                _ => {}
            }
        }
        found.sort_by_key(|(s, _)| (s.start, s.end));
        let Some((first_span, first)) = found.first().cloned() else {
            continue;
        };
        let name = ctx.name(gi);
        let mut d = Diagnostic::new(
            "FR310",
            format!("`{name}` has a secret written in the file: {first}"),
            Label::new(
                first_span,
                "written here, so it is in every commit and every plan",
            ),
        )
        .with_help(
            "keep secrets out of the file: export them in the environment `flowrun up` runs in \
             (every process inherits it) or put them in an env file that is not committed; \
             `flowrun plan` shows such values as <redacted>",
        );
        for (span, what) in found.into_iter().skip(1) {
            d = d.with_related(Label::new(span, format!("also {what}")));
        }
        out.push(d);
    }
}
