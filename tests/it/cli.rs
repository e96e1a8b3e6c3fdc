//! The command line, driven through the real binary: exit codes, every
//! output format, exact positions, `explain`, `rules`, `plan --check`.
//! Fixtures are in tests/cli/.

use flowrun::rules::RULES;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> String {
    format!("tests/cli/{name}")
}

/// Run `flowrun ARGS…` from the crate root without colour, 100 columns.
fn flowrun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowrun"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .stdin(Stdio::null())
        .output()
        .expect("run flowrun")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed by a signal")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

fn snapshot(name: &str, value: &str) {
    insta::with_settings!({snapshot_path => "../../snapshots", prepend_module_to_snapshot => false}, {
        insta::assert_snapshot!(name, value);
    });
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("flowrun-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---- exit codes -------------------------------------------------------------

#[test]
fn clean_file_exits_0_with_no_output() {
    let o = flowrun(&["lint", "--no-source", &fixture("clean.pf")]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "");
    let o = flowrun(&[
        "lint",
        "--no-source",
        "--deny",
        "warnings",
        &fixture("clean.pf"),
    ]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

#[test]
fn error_exits_1() {
    let o = flowrun(&["lint", "--no-source", &fixture("signal.pf")]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("FR302 double-delivery"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn warning_fails_only_under_deny_warnings() {
    let o = flowrun(&[
        "lint",
        "--no-source",
        "--format",
        "short",
        &fixture("warning.pf"),
    ]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("warning[FR304]"), "{}", stdout(&o));
    let o = flowrun(&[
        "lint",
        "--no-source",
        "--format",
        "short",
        "--deny",
        "warnings",
        &fixture("warning.pf"),
    ]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
}

#[test]
fn missing_file_exits_2_with_one_line() {
    let o = flowrun(&["lint", "--no-source", "tests/cli/no-such-file.pf"]);
    assert_eq!(code(&o), 2);
    assert_eq!(
        stderr(&o),
        "flowrun: cannot read tests/cli/no-such-file.pf: No such file or directory\n"
    );
    // The readable files are still linted; the I/O error wins the exit code.
    let o = flowrun(&[
        "lint",
        "--no-source",
        "--format",
        "short",
        "nope.pf",
        &fixture("signal.pf"),
    ]);
    assert_eq!(code(&o), 2);
    assert!(stdout(&o).contains("error[FR302]"), "{}", stdout(&o));
}

#[test]
fn non_utf8_file_exits_2() {
    let d = tmp_dir("utf8");
    let f = d.join("bad.pf");
    std::fs::write(&f, b"topology t {\xff}\n").unwrap();
    let o = flowrun(&["lint", "--no-source", f.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("not UTF-8 (invalid byte at offset 12)"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn misuse_is_concise_and_exits_2() {
    for args in [
        &["lint", "--fromat", "short", "x.pf"][..],
        &["lint"][..],
        &["lint", "--format", "xml", "x.pf"][..],
        &["lint", "--deny", "errors", "x.pf"][..],
        &["frobnicate"][..],
        &["plan", "--format", "yaml", "x.pf"][..],
    ] {
        let o = flowrun(args);
        assert_eq!(code(&o), 2, "{args:?}");
        let err = stderr(&o);
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            (1..=2).contains(&lines.len()) && lines[0].starts_with("error: "),
            "{args:?}: {err}"
        );
        if lines.len() == 2 {
            assert!(lines[1].starts_with("Usage: flowrun"), "{args:?}: {err}");
        }
        assert_eq!(stdout(&o), "", "{args:?}");
    }
    let o = flowrun(&["lint", "--no-source", "--fromat", "short", "x.pf"]);
    assert!(
        stderr(&o).contains("'--format'"),
        "the tip survives: {}",
        stderr(&o)
    );
}

#[test]
fn control_commands_name_a_misplaced_file_or_a_missing_signal() {
    // Checked before any runner is looked for: one line, exit 2.
    for (args, says) in [
        (
            &["signal", "HUP", "shop.pf", "web"][..],
            "`shop.pf`: the topology file comes first",
        ),
        (
            &["restart", "web", "shop.pf"][..],
            "`shop.pf`: the topology file comes first",
        ),
        (&["signal", "shop.pf", "web"][..], "expected SIG GROUP[.N]"),
        (&["signal", "web"][..], "expected SIG GROUP[.N]"),
    ] {
        let o = flowrun(args);
        assert_eq!(code(&o), 2, "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(stdout(&o), "", "{args:?}");
    }
}

#[test]
fn help_and_version_exit_0() {
    for sub in ["lint", "plan", "up", "explain", "rules"] {
        let o = flowrun(&[sub, "--help"]);
        assert_eq!(code(&o), 0, "{sub}");
        assert!(
            stdout(&o).contains("Usage: flowrun"),
            "{sub}: {}",
            stdout(&o)
        );
    }
    let o = flowrun(&["--version"]);
    assert_eq!(code(&o), 0);
    assert_eq!(
        stdout(&o),
        format!("flowrun {}\n", env!("CARGO_PKG_VERSION"))
    );
}

// ---- output formats ----------------------------------------------------------

#[test]
fn human_is_the_graphical_report_without_colour() {
    let o = flowrun(&["lint", "--no-source", &fixture("signal.pf")]);
    let out = stdout(&o);
    assert!(out.contains("× FR302 double-delivery: "), "{out}");
    assert!(out.contains("╭─[tests/cli/signal.pf:"), "{out}");
    assert!(
        out.contains("process-group shared"),
        "source snippet: {out}"
    );
    assert!(out.contains("help: "), "{out}");
    assert!(!out.contains('\u{1b}'), "no ANSI codes: {out:?}");
    assert!(out.ends_with("flowrun: 1 error in 1 file\n"), "{out}");
}

#[test]
fn short_pins_a_topology_and_a_signal_stage_position() {
    // Topology stage (FR2xx): the cycle is reported at the first `after`.
    let o = flowrun(&[
        "lint",
        "--no-source",
        "--format",
        "short",
        &fixture("cycle.pf"),
    ]);
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("tests/cli/cycle.pf:5:5: error[FR201] ")),
        "{out}"
    );
    // Signal stage (FR3xx): at the `process-group shared` setting.
    let o = flowrun(&[
        "lint",
        "--no-source",
        "--format",
        "short",
        &fixture("signal.pf"),
    ]);
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("tests/cli/signal.pf:6:5: error[FR302] ")),
        "{out}"
    );
}

#[test]
fn columns_count_characters_in_every_format() {
    // `{nope}` starts at character 15 of line 3, after the two-byte `é`.
    let f = fixture("unicode.pf");
    let o = flowrun(&["lint", "--no-source", "--format", "short", &f]);
    assert!(
        stdout(&o).contains("tests/cli/unicode.pf:3:15: error[FR103] "),
        "{}",
        stdout(&o)
    );
    let o = flowrun(&["lint", "--no-source", "--format", "json", &f]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let finding = &v[0]["findings"][0];
    assert_eq!(finding["code"], "FR103");
    assert_eq!(
        (finding["line"].as_u64(), finding["column"].as_u64()),
        (Some(3), Some(15))
    );
    assert_eq!(finding["end_column"], 21);
    assert_eq!(
        finding["span"]["end"].as_u64().unwrap() - finding["span"]["start"].as_u64().unwrap(),
        6
    );
    let o = flowrun(&["lint", "--no-source", "--format", "github", &f]);
    assert!(stdout(&o).starts_with("::error file=tests/cli/unicode.pf,line=3,col=15,endLine=3,endColumn=21,title=FR103 unknown-placeholder::"), "{}", stdout(&o));
}

#[test]
fn json_lists_files_and_findings() {
    let o = flowrun(&[
        "lint",
        "--no-source",
        "--format",
        "json",
        &fixture("clean.pf"),
        &fixture("signal.pf"),
        &fixture("warning.pf"),
    ]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
    let files = v.as_array().unwrap();
    assert_eq!(files.len(), 3);
    assert_eq!(files[0]["file"], "tests/cli/clean.pf");
    assert_eq!(files[0]["findings"].as_array().unwrap().len(), 0);
    assert_eq!(files[1]["errors"], 1);
    let f = &files[1]["findings"][0];
    for key in [
        "code",
        "name",
        "severity",
        "message",
        "file",
        "line",
        "column",
        "end_line",
        "end_column",
        "span",
        "labels",
        "help",
    ] {
        assert!(f.get(key).is_some(), "finding has {key}: {f}");
    }
    assert_eq!(f["code"], "FR302");
    assert_eq!(f["name"], "double-delivery");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["labels"][0]["primary"], true);
    assert_eq!(files[2]["errors"], 0);
    assert_eq!(files[2]["warnings"], 2);
    assert_eq!(files[2]["findings"][0]["severity"], "warning");
}

#[test]
fn sarif_is_2_1_0_with_every_rule_and_located_results() {
    let o = flowrun(&[
        "lint",
        "--no-source",
        "--format",
        "sarif",
        &fixture("signal.pf"),
        &fixture("cycle.pf"),
        &fixture("warning.pf"),
    ]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
    assert_eq!(v["version"], "2.1.0");
    assert!(v["$schema"].as_str().unwrap().contains("sarif"));
    let run = &v["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "flowrun");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let want: Vec<&str> = RULES.iter().map(|r| r.code).collect();
    assert_eq!(ids, want);
    for r in rules {
        assert!(r["shortDescription"]["text"].is_string(), "{r}");
        let level = r["defaultConfiguration"]["level"].as_str().unwrap();
        assert!(level == "error" || level == "warning" || level == "note");
    }
    let results = run["results"].as_array().unwrap();
    assert!(results.len() >= 3, "{results:?}");
    for res in results {
        let id = res["ruleId"].as_str().unwrap();
        let index = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(ids[index], id);
        assert!(res["message"]["text"].is_string());
        let loc = &res["locations"][0]["physicalLocation"];
        assert!(loc["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .starts_with("tests/cli/"));
        assert!(loc["region"]["startLine"].as_u64().unwrap() >= 1);
        assert!(loc["region"]["startColumn"].as_u64().unwrap() >= 1);
    }
    let levels: Vec<&str> = results
        .iter()
        .map(|r| r["level"].as_str().unwrap())
        .collect();
    assert!(levels.contains(&"error") && levels.contains(&"warning"));
    // The cycle's edges are related locations.
    let cycle = results.iter().find(|r| r["ruleId"] == "FR201").unwrap();
    assert!(
        cycle["relatedLocations"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{cycle}"
    );
}

#[test]
fn github_prints_one_annotation_per_finding() {
    let o = flowrun(&[
        "lint",
        "--no-source",
        "--format",
        "github",
        &fixture("signal.pf"),
        &fixture("warning.pf"),
    ]);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("::error file=tests/cli/signal.pf,line=6,col=5,endLine=6,endColumn=")
            && lines[0].contains(",title=FR302 double-delivery::"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("::warning file=tests/cli/warning.pf,line="),
        "{out}"
    );
    assert!(lines[1].contains(",title=FR304 unbounded-drain::"), "{out}");
}

#[test]
fn short_pins_a_syntax_position() {
    // `processes` with no number: the number was expected at the end of line 4.
    let o = flowrun(&[
        "lint",
        "--no-source",
        "--format",
        "short",
        &fixture("syntax.pf"),
    ]);
    assert_eq!(
        stdout(&o),
        "tests/cli/syntax.pf:4:14: error[FR001] expected a whole number\n"
    );
}

#[test]
fn syntax_error_is_reported_in_every_format() {
    for format in ["human", "short", "json", "sarif", "github"] {
        let o = flowrun(&[
            "lint",
            "--no-source",
            "--format",
            format,
            &fixture("syntax.pf"),
        ]);
        assert_eq!(code(&o), 1, "{format}");
        assert!(stdout(&o).contains("FR001"), "{format}: {}", stdout(&o));
    }
}

// ---- explain and rules ---------------------------------------------------------

#[test]
fn explain_by_code_and_by_name_are_identical() {
    let a = flowrun(&["explain", "FR302"]);
    let b = flowrun(&["explain", "double-delivery"]);
    let c = flowrun(&["explain", "fr302"]);
    assert_eq!(code(&a), 0);
    assert_eq!(stdout(&a), stdout(&b));
    assert_eq!(stdout(&a), stdout(&c));
    let rule = flowrun::rules::by_code("FR302").unwrap();
    assert_eq!(stdout(&a).trim_end(), rule.explain.trim_end());
    assert!(
        stdout(&a).starts_with("# FR302 double-delivery"),
        "{}",
        stdout(&a)
    );
}

#[test]
fn explain_unknown_rule_suggests_and_exits_2() {
    let o = flowrun(&["explain", "doubel-delivery"]);
    assert_eq!(code(&o), 2);
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o).lines().count(), 1);
    assert!(
        stderr(&o).contains("did you mean `FR302` double-delivery?"),
        "{}",
        stderr(&o)
    );
    let o = flowrun(&["explain", "xyzzy"]);
    assert_eq!(code(&o), 2);
    assert!(!stderr(&o).contains("did you mean"));
}

#[test]
fn rules_lists_every_rule() {
    let o = flowrun(&["rules"]);
    assert_eq!(code(&o), 0);
    let out = stdout(&o);
    assert_eq!(
        out.lines().count(),
        RULES.len() + 1,
        "a header and every rule"
    );
    for r in RULES {
        assert!(out.contains(r.code) && out.contains(r.name), "{}", r.code);
    }
    snapshot("cli_rules", &out);
}

#[test]
fn readme_rule_table_matches_the_registry() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let rows: Vec<String> = readme
        .lines()
        .filter(|l| l.starts_with("| FR"))
        .map(String::from)
        .collect();
    let want: Vec<String> = RULES
        .iter()
        .map(|r| {
            format!(
                "| {} | {} | {} | {} |",
                r.code,
                r.name,
                r.severity.as_str(),
                r.summary
            )
        })
        .collect();
    assert_eq!(rows, want);
}

#[test]
fn closed_stdout_does_not_panic() {
    // A pipe whose read end is already closed: every write gets EPIPE.
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    for args in [
        &["rules"][..],
        &["explain", "FR001"][..],
        &["lint", "--format", "json", "tests/cli/signal.pf"][..],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_flowrun"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::from(write.try_clone().unwrap()))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
        assert!(
            o.status.code().is_some_and(|c| c <= 1),
            "{args:?}: {:?}",
            o.status
        );
    }
}

// ---- plan ------------------------------------------------------------------------

#[test]
fn plan_check_same_is_0_and_different_is_1_with_a_diff() {
    let o = flowrun(&["plan", &fixture("clean.pf")]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let plan = stdout(&o);
    assert!(!plan.is_empty());
    let d = tmp_dir("plan");
    let committed = d.join("clean.plan");
    std::fs::write(&committed, &plan).unwrap();
    let c = committed.to_str().unwrap();
    let o = flowrun(&["plan", &fixture("clean.pf"), "--check", c]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "");

    let stale = plan.replacen('\n', "\nthis line is stale\n", 1);
    std::fs::write(&committed, stale).unwrap();
    let o = flowrun(&["plan", &fixture("clean.pf"), "--check", c]);
    assert_eq!(code(&o), 1);
    let diff = stdout(&o);
    assert!(diff.contains(&format!("--- {c}")), "{diff}");
    assert!(diff.contains("-this line is stale"), "{diff}");

    let o = flowrun(&["plan", &fixture("clean.pf"), "--check", "no-such.plan"]);
    assert_eq!(code(&o), 2);
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn plan_is_deterministic_and_has_a_json_form() {
    let a = stdout(&flowrun(&["plan", &fixture("clean.pf")]));
    let b = stdout(&flowrun(&["plan", &fixture("clean.pf")]));
    assert_eq!(a, b);
    let o = flowrun(&["plan", "--format", "json", &fixture("clean.pf")]);
    assert_eq!(code(&o), 0);
    let _: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
}

#[test]
fn plan_with_errors_prints_the_plan_and_exits_1() {
    let o = flowrun(&["plan", &fixture("signal.pf")]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("FR302"),
        "findings are in the plan: {}",
        stdout(&o)
    );
}

#[test]
fn plan_of_unparsable_file_exits_2_with_diagnostics_on_stderr() {
    let o = flowrun(&["plan", &fixture("syntax.pf")]);
    assert_eq!(code(&o), 2);
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("FR001"), "{}", stderr(&o));
}

// ---- up (argument validation only; the runtime has its own tests) ---------------

#[test]
fn up_refuses_a_file_with_errors() {
    let o = flowrun(&["up", &fixture("signal.pf")]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("FR302"), "{}", stderr(&o));
}

#[test]
fn up_validates_scale() {
    for (arg, want) in [
        ("apx=2", "unknown group `apx` (did you mean `api`?)"),
        ("api=0", "N must be a whole number from 1 to 65536"),
        ("api=two", "N must be a whole number from 1 to 65536"),
        ("api=65537", "N must be a whole number from 1 to 65536"),
        ("api", "expected G=N"),
    ] {
        let o = flowrun(&["up", &fixture("clean.pf"), "--scale", arg]);
        assert_eq!(code(&o), 2, "{arg}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{arg}: {err}");
        assert!(err.contains(want), "{arg}: {err}");
    }
}

#[test]
fn host_enables_the_capacity_rule() {
    let f = fixture("capacity.pf");
    let o = flowrun(&["lint", "--no-source", "--format", "short", &f]);
    assert_eq!(code(&o), 0);
    assert!(!stdout(&o).contains("FR205"), "{}", stdout(&o));
    let o = flowrun(&["lint", "--no-source", "--host", "--format", "short", &f]);
    assert_eq!(code(&o), 0, "FR205 is a warning");
    assert!(stdout(&o).contains("warning[FR205]"), "{}", stdout(&o));
    let o = flowrun(&["lint", "--no-source", "--host", "--deny", "warnings", &f]);
    assert_eq!(code(&o), 1);
}

#[test]
fn plan_and_up_refuse_more_processes_than_a_plan_can_hold() {
    let f = fixture("too-many.pf");
    for args in [&["plan", &f][..], &["up", &f][..]] {
        let o = flowrun(args);
        assert_eq!(code(&o), 2, "{args:?}");
        assert!(
            stderr(&o).contains("300000 processes in all; flowrun plans at most 262144"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // `lint` agrees (FR104).
    let o = flowrun(&["lint", "--format", "short", &f]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("error[FR104] the topology runs 300000 processes in all"));
    // --scale counts too: 65,536 + 4 x 60,000 is over; nothing is started.
    let f = fixture("scale-over.pf");
    let o = flowrun(&["up", &f, "--scale", "a=65536"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("305536 processes in all"),
        "{}",
        stderr(&o)
    );
}

/// Run `flowrun ARGS…` with stdout on a pseudo-terminal; returns its output.
fn on_a_tty(args: &[&str], no_color: Option<&str>) -> String {
    use std::io::Read;
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowrun"));
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::from(pty.slave))
        .stderr(Stdio::null());
    match no_color {
        Some(v) => cmd.env("NO_COLOR", v),
        None => cmd.env_remove("NO_COLOR"),
    };
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // close our copy of the terminal's slave end
    let mut master = std::fs::File::from(pty.master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break, // EIO once the child has closed the slave
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    child.wait().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn colour_only_on_a_tty_and_without_no_color() {
    let f = fixture("signal.pf");
    let tty = on_a_tty(&["lint", &f], None);
    assert!(
        tty.contains("FR302") && tty.contains('\u{1b}'),
        "colour on a tty: {tty:?}"
    );
    let empty = on_a_tty(&["lint", &f], Some(""));
    assert!(
        empty.contains('\u{1b}'),
        "an empty NO_COLOR does not count: {empty:?}"
    );
    let plain = on_a_tty(&["lint", &f], Some("1"));
    assert!(
        plain.contains("FR302") && !plain.contains('\u{1b}'),
        "{plain:?}"
    );
    let piped = flowrun(&["lint", "--no-source", &f]);
    assert!(!stdout(&piped).contains('\u{1b}'));
}

#[test]
fn readme_example_is_lint_clean() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("```pf\n").expect("a pf block") + "```pf\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let compiled = flowrun::compile(
        flowrun::source::SourceFile::new("README.md", &readme[start..end]),
        None,
    );
    assert!(compiled.model.is_some());
    assert_eq!(
        compiled.diagnostics,
        vec![],
        "the README's example is clean"
    );
}

// ---- output side: positions, inputs, summary, SARIF, plans ------------------

/// Run `flowrun ARGS…` with `input` on standard input.
fn flowrun_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowrun"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flowrun");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().expect("wait for flowrun")
}

#[test]
fn every_format_gives_one_position_even_after_a_bom() {
    // `{nope}` is character 15 of line 3 (after `é`); a BOM is no column.
    let text = std::fs::read_to_string(fixture("unicode.pf")).unwrap();
    for (name, input) in [
        ("plain.pf", text.clone()),
        ("bom.pf", format!("\u{feff}{text}")),
    ] {
        let lint = |fmt: &str| {
            stdout(&flowrun_stdin(
                &["lint", "--format", fmt, "--stdin-filename", name, "-"],
                &input,
            ))
        };
        let human = lint("human");
        assert!(human.contains(&format!("[{name}:3:15]")), "{human}");
        assert!(lint("short").starts_with(&format!("{name}:3:15: ")));
        let json: serde_json::Value = serde_json::from_str(&lint("json")).unwrap();
        assert_eq!(json[0]["findings"][0]["column"], 15);
        let sarif: serde_json::Value = serde_json::from_str(&lint("sarif")).unwrap();
        let region = &sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"];
        assert_eq!(region["startColumn"], 15);
        assert!(lint("github").contains(",line=3,col=15,"));
    }
    // The BOM is not a column on line 1 either.
    let o = flowrun_stdin(
        &["lint", "--format", "short", "-"],
        "\u{feff}topology t { group a { run \"{x}\" } }\n",
    );
    assert!(
        stdout(&o).starts_with("<stdin>:1:29: error[FR103]"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_label_past_column_65535_does_not_crash_lint_or_up() {
    let d = tmp_dir("long");
    let f = d.join("long.pf");
    let arg = "a".repeat(65_530);
    std::fs::write(
        &f,
        format!("topology t {{\n  group api {{\n    run \"{arg} {{prot}}\"\n  }}\n}}\n"),
    )
    .unwrap();
    let path = f.to_str().unwrap();
    let o = flowrun(&["lint", path]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(":3:65541]"), "{out}");
    assert!(out.contains("…aaaa") && out.contains("{prot}"), "{out}");
    assert!(
        out.len() < 2_000,
        "the long line is cut down: {} bytes",
        out.len()
    );
    snapshot("cli_long_line_human", &out.replace(path, "long.pf"));
    let o = flowrun(&["up", path]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("{prot}"), "{}", stderr(&o));
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn many_labels_are_bounded_with_a_note() {
    let pipes = " | y".repeat(20_000);
    let o = flowrun_stdin(
        &["lint", "--stdin-filename", "pipes.pf", "-"],
        &format!("topology t {{\n  group a {{\n    run \"x{pipes}\"\n  }}\n}}\n"),
    );
    let out = stdout(&o);
    assert!(out.contains("note: 19992 more labels not shown"), "{out}");
    assert!(out.len() < 5_000, "{} bytes", out.len());
    snapshot("cli_many_labels_human", &out);
}

#[test]
fn summary_counts_only_files_with_findings() {
    let o = flowrun(&[
        "lint",
        "--no-source",
        &fixture("signal.pf"),
        &fixture("clean.pf"),
    ]);
    let out = stdout(&o);
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("flowrun: "), "{out}");
    assert!(last.ends_with(" in 1 of 2 files"), "{last}");
    snapshot("cli_summary_two_files", last);
    let o = flowrun(&["lint", "--no-source", &fixture("signal.pf")]);
    assert!(
        stdout(&o).trim_end().ends_with(" in 1 file"),
        "{}",
        stdout(&o)
    );
    // Notes (workers whose source is not here) are counted, and fail nothing.
    let o = flowrun(&["lint", &fixture("signal.pf"), &fixture("clean.pf")]);
    let out = stdout(&o);
    let last = out.lines().last().unwrap();
    assert!(last.contains(" note"), "{last}");
    assert!(last.ends_with(" in 2 files"), "{last}");
}

#[test]
fn lint_reads_stdin_and_lints_a_file_once() {
    let text = std::fs::read_to_string(fixture("signal.pf")).unwrap();
    let o = flowrun_stdin(&["lint", "--format", "short", "-"], &text);
    assert_eq!(code(&o), 1);
    let from_stdin = stdout(&o);
    assert!(from_stdin.starts_with("<stdin>:"), "{from_stdin}");
    let o = flowrun_stdin(
        &[
            "lint",
            "--format",
            "short",
            "--stdin-filename",
            "ci/signal.pf",
            "-",
        ],
        &text,
    );
    assert_eq!(stdout(&o), from_stdin.replace("<stdin>:", "ci/signal.pf:"));
    // The same file three times (two spellings) is linted once.
    let f = fixture("signal.pf");
    let once = stdout(&flowrun(&["lint", "--format", "short", &f]));
    let dotted = format!("./{f}");
    let o = flowrun(&["lint", "--format", "short", &f, &dotted, &f]);
    assert_eq!(stdout(&o), once);
}

#[test]
fn sarif_uses_uris_and_reports_unreadable_files() {
    let abs = Path::new(env!("CARGO_MANIFEST_DIR")).join(fixture("signal.pf"));
    let dotted = format!("./{}", fixture("warning.pf"));
    let o = flowrun(&[
        "lint",
        "--format",
        "sarif",
        &dotted,
        abs.to_str().unwrap(),
        "no-such file.pf",
    ]);
    assert_eq!(code(&o), 2);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let run = &v["runs"][0];
    assert_eq!(run["columnKind"], "unicodeCodePoints");
    assert!(run["originalUriBaseIds"]["SRCROOT"].is_object());
    let uris: Vec<&serde_json::Value> = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["locations"][0]["physicalLocation"]["artifactLocation"])
        .collect();
    assert!(uris
        .iter()
        .any(|a| a["uri"] == "tests/cli/warning.pf" && a["uriBaseId"] == "SRCROOT"));
    let file_uri = format!("file://{}", abs.display());
    assert!(uris
        .iter()
        .any(|a| a["uri"] == file_uri.as_str() && a["uriBaseId"].is_null()));
    let inv = &run["invocations"][0];
    assert_eq!(inv["executionSuccessful"], false);
    let note = &inv["toolExecutionNotifications"][0];
    assert_eq!(note["level"], "error");
    assert!(note["message"]["text"]
        .as_str()
        .unwrap()
        .contains("no-such file.pf"));
    assert_eq!(
        note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "no-such%20file.pf"
    );
    snapshot(
        "cli_sarif_unreadable_invocation",
        &serde_json::to_string_pretty(inv).unwrap(),
    );
    let o = flowrun(&["lint", "--format", "sarif", &fixture("clean.pf")]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["runs"][0]["invocations"][0]["executionSuccessful"], true);
}

#[test]
fn plan_check_passes_from_another_path_and_with_crlf() {
    let d = tmp_dir("planpath");
    let f = fixture("warning.pf");
    let plan = stdout(&flowrun(&["plan", &f]));
    assert!(plan.contains("  warning.pf:"), "{plan}");
    let committed = d.join("warning.plan");
    std::fs::write(&committed, &plan).unwrap();
    let c = committed.to_str().unwrap();
    let abs = Path::new(env!("CARGO_MANIFEST_DIR")).join(&f);
    for path in [format!("./{f}"), abs.display().to_string()] {
        let o = flowrun(&["plan", "--check", c, &path]);
        assert_eq!(code(&o), 0, "{path}: {}", stdout(&o));
    }
    std::fs::write(&committed, plan.replace('\n', "\r\n")).unwrap();
    let o = flowrun(&["plan", "--check", c, &f]);
    assert_eq!(code(&o), 0, "CRLF: {}", stdout(&o));
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn up_lints_the_scaled_topology_and_refuses_errors() {
    let f = fixture("scaled.pf");
    let o = flowrun(&["lint", &f]);
    assert_eq!(code(&o), 0, "clean as written: {}", stdout(&o));
    for (arg, want) in [
        ("api=20", "FR204 port-overlap"),
        ("admin=60000", "the port range 8010..68009 runs past 65535"),
    ] {
        let o = flowrun(&["up", &f, "--scale", arg]);
        assert_eq!(code(&o), 2, "{arg}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(want), "{arg}: {err}");
        assert!(
            err.ends_with(&format!(
                "flowrun: {f} does not compile with --scale {arg}; not starting it\n"
            )),
            "{arg}: {err}"
        );
        if arg == "admin=60000" {
            snapshot("cli_up_scale_past_65535", &err);
        }
    }
}

#[test]
fn plan_shows_the_requested_containment_not_the_machines() {
    let f = fixture("clean.pf");
    let text = stdout(&flowrun(&["plan", &f]));
    assert!(
        text.contains("  containment      auto (decided by `up`: cgroup v2 where a writable hierarchy exists, else process groups; its `starting` event says which)\n"),
        "{text}"
    );
    let o = flowrun(&["plan", "--containment", "process-group", &f]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("  containment      process-group ("),
        "{}",
        stdout(&o)
    );
    let o = flowrun(&["plan", "--format", "json", "--containment", "cgroup", &f]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v["containment"], "cgroup");
    // A plan committed with the default is stale for another request.
    let d = tmp_dir("plancontain");
    let committed = d.join("clean.plan");
    std::fs::write(&committed, &text).unwrap();
    let c = committed.to_str().unwrap();
    assert_eq!(code(&flowrun(&["plan", "--check", c, &f])), 0);
    let o = flowrun(&["plan", "--containment", "cgroup", "--check", c, &f]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("+  containment      cgroup ("),
        "{}",
        stdout(&o)
    );
    let o = flowrun(&["plan", "--containment", "cgroups", &f]);
    assert_eq!(code(&o), 2);
}

#[test]
fn plans_redact_secrets_unless_asked_to_show_them() {
    let f = "tests/fixtures/fr310_secret_in_file.pf";
    let secrets = ["sk_live_51Hxyz", "0a1b2c3d", "hunter2", "admin:pw@"];
    for fmt in ["text", "json"] {
        let o = flowrun(&["plan", "--format", fmt, f]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let out = stdout(&o);
        for s in secrets {
            assert!(!out.contains(s), "{fmt} shows {s}:\n{out}");
        }
        assert!(out.contains("<redacted>"), "{out}");
        let o = flowrun(&["plan", "--format", fmt, "--show-secrets", f]);
        let shown = stdout(&o);
        for s in secrets {
            assert!(shown.contains(s), "{fmt} --show-secrets hides {s}");
        }
    }
    let text = stdout(&flowrun(&["plan", f]));
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("redacted")).collect();
    snapshot("cli_plan_redacted_lines", &lines.join("\n"));
}
