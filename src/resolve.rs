//! SKELETON (issue 2): AST → resolved model, reporting FR101–FR104.

use crate::ast::File;
use crate::diagnostic::Diagnostic;
use crate::model::Topology;
use crate::source::SourceFile;

/// Resolve names, fill defaults, check values. Always returns a model (with
/// safe substitutes where values were invalid) so that later rules still run.
pub fn resolve(_source: &SourceFile, _file: &File) -> (Topology, Vec<Diagnostic>) {
    unimplemented!("resolve")
}
