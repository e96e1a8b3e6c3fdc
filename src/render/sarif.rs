//! `--format sarif`: SARIF 2.1.0 for code-scanning upload.
//!
//! One run; `tool.driver.rules` lists every rule of [`crate::rules::RULES`]
//! (so `ruleIndex` is the rule's position there); each finding is a result
//! with its primary region and related locations. Columns count Unicode
//! code points (`columnKind: unicodeCodePoints`), `endColumn` is exclusive.
//!
//! Artifact locations are URI references: a relative path is relative to
//! the `SRCROOT` base (the directory flowrun ran in; `./` is dropped), an
//! absolute path is a `file://` URI. A file that could not be read makes
//! the invocation unsuccessful, with one notification per such file.

use super::{LineIndex, Unreadable};
use crate::diagnostic::{Label, Severity};
use crate::rules::RULES;
use crate::Compiled;
use serde::Serialize;
use serde_json::{json, Value};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

/// The base relative paths are resolved against.
const SRCROOT: &str = "SRCROOT";

/// A path percent-encoded for a URI: unreserved characters and `/` stay,
/// everything else is percent-encoded (UTF-8 bytes).
fn encode(name: &str) -> String {
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

/// The artifact location of a file name: `file:///abs/path` for an
/// absolute path, else a relative reference with `uriBaseId: SRCROOT`.
fn artifact_of(name: &str) -> Artifact {
    if name.starts_with('/') {
        Artifact {
            uri: format!("file://{}", encode(name)),
            uri_base_id: None,
        }
    } else {
        let mut rel = name;
        while let Some(rest) = rel.strip_prefix("./") {
            rel = rest.trim_start_matches('/');
        }
        Artifact {
            uri: encode(rel),
            uri_base_id: Some(SRCROOT),
        }
    }
}

/// [`artifact_of`] as a JSON value.
fn artifact(name: &str) -> Value {
    serde_json::to_value(artifact_of(name)).unwrap_or(Value::Null)
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

/// The SARIF 2.1.0 log for every file's findings (pretty JSON + newline);
/// `unreadable` files make the invocation unsuccessful.
pub fn sarif(files: &[Compiled], unreadable: &[Unreadable]) -> String {
    let mut results = Vec::new();
    for c in files {
        let lines = LineIndex::new(&c.source);
        let artifact = artifact_of(&c.source.name);
        // A label in another file (a worker's related location) points at
        // that file.
        let location = |l: &Label, id: Option<usize>, message: Option<Text>| {
            let (artifact_location, region) = match super::elsewhere(l) {
                Some((name, r)) => (artifact_of(name), region_json(r)),
                None => (artifact.clone(), region(&lines, l)),
            };
            Location {
                id,
                message,
                physical_location: Physical {
                    artifact_location,
                    region,
                },
            }
        };
        for d in &c.diagnostics {
            let mut text = d.message.clone();
            if let Some(h) = &d.help {
                text.push_str("\nhelp: ");
                text.push_str(h);
            }
            let primary_message =
                (!d.primary.message.is_empty()).then(|| Text::new(&d.primary.message));
            results.push(SarifResult {
                level: level(d.severity),
                locations: vec![location(&d.primary, None, primary_message)],
                message: Text { text },
                related_locations: d
                    .related
                    .iter()
                    .enumerate()
                    .map(|(i, l)| location(l, Some(i), Some(Text::new(&l.message))))
                    .collect(),
                rule_id: d.code,
                rule_index: RULES.iter().position(|r| r.code == d.code),
            });
        }
    }
    let log = Log {
        schema: SCHEMA,
        runs: [Run {
            column_kind: "unicodeCodePoints",
            invocations: [invocation(unreadable)],
            original_uri_base_ids: json!({
                SRCROOT: { "description": { "text": "The directory flowrun was run in." } }
            }),
            results,
            tool: json!({
                "driver": {
                    "name": "flowrun",
                    "version": env!("CARGO_PKG_VERSION"),
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "rules": rules(),
                }
            }),
        }],
        version: "2.1.0",
    };
    let mut out = serde_json::to_string_pretty(&log).unwrap_or_else(|_| "{}".into());
    out.push('\n');
    out
}

// Typed results (a report can hold hundreds of thousands of locations);
// fields in alphabetical order, as the rest of the log is printed.

#[derive(Serialize)]
struct Log {
    #[serde(rename = "$schema")]
    schema: &'static str,
    runs: [Run; 1],
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Run {
    column_kind: &'static str,
    invocations: [Value; 1],
    original_uri_base_ids: Value,
    results: Vec<SarifResult>,
    tool: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    level: &'static str,
    locations: Vec<Location>,
    message: Text,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related_locations: Vec<Location>,
    rule_id: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_index: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Text>,
    physical_location: Physical,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Physical {
    artifact_location: Artifact,
    region: RegionJ,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Artifact {
    uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri_base_id: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RegionJ {
    end_column: usize,
    end_line: usize,
    start_column: usize,
    start_line: usize,
}

#[derive(Serialize)]
struct Text {
    text: String,
}

impl Text {
    fn new(s: &str) -> Self {
        Text {
            text: s.to_string(),
        }
    }
}

fn region(lines: &LineIndex, l: &Label) -> RegionJ {
    region_json(lines.region(l.span))
}

fn region_json(r: super::Region) -> RegionJ {
    RegionJ {
        end_column: r.end_column,
        end_line: r.end_line,
        start_column: r.column,
        start_line: r.line,
    }
}

/// The one invocation: successful unless a file could not be read.
fn invocation(unreadable: &[Unreadable]) -> Value {
    let notes: Vec<Value> = unreadable
        .iter()
        .map(|u| {
            json!({
                "level": "error",
                "message": { "text": u.message },
                "locations": [{ "physicalLocation": { "artifactLocation": artifact(&u.name) } }],
            })
        })
        .collect();
    let mut inv = json!({ "executionSuccessful": notes.is_empty() });
    if !notes.is_empty() {
        inv["toolExecutionNotifications"] = Value::Array(notes);
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::{artifact, encode as uri};
    use serde_json::json;

    #[test]
    fn relative_paths_use_srcroot_and_absolute_ones_file_uris() {
        assert_eq!(
            artifact("./a/b c.pf"),
            json!({"uri": "a/b%20c.pf", "uriBaseId": "SRCROOT"})
        );
        assert_eq!(
            artifact("../x.pf"),
            json!({"uri": "../x.pf", "uriBaseId": "SRCROOT"})
        );
        assert_eq!(
            artifact("/srv/é.pf"),
            json!({"uri": "file:///srv/%C3%A9.pf"})
        );
    }

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
