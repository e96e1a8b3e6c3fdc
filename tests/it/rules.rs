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
            snapshot_path => "../../snapshots",
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
    // The worker-source rules (FR5xx) are proved on Python fixtures
    // (tests/it/pysrc.rs), not on topology fixtures.
    for rule in RULES.iter().filter(|r| !r.code.starts_with("FR5")) {
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
    for n in [5_000, 50_000, 100_000] {
        let src = SourceFile::new("big.pf", generated(n));
        let (file, diags) = flowrun::parse::parse(&src);
        let file = file.unwrap_or_else(|| panic!("generated topology parses: {diags:?}"));
        let (model, _) = flowrun::resolve::resolve(&src, &file);
        let host = test_host();
        // The best of three runs: the machine may be busy.
        let mut took = std::time::Duration::MAX;
        let mut found = Vec::new();
        for _ in 0..3 {
            let start = std::time::Instant::now();
            found = flowrun::check::check(&src, &file, &model, Some(&host));
            took = took.min(start.elapsed());
        }
        println!("{n} groups: {} findings in {took:?}", found.len());
        times.push(took.as_secs_f64());
    }
    assert!(times[1] < times[0] * 30.0, "not near-linear: {times:?}");
    assert!(times[2] < times[1] * 3.0, "not near-linear: {times:?}");
}

/// The codes found in a one-off source (against the fixed test host).
fn codes_in(text: &str) -> Vec<&'static str> {
    let c = compile(SourceFile::new("case.pf", text), Some(&test_host()));
    codes(&c)
}

/// Small cases pinning each rule's edges: (source, codes that must be
/// found, codes that must not).
#[test]
fn rule_edge_cases() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        // FR201: a group waiting for itself is a cycle.
        (
            r#"topology t { group a { run "x"; after a } }"#,
            &["FR201"],
            &[],
        ),
        // FR202: `exited` is unreachable only with `restart always`.
        (
            r#"topology t { group s { run "x"; restart always limit 3 per 1m }; group d { run "y"; after s exited } }"#,
            &["FR202"],
            &[],
        ),
        (
            r#"topology t { group s { run "x"; restart on-failure }; group d { run "y"; after s exited } }"#,
            &[],
            &["FR202"],
        ),
        // FR203: three default ladders (10s each) in a chain fit the
        // default 30s budget exactly; four do not.
        (
            r#"topology t { group a { run "x" }; group b { run "x"; after a }; group c { run "x"; after b } }"#,
            &[],
            &["FR203"],
        ),
        (
            r#"topology t { group a { run "x" }; group b { run "x"; after a }; group c { run "x"; after b }; group d { run "x"; after c } }"#,
            &["FR203"],
            &[],
        ),
        // FR203 + FR304: a forever ladder against a finite budget.
        (
            r#"topology t { group a { run "x"; stop SIGTERM drain forever } }"#,
            &["FR203", "FR304"],
            &[],
        ),
        // FR203: ladders whose sum overflows a Duration do not panic.
        (
            r#"topology t { group a { run "x"; stop SIGTERM drain 18446744073709551615ms then SIGQUIT drain 18446744073709551615ms }; group b { run "x"; after a; stop SIGTERM drain 18446744073709551615ms } }"#,
            &["FR203"],
            &[],
        ),
        // FR204: a long range overlapping two later ones.
        (
            r#"topology t { group a { run "x"; processes 10; port 8000 }; group b { run "x"; port 8005 }; group c { run "x"; port 8008 } }"#,
            &["FR204"],
            &[],
        ),
        // FR205: more processes than RLIMIT_NPROC (4096 on the test host).
        (
            r#"topology t { group a { run "x"; processes 3000 }; group b { run "x"; processes 3000 } }"#,
            &["FR205"],
            &[],
        ),
        // FR301: `within forever` is no deadline.
        (
            r#"topology t { on SIGUSR1 { drain a; wait a within forever }; group a { run "x" } }"#,
            &["FR301"],
            &[],
        ),
        // FR302: a restart on SIGINT stops the shared group too …
        (
            r#"topology t { on SIGINT restart web; group web { run "x"; process-group shared } }"#,
            &["FR302"],
            &[],
        ),
        // … while ignoring SIGINT does not.
        (
            r#"topology t { on SIGINT ignore; group web { run "x"; process-group shared } }"#,
            &[],
            &["FR302"],
        ),
        // FR303: container detach, setsid behind exec, nohup behind env, --fork.
        (
            r#"topology t { group a { run "docker run -d nginx" } }"#,
            &["FR303"],
            &[],
        ),
        (
            r#"topology t { group a { sh "exec setsid foo" } }"#,
            &["FR303"],
            &[],
        ),
        (
            r#"topology t { group a { run "env FOO=1 nohup foo" } }"#,
            &["FR303"],
            &[],
        ),
        (
            r#"topology t { group a { run "mongod --fork" } }"#,
            &["FR303"],
            &[],
        ),
        // … also inside a `sh -c '…'` run without flowrun's `sh`.
        (
            r#"topology t { group a { run "bash -ec 'python a.py &'" } }"#,
            &["FR303"],
            &[],
        ),
        (
            r#"topology t { group a { run "sh -c 'exec python a.py'" } }"#,
            &[],
            &["FR303"],
        ),
        // … but not `ls -d`, `--daemon=false` or redirections.
        (
            r#"topology t { group a { run "ls -d /tmp"; once } }"#,
            &[],
            &["FR303"],
        ),
        (
            r#"topology t { group a { run "app --daemon=false" } }"#,
            &[],
            &["FR303"],
        ),
        (
            r#"topology t { group a { sh "exec app >/dev/null 2>&1" } }"#,
            &[],
            &["FR303", "FR402"],
        ),
        // FR305: draining some groups is not a graceful stop of the topology.
        (
            r#"topology t { on SIGTERM drain a; on SIGINT drain a; group a { run "x" } }"#,
            &["FR305"],
            &[],
        ),
        // FR306: SIGSTOP as a handler and as a ladder step.
        (
            r#"topology t { on SIGSTOP ignore; group a { run "x"; stop SIGSTOP drain 1s then SIGTERM drain 1s } }"#,
            &["FR306"],
            &[],
        ),
        // FR307: zero backoff with on-failure.
        (
            r#"topology t { group a { run "x"; restart on-failure backoff 0s..1s limit 3 per 1m } }"#,
            &["FR307"],
            &[],
        ),
        // FR309: forwarding SIGTERM (the default ladder's signal) on SIGTERM…
        (
            r#"topology t { on SIGTERM forward to w; group w { run "x" } }"#,
            &["FR309"],
            &[],
        ),
        // … but not when the same handler drains the group.
        (
            r#"topology t { on SIGUSR1 { forward SIGTERM to w; drain w }; group w { run "x" } }"#,
            &[],
            &["FR309"],
        ),
        // FR401: expansions inside double quotes count, inside single quotes not.
        (
            r#"topology t { group a { run "echo \"$HOME\""; once } }"#,
            &["FR401"],
            &[],
        ),
        (
            r#"topology t { group a { run "echo '$HOME'"; once } }"#,
            &[],
            &["FR401"],
        ),
        (r#"topology t { group a { run "a;b" } }"#, &["FR401"], &[]),
        (
            r#"topology t { group a { run "app > out.log" } }"#,
            &["FR401"],
            &[],
        ),
        // FR402: `exec` with only redirections does not replace the shell;
        // a real command before the final exec is reported; `to group` is fine.
        (
            r#"topology t { group a { sh "exec 2>&1" } }"#,
            &["FR402"],
            &[],
        ),
        (
            r#"topology t { group a { sh "A=1 exec foo" } }"#,
            &[],
            &["FR402"],
        ),
        (
            r#"topology t { group a { sh "python m.py && exec foo" } }"#,
            &["FR402"],
            &[],
        ),
        (
            r#"topology t { group a { sh "a | b"; stop SIGTERM drain 5s to group } }"#,
            &[],
            &["FR402"],
        ),
        // Allows: group scope suppresses only inside its group.
        (
            r#"topology t { group a { run "x"; die-with-parent no; allow orphan-risk }; group b { run "x"; die-with-parent no } }"#,
            &["FR303"],
            &["FR002"],
        ),
        // An allow by name at topology scope suppresses everywhere.
        (
            r#"topology t { allow orphan-risk because "tested"; group a { run "x"; die-with-parent no }; group b { run "x"; die-with-parent no } }"#,
            &[],
            &["FR303", "FR002"],
        ),
        // An unused group allow is reported; an unused `allow capacity` is not.
        (
            r#"topology t { allow capacity; group a { run "x"; allow FR304 } }"#,
            &["FR002"],
            &[],
        ),
        (
            r#"topology t { allow capacity; group a { run "x" } }"#,
            &[],
            &["FR002"],
        ),
        // Resolution errors cannot be allowed away.
        (
            r#"topology t { allow FR101; group a { run "x"; after b } }"#,
            &["FR101", "FR002"],
            &[],
        ),
    ];
    let mut failures = Vec::new();
    for (src, present, absent) in cases {
        let found = codes_in(src);
        if found.contains(&"FR001") {
            failures.push(format!("does not parse: {src}"));
        }
        for c in *present {
            if !found.contains(c) {
                failures.push(format!("expected {c} in {src}\n  found {found:?}"));
            }
        }
        for c in *absent {
            if found.contains(c) {
                failures.push(format!("did not expect {c} in {src}\n  found {found:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The group-scope allow test above, counted: exactly one FR303 remains.
#[test]
fn group_allow_leaves_other_groups_alone() {
    let found = codes_in(
        r#"topology t { group a { run "x"; die-with-parent no; allow orphan-risk }; group b { run "x"; die-with-parent no } }"#,
    );
    assert_eq!(
        found.iter().filter(|&&c| c == "FR303").count(),
        1,
        "{found:?}"
    );
}

/// The first ```pf block after `heading` in an explain text.
fn pf_block<'a>(explain: &'a str, heading: &str) -> Option<&'a str> {
    let rest = &explain[explain.find(heading)?..];
    let start = rest.find("```pf\n")? + "```pf\n".len();
    let len = rest[start..].find("```")?;
    Some(&rest[start..start + len])
}

/// The explain texts tell the truth: each rule's "Example" fires it and its
/// "Fix" is lint-clean (checked against the same fixed host as the fixtures).
#[test]
fn explain_examples_fire_and_fixes_do_not() {
    let mut failures = Vec::new();
    // Worker-source rules (FR5xx) show Python, proved in tests/it/pysrc.rs.
    for rule in RULES.iter().filter(|r| !r.code.starts_with("FR5")) {
        let (Some(example), Some(fix)) = (
            pf_block(rule.explain, "## Example"),
            pf_block(rule.explain, "## Fix"),
        ) else {
            failures.push(format!("{}: no ```pf example or fix", rule.code));
            continue;
        };
        let found = codes_in(example);
        if !found.contains(&rule.code) {
            failures.push(format!(
                "{}: the example does not fire it: {found:?}",
                rule.code
            ));
        }
        let found = codes_in(fix);
        if found.contains(&rule.code) {
            failures.push(format!("{}: the fix still fires it: {found:?}", rule.code));
        }
        if !found.is_empty() {
            failures.push(format!(
                "{}: the fix is not lint-clean: {found:?}",
                rule.code
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Primary spans are exact: pinned line, column and covered text for one
/// finding per kind of rule (topology, signal, inside a string literal).
#[test]
fn spans_are_exact() {
    let cases = [
        (
            "fr203_drain_exceeds_budget",
            "FR203",
            (4, 3),
            "shutdown within 45s",
        ),
        (
            "fr302_double_delivery",
            "FR302",
            (9, 5),
            "process-group shared",
        ),
        ("fr306_uncatchable_signal", "FR306", (4, 6), "SIGKILL"),
        ("fr401_shell_syntax_in_run", "FR401", (5, 39), "$LOG_DIR"),
        (
            "fr402_shell_swallows_stop",
            "FR402",
            (5, 37),
            "tee -a api.log",
        ),
        ("fr303_orphan_risk", "FR303", (5, 23), "--daemonize"),
    ];
    for (stem, code, line_col, text) in cases {
        let c = compile_fixture(stem);
        let d = c
            .diagnostics
            .iter()
            .find(|d| d.code == code)
            .unwrap_or_else(|| panic!("{stem}: no {code}"));
        assert_eq!(
            c.source.line_col(d.primary.span.start),
            line_col,
            "{stem}: {code}"
        );
        assert_eq!(c.source.slice(d.primary.span), text, "{stem}: {code}");
    }
}

const CASES: &str = "tests/fixtures/cases";

/// The codes a case fixture's second line promises: `# expect: FR001`,
/// `# expect: FR102 FR104` or `# expect: none`.
fn expected_codes(text: &str) -> Vec<String> {
    let line = text.lines().nth(1).unwrap_or("");
    let list = line
        .strip_prefix("# expect:")
        .unwrap_or_else(|| panic!("second line must be `# expect: …`, not {line:?}"));
    list.split_whitespace()
        .filter(|c| *c != "none")
        .map(str::to_string)
        .collect()
}

/// `tests/fixtures/cases/`: the language's mistakes people actually make,
/// and the edges of rules, one file each. Each starts with a comment
/// saying what it shows and a `# expect:` line with the codes it must
/// produce (exactly that set); a syntax error must come with a help line.
/// The human report of each is snapshotted (`snapshots/case_NAME.snap`).
#[test]
fn case_fixtures_find_what_they_expect_and_match_snapshots() {
    let dir = root().join(CASES);
    let mut stems: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/cases exists")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "pf").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    stems.sort();
    assert!(stems.len() >= 30, "only {} case fixtures", stems.len());
    let mut failures = Vec::new();
    for stem in &stems {
        let rel = format!("{CASES}/{stem}.pf");
        let text = std::fs::read_to_string(root().join(&rel)).unwrap();
        assert!(text.starts_with("# "), "{rel} must start with a comment");
        let want = expected_codes(&text);
        let compiled = compile(SourceFile::new(rel.clone(), text), Some(&test_host()));
        let mut found: Vec<String> = codes(&compiled).iter().map(|c| c.to_string()).collect();
        found.sort();
        found.dedup();
        if found != want {
            failures.push(format!("{rel}: expected {want:?}, found {found:?}"));
        }
        for d in &compiled.diagnostics {
            if d.code == "FR001" && d.help.is_none() {
                failures.push(format!("{rel}: FR001 without help: {}", d.message));
            }
        }
        let human = render::human(&compiled.source, &compiled.diagnostics, 100, false);
        insta::with_settings!({
            snapshot_path => "../../snapshots",
            prepend_module_to_snapshot => false,
            description => rel.clone(),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format!("case_{stem}"), human);
        });
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Env files: topology scope, then group scope, then `env { }`; the merged
/// environment is what the plan (and so `up`) gives every process.
#[test]
fn env_files_merge_in_precedence_order_into_the_plan() {
    let rel = format!("{CASES}/env_file.pf");
    let text = std::fs::read_to_string(root().join(&rel)).unwrap();
    let compiled = compile(SourceFile::new(rel, text), None);
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    let plan = flowrun::plan::build(compiled.model.as_ref().unwrap(), &Default::default());
    let env: Vec<(&str, &str)> = plan.processes[0]
        .env
        .iter()
        .filter(|(k, _)| !k.starts_with("FLOWRUN_"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("LOG_LEVEL", "debug"),
            ("APP_NAME", "api"),
            ("HOME_DIR", "$HOME"),
            ("WORKERS", "4"),
        ]
    );
    // The plan says where the values come from, in precedence order.
    let text = flowrun::plan::text(&plan, &compiled.source, &compiled.diagnostics);
    assert!(
        text.contains(
            "env files        env/common.env, env/api.env, then `env { }` (a later value wins)"
        ),
        "{text}"
    );
    // Without the files (`compile_with` reading nothing), each is a finding.
    let text = std::fs::read_to_string(root().join(CASES).join("env_file.pf")).unwrap();
    let c = flowrun::compile_with(SourceFile::new("x.pf", text), None, &|p: &str| {
        Err(format!("{p} is not here"))
    });
    assert_eq!(codes(&c), ["FR104", "FR104"]);
    // Only regular files are read (not a device that never ends).
    let c = compile(
        SourceFile::new(
            "x.pf",
            "topology t {\n  env-file \"/dev/zero\"\n  group a { run \"x\" }\n}\n",
        ),
        None,
    );
    assert_eq!(codes(&c), ["FR104"]);
    assert!(c.diagnostics[0].message.ends_with("not a regular file"));
}

/// A final bare SIGKILL (or `SIGKILL drain 0s`) is the ladder's own final
/// SIGKILL: it is not a step of its own, so the plan shows SIGKILL once.
#[test]
fn a_final_sigkill_is_not_an_extra_step() {
    for ladder in [
        "SIGTERM drain 20s then SIGKILL",
        "SIGTERM drain 20s then SIGKILL drain 0s",
    ] {
        let text = format!("topology t {{\n group a {{\n  run \"x\"\n  stop {ladder}\n }}\n}}\n");
        let c = compile(SourceFile::new("t.pf", text), None);
        assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
        let g = &c.model.as_ref().unwrap().groups[0];
        assert_eq!(g.stop.steps.len(), 1, "{ladder}");
        let plan = flowrun::plan::build(c.model.as_ref().unwrap(), &Default::default());
        let text = flowrun::plan::text(&plan, &c.source, &c.diagnostics);
        assert_eq!(
            text.matches("SIGKILL").count(),
            text.matches("→ SIGKILL").count()
        );
        assert!(
            text.contains("SIGTERM → 20s → SIGKILL (to leader)"),
            "{text}"
        );
    }
}

/// More processes in all than a plan holds is FR104 at lint, as `plan` and
/// `up` refuse it. (Written here rather than in tests/fixtures/cases: the
/// never-panic campaign mutates every fixture and would plan 262,144
/// processes for each mutation of it.)
#[test]
fn too_many_processes_in_all_is_a_lint_error() {
    let mut text = String::from(
        "# More than 262,144 processes in all: lint refuses what plan and up would.\ntopology swarm {\n",
    );
    for (g, n) in [
        ("a", 65_536),
        ("b", 65_536),
        ("c", 65_536),
        ("d", 65_536),
        ("e", 2),
    ] {
        text += &format!("  group {g} {{\n    run \"w\"\n    processes {n}\n  }}\n");
    }
    text += "}\n";
    let c = compile(SourceFile::new("too-many.pf", text), None);
    assert_eq!(codes(&c), ["FR104"]);
    let human = render::human(&c.source, &c.diagnostics, 100, false);
    assert!(human.contains("262146 processes in all; flowrun plans at most 262144"));
    insta::with_settings!({
        snapshot_path => "../../snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!("case_too_many_processes", human);
    });
}
