//! Findings: what every stage (parse, resolve, check) reports.
//!
//! A [`Diagnostic`] is plain data: a rule code, a severity, a message, a
//! primary labelled span, related labelled spans and a help line. Rendering
//! (miette, short, json, sarif, github) lives in [`crate::render`].

use crate::rules::{self, Rule};
use crate::source::{SourceFile, Span};
use serde::Serialize;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Information that never fails a run (e.g. a worker whose source could
    /// not be found, so it was not linted).
    Note,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A span with the text shown next to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Label {
    pub span: Span,
    pub message: String,
    /// The file the span is in when it is not the file of the findings it
    /// belongs to (a worker finding pointing back at the topology, or at
    /// another Python module). `None`: the same file.
    #[serde(skip)]
    pub file: Option<Arc<SourceFile>>,
}

impl Label {
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Label {
            span,
            message: message.into(),
            file: None,
        }
    }

    /// A label in another file than its diagnostic's.
    pub fn in_file(file: Arc<SourceFile>, span: Span, message: impl Into<String>) -> Self {
        Label {
            span,
            message: message.into(),
            file: Some(file),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable rule code, e.g. `FR301`.
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub primary: Label,
    pub related: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic for `code` with the rule's default severity.
    ///
    /// # Panics
    /// If `code` is not in [`rules::RULES`] (a programming error, never user input).
    pub fn new(code: &'static str, message: impl Into<String>, primary: Label) -> Self {
        let rule = rules::by_code(code).unwrap_or_else(|| panic!("unknown rule code {code}"));
        Diagnostic {
            code: rule.code,
            severity: rule.severity,
            message: message.into(),
            primary,
            related: Vec::new(),
            help: None,
        }
    }

    pub fn with_related(mut self, label: Label) -> Self {
        self.related.push(label);
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn rule(&self) -> &'static Rule {
        rules::by_code(self.code).expect("diagnostics are built from known codes")
    }

    /// Sort key used everywhere findings are listed: position, then code.
    pub fn sort_key(&self) -> (usize, usize, &'static str) {
        (self.primary.span.start, self.primary.span.end, self.code)
    }
}

/// Sort findings into their canonical order (by position, then code) and
/// drop exact duplicates.
pub fn sort(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| {
        a.sort_key()
            .cmp(&b.sort_key())
            .then(a.message.cmp(&b.message))
    });
    diags.dedup();
}
