//! What a worker program does, as the rules need it (pure).
//!
//! [`Ctx`] holds one group's program: its files, the order in which the
//! master process executes imports and calls ([`Ctx::master`]: the entry
//! module's top level, descending into each local module the first time it
//! is imported and into each local function the first time it is called),
//! and the gevent patch in effect ([`Ctx::patch`]). Calls are resolved
//! through each file's import bindings: `monkey.patch_all` is
//! `gevent.monkey.patch_all` after `from gevent import monkey`.

use super::load::{Program, PyFile};
use super::syntax::{Call, Event, FnId};
use crate::diagnostic::Label;
use crate::source::{SourceFile, Span};
use std::collections::HashSet;
use std::sync::Arc;

/// A place in a program: file index and span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct At {
    pub file: usize,
    pub span: Span,
}

/// One executed event of the master process.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub file: usize,
    pub event: Event,
}

/// The gevent monkey-patching in effect in the master process.
#[derive(Clone, Debug)]
pub struct Patch {
    /// The patch call, or `None` when the launcher patches (`gunicorn -k gevent`).
    pub at: Option<At>,
    /// `patch_all(...)`, `patch_thread()`, …, or the launcher.
    pub what: String,
    pub thread: bool,
    pub queue: bool,
    pub os: bool,
    /// Index into [`Ctx::master`] of the patch (0 for a launcher).
    pub step: usize,
}

pub struct Ctx<'a> {
    pub topo: &'a Arc<SourceFile>,
    pub files: &'a [PyFile],
    pub prog: &'a Program,
    pub master: Vec<Step>,
    pub patch: Option<Patch>,
}

/// Bound on the master walk (events), far above real programs.
const MAX_STEPS: usize = 1_000_000;

impl<'a> Ctx<'a> {
    pub fn new(topo: &'a Arc<SourceFile>, files: &'a [PyFile], prog: &'a Program) -> Self {
        let mut cx = Ctx {
            topo,
            files,
            prog,
            master: Vec::new(),
            patch: None,
        };
        cx.master = cx.walk_master();
        cx.patch = cx.find_patch();
        cx
    }

    pub fn call(&self, file: usize, id: usize) -> &'a Call {
        &self.files[file].module.calls[id]
    }

    /// The callee's dotted name with the file's import bindings applied.
    pub fn canon(&self, file: usize, call: &Call) -> String {
        let b = &self.files[file].bindings;
        let (head, rest) = call.callee.split_once('.').unwrap_or((&call.callee, ""));
        match b.get(head) {
            Some(full) if rest.is_empty() => full.clone(),
            Some(full) => format!("{full}.{rest}"),
            None => call.callee.clone(),
        }
    }

    /// The local function a dotted name refers to from `file`: a function
    /// of the file, a method for `self.name`/`cls.name`, or a function of
    /// another local module through the bindings.
    /// Nothing in an inert file (see [`PyFile::inert`]) is resolved.
    pub fn resolve_name(&self, file: usize, name: &str) -> Option<(usize, FnId)> {
        if self.files[file].inert {
            return None;
        }
        let m = &self.files[file].module;
        if let Some(&f) = m.by_name.get(name) {
            return Some((file, f));
        }
        if let Some(method) = name
            .strip_prefix("self.")
            .or_else(|| name.strip_prefix("cls."))
        {
            if let Some(fs) = m.methods.get(method) {
                return fs.first().map(|&f| (file, f));
            }
        }
        let b = &self.files[file].bindings;
        let (head, rest) = name.split_once('.').unwrap_or((name, ""));
        let full = match b.get(head) {
            Some(full) if rest.is_empty() => full.clone(),
            Some(full) => format!("{full}.{rest}"),
            None => return None,
        };
        let (module, func) = full.rsplit_once('.')?;
        let &target = self.prog.modules.get(module)?;
        if self.files[target].inert {
            return None;
        }
        let &f = self.files[target].module.by_name.get(func)?;
        Some((target, f))
    }

    /// Walk the master process's execution order.
    fn walk_master(&self) -> Vec<Step> {
        let mut out = Vec::new();
        let mut modules_done: HashSet<usize> = HashSet::new();
        let mut fns_done: HashSet<(usize, FnId)> = HashSet::new();
        // (file, owner, next event)
        let mut stack: Vec<(usize, Option<FnId>, usize)> = vec![(self.prog.entry, None, 0)];
        modules_done.insert(self.prog.entry);
        while let Some(top) = stack.last_mut() {
            let (file, owner, pos) = *top;
            let events = self.files[file].module.events(owner);
            let Some(&event) = events.get(pos) else {
                stack.pop();
                continue;
            };
            top.2 += 1;
            // An inert file's calls cannot matter: only its imports run.
            if self.files[file].inert && matches!(event, Event::Call(_)) {
                continue;
            }
            out.push(Step { file, event });
            if out.len() >= MAX_STEPS {
                break;
            }
            match event {
                Event::Import(i) => {
                    let targets = self.files[file]
                        .targets
                        .get(i)
                        .map_or(&[][..], Vec::as_slice);
                    // Deepest first: `import a.b` runs a, then a.b.
                    for &t in targets.iter().rev() {
                        if modules_done.insert(t) {
                            stack.push((t, None, 0));
                        }
                    }
                }
                Event::Call(c) => {
                    let call = self.call(file, c);
                    if let Some(target) = self.resolve_name(file, &call.callee) {
                        if fns_done.insert(target) {
                            stack.push((target.0, Some(target.1), 0));
                        }
                    }
                }
            }
        }
        out
    }

    fn find_patch(&self) -> Option<Patch> {
        if let Some(w) = &self.prog.gevent_worker {
            return Some(Patch {
                at: None,
                what: format!("`{w}`"),
                thread: true,
                queue: true,
                os: true,
                step: 0,
            });
        }
        for (step, s) in self.master.iter().enumerate() {
            let Event::Call(c) = s.event else { continue };
            let call = self.call(s.file, c);
            let canon = self.canon(s.file, call);
            let Some(kind) = canon.strip_prefix("gevent.monkey.patch_") else {
                continue;
            };
            let off = |k: &str| call.keyword(k).is_some_and(|a| a.text == "False");
            let (thread, queue, os) = match kind {
                "all" => (!off("thread"), !off("queue"), !off("os")),
                "thread" => (true, false, false),
                "queue" => (false, true, false),
                "os" => (false, false, true),
                _ => (false, false, false),
            };
            return Some(Patch {
                at: Some(At {
                    file: s.file,
                    span: call.span,
                }),
                what: format!("`{}(…)`", call.callee),
                thread,
                queue,
                os,
                step,
            });
        }
        None
    }

    /// A label at `at`, for a finding that lives in file `home`.
    pub fn label(&self, home: usize, at: At, message: impl Into<String>) -> Label {
        if at.file == home {
            Label::new(at.span, message)
        } else {
            Label::in_file(self.files[at.file].source.clone(), at.span, message)
        }
    }

    /// A label on the group's `run`/`sh` in the topology.
    pub fn topo_label(&self, message: impl Into<String>) -> Label {
        Label::in_file(self.topo.clone(), self.prog.command_span, message)
    }

    /// The related label for the patch.
    pub fn patch_label(&self, home: usize, p: &Patch) -> Label {
        match p.at {
            Some(at) => self.label(
                home,
                at,
                format!("gevent patches the process here ({})", p.what),
            ),
            None => self.topo_label(format!(
                "{} patches the process before importing the application",
                p.what
            )),
        }
    }

    /// Every function reachable from `start` through calls to local
    /// functions (itself included), at most `limit` of them.
    pub fn reachable(&self, start: (usize, FnId), limit: usize) -> Vec<(usize, FnId)> {
        let mut seen = vec![start];
        let mut i = 0;
        while i < seen.len() && seen.len() < limit {
            let (file, f) = seen[i];
            i += 1;
            for e in self.files[file].module.events(Some(f)) {
                if let Event::Call(c) = *e {
                    let call = self.call(file, c);
                    if let Some(t) = self.resolve_name(file, &call.callee) {
                        if !seen.contains(&t) {
                            seen.push(t);
                        }
                    }
                }
            }
        }
        seen
    }

    /// Every call of the program's files, with its file.
    pub fn all_calls(&self) -> impl Iterator<Item = (usize, usize, &'a Call)> + '_ {
        let mut files: Vec<usize> = self.prog.modules.values().copied().collect();
        files.sort_unstable();
        files.dedup();
        files.into_iter().flat_map(move |f| {
            self.files[f]
                .module
                .calls
                .iter()
                .enumerate()
                .map(move |(i, c)| (f, i, c))
        })
    }
}
