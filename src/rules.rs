//! The rule registry: every finding flowrun can report, with its stable code,
//! kebab-case name, default severity, one-line summary and long explanation
//! (`flowrun explain`). The explanations live in `docs/rules/CODE.md`.

use crate::diagnostic::Severity;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Rule {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    /// One line: when it fires.
    pub summary: &'static str,
    /// Markdown: what goes wrong, why, a failing example and the fix.
    #[serde(skip)]
    pub explain: &'static str,
}

macro_rules! rule {
    ($code:literal, $name:literal, $sev:ident, $summary:literal) => {
        Rule {
            code: $code,
            name: $name,
            severity: Severity::$sev,
            summary: $summary,
            explain: include_str!(concat!("../docs/rules/", $code, ".md")),
        }
    };
}

/// Every rule, in code order.
pub static RULES: &[Rule] = &[
    rule!("FR001", "syntax", Error, "the file does not parse"),
    rule!("FR002", "unused-allow", Warning, "an `allow` that suppresses nothing"),
    rule!("FR101", "unknown-group", Error, "a reference to a group that does not exist"),
    rule!("FR102", "duplicate", Error, "two groups with one name, two handlers for one signal, or a setting given twice"),
    rule!("FR103", "unknown-placeholder", Error, "a `{name}` that is not a placeholder, or `{port}` without `port`"),
    rule!("FR104", "invalid-value", Error, "a value out of range: zero processes or coroutines, backoff min > max, an empty command, a port range past 65535, an unknown signal"),
    rule!("FR201", "dependency-cycle", Error, "`after` edges form a cycle"),
    rule!("FR202", "unreachable-condition", Error, "an `after` condition that can never be met"),
    rule!("FR203", "drain-exceeds-budget", Error, "the worst-case teardown path exceeds `shutdown within`"),
    rule!("FR204", "port-overlap", Error, "two groups' port ranges overlap"),
    rule!("FR205", "capacity", Warning, "processes × coroutines and their descriptors do not fit the host's limits"),
    rule!("FR206", "shared-log-file", Error, "two processes write one `log file` (no `{index}` in a group's path, or two groups' paths alike)"),
    rule!("FR301", "join-in-handler", Error, "a handler waits without a bound, or on a group nothing in it stops"),
    rule!("FR302", "double-delivery", Error, "a `process-group shared` group is stopped for a signal the terminal also delivers to it"),
    rule!("FR303", "orphan-risk", Warning, "`die-with-parent no`, or a command that backgrounds or daemonizes itself"),
    rule!("FR304", "unbounded-drain", Warning, "a `drain forever` step"),
    rule!("FR305", "no-graceful-stop", Warning, "neither SIGTERM nor SIGINT triggers a drain"),
    rule!("FR306", "uncatchable-signal", Error, "a handler for SIGKILL/SIGSTOP, or a SIGKILL ladder step with a drain"),
    rule!("FR307", "restart-storm", Warning, "`restart always` with no limit, zero backoff, or on a `once` group"),
    rule!("FR308", "no-escalation", Warning, "`escalate never`: a second Ctrl+C will not stop a hung drain"),
    rule!("FR309", "forward-stops-service", Warning, "a handler forwards a group's stop signal, then neither waits for nor restarts it"),
    rule!("FR310", "secret-in-file", Warning, "a token, password or key written in the file instead of the environment"),
    rule!("FR401", "shell-syntax-in-run", Warning, "`run` contains shell syntax but is not run by a shell"),
    rule!("FR402", "shell-swallows-stop", Warning, "an `sh` script stopped `to leader` that is not a single `exec`'d command"),
    rule!("FR500", "worker-source-not-found", Note, "a group runs Python whose source flowrun could not find, so it was not linted"),
    rule!("FR501", "blocking-in-handler", Error, "a Python signal handler blocks (join, wait, sleep, waitpid, acquire) in a process gevent patches"),
    rule!("FR502", "patch-with-pool", Error, "a process gevent patched (threads or queues) builds a `multiprocessing.Pool`"),
    rule!("FR503", "patch-after-threading", Warning, "gevent patches `threading` after it was imported (directly or through logging, concurrent.futures, a local module)"),
    rule!("FR504", "fork-waitpid", Error, "`os.fork()` then a blocking `os.waitpid()` with gevent's patched `os`"),
    rule!("FR505", "child-signalled-twice", Error, "a worker stops a child in its process group on a signal the topology also delivers to that group"),
    rule!("FR506", "flush-in-handler", Warning, "a Python signal handler flushes stdout or stderr (`print(flush=True)`, `.flush()`, stderr writes, logging) while the main flow writes that buffered stream in a loop"),
];

pub fn by_code(code: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.code.eq_ignore_ascii_case(code))
}

pub fn by_name(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.name.eq_ignore_ascii_case(name))
}

/// Look a rule up by code (`FR304`, any case) or name (`unbounded-drain`).
pub fn lookup(code_or_name: &str) -> Option<&'static Rule> {
    by_code(code_or_name).or_else(|| by_name(code_or_name))
}
