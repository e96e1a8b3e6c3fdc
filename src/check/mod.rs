//! SKELETON (issue 2): the hazard rules FR002, FR2xx–FR4xx.

use crate::ast::File;
use crate::diagnostic::Diagnostic;
use crate::host::HostLimits;
use crate::model::Topology;
use crate::source::SourceFile;

/// Run every rule of stages 2–4 over a resolved topology.
pub fn check(
    _source: &SourceFile,
    _file: &File,
    _model: &Topology,
    _host: Option<&HostLimits>,
) -> Vec<Diagnostic> {
    Vec::new()
}

/// Drop findings suppressed by an `allow` and report unused allows (FR002).
pub fn apply_allows(_model: &Topology, _diags: &mut Vec<Diagnostic>) {}
