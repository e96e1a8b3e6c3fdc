//! `--format human`: miette's graphical report.
//!
//! Core types do not depend on miette: [`Report`] adapts one
//! [`Diagnostic`] to `miette::Diagnostic` for the duration of a render.
//! The header reads `× FR302 double-delivery: message` (the code and the
//! rule's name in the message line rather than miette's separate code line,
//! so one finding is one compact block).
//!
//! miette is never shown the file itself. For each finding an [`Excerpt`]
//! is built: only the lines its labels need (each label's lines and one
//! line of context either side), long lines cut down to the text around the
//! label edges with `…` in place of the rest (as rustc does), at most
//! [`MAX_LABELS`] labels (a `note` says how many more there are), and a
//! label running over more than [`MAX_SPAN_LINES`] lines cut to its first
//! line. The excerpt tells miette the real line numbers, and the header
//! position is the same line and character column as every other format.
//! So a finding costs the same whatever the size of the file, the length of
//! its lines or the number of its labels, and miette never sees a line
//! long enough to overflow its formatting widths.

use super::{clamp_span, short_line_indexed, LineIndex};
use crate::diagnostic::{Diagnostic, Severity};
use crate::source::{SourceFile, Span};
use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents,
    SourceCode, SourceSpan, SpanContents,
};
use std::fmt;

/// Labels drawn per finding, the primary one included.
pub const MAX_LABELS: usize = 8;
/// A label running over more lines than this is drawn on its first line.
pub const MAX_SPAN_LINES: usize = 12;
/// Lines longer than this many characters are cut down around the labels.
pub const LONG_LINE: usize = 120;
/// Characters kept on each side of a label edge in a cut-down line.
const KEEP: usize = 24;
/// Snippets at most this many lines apart are drawn as one, with the lines
/// between them.
const MERGE_GAP: usize = 3;
/// A message longer than this many characters is cut in the header (a
/// cycle through 100,000 groups names every one of them).
pub const MAX_MESSAGE: usize = 400;
/// How the cut-out parts of a long line are shown.
const ELLIPSIS: &str = "…";

/// One line of an excerpt: its real 0-based number and where its text
/// starts in the excerpt.
struct ExLine {
    real: usize,
    start: usize,
    end: usize,
    block: usize,
}

/// What miette reads for one finding: the needed lines, cut down, in
/// blocks of consecutive real lines (blocks are separated by a line break
/// that miette never reads across).
struct Excerpt<'a> {
    name: &'a str,
    text: String,
    lines: Vec<ExLine>,
    /// Per excerpt line: `(excerpt offset, real byte offset)` of each label
    /// edge on it, for the header's column.
    cols: Vec<Vec<(usize, usize)>>,
    /// The real offset of the primary label's start, preferred when several
    /// edges share an excerpt offset.
    primary: usize,
    index: &'a LineIndex<'a>,
    /// The last real line of each block.
    block_end: Vec<usize>,
}

impl Excerpt<'_> {
    fn line_at(&self, offset: usize) -> usize {
        self.lines
            .partition_point(|l| l.start <= offset)
            .saturating_sub(1)
    }
}

impl SourceCode for Excerpt<'_> {
    fn read_span<'b>(
        &'b self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'b> + 'b>, MietteError> {
        let (start, end) = (span.offset(), span.offset() + span.len());
        if end > self.text.len() || self.lines.is_empty() {
            return Err(MietteError::OutOfBounds);
        }
        let (a, b) = (self.line_at(start), self.line_at(end));
        let block = self.lines[a].block;
        if self.lines[b].block != block {
            return Err(MietteError::OutOfBounds);
        }
        let mut first = a;
        while first > 0 && a - first < before && self.lines[first - 1].block == block {
            first -= 1;
        }
        let mut last = b;
        while last + 1 < self.lines.len() && last - b < after && self.lines[last + 1].block == block
        {
            last += 1;
        }
        let from = self.lines[first].start;
        let to = if last + 1 < self.lines.len() && self.lines[last + 1].block == block {
            self.lines[last + 1].start
        } else {
            // Include the line break, as miette does for a whole file.
            (self.lines[last].end + 1).min(self.text.len())
        };
        // The real column of `start`: label edges are recorded; any other
        // offset (never asked for by miette's header) counts from the left.
        let edges = || self.cols[a].iter().filter(|&&(o, _)| o == start);
        let column = edges()
            .find(|&&(_, real)| real == self.primary)
            .or_else(|| edges().next())
            .map_or(start - self.lines[a].start, |&(_, real)| {
                self.index.line_col(real).1 - 1
            });
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.to_string(),
            &self.text.as_bytes()[from..to],
            SourceSpan::new(from.into(), to - from),
            self.lines[first].real,
            column,
            // miette draws two labels as one snippet when the first's line
            // plus this count reaches the second's line: so exactly the
            // labels of one block are drawn together.
            self.block_end[block] + 1 - self.lines[first].real,
        )))
    }
}

/// A label in excerpt coordinates.
struct Shown {
    span: Span,
    message: Option<String>,
    primary: bool,
}

/// Control characters would move the cursor or vanish: show them as their
/// Unicode control pictures (one column each, like the character).
fn visible(c: char) -> char {
    match c {
        '\t' => c,
        '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('?'),
        '\u{7f}' => '\u{2421}',
        c if c.is_control() => '\u{fffd}',
        c => c,
    }
}

/// Move `n` characters back from byte `at`, not before `floor`.
fn back(text: &str, at: usize, floor: usize, n: usize) -> usize {
    text[floor..at]
        .char_indices()
        .rev()
        .take(n)
        .last()
        .map_or(at, |(i, _)| floor + i)
}

/// Move `n` characters forward from byte `at`, not past `ceil`.
fn forward(text: &str, at: usize, ceil: usize, n: usize) -> usize {
    text[at..ceil]
        .char_indices()
        .nth(n)
        .map_or(ceil, |(i, _)| at + i)
}

/// Build the excerpt for labels already clamped to the text. Returns the
/// excerpt and the labels in its coordinates (same order as given).
fn excerpt<'a>(
    index: &'a LineIndex<'a>,
    name: &'a str,
    text: &str,
    labels: &[(Span, Option<String>, bool)],
) -> (Excerpt<'a>, Vec<Shown>) {
    // Each label's lines; a label over too many lines is cut to its first.
    let mut spans = Vec::with_capacity(labels.len());
    for (span, message, primary) in labels {
        let (l0, l1) = (index.line_of(span.start), index.line_of(span.end));
        let (mut span, mut message, mut l1) = (*span, message.clone(), l1);
        if l1 - l0 > MAX_SPAN_LINES {
            let (_, end) = index.line_text(l0);
            span = Span::new(span.start, end.max(span.start));
            let note = format!("(continues to line {})", l1 + 1);
            message = Some(match message {
                Some(m) => format!("{m} {note}"),
                None => note,
            });
            l1 = l0;
        }
        spans.push((span, message, *primary, l0, l1));
    }
    // The lines to show: each label's lines and one either side, merged.
    // The empty "line" after a file's final newline is shown only when a
    // label is on it (the end of the file), never as context.
    let last_line = index.line_count() - 1;
    let last_context = if last_line > 0 && text.ends_with('\n') {
        last_line - 1
    } else {
        last_line
    };
    let mut ranges: Vec<(usize, usize)> = spans
        .iter()
        .map(|&(_, _, _, l0, l1)| (l0.saturating_sub(1), l1.max((l1 + 1).min(last_context))))
        .collect();
    ranges.sort_unstable();
    let mut blocks: Vec<(usize, usize)> = Vec::new();
    for (a, b) in ranges {
        match blocks.last_mut() {
            Some(last) if a <= last.1 + 1 + MERGE_GAP => last.1 = last.1.max(b),
            _ => blocks.push((a, b)),
        }
    }
    // Label edges per line (byte offsets), to keep around when cutting.
    let mut edges: Vec<(usize, usize)> = Vec::new();
    for &(span, _, _, l0, l1) in &spans {
        edges.push((l0, span.start));
        edges.push((l1, span.end));
    }
    edges.sort_unstable();
    edges.dedup();

    let mut ex = Excerpt {
        name,
        text: String::new(),
        lines: Vec::new(),
        cols: Vec::new(),
        primary: labels.first().map_or(0, |l| l.0.start),
        index,
        block_end: blocks.iter().map(|b| b.1).collect(),
    };
    // Real byte offset of a label edge → excerpt offset.
    let mut map: Vec<(usize, usize)> = Vec::new();
    let mut e = 0;
    for (bi, &(a, b)) in blocks.iter().enumerate() {
        if bi > 0 {
            ex.text.push('\n');
        }
        for line in a..=b {
            let (ls, le) = index.line_text(line);
            let line_edges_from = e;
            while e < edges.len() && edges[e].0 == line {
                e += 1;
            }
            // An edge inside the line break belongs to the line's end.
            let here: Vec<(usize, usize)> = edges[line_edges_from..e]
                .iter()
                .map(|&(_, o)| (o.clamp(ls, le), o))
                .collect();
            let long =
                text[ls..le].len() > LONG_LINE && text[ls..le].chars().nth(LONG_LINE).is_some();
            let mut windows: Vec<(usize, usize)> = if !long {
                vec![(ls, le)]
            } else if here.is_empty() {
                vec![(ls, forward(text, ls, le, 2 * KEEP))]
            } else {
                here.iter()
                    .map(|&(o, _)| (back(text, o, ls, KEEP), forward(text, o, le, KEEP)))
                    .collect()
            };
            windows.sort_unstable();
            let mut merged: Vec<(usize, usize)> = Vec::new();
            for w in windows {
                match merged.last_mut() {
                    Some(last) if w.0 <= last.1 => last.1 = last.1.max(w.1),
                    _ => merged.push(w),
                }
            }
            let start = ex.text.len();
            let mut cols = Vec::new();
            let mut prev = ls;
            let mut points = here.iter().copied().peekable();
            for (wa, wb) in merged {
                if wa > prev {
                    ex.text.push_str(ELLIPSIS);
                }
                let mut at = wa;
                while let Some(&(p, orig)) = points.peek() {
                    if p > wb {
                        break;
                    }
                    points.next();
                    ex.text.extend(text[at..p].chars().map(visible));
                    at = p;
                    map.push((orig, ex.text.len()));
                    cols.push((ex.text.len(), orig));
                }
                ex.text.extend(text[at..wb].chars().map(visible));
                prev = wb;
            }
            if prev < le {
                ex.text.push_str(ELLIPSIS);
            }
            ex.lines.push(ExLine {
                real: line,
                start,
                end: ex.text.len(),
                block: bi,
            });
            ex.cols.push(cols);
            ex.text.push('\n');
        }
    }
    map.sort_unstable();
    let to_ex = |o: usize| {
        map.binary_search_by_key(&o, |&(r, _)| r)
            .map_or(0, |i| map[i].1)
    };
    let shown = spans
        .into_iter()
        .map(|(span, message, primary, _, _)| {
            let a = to_ex(span.start);
            let b = to_ex(span.end).max(a);
            Shown {
                span: Span::new(a, b),
                message,
                primary,
            }
        })
        .collect();
    (ex, shown)
}

struct Report<'a> {
    diag: &'a Diagnostic,
    title: String,
    source: &'a Excerpt<'a>,
    labels: Vec<Shown>,
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

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().map(|l| {
            if l.primary {
                LabeledSpan::new_primary_with_span(l.message.clone(), l.span)
            } else {
                LabeledSpan::new_with_span(l.message.clone(), l.span)
            }
        })))
    }
}

/// The message, cut after [`MAX_MESSAGE`] characters with a note saying
/// how much is left out.
fn cut_message(message: &str) -> std::borrow::Cow<'_, str> {
    match message.char_indices().nth(MAX_MESSAGE) {
        None => message.into(),
        Some((at, _)) => {
            let rest = message[at..].chars().count();
            format!(
                "{}… ({rest} more characters; `--format json` has the whole message)",
                &message[..at]
            )
            .into()
        }
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
        .with_width(width.clamp(20, 1000))
        .with_links(false)
        .without_syntax_highlighting();
    let index = LineIndex::new(source);
    let text = source.text.as_str();
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        let text_of = |m: &str| (!m.is_empty()).then(|| m.to_string());
        // Labels in other files are listed after the help (`also:`).
        let local = d.related.iter().filter(|l| l.file.is_none());
        let labels: Vec<(Span, Option<String>, bool)> = std::iter::once(&d.primary)
            .chain(local.clone().take(MAX_LABELS - 1))
            .enumerate()
            .map(|(j, l)| (clamp_span(text, l.span), text_of(&l.message), j == 0))
            .collect();
        let hidden = local.count().saturating_sub(MAX_LABELS - 1);
        let (ex, shown) = excerpt(&index, &source.name, text, &labels);
        let report = Report {
            diag: d,
            title: format!("{} {}: {}", d.code, d.rule().name, cut_message(&d.message)),
            source: &ex,
            labels: shown,
        };
        let mut block = String::new();
        if i > 0 {
            out.push('\n');
        }
        match handler.render_report(&mut block, &report) {
            Ok(()) => out.push_str(&block),
            // miette could not read a snippet: fall back to one line.
            Err(fmt::Error) => {
                out.push_str(&short_line_indexed(&index, source, d));
                out.push('\n');
            }
        }
        if hidden > 0 {
            out.push_str(&format!(
                "  note: {hidden} more {} not shown (`--format json` lists every one)\n",
                if hidden == 1 { "label" } else { "labels" }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Label;

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

    /// The header's `line:col` is the short format's, on random texts
    /// (CR, CRLF, tabs, multi-byte characters, a BOM, long lines) and
    /// random spans, one to twenty labels each; nothing panics.
    #[test]
    fn header_position_is_the_short_position() {
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
            "\u{1}",
            "  run \"x\"\n",
        ];
        for round in 0..1500 {
            let mut text: String = if round % 3 == 0 {
                "\u{feff}".into()
            } else {
                String::new()
            };
            for _ in 0..next(300) {
                if next(40) == 0 {
                    text.push_str(&"x".repeat(next(400)));
                } else {
                    text.push_str(pieces[next(pieces.len())]);
                }
            }
            let s = SourceFile::new("t.pf", text.clone());
            let mut spans = Vec::new();
            for _ in 0..1 + next(20) {
                let a = clamp_span(&text, Span::new(next(text.len() + 1), 0)).start;
                let b = clamp_span(&text, Span::new(a + next(300), 0)).start;
                spans.push(Span::new(a, b.max(a)));
            }
            let mut d = Diagnostic::new("FR001", "m", Label::new(spans[0], "p"));
            for sp in &spans[1..] {
                d = d.with_related(Label::new(*sp, "r"));
            }
            let out = render(&s, std::slice::from_ref(&d), 30 + round % 90, false);
            let short = super::super::short_line(&s, &d);
            let pos = short.split(": ").next().unwrap();
            assert!(out.contains(&format!("[{pos}]")), "{short}\n{out}");
            let hidden = d.related.len().saturating_sub(MAX_LABELS - 1);
            assert_eq!(
                out.contains(&format!("note: {hidden} more")),
                hidden > 0,
                "{out}"
            );
            // A drawn line holds at most two cut-out windows per label.
            let bound = 2 * MAX_LABELS * (2 * KEEP + 1) + 150;
            for line in out.lines() {
                assert!(line.chars().count() < bound, "line not cut: {line}");
            }
        }
    }

    #[test]
    fn a_label_far_along_a_long_line_is_drawn_cut_down() {
        let text = format!("run \"{} {{prot}}\"\n", "a".repeat(70_000));
        let s = SourceFile::new("t.pf", text.clone());
        let i = text.find("{prot}").unwrap();
        let d = Diagnostic::new("FR103", "m", Label::new(Span::new(i, i + 6), "here"));
        let out = render(&s, &[d], 80, false);
        assert!(out.contains("[t.pf:1:70007]"), "{out}");
        assert!(out.contains("…aaa"), "{out}");
        assert!(out.contains("{prot}"), "{out}");
        assert!(out.len() < 1000, "{out}");
    }

    #[test]
    fn a_long_multi_line_label_is_drawn_on_its_first_line() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let s = SourceFile::new("t.pf", text.clone());
        let d = Diagnostic::new(
            "FR001",
            "m",
            Label::new(Span::new(0, text.len() - 1), "all"),
        );
        let out = render(&s, &[d], 80, false);
        assert!(out.contains("all (continues to line 100)"), "{out}");
        assert!(!out.contains("line 50"), "{out}");
    }

    #[test]
    fn a_long_message_is_cut_in_the_header() {
        let s = SourceFile::new("t.pf", "x\n");
        let long = "g → ".repeat(1000);
        let d = Diagnostic::new("FR201", long.clone(), Label::new(Span::new(0, 1), ""));
        let out = render(&s, &[d], 80, false);
        assert!(out.contains("… (3600 more"), "{out}");
        assert!(out.contains("has the whole message)"), "{out}");
        assert!(out.chars().count() < 1000, "{out}");
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
