//! `--format json`: every file with its findings (schema: docs/lint-json.md).
//! Plain serde structs so the field order is the documented one.

use super::{clamp_span, LineIndex};
use crate::diagnostic::{Diagnostic, Label};
use crate::source::{SourceFile, Span};
use crate::Compiled;
use serde::Serialize;

#[derive(Serialize)]
struct FileReport<'a> {
    file: &'a str,
    errors: usize,
    warnings: usize,
    findings: Vec<Finding<'a>>,
}

#[derive(Serialize)]
struct Finding<'a> {
    code: &'a str,
    name: &'a str,
    severity: &'a str,
    message: &'a str,
    file: &'a str,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    span: Span,
    labels: Vec<LabelOut<'a>>,
    help: Option<&'a str>,
}

#[derive(Serialize)]
struct LabelOut<'a> {
    /// Only for a label in another file than the finding's.
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
    message: &'a str,
    primary: bool,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    span: Span,
}

fn label<'a>(source: &SourceFile, lines: &LineIndex, l: &'a Label, primary: bool) -> LabelOut<'a> {
    if let (Some(f), Some((name, r))) = (&l.file, super::elsewhere(l)) {
        return LabelOut {
            file: Some(name),
            message: &l.message,
            primary,
            line: r.line,
            column: r.column,
            end_line: r.end_line,
            end_column: r.end_column,
            span: clamp_span(&f.text, l.span),
        };
    }
    let r = lines.region(l.span);
    LabelOut {
        file: None,
        message: &l.message,
        primary,
        line: r.line,
        column: r.column,
        end_line: r.end_line,
        end_column: r.end_column,
        span: clamp_span(&source.text, l.span),
    }
}

fn finding<'a>(source: &'a SourceFile, lines: &LineIndex, d: &'a Diagnostic) -> Finding<'a> {
    let r = lines.region(d.primary.span);
    Finding {
        code: d.code,
        name: d.rule().name,
        severity: d.severity.as_str(),
        message: &d.message,
        file: &source.name,
        line: r.line,
        column: r.column,
        end_line: r.end_line,
        end_column: r.end_column,
        span: clamp_span(&source.text, d.primary.span),
        labels: std::iter::once(label(source, lines, &d.primary, true))
            .chain(d.related.iter().map(|l| label(source, lines, l, false)))
            .collect(),
        help: d.help.as_deref(),
    }
}

pub(super) fn render(files: &[Compiled]) -> String {
    let files: Vec<FileReport> = files
        .iter()
        .map(|c| {
            let lines = LineIndex::new(&c.source);
            let count = |s| c.diagnostics.iter().filter(|d| d.severity == s).count();
            FileReport {
                file: &c.source.name,
                errors: count(crate::diagnostic::Severity::Error),
                warnings: count(crate::diagnostic::Severity::Warning),
                findings: c
                    .diagnostics
                    .iter()
                    .map(|d| finding(&c.source, &lines, d))
                    .collect(),
            }
        })
        .collect();
    // Serialising plain structs of strings and numbers cannot fail.
    let mut out = serde_json::to_string_pretty(&files).unwrap_or_else(|_| "[]".into());
    out.push('\n');
    out
}
