//! One Python file → the facts the rules read (pure; no IO).
//!
//! tree-sitter-python parses the text (error-tolerant: a file with a syntax
//! error still yields the facts of every statement it could read). One
//! iterative pass over the tree (no recursion, so deeply nested input cannot
//! overflow the stack) records, in source order and per enclosing function:
//! the imports, the calls (callee as a dotted name, arguments with their
//! text and spans), and the `# flowrun: allow` comments.

use super::chunks::skip_string;
use crate::source::Span;
use std::collections::HashMap;
use tree_sitter::{Node, Parser};

/// Index into [`Module::funcs`].
pub type FnId = usize;

/// `import a.b as c` / `from ..a import b as c` / `from a import *`.
#[derive(Clone, Debug)]
pub struct Import {
    /// Leading dots of a relative import (0 for absolute).
    pub level: usize,
    /// `a.b` in `import a.b` or `from a.b import c` (may be empty for `from . import c`).
    pub module: String,
    /// For `from` imports: the imported names and their aliases.
    pub names: Vec<(String, Option<String>)>,
    /// For `import a.b as c`: the alias.
    pub alias: Option<String>,
    pub from: bool,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Arg {
    /// `name` of `name=value`; `None` for a positional argument.
    pub keyword: Option<String>,
    /// The value's source text.
    pub text: String,
    pub span: Span,
    /// The value as a dotted name (`handler`, `self.stop`), if it is one.
    pub name: Option<String>,
    /// The function a `lambda` value defines.
    pub lambda: Option<FnId>,
}

#[derive(Clone, Debug)]
pub struct Call {
    /// The callee as a dotted name: `monkey.patch_all`, `t.join`; a part
    /// that is not a name is `?` (`?.Pool` for `get_context("spawn").Pool`).
    pub callee: String,
    /// The callee is a method of a string literal (`", ".join(...)`).
    pub on_literal: bool,
    pub args: Vec<Arg>,
    /// The whole call.
    pub span: Span,
    /// Lexically inside a loop (`for`, `while`, a comprehension) of the
    /// function (or module level) that makes it.
    pub in_loop: bool,
}

impl Call {
    /// The last component of the callee (`join` for `self.t.join`).
    pub fn method(&self) -> &str {
        self.callee.rsplit('.').next().unwrap_or("")
    }

    pub fn keyword(&self, name: &str) -> Option<&Arg> {
        self.args
            .iter()
            .find(|a| a.keyword.as_deref() == Some(name))
    }

    pub fn positional(&self, i: usize) -> Option<&Arg> {
        self.args.iter().filter(|a| a.keyword.is_none()).nth(i)
    }
}

/// Something a body does, in source order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Import(usize),
    Call(usize),
}

#[derive(Clone, Debug)]
pub struct Func {
    /// `f`, `Class.f`, or `<lambda>`.
    pub name: String,
    /// The name where it is defined (the `lambda` keyword for a lambda).
    pub span: Span,
    pub events: Vec<Event>,
}

/// A `# flowrun: allow FR5xx because "…"` comment.
#[derive(Clone, Debug)]
pub struct Allow {
    pub code: String,
    /// The reason; `None` when `because "…"` is missing.
    pub reason: Option<String>,
    pub span: Span,
    /// The comment is alone on its line (so it applies to the next line).
    pub own_line: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Module {
    pub imports: Vec<Import>,
    pub calls: Vec<Call>,
    pub funcs: Vec<Func>,
    /// What module-level code does, in order (class bodies included).
    pub top: Vec<Event>,
    /// Top-level functions by name, methods as `Class.name`.
    pub by_name: HashMap<String, FnId>,
    /// Methods by their bare name (for `self.name`).
    pub methods: HashMap<String, Vec<FnId>>,
    pub allows: Vec<Allow>,
    /// The bodies of `except KeyboardInterrupt:` clauses, as functions
    /// (their calls run when SIGINT arrives, not in order).
    pub on_interrupt: Vec<FnId>,
    /// Bytes of the file, for the benchmark and the bounds.
    pub len: usize,
}

impl Module {
    pub fn events(&self, owner: Option<FnId>) -> &[Event] {
        match owner {
            None => &self.top,
            Some(f) => self.funcs.get(f).map_or(&[], |f| &f.events),
        }
    }
}

/// Parse one file's text. Never fails: unparsable text yields no facts.
/// Each thread keeps one parser and reuses it.
pub fn parse(text: &str) -> Module {
    parse_ranges(text, &[]).0
}

/// Parse only the chunks of `text` that `keep` marks (see [`chunks`]),
/// with the same facts and spans the whole parse has for them. A file
/// whose reduced parse has a syntax error is parsed whole.
///
/// [`chunks`]: super::chunks
pub fn parse_chunks(text: &str, scan: &super::chunks::Scan, keep: &[bool]) -> Module {
    if keep.iter().all(|&k| k) {
        return parse(text);
    }
    let bytes = text.as_bytes();
    let mut ranges: Vec<tree_sitter::Range> = Vec::new();
    // Row of `counted`, the last offset whose row is known.
    let (mut row, mut counted) = (0usize, 0usize);
    let mut point = |at: usize| {
        row += memchr::memchr_iter(b'\n', &bytes[counted..at]).count();
        counted = at;
        let line_start = memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |i| i + 1);
        tree_sitter::Point::new(row, at - line_start)
    };
    for (c, _) in scan.chunks.iter().zip(keep).filter(|(_, &k)| k) {
        match ranges.last_mut() {
            Some(r) if r.end_byte == c.start => {
                r.end_byte = c.end;
                r.end_point = point(c.end);
            }
            _ => {
                let start_point = point(c.start);
                let end_point = point(c.end);
                ranges.push(tree_sitter::Range {
                    start_byte: c.start,
                    end_byte: c.end,
                    start_point,
                    end_point,
                });
            }
        }
    }
    if ranges.is_empty() {
        return Module {
            len: text.len(),
            ..Module::default()
        };
    }
    match parse_ranges(text, &ranges) {
        (m, false) => m,
        (_, true) => parse(text),
    }
}

/// Parse `text` (only `ranges`, unless empty); the facts, and whether the
/// tree has a syntax error.
fn parse_ranges(text: &str, ranges: &[tree_sitter::Range]) -> (Module, bool) {
    thread_local! {
        static PARSER: std::cell::RefCell<Option<Parser>> = const { std::cell::RefCell::new(None) };
    }
    let mut module = Module {
        len: text.len(),
        ..Module::default()
    };
    let tree = PARSER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let mut parser = Parser::new();
            parser
                .set_language(&tree_sitter_python::LANGUAGE.into())
                .ok()?;
            *slot = Some(parser);
        }
        let parser = slot.as_mut()?;
        parser.set_included_ranges(ranges).ok()?;
        parser.parse(text, None)
    });
    let Some(tree) = tree else {
        return (module, !ranges.is_empty());
    };
    let root = tree.root_node();
    if !ranges.is_empty() && root.has_error() {
        return (module, true);
    }
    Walker {
        text,
        m: &mut module,
    }
    .walk(root);
    (module, false)
}

/// Every name a rule (or an allow comment) can match on, as it must appear
/// somewhere in the text of the file whose call it matches: a rule matches
/// a call by its dotted name after the file's own import bindings, so each
/// part of that name is written in the call or in an import of the same
/// file. A file with none of these cannot hold a call any rule reports:
/// see [`is_inert`]. Keep it in step with the rules (`rules/`).
pub const RULE_TOKENS: &[&str] = &[
    // FR501 handlers and blocking calls; FR505, FR506 handlers.
    "signal",
    "join",
    "wait",
    "sleep",
    "select",
    "subprocess",
    "communicate",
    "acquire",
    // gevent patches (every rule's patch), FR502, FR504, FR505.
    "patch_",
    "Pool",
    "fork",
    "Popen",
    "Process",
    "kill",
    "terminate",
    // FR503: modules that import threading, and what starts a thread.
    "thread",
    "logging",
    "concurrent",
    "start",
    "submit",
    "map",
    // FR505: `except KeyboardInterrupt:`.
    "KeyboardInterrupt",
    // FR506: output calls, logging methods and configuration.
    "print",
    "write",
    "flush",
    "stdout",
    "stderr",
    "debug",
    "info",
    "warn",
    "error",
    "exception",
    "critical",
    "fatal",
    "StreamHandler",
    // `# flowrun: allow` comments.
    "flowrun",
];

/// No [`RULE_TOKENS`] anywhere in the text (in code, strings or comments).
/// Such a file can still matter through its imports (it may import a file
/// that does hold a rule's call), which the loader follows.
pub fn is_inert(text: &str) -> bool {
    use std::sync::OnceLock;
    static FINDERS: OnceLock<Vec<memchr::memmem::Finder<'static>>> = OnceLock::new();
    let finders = FINDERS.get_or_init(|| {
        RULE_TOKENS
            .iter()
            .map(|t| memchr::memmem::Finder::new(t.as_bytes()))
            .collect()
    });
    let bytes = text.as_bytes();
    finders.iter().all(|f| f.find(bytes).is_none())
}

/// The imports of a file, read without the parser, when that can be done
/// exactly: every `import` in the text (even in a string or a comment) is
/// a one-line statement that starts a line at column 0, outside any string,
/// bracket or continuation, not right after a `…:` line; no parentheses,
/// `;` or backslash in it; plain names (`a.b`, `as x`). Anything else:
/// `None`, and the caller parses the file. The result is what [`parse`]
/// records for imports, with the module level's events (its imports, in
/// order); nothing else.
pub fn imports_only(text: &str) -> Option<Module> {
    let bytes = text.as_bytes();
    if !text.is_ascii() {
        return None;
    }
    // Where each line starts, and whether the lexer is at a statement start
    // there (not in a string, a bracket or a continuation, and the last
    // code line did not open a block).
    let mut stmt_starts: Vec<usize> = Vec::new();
    let mut i = 0;
    let n = bytes.len();
    let mut depth = 0usize;
    let mut line_start = true;
    let mut continued = false;
    let mut last_code: u8 = b'\n';
    while i < n {
        if line_start {
            line_start = false;
            if depth == 0 && !continued && last_code != b':' {
                stmt_starts.push(i);
            }
            continued = false;
        }
        let c = bytes[i];
        match c {
            b'\n' => {
                line_start = true;
                i += 1;
            }
            b'#' => {
                while i < n && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'\\' => {
                // A continuation only right before the newline (`\r\n`
                // and a backslash anywhere else: left to the parser).
                if bytes.get(i + 1) != Some(&b'\n') {
                    return None;
                }
                continued = true;
                i += 1;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                last_code = c;
                i += 1;
            }
            b')' | b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                last_code = c;
                i += 1;
            }
            b'"' | b'\'' => {
                // The prefix letters just before the quote.
                let mut p = i;
                while p > 0 && bytes[p - 1].is_ascii_alphabetic() {
                    p -= 1;
                }
                let prefix = &text[p..i];
                let word_before = p > 0 && (bytes[p - 1].is_ascii_digit() || bytes[p - 1] == b'_');
                if prefix.len() > 2
                    || word_before
                    || !prefix.bytes().all(|b| b"rRbBuUfF".contains(&b))
                {
                    return None;
                }
                let fstring = prefix.bytes().any(|b| b == b'f' || b == b'F');
                i = skip_string(bytes, i, fstring)?;
                last_code = c;
            }
            b' ' | b'\t' | b'\r' | b'\x0c' => i += 1,
            _ => {
                last_code = c;
                i += 1;
            }
        }
    }
    if depth != 0 {
        return None;
    }
    // Each statement start that begins an import, in order.
    let mut module = Module {
        len: text.len(),
        ..Module::default()
    };
    let mut covered: Vec<(usize, usize)> = Vec::new();
    for &start in &stmt_starts {
        let rest = &text[start..];
        let line = rest.split('\n').next().unwrap_or("");
        if !(line.starts_with("import") || line.starts_with("from")) {
            continue;
        }
        let Some(imp) = import_line(line, start) else {
            // `important = 1`, `fromage()`: not an import; a real one we
            // cannot read makes the file go to the parser (below).
            continue;
        };
        covered.push((start, start + line.len()));
        if let Some(imp) = imp {
            module.imports.push(imp);
            module.top.push(Event::Import(module.imports.len() - 1));
        }
    }
    // Every `import` in the text must be inside one of those lines.
    let finder = memchr::memmem::find_iter(bytes, b"import");
    for at in finder {
        if !covered.iter().any(|&(a, b)| a <= at && at < b) {
            return None;
        }
    }
    Some(module)
}

const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield", "print", "exec",
];

fn ident(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !KEYWORDS.contains(&s)
}

fn dotted(s: &str) -> bool {
    s.split('.').all(ident)
}

/// One line at column 0 that starts with `import`/`from`: `Some(Some(_))`
/// for an import read exactly, `Some(None)` for `from __future__ import`
/// (which [`parse`] does not record), and `None` when it is not an import
/// statement this reader can be sure of — then the caller's check that
/// every `import` is covered sends the file to the parser.
fn import_line(line: &str, start: usize) -> Option<Option<Import>> {
    let code = line.split('#').next().unwrap_or("");
    if code.contains(['(', ')', ';', '\\', '"', '\'', '*'])
        && !code.trim_end().ends_with("import *")
    {
        return None;
    }
    let code = code.trim_end();
    let span = Span::new(start, start + code.len());
    let words: Vec<&str> = code.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
    let names = |list: &str| -> Option<Vec<(String, Option<String>)>> {
        let mut out = Vec::new();
        for part in list.split(',') {
            let w: Vec<&str> = part.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            match w[..] {
                [n] if dotted(n) => out.push((n.to_string(), None)),
                [n, "as", a] if dotted(n) && ident(a) => {
                    out.push((n.to_string(), Some(a.to_string())))
                }
                _ => return None,
            }
        }
        Some(out)
    };
    match words.first().copied() {
        Some("import") => {
            let rest = code["import".len()..].trim_start();
            if !code["import".len()..].starts_with([' ', '\t']) {
                return None;
            }
            Some(Some(Import {
                level: 0,
                module: String::new(),
                names: names(rest)?,
                alias: None,
                from: false,
                span,
            }))
        }
        Some("from") => {
            let (module, list) = match words[..] {
                [_, m, "import", ..] => (m, code.split_once(" import ")?.1),
                _ => return None,
            };
            if !code.starts_with("from ") || code.split(" import ").count() != 2 {
                return None;
            }
            let level = module.bytes().take_while(|&b| b == b'.').count();
            let name = &module[level..];
            if !(dotted(name) || (name.is_empty() && level > 0)) {
                return None;
            }
            if level == 0 && name == "__future__" {
                return Some(None);
            }
            let list = list.trim();
            let names = if list == "*" {
                Vec::new()
            } else {
                names(list)?
            };
            Some(Some(Import {
                level,
                module: name.to_string(),
                names,
                alias: None,
                from: true,
                span,
            }))
        }
        _ => None,
    }
}

struct Walker<'a> {
    text: &'a str,
    m: &'a mut Module,
}

/// Where a node's events go, and the class it is in (for method names).
#[derive(Clone)]
struct Scope {
    owner: Option<FnId>,
    class: Option<String>,
    in_loop: bool,
}

impl Walker<'_> {
    fn text_of(&self, n: Node) -> &str {
        self.text.get(n.start_byte()..n.end_byte()).unwrap_or("")
    }

    fn span(n: Node) -> Span {
        Span::new(n.start_byte(), n.end_byte())
    }

    fn push(&mut self, scope: &Scope, e: Event) {
        match scope.owner {
            None => self.m.top.push(e),
            Some(f) => self.m.funcs[f].events.push(e),
        }
    }

    fn new_fn(&mut self, name: String, span: Span) -> FnId {
        self.m.funcs.push(Func {
            name,
            span,
            events: Vec::new(),
        });
        self.m.funcs.len() - 1
    }

    fn walk(&mut self, root: Node) {
        let mut stack = vec![(
            root,
            Scope {
                owner: None,
                class: None,
                in_loop: false,
            },
        )];
        // Lambdas are created when their call's arguments are read; their
        // bodies are walked with the lambda as owner.
        let mut lambda_of: HashMap<usize, FnId> = HashMap::new();
        while let Some((node, scope)) = stack.pop() {
            let mut child_scope = scope.clone();
            let mut skip_children = false;
            match node.kind() {
                "comment" => self.comment(node),
                "import_statement" | "import_from_statement" | "future_import_statement" => {
                    if let Some(i) = self.import(node) {
                        self.m.imports.push(i);
                        let id = self.m.imports.len() - 1;
                        self.push(&scope, Event::Import(id));
                    }
                    skip_children = true;
                }
                "function_definition" => {
                    let name_node = node.child_by_field_name("name");
                    let bare = name_node.map_or("", |n| self.text_of(n)).to_string();
                    let qual = match (&scope.class, scope.owner) {
                        (Some(c), _) => format!("{c}.{bare}"),
                        _ => bare.clone(),
                    };
                    let span = name_node.map_or(Self::span(node), Self::span);
                    let id = self.new_fn(qual.clone(), span);
                    if scope.owner.is_none() || scope.class.is_some() {
                        self.m.by_name.entry(qual).or_insert(id);
                    }
                    if scope.class.is_some() {
                        self.m.methods.entry(bare).or_default().push(id);
                    }
                    // Decorators and defaults run where the def is; only the
                    // body belongs to the function.
                    let body = node.child_by_field_name("body");
                    let mut cursor = node.walk();
                    let kids: Vec<Node> = node.named_children(&mut cursor).collect();
                    for k in kids.into_iter().rev() {
                        let s = if Some(k) == body {
                            Scope {
                                owner: Some(id),
                                class: None,
                                in_loop: false,
                            }
                        } else {
                            scope.clone()
                        };
                        stack.push((k, s));
                    }
                    skip_children = true;
                }
                "class_definition" => {
                    let name = node
                        .child_by_field_name("name")
                        .map_or("", |n| self.text_of(n))
                        .to_string();
                    child_scope.class = Some(match &scope.class {
                        Some(outer) => format!("{outer}.{name}"),
                        None => name,
                    });
                }
                "lambda" => {
                    let id = *lambda_of.entry(node.id()).or_insert_with(|| {
                        self.m.funcs.push(Func {
                            name: "<lambda>".into(),
                            span: Span::new(
                                node.start_byte(),
                                (node.start_byte() + 6).min(node.end_byte()),
                            ),
                            events: Vec::new(),
                        });
                        self.m.funcs.len() - 1
                    });
                    child_scope = Scope {
                        owner: Some(id),
                        class: None,
                        in_loop: false,
                    };
                }
                "except_clause" => {
                    let mut cursor = node.walk();
                    let catches = node
                        .named_children(&mut cursor)
                        .filter(|k| k.kind() != "block")
                        .any(|k| self.text_of(k).contains("KeyboardInterrupt"));
                    if catches {
                        let id = self.new_fn(
                            "except KeyboardInterrupt".into(),
                            Span::new(
                                node.start_byte(),
                                node.start_byte()
                                    .max(node.end_byte().min(node.start_byte() + 6)),
                            ),
                        );
                        self.m.on_interrupt.push(id);
                        child_scope = Scope {
                            owner: Some(id),
                            class: None,
                            in_loop: false,
                        };
                    }
                }
                "for_statement"
                | "while_statement"
                | "list_comprehension"
                | "set_comprehension"
                | "dictionary_comprehension"
                | "generator_expression" => child_scope.in_loop = true,
                "call" => {
                    let mut call = self.call(node, &mut lambda_of);
                    call.in_loop = scope.in_loop;
                    self.m.calls.push(call);
                    let id = self.m.calls.len() - 1;
                    self.push(&scope, Event::Call(id));
                }
                _ => {}
            }
            if skip_children {
                continue;
            }
            let mut cursor = node.walk();
            let kids: Vec<Node> = node.named_children(&mut cursor).collect();
            for k in kids.into_iter().rev() {
                stack.push((k, child_scope.clone()));
            }
        }
    }

    /// `a.b.c` for an identifier or attribute chain; a part that is not a
    /// name is `?`. Iterative: chains nest to the left without bound.
    fn dotted(&self, n: Node) -> Option<String> {
        if !matches!(n.kind(), "identifier" | "attribute") {
            return None;
        }
        let mut parts = Vec::new();
        let mut cur = n;
        loop {
            match cur.kind() {
                "identifier" => {
                    parts.push(self.text_of(cur));
                    break;
                }
                "attribute" => {
                    let attr = cur.child_by_field_name("attribute")?;
                    parts.push(self.text_of(attr));
                    match cur.child_by_field_name("object") {
                        Some(o) => cur = o,
                        None => break,
                    }
                }
                _ => {
                    parts.push("?");
                    break;
                }
            }
        }
        parts.reverse();
        Some(parts.join("."))
    }

    fn call(&mut self, node: Node, lambda_of: &mut HashMap<usize, FnId>) -> Call {
        let func = node.child_by_field_name("function");
        let (callee, on_literal) = match func {
            Some(f) if f.kind() == "attribute" => {
                let obj = f.child_by_field_name("object");
                let lit = obj.is_some_and(|o| matches!(o.kind(), "string" | "concatenated_string"));
                let text = self.dotted(f).unwrap_or_else(|| "?".into());
                (text, lit)
            }
            Some(f) => (self.dotted(f).unwrap_or_else(|| "?".into()), false),
            None => ("?".into(), false),
        };
        let mut args = Vec::new();
        if let Some(list) = node.child_by_field_name("arguments") {
            let mut cursor = list.walk();
            for a in list.named_children(&mut cursor) {
                let (keyword, value) = if a.kind() == "keyword_argument" {
                    (
                        a.child_by_field_name("name")
                            .map(|n| self.text_of(n).to_string()),
                        a.child_by_field_name("value").unwrap_or(a),
                    )
                } else if a.kind() == "comment" {
                    continue;
                } else {
                    (None, a)
                };
                let lambda = (value.kind() == "lambda").then(|| {
                    *lambda_of.entry(value.id()).or_insert_with(|| {
                        self.m.funcs.push(Func {
                            name: "<lambda>".into(),
                            span: Span::new(
                                value.start_byte(),
                                (value.start_byte() + 6).min(value.end_byte()),
                            ),
                            events: Vec::new(),
                        });
                        self.m.funcs.len() - 1
                    })
                });
                let name = if matches!(value.kind(), "identifier" | "attribute") {
                    self.dotted(value)
                } else {
                    None
                };
                args.push(Arg {
                    keyword,
                    text: self.text_of(value).to_string(),
                    span: Self::span(value),
                    name,
                    lambda,
                });
            }
        }
        Call {
            callee,
            on_literal,
            args,
            span: Self::span(node),
            in_loop: false,
        }
    }

    fn import(&self, node: Node) -> Option<Import> {
        let span = Self::span(node);
        if node.kind() == "import_statement" {
            // `import a.b, c as d`: one Import per name would be cleaner,
            // but the first name is what matters for order; record each
            // as a `names` entry on an import of "".
            let mut cursor = node.walk();
            let mut names = Vec::new();
            for n in node.children_by_field_name("name", &mut cursor) {
                match n.kind() {
                    "dotted_name" => names.push((self.text_of(n).to_string(), None)),
                    "aliased_import" => {
                        let name = n.child_by_field_name("name").map(|x| self.text_of(x))?;
                        let alias = n.child_by_field_name("alias").map(|x| self.text_of(x));
                        names.push((name.to_string(), alias.map(str::to_string)));
                    }
                    _ => {}
                }
            }
            return Some(Import {
                level: 0,
                module: String::new(),
                names,
                alias: None,
                from: false,
                span,
            });
        }
        if node.kind() == "future_import_statement" {
            return None;
        }
        let module_node = node.child_by_field_name("module_name")?;
        let (level, module) = if module_node.kind() == "relative_import" {
            let raw = self.text_of(module_node);
            let level = raw.chars().take_while(|&c| c == '.').count();
            (level, raw[level..].trim().to_string())
        } else {
            (0, self.text_of(module_node).to_string())
        };
        let mut names = Vec::new();
        let mut cursor = node.walk();
        for n in node.children_by_field_name("name", &mut cursor) {
            match n.kind() {
                "dotted_name" => names.push((self.text_of(n).to_string(), None)),
                "aliased_import" => {
                    let name = n.child_by_field_name("name").map(|x| self.text_of(x))?;
                    let alias = n.child_by_field_name("alias").map(|x| self.text_of(x));
                    names.push((name.to_string(), alias.map(str::to_string)));
                }
                _ => {}
            }
        }
        Some(Import {
            level,
            module,
            names,
            alias: None,
            from: true,
            span,
        })
    }

    fn comment(&mut self, node: Node) {
        let text = self.text_of(node);
        let Some(rest) = text
            .trim_start_matches('#')
            .trim_start()
            .strip_prefix("flowrun:")
        else {
            return;
        };
        let rest = rest.trim_start();
        let Some(rest) = rest.strip_prefix("allow") else {
            return;
        };
        let rest = rest.trim_start();
        let code: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let after = rest[code.len()..].trim_start();
        let reason = after.strip_prefix("because").and_then(|r| {
            let r = r.trim();
            let inner = r.strip_prefix('"')?.strip_suffix('"')?;
            (!inner.trim().is_empty()).then(|| inner.to_string())
        });
        let start = node.start_byte();
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let own_line = self.text[line_start..start].trim().is_empty();
        self.m.allows.push(Allow {
            code: code.to_ascii_uppercase(),
            reason,
            span: Self::span(node),
            own_line,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_calls_imports_functions_in_order() {
        let src = "from gevent import monkey\nmonkey.patch_all()\nimport threading as th, os\n\ndef on_term(s, f):\n    t.join()\n\nclass W:\n    def stop(self):\n        self.t.join(timeout=1)\n\nsignal.signal(signal.SIGTERM, on_term)\nsignal.signal(2, lambda s, f: ev.wait())\n";
        let m = parse(src);
        assert_eq!(m.imports.len(), 2);
        assert_eq!(m.imports[0].module, "gevent");
        assert_eq!(
            m.imports[1].names[0],
            ("threading".into(), Some("th".into()))
        );
        let callees: Vec<&str> = m
            .top
            .iter()
            .filter_map(|e| match e {
                Event::Call(i) => Some(m.calls[*i].callee.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            callees,
            ["monkey.patch_all", "signal.signal", "signal.signal"]
        );
        let f = m.by_name["on_term"];
        assert!(matches!(m.funcs[f].events[..], [Event::Call(_)]));
        assert!(m.by_name.contains_key("W.stop"));
        assert_eq!(m.methods["stop"].len(), 1);
        let reg = m
            .calls
            .iter()
            .rfind(|c| c.callee == "signal.signal")
            .unwrap();
        let lam = reg.positional(1).unwrap().lambda.unwrap();
        let Event::Call(c) = m.funcs[lam].events[0] else {
            panic!()
        };
        assert_eq!(m.calls[c].callee, "ev.wait");
    }

    #[test]
    fn allow_comments() {
        let m = parse(
            "x()  # flowrun: allow FR501 because \"test only\"\n# flowrun: allow fr502\ny()\n",
        );
        assert_eq!(m.allows.len(), 2);
        assert_eq!(m.allows[0].reason.as_deref(), Some("test only"));
        assert!(!m.allows[0].own_line);
        assert_eq!(m.allows[1].code, "FR502");
        assert!(m.allows[1].reason.is_none());
        assert!(m.allows[1].own_line);
    }

    /// Token soup: whatever the text, parsing returns and every recorded
    /// span lies inside it on character boundaries.
    #[test]
    fn never_panics_on_token_soup() {
        let toks = [
            "def ",
            "class ",
            "import ",
            "from ",
            " . ",
            "..",
            "(",
            ")",
            ":",
            "\n",
            "    ",
            "lambda ",
            "x",
            "signal.signal",
            "monkey.patch_all",
            ",",
            "=",
            "\"",
            "'",
            "#",
            " flowrun: allow FR501",
            " because \"",
            "é",
            "日",
            "\\",
            "*",
            "@",
            "self.",
            "join",
            "[",
            "]",
            "\r\n",
            "\t",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..3000 {
            let mut s = String::new();
            for _ in 0..(seed % 60) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push_str(toks[(seed % toks.len() as u64) as usize]);
            }
            let m = parse(&s);
            let ok = |sp: Span| {
                sp.start <= sp.end
                    && sp.end <= s.len()
                    && s.is_char_boundary(sp.start)
                    && s.is_char_boundary(sp.end)
            };
            assert!(
                m.calls
                    .iter()
                    .all(|c| ok(c.span) && c.args.iter().all(|a| ok(a.span))),
                "{s:?}"
            );
            assert!(
                m.imports.iter().all(|i| ok(i.span)) && m.allows.iter().all(|a| ok(a.span)),
                "{s:?}"
            );
            assert!(m.funcs.iter().all(|f| ok(f.span)), "{s:?}");
        }
    }

    /// What both readers record about imports, to compare.
    fn import_facts(m: &Module) -> Vec<String> {
        let mut out: Vec<String> = m
            .imports
            .iter()
            .map(|i| {
                format!(
                    "{} {:?} {:?} {:?} {} {:?}",
                    i.level, i.module, i.names, i.alias, i.from, i.span
                )
            })
            .collect();
        out.extend(m.top.iter().filter_map(|e| match e {
            Event::Import(i) => Some(format!("top {i}")),
            Event::Call(_) => None,
        }));
        out
    }

    fn agrees(text: &str) -> bool {
        match imports_only(text) {
            Some(m) => {
                assert_eq!(import_facts(&m), import_facts(&parse(text)), "{text:?}");
                assert!(m.funcs.is_empty() && m.calls.is_empty());
                true
            }
            None => false,
        }
    }

    #[test]
    fn imports_only_reads_plain_imports_and_refuses_the_rest() {
        let plain = "\"\"\"Doc.\"\"\"\nimport os, a.b as c\nfrom . import x  # c\nfrom ..p.q import r as s, t\nfrom m import *\nfrom __future__ import annotations\n\n\ndef f(items):\n    return [len(str(i)) for i in items]\n\n\nx = {'k': \"v\", 'n': r'\\d'}  # a comment\n";
        assert!(agrees(plain));
        assert_eq!(imports_only(plain).unwrap().imports.len(), 4);
        for refused in [
            "x = '''\nimport os\n'''\n",
            "if x:\n    import os\n",
            "try:\n    import os\nexcept ImportError:\n    os = None\n",
            "from a import (b,\n    c)\n",
            "import a, \\\n    b\n",
            "import os; x = 1\n",
            "# import os\n",
            "x = importlib.import_module('a')\n",
            "class A:\nimport os\n",
            "x = (1,\nimport os\n",
            "x = f\"{d[\"k\"]}\"\nimport os\n",
            "x = 'unterminated\nimport os\n",
            "from a import b,\n",
            "import os as\n",
            "x = 'é'\nimport os\n",
        ] {
            assert!(imports_only(refused).is_none(), "{refused:?}");
        }
    }

    /// Whenever the import reader answers, it answers what the parser
    /// does: on every Python file of the repository and on token soup.
    #[test]
    fn imports_only_agrees_with_the_parser() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut stack = vec![root.join("tests/fixtures/python"), root.join("examples")];
        let mut files = 0;
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "py") {
                    agrees(&std::fs::read_to_string(&p).unwrap());
                    files += 1;
                }
            }
        }
        assert!(files > 50, "{files} Python files");
        let toks = [
            "import os",
            "import a.b as c",
            "from . import x",
            "from .m import y as z",
            "from __future__ import annotations",
            "from m import *",
            "import",
            "from",
            "\n",
            "\n",
            "    ",
            "x = 1",
            "def f():",
            "class A:",
            ":",
            "(",
            ")",
            "[",
            "]",
            "{",
            "}",
            "'",
            "\"",
            "'''",
            "\"\"\"",
            "f'",
            "rb\"",
            "#",
            " # c",
            "\\",
            ",",
            ";",
            "*",
            "as",
            "importer",
            " ",
            "\t",
            "\r\n",
            "@d",
            "if x:",
            "else:",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut answered = 0;
        for _ in 0..20000 {
            let mut s = String::new();
            for _ in 0..(seed % 24) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push_str(toks[(seed % toks.len() as u64) as usize]);
            }
            answered += usize::from(agrees(&s));
        }
        assert!(answered > 1000, "{answered}");
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let src = format!("x = {}1{}\n", "(".repeat(5000), ")".repeat(5000));
        let _ = parse(&src);
        let src = format!("x = a{}\n", ".b".repeat(5000));
        let _ = parse(&format!("{src}\nx{}()\n", ".y".repeat(3000)));
    }
}
