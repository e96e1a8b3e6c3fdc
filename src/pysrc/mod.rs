//! Lint the Python workers a topology runs (FR500–FR506).
//!
//! ```text
//! model::Topology ──launch──▶ Launch ──load (IO)──▶ PyFile + Program ──rules──▶ findings per .py file
//! ```
//!
//! - [`launch`] (pure) reads a group's `run`/`sh` words: which script or
//!   module it starts and whether the launcher itself patches with gevent.
//! - [`load`] is the only part that does IO: it finds the entry file under
//!   the group's working directory, reads it and the local modules it
//!   imports, transitively (bounded; never site-packages), parsing each
//!   once with [`syntax`]. What cannot be found is one FR500 note.
//! - [`syntax`] (pure) parses a file with tree-sitter-python into facts:
//!   imports, calls, functions, `# flowrun: allow` comments.
//! - [`chunks`] (pure) splits files into top-level statements with a cheap
//!   lexer and decides, across the files of a run, which ones can matter
//!   to a rule: only those are parsed.
//! - [`program`] (pure) walks what the master process executes, in order.
//! - `rules/` (pure): one file per rule, like `check/`.
//!
//! Findings are grouped per `.py` file: each file with findings becomes one
//! more [`Compiled`] after the topology's, so every renderer shows them with
//! the `.py` file as their location. Related labels in another file (the
//! patch in a settings module, the `run` line in the topology) carry that
//! file in [`Label::file`](crate::diagnostic::Label).

pub mod chunks;
pub mod launch;
pub mod load;
pub mod program;
mod rules;
pub mod syntax;

use crate::diagnostic::{self, Diagnostic, Label};
use crate::source::SourceFile;
use crate::Compiled;
use std::path::Path;
use std::sync::Arc;

pub use load::{load, Loaded};

/// Load (IO) and lint the Python workers of a compiled topology read from
/// `path`. Notes about workers that could not be found are added to the
/// topology's own findings; every `.py` file with findings is returned as
/// one more [`Compiled`].
pub fn lint_workers(path: &Path, topology: &mut Compiled) -> Vec<Compiled> {
    let Some(model) = &topology.model else {
        return Vec::new();
    };
    let topo = Arc::new(topology.source.clone());
    let dir = path.parent().unwrap_or(Path::new("."));
    let loaded = load(dir, model);
    let (notes, files) = check(&topo, &loaded);
    topology.diagnostics.extend(notes);
    diagnostic::sort(&mut topology.diagnostics);
    files
}

/// Run the rules over loaded workers (pure): the topology's notes, and one
/// [`Compiled`] per `.py` file with findings, in load order.
pub fn check(topo: &Arc<SourceFile>, loaded: &Loaded) -> (Vec<Diagnostic>, Vec<Compiled>) {
    let mut per_file: Vec<Vec<Diagnostic>> = vec![Vec::new(); loaded.files.len()];
    for prog in &loaded.programs {
        let cx = program::Ctx::new(topo, &loaded.files, prog);
        rules::run(&cx, &mut per_file);
    }
    let mut out = Vec::new();
    for (file, mut diags) in loaded.files.iter().zip(per_file) {
        diagnostic::sort(&mut diags);
        apply_allows(file, &mut diags);
        if diags.is_empty() {
            continue;
        }
        out.push(Compiled {
            source: (*file.source).clone(),
            model: None,
            diagnostics: diags,
        });
    }
    (loaded.notes.clone(), out)
}

/// Apply `# flowrun: allow FR5xx because "…"` comments: one on the line of
/// a finding's primary span, or alone on the line above it, suppresses it.
/// An allow that suppresses nothing, or has no reason, is reported (FR002).
fn apply_allows(file: &load::PyFile, diags: &mut Vec<Diagnostic>) {
    let allows = &file.module.allows;
    if allows.is_empty() {
        return;
    }
    let lines = crate::render::LineIndex::new(&file.source);
    let line_of = |offset: usize| lines.line_col(offset).0;
    let targets: Vec<(usize, &syntax::Allow)> = allows
        .iter()
        .map(|a| (line_of(a.span.start) + usize::from(a.own_line), a))
        .collect();
    let mut used = vec![false; allows.len()];
    diags.retain(|d| {
        let line = line_of(d.primary.span.start);
        for (i, (t, a)) in targets.iter().enumerate() {
            if *t == line && a.code == d.code && a.reason.is_some() {
                used[i] = true;
                return false;
            }
        }
        true
    });
    for (i, (_, a)) in targets.iter().enumerate() {
        if used[i] {
            continue;
        }
        let (message, help) = match (&a.reason, crate::rules::by_code(&a.code)) {
            (None, _) => (
                format!("`# flowrun: allow {}` has no reason", a.code),
                "write why it is safe: `# flowrun: allow CODE because \"…\"`".to_string(),
            ),
            (Some(_), Some(r)) => (
                format!(
                    "`# flowrun: allow {}` ({}) suppresses nothing on this line or the next",
                    a.code, r.name
                ),
                format!(
                    "{} does not fire here any more; remove this comment",
                    a.code
                ),
            ),
            (Some(_), None) => (
                format!("`# flowrun: allow {}`: there is no rule {}", a.code, a.code),
                "see `flowrun rules` for the codes".to_string(),
            ),
        };
        diags.push(
            Diagnostic::new("FR002", message, Label::new(a.span, "unused allow")).with_help(help),
        );
    }
    diagnostic::sort(diags);
}
