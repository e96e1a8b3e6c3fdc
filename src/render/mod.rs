//! SKELETON (issue 2): lint output formats. Signatures are the contract.

use crate::diagnostic::Diagnostic;
use crate::source::SourceFile;

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
