//! `--format human`: miette's graphical report.
//!
//! Core types do not depend on miette: [`Report`] adapts one
//! [`Diagnostic`] to `miette::Diagnostic` for the duration of a render.
//! The header reads `× FR302 double-delivery: message` (the code and the
//! rule's name in the message line rather than miette's separate code line,
//! so one finding is one compact block).
//!
//! miette reads a snippet by scanning the source from its first byte, so a
//! report with thousands of findings in a large file would be quadratic.
//! [`IndexedSource`] hands miette only a window of whole lines around each
//! span (found by binary search over the line starts) and shifts the answer
//! back to whole-file positions: the output is byte-for-byte what miette
//! renders from the whole text (a unit test checks this on random spans).

use super::{clamp_span, short_line};
use crate::diagnostic::{Diagnostic, Severity};
use crate::source::SourceFile;
use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents,
    SourceCode, SourceSpan, SpanContents,
};
use std::fmt;

/// The whole file for miette, read through a line index.
struct IndexedSource<'a> {
    name: &'a str,
    text: &'a str,
    /// Start of every line as miette counts them (`\n`, `\r\n` or a lone
    /// `\r` ends a line), from 0.
    starts: Vec<usize>,
}

impl<'a> IndexedSource<'a> {
    fn new(name: &'a str, text: &'a str) -> Self {
        let bytes = text.as_bytes();
        let mut starts = vec![0];
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                    i += 2;
                    starts.push(i);
                }
                b'\r' | b'\n' => {
                    i += 1;
                    starts.push(i);
                }
                _ => i += 1,
            }
        }
        IndexedSource { name, text, starts }
    }

    /// 0-based index of the line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset) - 1
    }
}

impl SourceCode for IndexedSource<'_> {
    fn read_span<'b>(
        &'b self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'b> + 'b>, MietteError> {
        let (start, end) = (span.offset(), span.offset() + span.len());
        if end > self.text.len() {
            return Err(MietteError::OutOfBounds);
        }
        // Whole lines from comfortably before the span to comfortably after
        // it, so miette's scan of the window sees the same context lines.
        let first = self.line_of(start).saturating_sub(before + 2);
        let last = self.line_of(end) + after + 3;
        let from = self.starts[first];
        let to = self.starts.get(last).copied().unwrap_or(self.text.len());
        let window = &self.text.as_bytes()[from..to];
        let local = SourceSpan::new((start - from).into(), span.len());
        let c = window.read_span(&local, before, after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.to_string(),
            c.data(),
            SourceSpan::new((c.span().offset() + from).into(), c.span().len()),
            c.line() + first,
            c.column(),
            c.line_count() + first,
        )))
    }
}

struct Report<'a> {
    diag: &'a Diagnostic,
    title: String,
    source: &'a dyn SourceCode,
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
            Severity::Note => miette::Severity::Advice,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        // Labels in another file cannot share this snippet: they are listed
        // after the help as `also: file:line:col: message`.
        let mut text = self.diag.help.clone().unwrap_or_default();
        for l in &self.diag.related {
            if let Some((name, r)) = super::elsewhere(l) {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&format!(
                    "also: {name}:{}:{}: {}",
                    r.line, r.column, l.message
                ));
            }
        }
        (!text.is_empty()).then(|| Box::new(text) as Box<dyn fmt::Display>)
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
        let related = self
            .diag
            .related
            .iter()
            .filter(|l| l.file.is_none())
            .map(move |l| {
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
    let indexed = IndexedSource::new(&source.name, &source.text);
    render_from(&indexed, source, diags, width, color)
}

fn render_from(
    code: &dyn SourceCode,
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
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        let report = Report {
            diag: d,
            title: format!("{} {}: {}", d.code, d.rule().name, d.message),
            source: code,
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

    /// The indexed source renders exactly what miette renders from the
    /// whole text, on random texts (CR, CRLF, tabs, multi-byte characters,
    /// empty lines) and random spans, one to four labels each.
    #[test]
    fn indexed_source_renders_like_the_whole_text() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let pieces = [
            "a",
            "bc",
            " ",
            "\n",
            "\n",
            "\r\n",
            "\r",
            "\t",
            "é",
            "日",
            "  run \"x\"\n",
        ];
        for round in 0..2000 {
            let text: String = (0..next(300)).map(|_| pieces[next(pieces.len())]).collect();
            let s = SourceFile::new("t.pf", text.clone());
            let mut spans = Vec::new();
            for _ in 0..1 + next(4) {
                let a = clamp_span(&text, Span::new(next(text.len() + 1), 0)).start;
                let b = clamp_span(&text, Span::new(a + next(30), 0)).start;
                spans.push(Span::new(a, b.max(a)));
            }
            let mut d = Diagnostic::new("FR001", "m", Label::new(spans[0], "p"));
            for sp in &spans[1..] {
                d = d.with_related(Label::new(*sp, "r"));
            }
            let diags = [d];
            let named = miette::NamedSource::new("t.pf", text.clone());
            let width = 30 + round % 90;
            assert_eq!(
                render(&s, &diags, width, false),
                render_from(&named, &s, &diags, width, false),
                "text {text:?}, diagnostic {:?}",
                diags[0]
            );
        }
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
