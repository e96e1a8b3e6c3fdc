//! The fast path: a hand-written recursive-descent parser for the whole
//! grammar, tried before pest. It accepts a subset of what pest accepts and
//! builds the identical [`ast::File`], spans included; on anything it does
//! not know (a statement it was not taught, a token that does not fit) or
//! on anything that would be an error (a syntax error, a number or duration
//! that overflows, an unknown string escape, a ladder step without `drain`)
//! it gives up with `None` and [`super::parse`] runs the pest path on the
//! whole file, which accepts the same language and words every FR001.
//! So every message, span and snapshot comes from one place, and a new
//! statement added to the grammar keeps working before this parser learns
//! it (it just takes the slower path).
//!
//! Each function mirrors one grammar rule of `grammar/topology.pest`, with
//! pest's implicit whitespace made explicit: `skip` (spaces, tabs, `#`
//! comments) runs before each element of a sequence and is kept even when
//! an optional element after it does not match (so a rule that ends in an
//! absent optional part ends after the skipped whitespace, as in pest),
//! while the skip before another iteration of a repetition is undone when
//! the iteration does not match (`x+` is `x ~ x*`, as pest's optimiser
//! unrolls it). Keywords and tokens are recognised on the
//! whole run of identifier characters (`[A-Za-z0-9_-]`), which is what the
//! grammar's `!ident_char` after every keyword and token amounts to.
//!
//! One pass over the bytes, no backtracking; no IO; never panics (every
//! index is checked, and every slice is at an ASCII byte).

use crate::ast::{
    self, AfterState, EnvVar, Escalate, FinishWhen, Group, Handler, LadderStep, Probe,
    ProcessGroupMode, ReadyCheck, RestartMode, RestartPolicy, Setting, SettingKind, Step,
    StopLadder, StopTarget, Timeout, TopItem, TopItemKind,
};
use crate::source::{Span, Spanned};
use std::time::Duration;

/// Why the fast path gave up (the pest path reads the file instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaveUp {
    /// A statement or handler step starts with a word the fast path does
    /// not know, at this byte: a statement added to the grammar and not
    /// yet to the fast path, or a misspelt one.
    UnknownStatement(usize),
    /// Anything else: an error, or a form outside the fast path's subset.
    Other,
}

/// The file as pest's `file` rule would read it, or why not.
pub(super) fn parse(text: &str) -> Result<ast::File, GaveUp> {
    let mut p = P {
        s: text,
        b: text.as_bytes(),
        pos: 0,
        unknown: None,
    };
    p.file().ok_or(match p.unknown {
        Some(at) => GaveUp::UnknownStatement(at),
        None => GaveUp::Other,
    })
}

/// `ident_char` of the grammar.
fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// The reserved words: never group names.
const RESERVED: &[&str] = &[
    "drain", "restart", "reload", "forward", "wait", "kill", "ignore", "within", "to", "rolling",
    "then", "forever",
];

struct P<'a> {
    s: &'a str,
    b: &'a [u8],
    /// Always on a character boundary: it only moves over ASCII bytes, to
    /// a `\n`, or past a closing `"`.
    pos: usize,
    /// Where a statement began with a word the fast path does not know
    /// (it gives up right there).
    unknown: Option<usize>,
}

impl<'a> P<'a> {
    /// `SOI ~ "\u{FEFF}"? ~ sep* ~ topology ~ sep* ~ EOI`
    fn file(&mut self) -> Option<ast::File> {
        if self.s.starts_with('\u{FEFF}') {
            self.pos = '\u{FEFF}'.len_utf8();
        }
        self.blank(P::sep);
        let topology = self.topology()?;
        self.blank(P::sep);
        (self.pos == self.b.len()).then_some(ast::File { topology })
    }

    /// Give up on a statement that starts with a word not known here.
    fn unknown<T>(&mut self) -> Option<T> {
        if !self.word().is_empty() {
            self.unknown = Some(self.pos);
        }
        None
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// `WHITESPACE*`: spaces, tabs and comments (to the `\n`, not past it).
    fn skip(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' => self.pos += 1,
                b'#' => {
                    self.pos = self.b[self.pos..]
                        .iter()
                        .position(|&c| c == b'\n')
                        .map_or(self.b.len(), |i| self.pos + i);
                }
                _ => break,
            }
        }
    }

    /// `sep`: a newline (LF or CRLF) or `;`.
    fn sep(&mut self) -> bool {
        match self.peek() {
            Some(b'\n' | b';') => {
                self.pos += 1;
                true
            }
            Some(b'\r') if self.b.get(self.pos + 1) == Some(&b'\n') => {
                self.pos += 2;
                true
            }
            _ => false,
        }
    }

    /// `env_sep`: a `sep` or a `,`.
    fn env_sep(&mut self) -> bool {
        if self.peek() == Some(b',') {
            self.pos += 1;
            return true;
        }
        self.sep()
    }

    /// Any run of whitespace, comments and separators.
    fn blank(&mut self, sep: fn(&mut Self) -> bool) {
        loop {
            self.skip();
            if !sep(self) {
                break;
            }
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    /// The run of identifier characters at `pos` (possibly empty).
    fn word(&self) -> &'a str {
        let rest = &self.b[self.pos..];
        let len = rest
            .iter()
            .position(|&c| !is_ident(c))
            .unwrap_or(rest.len());
        &self.s[self.pos..self.pos + len]
    }

    /// Take the word at `pos` if `ok` accepts it.
    fn token(&mut self, ok: impl Fn(&str) -> bool) -> Option<Spanned<&'a str>> {
        let w = self.word();
        if w.is_empty() || !ok(w) {
            return None;
        }
        let start = self.pos;
        self.pos += w.len();
        Some(Spanned::new(w, Span::new(start, self.pos)))
    }

    /// A keyword (`kw_*`): the whole word.
    fn kw(&mut self, k: &str) -> bool {
        self.token(|w| w == k).is_some()
    }

    /// A keyword that must be there; its span.
    fn need_kw(&mut self, k: &str) -> Option<Span> {
        self.token(|w| w == k).map(|t| t.span)
    }

    /// One of several keywords, mapped to a value, with the keyword's span.
    fn one_of<T: Copy>(&mut self, choices: &[(&str, T)]) -> Option<Spanned<T>> {
        let w = self.word();
        let &(_, value) = choices.iter().find(|(k, _)| *k == w)?;
        let start = self.pos;
        self.pos += w.len();
        Some(Spanned::new(value, Span::new(start, self.pos)))
    }

    // ---- tokens ----------------------------------------------------------

    /// `name`: `[a-z][a-z0-9_-]*`.
    fn name(&mut self) -> Option<Spanned<String>> {
        self.token(is_name).map(owned)
    }

    /// `group_name`: a `name` that is not reserved.
    fn group_name(&mut self) -> Option<Spanned<String>> {
        self.token(|w| is_name(w) && !RESERVED.contains(&w))
            .map(owned)
    }

    /// `signal`: `SIG[A-Z0-9]+`.
    fn signal(&mut self) -> Option<Spanned<String>> {
        self.token(|w| {
            w.strip_prefix("SIG").is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            })
        })
        .map(owned)
    }

    /// `rule_ref`: `[A-Za-z0-9]+(-[A-Za-z0-9]+)*`.
    fn rule_ref(&mut self) -> Option<Spanned<String>> {
        self.token(|w| {
            w.split('-')
                .all(|part| !part.is_empty() && part.bytes().all(|c| c.is_ascii_alphanumeric()))
        })
        .map(owned)
    }

    /// `env_key`: `[A-Za-z_][A-Za-z0-9_]*`.
    fn env_key(&mut self) -> Option<Spanned<String>> {
        self.token(|w| {
            !w.starts_with(|c: char| c.is_ascii_digit())
                && w.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        })
        .map(owned)
    }

    /// `number`, as a u64 (`None` on overflow: pest's path says so).
    fn number(&mut self) -> Option<Spanned<u64>> {
        let t = self.token(|w| w.bytes().all(|c| c.is_ascii_digit()))?;
        Some(Spanned::new(t.node.parse().ok()?, t.span))
    }

    /// `duration` (`None` on overflow too).
    fn duration(&mut self) -> Option<Spanned<Duration>> {
        // `duration_millis` reads exactly the grammar's `(N unit)+` on a
        // non-empty word, and fails on anything else or on overflow.
        let w = self.word();
        let ms = super::duration_millis(w)?;
        let t = self.token(|w| !w.is_empty())?;
        Some(Spanned::new(Duration::from_millis(ms), t.span))
    }

    /// `timeout`: `forever` or a duration.
    fn timeout(&mut self) -> Option<Spanned<Timeout>> {
        if let Some(span) = self.need_kw("forever") {
            return Some(Spanned::new(Timeout::Forever, span));
        }
        let d = self.duration()?;
        Some(Spanned::new(Timeout::Finite(d.node), d.span))
    }

    /// `string`: the unescaped value, the span covering the quotes.
    fn string(&mut self) -> Option<Spanned<String>> {
        let start = self.pos;
        self.eat(b'"')?;
        let mut value = String::new();
        let mut from = self.pos;
        let mut i = self.pos;
        loop {
            match *self.b.get(i)? {
                b'"' => break,
                b'\n' | b'\r' => return None,
                b'\\' => {
                    let unescaped = match *self.b.get(i + 1)? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'n' => '\n',
                        b't' => '\t',
                        // An unknown escape, or a line end: pest's path
                        // words the error.
                        _ => return None,
                    };
                    value.push_str(&self.s[from..i]);
                    value.push(unescaped);
                    i += 2;
                    from = i;
                }
                _ => i += 1,
            }
        }
        value.push_str(&self.s[from..i]);
        self.pos = i + 1;
        Some(Spanned::new(value, Span::new(start, self.pos)))
    }

    // ---- blocks ----------------------------------------------------------

    /// After a `{`: `sep* ~ (item ~ (sep+ ~ item)* ~ sep*)? ~ "}"`, with
    /// `sep` the block's separator (`sep` or `env_sep`). `at_least_one`: the
    /// `item ~ …` part is not optional (a handler's step block).
    fn block(
        &mut self,
        sep: fn(&mut Self) -> bool,
        at_least_one: bool,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.blank(sep);
        if !at_least_one && self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            item(self)?;
            self.skip();
            let separated = sep(self);
            if separated {
                self.blank(sep);
            }
            if self.eat(b'}').is_some() {
                return Some(());
            }
            if !separated {
                return None;
            }
        }
    }

    // ---- the topology ----------------------------------------------------

    fn topology(&mut self) -> Option<ast::Topology> {
        let start = self.pos;
        self.need_kw("topology")?;
        self.skip();
        let name = self.name()?;
        self.skip();
        self.eat(b'{')?;
        let mut items = Vec::new();
        self.block(P::sep, false, |p| {
            items.push(p.top_item()?);
            Some(())
        })?;
        Some(ast::Topology {
            name,
            items,
            span: Span::new(start, self.pos),
        })
    }

    fn top_item(&mut self) -> Option<TopItem> {
        let start = self.pos;
        let kind = match self.word() {
            "group" => TopItemKind::Group(self.group()?),
            // `&("on " | "on\t")`
            "on" if matches!(self.b.get(self.pos + 2), Some(b' ' | b'\t')) => {
                TopItemKind::Handler(self.handler()?)
            }
            "shutdown" => {
                self.need_kw("shutdown")?;
                self.skip();
                self.need_kw("within")?;
                self.skip();
                TopItemKind::Shutdown(self.timeout()?)
            }
            "finish" => {
                self.need_kw("finish")?;
                self.skip();
                self.need_kw("when")?;
                self.skip();
                let group = self.group_name()?;
                self.skip();
                let when = self.one_of(&[
                    ("exits", FinishWhen::Exits),
                    ("succeeds", FinishWhen::Succeeds),
                ])?;
                TopItemKind::Finish { group, when }
            }
            "escalate" => {
                self.need_kw("escalate")?;
                self.skip();
                let at = self.pos;
                let escalate = if self.kw("on") {
                    self.skip();
                    self.need_kw("repeat")?;
                    Spanned::new(Escalate::OnRepeat, Span::new(at, self.pos))
                } else {
                    Spanned::new(Escalate::Never, self.need_kw("never")?)
                };
                TopItemKind::Escalate(escalate)
            }
            "allow" => TopItemKind::Allow(self.allow()?),
            "env-file" => {
                self.need_kw("env-file")?;
                self.skip();
                TopItemKind::EnvFile(self.string()?)
            }
            _ => return self.unknown(),
        };
        Some(TopItem {
            kind,
            span: Span::new(start, self.pos),
        })
    }

    /// `allow_stmt`, at either scope.
    fn allow(&mut self) -> Option<ast::Allow> {
        let start = self.pos;
        self.need_kw("allow")?;
        self.skip();
        let rule = self.rule_ref()?;
        self.skip();
        let reason = if self.kw("because") {
            self.skip();
            Some(self.string()?)
        } else {
            None
        };
        Some(ast::Allow {
            rule,
            reason,
            span: Span::new(start, self.pos),
        })
    }

    // ---- handlers --------------------------------------------------------

    fn handler(&mut self) -> Option<Handler> {
        self.need_kw("on")?;
        self.skip();
        let signal = self.signal()?;
        self.skip();
        if self.eat(b'{').is_some() {
            let mut steps = Vec::new();
            self.block(P::sep, true, |p| {
                steps.push(p.step()?);
                Some(())
            })?;
            Some(Handler {
                signal,
                steps,
                block: true,
            })
        } else {
            Some(Handler {
                signal,
                steps: vec![self.step()?],
                block: false,
            })
        }
    }

    /// `group_name*`, or `group_name+` with `at_least_one`. pest's optimiser
    /// unrolls `x+` into `x ~ x*`, so after the first name of a `+` the
    /// skip is kept (a one-name list ends after the whitespace that follows
    /// it), while the skip before a further name of the `*` is not.
    fn group_names(&mut self, at_least_one: bool) -> Option<Vec<Spanned<String>>> {
        let mut out = Vec::new();
        if at_least_one {
            out.push(self.group_name()?);
            self.skip();
        }
        match self.group_name() {
            Some(g) => out.push(g),
            None => return Some(out),
        }
        loop {
            let before = self.pos;
            self.skip();
            match self.group_name() {
                Some(g) => out.push(g),
                None => {
                    self.pos = before;
                    return Some(out);
                }
            }
        }
    }

    fn step(&mut self) -> Option<Spanned<Step>> {
        let start = self.pos;
        let word = self.word();
        let step = match word {
            "reload" | "kill" | "ignore" => {
                self.pos += word.len();
                match word {
                    "reload" => Step::Reload,
                    "kill" => Step::Kill,
                    _ => Step::Ignore,
                }
            }
            "drain" => {
                self.pos += word.len();
                self.skip();
                Step::Drain {
                    groups: self.group_names(false)?,
                }
            }
            "restart" => {
                self.pos += word.len();
                self.skip();
                let groups = self.group_names(true)?;
                self.skip();
                Step::Restart {
                    groups,
                    rolling: self.kw("rolling"),
                }
            }
            "forward" => {
                self.pos += word.len();
                self.skip();
                let signal = self.signal();
                self.skip();
                self.need_kw("to")?;
                self.skip();
                Step::Forward {
                    signal,
                    groups: self.group_names(true)?,
                }
            }
            "wait" => {
                self.pos += word.len();
                self.skip();
                let groups = self.group_names(true)?;
                self.skip();
                let within = if self.kw("within") {
                    self.skip();
                    Some(self.timeout()?)
                } else {
                    None
                };
                Step::Wait { groups, within }
            }
            _ => return self.unknown(),
        };
        Some(Spanned::new(step, Span::new(start, self.pos)))
    }

    // ---- groups ----------------------------------------------------------

    fn group(&mut self) -> Option<Group> {
        let start = self.pos;
        self.need_kw("group")?;
        self.skip();
        let name = self.group_name()?;
        self.skip();
        self.eat(b'{')?;
        let mut settings = Vec::new();
        self.block(P::sep, false, |p| {
            settings.push(p.setting()?);
            Some(())
        })?;
        Some(Group {
            name,
            settings,
            span: Span::new(start, self.pos),
        })
    }

    /// A keyword, then (after a skip) what `value` reads.
    fn keyed<T>(&mut self, k: &str, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        self.need_kw(k)?;
        self.skip();
        value(self)
    }

    fn setting(&mut self) -> Option<Setting> {
        let start = self.pos;
        let word = self.word();
        let kind = match word {
            "run" => SettingKind::Run(self.keyed(word, P::string)?),
            "sh" => SettingKind::Sh(self.keyed(word, P::string)?),
            "cwd" => SettingKind::Cwd(self.keyed(word, P::string)?),
            "env-file" => SettingKind::EnvFile(self.keyed(word, P::string)?),
            "processes" => SettingKind::Processes(self.keyed(word, P::number)?),
            "coroutines" => SettingKind::Coroutines(self.keyed(word, P::number)?),
            "port" => SettingKind::Port(self.keyed(word, P::number)?),
            "once" => {
                self.need_kw(word)?;
                SettingKind::Once
            }
            "after" => {
                let group = self.keyed(word, P::group_name)?;
                self.skip();
                let state = self.one_of(&[
                    ("started", AfterState::Started),
                    ("ready", AfterState::Ready),
                    ("succeeded", AfterState::Succeeded),
                    ("exited", AfterState::Exited),
                ]);
                SettingKind::After { group, state }
            }
            "ready" => SettingKind::Ready(self.ready()?),
            "restart" => SettingKind::Restart(self.restart()?),
            "stop" => SettingKind::Stop(self.stop()?),
            "env" => {
                self.need_kw(word)?;
                self.skip();
                self.eat(b'{')?;
                let mut vars = Vec::new();
                self.block(P::env_sep, false, |p| {
                    let key = p.env_key()?;
                    p.skip();
                    p.eat(b'=')?;
                    p.skip();
                    let value = p.string()?;
                    vars.push(EnvVar { key, value });
                    Some(())
                })?;
                SettingKind::Env(vars)
            }
            "process-group" => SettingKind::ProcessGroup(self.keyed(word, |p| {
                p.one_of(&[
                    ("own", ProcessGroupMode::Own),
                    ("shared", ProcessGroupMode::Shared),
                ])
            })?),
            "die-with-parent" => SettingKind::DieWithParent(
                self.keyed(word, |p| p.one_of(&[("yes", true), ("no", false)]))?,
            ),
            "allow" => SettingKind::Allow(self.allow()?),
            _ => return self.unknown(),
        };
        Some(Setting {
            kind,
            span: Span::new(start, self.pos),
        })
    }

    /// `ready when PROBE [every D] [within T]`
    fn ready(&mut self) -> Option<ReadyCheck> {
        self.need_kw("ready")?;
        self.skip();
        self.need_kw("when")?;
        self.skip();
        let start = self.pos;
        let word = self.word();
        let probe = if word == "notify" {
            self.pos += word.len();
            Probe::Notify
        } else {
            let make: fn(String) -> Probe = match word {
                "tcp" => Probe::Tcp,
                "http" => Probe::Http,
                "exec" => Probe::Exec,
                "log" => Probe::Log,
                "file" => Probe::File,
                _ => return None,
            };
            make(self.keyed(word, P::string)?.node)
        };
        let probe = Spanned::new(probe, Span::new(start, self.pos));
        self.skip();
        let every = if self.kw("every") {
            self.skip();
            Some(self.duration()?)
        } else {
            None
        };
        self.skip();
        let within = if self.kw("within") {
            self.skip();
            Some(self.timeout()?)
        } else {
            None
        };
        Some(ReadyCheck {
            probe,
            every,
            within,
        })
    }

    /// `restart MODE [backoff D..D] [limit N per D]`
    fn restart(&mut self) -> Option<RestartPolicy> {
        self.need_kw("restart")?;
        self.skip();
        let mode = self.one_of(&[
            ("never", RestartMode::Never),
            ("on-failure", RestartMode::OnFailure),
            ("always", RestartMode::Always),
        ])?;
        self.skip();
        let start = self.pos;
        let backoff = if self.kw("backoff") {
            self.skip();
            let lo = self.duration()?.node;
            self.skip();
            self.eat(b'.')?;
            self.eat(b'.')?;
            self.skip();
            let hi = self.duration()?.node;
            Some(Spanned::new((lo, hi), Span::new(start, self.pos)))
        } else {
            None
        };
        self.skip();
        let start = self.pos;
        let limit = if self.kw("limit") {
            self.skip();
            let n = self.number()?.node;
            self.skip();
            self.need_kw("per")?;
            self.skip();
            let per = self.duration()?.node;
            Some(Spanned::new((n, per), Span::new(start, self.pos)))
        } else {
            None
        };
        Some(RestartPolicy {
            mode,
            backoff,
            limit,
        })
    }

    /// `stop STEP [then STEP]… [to leader|group]`
    fn stop(&mut self) -> Option<StopLadder> {
        self.need_kw("stop")?;
        self.skip();
        let mut steps = vec![self.ladder_step()?];
        loop {
            let before = self.pos;
            self.skip();
            if !self.kw("then") {
                self.pos = before;
                break;
            }
            self.skip();
            steps.push(self.ladder_step()?);
        }
        // Only a final SIGKILL may leave out `drain T`; anything else is
        // an error pest's path words.
        let last = steps.len() - 1;
        let bare = |(i, s): (usize, &Spanned<LadderStep>)| {
            s.node.drain.is_none() && (i != last || s.node.signal.node != "SIGKILL")
        };
        if steps.iter().enumerate().any(bare) {
            return None;
        }
        self.skip();
        let start = self.pos;
        let target = if self.kw("to") {
            self.skip();
            let target =
                self.one_of(&[("leader", StopTarget::Leader), ("group", StopTarget::Group)])?;
            Some(Spanned::new(target.node, Span::new(start, self.pos)))
        } else {
            None
        };
        Some(StopLadder { steps, target })
    }

    /// `SIG [drain T]`
    fn ladder_step(&mut self) -> Option<Spanned<LadderStep>> {
        let start = self.pos;
        let signal = self.signal()?;
        self.skip();
        let drain = if self.kw("drain") {
            self.skip();
            Some(self.timeout()?)
        } else {
            None
        };
        Some(Spanned::new(
            LadderStep { signal, drain },
            Span::new(start, self.pos),
        ))
    }
}

/// `[a-z][a-z0-9_-]*`
fn is_name(w: &str) -> bool {
    w.starts_with(|c: char| c.is_ascii_lowercase())
        && w.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

fn owned(t: Spanned<&str>) -> Spanned<String> {
    Spanned::new(t.node.to_string(), t.span)
}
