//! The resolver: defaults from docs/language.md, name resolution, and FR101–FR104
//! with pinned positions.

use flowrun::ast::{
    AfterState, Escalate, Probe, ProcessGroupMode, RestartMode, StopTarget, Timeout,
};
use flowrun::diagnostic::Diagnostic;
use flowrun::model::{Command, Sig, Step, Topology};
use flowrun::parse::parse;
use flowrun::resolve::resolve;
use flowrun::source::SourceFile;
use std::time::Duration;

fn compile(text: &str) -> (Topology, Vec<Diagnostic>, SourceFile) {
    let src = SourceFile::new("t.pf", text);
    let (file, diags) = parse(&src);
    assert!(diags.is_empty(), "parse: {diags:#?}");
    let (model, mut diags) = resolve(&src, &file.unwrap());
    flowrun::diagnostic::sort(&mut diags);
    (model, diags, src)
}

fn clean(text: &str) -> Topology {
    let (m, d, _) = compile(text);
    assert!(d.is_empty(), "unexpected findings: {d:#?}");
    m
}

/// Every finding as `line:col CODE message [label] (help)`, with the text
/// its primary span covers.
fn findings(text: &str) -> Vec<String> {
    let (_, diags, src) = compile(text);
    diags
        .iter()
        .map(|d| {
            let (l, c) = src.line_col(d.primary.span.start);
            format!(
                "{l}:{c} {} {} `{}` [{}] ({})",
                d.code,
                d.message,
                src.slice(d.primary.span),
                d.primary.message,
                d.help.as_deref().unwrap_or("")
            )
        })
        .collect()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn group(body: &str) -> String {
    format!("topology t {{\n  group g {{\n{body}\n  }}\n}}\n")
}

#[test]
fn defaults_are_filled_as_the_spec_says() {
    let m = clean("topology t {\n  group svc { run \"server --port 1\" }\n  group job { sh \"make\"; once }\n}\n");
    assert_eq!(m.name.node, "t");
    assert_eq!(m.shutdown_within, Timeout::Finite(secs(30)));
    assert!(m.shutdown_span.is_none());
    assert_eq!(m.escalate, Escalate::OnRepeat);
    assert!(m.finish.is_none());
    let hs: Vec<(Sig, bool, Vec<Step>)> = m
        .handlers
        .iter()
        .map(|h| {
            (
                h.signal.node,
                h.default,
                h.steps.iter().map(|s| s.node.clone()).collect(),
            )
        })
        .collect();
    assert_eq!(
        hs,
        [
            (Sig::INT, true, vec![Step::Drain { groups: vec![] }]),
            (Sig::TERM, true, vec![Step::Drain { groups: vec![] }]),
            (Sig::HUP, true, vec![Step::Reload]),
        ]
    );
    let svc = &m.groups[0];
    assert!(
        matches!(&svc.command.node, Command::Run { argv } if argv == &["server", "--port", "1"])
    );
    assert_eq!(
        (svc.processes, svc.coroutines, svc.port, svc.once),
        (1, 1, None, false)
    );
    assert_eq!(svc.restart.mode, RestartMode::OnFailure);
    assert_eq!(
        (svc.restart.backoff_min, svc.restart.backoff_max),
        (Duration::from_millis(100), secs(10))
    );
    let limit = svc.restart.limit.as_ref().unwrap();
    assert_eq!((limit.count, limit.per), (5, secs(60)));
    assert!(svc.restart.span.is_none());
    assert_eq!(svc.stop.steps.len(), 1);
    assert_eq!(
        (svc.stop.steps[0].signal, svc.stop.steps[0].drain),
        (Sig::TERM, Timeout::Finite(secs(10)))
    );
    assert_eq!(svc.stop.target, StopTarget::Leader);
    assert!(svc.stop.span.is_none());
    assert_eq!(svc.process_group, ProcessGroupMode::Own);
    assert!(svc.die_with_parent);
    assert!(svc.env.is_empty() && svc.cwd.is_none() && svc.ready.is_none());

    let job = &m.groups[1];
    assert!(matches!(&job.command.node, Command::Sh { script } if script == "make"));
    assert!(job.once);
    assert_eq!(job.restart.mode, RestartMode::Never);
    assert!(job.restart.limit.is_none());
}

#[test]
fn explicit_handlers_come_first_and_replace_defaults() {
    let m = clean("topology t {\n  group a { run \"a\" }\n  on SIGUSR1 forward to a\n  on SIGTERM { drain a; kill }\n}\n");
    let sigs: Vec<(Sig, bool)> = m
        .handlers
        .iter()
        .map(|h| (h.signal.node, h.default))
        .collect();
    assert_eq!(
        sigs,
        [
            (Sig(nix::sys::signal::Signal::SIGUSR1), false),
            (Sig::TERM, false),
            (Sig::INT, true),
            (Sig::HUP, true)
        ]
    );
    let steps: Vec<Step> = m.handlers[1].steps.iter().map(|s| s.node.clone()).collect();
    assert!(
        matches!(&steps[0], Step::Drain { groups } if groups.len() == 1 && groups[0].node == 0)
    );
    assert_eq!(steps[1], Step::Kill);
}

#[test]
fn explicit_settings_and_after_defaults() {
    let m = clean(
        r#"topology t {
  shutdown within 2m
  finish when e succeeds
  escalate never
  allow unbounded-drain because "batch jobs"
  group r { run "r"; ready when tcp "127.0.0.1:{port}" every 250ms; port 7000; processes 3 }
  group o { run "o"; once }
  group s { run "s"; coroutines 16 }
  group e {
    run "e 'two words' {index}"
    after r
    after o
    after s
    after s exited
    restart always
    stop SIGINT drain 5s then SIGQUIT drain forever to group
    env { A = "1", B = "{group}-{index}" }
    cwd "work/{group}"
    process-group shared
    die-with-parent no
    allow FR303
  }
}
"#,
    );
    assert_eq!(m.shutdown_within, Timeout::Finite(secs(120)));
    assert_eq!(m.escalate, Escalate::Never);
    assert_eq!(m.finish.as_ref().unwrap().group.node, 3);
    let r = &m.groups[0];
    assert_eq!((r.port, r.processes), (Some(7000), 3));
    let ready = r.ready.as_ref().unwrap();
    assert_eq!(ready.probe, Probe::Tcp("127.0.0.1:{port}".into()));
    assert_eq!(
        (ready.every, ready.within),
        (Duration::from_millis(250), Timeout::Finite(secs(60)))
    );
    assert_eq!(m.groups[2].coroutines, 16);
    let e = &m.groups[3];
    assert!(
        matches!(&e.command.node, Command::Run { argv } if argv == &["e", "two words", "{index}"])
    );
    let after: Vec<(usize, AfterState)> = e.after.iter().map(|a| (a.group, a.state)).collect();
    assert_eq!(
        after,
        [
            (0, AfterState::Ready),
            (1, AfterState::Succeeded),
            (2, AfterState::Started),
            (2, AfterState::Exited)
        ]
    );
    // A `restart` statement without backoff or limit: default backoff, no limit.
    assert_eq!(e.restart.mode, RestartMode::Always);
    assert_eq!(
        (e.restart.backoff_min, e.restart.backoff_max),
        (Duration::from_millis(100), secs(10))
    );
    assert!(e.restart.limit.is_none());
    let ladder: Vec<(Sig, Timeout)> = e.stop.steps.iter().map(|s| (s.signal, s.drain)).collect();
    assert_eq!(
        ladder,
        [
            (Sig::INT, Timeout::Finite(secs(5))),
            (Sig::QUIT, Timeout::Forever)
        ]
    );
    assert_eq!(e.stop.target, StopTarget::Group);
    assert_eq!(
        e.env,
        [
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "{group}-{index}".to_string())
        ]
    );
    assert_eq!(e.cwd.as_deref(), Some("work/{group}"));
    assert_eq!(e.process_group, ProcessGroupMode::Shared);
    assert!(!e.die_with_parent);
    let allows: Vec<(&str, Option<usize>, Option<&str>)> = m
        .allows
        .iter()
        .map(|a| (a.code, a.group, a.reason.as_deref()))
        .collect();
    assert_eq!(
        allows,
        [
            ("FR304", None, Some("batch jobs")),
            ("FR303", Some(3), None)
        ]
    );
}

#[test]
fn fr101_unknown_group_with_did_you_mean() {
    let text = "topology t {\n  finish when tets exits\n  on SIGUSR1 { drain wroker; restart worker api }\n  group worker { run \"w\"; after db }\n  group tests { run \"t\" }\n}\n";
    assert_eq!(
        findings(text),
        [
            "2:15 FR101 unknown group `tets` in `finish when` `tets` [no group has this name] (did you mean `tests`?)",
            "3:22 FR101 unknown group `wroker` in the SIGUSR1 handler `wroker` [no group has this name] (did you mean `worker`?)",
            "3:45 FR101 unknown group `api` in the SIGUSR1 handler `api` [no group has this name] (define it with `group api { … }`; the groups are `worker`, `tests`)",
            "4:33 FR101 unknown group `db` in group `worker`'s `after` `db` [no group has this name] (define it with `group db { … }`; the groups are `worker`, `tests`)",
        ]
    );
    // A second `finish` is a duplicate even when the first names an unknown group.
    assert_eq!(
        findings("topology t {\n  finish when x exits\n  finish when a exits\n  group a { run \"a\" }\n}\n"),
        [
            "2:15 FR101 unknown group `x` in `finish when` `x` [no group has this name] (define it with `group x { … }`; the groups are `a`)",
            "3:3 FR102 `finish when` is given twice `finish` [given again here] (keep one of them)",
        ]
    );
    // The step with an unknown group is dropped, not widened to the whole topology.
    let (m, _, _) = compile(text);
    let h = m.handler(Sig(nix::sys::signal::Signal::SIGUSR1)).unwrap();
    assert_eq!(h.steps.len(), 1);
    assert!(matches!(&h.steps[0].node, Step::Restart { groups, .. } if groups.len() == 1));
}

#[test]
fn fr102_duplicates() {
    let text = r#"topology t {
  shutdown within 10s
  shutdown within 20s
  on SIGINT drain
  on SIGINT kill
  group a {
    run "a"
    sh "b"
    processes 2
    processes 3
    after a
    after a
    env { K = "1", K = "2" }
  }
  group a { run "c" }
}
"#;
    assert_eq!(
        findings(text),
        [
            "3:3 FR102 `shutdown within` is given twice `shutdown` [given again here] (keep one of them)",
            "5:6 FR102 two handlers for SIGINT `SIGINT` [handled again here] (merge them into one `on SIGINT { … }` block: the steps run in order)",
            "8:5 FR102 the command (`run` or `sh`) is given twice in group `a` `sh` [given again here] (keep one of them)",
            "10:5 FR102 `processes` is given twice in group `a` `processes` [given again here] (keep one of them)",
            "13:20 FR102 `K` is set twice in `env` `K` [set again here] (keep one of them)",
            "15:9 FR102 group `a` is defined twice `a` [defined again here] (rename one of the groups, or merge their settings)",
        ]
    );
    let (m, diags, src) = compile(text);
    // Related labels point at the first occurrence.
    let dup_group = diags
        .iter()
        .find(|d| d.message.contains("defined twice"))
        .unwrap();
    assert_eq!(src.line_col(dup_group.related[0].span.start), (6, 9));
    assert_eq!(dup_group.related[0].message, "first defined here");
    // The first of each wins.
    assert_eq!(m.groups.len(), 1);
    assert_eq!(m.groups[0].processes, 2);
    assert_eq!(m.shutdown_within, Timeout::Finite(secs(10)));
    assert_eq!(m.groups[0].env, [("K".to_string(), "1".to_string())]);
    assert_eq!(m.groups[0].after.len(), 2);
}

#[test]
fn fr103_placeholders_are_spanned_exactly() {
    let text = r#"topology t {
  group a {
    run "serve --id {idx} --port {port} --n {processes}"
    sh "x"
    env { A = "{grop}", B = "${HOME} {3} {\"json\": 1}" }
    cwd "d/{group}"
    ready when http "http://h:{port}/{nope}"
  }
}
"#;
    assert_eq!(
        findings(text),
        [
            "3:21 FR103 unknown placeholder `{idx}` `{idx}` [not a placeholder] (the placeholders are {group}, {index}, {processes}, {coroutines} and {port})",
            "3:34 FR103 `{port}` is used but group `a` has no `port` `{port}` [no port to fill in] (add `port N` to the group (process i gets N + i), or remove `{port}`)",
            "4:5 FR102 the command (`run` or `sh`) is given twice in group `a` `sh` [given again here] (keep one of them)",
            "5:16 FR103 unknown placeholder `{grop}` `{grop}` [not a placeholder] (did you mean `{group}`?)",
            "7:31 FR103 `{port}` is used but group `a` has no `port` `{port}` [no port to fill in] (add `port N` to the group (process i gets N + i), or remove `{port}`)",
            "7:38 FR103 unknown placeholder `{nope}` `{nope}` [not a placeholder] (the placeholders are {group}, {index}, {processes}, {coroutines} and {port})",
        ]
    );
    // Escapes before a placeholder do not shift its span.
    let text = "topology t {\n  group a { run \"say \\\"\\t{bad}\\\"\" }\n}\n";
    assert_eq!(
        findings(text),
        ["2:26 FR103 unknown placeholder `{bad}` `{bad}` [not a placeholder] (the placeholders are {group}, {index}, {processes}, {coroutines} and {port})"]
    );
    assert!(findings(&group("    run \"x {port}\"\n    port 80")).is_empty());
}

#[test]
fn fr104_invalid_values() {
    let text = r#"topology t {
  on SIGTREM drain
  allow unbounded-drian
  group a {
    run "  "
    processes 0
    coroutines 4294967296
    port 65530
  }
  group b {
    run "x 'unterminated"
    processes 7
    port 65530
    restart on-failure backoff 10s..1s limit 0 per 1m
    stop SIGTERM drain 1s then SIGKIL drain 0s
  }
  group c { port 0 }
}
"#;
    assert_eq!(
        findings(text),
        [
            "2:6 FR104 unknown signal `SIGTREM` `SIGTREM` [not a signal on this system] (did you mean `SIGTERM`?)",
            "3:9 FR104 unknown rule `unbounded-drian` in `allow` `unbounded-drian` [no rule has this code or name] (did you mean `unbounded-drain`?)",
            "5:9 FR104 empty command in `run` `\"  \"` [nothing to run] (write the program and its arguments inside the quotes)",
            "6:15 FR104 `processes 0`: a group needs at least one process `0` [must be at least 1] (write `processes 1` or more)",
            "7:16 FR104 `coroutines 4294967296` is too large (at most 4294967295) `4294967296` [too large] (write `coroutines 4294967295` or less)",
            "11:9 FR104 this `run` command cannot be split into words: a quote is not closed `\"x 'unterminated\"` [unterminated quote] (close the quote: `run` splits its text into words as a shell would (quotes group words), without running a shell)",
            "13:10 FR104 the port range 65530..65536 runs past 65535 (7 processes from port 65530) `65530` [range runs past 65535] (start at 65529 or lower, or run fewer processes)",
            "14:24 FR104 backoff minimum 10s is larger than its maximum 1s `backoff 10s..1s` [min > max] (write `backoff 1s..10s`)",
            "14:40 FR104 `limit 0` allows no restart at all `limit 0 per 1m` [invalid limit] (use `restart never` instead)",
            "15:32 FR104 unknown signal `SIGKIL` `SIGKIL` [not a signal on this system] (did you mean `SIGKILL`?)",
            "17:9 FR104 group `c` has no command `c` [neither `run` nor `sh`] (add `run \"PROGRAM ARGS\"`, or `sh \"SCRIPT\"` for a shell script)",
            "17:18 FR104 port 0 is out of range `0` [not a TCP port] (ports are 1 to 65535)",
        ]
    );
    // Safe substitutes keep the model usable.
    let (m, _, _) = compile(text);
    assert_eq!((m.groups[0].processes, m.groups[0].coroutines), (1, 1));
    let b = &m.groups[1];
    assert_eq!(
        (b.restart.backoff_min, b.restart.backoff_max),
        (secs(1), secs(10))
    );
    assert_eq!(b.restart.limit.as_ref().unwrap().count, 5);
    assert_eq!(b.stop.steps[1].signal, Sig::TERM);
    assert_eq!(m.groups[2].port, None);
    // The misspelt SIGTERM handler is dropped, so the default one stands.
    assert!(m.handler(Sig::TERM).unwrap().default);
}

#[test]
fn fr104_limits_and_ready() {
    assert_eq!(
        findings(&group("    run \"x\"\n    restart always limit 3 per 0s\n    ready when exec \"\" every 0ms")),
        [
            "4:20 FR104 `per 0s` is an empty window `limit 3 per 0s` [invalid limit] (write a window such as `per 60s`)",
            "5:16 FR104 empty readiness check target `exec \"\"` [nothing to check] (write what to check inside the quotes)",
            "5:30 FR104 `every 0s` would poll the readiness check without pause `0ms` [must be more than 0] (poll every 100ms or more, e.g. `every 1s`)",
        ]
    );
    assert_eq!(
        findings(&group("    run \"x\"\n    port 80\n    processes 65536")),
        ["4:10 FR104 the port range 80..65615 runs past 65535 (65536 processes from port 80) `80` [range runs past 65535] (a group with ports runs at most 65535 processes)"]
    );
    // A plan lists every process: a group has at most 65,536.
    assert_eq!(
        findings(&group("    run \"x\"\n    processes 65537")),
        ["4:15 FR104 `processes 65537` is too large (at most 65536) `65537` [too large] (write `processes 65536` or less)"]
    );
    assert!(findings(&group("    run \"x\"\n    processes 65536")).is_empty());
    // Codes resolve in any case; the last port of a range may be 65535.
    assert!(findings(&group(
        "    run \"x\"\n    port 65534\n    processes 2\n    allow fr303"
    ))
    .is_empty());
}

#[test]
fn the_spec_example_resolves_cleanly() {
    // The language reference's example lives in tests/it/parse.rs.
    let text = include_str!("parse.rs");
    let start = text.find("# An API, a worker pool").unwrap();
    let end = start + text[start..].find("\"#;").unwrap();
    let m = clean(&text[start..end]);
    let names: Vec<&str> = m.groups.iter().map(|g| g.name.node.as_str()).collect();
    assert_eq!(names, ["migrate", "api", "worker", "tests"]);
    assert_eq!(m.finish.as_ref().unwrap().group.node, 3);
    assert_eq!(m.handlers.len(), 5);
    assert!(m.handlers.iter().all(|h| !h.default));
    let api = &m.groups[1];
    assert_eq!(
        (api.processes, api.coroutines, api.port),
        (4, 8, Some(8000))
    );
    assert_eq!(api.after[0].state, AfterState::Succeeded);
    let w = &m.groups[2];
    assert_eq!((w.after[0].group, w.after[0].state), (1, AfterState::Ready));
    assert_eq!(m.groups[3].after[0].state, AfterState::Ready);
    assert_eq!(m.groups[3].restart.mode, RestartMode::Never);
}

/// Token-level mutations of the full example (deleting, duplicating,
/// swapping and replacing words with other words and edge values) never
/// panic parse or resolve, and every span lies inside the text on
/// character boundaries.
#[test]
fn mutations_never_panic_and_spans_stay_inside() {
    let text = include_str!("parse.rs");
    let start = text.find("# An API, a worker pool").unwrap();
    let end = start + text[start..].find("\"#;").unwrap();
    let base = &text[start..end];
    let words: Vec<&str> = base.split_inclusive(char::is_whitespace).collect();
    let extra = [
        "0 ",
        "18446744073709551615 ",
        "4294967296 ",
        "65535 ",
        "65536 ",
        "SIGKILL ",
        "SIGFOO ",
        "{port} ",
        "\"{nope}\" ",
        "\"\" ",
        "\"'\" ",
        "forever ",
        "0s ",
        "999999999h ",
        "é ",
        "} ",
        "{ ",
        "; ",
        "\n",
        "group ",
        "after ",
        "drain ",
        "port ",
        "allow ",
        "FR999 ",
        "env { A = \"1\", A = \"2\" } ",
        "processes ",
    ];
    // A small deterministic generator (no dependency needed).
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut parsed = 0;
    for _ in 0..1500 {
        let mut w: Vec<&str> = words.clone();
        for _ in 0..1 + next(3) {
            let i = next(w.len());
            match next(4) {
                0 => {
                    w.remove(i);
                }
                1 => {
                    let j = next(w.len());
                    w.insert(i, w[j]);
                }
                2 => {
                    let j = next(w.len());
                    w.swap(i, j);
                }
                _ => w[i] = extra[next(extra.len())],
            }
        }
        let mutated: String = w.concat();
        let src = SourceFile::new("m.pf", mutated.as_str());
        let (file, mut diags) = parse(&src);
        if let Some(file) = file {
            parsed += 1;
            let (model, found) = resolve(&src, &file);
            diags.extend(found);
            assert!(model.handlers.len() >= 3, "defaults are always present");
        }
        for d in &diags {
            for label in std::iter::once(&d.primary).chain(&d.related) {
                let s = label.span;
                assert!(
                    s.start <= s.end && s.end <= mutated.len(),
                    "{d:?} in {mutated}"
                );
                assert!(mutated.is_char_boundary(s.start) && mutated.is_char_boundary(s.end));
            }
        }
    }
    // The mutations must exercise resolve too, not only syntax errors.
    assert!(parsed > 300, "only {parsed} mutants parsed");
}

/// Spans kept in the model cover the whole statement they come from (the
/// rules point their findings at them).
#[test]
fn model_spans_cover_their_statements() {
    let text = "topology t {\n  shutdown within 1m\n  escalate never\n  finish when a exits\n  on SIGUSR1 { wait a within 1s }\n  group a {\n    run \"x\"\n    after b ready\n    ready when notify\n    restart always\n    stop SIGINT drain 1s then SIGTERM drain 2s\n    process-group shared\n    die-with-parent no\n    allow FR303\n  }\n  group b { run \"y\" }\n}\n";
    let (m, diags, src) = compile(text);
    assert!(diags.is_empty(), "{diags:#?}");
    let s = |span| src.slice(span).to_string();
    assert_eq!(s(m.shutdown_span.unwrap()), "shutdown within 1m");
    assert_eq!(s(m.escalate_span.unwrap()), "escalate never");
    let f = m.finish.as_ref().unwrap();
    assert_eq!(
        (s(f.span), s(f.group.span)),
        ("finish when a exits".into(), "a".into())
    );
    let h = &m.handlers[0];
    assert_eq!(s(h.span), "on SIGUSR1 { wait a within 1s }");
    assert_eq!(s(h.signal.span), "SIGUSR1");
    assert_eq!(s(h.steps[0].span), "wait a within 1s");
    let Step::Wait { groups, .. } = &h.steps[0].node else {
        panic!()
    };
    assert_eq!(s(groups[0].span), "a");
    // Defaults point at the topology's name.
    assert!(m.handlers[1].default);
    assert_eq!(s(m.handlers[1].span), "t");
    let a = &m.groups[0];
    assert_eq!(s(a.name.span), "a");
    assert!(s(a.span).starts_with("group a {") && s(a.span).ends_with('}'));
    assert_eq!(s(a.command.span), "\"x\"");
    assert_eq!(s(a.after[0].span), "after b ready");
    assert_eq!(s(a.ready.as_ref().unwrap().span), "ready when notify");
    assert_eq!(s(a.restart.span.unwrap()), "restart always");
    assert_eq!(
        s(a.stop.span.unwrap()),
        "stop SIGINT drain 1s then SIGTERM drain 2s"
    );
    assert_eq!(s(a.stop.steps[1].span), "SIGTERM drain 2s");
    assert_eq!(s(a.process_group_span.unwrap()), "process-group shared");
    assert_eq!(s(a.die_with_parent_span.unwrap()), "die-with-parent no");
    assert_eq!(s(m.allows[0].span), "allow FR303");
    // Defaulted settings have no span.
    let b = &m.groups[1];
    assert!(b.restart.span.is_none() && b.stop.span.is_none());
    assert!(b.process_group_span.is_none() && b.die_with_parent_span.is_none());
}

/// A NUL cannot be passed to a program: `run` (and every other string
/// handed to the kernel) with one is FR104, pointed at the character.
#[test]
fn nul_in_a_command_is_rejected() {
    let text = "topology t {\n  group a {\n    run \"app --sep \0 x\"\n  }\n}\n";
    let src = SourceFile::new("nul.pf", text);
    let (file, diags) = parse(&src);
    assert!(diags.is_empty(), "{diags:?}");
    let (_, diags) = resolve(&src, &file.unwrap());
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].code, "FR104");
    assert_eq!(
        &text[diags[0].primary.span.start..diags[0].primary.span.end],
        "\0"
    );
    // The short form: the human one would print the NUL itself.
    let short = flowrun::render::short_line(&src, &diags[0]);
    insta::with_settings!({
        snapshot_path => "../../snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!("case_nul_in_run", short);
    });
}
