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

/// `file:line:col: severity[CODE] message` (one line, no trailing newline).
pub fn short_line(source: &SourceFile, d: &Diagnostic) -> String {
    let (line, col) = source.line_col(d.primary.span.start);
    format!(
        "{}:{}:{}: {}[{}] {}",
        source.name,
        line,
        col,
        d.severity.as_str(),
        d.code,
        d.message
    )
}

/// Every finding of every file as [`short_line`]s, each ending in a newline.
pub fn short(files: &[Compiled]) -> String {
    files
        .iter()
        .flat_map(|c| {
            c.diagnostics
                .iter()
                .map(|d| short_line(&c.source, d) + "\n")
        })
        .collect()
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

pub(crate) fn region(source: &SourceFile, span: Span) -> Region {
    let span = clamp_span(&source.text, span);
    let (line, column) = source.line_col(span.start);
    let (end_line, end_column) = source.line_col(span.end);
    Region {
        line,
        column,
        end_line,
        end_column,
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
    fn region_end_is_exclusive() {
        let s = SourceFile::new("t.pf", "ab\ncdé\n");
        let r = region(&s, Span::new(3, 7));
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
