//! `--format human`: miette's graphical report.
//!
//! Core types do not depend on miette: [`Report`] adapts one
//! [`Diagnostic`] to `miette::Diagnostic` for the duration of a render.
//! The header reads `× FR302 double-delivery: message` (the code and the
//! rule's name in the message line rather than miette's separate code line,
//! so one finding is one compact block).

use super::{clamp_span, short_line};
use crate::diagnostic::{Diagnostic, Severity};
use crate::source::SourceFile;
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use std::fmt;

struct Report<'a> {
    diag: &'a Diagnostic,
    title: String,
    source: &'a NamedSource<String>,
    text: &'a str,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.title)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.title)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let text_of = |m: &str| (!m.is_empty()).then(|| m.to_string());
        let primary = LabeledSpan::new_primary_with_span(
            text_of(&self.diag.primary.message),
            clamp_span(self.text, self.diag.primary.span),
        );
        let related = self.diag.related.iter().map(move |l| {
            LabeledSpan::new_with_span(text_of(&l.message), clamp_span(self.text, l.span))
        });
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}

pub(super) fn render(
    source: &SourceFile,
    diags: &[Diagnostic],
    width: usize,
    color: bool,
) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(width.max(20))
        .with_links(false)
        .without_syntax_highlighting();
    let named = NamedSource::new(source.name.clone(), source.text.clone());
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        let report = Report {
            diag: d,
            title: format!("{} {}: {}", d.code, d.rule().name, d.message),
            source: &named,
            text: &source.text,
        };
        let mut block = String::new();
        if i > 0 {
            out.push('\n');
        }
        match handler.render_report(&mut block, &report) {
            Ok(()) => out.push_str(&block),
            // miette could not read a snippet: fall back to one line.
            Err(fmt::Error) => {
                out.push_str(&short_line(source, d));
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Label;
    use crate::source::Span;

    fn sample() -> (SourceFile, Vec<Diagnostic>) {
        let text = "topology t {\n  group api {\n    run \"x\"\n    process-group shared\n  }\n}\n";
        let s = SourceFile::new("t.pf", text);
        let at = |needle: &str| {
            let i = text.find(needle).unwrap();
            Span::new(i, i + needle.len())
        };
        let d = Diagnostic::new(
            "FR302",
            "group `api` shares the terminal's process group",
            Label::new(at("process-group shared"), "shared here"),
        )
        .with_related(Label::new(at("api"), "this group"))
        .with_help("use `process-group own`");
        (s, vec![d.clone(), d])
    }

    #[test]
    fn report_has_code_name_snippet_labels_and_help() {
        let (s, d) = sample();
        let out = render(&s, &d, 80, false);
        assert!(
            out.contains("× FR302 double-delivery: group `api`"),
            "{out}"
        );
        assert!(out.contains("[t.pf:4:5]"), "{out}");
        assert!(out.contains("shared here"), "{out}");
        assert!(out.contains("this group"), "{out}");
        assert!(out.contains("help: use `process-group own`"), "{out}");
        assert!(!out.contains('\u{1b}'), "no colour codes: {out}");
        assert!(out.ends_with('\n'));
        assert!(render(&s, &d, 80, true).contains('\u{1b}'));
    }

    #[test]
    fn bad_spans_do_not_panic() {
        let s = SourceFile::new("t.pf", "é");
        let d = Diagnostic::new("FR001", "x", Label::new(Span::new(9, 1), "here"))
            .with_related(Label::new(Span::new(1, 1), ""));
        let out = render(&s, &[d], 40, false);
        assert!(out.contains("FR001"), "{out}");
    }
}
