//! Worker-source lint (FR500 onwards), proved on a corpus of runnable
//! Python workers: `tests/fixtures/python/CASE/main.py` (plus the local
//! modules it imports). Each `main.py` says in its header what lint must
//! report (`# expect: FR501` or `none`) and what running it does
//! (`# repro:` — `scripts/pyrepro` checks that part with a real gevent).
//!
//! - every case's findings are exactly its expected codes, and the
//!   precision/recall table over the corpus meets the targets;
//! - one firing fixture per rule is snapshotted in every format, and the
//!   whole corpus in the short format;
//! - suppression comments, unused ones (FR002), FR500 notes, `--no-source`;
//! - the gevent crawler example is clean, and fails when its handler joins.

use flowrun::rules::RULES;
use flowrun::source::SourceFile;
use flowrun::{compile, pysrc, render, Compiled};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const CASES: &str = "tests/fixtures/python";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cases() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root().join(CASES))
        .expect("tests/fixtures/python exists")
        .filter_map(|e| {
            let p = e.ok()?.path();
            p.join("main.py")
                .is_file()
                .then(|| p.file_name()?.to_str().map(str::to_string))?
        })
        .collect();
    out.sort();
    out
}

fn expected(case: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(CASES).join(case).join("main.py")).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{case}/main.py has no `# expect:` line"));
    line.split(',')
        .map(str::trim)
        .filter(|c| *c != "none" && !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// Lint `text` as if it were the topology `dir/worker.pf` (paths relative
/// to the crate root, as the tests run there).
fn lint_at(dir: &str, text: &str) -> Vec<Compiled> {
    let path = format!("{dir}/worker.pf");
    let mut c = compile(SourceFile::new(path.clone(), text), None);
    assert!(c.model.is_some(), "{path} compiles");
    let workers = pysrc::lint_workers(Path::new(&path), &mut c);
    std::iter::once(c).chain(workers).collect()
}

/// The topology a case runs under: one group, plus the settings its
/// `# topology:` header line asks for (e.g. `stop SIGINT drain 2s to group`),
/// running its `# command:` (default `python3 main.py`).
fn case_topology(case: &str) -> String {
    let text = std::fs::read_to_string(root().join(CASES).join(case).join("main.py")).unwrap();
    let extra: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("# topology: "))
        .map(|s| format!("    {s}\n"))
        .collect();
    let command = text
        .lines()
        .find_map(|l| l.strip_prefix("# command: "))
        .unwrap_or("python3 main.py");
    format!("# A one-group topology that runs the case's worker.\ntopology t {{\n  group w {{\n    run \"{command}\"\n{extra}  }}\n}}\n")
}

fn lint_case(case: &str) -> Vec<Compiled> {
    lint_at(&format!("{CASES}/{case}"), &case_topology(case))
}

/// FR505 depends on the topology: under the defaults (`to leader`, an own
/// process group) only the worker gets the signal.
#[test]
fn child_signalled_twice_needs_the_topology_to_deliver_twice() {
    let dir = format!("{CASES}/fr505_terminate_on_interrupt");
    let text = case_topology("fr505_terminate_on_interrupt");
    assert_eq!(worker_codes(&lint_at(&dir, &text)), ["FR505"]);
    let leader = text.replace("to group", "to leader");
    assert_eq!(worker_codes(&lint_at(&dir, &leader)), Vec::<String>::new());
    let files = lint_at(&dir, &text);
    let sarif = render::sarif(&files, &[]);
    assert!(
        sarif.contains("`stop SIGINT … to group` sends SIGINT to the child too"),
        "{sarif}"
    );
    assert!(
        sarif.contains("\"uri\": \"tests/fixtures/python/fr505_terminate_on_interrupt/worker.pf\"")
    );
}

/// FR506 depends on the topology: a group whose command or `env` makes
/// Python unbuffered has no stream buffer (and no lock) to re-enter.
#[test]
fn flush_in_handler_needs_buffered_streams() {
    let dir = format!("{CASES}/fr506_print_flush_in_handler");
    let text = case_topology("fr506_print_flush_in_handler");
    assert_eq!(worker_codes(&lint_at(&dir, &text)), ["FR506"]);
    let with = |from: &str, to: &str| {
        let changed = text.replace(from, to);
        assert_ne!(changed, text);
        worker_codes(&lint_at(&dir, &changed))
    };
    let none = Vec::<String>::new();
    let run = "run \"python3 main.py\"";
    assert_eq!(with(run, "run \"python3 -u main.py\""), none);
    assert_eq!(with(run, "run \"python3 -Bu main.py\""), none);
    assert_eq!(
        with(run, "run \"env PYTHONUNBUFFERED=1 python3 main.py\""),
        none
    );
    assert_eq!(
        with(
            run,
            "run \"python3 main.py\"\n    env { PYTHONUNBUFFERED = \"x\" }"
        ),
        none
    );
    // An empty value does not make Python unbuffered; `-u` after the
    // script is the script's own argument.
    assert_eq!(
        with(
            run,
            "run \"python3 main.py\"\n    env { PYTHONUNBUFFERED = \"\" }"
        ),
        ["FR506"]
    );
    assert_eq!(with(run, "run \"python3 main.py -u\""), ["FR506"]);
}

fn worker_codes(files: &[Compiled]) -> Vec<String> {
    let mut v: Vec<String> = files
        .iter()
        .flat_map(|c| &c.diagnostics)
        .map(|d| d.code.to_string())
        .filter(|c| c.as_str() > "FR500")
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn corpus_is_big_enough() {
    let all = cases();
    let firing = all.iter().filter(|c| !expected(c).is_empty()).count();
    assert!(all.len() >= 40, "{} cases", all.len());
    assert!(firing * 2 >= all.len(), "{firing} of {} fire", all.len());
}

#[test]
fn every_case_reports_exactly_its_expected_codes() {
    let mut bad = Vec::new();
    for case in cases() {
        let found = worker_codes(&lint_case(&case));
        let want = expected(&case);
        if found != want {
            bad.push(format!("{case}: expected {want:?}, found {found:?}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Precision and recall per rule over the corpus (a case counts once per
/// rule). Printed with `--nocapture`; the targets are asserted.
#[test]
fn precision_and_recall_meet_the_targets() {
    // code -> (true positives, false positives, false negatives)
    let mut table: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    for case in cases() {
        let found = worker_codes(&lint_case(&case));
        let want = expected(&case);
        for code in found.iter().chain(&want) {
            let e = table.entry(code.clone()).or_default();
            match (found.contains(code), want.contains(code)) {
                (true, true) => e.0 += 1,
                (true, false) => e.1 += 1,
                (false, true) => e.2 += 1,
                _ => {}
            }
        }
    }
    // Each code was counted once per source list it appeared in.
    let mut total = (0, 0, 0);
    println!("rule   tp fp fn precision recall");
    for (code, (tp, fp, fne)) in &mut table {
        *tp /= 2;
        let p = f64::from(*tp) / f64::from((*tp + *fp).max(1));
        let r = f64::from(*tp) / f64::from((*tp + *fne).max(1));
        println!(
            "{code} {tp:>3} {fp:>2} {fne:>2} {:>8.0}% {:>5.0}%",
            p * 100.0,
            r * 100.0
        );
        total = (total.0 + *tp, total.1 + *fp, total.2 + *fne);
    }
    let p = f64::from(total.0) / f64::from((total.0 + total.1).max(1));
    let r = f64::from(total.0) / f64::from((total.0 + total.2).max(1));
    println!(
        "all   {:>3} {:>2} {:>2} {:>8.0}% {:>5.0}%",
        total.0,
        total.1,
        total.2,
        p * 100.0,
        r * 100.0
    );
    assert!(total.0 >= 20, "the corpus must exercise the rules");
    assert!(p >= 0.9, "precision {p:.2}");
    assert!(r >= 0.9, "recall {r:.2}");
}

fn snap(name: &str, description: &str, text: &str) {
    insta::with_settings!({
        snapshot_path => "../../snapshots",
        prepend_module_to_snapshot => false,
        description => description.to_string(),
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name.to_string(), text);
    });
}

fn all_formats(files: &[Compiled]) -> [(&'static str, String); 5] {
    let human: String = files
        .iter()
        .filter(|c| !c.diagnostics.is_empty())
        .map(|c| render::human(&c.source, &c.diagnostics, 100, false))
        .collect::<Vec<_>>()
        .join("\n");
    [
        ("human", human),
        ("short", render::short(files)),
        ("json", render::json(files)),
        ("sarif", render::sarif(files, &[])),
        ("github", render::github(files)),
    ]
}

#[test]
fn one_fixture_per_rule_in_every_format() {
    for case in [
        "fr501_helper_in_module",
        "fr502_patch_in_settings",
        "fr503_settings_listener",
        "fr504_fork_waitpid",
        "fr505_sigint_handler_shared",
        "fr506_flush_in_helper_module",
    ] {
        let files = lint_case(case);
        for (format, text) in all_formats(&files) {
            let text = text.replace(env!("CARGO_PKG_VERSION"), "VERSION");
            snap(
                &format!("pysrc_{case}.{format}"),
                &format!("{CASES}/{case}"),
                &text,
            );
        }
    }
}

#[test]
fn whole_corpus_short_format() {
    let mut out = String::new();
    for case in cases() {
        out.push_str(&format!("== {case}\n"));
        out.push_str(&render::short(&lint_case(&case)));
    }
    snap("pysrc_corpus.short", CASES, &out);
}

/// Findings point into the `.py` file they are reported for; related
/// labels in another file name it.
#[test]
fn spans_lie_inside_their_files() {
    for case in cases() {
        for c in lint_case(&case).iter().skip(1) {
            assert!(c.source.name.ends_with(".py"), "{case}: {}", c.source.name);
            for d in &c.diagnostics {
                let len = c.source.text.len();
                assert!(d.primary.span.end <= len && d.primary.span.start < d.primary.span.end);
                assert!(d.help.is_some());
                for l in &d.related {
                    let n = l.file.as_ref().map_or(len, |f| f.text.len());
                    assert!(
                        l.span.end <= n,
                        "{case}: {} related label past the end",
                        d.code
                    );
                }
            }
        }
    }
}

#[test]
fn allow_comments_suppress_and_unused_ones_are_reported() {
    let dir = std::env::temp_dir().join(format!("flowrun-pysrc-allow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src =
        std::fs::read_to_string(root().join(CASES).join("fr504_fork_waitpid/main.py")).unwrap();
    let allowed = src.replace(
        "os.waitpid(pid, 0)",
        "# flowrun: allow FR504 because \"the child sleeps first in production\"\nos.waitpid(pid, 0)  # flowrun: allow FR501 because \"stale\"",
    );
    std::fs::write(dir.join("main.py"), &allowed).unwrap();
    let text = "# t\ntopology t {\n  group w {\n    run \"python3 main.py\"\n  }\n}\n";
    let dir_s = dir.display().to_string();
    let files = lint_at(&dir_s, text);
    let codes: Vec<&str> = files
        .iter()
        .flat_map(|c| &c.diagnostics)
        .map(|d| d.code)
        .collect();
    assert_eq!(codes, ["FR002"], "FR504 suppressed, the FR501 allow unused");
    // Without a reason the comment does not suppress.
    std::fs::write(
        dir.join("main.py"),
        src.replace(
            "os.waitpid(pid, 0)",
            "os.waitpid(pid, 0)  # flowrun: allow FR504",
        ),
    )
    .unwrap();
    let files = lint_at(&dir_s, text);
    let mut codes: Vec<&str> = files
        .iter()
        .flat_map(|c| &c.diagnostics)
        .map(|d| d.code)
        .collect();
    codes.sort();
    assert_eq!(codes, ["FR002", "FR504"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unresolvable_workers_are_one_note_each() {
    let text = "# t\ntopology t {\n  group a {\n    run \"python -m nowhere.to.be.found\"\n  }\n  group b {\n    run \"python -m nowhere.to.be.found --other\"\n  }\n  group c {\n    run \"python -c 'print(1)'\"\n  }\n  group d {\n    run \"redis-server\"\n  }\n}\n";
    let files = lint_at(CASES, text);
    let notes: Vec<String> = files[0]
        .diagnostics
        .iter()
        .map(|d| format!("{} {}", d.code, d.message))
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes.iter().all(|n| n.starts_with("FR500")));
    assert_eq!(files.len(), 1);
}

#[test]
fn launchers_that_patch_count_as_patching() {
    // gunicorn -k gevent patches before importing the app; no patch call
    // in the source.
    let dir = std::env::temp_dir().join(format!("flowrun-pysrc-gunicorn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("site.py"),
        "import signal, threading\nt = threading.Thread(target=print)\n\n\ndef on_term(s, f):\n    t.join()\n\n\nsignal.signal(signal.SIGTERM, on_term)\n\n\ndef app(environ, start_response):\n    return []\n",
    )
    .unwrap();
    let dir_s = dir.display().to_string();
    let run = |cmd: &str| {
        let text = format!("# t\ntopology t {{\n  group w {{\n    run \"{cmd}\"\n  }}\n}}\n");
        worker_codes(&lint_at(&dir_s, &text))
    };
    assert_eq!(
        run("gunicorn -k gevent site:app --bind 127.0.0.1:8000"),
        ["FR501"]
    );
    assert_eq!(
        run("gunicorn site:app --bind 127.0.0.1:8000"),
        Vec::<String>::new()
    );
    assert_eq!(run("celery -A site worker -P gevent"), ["FR501"]);
    assert_eq!(run("uwsgi --gevent 100 --module site:app"), ["FR501"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn flowrun() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowrun"))
}

#[test]
fn no_source_lints_the_topology_only() {
    let dir = std::env::temp_dir().join(format!("flowrun-pysrc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let case = root()
        .join(CASES)
        .join("fr502_pool_after_patch_all/main.py");
    std::fs::copy(case, dir.join("main.py")).unwrap();
    let pf = dir.join("w.pf");
    std::fs::write(
        &pf,
        "# t\ntopology t {\n  group w {\n    run \"python3 main.py\"\n  }\n}\n",
    )
    .unwrap();
    let out = flowrun()
        .args(["lint", "--format", "short"])
        .arg(&pf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("main.py:") && stdout.contains("error[FR502]"),
        "{stdout}"
    );
    // A worker that cannot be found is a note, which never fails a run.
    let gone = dir.join("gone.pf");
    std::fs::write(
        &gone,
        "# t\ntopology t {\n  group w {\n    run \"python3 nowhere.py\"\n  }\n}\n",
    )
    .unwrap();
    let out = flowrun()
        .args(["lint", "--deny", "warnings", "--format", "short"])
        .arg(&gone)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("note[FR500]"), "{stdout}");
    let out = flowrun()
        .args(["lint", "--no-source", "--format", "short"])
        .arg(&pf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every example's Python worker that can be found is clean: only FR500
/// notes for the workers the examples do not ship.
#[test]
fn example_workers_are_clean() {
    let mut linted = 0;
    for e in std::fs::read_dir(root().join("examples")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().map_or(true, |x| x != "pf") {
            continue;
        }
        let rel = format!("examples/{}", p.file_name().unwrap().to_str().unwrap());
        let text = std::fs::read_to_string(&p).unwrap();
        let mut c = compile(SourceFile::new(rel.clone(), text), None);
        let workers = pysrc::lint_workers(Path::new(&rel), &mut c);
        assert!(workers.is_empty(), "{rel}: {}", render::short(&workers));
        assert!(
            c.diagnostics.iter().all(|d| d.code == "FR500"),
            "{rel}: {}",
            render::short(std::slice::from_ref(&c))
        );
        linted += 1;
    }
    assert!(linted >= 8);
}

#[test]
fn crawler_example_is_clean_and_fails_when_its_handler_joins() {
    let pf = std::fs::read_to_string(root().join("examples/crawler.pf")).unwrap();
    let files = lint_at("examples", &pf);
    let codes: Vec<&str> = files
        .iter()
        .flat_map(|c| &c.diagnostics)
        .map(|d| d.code)
        .collect();
    assert!(codes.is_empty(), "{codes:?}");
    // The same worker with a handler that joins instead of spawning.
    let dir = std::env::temp_dir().join(format!("flowrun-pysrc-crawler-{}", std::process::id()));
    let pkg = dir.join("python/crawler");
    std::fs::create_dir_all(&pkg).unwrap();
    for f in ["__main__.py", "fetch.py"] {
        let text = std::fs::read_to_string(root().join("examples/python/crawler").join(f)).unwrap();
        let text = text.replace("gevent.spawn(drain)", "drain()");
        std::fs::write(pkg.join(f), text).unwrap();
    }
    let files = lint_at(&dir.display().to_string(), &pf);
    let short = render::short(&files);
    assert!(short.contains("error[FR501]"), "{short}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn worker_rules_are_documented() {
    for r in RULES.iter().filter(|r| r.code.starts_with("FR5")) {
        let title = format!("# {} {} ({})", r.code, r.name, r.severity.as_str());
        assert_eq!(r.explain.lines().next(), Some(title.as_str()));
        for s in ["## What it finds", "## Example", "## Fix"] {
            assert!(r.explain.contains(s), "{}: no {s}", r.code);
        }
        if r.code != "FR500" {
            assert!(
                r.explain.contains("```text"),
                "{}: show the real failure",
                r.code
            );
            assert!(
                cases()
                    .iter()
                    .any(|c| c.starts_with(&r.code.to_lowercase())),
                "{}: no fixture",
                r.code
            );
        }
    }
}

/// A command word that is a path is linted only when its shebang says
/// Python; `sh` scripts are read for the command they run.
#[test]
fn shebang_scripts_and_sh_commands_are_found() {
    let dir = std::env::temp_dir().join(format!("flowrun-pysrc-shebang-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let body =
        std::fs::read_to_string(root().join(CASES).join("fr504_fork_waitpid/main.py")).unwrap();
    std::fs::write(
        dir.join("bin/worker"),
        format!("#!/usr/bin/env python3\n{body}"),
    )
    .unwrap();
    std::fs::write(dir.join("bin/tool"), "#!/bin/sh\nexec true\n").unwrap();
    let dir_s = dir.display().to_string();
    let run = |setting: &str| {
        let text = format!("# t\ntopology t {{\n  group w {{\n    {setting}\n  }}\n}}\n");
        worker_codes(&lint_at(&dir_s, &text))
    };
    assert_eq!(run("run \"./bin/worker --x 1\""), ["FR504"]);
    assert_eq!(run("run \"bin/tool\""), Vec::<String>::new());
    // The script's `cd` is followed: `bin/worker` is found.
    assert_eq!(run("sh \"cd bin && exec python3 worker\""), ["FR504"]);
    assert_eq!(run("sh \"exec ./bin/worker\""), ["FR504"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Lint with every shortcut of the loader on (skip the parser for inert
/// files, whose imports are read without it; parse only the chunks that
/// can matter), then with each alone, then with none: every output the
/// same. The outputs with all on and all off, and what was loaded with all
/// on.
fn both_ways(dir: &str, text: &str) -> (String, String, pysrc::Loaded) {
    let path = format!("{dir}/worker.pf");
    let c = compile(SourceFile::new(path.clone(), text), None);
    let model = c.model.as_ref().expect("compiles");
    let topo = std::sync::Arc::new(c.source.clone());
    let run = |skip_inert: bool, skip_chunks: bool| {
        let loaded = pysrc::load::load_with(
            Path::new(dir),
            model,
            pysrc::load::LoadOptions {
                skip_inert,
                skip_chunks,
            },
        );
        let (notes, files) = pysrc::check(&topo, &loaded);
        let mut top = c.clone();
        top.diagnostics.extend(notes);
        let all: Vec<Compiled> = std::iter::once(top).chain(files).collect();
        let human: String = all
            .iter()
            .filter(|c| !c.diagnostics.is_empty())
            .map(|c| render::human(&c.source, &c.diagnostics, 100, false))
            .collect();
        let out = [
            human,
            render::short(&all),
            render::json(&all),
            render::sarif(&all, &[]),
            render::github(&all),
        ]
        .join("\n");
        (out, loaded)
    };
    let (fast, loaded) = run(true, true);
    let (slow, _) = run(false, false);
    for (skip_inert, skip_chunks) in [(true, false), (false, true)] {
        let (one, _) = run(skip_inert, skip_chunks);
        assert_eq!(
            one, slow,
            "skip_inert {skip_inert}, skip_chunks {skip_chunks}"
        );
    }
    (fast, slow, loaded)
}

#[test]
fn skipping_inert_files_never_changes_a_finding() {
    for case in cases() {
        let (fast, slow, _) = both_ways(&format!("{CASES}/{case}"), &case_topology(&case));
        assert_eq!(fast, slow, "{case}");
    }
    for e in std::fs::read_dir(root().join("examples")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "pf") {
            let text = std::fs::read_to_string(&p).unwrap();
            let (fast, slow, _) = both_ways("examples", &text);
            assert_eq!(fast, slow, "{}", p.display());
        }
    }
    // A handler reaches a join through a file with no rule token (`relay`,
    // whose imports alone are read first, then parsed after all), next to
    // an inert leaf (`util`) that stays unparsed.
    let dir = std::env::temp_dir().join(format!("flowrun-pysrc-inert-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("pkg")).unwrap();
    let files = [
        ("main.py", "from gevent import monkey\nmonkey.patch_all()\nimport signal\nimport relay\nimport util\nimport pkg.deep  # what relay's `import pkg` reaches\n\n\ndef on_term(s, f):\n    relay.go()\n\n\nsignal.signal(signal.SIGTERM, on_term)\n"),
        ("relay.py", "\"\"\"No rule token here.\"\"\"\nimport pkg\n\n\ndef go():\n    pkg.deep.stop()\n"),
        ("pkg/__init__.py", ""),
        ("pkg/deep.py", "import threading\nt = threading.Thread(target=len)\n\n\ndef stop():\n    t.join()\n"),
        ("util.py", "import os\n\n\ndef helper(items):\n    return [len(str(i)) for i in items]\n"),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let text = "# t\ntopology t {\n  group w {\n    run \"python3 main.py\"\n  }\n}\n";
    let (fast, slow, loaded) = both_ways(&dir.display().to_string(), text);
    assert_eq!(fast, slow);
    assert!(
        fast.contains("\"FR501\"") && fast.contains("pkg/deep.py"),
        "{fast}"
    );
    let by_name = |n: &str| {
        loaded
            .files
            .iter()
            .find(|f| f.source.name.ends_with(n))
            .unwrap()
    };
    assert!(!by_name("relay.py").inert && !by_name("relay.py").module.funcs.is_empty());
    assert!(by_name("util.py").inert && by_name("util.py").module.funcs.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Generated programs: a worker and two modules made of random top-level
/// statements — handlers and their registrations, blocking calls, output,
/// children, `except KeyboardInterrupt:`, allow comments, next to plain
/// helpers, classes, decorators, nested defs, strings holding `def`,
/// backslash continuations, `if __name__ == "__main__":` blocks, imports
/// and aliases across the files — all calling each other by a few shared
/// names. Parsing only the chunks that matter gives every output the full
/// parse gives, under topologies that make every rule able to fire.
#[test]
fn parsing_only_the_chunks_that_matter_never_changes_a_finding() {
    const NAMES: &[&str] = &[
        "work",
        "helper",
        "stop",
        "on_term",
        "flush_out",
        "run",
        "loop",
    ];
    const CHUNKS: &[&str] = &[
        // Chunks that hold what rules look for.
        "def {F}(signum, frame):\n    {G}()\n",
        "signal.signal(signal.SIGTERM, {F})\n",
        "signal.signal(signal.SIGINT, lambda s, f: {F}())\n",
        "def {F}():\n    t.join()\n",
        "def {F}():\n    print('bye', flush=True)\n",
        "for i in range(3):\n    print(i)\n    {F}()\n",
        "while True:\n    sys.stdout.write('x')\n",
        "def {F}():\n    p.terminate()\n",
        "p = subprocess.Popen(['sleep', '9'])\n",
        "try:\n    {F}()\nexcept KeyboardInterrupt:\n    {G}()\n",
        "t = threading.Thread(target={F})\nt.start()\n",
        "def {F}():\n    time.sleep(1)\n",
        "x = {F}()  # flowrun: allow FR501 because \"only a test\"\n",
        "def {F}(self):\n    logging.info('x')\n",
        "def {F}():\n    sys.stderr.write('x')\n",
        "def {F}():\n    lock.acquire()\n    {G}()\n",
        "class E{N}:\n    def {F}(self):\n        print('x', flush=True)\n",
        "@decorate\nclass W{N}(threading.Thread):\n    \"\"\"Doc.\"\"\"\n    limit = {F}()\n\n    @property\n    def {F}(self):\n        return {G}()\n\n    def {G}(self):\n        sys.stdout.flush()\n\n    try:\n        x = 1\n    except E:\n        pass\n\n    class Inner:\n        def {F}(self):\n            self.{G}()\n\n    def start(self):\n        for i in range(3):\n            self.{F}()\n",
        "class Q{N}:\n    def {F}(self, signum, frame):\n        {G}()\n\n    def {G}(self):\n        return 2\n",
        "def {F}(signum, frame):\n    self.{G}()\n",
        // Plain code.
        "def {F}(a, b=2):\n    return {G}(a) + b\n",
        "@decorate\n@decorate.more(1,\n    2)\ndef {F}():\n    {G}()\n",
        "class C{N}:\n    def {F}(self):\n        self.{G}()\n\n    def {G}(self):\n        return 1\n",
        "class D{N}(object):\n    limit = 3\n\n    @staticmethod\n    def {F}():\n        return {G}()\n",
        "s = \"\"\"\ndef {F}():\n    pass\n\"\"\"\n",
        "s = '''\nclass {F}:\n'''\n",
        "total = {F}(1) + \\\n    {G}(2)\n",
        "if __name__ == \"__main__\":\n    {F}()\n",
        "def {F}():\n    def inner():\n        {G}()\n    return inner()\n",
        "{F}()\n",
        "values = [\n    {F}(x)\n# a comment at column 0 inside brackets\n    for x in range(3)\n]\n",
        "if x:\n    pass\n# between clauses\nelif y:\n    {F}()\nelse:\n    {G}()\n",
        "# a comment\n\n",
        "msg = f\"{{F}()} and {x!r:>{width}}\"\n",
        "data = {'def': 1, \"class\": [2, 3]}  # def {F}():\n",
        "async def {F}():\n    await {G}()\n",
        "with open('f') as fh, ctx({F}):\n    {G}(fh)\n",
        // Imports and aliases across the files.
        "import m{M}\n",
        "from m{M} import {F} as {G}\n",
        "from m{M} import {F}\n",
        "m{M}.{F}()\n",
        "def {F}():\n    import m{M}\n    m{M}.{G}()\n",
        // An import the loader's line scan misses: read after the parallel
        // pass, parsed whole, and what it calls or defines parsed again.
        "if {F}: import m{M}\n",
    ];
    // Now and then, a syntax error the pre-scan sees (the file is then
    // parsed whole): an indent with no block, a block with no body, an
    // unclosed bracket or string.
    const BROKEN: &[&str] = &[
        "if {F}\n    {G}()\n",
        "def {F}():\n",
        "y = ({F}(1,\n",
        "s = 'abc\n",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let dir = std::env::temp_dir().join(format!("flowrun-pysrc-chunks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir_s = dir.display().to_string();
    let topologies = [
        "# t\ntopology t {\n  group w {\n    run \"python3 main.py\"\n  }\n}\n",
        "# t\ntopology t {\n  group w {\n    run \"python3 main.py\"\n    stop SIGINT drain 2s to group\n  }\n}\n",
        "# t\ntopology t {\n  group w {\n    run \"python3 main.py\"\n    stop SIGTERM drain 2s to group\n  }\n}\n",
    ];
    let (mut findings, mut dropped) = (0, 0);
    for round in 0..150 {
        for (name, header) in [
            ("main.py", "from gevent import monkey\nmonkey.patch_all()\nimport signal, threading, subprocess, time, logging, sys\nimport m1\n"),
            ("m1.py", "import os\n"),
            ("m2.py", ""),
        ] {
            let mut text = String::from(if round % 5 == 4 && name == "main.py" {
                "import signal, threading, subprocess, time, logging, sys\nimport m1\n"
            } else {
                header
            });
            for n in 0..(3 + next(14)) {
                let chunk = if next(60) == 0 {
                    BROKEN[next(BROKEN.len())]
                } else {
                    CHUNKS[next(CHUNKS.len())]
                };
                let chunk = chunk
                    .replace("{F}", NAMES[next(NAMES.len())])
                    .replace("{G}", NAMES[next(NAMES.len())])
                    .replace("{M}", &(1 + next(2)).to_string())
                    .replace("{N}", &n.to_string());
                text.push_str(&chunk);
                text.push_str(["", "\n", "\n\n", "# after\n"][next(4)]);
            }
            std::fs::write(dir.join(name), text).unwrap();
        }
        let topo = topologies[round % topologies.len()];
        let (fast, slow, loaded) = both_ways(&dir_s, topo);
        assert_eq!(fast, slow, "round {round}");
        findings += fast.matches("[FR50").count();
        dropped += loaded
            .files
            .iter()
            .filter(|f| f.module.calls.len() < pysrc::syntax::parse(&f.source.text).calls.len())
            .count();
    }
    std::fs::remove_dir_all(&dir).unwrap();
    // The comparison means something: rules fired, and chunks were left out.
    assert!(findings > 50, "{findings} findings");
    assert!(dropped > 30, "{dropped} files parsed in part");
}

/// A module the loader's line scan misses (`if True: import late`) is read
/// after the parallel pass: it is parsed whole, and a chunk of an earlier
/// file that calls into it (a loop calling `late.emit()`, which prints)
/// turns out to matter and is parsed again.
#[test]
fn a_module_read_late_makes_more_chunks_matter() {
    let dir = std::env::temp_dir().join(format!("flowrun-pysrc-late-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        ("main.py", "import signal\nif True: import late\n\n\ndef on_term(signum, frame):\n    print('bye', flush=True)\n\n\nsignal.signal(signal.SIGTERM, on_term)\nfor i in range(3):\n    late.emit()\n"),
        ("late.py", "def emit():\n    print('tick')\n"),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let text = "# t\ntopology t {\n  group w {\n    run \"python3 main.py\"\n  }\n}\n";
    let (fast, slow, _) = both_ways(&dir.display().to_string(), text);
    assert_eq!(fast, slow);
    assert!(
        fast.contains("\"FR506\"") && fast.contains("late.py"),
        "{fast}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A shell script that changes directory before starting Python
/// (`sh -c 'cd DIR && python3 x.py'` in a `run`, `cd DIR; …` in an `sh`):
/// the program and its local modules are looked up in that directory.
#[test]
fn shell_cd_is_followed_to_the_worker() {
    let dir = format!("{CASES}/launch_cd");
    let run = |setting: &str| {
        let text = format!("# t\ntopology t {{\n  group w {{\n    {setting}\n  }}\n}}\n");
        let files = lint_at(&dir, &text);
        let notes: Vec<String> = files[0]
            .diagnostics
            .iter()
            .filter(|d| d.code == "FR500")
            .map(|d| format!("{} {}", d.code, d.message))
            .collect();
        (worker_codes(&files), notes)
    };
    let fires = (vec!["FR504".to_string()], Vec::<String>::new());
    assert_eq!(run("run \"sh -c 'cd app && python3 worker.py'\""), fires);
    assert_eq!(
        run("run \"bash -ec 'cd app; exec python3 worker.py'\""),
        fires
    );
    assert_eq!(run("sh \"cd app && exec python3 worker.py\""), fires);
    assert_eq!(run("sh \"cd app || exit 1\\npython3 worker.py\""), fires);
    assert_eq!(run("run \"sh -c 'python3 app/worker.py'\""), fires);
    // Without the `cd` (or with the wrong one) the script is not there.
    let (codes, notes) = run("run \"sh -c 'python3 worker.py'\"");
    assert!(codes.is_empty() && notes.len() == 1, "{notes:?}");
    assert!(notes[0].contains("worker.py does not exist"), "{notes:?}");
    let (codes, notes) = run("run \"sh -c 'cd $APP && python3 worker.py'\"");
    assert!(codes.is_empty(), "{codes:?}");
    assert!(
        notes[0].contains("changes directory to `$APP`"),
        "{notes:?}"
    );
    // The fixture's own topology, through the CLI.
    let out = flowrun()
        .args(["lint", "--format", "short"])
        .arg(format!("{dir}/launch_cd.pf"))
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("launch_cd/app/worker.py:8:1: error[FR504]"),
        "{stdout}"
    );
}
