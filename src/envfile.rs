//! Env files (`env-file "PATH"`): the dotenv syntax, parsed from text.
//!
//! This module does no IO: [`crate::compile`] (the loading layer) reads the
//! files a topology names and hands their text to [`crate::resolve`] as
//! [`EnvFiles`], so `parse`, `resolve`, `check` and `plan` stay pure.
//!
//! The syntax, one variable per line:
//!
//! - blank lines and lines starting with `#` are skipped;
//! - `KEY=value` or `export KEY=value`, spaces allowed around `=`;
//!   `KEY` is `[A-Za-z_][A-Za-z0-9_]*`;
//! - an unquoted value ends at ` #` (a comment) and is trimmed;
//! - `'…'` is taken literally; `"…"` knows the escapes `\"`, `\\`, `\n`,
//!   `\t` and `\$`; a quoted value ends on its line, and only a comment may
//!   follow it;
//! - nothing is expanded: `$HOME` and `${HOME}` stay as written.

use std::collections::BTreeMap;

/// The text of every env file a topology names, keyed by the path as
/// written in the topology; `Err` holds why the file could not be read.
#[derive(Clone, Debug, Default)]
pub struct EnvFiles {
    files: BTreeMap<String, Result<String, String>>,
}

impl EnvFiles {
    pub fn new() -> Self {
        EnvFiles::default()
    }

    pub fn insert(&mut self, path: impl Into<String>, content: Result<String, String>) {
        self.files.insert(path.into(), content);
    }

    pub fn contains(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// The file's text, or why it could not be read (a path that was never
    /// loaded was not read either).
    pub fn get(&self, path: &str) -> Result<&str, &str> {
        match self.files.get(path) {
            Some(Ok(text)) => Ok(text),
            Some(Err(why)) => Err(why),
            None => Err("it was not loaded"),
        }
    }
}

/// One variable of an env file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// 1-based line number.
    pub line: usize,
}

/// A finding inside an env file: its 1-based line and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
    /// For a key set twice: the line that set it first.
    pub first_set: Option<usize>,
}

/// Parse an env file: its variables in order (a duplicate key is a
/// problem, and the first value is kept) and every problem found.
pub fn parse(text: &str) -> (Vec<Entry>, Vec<Problem>) {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut entries: Vec<Entry> = Vec::new();
    let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some((key, value))) => {
                if let Some(&first) = first_line.get(&key) {
                    problems.push(Problem {
                        line: n,
                        message: format!("`{key}` is set again (first set on line {first})"),
                        first_set: Some(first),
                    });
                    continue;
                }
                first_line.insert(key.clone(), n);
                entries.push(Entry {
                    key,
                    value,
                    line: n,
                });
            }
            Err(message) => problems.push(Problem {
                line: n,
                message,
                first_set: None,
            }),
        }
    }
    (entries, problems)
}

fn parse_line(line: &str) -> Result<Option<(String, String)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = match line.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => line,
    };
    let Some((key, value)) = line.split_once('=') else {
        return Err("expected `KEY=value`".into());
    };
    let key = key.trim_end();
    let valid_key = key
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid_key {
        return Err(format!(
            "`{}` is not a variable name (letters, digits and `_`, not starting with a digit)",
            key.escape_debug()
        ));
    }
    Ok(Some((key.to_string(), parse_value(value.trim_start())?)))
}

fn parse_value(v: &str) -> Result<String, String> {
    let (quote, body) = match v.chars().next() {
        Some(q @ ('"' | '\'')) => (q, &v[1..]),
        _ => {
            // Unquoted: up to a ` #` comment.
            let end = v
                .char_indices()
                .find(|&(i, c)| c == '#' && (i == 0 || v[..i].ends_with([' ', '\t'])))
                .map_or(v.len(), |(i, _)| i);
            return Ok(v[..end].trim_end().to_string());
        }
    };
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            let rest = body[i + 1..].trim_start();
            if !(rest.is_empty() || rest.starts_with('#')) {
                return Err(format!("unexpected text after the closing {quote}"));
            }
            return Ok(out);
        }
        if c == '\\' && quote == '"' {
            match chars.next().map(|(_, e)| e) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(e @ ('"' | '\\' | '$')) => out.push(e),
                Some(e) => {
                    out.push('\\');
                    out.push(e);
                }
                None => break,
            }
            continue;
        }
        out.push(c);
    }
    Err(format!(
        "the {quote} is not closed on this line (values span one line)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        let (entries, problems) = parse(text);
        assert!(problems.is_empty(), "{problems:?}");
        entries.into_iter().map(|e| (e.key, e.value)).collect()
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn dotenv_forms() {
        assert_eq!(
            vars("# c\n\nA=1\nexport B = two words # note\nC=\"x \\\"y\\\" #z\" # c\nD='$HOME \\n'\nE=${HOME}\r\nF=\nG=a#b\n"),
            vec![
                pair("A", "1"),
                pair("B", "two words"),
                pair("C", "x \"y\" #z"),
                pair("D", "$HOME \\n"),
                pair("E", "${HOME}"),
                pair("F", ""),
                pair("G", "a#b"),
            ]
        );
        assert_eq!(vars("\u{FEFF}export=1"), vec![pair("export", "1")]);
    }

    #[test]
    fn problems_have_line_numbers() {
        let (entries, problems) = parse("A=1\nnot a line\n1X=2\nA=3\nB=\"open\nC='x' y\n");
        assert_eq!(entries.len(), 1);
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6]);
        assert!(problems[2].message.contains("first set on line 1"));
    }
}
