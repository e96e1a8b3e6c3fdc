//! Unit tests of the plan renderings on a topology built by hand (the
//! examples' snapshots in tests/it/examples.rs cover parsed files).

use super::*;
use crate::ast::{
    AfterState, Escalate, FinishWhen, Probe, ProcessGroupMode, RestartMode, StopTarget,
};
use crate::diagnostic::{Diagnostic, Label};
use crate::model::{
    After, Allow, Finish, Handler, LadderStep, ReadyCheck, Restart, RestartLimit, Sig, Step, Stop,
};
use crate::source::{SourceFile, Span, Spanned};
use std::time::Duration;

fn sp<T>(node: T) -> Spanned<T> {
    Spanned::new(node, Span::default())
}

fn secs(s: u64) -> Timeout {
    Timeout::Finite(Duration::from_secs(s))
}

fn group(name: &str, command: Command) -> Group {
    Group {
        name: sp(name.into()),
        span: Span::default(),
        command: sp(command),
        processes: 1,
        coroutines: 1,
        port: None,
        once: false,
        after: Vec::new(),
        ready: None,
        restart: Restart {
            mode: RestartMode::OnFailure,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            limit: Some(RestartLimit {
                count: 5,
                per: Duration::from_secs(60),
            }),
            span: None,
        },
        stop: Stop {
            steps: vec![LadderStep {
                signal: Sig::TERM,
                drain: secs(10),
                span: Span::default(),
            }],
            target: StopTarget::Leader,
            span: None,
        },
        env: Vec::new(),
        env_files: Vec::new(),
        cwd: None,
        process_group: ProcessGroupMode::Own,
        process_group_span: None,
        die_with_parent: true,
        die_with_parent_span: None,
        log: None,
    }
}

fn run(cmd: &str) -> Command {
    Command::Run {
        argv: shell_words::split(cmd).unwrap(),
    }
}

fn handler(sig: Sig, steps: Vec<Step>, default: bool) -> Handler {
    Handler {
        signal: sp(sig),
        steps: steps.into_iter().map(sp).collect(),
        default,
        span: Span::default(),
    }
}

/// A hand-built version of `examples/ingest.pf`.
pub(crate) fn ingest() -> Topology {
    let mut migrate = group("migrate", run("python manage.py migrate"));
    migrate.once = true;
    migrate.restart.mode = RestartMode::Never;
    migrate.restart.limit = None;
    let mut api = group(
        "api",
        run("gunicorn app:wsgi --threads {coroutines} --bind 127.0.0.1:{port}"),
    );
    api.processes = 4;
    api.coroutines = 8;
    api.port = Some(8000);
    api.after.push(After {
        group: 0,
        state: AfterState::Succeeded,
        span: Span::default(),
    });
    api.ready = Some(ReadyCheck {
        probe: Probe::Http("http://127.0.0.1:{port}/healthz".into()),
        every: Duration::from_millis(200),
        within: secs(30),
        span: Span::default(),
    });
    api.stop.steps[0].drain = secs(20);
    let mut worker = group(
        "worker",
        run("celery -A app worker --pool gevent --concurrency {coroutines}"),
    );
    worker.processes = 2;
    worker.coroutines = 100;
    worker.after.push(After {
        group: 1,
        state: AfterState::Ready,
        span: Span::default(),
    });
    worker.env = vec![
        ("QUEUE".into(), "ingest".into()),
        ("LOG_LEVEL".into(), "info".into()),
    ];
    worker.cwd = Some("services/worker".into());
    worker.stop.steps = vec![
        LadderStep {
            signal: Sig::TERM,
            drain: secs(25),
            span: Span::default(),
        },
        LadderStep {
            signal: Sig::QUIT,
            drain: secs(5),
            span: Span::default(),
        },
    ];
    let mut tests = group(
        "tests",
        Command::Sh {
            script: "exec pytest -x tests/integration".into(),
        },
    );
    tests.once = true;
    tests.after.push(After {
        group: 2,
        state: AfterState::Ready,
        span: Span::default(),
    });
    let usr1 = Sig(nix::sys::signal::Signal::SIGUSR1);
    let usr2 = Sig(nix::sys::signal::Signal::SIGUSR2);
    Topology {
        name: sp("ingest".into()),
        shutdown_within: secs(60),
        shutdown_span: None,
        finish: Some(Finish {
            group: sp(3),
            when: FinishWhen::Exits,
            span: Span::default(),
        }),
        handlers: vec![
            handler(Sig::INT, vec![Step::Drain { groups: vec![] }], false),
            handler(Sig::TERM, vec![Step::Drain { groups: vec![] }], false),
            handler(Sig::HUP, vec![Step::Reload], false),
            handler(
                usr1,
                vec![Step::Forward {
                    signal: None,
                    groups: vec![sp(2)],
                }],
                false,
            ),
            handler(
                usr2,
                vec![
                    Step::Forward {
                        signal: Some(sp(Sig::TERM)),
                        groups: vec![sp(2)],
                    },
                    Step::Wait {
                        groups: vec![sp(2)],
                        within: Some(secs(10)),
                    },
                    Step::Restart {
                        groups: vec![sp(2)],
                        rolling: false,
                    },
                ],
                false,
            ),
        ],
        escalate: Escalate::OnRepeat,
        escalate_span: None,
        groups: vec![migrate, api, worker, tests],
        allows: vec![Allow {
            code: "FR304",
            reason: Some("the exporter \"must\" flush".into()),
            group: Some(2),
            span: Span::default(),
        }],
    }
}

fn source() -> SourceFile {
    SourceFile::new(
        "ingest.pf",
        "topology ingest {\n  group x { run \"x\" }\n}\n",
    )
}

fn finding() -> Diagnostic {
    Diagnostic::new(
        "FR304",
        "a `drain forever` step",
        Label::new(Span::new(20, 25), "here"),
    )
}

#[test]
fn text_has_every_section_and_is_deterministic() {
    let t = ingest();
    let plan = build(&t, &Scale::new());
    let a = text(&plan, &source(), &[finding()]);
    let b = text(&build(&t, &Scale::new()), &source(), &[finding()]);
    assert_eq!(a, b);
    println!("{a}");
    for needle in [
        "topology ingest\n",
        "  processes        8\n",
        "  coroutine slots  234\n",
        "  shutdown within  1m\n",
        "  finish when      tests exits",
        "  1  migrate  no conditions\n",
        "  2  api      after migrate succeeded\n",
        "  1  migrate  SIGTERM → 10s → SIGKILL (to leader)\n",
        "     tests    SIGTERM → 10s → SIGKILL (to leader)\n",
        "  2  worker   SIGTERM → 25s → SIGQUIT → 5s → SIGKILL (to leader)\n",
        "  path     tests → worker → api\n",
        "  ladders  10s + 30s + 20s\n",
        "  total    1m\n",
        "  verdict  ok (within the budget)\n",
        "  SIGUSR1  forward SIGUSR1 to worker (the received signal)\n",
        "  SIGUSR2  1. forward SIGTERM to worker\n",
        "           3. restart worker\n",
        "(escalate on repeat)\n",
        "    argv   gunicorn app:wsgi --threads 8 --bind 127.0.0.1:8003\n",
        "    ready  http \"http://127.0.0.1:8001/healthz\"\n",
        "    argv   /bin/sh -c 'exec pytest -x tests/integration'\n",
        "    cwd    services/worker\n",
        "           FLOWRUN_INDEX=1\n",
        "           LOG_LEVEL=info\n",
        "  processes        4 processes × 8 coroutines = 32 coroutine slots\n",
        "  processes        1 process × 1 coroutine = 1 coroutine slot\n",
        "  FR304 unbounded-drain  in group worker, because \"the exporter \\\"must\\\" flush\"\n",
        "findings\n  ingest.pf:2:3: warning[FR304] a `drain forever` step\n",
    ] {
        assert!(a.contains(needle), "missing {needle:?} in:\n{a}");
    }
    assert!(a.ends_with('\n'));
    assert!(!a.contains("  \n"), "trailing spaces");
}

#[test]
fn text_marks_over_budget_and_defaults() {
    let mut t = ingest();
    t.shutdown_within = secs(45);
    t.handlers[0].default = true;
    t.escalate = Escalate::Never;
    let a = text(&build(&t, &Scale::new()), &source(), &[]);
    assert!(
        a.contains("  verdict  OVER (exceeds the budget: FR203)\n"),
        "{a}"
    );
    assert!(
        a.contains("  SIGINT   drain (whole topology)  [default]\n"),
        "{a}"
    );
    assert!(a.contains("(escalate never)\n"), "{a}");
    assert!(a.contains("findings\n  none\n"), "{a}");
}

#[test]
fn scale_changes_the_process_list() {
    let t = ingest();
    let mut scale = Scale::new();
    scale.insert("worker".into(), 3);
    let a = text(&build(&t, &scale), &source(), &[]);
    assert!(a.contains("  process worker.2\n"), "{a}");
    assert!(a.contains("  processes        9\n"), "{a}");
}

#[test]
fn json_is_versioned_and_deterministic() {
    let t = ingest();
    let plan = build(&t, &Scale::new());
    let a = json(&plan, &source(), &[finding()]);
    assert_eq!(a, json(&build(&t, &Scale::new()), &source(), &[finding()]));
    assert!(a.ends_with("}\n"));
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    assert_eq!(v["schema_version"], SCHEMA_VERSION);
    assert_eq!(v["summary"]["coroutine_slots"], 234);
    assert_eq!(
        v["summary"]["drain_signals"],
        serde_json::json!(["SIGINT", "SIGTERM"])
    );
    assert_eq!(v["containment"], "auto");
    let top = &v["topology"];
    assert_eq!(top["name"], "ingest");
    assert_eq!(top["shutdown_within_ms"], 60_000);
    assert_eq!(v["worst_shutdown"]["groups"][1]["group"], 2);
    assert_eq!(v["worst_shutdown"]["groups"][1]["stop_total_ms"], 30_000);
    assert_eq!(v["worst_shutdown"]["total_ms"], 60_000);
    assert_eq!(v["worst_shutdown"]["budget_ms"], 60_000);
    assert_eq!(v["worst_shutdown"]["within_budget"], true);
    let api = &top["groups"][1];
    assert_eq!(
        api["after"][0],
        serde_json::json!({"group": 0, "state": "succeeded"})
    );
    assert_eq!(api["ready"]["probe"]["kind"], "http");
    assert_eq!(api["ready"]["every_ms"], 200);
    assert_eq!(api["restart"]["backoff_max_ms"], 10_000);
    let worker = &top["groups"][2];
    assert_eq!(worker["stop"]["steps"][0]["drain_ms"], 25_000);
    assert_eq!(worker["env"][0]["name"], "QUEUE");
    // `forward to worker` without a signal forwards the received one.
    assert_eq!(top["handlers"][3]["signal"], "SIGUSR1");
    assert_eq!(
        top["handlers"][3]["steps"][0]["signal"],
        serde_json::Value::Null
    );
    assert_eq!(top["allows"][0]["group"], 2);
    assert_eq!(v["processes"][4]["argv"][5], "127.0.0.1:8003");
    assert_eq!(
        v["processes"][4]["ready"]["target"],
        "http://127.0.0.1:8003/healthz"
    );
    assert_eq!(v["processes"][0]["ready"], serde_json::Value::Null);
    assert_eq!(v["processes"][5]["env"][5]["name"], "QUEUE");
    assert_eq!(v["findings"][0]["line"], 2);
    assert_eq!(v["findings"][0]["column"], 3);
    assert_eq!(v["findings"][0]["severity"], "warning");
    println!("{a}");
}

#[test]
fn the_json_document_is_the_plan_serialised() {
    // Every key of the serialised `Plan` is in the document with the same
    // value; the document adds only its version, summary and findings.
    let mut plan = build(&ingest(), &Scale::new());
    plan.containment = Containment::ProcessGroup;
    let doc: serde_json::Value =
        serde_json::from_str(&json(&plan, &source(), &[finding()])).unwrap();
    let serde_json::Value::Object(own) = serde_json::to_value(&plan).unwrap() else {
        panic!("a plan serialises as an object");
    };
    let serde_json::Value::Object(doc) = doc else {
        panic!("the document is an object");
    };
    for (k, value) in &own {
        assert_eq!(doc.get(k), Some(value), "{k}");
    }
    let mut extra: Vec<&str> = doc
        .keys()
        .filter(|k| !own.contains_key(*k))
        .map(String::as_str)
        .collect();
    extra.sort_unstable();
    assert_eq!(extra, ["findings", "schema_version", "summary"]);
    assert_eq!(doc["containment"], "process-group");
    // What `up` runs is there as it runs it: the groups' settings are the
    // model's own fields (a new one shows up without a change in plan/).
    let g = &doc["topology"]["groups"][2];
    assert_eq!(g["name"], "worker");
    assert_eq!(g["env_files"], serde_json::json!([]));
    assert_eq!(g["process_group"], "own");
}

#[test]
fn the_requested_containment_is_in_the_text() {
    let mut plan = build(&ingest(), &Scale::new());
    let auto = text(&plan, &source(), &[]);
    assert!(
        auto.contains("  containment      auto (decided by `up`: cgroup v2 where"),
        "{auto}"
    );
    plan.containment = Containment::Cgroup;
    assert!(text(&plan, &source(), &[])
        .contains("  containment      cgroup (cgroup v2, or `up` refuses to start)\n"));
}

#[test]
fn a_forever_path_is_over_a_finite_budget() {
    let mut t = ingest();
    t.groups[2].stop.steps[1].drain = Timeout::Forever;
    let plan = build(&t, &Scale::new());
    let v: serde_json::Value = serde_json::from_str(&json(&plan, &source(), &[])).unwrap();
    assert_eq!(v["worst_shutdown"]["total_ms"], "forever");
    assert_eq!(v["worst_shutdown"]["within_budget"], false);
    assert!(text(&plan, &source(), &[]).contains("  total    forever\n"));
}

#[test]
fn diff_is_none_when_equal_and_unified_otherwise() {
    assert_eq!(diff("a\nb\n", "a\nb\n", "plan.txt"), None);
    let d = diff("a\nb\nc\n", "a\nB\nc\n", "committed.plan").unwrap();
    assert_eq!(
        d,
        "--- committed.plan\n+++ plan\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
    );
    // A missing final newline is a difference too.
    let d = diff("a\n", "a", "x").unwrap();
    assert!(d.starts_with("--- x\n+++ plan\n"), "{d}");
    assert!(d.ends_with('\n'));
}

#[test]
fn a_50000_group_plan_renders_in_linear_time() {
    // A chain of 50,000 groups, each waiting for the next: quadratic work
    // anywhere in build/text/json would take minutes here.
    let mut t = ingest();
    t.groups.truncate(1);
    t.finish = None;
    t.allows.clear();
    let template = t.groups[0].clone();
    t.groups.clear();
    for i in 0..50_000usize {
        let mut g = template.clone();
        g.name = sp(format!("g{i}"));
        if i + 1 < 50_000 {
            g.after.push(After {
                group: i + 1,
                state: AfterState::Started,
                span: Span::default(),
            });
        }
        t.groups.push(g);
    }
    let started = std::time::Instant::now();
    let plan = build(&t, &Scale::new());
    let text = text(&plan, &source(), &[]);
    let json = json(&plan, &source(), &[]);
    let elapsed = started.elapsed();
    println!("50,000 groups: build + text + json in {elapsed:?}");
    assert!(text.contains("  50000  g0"), "g0 waits for the whole chain");
    assert!(json.len() > text.len() / 2);
    assert!(elapsed.as_secs() < 60, "{elapsed:?}");
}

#[test]
fn a_cycle_is_called_out_in_the_start_stages() {
    let mut t = ingest();
    assert!(!text(&build(&t, &Scale::new()), &source(), &[]).contains("dependency cycle"));
    // migrate waits for tests: migrate → tests → worker → api → migrate.
    t.groups[0].after.push(After {
        group: 3,
        state: AfterState::Started,
        span: Span::default(),
    });
    let a = text(&build(&t, &Scale::new()), &source(), &[]);
    assert!(
        a.contains("  1  migrate  after tests started\n     api      after migrate succeeded\n"),
        "{a}"
    );
    assert!(
        a.contains("  (the last stage waits on a dependency cycle, FR201: it can never start)\n")
    );
}

#[test]
fn absurd_process_counts_are_clamped_not_expanded() {
    let mut t = ingest();
    t.groups[1].processes = u32::MAX;
    let mut scale = Scale::new();
    scale.insert("worker".into(), u32::MAX);
    let plan = build(&t, &scale);
    let count = |g: GroupId| plan.processes.iter().filter(|p| p.group == g).count();
    assert_eq!(count(0), 1);
    assert_eq!(count(1), MAX_GROUP_PROCESSES as usize);
    assert_eq!(count(2), MAX_GROUP_PROCESSES as usize);
    assert_eq!(count(3), 1);
    let last = plan.processes.iter().rfind(|p| p.group == 1).unwrap();
    assert_eq!(last.index, MAX_GROUP_PROCESSES - 1);
    // FLOWRUN_PROCESSES agrees with what was expanded.
    assert!(last
        .env
        .contains(&("FLOWRUN_PROCESSES".into(), "65536".into())));

    // The whole plan is bounded too.
    let template = t.groups[1].clone();
    t.groups = (0..6)
        .map(|i| {
            let mut g = template.clone();
            g.name = sp(format!("g{i}"));
            g.port = None;
            g.after.clear();
            g
        })
        .collect();
    t.finish = None;
    t.allows.clear();
    t.handlers.truncate(3);
    let plan = build(&t, &Scale::new());
    assert_eq!(plan.processes.len(), MAX_PLAN_PROCESSES);
    assert!(plan.processes.iter().all(|p| p.group < 4));
}

#[test]
fn json_totals_are_exact_past_2_pow_64_ms() {
    // worker (u64::MAX ms) then api (1 ms) on one path: one more than the
    // budget of u64::MAX ms, which used to print as equal totals.
    let mut t = ingest();
    let huge = Timeout::Finite(Duration::from_millis(u64::MAX));
    t.groups[2].stop.steps.truncate(1);
    t.groups[2].stop.steps[0].drain = huge;
    t.groups[1].stop.steps[0].drain = Timeout::Finite(Duration::from_millis(1));
    t.groups[0].stop.steps[0].drain = Timeout::Finite(Duration::ZERO);
    t.groups[3].stop.steps[0].drain = Timeout::Finite(Duration::ZERO);
    t.shutdown_within = huge;
    let plan = build(&t, &Scale::new());
    let j = json(&plan, &source(), &[]);
    assert!(j.contains("\"total_ms\": 18446744073709551616,"), "{j}");
    assert!(j.contains("\"budget_ms\": 18446744073709551615,"), "{j}");
    assert!(j.contains("\"within_budget\": false"), "{j}");
    let tx = text(&plan, &source(), &[]);
    assert!(tx.contains("  verdict  OVER"), "{tx}");
}

#[test]
fn totals_do_not_saturate_at_the_largest_duration() {
    // Two drains of `Duration::MAX` on one ladder: `Stop::total` stops at
    // `Duration::MAX`, the plan prints the true sum in both forms.
    let mut t = ingest();
    let max = Timeout::Finite(Duration::MAX);
    t.groups[2].stop.steps[0].drain = max;
    t.groups[2].stop.steps[1].drain = max;
    assert_eq!(t.groups[2].stop.total(), max);
    let plan = build(&t, &Scale::new());
    let one = Duration::MAX.as_millis();
    let j = json(&plan, &source(), &[]);
    // worker's ladder, then the path: tests (10 s) + worker + api (20 s).
    assert!(
        j.contains(&format!("\"stop_total_ms\": {}\n", 2 * one)),
        "{j}"
    );
    assert!(
        j.contains(&format!("\"total_ms\": {},", 2 * one + 30_000)),
        "{j}"
    );
    let tx = text(&plan, &source(), &[]);
    let ms = 2 * one + 30_000;
    let (h, m, sec, rest) = (
        ms / 3_600_000,
        ms % 3_600_000 / 60_000,
        ms % 60_000 / 1000,
        ms % 1000,
    );
    let want = format!("  total    {h}h{m}m{sec}s{rest}ms\n");
    assert!(tx.contains(&want), "{want} in {tx}");
}

#[test]
fn a_plan_does_not_depend_on_the_path_it_was_made_with() {
    let t = ingest();
    let plan = build(&t, &Scale::new());
    let at = |name: &str| {
        let s = SourceFile::new(name, source().text);
        (text(&plan, &s, &[finding()]), json(&plan, &s, &[finding()]))
    };
    let here = at("ingest.pf");
    assert_eq!(here, at("./ingest.pf"));
    assert_eq!(here, at("/srv/app/ingest.pf"));
    assert!(
        here.0.contains("  ingest.pf:2:3: warning[FR304]"),
        "{}",
        here.0
    );
}

#[test]
fn a_committed_plan_with_crlf_endings_is_current() {
    assert_eq!(diff("a\r\nb\r\n", "a\nb\n", "x.plan"), None);
    let d = diff("a\r\nb\r\n", "a\nB\n", "x.plan").unwrap();
    assert_eq!(d, "--- x.plan\n+++ plan\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n");
}

#[test]
fn control_characters_in_argv_print_as_posix_escapes() {
    let mut t = ingest();
    t.groups[0].command.node = Command::Run {
        argv: vec!["x\u{1}y".into(), "tab\there".into()],
    };
    let a = text(&build(&t, &Scale::new()), &source(), &[]);
    assert!(a.contains("    argv   $'x\\x01y' $'tab\\there'\n"), "{a}");
}

#[test]
fn log_files_are_expanded_per_process_and_shown() {
    let src = SourceFile::new(
        "t.pf",
        "topology t {\n  log file \"log/{group}.{index}.log\" keep 2\n  group api {\n    run \"a\"\n    processes 2\n  }\n  group one {\n    run \"b\"\n    log file \"/var/log/one.log\" rotate 1536KB\n  }\n  group bare {\n    run \"c\"\n  }\n  group quiet {\n    run \"d\"\n    log terminal\n  }\n}\n",
    );
    let c = crate::compile(src.clone(), None);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    let plan = build(c.model.as_ref().unwrap(), &Scale::new());
    let logs: Vec<Option<LogSpec>> = plan.processes.iter().map(|p| p.log.clone()).collect();
    let spec = |path: &str, rotate_bytes, keep| {
        Some(LogSpec {
            path: path.into(),
            rotate_bytes,
            keep,
        })
    };
    // A group's own `log` replaces the topology's whole (its own defaults;
    // `log terminal`: no file).
    assert_eq!(
        logs,
        [
            spec("log/api.0.log", 10 << 20, 2),
            spec("log/api.1.log", 10 << 20, 2),
            spec("/var/log/one.log", 1536 << 10, 5),
            spec("log/bare.0.log", 10 << 20, 2),
            None,
        ]
    );
    let out = text(&plan, &src, &[]);
    assert!(
        out.contains("log    log/api.1.log (rotate 10MB, keep 2)"),
        "{out}"
    );
    assert!(
        out.contains("log    /var/log/one.log (rotate 1536KB, keep 5)"),
        "{out}"
    );
}
