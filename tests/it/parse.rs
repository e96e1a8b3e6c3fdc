//! The parser: a full example, every statement form, tokens, and FR001
//! messages pinned to line and column.

use flowrun::ast::*;
use flowrun::parse::parse;
use flowrun::source::SourceFile;
use std::time::Duration;

/// A full example topology: the shape of docs/language.md's example, with
/// every handler form.
const SPEC_EXAMPLE: &str = r#"# An API, a worker pool, a one-shot migration and an integration test run.
topology ingest {
  shutdown within 60s          # whole-topology teardown budget
  finish when tests exits      # drain everything when `tests` ends; exit with its status

  on SIGINT drain              # the runner's reaction to a signal it receives
  on SIGTERM drain
  on SIGHUP reload
  on SIGUSR1 forward to worker           # forward the received signal
  on SIGUSR2 {                           # a handler is a sequence of steps
    forward SIGTERM to worker
    wait worker within 10s
    restart worker
  }

  group migrate {
    run "python manage.py migrate"
    once                                 # runs to completion (a workflow step)
  }

  group api {
    run "gunicorn app:wsgi --threads {coroutines} --bind 127.0.0.1:{port}"
    processes 4
    coroutines 8
    port 8000                            # {port} = 8000 + process index
    after migrate succeeded
    ready when http "http://127.0.0.1:{port}/healthz" every 200ms within 30s
    restart on-failure backoff 500ms..30s limit 5 per 60s
    stop SIGTERM drain 20s               # then SIGKILL to the whole process group
  }

  group worker {
    run "celery -A app worker --pool gevent --concurrency {coroutines}"
    processes 2
    coroutines 100
    after api ready
    env { QUEUE = "ingest", LOG_LEVEL = "info" }
    cwd "services/worker"
    stop SIGTERM drain 25s then SIGQUIT drain 5s
  }

  group tests {
    sh "exec pytest -x tests/integration"
    once
    after worker ready
  }
}
"#;

fn ok(text: &str) -> File {
    let src = SourceFile::new("t.pf", text);
    let (file, diags) = parse(&src);
    assert!(diags.is_empty(), "unexpected diagnostics: {diags:#?}");
    file.expect("parses")
}

/// `line:col message [label]` of the single FR001 a text produces.
fn fr001(text: &str) -> String {
    let src = SourceFile::new("t.pf", text);
    let (file, diags) = parse(&src);
    assert!(file.is_none(), "should not parse: {text:?}");
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert_eq!(d.code, "FR001");
    assert!(d.primary.span.end <= text.len());
    let (l, c) = src.line_col(d.primary.span.start);
    format!("{l}:{c} {} [{}]", d.message, d.primary.message)
}

fn help(text: &str) -> String {
    let (_, diags) = parse(&SourceFile::new("t.pf", text));
    diags[0].help.clone().unwrap_or_default()
}

fn names(v: &[flowrun::source::Spanned<String>]) -> Vec<&str> {
    v.iter().map(|s| s.node.as_str()).collect()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn groups_of(f: &File) -> Vec<&Group> {
    f.topology
        .items
        .iter()
        .filter_map(|i| match &i.kind {
            TopItemKind::Group(g) => Some(g),
            _ => None,
        })
        .collect()
}

fn handlers(f: &File) -> Vec<&Handler> {
    f.topology
        .items
        .iter()
        .filter_map(|i| match &i.kind {
            TopItemKind::Handler(h) => Some(h),
            _ => None,
        })
        .collect()
}

/// Wrap group settings in a topology and return the one group's settings.
fn settings(body: &str) -> Vec<SettingKind> {
    let f = ok(&format!("topology t {{\n  group g {{\n{body}\n  }}\n}}\n"));
    groups_of(&f)[0]
        .settings
        .iter()
        .map(|s| s.kind.clone())
        .collect()
}

/// Wrap a handler body and return its steps.
fn steps(handler: &str) -> Vec<Step> {
    let f = ok(&format!("topology t {{\n  on SIGUSR1 {handler}\n}}\n"));
    handlers(&f)[0]
        .steps
        .iter()
        .map(|s| s.node.clone())
        .collect()
}

#[test]
fn spec_example_parses_to_the_expected_shape() {
    let f = ok(SPEC_EXAMPLE);
    let t = &f.topology;
    assert_eq!(t.name.node, "ingest");
    assert_eq!(&SPEC_EXAMPLE[t.name.span.start..t.name.span.end], "ingest");
    assert_eq!(t.items.len(), 11);

    let TopItemKind::Shutdown(d) = &t.items[0].kind else {
        panic!("{:?}", t.items[0])
    };
    assert_eq!(d.node, Timeout::Finite(secs(60)));
    assert_eq!(&SPEC_EXAMPLE[d.span.start..d.span.end], "60s");
    assert_eq!(
        &SPEC_EXAMPLE[t.items[0].span.start..t.items[0].span.end],
        "shutdown within 60s"
    );
    let TopItemKind::Finish { group, when } = &t.items[1].kind else {
        panic!()
    };
    assert_eq!(
        (group.node.as_str(), when.node),
        ("tests", FinishWhen::Exits)
    );

    let hs = handlers(&f);
    let sigs: Vec<&str> = hs.iter().map(|h| h.signal.node.as_str()).collect();
    assert_eq!(sigs, ["SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2"]);
    assert_eq!(hs[0].steps[0].node, Step::Drain { groups: vec![] });
    assert!(!hs[0].block);
    assert_eq!(hs[2].steps[0].node, Step::Reload);
    let Step::Forward {
        signal: None,
        groups,
    } = &hs[3].steps[0].node
    else {
        panic!()
    };
    assert_eq!(names(groups), ["worker"]);
    assert!(hs[4].block);
    assert_eq!(hs[4].steps.len(), 3);
    let Step::Forward {
        signal: Some(s),
        groups,
    } = &hs[4].steps[0].node
    else {
        panic!()
    };
    assert_eq!(
        (s.node.as_str(), names(groups)),
        ("SIGTERM", vec!["worker"])
    );
    let Step::Wait { groups, within } = &hs[4].steps[1].node else {
        panic!()
    };
    assert_eq!(names(groups), ["worker"]);
    assert_eq!(within.as_ref().unwrap().node, Timeout::Finite(secs(10)));
    let Step::Restart {
        groups,
        rolling: false,
    } = &hs[4].steps[2].node
    else {
        panic!()
    };
    assert_eq!(names(groups), ["worker"]);
    let s = hs[4].steps[2].span;
    assert_eq!(&SPEC_EXAMPLE[s.start..s.end], "restart worker");

    let gs = groups_of(&f);
    let gnames: Vec<&str> = gs.iter().map(|g| g.name.node.as_str()).collect();
    assert_eq!(gnames, ["migrate", "api", "worker", "tests"]);
    assert_eq!(gs[0].settings.len(), 2);
    let SettingKind::Run(run) = &gs[0].settings[0].kind else {
        panic!()
    };
    assert_eq!(run.node, "python manage.py migrate");
    assert_eq!(gs[0].settings[1].kind, SettingKind::Once);
    let g = gs[0].span;
    assert!(SPEC_EXAMPLE[g.start..g.end].starts_with("group migrate {"));
    assert!(SPEC_EXAMPLE[g.start..g.end].ends_with('}'));

    let api = &gs[1].settings;
    assert_eq!(api.len(), 8);
    let SettingKind::Run(run) = &api[0].kind else {
        panic!()
    };
    assert_eq!(
        run.node,
        "gunicorn app:wsgi --threads {coroutines} --bind 127.0.0.1:{port}"
    );
    assert_eq!(
        &SPEC_EXAMPLE[run.span.start..run.span.end],
        "\"gunicorn app:wsgi --threads {coroutines} --bind 127.0.0.1:{port}\""
    );
    assert!(matches!(&api[1].kind, SettingKind::Processes(n) if n.node == 4));
    assert!(matches!(&api[2].kind, SettingKind::Coroutines(n) if n.node == 8));
    assert!(matches!(&api[3].kind, SettingKind::Port(n) if n.node == 8000));
    let SettingKind::After {
        group,
        state: Some(st),
    } = &api[4].kind
    else {
        panic!()
    };
    assert_eq!(
        (group.node.as_str(), st.node),
        ("migrate", AfterState::Succeeded)
    );
    let SettingKind::Ready(r) = &api[5].kind else {
        panic!()
    };
    assert_eq!(
        r.probe.node,
        Probe::Http("http://127.0.0.1:{port}/healthz".into())
    );
    assert_eq!(r.every.as_ref().unwrap().node, Duration::from_millis(200));
    assert_eq!(r.within.as_ref().unwrap().node, Timeout::Finite(secs(30)));
    let SettingKind::Restart(rp) = &api[6].kind else {
        panic!()
    };
    assert_eq!(rp.mode.node, RestartMode::OnFailure);
    assert_eq!(
        rp.backoff.as_ref().unwrap().node,
        (Duration::from_millis(500), secs(30))
    );
    assert_eq!(rp.limit.as_ref().unwrap().node, (5, secs(60)));
    let SettingKind::Stop(stop) = &api[7].kind else {
        panic!()
    };
    assert_eq!(stop.steps.len(), 1);
    assert_eq!(stop.steps[0].node.signal.node, "SIGTERM");
    assert_eq!(
        stop.steps[0].node.drain.as_ref().unwrap().node,
        Timeout::Finite(secs(20))
    );
    assert!(stop.target.is_none());

    let worker = &gs[2].settings;
    let SettingKind::Env(env) = &worker[4].kind else {
        panic!()
    };
    let kv: Vec<(&str, &str)> = env
        .iter()
        .map(|e| (e.key.node.as_str(), e.value.node.as_str()))
        .collect();
    assert_eq!(kv, [("QUEUE", "ingest"), ("LOG_LEVEL", "info")]);
    assert!(matches!(&worker[5].kind, SettingKind::Cwd(c) if c.node == "services/worker"));
    let SettingKind::Stop(stop) = &worker[6].kind else {
        panic!()
    };
    let ladder: Vec<(&str, Timeout)> = stop
        .steps
        .iter()
        .map(|s| {
            (
                s.node.signal.node.as_str(),
                s.node.drain.as_ref().unwrap().node,
            )
        })
        .collect();
    assert_eq!(
        ladder,
        [
            ("SIGTERM", Timeout::Finite(secs(25))),
            ("SIGQUIT", Timeout::Finite(secs(5)))
        ]
    );

    let tests = &gs[3].settings;
    assert!(
        matches!(&tests[0].kind, SettingKind::Sh(s) if s.node == "exec pytest -x tests/integration")
    );
    assert!(
        matches!(&tests[2].kind, SettingKind::After { group, state: Some(s) } if group.node == "worker" && s.node == AfterState::Ready)
    );
}

#[test]
fn every_step_form() {
    assert_eq!(steps("drain"), [Step::Drain { groups: vec![] }]);
    let s = steps("{\n drain a b\n restart a b rolling\n restart c\n reload\n forward to a b\n forward SIGHUP to c\n wait a b within 1m30s\n wait c\n wait d within forever\n kill\n ignore\n}");
    let Step::Drain { groups } = &s[0] else {
        panic!()
    };
    assert_eq!(names(groups), ["a", "b"]);
    let Step::Restart {
        groups,
        rolling: true,
    } = &s[1]
    else {
        panic!()
    };
    assert_eq!(names(groups), ["a", "b"]);
    let Step::Restart {
        groups,
        rolling: false,
    } = &s[2]
    else {
        panic!()
    };
    assert_eq!(names(groups), ["c"]);
    assert_eq!(s[3], Step::Reload);
    let Step::Forward {
        signal: None,
        groups,
    } = &s[4]
    else {
        panic!()
    };
    assert_eq!(names(groups), ["a", "b"]);
    let Step::Forward {
        signal: Some(sig),
        groups,
    } = &s[5]
    else {
        panic!()
    };
    assert_eq!((sig.node.as_str(), names(groups)), ("SIGHUP", vec!["c"]));
    let Step::Wait {
        groups,
        within: Some(w),
    } = &s[6]
    else {
        panic!()
    };
    assert_eq!(
        (names(groups), w.node),
        (vec!["a", "b"], Timeout::Finite(secs(90)))
    );
    let Step::Wait {
        groups,
        within: None,
    } = &s[7]
    else {
        panic!()
    };
    assert_eq!(names(groups), ["c"]);
    let Step::Wait {
        within: Some(w), ..
    } = &s[8]
    else {
        panic!()
    };
    assert_eq!(w.node, Timeout::Forever);
    assert_eq!(&s[9..], [Step::Kill, Step::Ignore]);
    // `;` separates steps on one line, as a newline does.
    assert_eq!(steps("{ drain a; kill }").len(), 2);
    assert_eq!(steps("ignore"), [Step::Ignore]);
}

#[test]
fn every_topology_setting() {
    let f = ok("topology t {\n shutdown within forever\n finish when a succeeds\n escalate never\n allow FR304 because \"long jobs\"\n allow unbounded-drain\n}\n");
    let k: Vec<&TopItemKind> = f.topology.items.iter().map(|i| &i.kind).collect();
    assert!(matches!(k[0], TopItemKind::Shutdown(t) if t.node == Timeout::Forever));
    assert!(matches!(k[1], TopItemKind::Finish { when, .. } if when.node == FinishWhen::Succeeds));
    assert!(matches!(k[2], TopItemKind::Escalate(e) if e.node == Escalate::Never));
    let TopItemKind::Allow(a) = k[3] else {
        panic!()
    };
    assert_eq!(a.rule.node, "FR304");
    assert_eq!(a.reason.as_ref().unwrap().node, "long jobs");
    let TopItemKind::Allow(a) = k[4] else {
        panic!()
    };
    assert_eq!(
        (a.rule.node.as_str(), a.reason.is_none()),
        ("unbounded-drain", true)
    );
    let f = ok("topology t { escalate on repeat }");
    assert!(
        matches!(&f.topology.items[0].kind, TopItemKind::Escalate(e) if e.node == Escalate::OnRepeat)
    );
}

#[test]
fn every_group_setting() {
    let s = settings(
        r#"    run "a b"
    sh "x"
    processes 3; coroutines 7; port 9000
    once
    after a
    after b started
    after c exited
    ready when tcp "127.0.0.1:{port}"
    ready when exec "check" every 5s
    ready when log "listening on" within forever
    ready when file "/tmp/ready"
    ready when notify
    restart never
    restart always backoff 0ms..1s
    restart on-failure limit 3 per 1h
    stop SIGINT drain forever then SIGKILL drain 0s to group
    stop SIGTERM drain 1s to leader
    env {}
    env {
      A = "1"
      _B2 = "two",
    }
    cwd "/srv"
    process-group shared
    process-group own
    die-with-parent no
    die-with-parent yes
    allow FR303 because "tini does this""#,
    );
    assert_eq!(s.len(), 27);
    assert!(matches!(&s[0], SettingKind::Run(r) if r.node == "a b"));
    assert!(matches!(&s[1], SettingKind::Sh(r) if r.node == "x"));
    assert!(matches!(&s[2], SettingKind::Processes(n) if n.node == 3));
    assert!(matches!(&s[3], SettingKind::Coroutines(n) if n.node == 7));
    assert!(matches!(&s[4], SettingKind::Port(n) if n.node == 9000));
    assert_eq!(s[5], SettingKind::Once);
    assert!(matches!(&s[6], SettingKind::After { group, state: None } if group.node == "a"));
    assert!(
        matches!(&s[7], SettingKind::After { state: Some(st), .. } if st.node == AfterState::Started)
    );
    assert!(
        matches!(&s[8], SettingKind::After { state: Some(st), .. } if st.node == AfterState::Exited)
    );
    let probes: Vec<Probe> = s[9..14]
        .iter()
        .map(|k| match k {
            SettingKind::Ready(r) => r.probe.node.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        probes,
        [
            Probe::Tcp("127.0.0.1:{port}".into()),
            Probe::Exec("check".into()),
            Probe::Log("listening on".into()),
            Probe::File("/tmp/ready".into()),
            Probe::Notify
        ]
    );
    let SettingKind::Ready(r) = &s[10] else {
        panic!()
    };
    assert_eq!(
        (r.every.as_ref().unwrap().node, r.within.is_none()),
        (secs(5), true)
    );
    let SettingKind::Ready(r) = &s[11] else {
        panic!()
    };
    assert_eq!(r.within.as_ref().unwrap().node, Timeout::Forever);
    let SettingKind::Restart(r) = &s[14] else {
        panic!()
    };
    assert_eq!(
        (r.mode.node, r.backoff.is_none(), r.limit.is_none()),
        (RestartMode::Never, true, true)
    );
    let SettingKind::Restart(r) = &s[15] else {
        panic!()
    };
    assert_eq!(r.mode.node, RestartMode::Always);
    assert_eq!(r.backoff.as_ref().unwrap().node, (Duration::ZERO, secs(1)));
    let SettingKind::Restart(r) = &s[16] else {
        panic!()
    };
    assert_eq!(r.limit.as_ref().unwrap().node, (3, secs(3600)));
    let SettingKind::Stop(st) = &s[17] else {
        panic!()
    };
    assert_eq!(
        st.steps[0].node.drain.as_ref().unwrap().node,
        Timeout::Forever
    );
    assert_eq!(st.steps[1].node.signal.node, "SIGKILL");
    assert_eq!(st.target.as_ref().unwrap().node, StopTarget::Group);
    let SettingKind::Stop(st) = &s[18] else {
        panic!()
    };
    assert_eq!(st.target.as_ref().unwrap().node, StopTarget::Leader);
    assert_eq!(s[19], SettingKind::Env(vec![]));
    let SettingKind::Env(env) = &s[20] else {
        panic!()
    };
    let keys: Vec<&str> = env.iter().map(|e| e.key.node.as_str()).collect();
    assert_eq!(keys, ["A", "_B2"]);
    assert!(matches!(&s[21], SettingKind::Cwd(c) if c.node == "/srv"));
    assert!(matches!(&s[22], SettingKind::ProcessGroup(m) if m.node == ProcessGroupMode::Shared));
    assert!(matches!(&s[23], SettingKind::ProcessGroup(m) if m.node == ProcessGroupMode::Own));
    assert!(matches!(&s[24], SettingKind::DieWithParent(b) if !b.node));
    assert!(matches!(&s[25], SettingKind::DieWithParent(b) if b.node));
    assert!(matches!(&s[26], SettingKind::Allow(a) if a.rule.node == "FR303"));
}

#[test]
fn a_group_on_one_line_and_an_empty_group() {
    let f = ok("topology t { group a { run \"x\"; once }; group b {} }");
    let gs = groups_of(&f);
    assert_eq!(gs.len(), 2);
    assert_eq!(gs[0].settings.len(), 2);
    assert!(gs[1].settings.is_empty());
}

#[test]
fn string_escapes_are_unescaped_and_spans_cover_the_quotes() {
    let text = "topology t {\n group a { run \"say \\\"hi\\\" \\\\ a\\tb\\nc\" }\n}";
    let s = settings(r#"run "say \"hi\" \\ a\tb\nc""#);
    assert!(matches!(&s[0], SettingKind::Run(r) if r.node == "say \"hi\" \\ a\tb\nc"));
    let f = ok(text);
    let SettingKind::Run(r) = &groups_of(&f)[0].settings[0].kind else {
        panic!()
    };
    assert_eq!(
        &text[r.span.start..r.span.end],
        "\"say \\\"hi\\\" \\\\ a\\tb\\nc\""
    );
    // Non-ASCII text passes through.
    let s = settings(r#"run "écho ✓""#);
    assert!(matches!(&s[0], SettingKind::Run(r) if r.node == "écho ✓"));
}

#[test]
fn durations_combine_units() {
    let within = |d: &str| {
        let f = ok(&format!("topology t {{ shutdown within {d} }}"));
        let TopItemKind::Shutdown(t) = &f.topology.items[0].kind else {
            panic!()
        };
        t.node
    };
    let ms = |n| Timeout::Finite(Duration::from_millis(n));
    assert_eq!(within("250ms"), ms(250));
    assert_eq!(within("10s"), ms(10_000));
    assert_eq!(within("5m"), ms(300_000));
    assert_eq!(within("1h"), ms(3_600_000));
    assert_eq!(within("1m30s"), ms(90_000));
    assert_eq!(within("1h2m3s4ms"), ms(3_723_004));
    assert_eq!(within("0s"), ms(0));
    assert_eq!(within("forever"), Timeout::Forever);
}

#[test]
fn comments_and_blank_lines_anywhere() {
    let f = ok("# head\n\n topology t { # c\n\n # only a comment\n group a { # c\n  run \"x\" # c\n\n } # c\n} # tail\n# end");
    assert_eq!(groups_of(&f).len(), 1);
    // A byte-order mark at the start.
    assert_eq!(groups_of(&ok("\u{FEFF}topology t { group a {} }")).len(), 1);
    // Windows line endings.
    let f = ok("topology t {\r\n  group a {\r\n    run \"x\"\r\n  }\r\n}\r\n");
    assert_eq!(groups_of(&f)[0].settings.len(), 1);
}

#[test]
fn fr001_messages_are_pinned() {
    assert_eq!(
        fr001(""),
        "1:1 expected `topology` [unexpected end of file]"
    );
    assert_eq!(
        fr001("topology x {"),
        "1:12 the file ends before the `{` of topology `x` is closed [this `{` is never closed]"
    );
    assert_eq!(help("topology x {"), "add the missing `}` for topology `x`");
    assert_eq!(
        fr001("topology x {\n  on SIGINT drain restart api\n}"),
        "2:19 expected a group name, `}` or the end of the statement [unexpected `restart`]"
    );
    assert!(
        help("topology x {\n  on SIGINT drain restart api\n}").contains("`restart` is a keyword")
    );
    assert_eq!(
        fr001("topology x {\n  shutdown within 10\n}"),
        "2:19 expected a duration like 10s or `forever` [unexpected `10`]"
    );
    assert_eq!(
        fr001("topology x {\n group a {\n  run \"x\\q\"\n }\n}"),
        "3:9 unknown escape `\\q` in a string [unknown escape]"
    );
    assert_eq!(
        fr001("topology x {\n group a {\n  run \"x\n }\n}"),
        "3:9 expected `\"` to close the string [unexpected end of line]"
    );
    assert_eq!(
        fr001("topology x {\n group a {\n  processes 18446744073709551616\n }\n}"),
        "3:13 number `18446744073709551616` is too large [too large]"
    );
    assert_eq!(
        fr001("topology x { shutdown within 99999999999999999h }"),
        "1:30 duration `99999999999999999h` is too large [too large]"
    );
    assert_eq!(
        fr001("topology x {}\ntopology y {}"),
        "2:1 expected the end of the file [unexpected `topology`]"
    );
    assert_eq!(
        help("topology x {}\ntopology y {}"),
        "a file holds exactly one topology"
    );
    assert_eq!(
        fr001("topology x {\n group a {\n  run \"x\" once\n }\n}"),
        "3:11 expected `}` or the end of the statement [unexpected `once`]"
    );
    assert_eq!(
        fr001("topology x {\n group drain {}\n}"),
        "2:8 expected a group name [unexpected `drain`]"
    );
    assert_eq!(
        fr001("topology x {\n  shutdwn within 1s\n}"),
        "2:3 expected a topology statement (`shutdown`, `finish`, `on`, `escalate`, `allow`, `env-file`, `log` or `group`) or `}` [unexpected `shutdwn`]"
    );
    assert_eq!(
        help("topology x {\n  shutdwn within 1s\n}"),
        "did you mean `shutdown`?"
    );
    assert_eq!(
        fr001("topology x {\n  group a {\n    processes 4\n  on SIGINT drain\n}"),
        "4:3 expected a group setting (`run`, `sh`, `processes`, `coroutines`, `port`, `once`, `after`, `ready`, `restart`, `stop`, `env`, `env-file`, `cwd`, `process-group`, `die-with-parent`, `log` or `allow`) or `}` [unexpected `on`]"
    );
    assert!(
        help("topology x {\n  group a {\n    processes 4\n  on SIGINT drain\n}")
            .contains("is a `}` missing")
    );
    assert_eq!(
        fr001("topology x {\n  on sigint drain\n}"),
        "2:6 expected a signal like SIGTERM [unexpected `sigint`]"
    );
    assert_eq!(
        help("topology x {\n  on sigint drain\n}"),
        "signal names are upper case: `SIGINT`"
    );
    assert_eq!(
        fr001("topology x {\n  group Api {}\n}"),
        "2:9 expected a group name [unexpected `Api`]"
    );
    assert_eq!(
        fr001("\u{1F600}"),
        "1:1 expected `topology` [unexpected `\u{1F600}`]"
    );
    assert_eq!(
        fr001("topology x {\n  group a { after a b }\n}"),
        "2:21 expected a state (`started`, `ready`, `succeeded` or `exited`), `}` or the end of the statement [unexpected `b`]"
    );
    assert_eq!(
        help("topology x {\n  group a { after a b }\n}"),
        "`after` takes one group: write one `after` line per group"
    );
    assert_eq!(
        fr001("topology x { shutdown within 1.5s }"),
        "1:30 expected a duration like 10s or `forever` [unexpected `1.5s`]"
    );
    assert!(help("topology x { shutdown within 1.5s }").contains("`1500ms`"));
    assert_eq!(
        help("topology x { group a { ready when notify within 1s every 2s } }"),
        "in a ready check, write `every D` before `within D`"
    );
    assert_eq!(
        fr001("topology x {\n  # a comment { }\n  group a { run \"x\" } # trailing\n  group b { stop SIGTERM drain 1s to pid }\n}"),
        "4:38 expected `group` or `leader` [unexpected `pid`]"
    );
    assert_eq!(
        fr001("topology x { on SIGUSR1 { } }"),
        "1:27 expected a handler step (`drain`, `restart`, `reload`, `forward`, `wait`, `kill` or `ignore`) [unexpected `}`]"
    );
}

/// The mistakes people make, each with the help that fixes it (the
/// rendered reports are in `tests/fixtures/cases/`, snapshotted by the
/// rules tests).
#[test]
fn fr001_help_for_common_mistakes() {
    let g = |body: &str| {
        format!("topology x {{\n  group api {{\n    run \"a\"\n    {body}\n  }}\n}}\n")
    };
    let cases: &[(String, &str, &str)] = &[
        (g("processes: 4"), "[unexpected `:`]", "write `processes 4`"),
        (g("processes=4"), "[unexpected `=`]", "write `processes 4`"),
        (
            g("proceses 4"),
            "[unexpected `proceses`]",
            "did you mean `processes`?",
        ),
        (
            g("Processes 4"),
            "[unexpected `Processes`]",
            "keywords are lower case: `processes`",
        ),
        (
            g("processes 4.5"),
            "[unexpected `4.5`]",
            "numbers are whole",
        ),
        (
            g("die-with-parent false"),
            "[unexpected `false`]",
            "write `yes` or `no`",
        ),
        (
            g("restart on_failure"),
            "[unexpected `on_failure`]",
            "did you mean `on-failure`?",
        ),
        (
            g("restart always backoff 1s-5s"),
            "[unexpected `1s-5s`]",
            "`1s..5s`",
        ),
        (g("cwd /tmp"), "[unexpected `/tmp`]", "`cwd \"/tmp\"`"),
        (
            g("after api redy"),
            "[unexpected `redy`]",
            "did you mean `ready`?",
        ),
        (
            g("stop SIGTERM drain 1m 30s"),
            "[unexpected `30s`]",
            "`1m30s`",
        ),
        (
            "topology x {\n  group api:\n    run \"a\"\n}\n".into(),
            "[unexpected `:`]",
            "write `group api {`",
        ),
        (
            "topology x {\n  escalate on-repeat\n}\n".into(),
            "[unexpected `on-repeat`]",
            "`escalate on repeat`",
        ),
        (
            "topology x {\n  allow FR304 because legacy code\n}\n".into(),
            "[unexpected `legacy code`]",
            "`because \"legacy code\"`",
        ),
        (
            "topology x {\n  on SIGUSR1 wait api 10s\n}\n".into(),
            "[unexpected `10s`]",
            "`within 10s`",
        ),
        (
            "topology x {\n  on SIGUSR1 forward SIGTERM api\n}\n".into(),
            "[unexpected `api`]",
            "`to api`",
        ),
        (
            "topology x {\n  group café { run \"a\" }\n}\n".into(),
            "[unexpected `café`]",
            "names are ASCII",
        ),
        (
            "topology x {\n  group api { run 'a' }\n}\n".into(),
            "[unexpected `'a'`]",
            "`run \"a\"`",
        ),
        (
            "topology x {\n  group api { run \"a\" }\n}\n}\n".into(),
            "extra `}`",
            "remove it",
        ),
        (
            "topology x {\n  group api { run \"a\" } }\n  group b { run \"b\" }\n}\n".into(),
            "[unexpected `group`]",
            "closed by the `}` on line 2",
        ),
        (
            "topology x {\n  group api {\n    env { A = \"1\"\n    run \"a\"\n  }\n}\n".into(),
            "3:5 `env {` is never closed",
            "close the `env` block",
        ),
        (
            "topology x {\n  group api {\n    run \"a\"\n}\n".into(),
            "2:13 the file ends before the `{` of group `api` is closed",
            "judging by the indentation",
        ),
        (
            g("stop SIGTERM then SIGKILL"),
            "expected `drain` and a time after SIGTERM",
            "only a final SIGKILL",
        ),
    ];
    for (text, line, help_has) in cases {
        let got = fr001(text);
        assert!(got.contains(line), "{text:?}: {got}");
        if !help_has.is_empty() {
            let h = help(text);
            assert!(
                h.contains(help_has),
                "{text:?}: help {h:?} lacks {help_has:?}"
            );
        }
    }
    // A final SIGKILL needs no drain.
    ok("topology x {\n  group api {\n    run \"a\"\n    stop SIGTERM drain 5s then SIGKILL\n  }\n}\n");
    ok("topology x {\n  env-file \"a.env\"\n  group api {\n    run \"a\"\n    env-file \"b.env\"\n  }\n}\n");
}

#[test]
fn never_panics_on_truncations_and_junk() {
    for end in 0..=SPEC_EXAMPLE.len() {
        if !SPEC_EXAMPLE.is_char_boundary(end) {
            continue;
        }
        let text = &SPEC_EXAMPLE[..end];
        let src = SourceFile::new("t.pf", text);
        let (file, diags) = parse(&src);
        assert!(file.is_some() == diags.is_empty(), "at {end}");
        for d in &diags {
            assert!(d.primary.span.start <= d.primary.span.end && d.primary.span.end <= text.len());
        }
    }
    // Byte deletions (a crude mutation) also never panic.
    for i in 0..SPEC_EXAMPLE.len() {
        if !SPEC_EXAMPLE.is_char_boundary(i) || !SPEC_EXAMPLE.is_char_boundary(i + 1) {
            continue;
        }
        let text = format!("{}{}", &SPEC_EXAMPLE[..i], &SPEC_EXAMPLE[i + 1..]);
        let _ = parse(&SourceFile::new("t.pf", text));
    }
    for junk in [
        "\0\0\0",
        "{{{{",
        "}}}}",
        "topology",
        "topology x",
        "\"",
        "topology x { run \"",
        "#",
    ] {
        let (file, diags) = parse(&SourceFile::new("t.pf", junk));
        assert!(file.is_none() && diags.len() == 1, "{junk:?}");
    }
}

#[test]
fn a_5000_group_file_parses() {
    let mut text =
        String::from("topology big {\n  on SIGUSR1 { drain g0 g1; restart g2 rolling }\n");
    for i in 0..5_000u32 {
        text.push_str(&format!(
            "  group g{i} {{\n    run \"worker --id {{index}}\"\n    processes 2\n    after g{} ready\n    stop SIGTERM drain 5s then SIGQUIT drain 1s\n  }}\n",
            i.saturating_sub(1)
        ));
    }
    text.push_str("}\n");
    let start = std::time::Instant::now();
    let f = ok(&text);
    let took = start.elapsed();
    assert_eq!(groups_of(&f).len(), 5_000);
    eprintln!("5,000 groups ({} bytes) parsed in {took:?}", text.len());
}

/// Timing for the grammar's linearity (run in release:
/// `cargo test --release --test parse -- --ignored --nocapture`). Reports
/// the best of a few runs, since the machine may be shared.
#[test]
#[ignore]
fn timing_500_to_50000_groups() {
    fn best<T>(runs: u32, mut f: impl FnMut() -> T) -> (Duration, T) {
        let mut best = Duration::MAX;
        let mut out = None;
        for _ in 0..runs {
            let start = std::time::Instant::now();
            let v = f();
            best = best.min(start.elapsed());
            out = Some(v);
        }
        (best, out.unwrap())
    }
    // FLOWRUN_TIMING_N=5000 measures one size (e.g. under valgrind).
    let sizes: Vec<u32> = match std::env::var("FLOWRUN_TIMING_N") {
        Ok(n) => vec![n.parse().expect("a number")],
        Err(_) => vec![500, 5_000, 50_000],
    };
    for n in sizes {
        let mut text =
            String::from("topology big {\n  on SIGUSR1 { drain g0; restart g1 rolling }\n");
        for i in 0..n {
            text.push_str(&format!(
                "  group g{i} {{\n    run \"worker --id {{index}}\"\n    processes 2\n    after g{} ready\n    stop SIGTERM drain 5s then SIGQUIT drain 1s\n  }}\n",
                i.saturating_sub(1)
            ));
        }
        text.push_str("}\n");
        let src = SourceFile::new("big.pf", text);
        let runs = if std::env::var_os("FLOWRUN_TIMING_N").is_some() {
            1
        } else if n >= 50_000 {
            3
        } else {
            7
        };
        let (parsed, (file, diags)) = best(runs, || parse(&src));
        assert!(diags.is_empty());
        let file = file.unwrap();
        let (resolved, (_, found)) = best(runs, || flowrun::resolve::resolve(&src, &file));
        assert!(found.is_empty());
        eprintln!(
            "{n:>6} groups, {:>8} bytes: parse {parsed:?}, resolve {resolved:?}",
            src.text.len()
        );
    }
}

/// The help and brace-matching paths slice the text around the error: feed
/// them every case fixture cut at every character and with the usual
/// culprits spliced in, and check spans stay on character boundaries
/// inside the file. (`compile` runs too, for the env-file and ready paths.)
#[test]
fn syntax_help_never_panics_and_keeps_spans_inside() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cases");
    let mut texts: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "pf").then(|| std::fs::read_to_string(p).ok())?
        })
        .collect();
    texts.sort();
    let junk = [
        ":", "=", "}", "{", "é", "café", "4.5", ".", "'", "\"", "1s-5s", "\n", "env {", "#",
        "\u{0}", "\r\n", "then", "SIGKILL", "within", "1m 30s", "\u{FEFF}",
    ];
    let check = |text: &str| {
        let src = SourceFile::new("tests/fixtures/cases/fuzz.pf", text);
        let (_, diags) = parse(&src);
        for d in &diags {
            for s in std::iter::once(&d.primary.span).chain(d.related.iter().map(|l| &l.span)) {
                assert!(s.start <= s.end && s.end <= text.len(), "{text:?}: {d:?}");
                assert!(
                    text.is_char_boundary(s.start) && text.is_char_boundary(s.end),
                    "{text:?}: {d:?}"
                );
            }
        }
        let c = flowrun::compile(src, None);
        for d in &c.diagnostics {
            assert!(d.primary.span.end <= text.len(), "{text:?}: {d:?}");
        }
    };
    let mut n = 0;
    for text in &texts {
        let bounds: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        for &i in &bounds {
            check(&text[..i]);
            n += 1;
        }
        for &i in bounds.iter().step_by(11) {
            for j in junk {
                check(&format!("{}{j}{}", &text[..i], &text[i..]));
                n += 1;
            }
        }
    }
    assert!(n > 10_000, "only {n} inputs");
}
