//! SKELETON (issue 2): lint output formats. Signatures are the contract;
//! the cli helper fills the bodies (one file per format under render/).

use crate::diagnostic::Diagnostic;
use crate::source::SourceFile;
use crate::Compiled;

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

/// miette's graphical report for every finding of one file, `width`
/// columns wide, ANSI colour only when `color`. Ends with a newline if
/// non-empty.
pub fn human(source: &SourceFile, diags: &[Diagnostic], width: usize, color: bool) -> String {
    let _ = (width, color);
    diags.iter().map(|d| short_line(source, d) + "\n").collect()
}

/// The JSON report for several files (see docs/lint-json.md).
pub fn json(files: &[Compiled]) -> String {
    let _ = files;
    String::from("[]\n")
}
