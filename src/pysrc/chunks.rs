//! Parse less: which top-level statements of a file can matter to a rule
//! (pure; no IO).
//!
//! Most of a worker's code is ordinary computation no rule looks at. A
//! cheap lexer ([`scan`]) splits a file into *chunks* — its top-level
//! statements, each with its decorators, its `else`/`elif`/`except`/
//! `finally` clauses, and the blank and comment lines after it; a
//! top-level class is split further into its `class` line and each
//! statement of its body (a method, with its decorators) — and
//! records for each chunk the identifiers its code names, the names it
//! defines (`def NAME`, `class NAME`, anywhere inside it) and the words of
//! its import statements. [`relevant`] then decides, across every file the
//! run loaded, which chunks can change a finding; only those are given to
//! tree-sitter ([`syntax::parse_chunks`](super::syntax::parse_chunks), as
//! included ranges, so every span stays a file offset).
//!
//! A chunk is *relevant* (the least set closed under these rules):
//! - it holds one of [`RULE_TOKENS`] anywhere (code, string or comment:
//!   the calls rules report, `# flowrun: allow`, `except
//!   KeyboardInterrupt`), or the text `import` (the master walk runs
//!   imports in order, and a function that imports must stay callable);
//! - it names a function, class, method or import alias that a relevant
//!   chunk defines (*callers*: a call into relevant code must stay, with
//!   its place in the master walk);
//! - it defines a name that a relevant chunk names (*callees*: every local
//!   function a relevant call resolves to — including `self.NAME`, which
//!   takes the first method of that name, and a name defined twice — must
//!   resolve to the same function);
//! - the `class` line of a relevant statement of its body (and a class
//!   kept for itself keeps the first statement of its body, so that it
//!   parses);
//! - an import statement of a relevant chunk that holds a rule token or
//!   names a defined relevant name defines all its words (an alias such as
//!   `from os import kill as k` makes `k(…)` a rule's call).
//!
//! Why that is exact: a rule reports a call, an import, an allow comment,
//! or an `except KeyboardInterrupt`, each of which lies in a relevant
//! chunk; it follows calls only from relevant code (handlers, the master
//! walk from the entry's top level), and by the callee rule those calls
//! resolve into relevant chunks; an irrelevant chunk names nothing
//! relevant, so the only steps it adds to the master walk are calls that
//! no rule reports and functions that call nothing relevant. Dropping it
//! removes those steps and leaves the order of the others alone (a program
//! whose master walk reaches its bound of a million steps may be cut at a
//! later step). Words are compared by a 64-bit hash: a collision only
//! makes more chunks relevant.
//!
//! The lexer is exact or gives up: a file it cannot split with certainty
//! (an unbalanced bracket, an unterminated string, an f-string that nests
//! its own quote, a stray backslash, a bare `\r`, a form feed at a line
//! start, an unexpected indent, a block with no body, a byte order mark)
//! is parsed whole; its last chunk, from where the lexer gave up, has for
//! words every identifier-like run of its text. A reduced parse that has a
//! syntax error is thrown away for a parse of the whole file.
//! tests/it/pysrc.rs compares both ways on every fixture and example, and
//! on generated programs.
//!
//! The one case left: a syntax error the lexer cannot see (`x = = 1`,
//! `def f(a b):`) in a chunk that is left out. Python refuses to run such
//! a file; tree-sitter's error recovery over the whole file may then read
//! the statements around the error differently (it can fold good
//! statements into its error node), while the reduced parse reads the
//! relevant statements as written. Knowing that a left-out chunk parses
//! would take parsing it.

use super::syntax::RULE_TOKENS;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// One top-level statement (with what belongs to it), `start..end` of the
/// file; `start` is a line start.
#[derive(Clone, Debug, Default)]
pub struct Chunk {
    pub start: usize,
    pub end: usize,
    /// For a statement of a top-level class's body, the chunk of the
    /// class line (parsed whenever this one is).
    pub parent: Option<usize>,
    /// Holds a rule token or `import`: relevant whatever else holds.
    seed: bool,
    /// Hashes of the identifiers its code names (sorted, distinct).
    words: Vec<u64>,
    /// Hashes of the names it defines.
    defs: Vec<u64>,
    imports: Vec<ImportLine>,
}

/// A logical line of a chunk that holds the word `import`.
#[derive(Clone, Debug, Default)]
struct ImportLine {
    start: usize,
    end: usize,
    token: bool,
    words: Vec<u64>,
}

/// A file split into chunks, in order, covering it.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    pub chunks: Vec<Chunk>,
    /// The lexer split the whole file; `false`: it gave up in the last
    /// chunk, whose words were read crudely.
    pub exact: bool,
}

/// Split `text` into chunks and read what [`relevant`] needs.
pub fn scan(text: &str) -> Scan {
    let bytes = text.as_bytes();
    let mut chunks = Vec::new();
    let exact = lex(bytes, &mut chunks).is_some();
    if !exact {
        // The chunks before the one the lexer gave up in are sure (each
        // start was decided by the text before it): the rest is one.
        let start = chunks.last().map_or(0, |c: &Chunk| c.end);
        chunks.push(crude(bytes, start));
    }
    let mut s = Scan { chunks, exact };
    mark_tokens(text.as_bytes(), &mut s.chunks);
    for c in &mut s.chunks {
        c.words.sort_unstable();
        c.words.dedup();
    }
    s
}

/// Which chunks of each file are relevant (see the module docs). `whole`
/// files were parsed whole: every chunk of theirs counts as relevant.
pub fn relevant(scans: &[&Scan], whole: &[bool]) -> Vec<Vec<bool>> {
    let mut defined: WordSet = WordSet::default();
    let mut named: WordSet = WordSet::default();
    let mut inside: Vec<Vec<bool>> = scans
        .iter()
        .zip(whole)
        .map(|(s, &w)| s.chunks.iter().map(|c| w || !s.exact || c.seed).collect())
        .collect();
    let mut counted: Vec<Vec<bool>> = scans.iter().map(|s| vec![false; s.chunks.len()]).collect();
    let mut active: Vec<Vec<Vec<bool>>> = scans
        .iter()
        .map(|s| {
            s.chunks
                .iter()
                .map(|c| vec![false; c.imports.len()])
                .collect()
        })
        .collect();
    // Each pass adds what it finds; a chain of callers as long as the
    // bound is not worth the passes: then every chunk is relevant.
    for _ in 0..64 {
        let mut changed = false;
        for (f, s) in scans.iter().enumerate() {
            for (k, c) in s.chunks.iter().enumerate() {
                if !inside[f][k]
                    && (c.words.iter().any(|w| defined.contains(w))
                        || c.defs.iter().any(|d| named.contains(d)))
                {
                    inside[f][k] = true;
                }
                if !inside[f][k] {
                    continue;
                }
                if let Some(p) = c.parent {
                    // The class line goes with any statement of its body.
                    if !inside[f][p] {
                        inside[f][p] = true;
                        changed = true;
                    }
                }
                if !counted[f][k] {
                    counted[f][k] = true;
                    changed = true;
                    defined.extend(c.defs.iter().copied());
                    named.extend(c.words.iter().copied());
                }
                for (l, line) in c.imports.iter().enumerate() {
                    if !active[f][k][l]
                        && (line.token || line.words.iter().any(|w| defined.contains(w)))
                    {
                        active[f][k][l] = true;
                        changed = true;
                        defined.extend(line.words.iter().copied());
                    }
                }
            }
        }
        if !changed {
            // A class kept without any statement of its body keeps the
            // first one (a class needs a body to parse).
            for (f, s) in scans.iter().enumerate() {
                for (k, c) in s.chunks.iter().enumerate() {
                    if let Some(p) = c.parent {
                        if inside[f][p]
                            && k == p + 1
                            && !s.chunks[k..]
                                .iter()
                                .zip(&inside[f][k..])
                                .take_while(|(c, _)| c.parent == Some(p))
                                .any(|(_, &i)| i)
                        {
                            inside[f][k] = true;
                        }
                    }
                }
            }
            return inside;
        }
    }
    scans.iter().map(|s| vec![true; s.chunks.len()]).collect()
}

/// A set of word hashes (already well mixed: no hashing again).
type WordSet = HashSet<u64, BuildHasherDefault<Passthrough>>;

#[derive(Default)]
struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// FNV-1a, then a final mix so that the low and high bits both vary.
fn hash(w: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &c in w {
        h = (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

fn word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

const KEYWORDS_OF_IMPORTS: &[&[u8]] = &[b"import", b"from", b"as"];

/// Set `seed` on chunks holding a rule token or `import`, and `token` on
/// import lines holding a rule token. Every token is made of word bytes,
/// so no match crosses a line start (chunk starts are line starts).
fn mark_tokens(bytes: &[u8], chunks: &mut [Chunk]) {
    use std::sync::OnceLock;
    static TOKENS: OnceLock<Option<regex::bytes::Regex>> = OnceLock::new();
    let re = TOKENS.get_or_init(|| {
        let alts: Vec<String> = RULE_TOKENS.iter().map(|t| regex::escape(t)).collect();
        regex::bytes::Regex::new(&alts.join("|")).ok()
    });
    let starts: Vec<usize> = chunks.iter().map(|c| c.start).collect();
    let chunk_of = |at: usize| starts.partition_point(|&s| s <= at).saturating_sub(1);
    let mut hits: Vec<usize> = Vec::new();
    match re {
        Some(re) => hits.extend(re.find_iter(bytes).map(|m| m.start())),
        // Cannot happen (the tokens are plain words); stay exact anyway.
        None => hits.extend(0..bytes.len()),
    }
    for at in hits {
        let k = chunk_of(at);
        let c = &mut chunks[k];
        c.seed = true;
        // Import lines are in order and do not overlap.
        let l = c.imports.partition_point(|l| l.start <= at);
        if let Some(line) = l.checked_sub(1).and_then(|l| c.imports.get_mut(l)) {
            if at < line.end {
                line.token = true;
            }
        }
    }
    for at in memchr::memmem::find_iter(bytes, b"import") {
        let k = chunk_of(at);
        chunks[k].seed = true;
    }
}

/// One chunk for the text from `start` that the lexer cannot split: every
/// identifier-like run is a word, every word after `def`/`class` a
/// definition, and the whole text one import line when it holds the word
/// `import`.
fn crude(bytes: &[u8], start: usize) -> Chunk {
    let mut c = Chunk {
        start,
        end: bytes.len(),
        ..Chunk::default()
    };
    let mut i = start;
    let mut after_def = false;
    let mut imports = false;
    while i < bytes.len() {
        if !word_byte(bytes[i]) {
            i += 1;
            continue;
        }
        let j = i + bytes[i..].iter().take_while(|&&b| word_byte(b)).count();
        let w = &bytes[i..j];
        let h = hash(w);
        if after_def {
            c.defs.push(h);
        }
        after_def = w == b"def" || w == b"class";
        imports |= w == b"import";
        c.words.push(h);
        i = j;
    }
    if imports {
        let mut words = c.words.clone();
        words.sort_unstable();
        words.dedup();
        c.imports.push(ImportLine {
            start,
            end: bytes.len(),
            token: false,
            words,
        });
    }
    c
}

/// Split a file into top-level statements, pushed to `chunks`; `None`
/// when not sure (then `chunks` holds those before the one it was in).
fn lex(b: &[u8], chunks: &mut Vec<Chunk>) -> Option<()> {
    if b.starts_with("\u{feff}".as_bytes()) {
        return None;
    }
    let n = b.len();
    let mut cur = Chunk::default();
    // The current chunk holds code (not only blank and comment lines).
    let mut has_code = false;
    // Its statement so far is decorators only.
    let mut decorating = false;
    // One of its logical lines ended with `:` (a block may follow).
    let mut opened = false;
    // The last logical line ended with `:` and no indented code followed.
    let mut block_pending = false;
    let mut depth = 0usize;
    let mut last_code = b'\n';
    let mut line_has_code = false;
    let mut after_def = false;
    // The current logical line: start, first word index, holds `import`.
    let mut ll_start = 0usize;
    let mut ll_words = 0usize;
    let mut ll_import = false;
    let mut at_line_start = true;
    // The current top-level statement is a class (its `class` line), the
    // indentation of its body's statements, and whether the body
    // statement so far is decorators only.
    let mut class_at: Option<usize> = None;
    let mut body_indent: Option<(usize, usize)> = None;
    let mut body_decorating = false;
    let mut i = 0usize;
    while i < n {
        if at_line_start {
            at_line_start = false;
            if depth == 0 {
                ll_start = i;
                ll_words = cur.words.len();
                ll_import = false;
                line_has_code = false;
                let indent = b[i..]
                    .iter()
                    .take_while(|&&c| c == b' ' || c == b'\t')
                    .count();
                match b.get(i + indent) {
                    None | Some(b'\n' | b'#') => {}
                    Some(b'\r') if b.get(i + indent + 1) == Some(&b'\n') => {}
                    Some(b'\r' | b'\x0c') => return None,
                    Some(&c) if indent > 0 => {
                        let ind = &b[i..i + indent];
                        let body = body_indent.map(|(s, e)| &b[s..e]);
                        if class_at.is_some() && (body.is_none() || body == Some(ind)) {
                            // A statement of a top-level class's body: a
                            // chunk of its own, under the class line's.
                            if body.is_none() {
                                if !opened {
                                    return None;
                                }
                                body_indent = Some((i, i + indent));
                            } else if block_pending {
                                return None;
                            }
                            block_pending = false;
                            let at = i + indent;
                            let word_end =
                                at + b[at..].iter().take_while(|&&c| word_byte(c)).count();
                            let clause = matches!(
                                &b[at..word_end],
                                b"else" | b"elif" | b"except" | b"finally"
                            );
                            if clause && !opened {
                                return None;
                            }
                            if !clause && !body_decorating {
                                let parent = match cur.parent {
                                    Some(p) => p,
                                    None => chunks.len(),
                                };
                                cur.end = i;
                                chunks.push(std::mem::take(&mut cur));
                                cur.start = i;
                                cur.parent = Some(parent);
                                ll_words = 0;
                                opened = false;
                            }
                            body_decorating = c == b'@';
                        } else if class_at.is_some() && !body.is_some_and(|p| ind.starts_with(p)) {
                            // Less indented than the class body: unsure.
                            return None;
                        } else {
                            if !opened {
                                return None;
                            }
                            block_pending = false;
                        }
                    }
                    Some(&c) => {
                        if block_pending {
                            return None;
                        }
                        let word_end = i + b[i..].iter().take_while(|&&c| word_byte(c)).count();
                        let clause =
                            matches!(&b[i..word_end], b"else" | b"elif" | b"except" | b"finally");
                        if clause && !opened {
                            return None;
                        }
                        if has_code && !clause && !decorating {
                            cur.end = i;
                            chunks.push(std::mem::take(&mut cur));
                            cur.start = i;
                            ll_words = 0;
                            opened = false;
                            class_at = None;
                            body_indent = None;
                            body_decorating = false;
                        }
                        if &b[i..word_end] == b"class" {
                            class_at = Some(i);
                        }
                        decorating = c == b'@';
                        has_code = true;
                    }
                }
            }
        }
        let c = b[i];
        match c {
            b'\n' => {
                i += 1;
                at_line_start = true;
                if depth == 0 && line_has_code {
                    if last_code == b':' {
                        opened = true;
                        block_pending = true;
                    }
                    if ll_import {
                        cur.imports.push(ImportLine {
                            start: ll_start,
                            end: i,
                            token: false,
                            words: import_words(&cur.words[ll_words..]),
                        });
                    }
                }
            }
            b'#' => {
                i += memchr::memchr(b'\n', &b[i..]).unwrap_or(n - i);
            }
            b'\\' => {
                if b.get(i + 1) == Some(&b'\n') {
                    i += 2;
                } else if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                    i += 3;
                } else {
                    return None;
                }
            }
            b'\r' => {
                if b.get(i + 1) != Some(&b'\n') {
                    return None;
                }
                i += 1;
            }
            b' ' | b'\t' | b'\x0c' => i += 1,
            b'(' | b'[' | b'{' => {
                depth += 1;
                (last_code, line_has_code, after_def) = (c, true, false);
                i += 1;
            }
            b')' | b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                (last_code, line_has_code, after_def) = (c, true, false);
                i += 1;
            }
            b'"' | b'\'' => {
                i = skip_string(b, i, false)?;
                (last_code, line_has_code, after_def) = (c, true, false);
            }
            b'0'..=b'9' => {
                i += b[i..].iter().take_while(|&&c| word_byte(c)).count();
                (last_code, line_has_code, after_def) = (c, true, false);
            }
            _ if word_byte(c) => {
                let j = i + b[i..].iter().take_while(|&&c| word_byte(c)).count();
                let w = &b[i..j];
                if let Some(&q) = b.get(j).filter(|&&q| q == b'"' || q == b'\'') {
                    // A string prefix.
                    if w.len() > 2 || !w.iter().all(|x| b"rRbBuUfF".contains(x)) {
                        return None;
                    }
                    let fstring = w.iter().any(|&x| x == b'f' || x == b'F');
                    let end = skip_string(b, j, fstring)?;
                    if fstring {
                        // Replacement fields are code: their words count.
                        let inner = crude(&b[..end], j);
                        cur.words.extend(inner.words);
                    }
                    (last_code, line_has_code, after_def) = (q, true, false);
                    i = end;
                    continue;
                }
                let h = hash(w);
                if after_def {
                    cur.defs.push(h);
                }
                after_def = w == b"def" || w == b"class";
                ll_import |= w == b"import";
                cur.words.push(h);
                (last_code, line_has_code) = (b'a', true);
                i = j;
            }
            _ => {
                (last_code, line_has_code, after_def) = (c, true, false);
                i += 1;
            }
        }
    }
    if depth != 0 || block_pending {
        return None;
    }
    if line_has_code && ll_import {
        cur.imports.push(ImportLine {
            start: ll_start,
            end: n,
            token: false,
            words: import_words(&cur.words[ll_words..]),
        });
    }
    cur.end = n;
    chunks.push(cur);
    Some(())
}

/// The words of an import line, less `import`, `from` and `as`.
fn import_words(words: &[u64]) -> Vec<u64> {
    use std::sync::OnceLock;
    static SKIP: OnceLock<Vec<u64>> = OnceLock::new();
    let skip = SKIP.get_or_init(|| KEYWORDS_OF_IMPORTS.iter().map(|k| hash(k)).collect());
    let mut out: Vec<u64> = words
        .iter()
        .copied()
        .filter(|w| !skip.contains(w))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Skip a string literal whose opening quote is at `i`; the index after
/// its closing quote. `None` for what the lexer cannot be sure of: an
/// unterminated string, a newline in a one-line string, an f-string whose
/// replacement field holds a quote of its own kind (Python 3.12 nesting).
pub(super) fn skip_string(bytes: &[u8], i: usize, fstring: bool) -> Option<usize> {
    let q = bytes[i];
    let triple = bytes.get(i + 1) == Some(&q) && bytes.get(i + 2) == Some(&q);
    let mut j = if triple { i + 3 } else { i + 1 };
    if !triple && bytes.get(i + 1) == Some(&q) {
        return Some(i + 2); // ""
    }
    let mut braces = 0usize;
    while j < bytes.len() {
        let c = bytes[j];
        if c == b'\\' {
            j += 2;
            continue;
        }
        if fstring {
            if c == b'{' {
                if bytes.get(j + 1) == Some(&b'{') && braces == 0 {
                    j += 2;
                    continue;
                }
                braces += 1;
            } else if c == b'}' && braces > 0 {
                braces -= 1;
            }
        }
        if c == b'\n' && !triple {
            return None;
        }
        if c == q {
            if braces > 0 {
                return None;
            }
            if !triple {
                return Some(j + 1);
            }
            if bytes.get(j + 1) == Some(&q) && bytes.get(j + 2) == Some(&q) {
                return Some(j + 3);
            }
        }
        j += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(text: &str) -> Vec<&str> {
        let s = scan(text);
        assert!(s.exact, "{text:?}");
        s.chunks
            .iter()
            .map(|c| text[c.start..c.end].lines().next().unwrap_or(""))
            .collect()
    }

    #[test]
    fn splits_top_level_statements() {
        let text = "\"\"\"Doc\ndef not_this():\n\"\"\"\n# lead\nimport os\n\n@dec(\n  1)\n# c\n@dec2\ndef f(a,\nb):\n    x = '''\ndef g():\n'''\n# col-0 comment inside\n    return x \\\n+ 1\n\nif a:\n    pass\nelif b:\n    pass\nelse:\n    pass\ntry:\n    pass\nexcept E:\n    pass\nfinally:\n    pass\nclass C(B):\n    def m(self): pass\nx = f\"{a['k']}\"\n";
        assert_eq!(
            starts(text),
            [
                "\"\"\"Doc",
                "import os",
                "@dec(",
                "if a:",
                "try:",
                "class C(B):",
                "    def m(self): pass",
                "x = f\"{a['k']}\""
            ]
        );
    }

    #[test]
    fn splits_a_class_body_into_its_statements() {
        let text = "@dataclass\nclass C(B):\n    \"\"\"Doc.\"\"\"\n    # c\n    limit = 3\n\n    @property\n    def a(self):\n        return 1\n\n    try:\n        x = 1\n    except E:\n        pass\n\n    class Inner:\n        def b(self):\n            pass\n\n\tx = 1\n";
        let s = scan(&text.replace("\tx = 1\n", "x = 1\n"));
        assert!(s.exact);
        let parents: Vec<Option<usize>> = s.chunks.iter().map(|c| c.parent).collect();
        assert_eq!(
            parents,
            [None, Some(0), Some(0), Some(0), Some(0), Some(0), None]
        );
        // A class kept for itself keeps one statement of its body.
        let keep = relevant(&[&scan("class Quiet(threading.Thread):\n    def a(self):\n        pass\n\n    def b(self):\n        pass\n")], &[false]);
        assert_eq!(keep[0], [true, true, false]);
        // A method kept keeps its class line, not its siblings.
        let keep = relevant(
            &[&scan(
                "class W:\n    def a(self):\n        print(1)\n\n    def b(self):\n        pass\n",
            )],
            &[false],
        );
        assert_eq!(keep[0], [true, true, false]);
        // Indented less than the body, or mixed: unsure.
        assert!(!scan("class A:\n        def a(self):\n            pass\n    x = 1\n").exact);
        assert!(!scan("class A:\n    def a(self):\n\n    def b(self):\n        pass\n").exact);
    }

    #[test]
    fn gives_up_when_unsure() {
        for text in [
            "x = (1,\n",
            "x = 'a\ny = 1\n",
            "x = 1 \\ y\n",
            "x = 1\r y = 2\n",
            "x = 1\n    y = 2\n",
            "if x:\ny = 1\n",
            "if x:\n",
            "\u{feff}x = 1\n",
            "x = f\"{d[\"k\"]}\"\n",
            "x = ab'c'\n",
            ")\n",
        ] {
            assert!(!scan(text).exact, "{text:?}");
        }
    }

    #[test]
    fn a_syntax_error_in_what_is_kept_means_a_whole_parse() {
        use crate::pysrc::syntax::{parse, parse_chunks};
        let text = "print(x y)\n\ndef f():\n    return g(1)\n";
        let s = scan(text);
        assert_eq!(s.chunks.len(), 2);
        let whole = parse(text);
        let m = parse_chunks(text, &s, &[true, false]);
        let spans = |m: &crate::pysrc::syntax::Module| -> Vec<_> {
            m.calls.iter().map(|c| (c.callee.clone(), c.span)).collect()
        };
        assert_eq!(spans(&m), spans(&whole));
        assert!(m.by_name.contains_key("f"));
        // Without the error, the left-out chunk is not read.
        let text = "print(x, y)\n\ndef f():\n    return g(1)\n";
        let m = parse_chunks(text, &scan(text), &[true, false]);
        assert_eq!(m.calls.len(), 1);
        assert!(m.funcs.is_empty());
    }

    /// Token soup: the lexer and a parse of any choice of chunks return,
    /// the chunks cover the text in order, and every recorded span lies
    /// inside the text on character boundaries.
    #[test]
    fn never_panics_on_token_soup() {
        use crate::pysrc::syntax::parse_chunks;
        let toks = [
            "def ",
            "class ",
            "import ",
            "from ",
            "@d\n",
            "(",
            ")",
            "[",
            "]",
            ":",
            "\n",
            "\n",
            "    ",
            "\t",
            "x",
            "print(1)",
            "signal.signal(s, h)",
            "'",
            "\"",
            "'''",
            "f\"{",
            "}",
            "rb'",
            "#",
            " # flowrun: allow FR501",
            "\\",
            "\\\n",
            "\r\n",
            "\r",
            "é",
            "日",
            "else:",
            "except:",
            "self.",
            "join()",
            "=",
            ",",
            "lambda: ",
            "\x0c",
            "\u{feff}",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..(next() % 50) {
                text.push_str(toks[(next() % toks.len() as u64) as usize]);
            }
            let s = scan(&text);
            let mut end = 0;
            for c in &s.chunks {
                assert!(c.start == end && c.end >= c.start, "{text:?}");
                assert!(text.is_char_boundary(c.start), "{text:?}");
                end = c.end;
            }
            assert_eq!(end, text.len(), "{text:?}");
            let keep: Vec<bool> = s.chunks.iter().map(|_| next() % 2 == 0).collect();
            let m = parse_chunks(&text, &s, &keep);
            let ok = |sp: crate::source::Span| {
                sp.start <= sp.end
                    && sp.end <= text.len()
                    && text.is_char_boundary(sp.start)
                    && text.is_char_boundary(sp.end)
            };
            assert!(m.calls.iter().all(|c| ok(c.span)), "{text:?}");
            assert!(m.funcs.iter().all(|f| ok(f.span)), "{text:?}");
        }
    }

    #[test]
    fn closure_follows_callers_callees_and_aliases() {
        let a = scan("def quiet():\n    helper()\n\ndef helper():\n    return 1\n\ndef loud():\n    print(1)\n\ndef caller():\n    loud()\n\ndef top():\n    caller()\n\ntop()\n");
        let b = scan(
            "from os import kill as k\n\ndef f():\n    k(1, 2)\n\ndef unrelated():\n    return 2\n",
        );
        let keep = relevant(&[&a, &b], &[false, false]);
        assert_eq!(keep[0], [false, false, true, true, true, true]);
        assert_eq!(keep[1], [true, true, false]);
    }
}
