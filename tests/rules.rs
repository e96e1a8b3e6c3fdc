//! Every rule, proved by fixtures: for each code there is a
//! `tests/fixtures/frNNN_name.pf` that fires it and a `frNNN_name_ok.pf`
//! near miss that must not. Both are compiled (against a fixed host, so
//! FR205 is checked too) and their human and JSON reports are snapshotted
//! in `snapshots/`. A completeness test fails if any rule lacks a fixture,
//! a near miss, a snapshot or an explain text.

use flowrun::host::HostLimits;
use flowrun::rules::RULES;
use flowrun::source::SourceFile;
use flowrun::{compile, render, Compiled};
use std::path::{Path, PathBuf};

const FIXTURES: &str = "tests/fixtures";
const SNAPSHOTS: &str = "snapshots";

/// The host every fixture is checked against: small enough for the FR205
/// fixture to exceed it, large enough for the others to fit.
fn test_host() -> HostLimits {
    HostLimits {
        cpus: 2,
        nofile_soft: 1024,
        nofile_hard: 4096,
        nproc_soft: 4096,
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every fixture's stem, sorted.
fn fixtures() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root().join(FIXTURES))
        .expect("tests/fixtures exists")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "pf").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    out.sort();
    out
}

/// `fr302_double_delivery` for FR302 double-delivery.
fn fixture_stem(code: &str, name: &str) -> String {
    format!("{}_{}", code.to_lowercase(), name.replace('-', "_"))
}

fn compile_fixture(stem: &str) -> Compiled {
    let rel = format!("{FIXTURES}/{stem}.pf");
    let text = std::fs::read_to_string(root().join(&rel)).expect("fixture is readable");
    compile(SourceFile::new(rel, text), Some(&test_host()))
}

fn codes(c: &Compiled) -> Vec<&'static str> {
    c.diagnostics.iter().map(|d| d.code).collect()
}

#[test]
fn every_fixture_fires_its_rule_and_every_near_miss_does_not() {
    let mut failures = Vec::new();
    for stem in fixtures() {
        let code = stem.get(..5).unwrap_or("").to_uppercase();
        let compiled = compile_fixture(&stem);
        let found = codes(&compiled);
        let near_miss = stem.ends_with("_ok");
        if near_miss == found.contains(&code.as_str()) {
            failures.push(format!(
                "{stem}: expected {code} {}, found {found:?}",
                if near_miss { "absent" } else { "present" }
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fixture_reports_match_snapshots() {
    for stem in fixtures() {
        let compiled = compile_fixture(&stem);
        let human = render::human(&compiled.source, &compiled.diagnostics, 100, false);
        let json = render::json(std::slice::from_ref(&compiled));
        insta::with_settings!({
            snapshot_path => "../snapshots",
            prepend_module_to_snapshot => false,
            description => format!("{FIXTURES}/{stem}.pf"),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format!("{stem}.human"), human);
            insta::assert_snapshot!(format!("{stem}.json"), json);
        });
    }
}

#[test]
fn every_fixture_starts_with_a_comment_and_belongs_to_a_rule() {
    for stem in fixtures() {
        let text =
            std::fs::read_to_string(root().join(FIXTURES).join(format!("{stem}.pf"))).unwrap();
        assert!(
            text.starts_with("# "),
            "{stem}.pf must start with a comment saying what it shows"
        );
        let base = stem.strip_suffix("_ok").unwrap_or(&stem);
        assert!(
            RULES.iter().any(|r| fixture_stem(r.code, r.name) == base),
            "{stem}.pf is not named after a rule (frNNN_rule_name[_ok].pf)"
        );
    }
}

#[test]
fn every_rule_has_fixtures_snapshots_and_an_explanation() {
    let mut missing = Vec::new();
    for rule in RULES {
        let base = fixture_stem(rule.code, rule.name);
        for s in [base.clone(), format!("{base}_ok")] {
            let fixture = root().join(FIXTURES).join(format!("{s}.pf"));
            if !fixture.is_file() {
                missing.push(format!("{}: no fixture {}", rule.code, rel(&fixture)));
            }
            for kind in ["human", "json"] {
                let snap = root().join(SNAPSHOTS).join(format!("{s}.{kind}.snap"));
                if !snap.is_file() {
                    missing.push(format!("{}: no snapshot {}", rule.code, rel(&snap)));
                }
            }
        }
        let title = format!("# {} {} ({})", rule.code, rule.name, rule.severity.as_str());
        if rule.explain.lines().next() != Some(title.as_str()) {
            missing.push(format!(
                "{}: explain text must start with `{title}`",
                rule.code
            ));
        }
        for section in [
            "## What it finds",
            "## Why it is a problem",
            "## Example",
            "## Fix",
            "## Suppress",
        ] {
            if !rule.explain.contains(section) {
                missing.push(format!("{}: explain text lacks `{section}`", rule.code));
            }
        }
        if rule.explain.len() < 600 || !rule.explain.contains("```pf") {
            missing.push(format!(
                "{}: explain text is too thin (needs prose and a .pf example)",
                rule.code
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// Every finding of every fixture points inside the file with a non-empty
/// label, and every hazard finding has a help line.
#[test]
fn findings_have_spans_labels_and_help() {
    for stem in fixtures() {
        let compiled = compile_fixture(&stem);
        let len = compiled.source.text.len();
        for d in &compiled.diagnostics {
            assert!(
                d.primary.span.end <= len,
                "{stem}: {} span past the end",
                d.code
            );
            assert!(
                !d.primary.message.is_empty(),
                "{stem}: {} has no label",
                d.code
            );
            for r in &d.related {
                assert!(
                    r.span.end <= len,
                    "{stem}: {} related span past the end",
                    d.code
                );
            }
            // FR001 and FR101–FR104 belong to the parser and resolver.
            if d.code == "FR002" || d.code.as_bytes().get(2).is_some_and(|&b| b >= b'2') {
                assert!(d.help.is_some(), "{stem}: {} has no help line", d.code);
            }
        }
    }
}

/// A generated topology of `n` groups: chains of ten (`after` the previous
/// group), ports, ladders, `sh` and `run` commands, and handlers that name
/// many groups.
fn generated(n: usize) -> String {
    let mut s = String::from("topology big {\n  shutdown within 10m\n  on SIGUSR1 {\n");
    for i in (0..n).step_by(97) {
        s += &format!("    forward SIGTERM to g{i}\n    wait g{i} within 30s\n    restart g{i}\n");
    }
    s += "  }\n";
    for i in 0..n {
        s += &format!("  group g{i} {{\n");
        if i % 2 == 0 {
            s += "    run \"server --port {port} --name {group}-{index}\"\n";
        } else {
            s += "    sh \"cd app && exec server --id {index}\"\n";
        }
        s += &format!("    processes 2\n    port {}\n", 1024 + (i * 2) % 60000);
        if i % 10 != 0 {
            s += &format!("    after g{}\n", i - 1);
        }
        s += "    stop SIGTERM drain 2s then SIGQUIT drain 1s\n  }\n";
    }
    s += "}\n";
    s
}

/// `cargo test --release --test rules -- --ignored --nocapture`: time the
/// rules alone (parse and resolve excluded) at 5,000 and 50,000 groups.
/// Ten times the groups must cost far less than a hundred times the time.
#[test]
#[ignore = "timing; run by hand"]
fn rules_scale_near_linearly() {
    let mut times = Vec::new();
    for n in [5_000, 50_000] {
        let src = SourceFile::new("big.pf", generated(n));
        let (file, diags) = flowrun::parse::parse(&src);
        let file = file.unwrap_or_else(|| panic!("generated topology parses: {diags:?}"));
        let (model, _) = flowrun::resolve::resolve(&src, &file);
        let host = test_host();
        let start = std::time::Instant::now();
        let found = flowrun::check::check(&src, &file, &model, Some(&host));
        let took = start.elapsed();
        println!("{n} groups: {} findings in {took:?}", found.len());
        times.push(took.as_secs_f64());
    }
    assert!(times[1] < times[0] * 30.0, "not near-linear: {times:?}");
}
