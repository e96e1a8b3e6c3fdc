//! flowrun: run process topologies declared in a small language.
//!
//! The pipeline is a chain of nouns: [`source::SourceFile`] →
//! [`parse`] → [`ast::File`] → [`resolve`] → [`model::Topology`] →
//! [`check`] (findings) → [`plan::Plan`] → [`exec`] (`flowrun up`).
//! `parse`, `resolve`, `check` and `plan` do no IO and never panic on any
//! input; pest types never leave `parse`; `exec` consumes only a `Plan`.
//! See ARCHITECTURE.md.

pub mod ast;
pub mod check;
pub mod cli;
pub mod diagnostic;
pub mod exec;
pub mod graph;
pub mod host;
pub mod model;
pub mod parse;
pub mod plan;
pub mod pysrc;
pub mod render;
pub mod resolve;
pub mod rules;
pub mod source;

use diagnostic::{Diagnostic, Severity};
use source::SourceFile;

/// The result of compiling one file: the resolved model when the file
/// parsed, and every finding from every stage, sorted and with `allow`s
/// applied.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub source: SourceFile,
    pub model: Option<model::Topology>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// Parse, resolve and check one file. `host` enables FR205 (capacity).
pub fn compile(source: SourceFile, host: Option<&host::HostLimits>) -> Compiled {
    let (file, mut diagnostics) = parse::parse(&source);
    let model = file.map(|file| {
        let (model, found) = resolve::resolve(&source, &file);
        diagnostics.extend(found);
        diagnostics.extend(check::check(&source, &file, &model, host));
        model
    });
    if let Some(model) = &model {
        check::apply_allows(model, &mut diagnostics);
    }
    diagnostic::sort(&mut diagnostics);
    Compiled {
        source,
        model,
        diagnostics,
    }
}
