//! The corpus: `tests/corpus/*.pf` are topologies translated from real
//! deployments (Django + celery, nginx + gunicorn, Procfiles, Ray and dask
//! clusters, CI jobs, …), each opening with a comment naming what it
//! models. Every one must compile with no finding at all — a finding here
//! is a false positive of a rule on a correct real-world config, or a
//! corpus file that is wrong — and must plan within its shutdown budget.
//! Worker-source lint (FR500 onwards) is a CLI step and not involved.

use crate::support::{findings_in, load_pf, pf_files};
use flowrun::plan::{self, Scale};
use flowrun::source::SourceFile;
use std::path::{Path, PathBuf};

fn corpus() -> Vec<PathBuf> {
    pf_files("tests/corpus")
}

fn load(path: &Path) -> SourceFile {
    load_pf("tests/corpus", path)
}

#[test]
fn there_are_at_least_fifteen_commented_topologies() {
    let files = corpus();
    assert!(files.len() >= 15, "only {} corpus files", files.len());
    for path in &files {
        let text = load(path).text;
        assert!(
            text.starts_with("# ") && text.lines().next().is_some_and(|l| l.len() > 10),
            "{} must start with a `#` comment naming what it models",
            path.display()
        );
    }
}

#[test]
fn every_corpus_topology_is_free_of_findings() {
    let dirty = findings_in("tests/corpus");
    assert!(
        dirty.is_empty(),
        "findings in the corpus:\n{}",
        dirty.join("\n")
    );
}

#[test]
fn every_corpus_topology_plans_within_its_budget() {
    for path in corpus() {
        let compiled = flowrun::compile(load(&path), None);
        let model = compiled
            .model
            .as_ref()
            .unwrap_or_else(|| panic!("{} does not parse", path.display()));
        let built = plan::build(model, &Scale::new());
        let expected: usize = model.groups.iter().map(|g| g.processes as usize).sum();
        assert_eq!(built.processes.len(), expected, "{}", path.display());

        let text = plan::text(&built, &compiled.source, &compiled.diagnostics);
        assert!(
            text.contains("verdict  ok (within the budget)"),
            "{}: worst shutdown over budget:\n{text}",
            path.display()
        );
        let json = plan::json(&built, &compiled.source, &compiled.diagnostics);
        let v: serde_json::Value = serde_json::from_str(&json).expect("plan JSON is valid");
        assert_eq!(v["summary"]["processes"], expected, "{}", path.display());
        assert_eq!(
            v["worst_shutdown"]["within_budget"],
            true,
            "{}",
            path.display()
        );
        // No secret in the file, so none is redacted from its plan.
        assert!(!text.contains("<redacted>"), "{}", path.display());
    }
}
