//! The parser: source text → [`ast::File`]. The only module that sees
//! pest types.
//!
//! A hand-written parser for the whole grammar (`parse/fast.rs`) reads the
//! file first, because pest is slow on large files; on any error or
//! unknown statement it gives up and the pest path below reads the file
//! instead, so the language is defined by the grammar and every FR001 is
//! worded here.
//!
//! The grammar lives in `grammar/topology.pest` (described in prose in
//! `grammar/README.md`). Conversion from pest pairs to the typed AST is one
//! small function per rule; every node keeps its byte span into the whole
//! file. A file that does not parse gives one FR001 diagnostic whose message
//! names what was expected in words, at the exact byte where parsing stopped.
//! Some checks pest cannot express are made during conversion and are also
//! syntax errors: number and duration overflow, unknown string escapes.

use crate::ast::{
    self, AfterState, EnvVar, Escalate, FinishWhen, Group, Handler, LadderStep, Probe,
    ProcessGroupMode, ReadyCheck, RestartMode, RestartPolicy, Setting, SettingKind, Step,
    StopLadder, StopTarget, Timeout, TopItem, TopItemKind,
};
use crate::diagnostic::{Diagnostic, Label};
use crate::source::{SourceFile, Span, Spanned};
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::Parser as _;
use std::time::Duration;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/topology.pest"]
struct TopologyParser;

type Result<T> = std::result::Result<T, Box<Diagnostic>>;

mod fast;

pub use fast::GaveUp;

/// Parse a file. `None` when it does not parse; the diagnostics (FR001)
/// then say what was expected where.
///
/// The hand-written fast path ([`parse_fast`]) reads the file first; when it
/// gives up (on any error, or on a statement it does not know) the pest
/// path ([`parse_pest`]) reads the whole file again and words the error.
/// Both give the identical AST wherever the fast path succeeds (a test
/// checks this on every example, fixture and corpus file and on generated
/// inputs).
pub fn parse(source: &SourceFile) -> (Option<ast::File>, Vec<Diagnostic>) {
    match parse_fast(source) {
        Ok(file) => (Some(file), Vec::new()),
        Err(_) => parse_pest(source),
    }
}

/// The fast path alone: the AST, or why it gave up (on every error, too:
/// it never reports one). See `src/parse/fast.rs`.
pub fn parse_fast(source: &SourceFile) -> std::result::Result<ast::File, GaveUp> {
    fast::parse(&source.text)
}

/// The pest path alone: the reference for the language and the only source
/// of FR001 diagnostics.
pub fn parse_pest(source: &SourceFile) -> (Option<ast::File>, Vec<Diagnostic>) {
    let text = source.text.as_str();
    let pairs = match TopologyParser::parse(Rule::file, text) {
        Ok(pairs) => pairs,
        Err(err) => return (None, vec![syntax_error(text, &err)]),
    };
    let Some(file) = pairs.into_iter().next() else {
        return (None, vec![at_offset(text, 0, "expected `topology`")]);
    };
    match convert_file(file) {
        Ok(file) => (Some(file), Vec::new()),
        Err(diag) => (None, vec![*diag]),
    }
}

// ---------------------------------------------------------------------------
// Syntax errors
// ---------------------------------------------------------------------------

/// What a grammar rule is called in an "expected …" message.
fn describe(rule: Rule) -> &'static str {
    match rule {
        // `file` is reported when nothing at all matched at the start.
        Rule::file => "`topology`",
        Rule::EOI => "the end of the file",
        Rule::topology | Rule::kw_topology => "`topology`",
        Rule::sep => "the end of the statement",
        Rule::top_item => {
            "a topology statement (`shutdown`, `finish`, `on`, `escalate`, `allow`, `env-file`, `log` or `group`)"
        }
        Rule::shutdown_stmt | Rule::kw_shutdown => "`shutdown`",
        Rule::finish_stmt | Rule::kw_finish => "`finish`",
        Rule::finish_when => "`exits` or `succeeds`",
        Rule::escalate_stmt | Rule::kw_escalate => "`escalate`",
        Rule::on_repeat => "`on repeat`",
        Rule::allow_stmt | Rule::kw_allow => "`allow`",
        Rule::handler | Rule::kw_on => "`on`",
        Rule::step_block => "`{`",
        Rule::step => {
            "a handler step (`drain`, `restart`, `reload`, `forward`, `wait`, `kill` or `ignore`)"
        }
        Rule::drain_step | Rule::kw_drain => "`drain`",
        Rule::restart_step | Rule::kw_restart => "`restart`",
        Rule::reload_step | Rule::kw_reload => "`reload`",
        Rule::forward_step | Rule::kw_forward => "`forward`",
        Rule::wait_step | Rule::kw_wait => "`wait`",
        Rule::kill_step | Rule::kw_kill => "`kill`",
        Rule::ignore_step | Rule::kw_ignore => "`ignore`",
        Rule::group_def | Rule::kw_group => "`group`",
        Rule::setting => "a group setting (`run`, `sh`, `processes`, `coroutines`, `port`, `once`, `after`, `ready`, `restart`, `stop`, `env`, `env-file`, `cwd`, `process-group`, `die-with-parent`, `log` or `allow`)",
        Rule::run_s | Rule::kw_run => "`run`",
        Rule::sh_s | Rule::kw_sh => "`sh`",
        Rule::processes_s | Rule::kw_processes => "`processes`",
        Rule::coroutines_s | Rule::kw_coroutines => "`coroutines`",
        Rule::port_s | Rule::kw_port => "`port`",
        Rule::once_s | Rule::kw_once => "`once`",
        Rule::after_s | Rule::kw_after => "`after`",
        Rule::after_state => "a state (`started`, `ready`, `succeeded` or `exited`)",
        Rule::ready_s | Rule::kw_ready => "`ready`",
        Rule::probe => "a readiness probe (`tcp`, `http`, `exec`, `log`, `file` or `notify`)",
        Rule::probe_tcp | Rule::kw_tcp => "`tcp`",
        Rule::probe_http | Rule::kw_http => "`http`",
        Rule::probe_exec | Rule::kw_exec => "`exec`",
        Rule::probe_log | Rule::kw_log => "`log`",
        Rule::probe_file | Rule::kw_file => "`file`",
        Rule::probe_notify | Rule::kw_notify => "`notify`",
        Rule::ready_every | Rule::kw_every => "`every`",
        Rule::ready_within | Rule::kw_within => "`within`",
        Rule::restart_s => "`restart`",
        Rule::restart_mode => "a restart mode (`never`, `on-failure` or `always`)",
        Rule::backoff | Rule::kw_backoff => "`backoff`",
        Rule::limit | Rule::kw_limit => "`limit`",
        Rule::stop_s | Rule::kw_stop => "`stop`",
        Rule::ladder_step => "a stop step like `SIGTERM drain 10s`",
        Rule::stop_target => "a stop target (`to leader` or `to group`)",
        Rule::env_s | Rule::kw_env => "`env`",
        Rule::env_var | Rule::env_key => "an environment variable name like `LOG_LEVEL`",
        Rule::cwd_s | Rule::kw_cwd => "`cwd`",
        Rule::env_file_s | Rule::kw_env_file => "`env-file`",
        Rule::log_s => "`log`",
        Rule::log_file => "`file`",
        Rule::kw_terminal => "`terminal`",
        Rule::log_rotate | Rule::kw_rotate => "`rotate`",
        Rule::log_keep | Rule::kw_keep => "`keep`",
        Rule::size => "a size like 10MB (B, KB, MB or GB)",
        Rule::process_group_s | Rule::kw_process_group => "`process-group`",
        Rule::die_with_parent_s | Rule::kw_die_with_parent => "`die-with-parent`",
        Rule::name => "a topology name",
        Rule::group_name | Rule::reserved => "a group name",
        Rule::signal => "a signal like SIGTERM",
        Rule::rule_ref => "a rule code or name like FR304 or unbounded-drain",
        Rule::number => "a whole number",
        Rule::duration => "a duration like 10s",
        Rule::timeout => "a duration like 10s or `forever`",
        Rule::string | Rule::quote => "a string in double quotes",
        Rule::string_inner => "string text",
        Rule::close_quote => "`\"` to close the string",
        Rule::lbrace => "`{`",
        Rule::rbrace => "`}`",
        Rule::comma => "`,`",
        Rule::equals => "`=`",
        Rule::dotdot => "`..`",
        Rule::kw_when => "`when`",
        Rule::kw_exits => "`exits`",
        Rule::kw_succeeds => "`succeeds`",
        Rule::kw_repeat => "`repeat`",
        Rule::kw_never => "`never`",
        Rule::kw_because => "`because`",
        Rule::kw_rolling => "`rolling`",
        Rule::kw_to => "`to`",
        Rule::kw_started => "`started`",
        Rule::kw_succeeded => "`succeeded`",
        Rule::kw_exited => "`exited`",
        Rule::kw_on_failure => "`on-failure`",
        Rule::kw_always => "`always`",
        Rule::kw_per => "`per`",
        Rule::kw_then => "`then`",
        Rule::kw_leader => "`leader`",
        Rule::kw_own => "`own`",
        Rule::kw_shared => "`shared`",
        Rule::kw_yes => "`yes`",
        Rule::kw_no => "`no`",
        Rule::kw_forever => "`forever`",
        Rule::WHITESPACE | Rule::env_sep | Rule::ident_char => "more input",
    }
}

/// The words that can never be group names (see grammar/README.md).
const RESERVED: &[&str] = &[
    "drain", "restart", "reload", "forward", "wait", "kill", "ignore", "within", "to", "rolling",
    "then", "forever",
];

const TOP_KEYWORDS: &[&str] = &[
    "shutdown", "finish", "on", "escalate", "group", "env-file", "log",
];
const SETTING_KEYWORDS: &[&str] = &[
    "run",
    "sh",
    "processes",
    "coroutines",
    "port",
    "once",
    "after",
    "ready",
    "stop",
    "env",
    "env-file",
    "cwd",
    "process-group",
    "die-with-parent",
    "log",
];

/// A character of a word, for "unexpected …" labels. Non-ASCII letters
/// count, so that `café` is shown (and underlined) whole.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// The byte range of the token at `pos`, for "unexpected …" labels: a
/// whole word (`proceses`, `1s-5s`, `café`), a decimal number (`4.5`,
/// `1.5s`), or else one character.
fn token_at(text: &str, pos: usize) -> Span {
    let rest = &text[pos..];
    let word_end = |from: usize| {
        text[from..]
            .char_indices()
            .find(|&(_, c)| !is_word_char(c))
            .map_or(text.len(), |(i, _)| from + i)
    };
    let mut start = pos;
    let mut end = word_end(pos);
    // A decimal point inside a number: `4.5`, `1.5s`.
    if at_offset_is_decimal(text, pos) {
        start = pos
            - text[..pos]
                .bytes()
                .rev()
                .take_while(u8::is_ascii_digit)
                .count();
        end = word_end(pos + 1);
    } else if end > pos
        && text[pos..end].bytes().all(|b| b.is_ascii_digit())
        && text[end..].starts_with('.')
        && text[end + 1..].starts_with(|c: char| c.is_ascii_digit())
    {
        end = word_end(end + 1);
    }
    // A word with a non-ASCII letter (`café`) is shown whole, even when
    // the parse stopped inside it.
    if rest.starts_with(|c: char| !c.is_ascii() && c.is_alphanumeric()) {
        start -= text[..pos]
            .chars()
            .rev()
            .take_while(|&c| is_word_char(c))
            .map(char::len_utf8)
            .sum::<usize>();
    }
    if end > pos {
        return Span::new(start, end);
    }
    Span::new(pos, rest.chars().next().map_or(pos, |c| pos + c.len_utf8()))
}

/// A token as written, for a label: control characters (the only ones a
/// reader could not see) are escaped.
fn shown(token: &str) -> String {
    if token.chars().any(char::is_control) {
        token.escape_debug().to_string()
    } else {
        token.to_string()
    }
}

/// The keywords named in the "expected …" descriptions of `rules`: the
/// candidates for a did-you-mean.
fn expected_keywords(rules: &[Rule]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for &rule in rules {
        for (i, part) in describe(rule).split('`').enumerate() {
            let is_keyword =
                !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
            if i % 2 == 1 && is_keyword && !out.contains(&part) {
                out.push(part);
            }
        }
    }
    out
}

/// A keyword close to a misspelt or wrongly cased word, among those
/// expected here. Uses the one did-you-mean of [`crate::resolve`].
fn closest_keyword(word: &str, rules: &[Rule]) -> Option<&'static str> {
    if word.len() < 2
        || !word
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_')
    {
        return None;
    }
    let known = |w: &str| {
        TOP_KEYWORDS.contains(&w) || SETTING_KEYWORDS.contains(&w) || RESERVED.contains(&w)
    };
    if known(word) {
        return None;
    }
    crate::resolve::did_you_mean(word, expected_keywords(rules).into_iter())
}

/// Join descriptions as "A, B or C".
fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn clamp_to_char(text: &str, pos: usize) -> usize {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    pos
}

/// An FR001 at one byte offset: a span on the whole offending token, or an
/// empty span at a line end or the end of the file.
fn at_offset(text: &str, pos: usize, message: impl Into<String>) -> Diagnostic {
    let pos = clamp_to_char(text, pos);
    let (span, label) = match text[pos..].chars().next() {
        None => (Span::new(pos, pos), "unexpected end of file".to_string()),
        Some('\n') | Some('\r') => (Span::new(pos, pos), "unexpected end of line".to_string()),
        Some(_) => {
            let span = token_at(text, pos);
            (
                span,
                format!("unexpected `{}`", shown(&text[span.start..span.end])),
            )
        }
    };
    Diagnostic::new("FR001", message, Label::new(span, label))
}

/// The braces of `text[..end]`, outside strings and comments: the `{`s
/// still open at `end` (innermost last), the first `{` whose `}` is
/// indented differently from its own line (the likely one a `}` is missing
/// for), and the last `}` that closed the outermost block.
struct Braces {
    open: Vec<usize>,
    misindented: Option<usize>,
    closed_outermost: Option<usize>,
}

fn scan_braces(text: &str, end: usize) -> Braces {
    let bytes = &text.as_bytes()[..end];
    let mut b = Braces {
        open: Vec::new(),
        misindented: None,
        closed_outermost: None,
    };
    // One pass: the current line's indentation, and whether only
    // indentation has been seen on it so far.
    let mut indent = 0;
    let mut at_indent = true;
    // The indentation of each open `{`'s line, alongside `b.open`.
    let mut open_indent: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => {
                indent = 0;
                at_indent = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' if at_indent => {
                indent += 1;
                i += 1;
                continue;
            }
            _ => {}
        }
        let first_on_line = at_indent;
        at_indent = false;
        match c {
            b'#' => {
                while i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && !matches!(bytes[i], b'"' | b'\n') {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if i < bytes.len() && bytes[i] == b'\n' {
                    continue;
                }
            }
            b'{' => {
                b.open.push(i);
                open_indent.push(indent);
            }
            b'}' => {
                if let (Some(open), Some(open_at)) = (b.open.pop(), open_indent.pop()) {
                    if first_on_line && b.misindented.is_none() && indent != open_at {
                        b.misindented = Some(open);
                    }
                    if b.open.is_empty() {
                        b.closed_outermost = Some(i);
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    b
}

/// The word written just before byte `at` (skipping spaces), e.g. the
/// `env` of `env {` or the name of `group api {`.
fn word_before(text: &str, at: usize) -> &str {
    let head = text[..at].trim_end_matches([' ', '\t']);
    let start = head
        .char_indices()
        .rev()
        .find(|&(_, c)| !is_word_char(c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    &head[start..]
}

/// What a `{` opens, in words: "`env {`", "group `api`", "`on SIGUSR1 {`".
fn block_name(text: &str, open: usize) -> String {
    let before = word_before(text, open);
    let start = text[..open].trim_end_matches([' ', '\t']).len() - before.len();
    let keyword = word_before(text, start);
    match keyword {
        "group" => format!("group `{before}`"),
        "topology" => format!("topology `{before}`"),
        "on" => format!("`on {before} {{`"),
        _ => format!("`{before} {{`"),
    }
}

/// The value written on the rest of the line at `pos` (up to a comment,
/// `;` or `}`), trimmed: what an unquoted string was meant to be.
fn rest_of_line(text: &str, pos: usize) -> Span {
    let line = &text[pos..];
    let end = line.find(['\n', '\r', '#', ';', '}']).unwrap_or(line.len());
    let value = line[..end].trim_end();
    Span::new(pos, pos + value.len())
}

fn is_duration(word: &str) -> bool {
    let mut rest = word;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

fn syntax_error(text: &str, err: &pest::error::Error<Rule>) -> Diagnostic {
    let pos = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((start, _)) => start,
    };
    let pos = clamp_to_char(text, pos);
    let rules: Vec<Rule> = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => positives.clone(),
        ErrorVariant::CustomError { .. } => Vec::new(),
    };
    // A statement terminator is worth mentioning only right after a
    // statement; at the start of a line or block, blank lines are merely
    // allowed, and listing them would be noise.
    let statement_begun = !matches!(
        text[..pos]
            .trim_end_matches([' ', '\t', '\r'])
            .chars()
            .last(),
        None | Some('\n' | '{' | ';')
    );
    // `sep` is silent (it would cost a pair per line), so it is never
    // reported; it is expected exactly where a block's `}` is.
    let mut expected: Vec<&str> = Vec::new();
    let wants_sep = rules.contains(&Rule::rbrace);
    for rule in &rules {
        let d = describe(*rule);
        if !expected.contains(&d) {
            expected.push(d);
        }
    }
    if wants_sep && (statement_begun || expected.is_empty()) && !rules.contains(&Rule::EOI) {
        expected.push(describe(Rule::sep));
    }
    let message = if expected.is_empty() {
        "unexpected input".to_string()
    } else {
        format!("expected {}", join_or(&expected))
    };
    if let Some(diag) = brace_error(text, pos, &rules) {
        return diag;
    }
    let mut diag = at_offset(text, pos, message);
    let wants_string = rules.contains(&Rule::string) || rules.contains(&Rule::quote);
    let next = text[pos..].chars().next();
    if wants_string && next.is_some_and(|c| !matches!(c, '"' | '\n' | '\r' | ':' | '=')) {
        // An unquoted value: underline all of it.
        let span = rest_of_line(text, pos);
        if !span.is_empty() {
            let value = &text[span.start..span.end];
            diag.primary = Label::new(span, format!("unexpected `{}`", shown(value)));
        }
    }
    if let Some(help) = syntax_help(text, pos, &rules) {
        diag = diag.with_help(help);
    }
    // A topology statement inside a block: show the block still open.
    let word = &text[diag.primary.span.start..diag.primary.span.end];
    if rules.contains(&Rule::setting) && TOP_KEYWORDS.contains(&word) {
        if let Some(&open) = scan_braces(text, pos).open.last() {
            let what = block_name(text, open);
            diag = diag.with_related(Label::new(
                Span::new(open, open + 1),
                format!("{what} is still open here"),
            ));
        }
    }
    diag
}

/// Unbalanced braces, told as such: a `{` that the file ends inside (the
/// label is on the `{`, or on `env` for an `env {`), an `env {` whose `}` is
/// missing before the next setting, and a `}` that closes nothing.
fn brace_error(text: &str, pos: usize, rules: &[Rule]) -> Option<Diagnostic> {
    let wants = |r: Rule| rules.contains(&r);
    let at_eof = pos >= text.len();
    let token = token_at(text, pos);
    let word = &text[token.start..token.end];
    if wants(Rule::EOI) && word == "}" {
        return Some(
            Diagnostic::new(
                "FR001",
                "extra `}`: every block is already closed",
                Label::new(token, "this `}` closes nothing"),
            )
            .with_help("remove it"),
        );
    }
    if !(wants(Rule::equals) || at_eof && wants(Rule::rbrace)) {
        return None;
    }
    let braces = scan_braces(text, pos);
    let &innermost = braces.open.last()?;
    let in_env = word_before(text, innermost) == "env";
    if in_env && !at_eof {
        // `env { A = "1"` and then a setting on the next line: the setting's
        // keyword was read as a variable name.
        let key = word_before(text, pos);
        let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
        let key_starts_line = text[line_start..pos].trim_start().starts_with(key);
        if !(key_starts_line && (SETTING_KEYWORDS.contains(&key) || TOP_KEYWORDS.contains(&key))) {
            return None;
        }
    }
    if in_env {
        let kw = word_before(text, innermost);
        let kw_start = text[..innermost].trim_end_matches([' ', '\t']).len() - kw.len();
        let found = if at_eof {
            Label::new(Span::new(pos, pos), "the file ends here")
        } else {
            let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
            let key_start = line_start
                + (text[line_start..pos].len() - text[line_start..pos].trim_start().len());
            let key = token_at(text, key_start);
            Label::new(key, "read as a variable name because `env {` is still open")
        };
        return Some(
            Diagnostic::new(
                "FR001",
                "`env {` is never closed",
                Label::new(
                    Span::new(kw_start, kw_start + kw.len()),
                    "this `env {` has no `}`",
                ),
            )
            .with_related(found)
            .with_help("close the `env` block with `}` after its last variable"),
        );
    }
    if !at_eof {
        return None;
    }
    let open = braces.misindented.unwrap_or(innermost);
    let what = block_name(text, open);
    Some(
        Diagnostic::new(
            "FR001",
            format!("the file ends before the `{{` of {what} is closed"),
            Label::new(Span::new(open, open + 1), "this `{` is never closed"),
        )
        .with_related(Label::new(Span::new(pos, pos), "the file ends here"))
        .with_help(if braces.misindented.is_some() {
            format!(
                "add the missing `}}` for {what}: judging by the indentation, a later `}}` closes it instead of its own block"
            )
        } else {
            format!("add the missing `}}` for {what}")
        }),
    )
}

/// A hint for the common mistakes, when one applies.
fn syntax_help(text: &str, pos: usize, rules: &[Rule]) -> Option<String> {
    let token = token_at(text, pos);
    let word = &text[token.start..token.end];
    let wants = |r: Rule| rules.contains(&r);
    let next = text[pos..].chars().next();
    let prev = word_before(text, pos);
    if text.trim().is_empty() {
        return Some("a file holds one topology: `topology NAME { … }`".into());
    }
    if wants(Rule::close_quote) {
        return Some(
            "a string ends on the line it starts on; write a line break inside a string as \\n"
                .into(),
        );
    }
    // Names are ASCII (grammar/README.md says why).
    let non_ascii_letter = next.is_some_and(|c| !c.is_ascii() && c.is_alphanumeric());
    if non_ascii_letter && (wants(Rule::group_name) || wants(Rule::name) || wants(Rule::lbrace)) {
        let name = word;
        return Some(format!(
            "names are ASCII: `{name}` has a letter outside a-z; use only a-z, 0-9, `_` and `-`"
        ));
    }
    // YAML and INI habits: `processes: 4`, `processes=4`, `group api:`.
    if matches!(next, Some(':' | '=')) && !wants(Rule::equals) {
        if wants(Rule::lbrace) {
            let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
            let head = text[line_start..pos].trim();
            return Some(format!(
                "a block's settings go in braces, not after `:`: write `{head} {{` and close it with `}}`"
            ));
        }
        let value = rest_of_line(text, pos + 1);
        let value = text[value.start..value.end].trim();
        let within = if wants(Rule::kw_within) {
            " within"
        } else {
            ""
        };
        return Some(format!(
            "write `{prev}{within} {value}`: a setting's value follows its keyword after a space, without `:` or `=`"
        ));
    }
    if wants(Rule::equals) && next == Some(':') {
        return Some("write an environment variable as `KEY = \"value\"`".into());
    }
    if wants(Rule::group_name) && RESERVED.contains(&word) {
        let after_group_keyword = text[..pos].trim_end().ends_with("group");
        return Some(if after_group_keyword {
            format!("`{word}` is a keyword and cannot be a group name")
        } else {
            format!(
                "`{word}` is a keyword and cannot be a group name: statements end at a \
                 newline or `;`, so start the next step on its own line"
            )
        });
    }
    if wants(Rule::EOI) && word == "topology" {
        return Some("a file holds exactly one topology".into());
    }
    if wants(Rule::EOI) {
        let braces = scan_braces(text, pos);
        if let Some(close) = braces.closed_outermost {
            let line = text[..close].matches('\n').count() + 1;
            return Some(format!(
                "the topology was closed by the `}}` on line {line}: is that `}}` one too many?"
            ));
        }
    }
    if wants(Rule::top_item) && SETTING_KEYWORDS.contains(&word) {
        return Some(format!(
            "`{word}` is a group setting: put it inside `group NAME {{ … }}`"
        ));
    }
    if wants(Rule::setting) && TOP_KEYWORDS.contains(&word) {
        return Some(format!(
            "`{word}` is a topology statement, not a group setting: is a `}}` missing before it?"
        ));
    }
    if word == "on-repeat" {
        return Some("write `escalate on repeat`, two words".into());
    }
    if matches!(word, "true" | "false" | "on" | "off")
        && (wants(Rule::kw_yes) || wants(Rule::kw_no))
    {
        return Some("write `yes` or `no`".into());
    }
    if wants(Rule::kw_within) && is_duration(word) {
        return Some(format!(
            "write `within {word}`: a time limit follows `within`"
        ));
    }
    if wants(Rule::kw_to) && word.bytes().next().is_some_and(|b| b.is_ascii_lowercase()) {
        return Some(format!(
            "write `to {word}`: the groups to forward to follow `to`"
        ));
    }
    if is_duration(word) && is_duration(prev) {
        return Some(format!("write a duration without spaces: `{prev}{word}`"));
    }
    if word == "every" && wants(Rule::rbrace) {
        return Some("in a ready check, write `every D` before `within D`".into());
    }
    if word == "rotate" && wants(Rule::rbrace) {
        return Some("in `log file`, write `rotate SIZE` before `keep N`".into());
    }
    if let Some((lo, hi)) = word.split_once('-') {
        if is_duration(lo) && is_duration(hi) {
            return Some(format!("write a range as `MIN..MAX`: `{lo}..{hi}`"));
        }
    }
    if wants(Rule::size) {
        let digits = word.bytes().take_while(u8::is_ascii_digit).count();
        let unit = word[digits..].to_ascii_uppercase();
        return Some(
            if digits > 0 && matches!(unit.as_str(), "B" | "KB" | "MB" | "GB") {
                format!("size units are upper case: `{}{unit}`", &word[..digits])
            } else if digits > 0 && matches!(unit.as_str(), "K" | "M" | "G" | "KIB" | "MIB" | "GIB")
            {
                format!(
                    "write `{}{}B`: the units are B, KB, MB and GB (1024-based)",
                    &word[..digits],
                    &unit[..1]
                )
            } else {
                "a size is a whole number and a unit, B, KB, MB or GB, without a space: e.g. `10MB`"
                    .into()
            },
        );
    }
    if let Some(kw) = closest_keyword(word, rules) {
        return Some(if kw.eq_ignore_ascii_case(word) {
            format!("keywords are lower case: `{kw}`")
        } else {
            format!("did you mean `{kw}`?")
        });
    }
    if wants(Rule::after_state) && word.bytes().next().is_some_and(|b| b.is_ascii_lowercase()) {
        return Some("`after` takes one group: write one `after` line per group".into());
    }
    if wants(Rule::string) && next.is_some_and(|c| c != '"') {
        let value = rest_of_line(text, pos);
        let mut value = &text[value.start..value.end];
        if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
            value = &value[1..value.len() - 1];
        }
        if !value.is_empty() {
            return Some(format!(
                "strings are written in double quotes: `{prev} \"{}\"`",
                value.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
    }
    if at_offset_is_decimal(text, pos) {
        return Some(format!(
            "numbers are whole: `{word}` is not one; write `{}`",
            word.split('.').next().unwrap_or(word)
        ));
    }
    let digits = text[pos..].bytes().take_while(u8::is_ascii_digit).count();
    if (wants(Rule::duration) || wants(Rule::timeout)) && digits > 0 {
        if text[pos + digits..].starts_with('.') {
            return Some(
                "durations are whole numbers of a unit: write `1500ms` or `1s500ms`, not `1.5s`"
                    .into(),
            );
        }
        return Some("a duration needs a unit: ms, s, m or h, e.g. `10s` or `1m30s`".into());
    }
    if wants(Rule::signal) && word.to_ascii_uppercase().starts_with("SIG") {
        return Some(format!(
            "signal names are upper case: `{}`",
            word.to_ascii_uppercase()
        ));
    }
    if (wants(Rule::group_name) || wants(Rule::name))
        && word.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
    {
        return Some(
            "names start with a lower-case letter and contain only a-z, 0-9, `_` and `-`".into(),
        );
    }
    None
}

/// `pos` is the `.` of a decimal number such as `4.5`.
fn at_offset_is_decimal(text: &str, pos: usize) -> bool {
    text[pos..].starts_with('.')
        && text[..pos].ends_with(|c: char| c.is_ascii_digit())
        && text[pos + 1..].starts_with(|c: char| c.is_ascii_digit())
}

// ---------------------------------------------------------------------------
// Conversion: one small function per rule
// ---------------------------------------------------------------------------

fn span_of(pair: &Pair<Rule>) -> Span {
    let s = pair.as_span();
    Span::new(s.start(), s.end())
}

fn spanned<T>(pair: &Pair<Rule>, node: T) -> Spanned<T> {
    Spanned::new(node, span_of(pair))
}

fn text_of(pair: &Pair<Rule>) -> Spanned<String> {
    spanned(pair, pair.as_str().to_string())
}

/// An FR001 for a token that matched the grammar but whose value is invalid.
fn invalid_token(pair: &Pair<Rule>, message: String, label: &str, help: &str) -> Box<Diagnostic> {
    Box::new(Diagnostic::new("FR001", message, Label::new(span_of(pair), label)).with_help(help))
}

/// The first child with one of `rules`; the grammar guarantees it exists.
fn child<'i>(pair: &Pair<'i, Rule>, rule: Rule) -> Option<Pair<'i, Rule>> {
    pair.clone().into_inner().find(|p| p.as_rule() == rule)
}

fn has_child(pair: &Pair<Rule>, rule: Rule) -> bool {
    child(pair, rule).is_some()
}

/// A grammar invariant was broken: report it as a syntax error rather than panic.
fn internal(pair: &Pair<Rule>) -> Box<Diagnostic> {
    Box::new(Diagnostic::new(
        "FR001",
        "could not read this statement",
        Label::new(span_of(pair), "here"),
    ))
}

fn need<'i>(pair: &Pair<'i, Rule>, rule: Rule) -> Result<Pair<'i, Rule>> {
    child(pair, rule).ok_or_else(|| internal(pair))
}

/// The first inner pair of a rule the grammar guarantees has one.
fn first_child<'i>(pair: &Pair<'i, Rule>) -> Result<Pair<'i, Rule>> {
    pair.clone()
        .into_inner()
        .next()
        .ok_or_else(|| internal(pair))
}

fn convert_file(pair: Pair<Rule>) -> Result<ast::File> {
    let topology = need(&pair, Rule::topology)?;
    Ok(ast::File {
        topology: convert_topology(topology)?,
    })
}

fn convert_topology(pair: Pair<Rule>) -> Result<ast::Topology> {
    let name = text_of(&need(&pair, Rule::name)?);
    let items = pair
        .clone()
        .into_inner()
        .filter(|p| p.as_rule() == Rule::top_item)
        .map(convert_top_item)
        .collect::<Result<Vec<_>>>()?;
    Ok(ast::Topology {
        name,
        items,
        span: span_of(&pair),
    })
}

fn convert_top_item(pair: Pair<Rule>) -> Result<TopItem> {
    let span = span_of(&pair);
    let inner = first_child(&pair)?;
    let kind = match inner.as_rule() {
        Rule::shutdown_stmt => {
            TopItemKind::Shutdown(convert_timeout(need(&inner, Rule::timeout)?)?)
        }
        Rule::finish_stmt => convert_finish(inner)?,
        Rule::handler => TopItemKind::Handler(convert_handler(inner)?),
        Rule::escalate_stmt => TopItemKind::Escalate(convert_escalate(inner)?),
        Rule::allow_stmt => TopItemKind::Allow(convert_allow(inner)?),
        Rule::group_def => TopItemKind::Group(convert_group(inner)?),
        Rule::env_file_s => TopItemKind::EnvFile(convert_string(need(&inner, Rule::string)?)?),
        Rule::log_s => TopItemKind::Log(convert_log(inner)?),
        _ => return Err(internal(&inner)),
    };
    Ok(TopItem { kind, span })
}

fn convert_finish(pair: Pair<Rule>) -> Result<TopItemKind> {
    let group = text_of(&need(&pair, Rule::group_name)?);
    let when_pair = need(&pair, Rule::finish_when)?;
    let when = if has_child(&when_pair, Rule::kw_exits) {
        FinishWhen::Exits
    } else {
        FinishWhen::Succeeds
    };
    Ok(TopItemKind::Finish {
        group,
        when: spanned(&when_pair, when),
    })
}

fn convert_escalate(pair: Pair<Rule>) -> Result<Spanned<Escalate>> {
    if let Some(on) = child(&pair, Rule::on_repeat) {
        Ok(spanned(&on, Escalate::OnRepeat))
    } else {
        let never = need(&pair, Rule::kw_never)?;
        Ok(spanned(&never, Escalate::Never))
    }
}

fn convert_allow(pair: Pair<Rule>) -> Result<ast::Allow> {
    let rule = text_of(&need(&pair, Rule::rule_ref)?);
    let reason = child(&pair, Rule::string).map(convert_string).transpose()?;
    Ok(ast::Allow {
        rule,
        reason,
        span: span_of(&pair),
    })
}

fn convert_handler(pair: Pair<Rule>) -> Result<Handler> {
    let signal = text_of(&need(&pair, Rule::signal)?);
    let (steps, block) = match child(&pair, Rule::step_block) {
        Some(block) => (
            block
                .into_inner()
                .filter(|p| p.as_rule() == Rule::step)
                .map(convert_step)
                .collect::<Result<Vec<_>>>()?,
            true,
        ),
        None => (vec![convert_step(need(&pair, Rule::step)?)?], false),
    };
    Ok(Handler {
        signal,
        steps,
        block,
    })
}

fn group_names(pair: &Pair<Rule>) -> Vec<Spanned<String>> {
    pair.clone()
        .into_inner()
        .filter(|p| p.as_rule() == Rule::group_name)
        .map(|p| text_of(&p))
        .collect()
}

fn convert_step(pair: Pair<Rule>) -> Result<Spanned<Step>> {
    let inner = first_child(&pair)?;
    let step = match inner.as_rule() {
        Rule::drain_step => Step::Drain {
            groups: group_names(&inner),
        },
        Rule::restart_step => Step::Restart {
            groups: group_names(&inner),
            rolling: has_child(&inner, Rule::kw_rolling),
        },
        Rule::reload_step => Step::Reload,
        Rule::forward_step => Step::Forward {
            signal: child(&inner, Rule::signal).map(|p| text_of(&p)),
            groups: group_names(&inner),
        },
        Rule::wait_step => Step::Wait {
            groups: group_names(&inner),
            within: child(&inner, Rule::timeout)
                .map(convert_timeout)
                .transpose()?,
        },
        Rule::kill_step => Step::Kill,
        Rule::ignore_step => Step::Ignore,
        _ => return Err(internal(&inner)),
    };
    Ok(spanned(&pair, step))
}

fn convert_group(pair: Pair<Rule>) -> Result<Group> {
    let name = text_of(&need(&pair, Rule::group_name)?);
    let settings = pair
        .clone()
        .into_inner()
        .filter(|p| p.as_rule() == Rule::setting)
        .map(convert_setting)
        .collect::<Result<Vec<_>>>()?;
    Ok(Group {
        name,
        settings,
        span: span_of(&pair),
    })
}

fn convert_setting(pair: Pair<Rule>) -> Result<Setting> {
    let span = span_of(&pair);
    let inner = first_child(&pair)?;
    let kind = match inner.as_rule() {
        Rule::run_s => SettingKind::Run(convert_string(need(&inner, Rule::string)?)?),
        Rule::sh_s => SettingKind::Sh(convert_string(need(&inner, Rule::string)?)?),
        Rule::processes_s => SettingKind::Processes(convert_number(need(&inner, Rule::number)?)?),
        Rule::coroutines_s => SettingKind::Coroutines(convert_number(need(&inner, Rule::number)?)?),
        Rule::port_s => SettingKind::Port(convert_number(need(&inner, Rule::number)?)?),
        Rule::once_s => SettingKind::Once,
        Rule::after_s => convert_after(inner)?,
        Rule::ready_s => SettingKind::Ready(convert_ready(inner)?),
        Rule::restart_s => SettingKind::Restart(convert_restart(inner)?),
        Rule::stop_s => SettingKind::Stop(convert_stop(inner)?),
        Rule::env_s => SettingKind::Env(
            inner
                .into_inner()
                .filter(|p| p.as_rule() == Rule::env_var)
                .map(convert_env_var)
                .collect::<Result<Vec<_>>>()?,
        ),
        Rule::cwd_s => SettingKind::Cwd(convert_string(need(&inner, Rule::string)?)?),
        Rule::env_file_s => SettingKind::EnvFile(convert_string(need(&inner, Rule::string)?)?),
        Rule::process_group_s => {
            let (p, mode) = match child(&inner, Rule::kw_own) {
                Some(p) => (p, ProcessGroupMode::Own),
                None => (need(&inner, Rule::kw_shared)?, ProcessGroupMode::Shared),
            };
            SettingKind::ProcessGroup(spanned(&p, mode))
        }
        Rule::die_with_parent_s => {
            let (p, yes) = match child(&inner, Rule::kw_yes) {
                Some(p) => (p, true),
                None => (need(&inner, Rule::kw_no)?, false),
            };
            SettingKind::DieWithParent(spanned(&p, yes))
        }
        Rule::allow_stmt => SettingKind::Allow(convert_allow(inner)?),
        Rule::log_s => SettingKind::Log(convert_log(inner)?),
        _ => return Err(internal(&inner)),
    };
    Ok(Setting { kind, span })
}

/// `log file …`, or `None` for `log terminal`.
fn convert_log(pair: Pair<Rule>) -> Result<Option<ast::LogFile>> {
    let Some(pair) = child(&pair, Rule::log_file) else {
        return Ok(None);
    };
    let path = convert_string(need(&pair, Rule::string)?)?;
    let rotate = match child(&pair, Rule::log_rotate) {
        Some(r) => Some(convert_size(need(&r, Rule::size)?)?),
        None => None,
    };
    let keep = match child(&pair, Rule::log_keep) {
        Some(k) => Some(convert_number(need(&k, Rule::number)?)?),
        None => None,
    };
    Ok(Some(ast::LogFile { path, rotate, keep }))
}

fn convert_after(pair: Pair<Rule>) -> Result<SettingKind> {
    let group = text_of(&need(&pair, Rule::group_name)?);
    let state = match child(&pair, Rule::after_state) {
        None => None,
        Some(s) => {
            let kw = s.clone().into_inner().next().ok_or_else(|| internal(&s))?;
            let state = match kw.as_rule() {
                Rule::kw_started => AfterState::Started,
                Rule::kw_ready => AfterState::Ready,
                Rule::kw_succeeded => AfterState::Succeeded,
                Rule::kw_exited => AfterState::Exited,
                _ => return Err(internal(&kw)),
            };
            Some(spanned(&s, state))
        }
    };
    Ok(SettingKind::After { group, state })
}

fn convert_ready(pair: Pair<Rule>) -> Result<ReadyCheck> {
    let probe_pair = need(&pair, Rule::probe)?;
    let kind = first_child(&probe_pair)?;
    let target = || -> Result<String> { Ok(convert_string(need(&kind, Rule::string)?)?.node) };
    let probe = match kind.as_rule() {
        Rule::probe_tcp => Probe::Tcp(target()?),
        Rule::probe_http => Probe::Http(target()?),
        Rule::probe_exec => Probe::Exec(target()?),
        Rule::probe_log => Probe::Log(target()?),
        Rule::probe_file => Probe::File(target()?),
        Rule::probe_notify => Probe::Notify,
        _ => return Err(internal(&kind)),
    };
    let every = match child(&pair, Rule::ready_every) {
        Some(e) => Some(convert_duration(need(&e, Rule::duration)?)?),
        None => None,
    };
    let within = match child(&pair, Rule::ready_within) {
        Some(w) => Some(convert_timeout(need(&w, Rule::timeout)?)?),
        None => None,
    };
    Ok(ReadyCheck {
        probe: spanned(&probe_pair, probe),
        every,
        within,
    })
}

fn convert_restart(pair: Pair<Rule>) -> Result<RestartPolicy> {
    let mode_pair = need(&pair, Rule::restart_mode)?;
    let mode = if has_child(&mode_pair, Rule::kw_never) {
        RestartMode::Never
    } else if has_child(&mode_pair, Rule::kw_on_failure) {
        RestartMode::OnFailure
    } else {
        RestartMode::Always
    };
    let backoff = match child(&pair, Rule::backoff) {
        Some(b) => {
            let mut ds = b
                .clone()
                .into_inner()
                .filter(|p| p.as_rule() == Rule::duration);
            let (Some(lo), Some(hi)) = (ds.next(), ds.next()) else {
                return Err(internal(&b));
            };
            let lo = convert_duration(lo)?.node;
            let hi = convert_duration(hi)?.node;
            Some(spanned(&b, (lo, hi)))
        }
        None => None,
    };
    let limit = match child(&pair, Rule::limit) {
        Some(l) => {
            let n = convert_number(need(&l, Rule::number)?)?.node;
            let per = convert_duration(need(&l, Rule::duration)?)?.node;
            Some(spanned(&l, (n, per)))
        }
        None => None,
    };
    Ok(RestartPolicy {
        mode: spanned(&mode_pair, mode),
        backoff,
        limit,
    })
}

fn convert_stop(pair: Pair<Rule>) -> Result<StopLadder> {
    let pairs: Vec<Pair<Rule>> = pair
        .clone()
        .into_inner()
        .filter(|p| p.as_rule() == Rule::ladder_step)
        .collect();
    let last = pairs.len().saturating_sub(1);
    let steps = pairs
        .into_iter()
        .enumerate()
        .map(|(i, p)| convert_ladder_step(p, i == last))
        .collect::<Result<Vec<_>>>()?;
    let target = match child(&pair, Rule::stop_target) {
        Some(t) => {
            let target = if has_child(&t, Rule::kw_leader) {
                StopTarget::Leader
            } else {
                StopTarget::Group
            };
            Some(spanned(&t, target))
        }
        None => None,
    };
    Ok(StopLadder { steps, target })
}

/// A ladder step; only a final `SIGKILL` may leave out `drain T` (nothing
/// can be drained after it).
fn convert_ladder_step(pair: Pair<Rule>, last: bool) -> Result<Spanned<LadderStep>> {
    let signal = text_of(&need(&pair, Rule::signal)?);
    let drain = match child(&pair, Rule::timeout) {
        Some(t) => Some(convert_timeout(t)?),
        None if last && signal.node == "SIGKILL" => None,
        None => {
            let end = signal.span.end;
            return Err(Box::new(
                Diagnostic::new(
                    "FR001",
                    format!("expected `drain` and a time after {}", signal.node),
                    Label::new(signal.span, "no drain time"),
                )
                .with_help(format!(
                    "write `{} drain 10s` (how long to wait before the next step); only a final SIGKILL step may leave it out",
                    signal.node
                ))
                .with_related(Label::new(Span::new(end, end), "`drain T` goes here")),
            ));
        }
    };
    Ok(spanned(&pair, LadderStep { signal, drain }))
}

fn convert_env_var(pair: Pair<Rule>) -> Result<EnvVar> {
    Ok(EnvVar {
        key: text_of(&need(&pair, Rule::env_key)?),
        value: convert_string(need(&pair, Rule::string)?)?,
    })
}

// ---- tokens ------------------------------------------------------------------

fn convert_number(pair: Pair<Rule>) -> Result<Spanned<u64>> {
    match pair.as_str().parse::<u64>() {
        Ok(n) => Ok(spanned(&pair, n)),
        Err(_) => Err(invalid_token(
            &pair,
            format!("number `{}` is too large", pair.as_str()),
            "too large",
            &format!("the largest number is {}", u64::MAX),
        )),
    }
}

/// Milliseconds of a duration literal like `1m30s`, `None` on overflow or
/// a malformed literal (also used for durations on the command line).
pub(crate) fn duration_millis(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let mut total: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let n: u64 = text[start..i].parse().ok()?;
        let unit = if text[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let u = match bytes.get(i)? {
                b's' => 1_000,
                b'm' => 60_000,
                b'h' => 3_600_000,
                _ => return None,
            };
            i += 1;
            u
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    Some(total)
}

/// Bytes of a size literal like `10MB` (units are 1024-based: `KB` is
/// 1024 bytes, `MB` 1024², `GB` 1024³), `None` on overflow or a malformed
/// literal.
pub(crate) fn size_bytes(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = text[..digits].parse().ok()?;
    let unit: u64 = match &text[digits..] {
        "B" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit)
}

fn convert_size(pair: Pair<Rule>) -> Result<Spanned<u64>> {
    match size_bytes(pair.as_str()) {
        Some(n) => Ok(spanned(&pair, n)),
        None => Err(invalid_token(
            &pair,
            format!("size `{}` is too large", pair.as_str()),
            "too large",
            "write a smaller size, such as `10MB` or `1GB`",
        )),
    }
}

fn convert_duration(pair: Pair<Rule>) -> Result<Spanned<Duration>> {
    match duration_millis(pair.as_str()) {
        Some(ms) => Ok(spanned(&pair, Duration::from_millis(ms))),
        None => Err(invalid_token(
            &pair,
            format!("duration `{}` is too large", pair.as_str()),
            "too large",
            "write a smaller duration, or `forever` where an unbounded wait is meant",
        )),
    }
}

fn convert_timeout(pair: Pair<Rule>) -> Result<Spanned<Timeout>> {
    if let Some(d) = child(&pair, Rule::duration) {
        let d = convert_duration(d)?;
        Ok(Spanned::new(Timeout::Finite(d.node), d.span))
    } else {
        Ok(spanned(&pair, Timeout::Forever))
    }
}

/// The unescaped value of a string literal; the span covers the quotes.
fn convert_string(pair: Pair<Rule>) -> Result<Spanned<String>> {
    let inner = need(&pair, Rule::string_inner)?;
    let raw = inner.as_str();
    let base = inner.as_span().start();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((j, e)) = chars.next() else {
            return Err(internal(&pair));
        };
        match e {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            't' => out.push('\t'),
            other => {
                let span = Span::new(base + i, base + j + other.len_utf8());
                return Err(Box::new(
                    Diagnostic::new(
                        "FR001",
                        format!("unknown escape `\\{}` in a string", other.escape_debug()),
                        Label::new(span, "unknown escape"),
                    )
                    .with_help("strings accept the escapes \\\", \\\\, \\n and \\t"),
                ));
            }
        }
    }
    Ok(spanned(&pair, out))
}
