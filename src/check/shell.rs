//! A small, forgiving POSIX-shell lexer for the rules that look inside
//! commands (FR303, FR401, FR402).
//!
//! It works on the *raw source text* of a string literal: the `.pf` escapes
//! (`\"`, `\\`, `\n`, `\t`) are undone here while every character keeps the
//! byte span it was written at, so a finding can point at the exact
//! characters in the file. The lexer knows quoting (`'…'`, `"…"`, `\x`),
//! comments, operators (`;` `&&` `||` `|` `&` `(` `)` newline),
//! redirections (`>` `>>` `<` `2>` `2>&1` `&>` …) and expansions (`$VAR`,
//! `${…}`, `$(…)`, backticks). It is not a shell parser: it never fails and
//! never panics, unterminated quotes simply run to the end.

use crate::source::{SourceFile, Span};

/// The unescaped text of a literal, one entry per character with the span
/// of the raw characters that produced it.
#[derive(Debug, Clone)]
pub struct Text {
    chars: Vec<(char, Span)>,
}

impl Text {
    /// Unescape the literal whose span (quotes included) is `lit`. If the
    /// source text at `lit` is not a quoted literal, fall back to `value`
    /// with every character spanning the whole literal.
    pub fn from_literal(source: &SourceFile, lit: Span, value: &str) -> Text {
        let raw = source.slice(lit);
        if raw.len() < 2 || !raw.starts_with('"') || !raw.ends_with('"') {
            return Text {
                chars: value.chars().map(|c| (c, lit)).collect(),
            };
        }
        let base = lit.start + 1;
        let body = &raw[1..raw.len() - 1];
        let mut chars = Vec::with_capacity(body.len());
        let mut it = body.char_indices().peekable();
        while let Some((i, c)) = it.next() {
            if c == '\\' {
                if let Some(&(j, n)) = it.peek() {
                    let out = match n {
                        'n' => Some('\n'),
                        't' => Some('\t'),
                        '"' => Some('"'),
                        '\\' => Some('\\'),
                        _ => None,
                    };
                    if let Some(o) = out {
                        it.next();
                        chars.push((o, Span::new(base + i, base + j + n.len_utf8())));
                        continue;
                    }
                }
            }
            chars.push((c, Span::new(base + i, base + i + c.len_utf8())));
        }
        Text { chars }
    }

    /// Text with no source positions (every character at `span`).
    pub fn plain(value: &str, span: Span) -> Text {
        Text {
            chars: value.chars().map(|c| (c, span)).collect(),
        }
    }

    fn span(&self, from: usize, to: usize) -> Span {
        // `from..to` are char indices, `to` exclusive; `from < to`.
        match (self.chars.get(from), self.chars.get(to.saturating_sub(1))) {
            (Some(a), Some(b)) => a.1.join(b.1),
            (Some(a), None) => a.1,
            _ => self.chars.last().map_or(Span::default(), |c| c.1),
        }
    }

    fn at(&self, i: usize) -> Option<char> {
        self.chars.get(i).map(|c| c.0)
    }
}

/// A control operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `;`
    Semi,
    /// a newline
    Newline,
    /// `&&`
    And,
    /// `||`
    Or,
    /// `|`
    Pipe,
    /// `&` (run in the background)
    Amp,
    /// `(`
    LParen,
    /// `)`
    RParen,
}

impl Op {
    pub fn describe(self) -> &'static str {
        match self {
            Op::Semi => "a `;` command separator",
            Op::Newline => "a newline command separator",
            Op::And => "an `&&` list",
            Op::Or => "an `||` list",
            Op::Pipe => "a `|` pipeline",
            Op::Amp => "a background `&`",
            Op::LParen | Op::RParen => "a `( … )` subshell",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A word after quote removal; `assign` is true for `NAME=value`.
    Word {
        text: String,
        span: Span,
        quoted: bool,
        assign: bool,
    },
    Op {
        op: Op,
        span: Span,
    },
    /// A redirection operator, with its io number: `>`, `2>`, `2>&1`, `&>`.
    Redirect {
        text: String,
        span: Span,
    },
}

impl Tok {
    pub fn span(&self) -> Span {
        match self {
            Tok::Word { span, .. } | Tok::Op { span, .. } | Tok::Redirect { span, .. } => *span,
        }
    }

    pub fn word(&self) -> Option<&str> {
        match self {
            Tok::Word { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// A parameter or command expansion written outside single quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    /// What was written, e.g. `$HOME`, `${X}`, `$(`, a backtick.
    pub text: String,
    pub span: Span,
}

#[derive(Debug, Clone, Default)]
pub struct Lexed {
    pub toks: Vec<Tok>,
    pub expansions: Vec<Expansion>,
}

fn is_meta(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>'
    )
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Lex a shell text.
pub fn lex(t: &Text) -> Lexed {
    let mut out = Lexed::default();
    let n = t.chars.len();
    let mut i = 0;
    while i < n {
        let c = t.chars[i].0;
        match c {
            ' ' | '\t' | '\r' => i += 1,
            '#' => {
                while i < n && t.chars[i].0 != '\n' {
                    i += 1;
                }
            }
            '\n' => {
                out.toks.push(op(t, Op::Newline, i, i + 1));
                i += 1;
            }
            ';' => {
                let end = if t.at(i + 1) == Some(';') {
                    i + 2
                } else {
                    i + 1
                };
                out.toks.push(op(t, Op::Semi, i, end));
                i = end;
            }
            '&' => match t.at(i + 1) {
                Some('&') => {
                    out.toks.push(op(t, Op::And, i, i + 2));
                    i += 2;
                }
                Some('>') => {
                    let end = if t.at(i + 2) == Some('>') {
                        i + 3
                    } else {
                        i + 2
                    };
                    out.toks.push(redirect(t, i, end));
                    i = end;
                }
                _ => {
                    out.toks.push(op(t, Op::Amp, i, i + 1));
                    i += 1;
                }
            },
            '|' => {
                if t.at(i + 1) == Some('|') {
                    out.toks.push(op(t, Op::Or, i, i + 2));
                    i += 2;
                } else {
                    out.toks.push(op(t, Op::Pipe, i, i + 1));
                    i += 1;
                }
            }
            '(' => {
                out.toks.push(op(t, Op::LParen, i, i + 1));
                i += 1;
            }
            ')' => {
                out.toks.push(op(t, Op::RParen, i, i + 1));
                i += 1;
            }
            '<' | '>' => {
                let end = redirect_end(t, i);
                out.toks.push(redirect(t, i, end));
                i = end;
            }
            d if d.is_ascii_digit() && io_number_end(t, i).is_some() => {
                let start = i;
                let op_at = io_number_end(t, i).unwrap_or(i);
                let end = redirect_end(t, op_at);
                out.toks.push(redirect(t, start, end));
                i = end;
            }
            _ => i = word(t, i, &mut out),
        }
    }
    out
}

fn op(t: &Text, op: Op, from: usize, to: usize) -> Tok {
    Tok::Op {
        op,
        span: t.span(from, to),
    }
}

fn redirect(t: &Text, from: usize, to: usize) -> Tok {
    Tok::Redirect {
        text: t.chars[from..to.min(t.chars.len())]
            .iter()
            .map(|c| c.0)
            .collect(),
        span: t.span(from, to),
    }
}

/// `2>`: digits directly followed by `<` or `>`; returns the operator index.
fn io_number_end(t: &Text, mut i: usize) -> Option<usize> {
    while t.at(i).is_some_and(|c| c.is_ascii_digit()) {
        i += 1;
    }
    matches!(t.at(i), Some('<' | '>')).then_some(i)
}

/// End (exclusive) of the redirection operator starting at `i` (`<` or `>`),
/// including a `&N`/`&-` duplication target.
fn redirect_end(t: &Text, i: usize) -> usize {
    let first = t.at(i);
    let mut end = i + 1;
    match (first, t.at(end)) {
        (Some('>'), Some('>' | '|')) | (Some('<'), Some('<' | '>')) => end += 1,
        _ => {}
    }
    if t.at(end) == Some('&') {
        end += 1;
        while t.at(end).is_some_and(|c| c.is_ascii_digit() || c == '-') {
            end += 1;
        }
    }
    end
}

/// Lex one word starting at `i`; returns the index after it.
fn word(t: &Text, start: usize, out: &mut Lexed) -> usize {
    let n = t.chars.len();
    let mut i = start;
    let mut text = String::new();
    let mut quoted = false;
    // `NAME=` at the very start of the word, unquoted.
    let mut assign = false;
    let mut name_so_far = true;
    while i < n {
        let c = t.chars[i].0;
        if is_meta(c) {
            break;
        }
        match c {
            '\'' => {
                quoted = true;
                name_so_far = false;
                i += 1;
                while i < n && t.chars[i].0 != '\'' {
                    text.push(t.chars[i].0);
                    i += 1;
                }
                i += 1; // closing quote (or past the end)
            }
            '"' => {
                quoted = true;
                name_so_far = false;
                i += 1;
                while i < n && t.chars[i].0 != '"' {
                    let c = t.chars[i].0;
                    if c == '\\' && matches!(t.at(i + 1), Some('$' | '`' | '"' | '\\' | '\n')) {
                        text.push(t.chars[i + 1].0);
                        i += 2;
                    } else if c == '$' || c == '`' {
                        i = expansion(t, i, &mut text, out);
                    } else {
                        text.push(c);
                        i += 1;
                    }
                }
                i += 1;
            }
            '\\' => {
                quoted = true;
                name_so_far = false;
                if let Some(e) = t.at(i + 1) {
                    if e != '\n' {
                        text.push(e);
                    }
                }
                i += 2;
            }
            '$' | '`' => {
                name_so_far = false;
                i = expansion(t, i, &mut text, out);
            }
            '=' if name_so_far && !text.is_empty() => {
                assign = true;
                name_so_far = false;
                text.push(c);
                i += 1;
            }
            _ => {
                if name_so_far && !(is_name(c) && (is_name_start(c) || !text.is_empty())) {
                    name_so_far = false;
                }
                text.push(c);
                i += 1;
            }
        }
    }
    let end = i.min(n);
    out.toks.push(Tok::Word {
        text,
        span: t.span(start, end.max(start + 1)),
        quoted,
        assign,
    });
    end.max(start + 1)
}

/// An expansion at `i` (`$…` or a backtick): record it, copy its text into
/// the word, return the index after it.
fn expansion(t: &Text, i: usize, text: &mut String, out: &mut Lexed) -> usize {
    let n = t.chars.len();
    let c = t.chars[i].0;
    let end = if c == '`' {
        let mut j = i + 1;
        while j < n && t.chars[j].0 != '`' {
            j += if t.chars[j].0 == '\\' { 2 } else { 1 };
        }
        (j + 1).min(n)
    } else {
        match t.at(i + 1) {
            Some('{') => matching(t, i + 1, '{', '}'),
            Some('(') => matching(t, i + 1, '(', ')'),
            Some(c) if is_name_start(c) => {
                let mut j = i + 1;
                while t.at(j).is_some_and(is_name) {
                    j += 1;
                }
                j
            }
            Some(c) if c.is_ascii_digit() || "@*#?$!-".contains(c) => i + 2,
            // A lone `$` is a literal dollar sign.
            _ => {
                text.push('$');
                return i + 1;
            }
        }
    };
    let written: String = t.chars[i..end].iter().map(|c| c.0).collect();
    text.push_str(&written);
    // Report the opening only for `$(` and backticks: their body may be long.
    let shown = if c == '`' {
        Expansion {
            text: "`".into(),
            span: t.span(i, i + 1),
        }
    } else if t.at(i + 1) == Some('(') {
        Expansion {
            text: "$(".into(),
            span: t.span(i, i + 2),
        }
    } else {
        Expansion {
            text: written,
            span: t.span(i, end),
        }
    };
    out.expansions.push(shown);
    end
}

/// Index after the bracket matching the one at `open_at`.
fn matching(t: &Text, open_at: usize, open: char, close: char) -> usize {
    let n = t.chars.len();
    let mut depth = 0usize;
    let mut j = open_at;
    while j < n {
        let c = t.chars[j].0;
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return j + 1;
            }
        }
        j += 1;
    }
    n
}

/// One simple command: its words (assignments included) and the tokens
/// that separated it from the next.
#[derive(Debug, Clone, Default)]
pub struct Simple<'a> {
    pub words: Vec<&'a Tok>,
    /// The operator that ends it (`None` at the end of the text).
    pub end: Option<(Op, Span)>,
}

impl Simple<'_> {
    /// The words after leading `NAME=value` assignments.
    pub fn command_words(&self) -> impl Iterator<Item = &Tok> {
        self.words
            .iter()
            .copied()
            .skip_while(|w| matches!(w, Tok::Word { assign: true, .. }))
    }

    pub fn span(&self) -> Option<Span> {
        let first = self.words.first()?.span();
        let last = self.words.last()?.span();
        Some(first.join(last))
    }
}

/// Split tokens into simple commands at every control operator.
/// Redirections and their targets are dropped from the words.
pub fn simple_commands(toks: &[Tok]) -> Vec<Simple<'_>> {
    let mut out = Vec::new();
    let mut cur = Simple::default();
    let mut skip_target = false;
    for tok in toks {
        match tok {
            Tok::Redirect { text, .. } => {
                // `2>&1` carries its target; `> file` takes the next word.
                skip_target = !text.contains('&') || text.ends_with('>');
            }
            Tok::Word { .. } => {
                if skip_target {
                    skip_target = false;
                } else {
                    cur.words.push(tok);
                }
            }
            Tok::Op { op, span } => {
                skip_target = false;
                cur.end = Some((*op, *span));
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out.push(cur);
    out.retain(|s| !s.words.is_empty() || s.end.is_some_and(|(op, _)| op != Op::Newline));
    out
}

/// The last path component of a command word.
pub fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lexed(s: &str) -> Lexed {
        lex(&Text::plain(s, Span::new(0, 1)))
    }

    fn words(s: &str) -> Vec<String> {
        lexed(s)
            .toks
            .iter()
            .filter_map(|t| t.word().map(str::to_string))
            .collect()
    }

    #[test]
    fn quoting_removes_quotes_and_hides_operators() {
        assert_eq!(
            words("grep 'a|b' \"c;d\" e\\&f"),
            ["grep", "a|b", "c;d", "e&f"]
        );
        assert!(lexed("grep 'a|b'")
            .toks
            .iter()
            .all(|t| !matches!(t, Tok::Op { .. })));
    }

    #[test]
    fn operators_and_redirections() {
        let l = lexed("a && b || c | d; e & f 2>&1 >log");
        let ops: Vec<Op> = l
            .toks
            .iter()
            .filter_map(|t| match t {
                Tok::Op { op, .. } => Some(*op),
                _ => None,
            })
            .collect();
        assert_eq!(ops, [Op::And, Op::Or, Op::Pipe, Op::Semi, Op::Amp]);
        let redirs: Vec<&str> = l
            .toks
            .iter()
            .filter_map(|t| match t {
                Tok::Redirect { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(redirs, ["2>&1", ">"]);
    }

    #[test]
    fn expansions_outside_single_quotes_only() {
        let l = lexed("echo $HOME \"${X}\" '$NOT' $(date) `id` {port} $");
        let got: Vec<&str> = l.expansions.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(got, ["$HOME", "${X}", "$(", "`"]);
    }

    #[test]
    fn spans_point_into_the_raw_literal() {
        let src = SourceFile::new("t.pf", r#"run "a \"x\" | b""#);
        let t = Text::from_literal(&src, Span::new(4, src.text.len()), "");
        let l = lex(&t);
        let pipe = l
            .toks
            .iter()
            .find(|t| matches!(t, Tok::Op { op: Op::Pipe, .. }))
            .unwrap();
        assert_eq!(src.slice(pipe.span()), "|");
        assert_eq!(words(r#"a "x" | b"#), ["a", "x", "b"]);
    }

    #[test]
    fn assignments_and_simple_commands() {
        let toks = lexed("A=1 B=\"x y\" exec foo --x=1 >/dev/null; cd x && exec y\n").toks;
        let cmds = simple_commands(&toks);
        assert_eq!(cmds.len(), 3);
        let first: Vec<&str> = cmds[0].command_words().filter_map(Tok::word).collect();
        assert_eq!(first, ["exec", "foo", "--x=1"]);
        assert_eq!(cmds[1].end.map(|e| e.0), Some(Op::And));
    }

    /// 20,000 pseudo-random strings over the characters the lexer cares
    /// about: every token span stays inside the text, and nothing panics.
    #[test]
    fn random_input_keeps_spans_in_range() {
        let alphabet: Vec<char> = "ab =$`'\"\\;&|()<>12{}\n\t#-é".chars().collect();
        let mut seed: u64 = 0x5eed;
        for _ in 0..20_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 58) as usize;
            let mut s = String::new();
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            let src = SourceFile::new("t.pf", format!("\"{s}\""));
            let t = Text::from_literal(&src, Span::new(0, src.text.len()), &s);
            let l = lex(&t);
            for tok in &l.toks {
                assert!(tok.span().end <= src.text.len(), "{s:?}");
            }
            for e in &l.expansions {
                assert!(e.span.end <= src.text.len(), "{s:?}");
            }
            let _ = simple_commands(&l.toks);
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "'", "\"", "\\", "$", "${", "$(", "`", "2>", "&>", "((", "))", "a=\"", "é|ü",
        ] {
            let l = lexed(s);
            let _ = simple_commands(&l.toks);
        }
    }
}
