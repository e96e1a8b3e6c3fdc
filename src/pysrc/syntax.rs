//! One Python file → the facts the rules read (pure; no IO).
//!
//! tree-sitter-python parses the text (error-tolerant: a file with a syntax
//! error still yields the facts of every statement it could read). One
//! iterative pass over the tree (no recursion, so deeply nested input cannot
//! overflow the stack) records, in source order and per enclosing function:
//! the imports, the calls (callee as a dotted name, arguments with their
//! text and spans), and the `# flowrun: allow` comments.

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
pub fn parse(text: &str) -> Module {
    let mut module = Module {
        len: text.len(),
        ..Module::default()
    };
    let mut parser = Parser::new();
    if parser
        .set_language(&tree_sitter_python::LANGUAGE.into())
        .is_err()
    {
        return module;
    }
    let Some(tree) = parser.parse(text, None) else {
        return module;
    };
    Walker {
        text,
        m: &mut module,
    }
    .walk(tree.root_node());
    module
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

    #[test]
    fn deep_nesting_does_not_overflow() {
        let src = format!("x = {}1{}\n", "(".repeat(5000), ")".repeat(5000));
        let _ = parse(&src);
        let src = format!("x = a{}\n", ".b".repeat(5000));
        let _ = parse(&format!("{src}\nx{}()\n", ".y".repeat(3000)));
    }
}
