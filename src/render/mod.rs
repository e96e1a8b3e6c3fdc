//! Lint output formats, one file per format.
//!
//! Every renderer is a pure function from findings to a `String`; the
//! command line decides where it goes. Spans are byte offsets into the whole
//! file; renderers clamp them defensively (see [`clamp_span`]) so that no
//! input, however broken, makes a renderer panic.
//!
//! | format   | function   | shape |
//! |----------|------------|-------|
//! | `human`  | [`human`]  | miette's graphical report with the source snippet |
//! | `short`  | [`short`]  | `file:line:col: severity[CODE] message` per finding |
//! | `json`   | [`json`]   | array of files with their findings (docs/lint-json.md) |
//! | `sarif`  | [`sarif`]  | SARIF 2.1.0, one run, every rule listed |
//! | `github` | [`github`] | GitHub Actions workflow commands (`::error …::…`) |

mod github;
mod human;
mod json;
mod sarif;

use crate::diagnostic::Diagnostic;
use crate::source::{SourceFile, Span};
use crate::Compiled;

pub use github::github;
pub use sarif::sarif;

/// A file that could not be linted (missing, unreadable, not UTF-8): SARIF
/// lists it as a failed invocation's notification.
#[derive(Clone, Debug)]
pub struct Unreadable {
    /// The path as given.
    pub name: String,
    /// The one-line reason, as printed on stderr.
    pub message: String,
}

/// `file:line:col: severity[CODE] message` (one line, no trailing newline).
/// Builds a [`LineIndex`]: for many findings use [`short_line_indexed`].
pub fn short_line(source: &SourceFile, d: &Diagnostic) -> String {
    short_line_indexed(&LineIndex::new(source), source, d)
}

/// [`short_line`] through a [`LineIndex`] built once for the file: use it
/// for many findings of one file.
pub fn short_line_indexed(lines: &LineIndex, source: &SourceFile, d: &Diagnostic) -> String {
    short_line_as(lines, &source.name, d)
}

/// [`short_line_indexed`] with the file shown as `name`.
pub fn short_line_as(lines: &LineIndex, name: &str, d: &Diagnostic) -> String {
    let (line, col) = lines.line_col(d.primary.span.start);
    format!(
        "{}:{}:{}: {}[{}] {}",
        name,
        line,
        col,
        d.severity.as_str(),
        d.code,
        d.message
    )
}

/// Every finding of every file as [`short_line`]s, each ending in a newline.
pub fn short(files: &[Compiled]) -> String {
    let mut out = String::new();
    for c in files {
        let lines = LineIndex::new(&c.source);
        for d in &c.diagnostics {
            out.push_str(&short_line_indexed(&lines, &c.source, d));
            out.push('\n');
        }
    }
    out
}

/// miette's graphical report for every finding of one file, `width`
/// columns wide, ANSI colour only when `color`. Ends with a newline if
/// non-empty.
pub fn human(source: &SourceFile, diags: &[Diagnostic], width: usize, color: bool) -> String {
    human::render(source, diags, width, color)
}

/// The JSON report for several files (see docs/lint-json.md).
pub fn json(files: &[Compiled]) -> String {
    json::render(files)
}

/// A span made safe for `text`: both ends within the text and on char
/// boundaries, `start <= end`. Spans produced by the compiler already are;
/// this keeps a renderer from panicking if one is not.
pub fn clamp_span(text: &str, span: Span) -> Span {
    let fix = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = fix(span.start);
    let end = fix(span.end).max(start);
    Span::new(start, end)
}

/// Where a span starts and ends, 1-based; columns count characters and the
/// end column is one past the last character (exclusive), as in SARIF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Region {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

/// A label in another file than its finding's (see
/// [`Label::file`](crate::diagnostic::Label)): that file's name and the
/// label's region in it. `None` for a label in the finding's own file.
pub(crate) fn elsewhere(l: &crate::diagnostic::Label) -> Option<(&str, Region)> {
    let f = l.file.as_ref()?;
    Some((f.name.as_str(), LineIndex::new(f).region(l.span)))
}

/// A file's line starts, so that positions cost a binary search instead of
/// a scan from the start of the file (a report with thousands of findings
/// would otherwise be quadratic). Use it wherever positions are shown.
///
/// The one column convention of every format: lines end at `\n`, columns
/// count characters (Unicode scalar values) from 1, and a UTF-8 byte-order
/// mark at the start of the file is not a column.
pub struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the start of every line (`\n`-terminated), from 0.
    starts: Vec<usize>,
    /// `(byte offset, characters before it)` about every [`MARK_EVERY`]
    /// bytes, on character boundaries: a column costs a binary search and a
    /// count over at most one stride, however long the line.
    marks: Vec<(usize, usize)>,
    /// The file starts with a byte-order mark.
    bom: bool,
}

/// Stride of [`LineIndex`]'s character-count marks, in bytes.
const MARK_EVERY: usize = 1024;

impl<'a> LineIndex<'a> {
    pub fn new(source: &'a SourceFile) -> Self {
        Self::of_text(source.text.as_str())
    }

    pub(crate) fn of_text(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let mut marks = vec![(0, 0)];
        let (mut at, mut chars) = (0, 0);
        while at < text.len() {
            let mut next = (at + MARK_EVERY).min(text.len());
            while !text.is_char_boundary(next) {
                next += 1;
            }
            chars += text[at..next].chars().count();
            marks.push((next, chars));
            at = next;
        }
        LineIndex {
            text,
            starts,
            marks,
            bom: text.starts_with('\u{feff}'),
        }
    }

    /// `offset` clamped into the text and back onto a character boundary.
    fn clamp(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    /// Characters before byte `offset` (a character boundary).
    fn chars_before(&self, offset: usize) -> usize {
        let i = self.marks.partition_point(|&(b, _)| b <= offset) - 1;
        let (b, c) = self.marks[i];
        c + self.text[b..offset].chars().count()
    }

    /// 1-based line and column (in characters) of a byte offset; offsets
    /// past the end or inside a UTF-8 sequence are clamped.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.clamp(offset);
        let line = self.line_of(offset) + 1;
        let start = self.starts[line - 1];
        // A short way into its line (the usual case), count directly;
        // else through the marks, so a long line costs one stride.
        let mut col = if offset - start <= MARK_EVERY {
            self.text[start..offset].chars().count() + 1
        } else {
            self.chars_before(offset) - self.chars_before(start) + 1
        };
        if self.bom && line == 1 && offset > 0 {
            col -= 1;
        }
        (line, col)
    }

    /// 0-based index of the line holding byte `offset` (clamped).
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.starts
            .partition_point(|&s| s <= offset.min(self.text.len()))
            - 1
    }

    /// Number of lines (a final line without `\n` counts; an empty file
    /// has one empty line).
    pub(crate) fn line_count(&self) -> usize {
        self.starts.len()
    }

    /// Byte range of line `i`'s text (0-based), without its `\n` or the
    /// `\r` of a `\r\n`; the BOM is not part of line 0.
    pub(crate) fn line_text(&self, i: usize) -> (usize, usize) {
        let start = self.starts[i];
        let mut end = self
            .starts
            .get(i + 1)
            .map_or(self.text.len(), |&next| next - 1);
        if end > start && self.text.as_bytes()[end - 1] == b'\r' && end < self.text.len() {
            end -= 1;
        }
        let start = if i == 0 && self.bom { 3 } else { start };
        (start, end.max(start))
    }

    pub(crate) fn region(&self, span: Span) -> Region {
        let span = clamp_span(self.text, span);
        let (line, column) = self.line_col(span.start);
        let (end_line, end_column) = self.line_col(span.end);
        Region {
            line,
            column,
            end_line,
            end_column,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_span_fixes_every_bad_span() {
        let t = "aé\n"; // é is bytes 1..3
        assert_eq!(clamp_span(t, Span::new(0, 1)), Span::new(0, 1));
        assert_eq!(clamp_span(t, Span::new(2, 2)), Span::new(1, 1));
        assert_eq!(clamp_span(t, Span::new(5, 9)), Span::new(4, 4));
        assert_eq!(clamp_span(t, Span::new(3, 1)), Span::new(3, 3));
    }

    #[test]
    fn lines_agree_with_source_line_col() {
        let text = "ab\r\ncé\n\n\rx\té日\n";
        let s = SourceFile::new("t.pf", text);
        let lines = LineIndex::new(&s);
        for offset in 0..text.len() + 3 {
            assert_eq!(
                lines.line_col(offset),
                s.line_col(offset),
                "offset {offset}"
            );
        }
        let empty = SourceFile::new("e.pf", "");
        assert_eq!(LineIndex::new(&empty).line_col(0), (1, 1));
    }

    #[test]
    fn short_line_indexed_is_short_line() {
        let s = SourceFile::new("t.pf", "a\nbé\n\ncd");
        let lines = LineIndex::new(&s);
        for start in 0..s.text.len() + 2 {
            let d = Diagnostic::new(
                "FR001",
                "m",
                crate::diagnostic::Label::new(Span::new(start, start), ""),
            );
            assert_eq!(short_line_indexed(&lines, &s, &d), short_line(&s, &d));
        }
    }

    #[test]
    fn region_end_is_exclusive() {
        let s = SourceFile::new("t.pf", "ab\ncdé\n");
        let r = LineIndex::new(&s).region(Span::new(3, 7));
        assert_eq!(
            r,
            Region {
                line: 2,
                column: 1,
                end_line: 2,
                end_column: 4
            }
        );
    }
}
