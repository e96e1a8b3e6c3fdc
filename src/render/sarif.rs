//! `--format sarif`: SARIF 2.1.0 for code-scanning upload.
//!
//! One run; `tool.driver.rules` lists every rule of [`crate::rules::RULES`]
//! (so `ruleIndex` is the rule's position there); each finding is a result
//! with its primary region and related locations. Columns count Unicode
//! code points (`columnKind: unicodeCodePoints`), `endColumn` is exclusive.

use super::LineIndex;
use crate::diagnostic::{Label, Severity};
use crate::rules::RULES;
use crate::source::SourceFile;
use crate::Compiled;
use serde_json::{json, Value};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

/// A relative URI reference for a file name: unreserved characters and `/`
/// stay, everything else is percent-encoded (UTF-8 bytes).
fn uri(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn physical(source: &SourceFile, lines: &LineIndex, l: &Label) -> Value {
    let (name, r) = super::elsewhere(l).unwrap_or_else(|| (&source.name, lines.region(l.span)));
    json!({
        "artifactLocation": { "uri": uri(name) },
        "region": {
            "startLine": r.line,
            "startColumn": r.column,
            "endLine": r.end_line,
            "endColumn": r.end_column,
        },
    })
}

/// The "What it finds" section of a rule's explanation, as one paragraph.
fn what_it_finds(explain: &str) -> Option<String> {
    let start = explain.find("## What it finds")?;
    let body = &explain[start..];
    let body = &body[body.find('\n')? + 1..];
    let end = body.find("\n#").unwrap_or(body.len());
    let text = body[..end].split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then_some(text)
}

fn rules() -> Vec<Value> {
    RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.code,
                "name": r.name,
                "shortDescription": { "text": r.summary },
                "fullDescription": { "text": what_it_finds(r.explain).unwrap_or_else(|| r.summary.to_string()) },
                "help": {
                    "text": format!("{} — run `flowrun explain {}` for the full explanation.", r.summary, r.code),
                    "markdown": r.explain,
                },
                "defaultConfiguration": { "level": level(r.severity) },
                "properties": { "tags": [r.name] },
            })
        })
        .collect()
}

/// The SARIF 2.1.0 log for every file's findings (pretty JSON + newline).
pub fn sarif(files: &[Compiled]) -> String {
    let mut results = Vec::new();
    for c in files {
        let lines = LineIndex::new(&c.source);
        for d in &c.diagnostics {
            let index = RULES.iter().position(|r| r.code == d.code);
            let mut text = d.message.clone();
            if let Some(h) = &d.help {
                text.push_str("\nhelp: ");
                text.push_str(h);
            }
            let mut primary =
                json!({ "physicalLocation": physical(&c.source, &lines, &d.primary) });
            if !d.primary.message.is_empty() {
                primary["message"] = json!({ "text": d.primary.message });
            }
            let related: Vec<Value> = d
                .related
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    json!({
                        "id": i,
                        "physicalLocation": physical(&c.source, &lines, l),
                        "message": { "text": l.message },
                    })
                })
                .collect();
            let mut result = json!({
                "ruleId": d.code,
                "level": level(d.severity),
                "message": { "text": text },
                "locations": [primary],
            });
            if let Some(i) = index {
                result["ruleIndex"] = json!(i);
            }
            if !related.is_empty() {
                result["relatedLocations"] = Value::Array(related);
            }
            results.push(result);
        }
    }
    let log = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "flowrun",
                    "version": env!("CARGO_PKG_VERSION"),
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "rules": rules(),
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    });
    let mut out = serde_json::to_string_pretty(&log).unwrap_or_else(|_| "{}".into());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::uri;

    #[test]
    fn full_description_is_the_what_it_finds_section() {
        let md = "# X\n\n## What it finds\n\nA thing\nthat fires.\n\n## Why\n\nno\n";
        assert_eq!(
            super::what_it_finds(md).as_deref(),
            Some("A thing that fires.")
        );
        assert_eq!(super::what_it_finds("# X\n"), None);
    }

    #[test]
    fn uri_escapes_reserved_characters() {
        assert_eq!(uri("examples/a_b-1.pf"), "examples/a_b-1.pf");
        assert_eq!(uri("my file%.pf"), "my%20file%25.pf");
        assert_eq!(uri("é.pf"), "%C3%A9.pf");
    }
}
