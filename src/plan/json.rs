//! `flowrun plan --format json`: the [`Plan`] itself, serialised
//! (docs/plan-json.md). The model types derive `Serialize` (their module
//! docs give the conventions), so a field added to a group, a handler or a
//! process appears in the JSON without a change here. This file holds the
//! one hand-written impl, [`Plan`]'s, which adds what a reader needs next
//! to the shutdown path (each ladder's total, the budget and the verdict,
//! all exact), and the document around the plan: the schema version, a
//! summary and the findings.

use super::{exact, ladder_ms, ExactMs, Plan, ShutdownPath};
use crate::diagnostic::{Diagnostic, Severity};
use crate::model::{GroupId, Sig, Topology};
use crate::source::SourceFile;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

/// The version of the document's shape; bumped on any incompatible change
/// (2: the document became the serialised `Plan`).
pub const SCHEMA_VERSION: u32 = 2;

/// Milliseconds, or the string `"forever"`, like [`Timeout`].
struct Ms(ExactMs);

impl Serialize for Ms {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(ms) => s.serialize_u128(ms),
            None => s.serialize_str("forever"),
        }
    }
}

/// `worst_shutdown`: the path with each ladder's total, the exact sum, the
/// budget and whether the sum fits in it.
struct Worst<'a> {
    topology: &'a Topology,
    path: &'a ShutdownPath,
}

impl Serialize for Worst<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct OnPath {
            group: GroupId,
            stop_total_ms: Ms,
        }
        let t = self.topology;
        let groups: Vec<OnPath> = self
            .path
            .groups
            .iter()
            .map(|&g| OnPath {
                group: g,
                stop_total_ms: Ms(ladder_ms(t, g)),
            })
            .collect();
        let total = super::path_ms(t, self.path);
        let budget = exact(t.shutdown_within);
        let within = super::within(total, budget);
        let mut st = s.serialize_struct("WorstShutdown", 4)?;
        st.serialize_field("groups", &groups)?;
        st.serialize_field("total_ms", &Ms(total))?;
        st.serialize_field("budget_ms", &Ms(budget))?;
        st.serialize_field("within_budget", &within)?;
        st.end()
    }
}

impl Serialize for Plan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Named one by one so that a new field of `Plan` is a compile
        // error here until it is serialised (or deliberately left out).
        let Plan {
            topology,
            containment,
            start_stages,
            stop_stages,
            worst_shutdown,
            processes,
        } = self;
        // The overview first (what a reviewer checks), then the
        // definitions the ids refer to, then every process.
        let mut st = s.serialize_struct("Plan", 6)?;
        st.serialize_field("containment", containment)?;
        st.serialize_field("start_stages", start_stages)?;
        st.serialize_field("stop_stages", stop_stages)?;
        st.serialize_field(
            "worst_shutdown",
            &Worst {
                topology,
                path: worst_shutdown,
            },
        )?;
        st.serialize_field("topology", topology)?;
        st.serialize_field("processes", processes)?;
        st.end()
    }
}

/// The whole document: the version, a summary, the plan's fields, the
/// findings.
#[derive(Serialize)]
struct Doc<'a> {
    schema_version: u32,
    summary: Summary,
    #[serde(flatten)]
    plan: &'a Plan,
    findings: Vec<Finding<'a>>,
}

/// Facts derived from the plan that a reader would otherwise compute.
#[derive(Serialize)]
struct Summary {
    groups: usize,
    processes: usize,
    /// Σ processes × coroutines, exact (at most 2^18 processes × 2^32).
    coroutine_slots: u64,
    /// Signals whose handler drains the whole topology: the ones a repeat
    /// escalates under `escalate on-repeat`.
    drain_signals: Vec<Sig>,
}

#[derive(Serialize)]
struct Finding<'a> {
    code: &'a str,
    name: &'a str,
    severity: Severity,
    message: &'a str,
    line: usize,
    column: usize,
}

/// The plan as pretty JSON (docs/plan-json.md), ending with a newline.
pub fn json(plan: &Plan, source: &SourceFile, findings: &[Diagnostic]) -> String {
    let t = &plan.topology;
    let index = crate::render::LineIndex::new(source);
    let doc = Doc {
        schema_version: SCHEMA_VERSION,
        summary: Summary {
            groups: t.groups.len(),
            processes: plan.processes.len(),
            coroutine_slots: super::coroutine_slots(plan),
            drain_signals: super::text::drain_signals(t),
        },
        plan,
        findings: findings
            .iter()
            .map(|d| {
                let (line, column) = index.line_col(d.primary.span.start);
                Finding {
                    code: d.code,
                    name: crate::rules::by_code(d.code).map_or("", |r| r.name),
                    severity: d.severity,
                    message: &d.message,
                    line,
                    column,
                }
            })
            .collect(),
    };
    // Serialising to a string cannot fail: every map key is a string.
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_else(|e| {
        serde_json::json!({"schema_version": SCHEMA_VERSION, "error": e.to_string()}).to_string()
    });
    out.push('\n');
    out
}
