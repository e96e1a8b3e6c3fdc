//! SKELETON (issue 2): the pest parser. The only module that sees pest types.

use crate::ast::File;
use crate::diagnostic::Diagnostic;
use crate::source::SourceFile;

/// Parse a file. `None` when it does not parse; the diagnostics (FR001)
/// then say what was expected where.
pub fn parse(_source: &SourceFile) -> (Option<File>, Vec<Diagnostic>) {
    (None, Vec::new())
}
