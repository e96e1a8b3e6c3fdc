//! The command line: one clap subcommand per verb, and the exit codes.
//!
//! `main` calls [`main`] and exits with what it returns. Exit codes:
//! 0 clean; 1 findings at or above the failing severity (or `plan --check`
//! found a difference); 2 usage or I/O error, or a file that does not
//! compile where a model is needed (`plan` of an unparsable file, `up`
//! with lint errors). `up` exits with the runtime's status (docs/events.md).
//!
//! Nothing here starts a thread or a runtime: `up` forks, so it must be
//! entered from a single-threaded process.

use crate::diagnostic::Severity;
use crate::exec::cgroup::Containment;
use crate::exec::{LogFormat, UpOptions};
use crate::host::HostLimits;
use crate::plan::{self, Scale};
use crate::render;
use crate::rules::{self, RULES};
use crate::source::SourceFile;
use crate::{compile, Compiled};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Lint, plan and run process topologies declared in `.pf` files.
#[derive(Debug, Parser)]
#[command(name = "flowrun", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse, resolve and check files for signal and shutdown hazards.
    Lint(LintArgs),
    /// Print the fully resolved topology, deterministically.
    Plan(PlanArgs),
    /// Start, supervise and gracefully tear down a topology.
    Up(UpArgs),
    /// Print the long explanation of a rule.
    Explain {
        /// A rule code (`FR302`) or name (`double-delivery`).
        #[arg(value_name = "CODE|NAME")]
        rule: String,
    },
    /// List every rule: code, name, severity and summary.
    Rules,
    /// Operate a running topology through its control socket.
    #[command(flatten)]
    Control(crate::control::commands::ControlCommand),
}

#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// Topology files to lint; `-` reads standard input. A file named
    /// twice is linted once.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The path reported for standard input (`-`) [default: <stdin>].
    #[arg(long, value_name = "PATH")]
    pub stdin_filename: Option<String>,
    /// Output format [default: human].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<LintFormat>,
    /// Fail (exit 1) on warnings too.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub deny: Option<Deny>,
    /// Check capacity (FR205) against this machine's CPUs and rlimits.
    #[arg(long)]
    pub host: bool,
    /// Lint the topology only: do not read the Python workers' source
    /// (FR500 onwards).
    #[arg(long)]
    pub no_source: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LintFormat {
    /// Graphical report with the source snippet (miette).
    Human,
    /// `file:line:col: severity[CODE] message`.
    Short,
    /// An array of files with their findings (docs/lint-json.md).
    Json,
    /// SARIF 2.1.0 for code-scanning upload.
    Sarif,
    /// GitHub Actions workflow annotations.
    Github,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Deny {
    /// Warnings fail the run as errors do.
    Warnings,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The topology file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text", value_name = "FORMAT")]
    pub format: PlanFormat,
    /// Compare with a committed plan; print a unified diff and exit 1 when
    /// they differ.
    #[arg(long, value_name = "COMMITTED")]
    pub check: Option<PathBuf>,
    /// Show secrets as written: environment values whose names look secret
    /// (`*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*KEY*`, …), `--token`-style
    /// arguments and URL passwords are `<redacted>` otherwise.
    #[arg(long)]
    pub show_secrets: bool,
    /// The containment `up` will be asked for, shown in the plan (the plan
    /// records the request; what `auto` picks is decided by `up` on the
    /// machine it runs on).
    #[arg(long, value_enum, default_value = "auto", value_name = "MODE")]
    pub containment: ContainmentArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The topology file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Run N processes of group G instead of its `processes` (repeatable).
    #[arg(long, value_name = "G=N")]
    pub scale: Vec<String>,
    /// Lifecycle events as human lines or JSON lines (docs/events.md).
    #[arg(long, value_enum, default_value = "human", value_name = "FORMAT")]
    pub log_format: LogFormatArg,
    /// Prefix relayed output lines with a timestamp.
    #[arg(long)]
    pub timestamps: bool,
    /// How processes are contained: cgroup v2 where a writable hierarchy
    /// exists (auto), cgroup v2 or refuse to start, or process groups.
    #[arg(long, value_enum, default_value = "auto", value_name = "MODE")]
    pub containment: ContainmentArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ContainmentArg {
    Auto,
    Cgroup,
    ProcessGroup,
}

impl From<ContainmentArg> for plan::Containment {
    fn from(c: ContainmentArg) -> Self {
        match c {
            ContainmentArg::Auto => plan::Containment::Auto,
            ContainmentArg::Cgroup => plan::Containment::Cgroup,
            ContainmentArg::ProcessGroup => plan::Containment::ProcessGroup,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Human,
    Json,
}

/// Parse the arguments, run the command, return the exit code.
pub fn main() -> i32 {
    match Cli::try_parse() {
        Ok(cli) => run(cli),
        Err(e) => usage_error(&e),
    }
}

/// Run a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Lint(args) => lint(&args),
        Command::Plan(args) => plan_cmd(&args),
        Command::Up(args) => up(args),
        Command::Explain { rule } => explain(&rule),
        Command::Rules => list_rules(),
        Command::Control(cmd) => crate::control::commands::run(cmd),
    }
}

/// clap's errors, made concise: `--help`/`--version` print as usual (exit
/// 0); misuse prints one `error: …` line (with clap's tip folded in) and
/// one usage line, and exits 2.
fn usage_error(e: &clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = out(&e.render().to_string());
            return 0;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{}", e.render());
            return 2;
        }
        _ => {}
    }
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut first = lines
        .next()
        .unwrap_or("error: invalid arguments")
        .to_string();
    let mut usage = None;
    for l in lines {
        if let Some(tip) = l.strip_prefix("tip: ") {
            first.push_str(&format!(" ({tip})"));
        } else if l.starts_with("Usage: ") {
            usage.get_or_insert_with(|| l.to_string());
        } else if usage.is_none() && !l.starts_with("For more information") {
            // Continuation of the message, e.g. the missing arguments.
            first.push(' ');
            first.push_str(l);
        }
    }
    eprintln!("{first}");
    if let Some(u) = usage {
        eprintln!("{u} (see --help)");
    }
    2
}

/// Write to stdout. A closed pipe (`flowrun rules | head -1`) ends output
/// quietly; any other write error is reported and turns into exit code 2.
fn out(s: &str) -> Result<(), i32> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(s.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(0),
        Err(e) => {
            eprintln!("flowrun: cannot write output: {e}");
            Err(2)
        }
    }
}

/// Combine an output result with the exit code the command wants.
fn finish(written: Result<(), i32>, code: i32) -> i32 {
    match written {
        Ok(()) | Err(0) => code,
        Err(c) => c,
    }
}

/// Colour is used only on a terminal and when `NO_COLOR` is unset or empty.
fn color_for(is_tty: bool) -> bool {
    is_tty && std::env::var_os("NO_COLOR").map_or(true, |v| v.is_empty())
}

/// The terminal's width, else `COLUMNS`, else 100.
fn width_for(fd: i32) -> usize {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ only writes a `winsize` into the pointer we pass.
    let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        return usize::from(ws.ws_col);
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c: &usize| c > 0)
        .unwrap_or(100)
}

/// Read a topology file as UTF-8; the error is the one-line message.
fn read_source(path: &Path) -> Result<SourceFile, String> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| format!("flowrun: cannot read {name}: {}", io_reason(&e)))?;
    utf8_source(name, bytes)
}

/// Standard input as a topology named `name`.
fn read_stdin(name: &str) -> Result<SourceFile, String> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes)
        .map_err(|e| format!("flowrun: cannot read {name}: {}", io_reason(&e)))?;
    utf8_source(name.to_string(), bytes)
}

/// The bytes of a topology as a source file, if they are UTF-8.
fn utf8_source(name: String, bytes: Vec<u8>) -> Result<SourceFile, String> {
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "flowrun: cannot read {name}: not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    Ok(SourceFile::new(name, text))
}

/// `No such file or directory` rather than `... (os error 2)`.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The files to lint, each once: `-` is standard input; two names of one
/// file (`a.pf`, `./a.pf`) are one file, reported by the first name.
fn unique_inputs(files: &[PathBuf]) -> Vec<&Path> {
    let mut seen = std::collections::HashSet::new();
    files
        .iter()
        .filter(|p| {
            let key = if p.as_os_str() == "-" {
                PathBuf::from("-")
            } else {
                p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
            };
            seen.insert(key)
        })
        .map(PathBuf::as_path)
        .collect()
}

fn lint(args: &LintArgs) -> i32 {
    let host = args.host.then(HostLimits::detect);
    let mut compiled = Vec::new();
    let mut unreadable = Vec::new();
    for path in unique_inputs(&args.files) {
        let stdin = path.as_os_str() == "-";
        let read = if stdin {
            read_stdin(args.stdin_filename.as_deref().unwrap_or("<stdin>"))
        } else {
            read_source(path)
        };
        match read {
            Ok(source) => {
                let mut c = compile(source, host.as_ref());
                // Workers are found relative to the topology file; for
                // standard input, to the name it is given (else here).
                let base = match (stdin, args.stdin_filename.as_deref()) {
                    (false, _) => path,
                    (true, Some(name)) => Path::new(name),
                    (true, None) => Path::new("./-"),
                };
                let workers = if args.no_source {
                    Vec::new()
                } else {
                    crate::pysrc::lint_workers(base, &mut c)
                };
                compiled.push(c);
                compiled.extend(workers);
            }
            Err(msg) => {
                eprintln!("{msg}");
                unreadable.push(render::Unreadable {
                    name: path.display().to_string(),
                    message: msg,
                });
            }
        }
    }
    let io_failed = !unreadable.is_empty();
    let stdout_tty = std::io::stdout().is_terminal();
    let format = args.format.unwrap_or(LintFormat::Human);
    let text = match format {
        LintFormat::Human => {
            let (width, color) = (width_for(1), color_for(stdout_tty));
            let mut s: String = compiled
                .iter()
                .filter(|c| !c.diagnostics.is_empty())
                .map(|c| render::human(&c.source, &c.diagnostics, width, color))
                .collect::<Vec<_>>()
                .join("\n");
            if let Some(summary) = summary(&compiled) {
                s.push('\n');
                s.push_str(&summary);
                s.push('\n');
            }
            s
        }
        LintFormat::Short => render::short(&compiled),
        LintFormat::Json => render::json(&compiled),
        LintFormat::Sarif => render::sarif(&compiled, &unreadable),
        LintFormat::Github => render::github(&compiled),
    };
    // Notes (FR500) never fail a run, not even with `--deny warnings`.
    let failing = |s: Severity| {
        s == Severity::Error || (s == Severity::Warning && args.deny == Some(Deny::Warnings))
    };
    let failed = compiled
        .iter()
        .flat_map(|c| &c.diagnostics)
        .any(|d| failing(d.severity));
    let code = if io_failed {
        2
    } else if failed {
        1
    } else {
        0
    };
    // The process exits right after this: freeing a large model piece by
    // piece is measurable (~7% of `lint` on 5,000 groups) and pointless.
    std::mem::forget(compiled);
    finish(out(&text), code)
}

/// `2 errors and 1 warning in 2 of 3 files` (only files with findings are
/// counted; `of N` when some were clean), or `None` when there are none.
fn summary(files: &[Compiled]) -> Option<String> {
    let count = |s| {
        files
            .iter()
            .flat_map(|c| &c.diagnostics)
            .filter(|d| d.severity == s)
            .count()
    };
    let (e, w, n) = (
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Note),
    );
    if e + w + n == 0 {
        return None;
    }
    let plural = crate::plural;
    let parts: Vec<String> = [(e, "error"), (w, "warning"), (n, "note")]
        .into_iter()
        .filter(|&(k, _)| k > 0)
        .map(|(k, what)| plural(k, what))
        .collect();
    let parts = match parts.split_last() {
        Some((last, rest)) if !rest.is_empty() => vec![rest.join(", "), last.clone()],
        _ => parts,
    };
    let dirty = files.iter().filter(|c| !c.diagnostics.is_empty()).count();
    let files = if dirty == files.len() {
        plural(dirty, "file")
    } else {
        format!("{dirty} of {}", plural(files.len(), "file"))
    };
    Some(format!("flowrun: {} in {files}", parts.join(" and ")))
}

/// Print a file's findings as the human report on stderr.
fn report_to_stderr(c: &Compiled) {
    if c.diagnostics.is_empty() {
        return;
    }
    let color = color_for(std::io::stderr().is_terminal());
    eprint!(
        "{}",
        render::human(&c.source, &c.diagnostics, width_for(2), color)
    );
}

/// Read and compile one topology file for `plan` and `up`; an unreadable
/// file is a one-line message and exit status 2.
fn read_and_compile(path: &Path) -> Result<Compiled, i32> {
    match read_source(path) {
        Ok(source) => Ok(compile(source, None)),
        Err(msg) => {
            eprintln!("{msg}");
            Err(2)
        }
    }
}

fn plan_cmd(args: &PlanArgs) -> i32 {
    let compiled = match read_and_compile(&args.file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(model) = &compiled.model else {
        report_to_stderr(&compiled);
        return 2;
    };
    if let Err(msg) = check_size(model, &Scale::new()) {
        eprintln!("flowrun: {}: {msg}", compiled.source.name);
        return 2;
    }
    let mut built = plan::build(model, &Scale::new());
    built.containment = args.containment.into();
    if !args.show_secrets {
        plan::redact::redact(&mut built);
    }
    let fresh = match args.format {
        PlanFormat::Text => plan::text(&built, &compiled.source, &compiled.diagnostics),
        PlanFormat::Json => plan::json(&built, &compiled.source, &compiled.diagnostics),
    };
    let errors = i32::from(compiled.has_errors());
    match &args.check {
        None => finish(out(&fresh), errors),
        Some(committed_path) => {
            let committed = match std::fs::read_to_string(committed_path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!(
                        "flowrun: cannot read {}: {}",
                        committed_path.display(),
                        io_reason(&e)
                    );
                    return 2;
                }
            };
            match plan::diff(&committed, &fresh, &committed_path.display().to_string()) {
                Some(d) => finish(out(&d), 1),
                None => errors,
            }
        }
    }
}

fn up(args: UpArgs) -> i32 {
    let compiled = match read_and_compile(&args.file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    report_to_stderr(&compiled);
    let model = match &compiled.model {
        Some(m) if !compiled.has_errors() => m,
        _ => {
            eprintln!(
                "flowrun: {} does not compile; not starting it",
                compiled.source.name
            );
            return 2;
        }
    };
    let mut scale = Scale::new();
    for s in &args.scale {
        match parse_scale(s, model) {
            Ok((g, n)) => {
                scale.insert(g, n);
            }
            Err(msg) => {
                eprintln!("flowrun: --scale {s}: {msg}");
                return 2;
            }
        }
    }
    if !scale.is_empty() {
        let scaled = crate::scaled_findings(&compiled.source, &scale);
        if scaled.iter().any(|d| d.severity == Severity::Error) {
            let color = color_for(std::io::stderr().is_terminal());
            eprint!(
                "{}",
                render::human(&compiled.source, &scaled, width_for(2), color)
            );
            eprintln!(
                "flowrun: {} does not compile with --scale {}; not starting it",
                compiled.source.name,
                args.scale.join(" --scale ")
            );
            return 2;
        }
    }
    let parent = match args.file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base_dir = match parent.canonicalize() {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "flowrun: cannot resolve {}: {}",
                parent.display(),
                io_reason(&e)
            );
            return 2;
        }
    };
    if let Err(msg) = check_size(model, &scale) {
        eprintln!("flowrun: {}: {msg}", compiled.source.name);
        return 2;
    }
    let mut built = plan::build(model, &scale);
    built.containment = args.containment.into();
    let replan = crate::replan::for_file(args.file.clone(), compiled.source.text.clone(), scale);
    let opts = UpOptions {
        file: args.file,
        base_dir,
        log_format: match args.log_format {
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        },
        timestamps: args.timestamps,
        color: color_for(std::io::stdout().is_terminal()),
        containment: match args.containment {
            ContainmentArg::Auto => Containment::Auto,
            ContainmentArg::Cgroup => Containment::Cgroup,
            ContainmentArg::ProcessGroup => Containment::ProcessGroup,
        },
    };
    crate::exec::up(built, replan, opts)
}

/// A plan lists every process; refuse sizes that cannot fit in memory
/// instead of aborting.
fn check_size(model: &crate::model::Topology, scale: &Scale) -> Result<(), String> {
    let total: u64 = model
        .groups
        .iter()
        .map(|g| u64::from(plan::scaled(g, scale)))
        .sum();
    if total > plan::MAX_PLAN_PROCESSES as u64 {
        return Err(format!(
            "{total} processes in all; flowrun plans at most {}",
            plan::MAX_PLAN_PROCESSES
        ));
    }
    Ok(())
}

/// `G=N` with G a group of the topology and N ≥ 1.
fn parse_scale(s: &str, model: &crate::model::Topology) -> Result<(String, u32), String> {
    let (g, n) = s
        .split_once('=')
        .ok_or_else(|| "expected G=N, e.g. --scale worker=4".to_string())?;
    if model.group_by_name(g).is_none() {
        let names = model.groups.iter().map(|g| g.name.node.as_str());
        return Err(match did_you_mean(g, names) {
            Some(m) => format!("unknown group `{g}` (did you mean `{m}`?)"),
            None => format!("unknown group `{g}`"),
        });
    }
    match n.parse::<u32>() {
        Ok(n) if (1..=plan::MAX_GROUP_PROCESSES).contains(&n) => Ok((g.to_string(), n)),
        _ => Err(format!(
            "N must be a whole number from 1 to {}, not `{n}`",
            plan::MAX_GROUP_PROCESSES
        )),
    }
}

/// The closest candidate, if it is close enough to be a likely typo.
fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .map(|c| (strsim::jaro_winkler(&word, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn explain(rule: &str) -> i32 {
    match rules::lookup(rule) {
        Some(r) => {
            // The explanation is Markdown headed `# CODE name (severity)`.
            let mut text = r.explain.to_string();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            finish(out(&text), 0)
        }
        None => {
            let candidates = RULES.iter().flat_map(|r| [r.code, r.name]);
            match did_you_mean(rule, candidates).and_then(rules::lookup) {
                Some(r) => eprintln!(
                    "flowrun: unknown rule `{rule}` (did you mean `{}` {}?); `flowrun rules` lists them all",
                    r.code, r.name
                ),
                None => eprintln!("flowrun: unknown rule `{rule}`; `flowrun rules` lists them all"),
            }
            2
        }
    }
}

/// The rule table, one rule per line, columns aligned.
pub fn rules_table() -> String {
    let name_w = RULES.iter().map(|r| r.name.len()).max().unwrap_or(4);
    let mut s = format!(
        "{:<5}  {:<name_w$}  {:<8}  SUMMARY\n",
        "CODE", "NAME", "SEVERITY"
    );
    for r in RULES {
        s.push_str(&format!(
            "{:<5}  {:<name_w$}  {:<8}  {}\n",
            r.code,
            r.name,
            r.severity.as_str(),
            r.summary
        ));
    }
    s
}

fn list_rules() -> i32 {
    finish(out(&rules_table()), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn did_you_mean_finds_typos() {
        let c = ["FR302", "double-delivery", "FR303"];
        assert_eq!(
            did_you_mean("doubel-delivery", c.into_iter()),
            Some("double-delivery")
        );
        assert_eq!(did_you_mean("zzzzzz", c.into_iter()), None);
    }

    #[test]
    fn rules_table_lists_every_rule() {
        assert_eq!(rules_table().lines().count(), RULES.len() + 1);
    }
}
