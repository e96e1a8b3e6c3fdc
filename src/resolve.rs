//! AST → resolved model: names become [`GroupId`]s, signals become real
//! signals, every default of docs/language.md is filled in, and stage-1 findings
//! are reported:
//!
//! - FR101 unknown-group: a reference to a group that does not exist (with a
//!   "did you mean").
//! - FR102 duplicate: a group defined twice, two handlers for one signal, a
//!   single-valued setting given twice, a duplicate `env` key.
//! - FR103 unknown-placeholder: `{name}` that is not a placeholder, or
//!   `{port}` in a group without `port`.
//! - FR104 invalid-value: out-of-range numbers, empty or unsplittable
//!   commands, backoff min > max, unknown signals and rules, …
//!
//! [`resolve`] always returns a model: invalid values are replaced by safe
//! ones (a duplicate is ignored, an unknown reference is dropped, a zero
//! count becomes 1, an unknown signal in a stop ladder becomes SIGTERM) so
//! that the later rules still run and one `lint` reports everything.
//!
//! Defaults (docs/language.md): `shutdown within 30s`; handlers are the explicit ones
//! in file order, then `SIGINT drain`, `SIGTERM drain`, `SIGHUP reload` for
//! each of those signals not handled explicitly (`default: true`; their
//! spans point at the topology's name); `escalate on repeat`; `processes 1`;
//! `coroutines 1`; services `restart on-failure backoff 100ms..10s limit 5
//! per 60s`, `once` groups `restart never`; a `restart` statement without
//! `backoff` gets `100ms..10s` and without `limit` gets **no limit**;
//! `stop SIGTERM drain 10s to leader`; `process-group own`;
//! `die-with-parent yes`; ready checks `every 1s within 60s`; `after G`
//! waits for `ready` if G has a ready check, else `succeeded` if G is
//! `once`, else `started`; a group without `log file` takes the
//! topology's, and `log file` without `rotate`/`keep` gets `rotate 10MB
//! keep 5` (sizes are 1024-based).
//!
//! Placeholders: a placeholder is `{NAME}` with NAME made of ASCII letters,
//! digits and `_`, not starting with a digit, and not preceded by `$` (so a
//! shell's `${VAR}`, a regex's `{3}` and JSON braces are plain text). Known
//! names: `group`, `index`, `processes`, `coroutines`, `port`.

use crate::ast::{
    self, AfterState, Escalate, Probe, ProcessGroupMode, RestartMode, SettingKind, StopTarget,
    Timeout, TopItemKind,
};
use crate::check::fmt_duration;
use crate::diagnostic::{Diagnostic, Label};
use crate::envfile::EnvFiles;
use crate::model::{
    After, Allow, Command, Finish, Group, GroupId, Handler, LadderStep, LogFile, ReadyCheck,
    Restart, RestartLimit, Sig, Step, Stop, Topology,
};
use crate::rules;
use crate::source::{SourceFile, Span, Spanned};
use std::collections::HashMap;
use std::time::Duration;

const DEFAULT_SHUTDOWN: Duration = Duration::from_secs(30);
const DEFAULT_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(10));
const DEFAULT_LIMIT_COUNT: u32 = 5;
const DEFAULT_LIMIT_PER: Duration = Duration::from_secs(60);
const DEFAULT_STOP_DRAIN: Duration = Duration::from_secs(10);
const DEFAULT_READY_EVERY: Duration = Duration::from_secs(1);
const DEFAULT_READY_WITHIN: Duration = Duration::from_secs(60);
/// `log file` without `rotate`: 10 MiB.
pub const DEFAULT_LOG_ROTATE: u64 = 10 << 20;
/// `log file` without `keep`: 5 old files.
pub const DEFAULT_LOG_KEEP: u32 = 5;
/// The most old log files `keep` may ask for (each rotation renames them all).
pub const MAX_LOG_KEEP: u64 = 1000;
const PLACEHOLDERS: &[&str] = &["group", "index", "processes", "coroutines", "port"];

/// Resolve names, fill defaults, check values. Always returns a model (with
/// safe substitutes where values were invalid) so that later rules still run.
/// A topology with `env-file` needs [`resolve_with`] and the files' text.
pub fn resolve(source: &SourceFile, file: &ast::File) -> (Topology, Vec<Diagnostic>) {
    resolve_with(source, file, &EnvFiles::new())
}

/// [`resolve`], with the text of the env files the topology names (read by
/// the loading layer, [`crate::compile`]).
pub fn resolve_with(
    source: &SourceFile,
    file: &ast::File,
    env_files: &EnvFiles,
) -> (Topology, Vec<Diagnostic>) {
    let mut r = Resolver {
        source,
        diags: Vec::new(),
        ids: HashMap::new(),
        names: Vec::new(),
        suggestion_budget: 2_000_000,
        env_files,
        top_env: Vec::new(),
        top_env_files: Vec::new(),
        top_log: None,
    };
    let topology = r.topology(&file.topology);
    (topology, r.diags)
}

struct Resolver<'a> {
    source: &'a SourceFile,
    diags: Vec<Diagnostic>,
    /// Group name → id and the span of its (first) definition.
    ids: HashMap<&'a str, (GroupId, Span)>,
    /// Group names in id order, for "did you mean".
    names: Vec<&'a str>,
    /// Bounds the work spent on suggestions, so that a file with very many
    /// unknown references and groups stays linear.
    suggestion_budget: usize,
    env_files: &'a EnvFiles,
    /// The variables of the topology-scope env files, in precedence order.
    top_env: Vec<(String, String)>,
    /// The topology-scope env files, as written.
    top_env_files: Vec<String>,
    /// The topology-scope `log file`, every group's default.
    top_log: Option<LogFile>,
}

/// An `after` waiting for every group to be resolved (its default state
/// depends on the target group).
struct PendingAfter {
    from: GroupId,
    to: GroupId,
    state: Option<AfterState>,
    span: Span,
}

impl<'a> Resolver<'a> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    // ---- topology ----------------------------------------------------------

    fn topology(&mut self, t: &'a ast::Topology) -> Topology {
        // Pass 1: every group name gets an id, so references may point
        // forward. The first definition of a name wins.
        let mut defs: Vec<&'a ast::Group> = Vec::new();
        for item in &t.items {
            if let TopItemKind::Group(g) = &item.kind {
                match self.ids.get(g.name.node.as_str()) {
                    Some(&(_, first)) => self.push(
                        Diagnostic::new(
                            "FR102",
                            format!("group `{}` is defined twice", g.name.node),
                            Label::new(g.name.span, "defined again here"),
                        )
                        .with_related(Label::new(first, "first defined here"))
                        .with_help("rename one of the groups, or merge their settings"),
                    ),
                    None => {
                        self.ids
                            .insert(g.name.node.as_str(), (defs.len(), g.name.span));
                        self.names.push(g.name.node.as_str());
                        defs.push(g);
                    }
                }
            }
        }

        // Topology-scope env files come first in every group's environment.
        for item in &t.items {
            if let TopItemKind::EnvFile(path) = &item.kind {
                self.top_env_files.push(path.node.clone());
                let vars = self.env_file(path);
                merge_env(&mut self.top_env, vars);
            }
        }

        // The topology-scope `log file` is every group's default.
        let mut top_log_seen: Option<Span> = None;
        for item in &t.items {
            if let TopItemKind::Log(l) = &item.kind {
                if let Some(first) = top_log_seen {
                    self.duplicate_setting("`log`", item.span, 3, first, None);
                    continue;
                }
                top_log_seen = Some(item.span);
                if let Some(l) = l {
                    self.scan_top_log(l.path.span);
                    self.top_log = Some(self.log_file(l, item.span, true));
                }
            }
        }

        // Pass 2: groups.
        let mut pending = Vec::new();
        let mut groups: Vec<Group> = Vec::with_capacity(defs.len());
        let mut allows = Vec::new();
        for (id, g) in defs.iter().enumerate() {
            groups.push(self.group(id, g, &mut pending, &mut allows));
        }
        self.total_processes(&defs, &groups);
        for p in pending {
            let target = &groups[p.to];
            let state = p.state.unwrap_or(if target.ready.is_some() {
                AfterState::Ready
            } else if target.once {
                AfterState::Succeeded
            } else {
                AfterState::Started
            });
            groups[p.from].after.push(After {
                group: p.to,
                state,
                span: p.span,
            });
        }

        // Pass 3: topology settings and handlers, in file order.
        let mut shutdown: Option<(Timeout, Span)> = None;
        let mut finish: Option<Finish> = None;
        let mut finish_seen: Option<Span> = None;
        let mut escalate: Option<(Escalate, Span)> = None;
        let mut handlers: Vec<Handler> = Vec::new();
        for item in &t.items {
            match &item.kind {
                TopItemKind::Shutdown(d) => {
                    if let Some((_, first)) = shutdown {
                        self.duplicate_setting("`shutdown within`", item.span, 8, first, None);
                    } else {
                        shutdown = Some((d.node, item.span));
                    }
                }
                TopItemKind::Finish { group, when } => {
                    // Tracked apart from `finish`, which stays `None` when
                    // the first statement names an unknown group.
                    if let Some(first) = finish_seen {
                        self.duplicate_setting("`finish when`", item.span, 6, first, None);
                        continue;
                    }
                    finish_seen = Some(item.span);
                    if let Some(id) = self.group_ref(group, "`finish when`") {
                        finish = Some(Finish {
                            group: Spanned::new(id, group.span),
                            when: when.node,
                            span: item.span,
                        });
                    }
                }
                TopItemKind::Escalate(e) => {
                    if let Some((_, first)) = escalate {
                        self.duplicate_setting("`escalate`", item.span, 8, first, None);
                    } else {
                        escalate = Some((e.node, item.span));
                    }
                }
                TopItemKind::Handler(h) => {
                    if let Some(handler) = self.handler(h, item.span, &handlers) {
                        handlers.push(handler);
                    }
                }
                TopItemKind::Allow(a) => {
                    if let Some(allow) = self.allow(a, None) {
                        allows.push(allow);
                    }
                }
                TopItemKind::Group(_) | TopItemKind::EnvFile(_) | TopItemKind::Log(_) => {}
            }
        }
        let default_span = t.name.span;
        for (sig, step) in [
            (Sig::INT, Step::Drain { groups: vec![] }),
            (Sig::TERM, Step::Drain { groups: vec![] }),
            (Sig::HUP, Step::Reload),
        ] {
            if !handlers.iter().any(|h| h.signal.node == sig) {
                handlers.push(Handler {
                    signal: Spanned::new(sig, default_span),
                    steps: vec![Spanned::new(step, default_span)],
                    default: true,
                    span: default_span,
                });
            }
        }
        // Group-scope allows were collected first; list topology ones first.
        allows.sort_by_key(|a: &Allow| a.group.is_some());

        Topology {
            name: t.name.clone(),
            shutdown_within: shutdown.map_or(Timeout::Finite(DEFAULT_SHUTDOWN), |s| s.0),
            shutdown_span: shutdown.map(|s| s.1),
            finish,
            handlers,
            escalate: escalate.map_or(Escalate::OnRepeat, |e| e.0),
            escalate_span: escalate.map(|e| e.1),
            groups,
            allows,
        }
    }

    /// FR104 when the groups run more processes in all than a plan holds
    /// ([`crate::plan::MAX_PLAN_PROCESSES`]), so `lint` refuses what `plan`
    /// and `up` would. Labels the three largest `processes` settings.
    fn total_processes(&mut self, defs: &[&ast::Group], groups: &[Group]) {
        let max = crate::plan::MAX_PLAN_PROCESSES as u64;
        let total: u64 = groups.iter().map(|g| u64::from(g.processes)).sum();
        if total <= max {
            return;
        }
        let mut largest: Vec<(u32, usize)> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.processes, i))
            .collect();
        largest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let span_of = |i: usize| {
            defs[i]
                .settings
                .iter()
                .find_map(|s| match &s.kind {
                    SettingKind::Processes(n) => Some(n.span),
                    _ => None,
                })
                .unwrap_or(defs[i].name.span)
        };
        let (n, first) = largest[0];
        let mut d = Diagnostic::new(
            "FR104",
            format!("the topology runs {total} processes in all; flowrun plans at most {max}"),
            Label::new(
                span_of(first),
                format!("`{}` runs {n}", groups[first].name.node),
            ),
        )
        .with_help(format!(
            "lower `processes` by {} in all, or split the topology into several",
            total - max
        ));
        for &(n, i) in largest.iter().skip(1).take(2) {
            d = d.with_related(Label::new(
                span_of(i),
                format!("`{}` runs {n}", groups[i].name.node),
            ));
        }
        self.push(d);
    }

    /// FR102 for a single-valued setting given again. `kw_len` is the length
    /// of the statement's first keyword, which the primary span covers.
    fn duplicate_setting(
        &mut self,
        what: &str,
        again: Span,
        kw_len: usize,
        first: Span,
        group: Option<&str>,
    ) {
        let where_ = group.map_or(String::new(), |g| format!(" in group `{g}`"));
        let kw = Span::new(again.start, (again.start + kw_len).min(again.end));
        let first_kw = Span::new(first.start, (first.start + kw_len).min(first.end));
        self.push(
            Diagnostic::new(
                "FR102",
                format!("{what} is given twice{where_}"),
                Label::new(kw, "given again here"),
            )
            .with_related(Label::new(first_kw, "first given here"))
            .with_help("keep one of them"),
        );
    }

    // ---- names ---------------------------------------------------------------

    /// Resolve a group reference, reporting FR101 when it does not exist.
    fn group_ref(&mut self, name: &Spanned<String>, context: &str) -> Option<GroupId> {
        if let Some(&(id, _)) = self.ids.get(name.node.as_str()) {
            return Some(id);
        }
        let cost = self.names.len();
        let suggestion = if cost <= self.suggestion_budget {
            self.suggestion_budget -= cost;
            did_you_mean(&name.node, self.names.iter().copied())
        } else {
            None
        };
        let help = match suggestion {
            Some(s) => format!("did you mean `{s}`?"),
            None if self.names.is_empty() => {
                format!("define it with `group {} {{ … }}`", name.node)
            }
            None if self.names.len() <= 8 => format!(
                "define it with `group {} {{ … }}`; the groups are {}",
                name.node,
                self.names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => format!("define it with `group {} {{ … }}`", name.node),
        };
        self.push(
            Diagnostic::new(
                "FR101",
                format!("unknown group `{}` in {context}", name.node),
                Label::new(name.span, "no group has this name"),
            )
            .with_help(help),
        );
        None
    }

    fn group_refs(&mut self, names: &[Spanned<String>], context: &str) -> Vec<Spanned<GroupId>> {
        names
            .iter()
            .filter_map(|n| {
                self.group_ref(n, context)
                    .map(|id| Spanned::new(id, n.span))
            })
            .collect()
    }

    /// Resolve a signal name, reporting FR104 when it is not a signal.
    fn signal(&mut self, name: &Spanned<String>) -> Option<Sig> {
        if let Some(sig) = Sig::parse(&name.node) {
            return Some(sig);
        }
        let names = nix::sys::signal::Signal::iterator().map(|s| s.as_str());
        let help = match did_you_mean(&name.node, names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "use a signal name such as SIGTERM, SIGINT, SIGHUP, SIGQUIT or SIGUSR1".into(),
        };
        self.push(
            Diagnostic::new(
                "FR104",
                format!("unknown signal `{}`", name.node),
                Label::new(name.span, "not a signal on this system"),
            )
            .with_help(help),
        );
        None
    }

    fn allow(&mut self, a: &ast::Allow, group: Option<GroupId>) -> Option<Allow> {
        let Some(rule) = rules::lookup(&a.rule.node) else {
            let candidates = rules::RULES.iter().flat_map(|r| [r.code, r.name]);
            let help = match did_you_mean(&a.rule.node, candidates) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "`flowrun rules` lists every rule's code and name".into(),
            };
            self.push(
                Diagnostic::new(
                    "FR104",
                    format!("unknown rule `{}` in `allow`", a.rule.node),
                    Label::new(a.rule.span, "no rule has this code or name"),
                )
                .with_help(help),
            );
            return None;
        };
        Some(Allow {
            code: rule.code,
            reason: a.reason.as_ref().map(|r| r.node.clone()),
            group,
            span: a.span,
        })
    }

    // ---- handlers ------------------------------------------------------------

    fn handler(&mut self, h: &ast::Handler, span: Span, seen: &[Handler]) -> Option<Handler> {
        let sig = self.signal(&h.signal)?;
        if let Some(first) = seen.iter().find(|x| x.signal.node == sig) {
            let first = first.signal.span;
            self.push(
                Diagnostic::new(
                    "FR102",
                    format!("two handlers for {sig}"),
                    Label::new(h.signal.span, "handled again here"),
                )
                .with_related(Label::new(first, "first handled here"))
                .with_help(format!(
                    "merge them into one `on {sig} {{ … }}` block: the steps run in order"
                )),
            );
            return None;
        }
        let context = format!("the {sig} handler");
        let steps = h
            .steps
            .iter()
            .filter_map(|s| self.step(s, &context).map(|st| Spanned::new(st, s.span)))
            .collect();
        Some(Handler {
            signal: Spanned::new(sig, h.signal.span),
            steps,
            default: false,
            span,
        })
    }

    /// A resolved step; `None` when every group it names is unknown (it is
    /// dropped rather than widened: `drain typo` must not become `drain`).
    fn step(&mut self, s: &Spanned<ast::Step>, context: &str) -> Option<Step> {
        let resolved = |r: &mut Self, names: &[Spanned<String>]| {
            let ids = r.group_refs(names, context);
            (!ids.is_empty()).then_some(ids)
        };
        Some(match &s.node {
            ast::Step::Drain { groups } if groups.is_empty() => Step::Drain { groups: vec![] },
            ast::Step::Drain { groups } => Step::Drain {
                groups: resolved(self, groups)?,
            },
            ast::Step::Restart { groups, rolling } => Step::Restart {
                groups: resolved(self, groups)?,
                rolling: *rolling,
            },
            ast::Step::Reload => Step::Reload,
            ast::Step::Forward { signal, groups } => {
                let groups = self.group_refs(groups, context);
                // An unknown signal (reported) or no known group: drop the step.
                let signal = match signal {
                    Some(name) => Some(Spanned::new(self.signal(name)?, name.span)),
                    None => None,
                };
                if groups.is_empty() {
                    return None;
                }
                Step::Forward { signal, groups }
            }
            ast::Step::Wait { groups, within } => Step::Wait {
                groups: resolved(self, groups)?,
                within: within.as_ref().map(|w| w.node),
            },
            ast::Step::Kill => Step::Kill,
            ast::Step::Ignore => Step::Ignore,
        })
    }

    // ---- groups --------------------------------------------------------------

    fn group(
        &mut self,
        id: GroupId,
        g: &'a ast::Group,
        pending: &mut Vec<PendingAfter>,
        allows: &mut Vec<Allow>,
    ) -> Group {
        let gname = g.name.node.as_str();
        // First occurrence of each single-valued setting: key → statement span.
        let mut seen: HashMap<&'static str, Span> = HashMap::new();
        let mut command: Option<Spanned<Command>> = None;
        let mut processes: Option<(u64, Span)> = None;
        let mut coroutines: u32 = 1;
        let mut port: Option<(u64, Span)> = None;
        let mut once = false;
        let mut ready = None;
        let mut restart: Option<Restart> = None;
        let mut stop: Option<Stop> = None;
        let mut env = Vec::new();
        let mut file_env = self.top_env.clone();
        let mut env_files = self.top_env_files.clone();
        let mut cwd = None;
        let mut process_group = (ProcessGroupMode::Own, None);
        let mut die_with_parent = (true, None);
        let mut log = None;

        for setting in &g.settings {
            if let Some((key, what)) = single_valued(&setting.kind) {
                if let Some(&first) = seen.get(key) {
                    let kw_len = keyword_len(&setting.kind);
                    self.duplicate_setting(what, setting.span, kw_len, first, Some(gname));
                    continue;
                }
                seen.insert(key, setting.span);
            }
            match &setting.kind {
                SettingKind::Run(text) => command = Some(self.run(text)),
                SettingKind::Sh(text) => {
                    self.non_empty(text, "sh");
                    self.no_nul(text, "`sh`");
                    command = Some(Spanned::new(
                        Command::Sh {
                            script: text.node.clone(),
                        },
                        text.span,
                    ));
                }
                SettingKind::Processes(n) => {
                    processes = Some((n.node, n.span));
                }
                SettingKind::Coroutines(n) => {
                    coroutines = self.count(n, "coroutines", "coroutine", u64::from(u32::MAX));
                }
                SettingKind::Port(p) => port = Some((p.node, p.span)),
                SettingKind::Once => once = true,
                SettingKind::After { group, state } => {
                    if let Some(to) = self.group_ref(group, &format!("group `{gname}`'s `after`")) {
                        pending.push(PendingAfter {
                            from: id,
                            to,
                            state: state.as_ref().map(|s| s.node),
                            span: setting.span,
                        });
                    }
                }
                SettingKind::Ready(r) => ready = Some(self.ready(r, gname, setting.span)),
                SettingKind::Restart(r) => restart = Some(self.restart(r, setting.span)),
                SettingKind::Stop(l) => stop = Some(self.stop(l, setting.span)),
                SettingKind::Env(vars) => env = self.env(vars),
                SettingKind::EnvFile(path) => {
                    env_files.push(path.node.clone());
                    let vars = self.env_file(path);
                    merge_env(&mut file_env, vars);
                }
                SettingKind::Cwd(dir) => {
                    self.no_nul(dir, "`cwd`");
                    cwd = Some(dir.node.clone());
                }
                SettingKind::ProcessGroup(m) => process_group = (m.node, Some(setting.span)),
                SettingKind::DieWithParent(b) => die_with_parent = (b.node, Some(setting.span)),
                SettingKind::Allow(a) => {
                    if let Some(allow) = self.allow(a, Some(id)) {
                        allows.push(allow);
                    }
                }
                SettingKind::Log(l) => {
                    log = Some(l.as_ref().map(|l| self.log_file(l, setting.span, false)))
                }
            }
        }
        // `log terminal` in the group: no file, whatever the topology says.
        let log = log.unwrap_or_else(|| self.top_log.clone());

        // Precedence: topology env files, then the group's, then `env { }`.
        merge_env(&mut file_env, env);
        let env = file_env;

        let processes = match processes {
            Some((n, span)) => self.count(
                &Spanned::new(n, span),
                "processes",
                "process",
                u64::from(crate::plan::MAX_GROUP_PROCESSES),
            ),
            None => 1,
        };
        let port = port.and_then(|(p, span)| self.port(p, span, processes));
        let has_port = g
            .settings
            .iter()
            .any(|s| matches!(s.kind, SettingKind::Port(_)));
        self.placeholders(g, has_port);

        let command = command.unwrap_or_else(|| {
            self.push(
                Diagnostic::new(
                    "FR104",
                    format!("group `{gname}` has no command"),
                    Label::new(g.name.span, "neither `run` nor `sh`"),
                )
                .with_help("add `run \"PROGRAM ARGS\"`, or `sh \"SCRIPT\"` for a shell script"),
            );
            Spanned::new(Command::Run { argv: Vec::new() }, g.name.span)
        });

        let restart = restart.unwrap_or(if once {
            Restart {
                mode: RestartMode::Never,
                backoff_min: DEFAULT_BACKOFF.0,
                backoff_max: DEFAULT_BACKOFF.1,
                limit: None,
                span: None,
            }
        } else {
            Restart {
                mode: RestartMode::OnFailure,
                backoff_min: DEFAULT_BACKOFF.0,
                backoff_max: DEFAULT_BACKOFF.1,
                limit: Some(RestartLimit {
                    count: DEFAULT_LIMIT_COUNT,
                    per: DEFAULT_LIMIT_PER,
                }),
                span: None,
            }
        });
        let stop = stop.unwrap_or(Stop {
            steps: vec![LadderStep {
                signal: Sig::TERM,
                drain: Timeout::Finite(DEFAULT_STOP_DRAIN),
                span: g.name.span,
            }],
            target: StopTarget::Leader,
            span: None,
        });

        Group {
            name: g.name.clone(),
            span: g.span,
            command,
            processes,
            coroutines,
            port,
            once,
            after: Vec::new(),
            ready,
            restart,
            stop,
            env,
            env_files,
            cwd,
            process_group: process_group.0,
            process_group_span: process_group.1,
            die_with_parent: die_with_parent.0,
            die_with_parent_span: die_with_parent.1,
            log,
        }
    }

    /// A `log file` statement: FR104 for an empty path, a path that names a
    /// directory, `rotate 0B` and a `keep` outside 1..=[`MAX_LOG_KEEP`] (the
    /// default substituted); FR103 is found by [`Self::placeholders`].
    fn log_file(&mut self, l: &ast::LogFile, span: Span, inherited: bool) -> LogFile {
        let path = &l.path;
        if path.node.trim().is_empty() {
            self.push(
                Diagnostic::new(
                    "FR104",
                    "empty path in `log file`",
                    Label::new(path.span, "no file named"),
                )
                .with_help("write a path such as `log file \"log/{group}.{index}.log\"`"),
            );
        } else if path.node.ends_with('/') {
            self.push(
                Diagnostic::new(
                    "FR104",
                    format!(
                        "`log file \"{}\"` names a directory",
                        path.node.escape_debug()
                    ),
                    Label::new(path.span, "ends with `/`"),
                )
                .with_help("name the file inside it, e.g. `{group}.{index}.log` after the `/`"),
            );
        } else {
            self.no_nul(path, "`log file`");
        }
        let rotate_bytes = match &l.rotate {
            Some(r) if r.node == 0 => {
                self.push(
                    Diagnostic::new(
                        "FR104",
                        "`rotate` size 0: every line would start a new file",
                        Label::new(r.span, "must be at least 1B"),
                    )
                    .with_help("write a size such as `rotate 10MB`"),
                );
                DEFAULT_LOG_ROTATE
            }
            Some(r) => r.node,
            None => DEFAULT_LOG_ROTATE,
        };
        let keep = match &l.keep {
            Some(k) if k.node == 0 || k.node > MAX_LOG_KEEP => {
                let (message, label, help) = if k.node == 0 {
                    (
                        "`keep 0` keeps no old file: a rotation would throw the whole file away"
                            .to_string(),
                        "must be at least 1",
                        "write `keep 1` or more",
                    )
                } else {
                    (
                        format!("`keep {}` is too large (at most {MAX_LOG_KEEP})", k.node),
                        "too large",
                        "keep fewer files, or rotate at a larger size",
                    )
                };
                self.push(
                    Diagnostic::new("FR104", message, Label::new(k.span, label)).with_help(help),
                );
                DEFAULT_LOG_KEEP
            }
            Some(k) => k.node as u32,
            None => DEFAULT_LOG_KEEP,
        };
        LogFile {
            path: path.node.clone(),
            rotate_bytes,
            keep,
            inherited,
            path_span: path.span,
            span,
        }
    }

    /// A count of at least 1 that fits in a u32; 1 when it does not.
    /// A count in `1..=max`; reports FR104 and substitutes 1 otherwise.
    fn count(&mut self, n: &Spanned<u64>, setting: &str, unit: &str, max: u64) -> u32 {
        let message = match n.node {
            0 => format!("`{setting} 0`: a group needs at least one {unit}"),
            v if v > max => format!("`{setting} {v}` is too large (at most {max})"),
            v => return v as u32,
        };
        let label = if n.node == 0 {
            "must be at least 1"
        } else {
            "too large"
        };
        let help = if n.node == 0 {
            format!("write `{setting} 1` or more")
        } else {
            format!("write `{setting} {max}` or less")
        };
        self.push(Diagnostic::new("FR104", message, Label::new(n.span, label)).with_help(help));
        1
    }

    fn port(&mut self, p: u64, span: Span, processes: u32) -> Option<u16> {
        if p == 0 || p > 65_535 {
            self.push(
                Diagnostic::new(
                    "FR104",
                    format!("port {p} is out of range"),
                    Label::new(span, "not a TCP port"),
                )
                .with_help("ports are 1 to 65535"),
            );
            return None;
        }
        let last = p + u64::from(processes) - 1;
        if last > 65_535 {
            self.push(
                Diagnostic::new(
                    "FR104",
                    format!(
                        "the port range {p}..{last} runs past 65535 ({processes} processes from port {p})"
                    ),
                    Label::new(span, "range runs past 65535"),
                )
                .with_help(match 65_536u64.checked_sub(u64::from(processes)) {
                    Some(start) if start >= 1 => {
                        format!("start at {start} or lower, or run fewer processes")
                    }
                    _ => "a group with ports runs at most 65535 processes".to_string(),
                }),
            );
        }
        Some(p as u16)
    }

    fn non_empty(&mut self, text: &Spanned<String>, kw: &str) -> bool {
        if !text.node.trim().is_empty() {
            return true;
        }
        self.push(
            Diagnostic::new(
                "FR104",
                format!("empty command in `{kw}`"),
                Label::new(text.span, "nothing to run"),
            )
            .with_help(if kw == "sh" {
                "write the script inside the quotes"
            } else {
                "write the program and its arguments inside the quotes"
            }),
        );
        false
    }

    /// FR104 for a NUL character, which no argument, environment value or
    /// path handed to the kernel can hold.
    fn no_nul(&mut self, text: &Spanned<String>, what: &str) -> bool {
        if !text.node.contains('\0') {
            return true;
        }
        let raw = self.source.slice(text.span);
        let span = raw.find('\0').map_or(text.span, |i| {
            Span::new(text.span.start + i, text.span.start + i + 1)
        });
        self.push(
            Diagnostic::new(
                "FR104",
                format!("{what} contains a NUL character"),
                Label::new(span, "NUL"),
            )
            .with_help("remove it: the strings handed to a program (its arguments, environment and directory) end at the first NUL"),
        );
        false
    }

    fn run(&mut self, text: &Spanned<String>) -> Spanned<Command> {
        if !self.no_nul(text, "`run`") {
            return Spanned::new(Command::Run { argv: Vec::new() }, text.span);
        }
        let argv = if self.non_empty(text, "run") {
            match shell_words::split(&text.node) {
                Ok(argv) => argv,
                Err(_) => {
                    self.push(
                        Diagnostic::new(
                            "FR104",
                            "this `run` command cannot be split into words: a quote is not closed",
                            Label::new(text.span, "unterminated quote"),
                        )
                        .with_help("close the quote: `run` splits its text into words as a shell would (quotes group words), without running a shell"),
                    );
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        Spanned::new(Command::Run { argv }, text.span)
    }

    fn ready(&mut self, r: &ast::ReadyCheck, group: &str, span: Span) -> ReadyCheck {
        let every = match &r.every {
            Some(e) if e.node.is_zero() => {
                self.push(
                    Diagnostic::new(
                        "FR104",
                        "`every 0s` would poll the readiness check without pause",
                        Label::new(e.span, "must be more than 0"),
                    )
                    .with_help("poll every 100ms or more, e.g. `every 1s`"),
                );
                DEFAULT_READY_EVERY
            }
            Some(e) => e.node,
            None => DEFAULT_READY_EVERY,
        };
        if let Probe::Exec(cmd)
        | Probe::Tcp(cmd)
        | Probe::Http(cmd)
        | Probe::Log(cmd)
        | Probe::File(cmd) = &r.probe.node
        {
            if cmd.trim().is_empty() {
                self.push(
                    Diagnostic::new(
                        "FR104",
                        "empty readiness check target",
                        Label::new(r.probe.span, "nothing to check"),
                    )
                    .with_help("write what to check inside the quotes"),
                );
            } else {
                let target = Spanned::new(cmd.clone(), r.probe.span);
                if self.no_nul(&target, "the readiness check") {
                    match &r.probe.node {
                        Probe::Http(url) => self.http_target(url, r.probe.span),
                        Probe::Tcp(addr) => self.tcp_target(addr, r.probe.span),
                        Probe::Log(pattern) => self.log_target(pattern, group, r.probe.span),
                        Probe::Exec(command) => self.exec_target(command, r.probe.span),
                        _ => {}
                    }
                }
            }
        }
        ReadyCheck {
            probe: r.probe.node.clone(),
            every,
            within: r
                .within
                .as_ref()
                .map_or(Timeout::Finite(DEFAULT_READY_WITHIN), |w| w.node),
            span,
        }
    }

    /// FR104 unless `url` is `http://HOST[:PORT][/PATH]`, what the probe
    /// speaks (placeholders such as `{port}` count as written).
    fn http_target(&mut self, url: &str, span: Span) {
        let bad = |message: String, label: &str, help: String| {
            Diagnostic::new("FR104", message, Label::new(span, label)).with_help(help)
        };
        if let Some(rest) = url.strip_prefix("https://") {
            self.push(bad(
                "`ready when http` does not speak HTTPS".into(),
                "an https:// URL",
                format!(
                    "probe the service's plain-HTTP port (`http://{rest}`), or check it with `ready when exec \"curl -fsS {url}\"`"
                ),
            ));
            return;
        }
        let Some(rest) = url.strip_prefix("http://") else {
            self.push(bad(
                format!("`{url}` is not an http:// URL"),
                "not http://HOST[:PORT]/PATH",
                "write a URL such as `http://127.0.0.1:{port}/healthz`".into(),
            ));
            return;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        if let Err(why) = host_port(authority, false) {
            self.push(bad(
                format!("the URL `{url}` {why}"),
                "no usable host",
                "write a URL such as `http://127.0.0.1:{port}/healthz`".into(),
            ));
        }
    }

    /// FR104 unless `pattern` compiles as a regular expression once its
    /// placeholders are filled: `{group}` with the group's name, the
    /// others with a number (which number does not change whether it
    /// compiles).
    fn log_target(&mut self, pattern: &str, group: &str, span: Span) {
        let filled = fill_placeholders(pattern, group);
        let (message, label, help) = match regex::Regex::new(&filled) {
            Ok(_) => return,
            Err(regex::Error::CompiledTooBig(limit)) => (
                format!(
                    "the ready log pattern is too large: compiled, it passes the {} MiB limit",
                    limit >> 20
                ),
                "too large",
                "use fewer or smaller repetition counts (`{N}`)",
            ),
            Err(e) => {
                let e = e.to_string();
                let why = e
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches("error: ")
                    .to_string();
                (
                    format!("the ready log pattern is not a valid regular expression: {why}"),
                    "does not compile",
                    "`ready when log` matches a regular expression: a backslash makes a special character match itself, and a .pf string writes the backslash as `\\\\`, so `\\\\(` matches `(`",
                )
            }
        };
        self.push(Diagnostic::new("FR104", message, Label::new(span, label)).with_help(help));
    }

    /// FR104 unless `command` splits into words as a shell would (the
    /// check runs them without a shell).
    fn exec_target(&mut self, command: &str, span: Span) {
        if shell_words::split(command).is_err() {
            self.push(
                Diagnostic::new(
                    "FR104",
                    "the ready exec command has a quote that is never closed",
                    Label::new(span, "unclosed quote"),
                )
                .with_help("close the quote: the check splits its command into words as a shell would, and runs them without a shell"),
            );
        }
    }

    /// FR104 unless `addr` is `HOST:PORT`.
    fn tcp_target(&mut self, addr: &str, span: Span) {
        if let Err(why) = host_port(addr, true) {
            self.push(
                Diagnostic::new(
                    "FR104",
                    format!("the tcp target `{addr}` {why}"),
                    Label::new(span, "not HOST:PORT"),
                )
                .with_help("write `HOST:PORT`, e.g. `127.0.0.1:{port}` or `localhost:5432`"),
            );
        }
    }

    fn restart(&mut self, r: &ast::RestartPolicy, span: Span) -> Restart {
        let (mut min, mut max) = DEFAULT_BACKOFF;
        if let Some(b) = &r.backoff {
            (min, max) = b.node;
            if min > max {
                self.push(
                    Diagnostic::new(
                        "FR104",
                        format!(
                            "backoff minimum {} is larger than its maximum {}",
                            fmt_duration(min),
                            fmt_duration(max)
                        ),
                        Label::new(b.span, "min > max"),
                    )
                    .with_help(format!(
                        "write `backoff {}..{}`",
                        fmt_duration(max),
                        fmt_duration(min)
                    )),
                );
                std::mem::swap(&mut min, &mut max);
            }
        }
        let limit = r.limit.as_ref().map(|l| {
            let (count, per) = l.node;
            let bad = if count == 0 {
                Some((
                    "`limit 0` allows no restart at all",
                    "use `restart never` instead",
                ))
            } else if count > u64::from(u32::MAX) {
                Some(("the restart limit is too large", "write a smaller count"))
            } else if per.is_zero() {
                Some((
                    "`per 0s` is an empty window",
                    "write a window such as `per 60s`",
                ))
            } else {
                None
            };
            match bad {
                Some((message, help)) => {
                    self.push(
                        Diagnostic::new("FR104", message, Label::new(l.span, "invalid limit"))
                            .with_help(help),
                    );
                    RestartLimit {
                        count: DEFAULT_LIMIT_COUNT,
                        per: DEFAULT_LIMIT_PER,
                    }
                }
                None => RestartLimit {
                    count: count as u32,
                    per,
                },
            }
        });
        Restart {
            mode: r.mode.node,
            backoff_min: min,
            backoff_max: max,
            limit,
            span: Some(span),
        }
    }

    fn stop(&mut self, l: &ast::StopLadder, span: Span) -> Stop {
        let mut steps: Vec<LadderStep> = l
            .steps
            .iter()
            .map(|s| LadderStep {
                signal: self.signal(&s.node.signal).unwrap_or(Sig::TERM),
                drain: s
                    .node
                    .drain
                    .as_ref()
                    .map_or(Timeout::Finite(Duration::ZERO), |d| d.node),
                span: s.span,
            })
            .collect();
        // Every ladder ends with SIGKILL to the whole process group, so a
        // final `SIGKILL` (or `SIGKILL drain 0s`) says nothing more: it is
        // not a step of its own (the plan would show SIGKILL twice).
        if steps
            .last()
            .is_some_and(|s| s.signal == Sig::KILL && s.drain == Timeout::Finite(Duration::ZERO))
        {
            steps.pop();
        }
        Stop {
            steps,
            target: l.target.as_ref().map_or(StopTarget::Leader, |t| t.node),
            span: Some(span),
        }
    }

    fn env(&mut self, vars: &[ast::EnvVar]) -> Vec<(String, String)> {
        let mut first: HashMap<&str, Span> = HashMap::new();
        let mut out = Vec::with_capacity(vars.len());
        for v in vars {
            if let Some(&at) = first.get(v.key.node.as_str()) {
                self.push(
                    Diagnostic::new(
                        "FR102",
                        format!("`{}` is set twice in `env`", v.key.node),
                        Label::new(v.key.span, "set again here"),
                    )
                    .with_related(Label::new(at, "first set here"))
                    .with_help("keep one of them"),
                );
                continue;
            }
            first.insert(v.key.node.as_str(), v.key.span);
            self.no_nul(&v.value, &format!("`{}`", v.key.node));
            out.push((v.key.node.clone(), v.value.node.clone()));
        }
        out
    }

    /// The variables of one `env-file`, in file order; a file that cannot
    /// be read (FR104), a malformed line (FR104) and a key set twice in the
    /// file (FR102) are findings at the path's span.
    fn env_file(&mut self, path: &Spanned<String>) -> Vec<(String, String)> {
        let name = path.node.as_str();
        let text = match self.env_files.get(name) {
            Ok(text) => text,
            Err(why) => {
                self.push(
                    Diagnostic::new(
                        "FR104",
                        format!("cannot read env file `{name}`: {why}"),
                        Label::new(path.span, "this env file cannot be read"),
                    )
                    .with_help(
                        "fix the path: a relative path is read from the topology file's directory",
                    ),
                );
                return Vec::new();
            }
        };
        let (entries, problems) = crate::envfile::parse(text);
        for p in problems {
            let (code, label) = if p.first_set.is_some() {
                ("FR102", "a variable is set twice in this file")
            } else {
                ("FR104", "this file has a malformed line")
            };
            self.push(
                Diagnostic::new(
                    code,
                    format!("env file `{name}`, line {}: {}", p.line, p.message),
                    Label::new(path.span, label),
                )
                .with_help("env files hold `KEY=value` lines (dotenv syntax: `#` comments, `export`, quotes; nothing is expanded)"),
            );
        }
        entries.into_iter().map(|e| (e.key, e.value)).collect()
    }

    // ---- placeholders ----------------------------------------------------------

    /// FR103 over every literal of a group where placeholders are expanded.
    fn placeholders(&mut self, g: &ast::Group, has_port: bool) {
        for s in &g.settings {
            match &s.kind {
                SettingKind::Run(t) | SettingKind::Sh(t) | SettingKind::Cwd(t) => {
                    self.scan(t.span, &g.name.node, has_port)
                }
                SettingKind::Env(vars) => {
                    for v in vars {
                        self.scan(v.value.span, &g.name.node, has_port);
                    }
                }
                SettingKind::Ready(r) => self.scan(r.probe.span, &g.name.node, has_port),
                SettingKind::Log(Some(l)) => self.scan(l.path.span, &g.name.node, has_port),
                _ => {}
            }
        }
    }

    /// FR103 in the topology's `log file` path: as in a group, and
    /// `{port}` is refused (not every group has a port).
    fn scan_top_log(&mut self, span: Span) {
        let raw = self.source.slice(span);
        let ports: Vec<Span> = find_placeholders(raw)
            .into_iter()
            .filter(|&(_, name)| name == "port")
            .map(|(start, _)| Span::new(span.start + start, span.start + start + 6))
            .collect();
        for at in ports {
            self.push(
                Diagnostic::new(
                    "FR103",
                    "`{port}` in the topology's `log file`: not every group has a port",
                    Label::new(at, "not every group has a port"),
                )
                .with_help("use `{index}` to tell the processes apart, or give the groups with a port their own `log file`"),
            );
        }
        self.scan(span, "", true);
    }

    fn scan(&mut self, span: Span, group: &str, has_port: bool) {
        let raw = self.source.slice(span);
        for (start, name) in find_placeholders(raw) {
            let at = Span::new(span.start + start, span.start + start + name.len() + 2);
            if name == "port" && !has_port {
                self.push(
                    Diagnostic::new(
                        "FR103",
                        format!("`{{port}}` is used but group `{group}` has no `port`"),
                        Label::new(at, "no port to fill in"),
                    )
                    .with_help(
                        "add `port N` to the group (process i gets N + i), or remove `{port}`",
                    ),
                );
            } else if !PLACEHOLDERS.contains(&name) {
                let help = match did_you_mean(name, PLACEHOLDERS.iter().copied()) {
                    Some(s) => format!("did you mean `{{{s}}}`?"),
                    None => "the placeholders are {group}, {index}, {processes}, {coroutines} and {port}".into(),
                };
                self.push(
                    Diagnostic::new(
                        "FR103",
                        format!("unknown placeholder `{{{name}}}`"),
                        Label::new(at, "not a placeholder"),
                    )
                    .with_help(help),
                );
            }
        }
    }
}

/// `raw` with `{group}` replaced by `group` and every other placeholder by
/// `0`: an unknown one too, which is FR103's finding, not a second one.
fn fill_placeholders(raw: &str, group: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut from = 0;
    for (start, name) in find_placeholders(raw) {
        out.push_str(&raw[from..start]);
        out.push_str(if name == "group" { group } else { "0" });
        from = start + name.len() + 2;
    }
    out.push_str(&raw[from..]);
    out
}

/// Byte offset and name of every `{NAME}` placeholder in `raw` (see the
/// module docs for what counts).
fn find_placeholders(raw: &str) -> Vec<(usize, &str)> {
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' && (i == 0 || bytes[i - 1] != b'$') {
            let rest = &raw[i + 1..];
            let len = rest
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            if len > 0
                && !rest.as_bytes()[0].is_ascii_digit()
                && rest.as_bytes().get(len) == Some(&b'}')
            {
                out.push((i, &rest[..len]));
                i += len + 2;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// For duplicate-setting findings: the key that makes settings "the same"
/// and how to name it. `None` for settings that may repeat.
fn single_valued(kind: &SettingKind) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        SettingKind::Run(_) | SettingKind::Sh(_) => ("command", "the command (`run` or `sh`)"),
        SettingKind::Processes(_) => ("processes", "`processes`"),
        SettingKind::Coroutines(_) => ("coroutines", "`coroutines`"),
        SettingKind::Port(_) => ("port", "`port`"),
        SettingKind::Once => ("once", "`once`"),
        SettingKind::Ready(_) => ("ready", "`ready when`"),
        SettingKind::Restart(_) => ("restart", "`restart`"),
        SettingKind::Stop(_) => ("stop", "`stop`"),
        SettingKind::Env(_) => ("env", "`env`"),
        SettingKind::Cwd(_) => ("cwd", "`cwd`"),
        SettingKind::ProcessGroup(_) => ("process-group", "`process-group`"),
        SettingKind::DieWithParent(_) => ("die-with-parent", "`die-with-parent`"),
        SettingKind::Log(_) => ("log", "`log`"),
        SettingKind::After { .. } | SettingKind::Allow(_) | SettingKind::EnvFile(_) => return None,
    })
}

/// Length of the keyword a setting statement starts with.
fn keyword_len(kind: &SettingKind) -> usize {
    match kind {
        SettingKind::Run(_) => 3,
        SettingKind::Sh(_) => 2,
        SettingKind::Processes(_) => 9,
        SettingKind::Coroutines(_) => 10,
        SettingKind::Port(_) => 4,
        SettingKind::Once => 4,
        SettingKind::After { .. } => 5,
        SettingKind::Ready(_) => 5,
        SettingKind::Restart(_) => 7,
        SettingKind::Stop(_) => 4,
        SettingKind::Env(_) => 3,
        SettingKind::EnvFile(_) => 8,
        SettingKind::Cwd(_) => 3,
        SettingKind::ProcessGroup(_) => 13,
        SettingKind::DieWithParent(_) => 15,
        SettingKind::Allow(_) => 5,
        SettingKind::Log(_) => 3,
    }
}

/// The closest candidate to a misspelt `word`, if one is close enough
/// (case is ignored: `Processes` finds `processes`). The one did-you-mean
/// of the language: the parser uses it for keywords.
pub fn did_you_mean<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1);
    let lower = word.to_ascii_lowercase();
    candidates
        .map(|c| {
            (
                strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()),
                c,
            )
        })
        // Replacing every character is not a suggestion (`x` → `a`).
        .filter(|&(d, _)| d <= limit && d < word.chars().count())
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Set `vars` over `env`: a key already there gets the new value in place,
/// a new key is appended.
fn merge_env(env: &mut Vec<(String, String)>, vars: Vec<(String, String)>) {
    if env.is_empty() {
        *env = vars;
        return;
    }
    let mut at: HashMap<String, usize> = env
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.clone(), i))
        .collect();
    for (k, v) in vars {
        match at.get(&k) {
            Some(&i) => env[i].1 = v,
            None => {
                at.insert(k.clone(), env.len());
                env.push((k, v));
            }
        }
    }
}

/// Check `HOST[:PORT]` (`[v6]:PORT` too); a port is required when
/// `need_port`. A placeholder (`{port}`) stands for a valid value. The
/// error completes "the target `…` ".
fn host_port(authority: &str, need_port: bool) -> Result<(), &'static str> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':')),
            None => return Err("has an unclosed `[`"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host");
    }
    let placeholder = |t: &str| t.starts_with('{') && t.ends_with('}');
    match port {
        None if need_port => Err("has no port (write HOST:PORT)"),
        None => Ok(()),
        Some(p) if placeholder(p) => Ok(()),
        Some(p) => match p.parse::<u32>() {
            Ok(1..=65_535) => Ok(()),
            _ => Err("has no valid port (1 to 65535)"),
        },
    }
}
