//! Every `examples/*.pf` is compiled, must be lint-clean (no finding at
//! all, as under `flowrun lint --deny warnings`), and has its plan
//! snapshotted in text and JSON form (snapshots/plan_text@NAME.snap,
//! snapshots/plan_json@NAME.snap). Examples are picked up automatically.

use crate::support::{findings_in, load_pf, pf_files};
use flowrun::plan::{self, Scale};
use flowrun::source::SourceFile;
use std::path::{Path, PathBuf};

fn examples() -> Vec<PathBuf> {
    pf_files("examples")
}

fn load(path: &Path) -> SourceFile {
    load_pf("examples", path)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .expect("file stem")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn there_are_at_least_six_examples() {
    let names: Vec<String> = examples().iter().map(|p| stem(p)).collect();
    assert!(names.len() >= 6, "only {names:?}");
    for required in ["crawler", "shop", "integration", "celery-ladder", "ingest"] {
        assert!(names.iter().any(|n| n == required), "missing {required}");
    }
}

#[test]
fn every_example_is_lint_clean() {
    let dirty = findings_in("examples");
    assert!(
        dirty.is_empty(),
        "findings in examples:\n{}",
        dirty.join("\n")
    );
}

#[test]
fn every_example_has_a_commented_header() {
    for path in examples() {
        let text = load(&path).text;
        let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
        assert!(
            header.len() >= 2,
            "{} needs a `#` comment header saying what it shows",
            path.display()
        );
    }
}

#[test]
fn every_example_plan_is_snapshotted_and_deterministic() {
    for path in examples() {
        let name = stem(&path);
        let compiled = flowrun::compile(load(&path), None);
        let model = compiled
            .model
            .as_ref()
            .unwrap_or_else(|| panic!("{} does not parse", path.display()));
        let built = plan::build(model, &Scale::new());
        let text = plan::text(&built, &compiled.source, &compiled.diagnostics);
        let json = plan::json(&built, &compiled.source, &compiled.diagnostics);

        // Byte-for-byte the same from a fresh compile and build.
        let again = flowrun::compile(load(&path), None);
        let model2 = again.model.as_ref().expect("parses twice");
        let built2 = plan::build(model2, &Scale::new());
        assert_eq!(
            text,
            plan::text(&built2, &again.source, &again.diagnostics),
            "{name}: text differs between two builds"
        );
        assert_eq!(
            json,
            plan::json(&built2, &again.source, &again.diagnostics),
            "{name}: json differs between two builds"
        );
        assert_eq!(plan::diff(&text, &text, "committed"), None);

        // The JSON is valid and agrees with the text's header.
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v["schema_version"], plan::SCHEMA_VERSION);
        assert_eq!(v["summary"]["processes"], built.processes.len());
        assert!(
            text.contains(&format!("  processes        {}\n", built.processes.len())),
            "{name}: text header"
        );
        // Lint-clean examples stay within their budget.
        assert_eq!(v["worst_shutdown"]["within_budget"], true, "{name}");

        insta::with_settings!({snapshot_path => "../../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(format!("plan_text@{name}"), text);
            insta::assert_snapshot!(format!("plan_json@{name}"), json);
        });
    }
}
