//! The loading layer: the only IO of worker lint.
//!
//! For every group whose command starts Python ([`launch::find`]), find the
//! entry file under the group's working directory (the topology file's
//! directory joined with `cwd`), read it, then read the local modules it
//! imports, transitively. Modules are looked up the way the interpreter
//! would for the program's own code: the script's directory (or the working
//! directory for `-m` and application servers), then `PYTHONPATH` from the
//! group's `env`. A module not found there is the standard library or an
//! installed package and is not read. Each file is read and parsed once per
//! run, however many groups import it; a program reads at most
//! [`MAX_MODULES`] files.
//!
//! Files are parsed on every core. A file holding none of the names the
//! rules look for ([`syntax::RULE_TOKENS`]) whose imports can be read
//! exactly without the parser ([`syntax::imports_only`]) is not parsed;
//! once every program is loaded, such a file that imports a file that
//! matters is parsed after all, and the rest are marked
//! [`PyFile::inert`] (the rules see only their imports, parsed or not).
//! Of the other files only the chunks that can matter are parsed
//! ([`chunks`]), decided over every file read before the parallel pass; a
//! file read after it (an import the line scan missed) is parsed whole,
//! and at the end a file whose chunks that matter grew is parsed again.
//!
//! What cannot be found becomes one FR500 note on the group's `run`/`sh`.

use super::chunks::{self, Scan};
use super::launch::{self, Entry, Found};
use super::syntax::{self, Module};
use crate::diagnostic::{Diagnostic, Label};
use crate::model::{Command, GroupId, Topology};
use crate::source::{SourceFile, Span};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The most files one program may pull in.
pub const MAX_MODULES: usize = 2000;
/// Files larger than this are not read (generated or vendored code).
const MAX_FILE_BYTES: u64 = 4 << 20;

/// One parsed Python file.
#[derive(Debug)]
pub struct PyFile {
    /// Named by its path as the topology would: the topology's directory
    /// joined with the relative path.
    pub source: Arc<SourceFile>,
    /// Dotted module name (`__main__` for a script).
    pub name: String,
    /// The package relative imports start from.
    pub package: String,
    pub module: Module,
    /// Local alias → dotted name (`monkey` → `gevent.monkey`).
    pub bindings: HashMap<String, String>,
    /// For each import of `module.imports`, the local files it loads.
    pub targets: Vec<Vec<usize>>,
    /// No rule can report anything in this file, nor through it: it holds
    /// none of [`syntax::RULE_TOKENS`] and imports only such files. The
    /// rules see its imports and nothing else (its calls and functions are
    /// left out of the program), so whether it was parsed or only had its
    /// imports read (`imports_only`) does not change a finding.
    pub inert: bool,
}

/// A group's Python program.
#[derive(Debug)]
pub struct Program {
    pub group: GroupId,
    pub group_name: String,
    /// The `run`/`sh` literal in the topology.
    pub command_span: Span,
    pub gevent_worker: Option<String>,
    /// What makes the program's stdout and stderr unbuffered (`python -u`,
    /// `PYTHONUNBUFFERED` in the command or the group's `env`), if anything.
    pub unbuffered: Option<String>,
    /// How flowrun stops the group: the ladder's signals (`SIGTERM`, …),
    /// whether they go to the whole process group (`to group`), and the
    /// span of the `stop` setting (`None` when defaulted).
    pub stop_signals: Vec<&'static str>,
    pub stop_to_group: bool,
    pub stop_span: Option<Span>,
    /// `process-group shared`: the terminal's Ctrl+C reaches the group, and
    /// where it is written.
    pub shared_group: Option<Span>,
    /// Index into [`Loaded::files`] of the entry file.
    pub entry: usize,
    /// Dotted name → file, for every local module of this program.
    pub modules: HashMap<String, usize>,
}

#[derive(Debug, Default)]
pub struct Loaded {
    pub files: Vec<PyFile>,
    pub programs: Vec<Program>,
    /// FR500 notes, on the topology.
    pub notes: Vec<Diagnostic>,
}

struct Loader {
    out: Loaded,
    /// Canonical path → file index.
    by_path: HashMap<PathBuf, usize>,
    /// Parse files as they are read (after the parallel pass); before it,
    /// files are only read and their imports scanned.
    parse_now: bool,
    /// Per file: how much of it has been parsed.
    read: Vec<Read>,
    options: LoadOptions,
    /// Per file: holds no rule token.
    token_free: Vec<bool>,
    /// Per file: its chunks ([`LoadOptions::skip_chunks`]).
    scans: Vec<Option<Scan>>,
}

/// How much of a file has been parsed.
#[derive(Clone, Debug, PartialEq)]
enum Read {
    Not,
    /// Only its imports, without the parser ([`syntax::imports_only`]).
    Imports,
    /// The chunks marked `true` ([`chunks`]).
    Chunks(Vec<bool>),
    Whole,
}

/// How to load.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Do not parse a file that holds none of [`syntax::RULE_TOKENS`] when
    /// its imports can be read exactly without the parser (and parse it
    /// after all when it imports a file that matters). Never changes a
    /// finding (tests/it/pysrc.rs compares both ways); on by default.
    pub skip_inert: bool,
    /// Parse only the top-level statements of a file that can matter to a
    /// rule, decided across all the files loaded ([`chunks`]). Never
    /// changes a finding (tests/it/pysrc.rs compares both ways); on by
    /// default.
    pub skip_chunks: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            skip_inert: true,
            skip_chunks: true,
        }
    }
}

/// What a first look at a file finds: whether it holds no rule token, its
/// imports when they can be read without the parser (and the file may be
/// read so), and its chunks.
fn look(text: &str, options: LoadOptions) -> (bool, Option<Module>, Option<Scan>) {
    let token_free = syntax::is_inert(text);
    let imports = if options.skip_inert && token_free {
        syntax::imports_only(text)
    } else {
        None
    };
    let scan = options.skip_chunks.then(|| chunks::scan(text));
    (token_free, imports, scan)
}

/// Load the Python programs of every group of `model`. `dir` is the
/// topology file's directory.
pub fn load(dir: &Path, model: &Topology) -> Loaded {
    load_with(dir, model, LoadOptions::default())
}

/// [`load`] with options.
pub fn load_with(dir: &Path, model: &Topology, options: LoadOptions) -> Loaded {
    let mut l = Loader {
        out: Loaded::default(),
        by_path: HashMap::new(),
        parse_now: false,
        read: Vec::new(),
        options,
        token_free: Vec::new(),
        scans: Vec::new(),
    };
    // Groups whose entry was found: read their files first (imports found
    // by a line scan), parse everything in parallel, then resolve imports
    // from the real parse (reading whatever the scan missed).
    let mut pending = Vec::new();
    // One note per distinct reason and command text.
    let mut noted: HashMap<String, ()> = HashMap::new();
    for (gid, g) in model.groups.iter().enumerate() {
        let found = match &g.command.node {
            Command::Run { argv } => launch::find(argv),
            Command::Sh { script } => launch::find_in_script(script),
        };
        let launch = match found {
            Found::NotPython => continue,
            Found::Unknown(why) => {
                if noted.insert(why.clone(), ()).is_none() {
                    l.out.notes.push(note(&g.name.node, g.command.span, &why));
                }
                continue;
            }
            Found::Python(launch) => launch,
        };
        let mut cwd = match &g.cwd {
            Some(c) => dir.join(c),
            None => dir.to_path_buf(),
        };
        if let Some(cd) = &launch.cd {
            cwd.push(cd);
        }
        let mut roots = Vec::new();
        let (entry_path, name, package) = match &launch.entry {
            Entry::Script(s) | Entry::Executable(s) => {
                let p = cwd.join(s);
                let shebang_needed = matches!(launch.entry, Entry::Executable(_));
                if shebang_needed && !has_python_shebang(&p) {
                    continue;
                }
                roots.push(p.parent().map_or(cwd.clone(), Path::to_path_buf));
                (Some(p), "__main__".to_string(), String::new())
            }
            Entry::Module { name, main } => {
                roots.push(cwd.clone());
                add_pythonpath(&mut roots, &cwd, &g.env);
                let p = find_module(&roots, name, *main);
                let package = if p
                    .as_ref()
                    .is_some_and(|p| p.ends_with("__init__.py") || p.ends_with("__main__.py"))
                {
                    name.clone()
                } else {
                    name.rsplit_once('.')
                        .map_or(String::new(), |(p, _)| p.to_string())
                };
                (p, name.clone(), package)
            }
        };
        if matches!(launch.entry, Entry::Script(_) | Entry::Executable(_)) {
            add_pythonpath(&mut roots, &cwd, &g.env);
        }
        let shown = entry_path.as_ref().map(|p| display(p)).unwrap_or_default();
        let missing = entry_path.as_ref().map_or(true, |p| !p.exists());
        let entry = entry_path.and_then(|p| l.file(&p, &name, &package));
        let Some(entry) = entry else {
            let what = match &launch.entry {
                Entry::Module { name, .. } => {
                    format!("module `{name}` is not under {}", display(&cwd))
                }
                _ if missing => format!("{shown} does not exist"),
                _ => format!("{shown} cannot be read"),
            };
            if noted.insert(what.clone(), ()).is_none() {
                l.out.notes.push(note(&g.name.node, g.command.span, &what));
            }
            continue;
        };
        l.prefetch(entry, &roots);
        pending.push((gid, launch, entry, roots));
    }
    l.parse_all();
    l.parse_now = true;
    for (gid, launch, entry, roots) in pending {
        let g = &model.groups[gid];
        let modules = l.closure(entry, &roots);
        l.out.programs.push(Program {
            group: gid,
            group_name: g.name.node.clone(),
            command_span: g.command.span,
            gevent_worker: launch.gevent_worker,
            unbuffered: launch.unbuffered.or_else(|| {
                g.env
                    .iter()
                    .rfind(|(k, v)| k == "PYTHONUNBUFFERED" && !v.is_empty())
                    .map(|(_, v)| format!("`env {{ PYTHONUNBUFFERED = \"{v}\" }}`"))
            }),
            stop_signals: g.stop.steps.iter().map(|s| s.signal.name()).collect(),
            stop_to_group: g.stop.target == crate::ast::StopTarget::Group,
            stop_span: g.stop.span,
            shared_group: (g.process_group == crate::ast::ProcessGroupMode::Shared)
                .then(|| g.process_group_span.unwrap_or(g.name.span)),
            entry,
            modules,
        });
    }
    l.settle_inert();
    l.out
}

fn note(group: &str, span: Span, why: &str) -> Diagnostic {
    Diagnostic::new(
        "FR500",
        format!("the Python source of group `{group}` was not linted: {why}"),
        Label::new(span, "its worker source is not checked"),
    )
    .with_help("run it as `python path/to/file.py` or `python -m module` with `cwd` set to where the code is, or lint the topology alone with `--no-source`")
}

fn display(p: &Path) -> String {
    let s = p.display().to_string();
    s.strip_prefix("./").map(str::to_string).unwrap_or(s)
}

fn has_python_shebang(p: &Path) -> bool {
    use std::io::Read;
    let mut first = [0u8; 128];
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    let n = f.read(&mut first).unwrap_or(0);
    let line = String::from_utf8_lossy(&first[..n]);
    let line = line.lines().next().unwrap_or("");
    line.starts_with("#!") && line.contains("python")
}

fn add_pythonpath(roots: &mut Vec<PathBuf>, cwd: &Path, env: &[(String, String)]) {
    for (k, v) in env {
        if k == "PYTHONPATH" {
            for part in v
                .split(':')
                .filter(|p| !p.is_empty() && !p.contains('{') && !p.contains('$'))
            {
                let p = cwd.join(part);
                if !roots.contains(&p) {
                    roots.push(p);
                }
            }
        }
    }
}

/// `a.b` → `root/a/b.py` or `root/a/b/__init__.py` (or `__main__.py` for
/// `-m` of a package), in the first root that has it.
fn find_module(roots: &[PathBuf], name: &str, main: bool) -> Option<PathBuf> {
    if name.is_empty() || name.split('.').any(|p| p.is_empty() || p.contains('/')) {
        return None;
    }
    let rel: PathBuf = name.split('.').collect();
    for root in roots {
        let base = root.join(&rel);
        let file = base.with_extension("py");
        if file.is_file() {
            return Some(file);
        }
        if main {
            let m = base.join("__main__.py");
            if m.is_file() {
                return Some(m);
            }
        }
        let init = base.join("__init__.py");
        if init.is_file() {
            return Some(init);
        }
    }
    None
}

impl Loader {
    /// Read and parse a file once; its index.
    fn file(&mut self, path: &Path, name: &str, package: &str) -> Option<usize> {
        let key = std::fs::canonicalize(path).ok()?;
        if let Some(&i) = self.by_path.get(&key) {
            return Some(i);
        }
        let meta = std::fs::metadata(&key).ok()?;
        if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
            return None;
        }
        let bytes = std::fs::read(&key).ok()?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        // Read after the parallel pass: parsed whole (or its imports only).
        let (token_free, read, module, scan) = if self.parse_now {
            let (token_free, imports, scan) = look(&text, self.options);
            match imports {
                Some(m) => (token_free, Read::Imports, m, scan),
                None => (token_free, Read::Whole, syntax::parse(&text), scan),
            }
        } else {
            (false, Read::Not, Module::default(), None)
        };
        self.read.push(read);
        self.token_free.push(token_free);
        self.scans.push(scan);
        let shown = path.strip_prefix(".").unwrap_or(path);
        let source = Arc::new(SourceFile::new(display(shown), text));
        self.out.files.push(PyFile {
            source,
            name: name.to_string(),
            package: package.to_string(),
            module,
            bindings: HashMap::new(),
            targets: Vec::new(),
            inert: false,
        });
        let i = self.out.files.len() - 1;
        self.by_path.insert(key, i);
        Some(i)
    }

    /// Read (without parsing) the local modules `entry` imports,
    /// transitively, as far as a line scan of the imports finds them.
    fn prefetch(&mut self, entry: usize, roots: &[PathBuf]) {
        let mut modules: HashMap<String, usize> = HashMap::new();
        let mut queue = vec![entry];
        let mut seen: std::collections::HashSet<usize> = [entry].into();
        while let Some(f) = queue.pop() {
            let package = self.out.files[f].package.clone();
            for imp in scan_imports(&self.out.files[f].source.text) {
                let (names, _) = import_names(&imp, &package);
                for n in names {
                    if let Some(i) = self.local(&n, roots, &mut modules) {
                        if seen.len() < MAX_MODULES && seen.insert(i) {
                            queue.push(i);
                        }
                    }
                }
            }
        }
    }

    /// Parse every file read so far and not parsed yet, on every core:
    /// only the imports of a file no rule can use, when they can be read
    /// without the parser; only the chunks that can matter of the others
    /// (decided over all of them at once).
    fn parse_all(&mut self) {
        let todo: Vec<usize> = (0..self.out.files.len())
            .filter(|&i| self.read[i] == Read::Not)
            .collect();
        let files = &self.out.files;
        let options = self.options;
        let looked = on_every_core(&todo, |i| look(&files[i].source.text, options));
        for (i, (token_free, imports, scan)) in looked {
            self.token_free[i] = token_free;
            self.scans[i] = scan;
            if let Some(m) = imports {
                self.out.files[i].module = m;
                self.read[i] = Read::Imports;
            }
        }
        let keep = self.relevant();
        let todo: Vec<usize> = (0..self.out.files.len())
            .filter(|&i| self.read[i] == Read::Not)
            .collect();
        self.parse_some(&todo, &keep);
    }

    /// Which chunks of each file can matter (`None` for a file without
    /// chunks: [`LoadOptions::skip_chunks`] is off).
    fn relevant(&self) -> Vec<Option<Vec<bool>>> {
        let with: Vec<usize> = (0..self.scans.len())
            .filter(|&i| self.scans[i].is_some())
            .collect();
        let scans: Vec<&Scan> = with
            .iter()
            .filter_map(|&i| self.scans[i].as_ref())
            .collect();
        let whole: Vec<bool> = with.iter().map(|&i| self.read[i] == Read::Whole).collect();
        let mut out = vec![None; self.scans.len()];
        for (i, k) in with.into_iter().zip(chunks::relevant(&scans, &whole)) {
            out[i] = Some(k);
        }
        out
    }

    /// Parse `todo` on every core: the chunks `keep` marks, or whole.
    fn parse_some(&mut self, todo: &[usize], keep: &[Option<Vec<bool>>]) {
        let files = &self.out.files;
        let scans = &self.scans;
        let parsed = on_every_core(todo, |i| {
            let text = &files[i].source.text;
            match (&scans[i], &keep[i]) {
                (Some(scan), Some(k)) => {
                    (syntax::parse_chunks(text, scan, k), Read::Chunks(k.clone()))
                }
                _ => (syntax::parse(text), Read::Whole),
            }
        });
        for (i, (m, read)) in parsed {
            self.out.files[i].module = m;
            self.read[i] = read;
        }
    }

    /// Mark the files no rule can use ([`PyFile::inert`]): no rule token,
    /// and no local module their imports name — the module, or one under
    /// it (`import a` reaches `a.b.f()`) — in any program is a file that
    /// matters (a function of theirs could call into it). Then parse the
    /// files whose imports alone were read but that turn out to matter,
    /// and parse again the files whose chunks that matter grew with the
    /// files read after the parallel pass.
    fn settle_inert(&mut self) {
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); self.out.files.len()];
        for prog in &self.out.programs {
            let mut names: Vec<(&str, usize)> =
                prog.modules.iter().map(|(n, &f)| (n.as_str(), f)).collect();
            names.sort_unstable();
            let mut files: Vec<usize> = prog.modules.values().copied().collect();
            files.sort_unstable();
            files.dedup();
            for f in files {
                let file = &self.out.files[f];
                for imp in &file.module.imports {
                    for n in import_names(imp, &file.package).0 {
                        let from = names.partition_point(|(m, _)| *m < n.as_str());
                        for &(m, t) in &names[from..] {
                            let under = m.strip_prefix(n.as_str());
                            if !under.is_some_and(|r| r.is_empty() || r.starts_with('.')) {
                                if under.is_none() {
                                    break;
                                }
                                continue;
                            }
                            if t != f && !deps[f].contains(&t) {
                                deps[f].push(t);
                            }
                        }
                    }
                }
            }
        }
        let mut inert = self.token_free.clone();
        loop {
            let mut changed = false;
            for f in 0..inert.len() {
                if inert[f] && deps[f].iter().any(|&t| !inert[t]) {
                    inert[f] = false;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let keep = self.relevant();
        let todo: Vec<usize> = (0..inert.len())
            .filter(|&f| match (&self.read[f], &keep[f]) {
                (Read::Imports, _) => !inert[f],
                (Read::Chunks(had), Some(k)) => had.iter().zip(k).any(|(&h, &k)| k && !h),
                _ => false,
            })
            .collect();
        self.parse_some(&todo, &keep);
        for (file, inert) in self.out.files.iter_mut().zip(inert) {
            file.inert = inert;
        }
    }

    /// Every local module reachable from `entry` by imports; fills each
    /// file's bindings and import targets.
    fn closure(&mut self, entry: usize, roots: &[PathBuf]) -> HashMap<String, usize> {
        let mut modules: HashMap<String, usize> = HashMap::new();
        modules.insert(self.out.files[entry].name.clone(), entry);
        let mut queue = vec![entry];
        let mut seen: std::collections::HashSet<usize> = [entry].into();
        while let Some(f) = queue.pop() {
            let imports = self.out.files[f].module.imports.clone();
            let package = self.out.files[f].package.clone();
            let mut bindings = HashMap::new();
            let mut targets = Vec::with_capacity(imports.len());
            for imp in &imports {
                let (names, binds) = import_names(imp, &package);
                let mut t = Vec::new();
                for n in &names {
                    t.extend(self.local(n, roots, &mut modules));
                }
                bindings.extend(binds);
                for &x in &t {
                    if seen.len() < MAX_MODULES && seen.insert(x) {
                        queue.push(x);
                    }
                }
                targets.push(t);
            }
            let file = &mut self.out.files[f];
            // A file shared by two programs gets the same answers twice.
            file.bindings = bindings;
            file.targets = targets;
        }
        modules
    }

    /// The local file of dotted module `name`, loading it if needed.
    fn local(
        &mut self,
        name: &str,
        roots: &[PathBuf],
        modules: &mut HashMap<String, usize>,
    ) -> Option<usize> {
        if let Some(&i) = modules.get(name) {
            return Some(i);
        }
        if modules.len() >= MAX_MODULES {
            return None;
        }
        let path = find_module(roots, name, false)?;
        let package = if path.ends_with("__init__.py") {
            name.to_string()
        } else {
            name.rsplit_once('.')
                .map_or(String::new(), |(p, _)| p.to_string())
        };
        let i = self.file(&path, name, &package)?;
        modules.insert(name.to_string(), i);
        Some(i)
    }
}

/// `work(i)` for every `i` of `todo`, on up to 8 threads that take the
/// next item as they finish one; the results in no particular order.
fn on_every_core<T: Send>(todo: &[usize], work: impl Fn(usize) -> T + Sync) -> Vec<(usize, T)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(todo.len());
    if threads <= 1 {
        return todo.iter().map(|&i| (i, work(i))).collect();
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = todo.get(k) else { break };
                        out.push((i, work(i)));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// The modules an import loads (in order: `import a.b` loads `a`, then
/// `a.b`; `from p import n` loads `p` and, if it is one, the submodule
/// `p.n`), and the names it binds with their dotted targets.
fn import_names(imp: &syntax::Import, package: &str) -> (Vec<String>, Vec<(String, String)>) {
    let mut names = Vec::new();
    let mut binds = Vec::new();
    let base = if imp.level > 0 {
        let mut parts: Vec<&str> = package.split('.').filter(|p| !p.is_empty()).collect();
        for _ in 1..imp.level {
            parts.pop();
        }
        let mut b = parts.join(".");
        if !imp.module.is_empty() {
            if !b.is_empty() {
                b.push('.');
            }
            b.push_str(&imp.module);
        }
        b
    } else {
        imp.module.clone()
    };
    if imp.from {
        if !base.is_empty() {
            names.push(base.clone());
        }
        for (n, alias) in &imp.names {
            let full = if base.is_empty() {
                n.clone()
            } else {
                format!("{base}.{n}")
            };
            names.push(full.clone());
            binds.push((alias.clone().unwrap_or_else(|| n.clone()), full));
        }
    } else {
        for (n, alias) in &imp.names {
            let mut prefix = String::new();
            for part in n.split('.') {
                if !prefix.is_empty() {
                    prefix.push('.');
                }
                prefix.push_str(part);
                names.push(prefix.clone());
            }
            match alias {
                Some(a) => binds.push((a.clone(), n.clone())),
                None => {
                    let head = n.split('.').next().unwrap_or(n).to_string();
                    binds.push((head.clone(), head));
                }
            }
        }
    }
    (names, binds)
}

/// The import statements of a file found by a line scan, without parsing:
/// only to read ahead the files a program needs, so that they can be
/// parsed in parallel. (What it misses is read later from the real parse.)
fn scan_imports(text: &str) -> Vec<syntax::Import> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let l = line.trim_start();
        let (from, rest) = if let Some(r) = l.strip_prefix("from ") {
            (true, r)
        } else if let Some(r) = l.strip_prefix("import ") {
            (false, r)
        } else {
            continue;
        };
        let mut stmt = rest.split('#').next().unwrap_or("").to_string();
        // `from a import (b,\n c)` and backslash continuations.
        while (stmt.contains('(') && !stmt.contains(')')) || stmt.trim_end().ends_with('\\') {
            let Some(next) = lines.next() else { break };
            stmt = stmt.trim_end().trim_end_matches('\\').to_string();
            stmt.push(' ');
            stmt.push_str(next.split('#').next().unwrap_or(""));
        }
        let stmt = stmt.replace(['(', ')'], " ");
        let list = |s: &str| -> Vec<(String, Option<String>)> {
            s.split(',')
                .filter_map(|part| {
                    let mut w = part.split_whitespace();
                    let name = w.next()?.to_string();
                    let alias = (w.next() == Some("as"))
                        .then(|| w.next().map(str::to_string))
                        .flatten();
                    Some((name, alias))
                })
                .collect()
        };
        if from {
            let Some((module, names)) = stmt.split_once(" import ") else {
                continue;
            };
            let module = module.trim();
            let level = module.chars().take_while(|&c| c == '.').count();
            out.push(syntax::Import {
                level,
                module: module[level..].to_string(),
                names: list(names).into_iter().filter(|(n, _)| n != "*").collect(),
                alias: None,
                from: true,
                span: Span::default(),
            });
        } else {
            out.push(syntax::Import {
                level: 0,
                module: String::new(),
                names: list(&stmt),
                alias: None,
                from: false,
                span: Span::default(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_what_the_parser_finds_in_plain_code() {
        let text = "import os, a.b as c\nfrom . import x\nfrom ..p.q import (r,\n    s as t)  # c\nif x:\n    from m import *\n";
        let scanned: Vec<_> = scan_imports(text)
            .into_iter()
            .map(|i| (i.level, i.module, i.names, i.from))
            .collect();
        let parsed: Vec<_> = syntax::parse(text)
            .imports
            .into_iter()
            .map(|i| (i.level, i.module, i.names, i.from))
            .collect();
        assert_eq!(scanned, parsed);
    }
}
