//! flowrun: run process topologies declared in a small language.
//!
//! The pipeline is a chain of nouns: [`source::SourceFile`] →
//! [`parse`] → [`ast::File`] → [`resolve`] → [`model::Topology`] →
//! [`check`] (findings) → [`plan::Plan`] → [`exec`] (`flowrun up`).
//! `parse`, `resolve`, `check` and `plan` do no IO and never panic on any
//! input; pest types never leave `parse`; `exec` consumes only a `Plan`.
//! See ARCHITECTURE.md.

pub mod ast;
pub mod check;
pub mod cli;
pub mod control;
pub mod diagnostic;
pub mod envfile;
pub mod exec;
pub mod graph;
pub mod host;
pub mod model;
pub mod parse;
pub mod plan;
pub mod pysrc;
pub mod render;
pub mod replan;
pub mod resolve;
pub mod rules;
pub mod source;

use diagnostic::{Diagnostic, Severity};
use source::SourceFile;

/// The result of compiling one file: the resolved model when the file
/// parsed, and every finding from every stage, sorted and with `allow`s
/// applied.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub source: SourceFile,
    pub model: Option<model::Topology>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// `1 error`, `2 errors`: a count and a noun, plural unless the count is
/// one. English plurals of the nouns used in messages (`process` →
/// `processes`).
pub fn plural(n: usize, word: &str) -> String {
    let suffix = match (n, word.ends_with('s')) {
        (1, _) => "",
        (_, true) => "es",
        (_, false) => "s",
    };
    format!("{n} {word}{suffix}")
}

/// Parse, resolve and check one file. `host` enables FR205 (capacity).
///
/// This is the loading layer: it reads the env files the topology names
/// (`env-file "PATH"`, a relative PATH from the directory of the file's
/// name) and hands their text to the pure stages.
pub fn compile(source: SourceFile, host: Option<&host::HostLimits>) -> Compiled {
    let dir = std::path::Path::new(&source.name)
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    compile_with(source, host, &|path: &str| read_env_file(&dir.join(path)))
}

/// The most an env file may hold: a few hundred variables fit many times.
const MAX_ENV_FILE_BYTES: u64 = 1 << 20;

/// Read one env file: a regular file of at most [`MAX_ENV_FILE_BYTES`] in
/// UTF-8 (so `env-file "/dev/zero"` is refused rather than read forever).
fn read_env_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let reason = |e: std::io::Error| {
        let s = e.to_string();
        match s.find(" (os error") {
            Some(i) => s[..i].to_lowercase(),
            None => s,
        }
    };
    let file = std::fs::File::open(path).map_err(reason)?;
    if !file.metadata().map_err(reason)?.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_ENV_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(reason)?;
    if bytes.len() as u64 > MAX_ENV_FILE_BYTES {
        return Err(format!("larger than {} KiB", MAX_ENV_FILE_BYTES / 1024));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

/// [`compile`] with env files read by `read_env_file` (path as written →
/// text, or why it cannot be read): no other IO.
pub fn compile_with(
    source: SourceFile,
    host: Option<&host::HostLimits>,
    read_env_file: &dyn Fn(&str) -> Result<String, String>,
) -> Compiled {
    let (file, mut diagnostics) = parse::parse(&source);
    let model = file.map(|file| {
        let mut env_files = envfile::EnvFiles::new();
        for path in ast::env_file_paths(&file) {
            if !env_files.contains(path) {
                env_files.insert(path, read_env_file(path));
            }
        }
        let (model, found) = resolve::resolve_with(&source, &file, &env_files);
        diagnostics.extend(found);
        diagnostics.extend(check::check(&source, &file, &model, host));
        model
    });
    if let Some(model) = &model {
        check::apply_allows(model, &mut diagnostics);
    }
    diagnostic::sort(&mut diagnostics);
    Compiled {
        source,
        model,
        diagnostics,
    }
}

/// The findings of the topology as `--scale` changes it: each scaled
/// group's `processes` is set to its new count (or added, at the group's
/// name) and the file is resolved and checked again, so port ranges that
/// now overlap or run past 65535 are reported like written ones.
pub fn scaled_findings(source: &SourceFile, scale: &plan::Scale) -> Vec<Diagnostic> {
    use crate::ast::{Setting, SettingKind, TopItemKind};
    use crate::source::Spanned;
    let (file, mut diags) = parse::parse(source);
    let Some(mut file) = file else {
        return diags;
    };
    for item in &mut file.topology.items {
        let TopItemKind::Group(g) = &mut item.kind else {
            continue;
        };
        let Some(&n) = scale.get(&g.name.node) else {
            continue;
        };
        let mut found = false;
        for s in &mut g.settings {
            if let SettingKind::Processes(p) = &mut s.kind {
                p.node = u64::from(n);
                found = true;
            }
        }
        if !found {
            g.settings.push(Setting {
                kind: SettingKind::Processes(Spanned::new(u64::from(n), g.name.span)),
                span: g.name.span,
            });
        }
    }
    let (model, found) = resolve::resolve(source, &file);
    diags.extend(found);
    diags.extend(check::check(source, &file, &model, None));
    check::apply_allows(&model, &mut diags);
    diagnostic::sort(&mut diags);
    diags
}

#[cfg(test)]
mod tests {
    #[test]
    fn plural() {
        assert_eq!(super::plural(1, "error"), "1 error");
        assert_eq!(super::plural(0, "error"), "0 errors");
        assert_eq!(super::plural(2, "process"), "2 processes");
        assert_eq!(super::plural(1, "process"), "1 process");
    }
}
