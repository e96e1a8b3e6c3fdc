//! The property test: no input makes flowrun panic, and every diagnostic
//! span is valid for its input.
//!
//! At least 100,000 inputs per run go through `compile` → `plan::build` →
//! `plan::text` and `plan::json` → `render::human` / `render::json`: random bytes, random
//! ASCII over the language's alphabet, truncations of every example and
//! fixture at random offsets, and token-level mutations of them (delete,
//! duplicate, swap, replace with keywords, extreme numbers, `forever`,
//! placeholders, unbalanced braces and quotes).
//!
//! The PRNG is seeded from the clock and the seed is printed; rerun a
//! failure with `FLOWRUN_FUZZ_SEED=<seed> cargo test --test never_panics`.
//! `FLOWRUN_FUZZ_SCALE` multiplies the number of inputs (default 1).

use flowrun::diagnostic::Diagnostic;
use flowrun::host::HostLimits;
use flowrun::plan::{self, Scale};
use flowrun::source::{SourceFile, Span};
use flowrun::{compile, render};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// splitmix64: small, fast, good enough to drive mutations.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

pub(crate) fn seed() -> u64 {
    if let Some(s) = std::env::var("FLOWRUN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

pub(crate) fn scale() -> usize {
    std::env::var("FLOWRUN_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// A topology that exercises most of the language, so the mutations have
/// something to work on even before `examples/` exists.
const BUILTIN: &str = r#"# built-in seed
topology ingest {
  shutdown within 60s
  finish when tests exits
  escalate on repeat
  allow FR304 because "drains are bounded by the budget"
  on SIGINT drain
  on SIGTERM drain
  on SIGHUP reload
  on SIGUSR1 forward to worker
  on SIGUSR2 {
    forward SIGTERM to worker
    wait worker within 10s
    restart worker rolling
    drain api worker
    kill
    ignore
  }
  group migrate {
    run "python manage.py migrate"
    once
  }
  group api {
    run "gunicorn app:wsgi --threads {coroutines} --bind 127.0.0.1:{port}"
    processes 4
    coroutines 8
    port 8000
    after migrate succeeded
    ready when http "http://127.0.0.1:{port}/healthz" every 200ms within 30s
    restart on-failure backoff 500ms..30s limit 5 per 60s
    stop SIGTERM drain 20s to group
  }
  group worker {
    run "celery -A app worker --pool gevent --concurrency {coroutines}"
    processes 2
    coroutines 100
    after api ready
    env { QUEUE = "ingest", LOG_LEVEL = "info\t\"x\"" }
    cwd "services/worker"
    stop SIGTERM drain 25s then SIGQUIT drain 1m30s
    process-group shared
    die-with-parent no
    log file "log/{group}.{index}.log" rotate 10MB keep 5
  }
  group tests {
    sh "exec pytest -x tests/integration"
    once
    after worker ready
    ready when tcp "127.0.0.1:{port}" within 5s
  }
}
"#;

/// Every `.pf` in examples/ and tests/fixtures/ (recursively), plus the
/// built-in seed.
pub(crate) fn corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let mut stack = vec![root.join("examples"), root.join("tests/fixtures")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pf") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut texts: Vec<String> = files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    texts.push(BUILTIN.to_string());
    texts
}

const KEYWORDS: &[&str] = &[
    "topology",
    "group",
    "run",
    "sh",
    "processes",
    "coroutines",
    "port",
    "once",
    "after",
    "ready",
    "when",
    "tcp",
    "http",
    "exec",
    "log",
    "file",
    "notify",
    "every",
    "within",
    "restart",
    "never",
    "on-failure",
    "always",
    "backoff",
    "limit",
    "per",
    "stop",
    "drain",
    "then",
    "to",
    "leader",
    "group",
    "env",
    "cwd",
    "process-group",
    "own",
    "shared",
    "die-with-parent",
    "log",
    "rotate",
    "keep",
    "512KB",
    "yes",
    "no",
    "shutdown",
    "finish",
    "exits",
    "succeeds",
    "on",
    "escalate",
    "repeat",
    "allow",
    "because",
    "forward",
    "wait",
    "kill",
    "ignore",
    "reload",
    "rolling",
    "started",
    "succeeded",
    "exited",
    "SIGTERM",
    "SIGINT",
    "SIGKILL",
    "SIGSTOP",
    "SIGQUIT",
    "SIGHUP",
    "SIGUSR1",
    "SIGFOO",
    "FR302",
    "unbounded-drain",
    "FR999",
];

const ODD: &[&str] = &[
    "0",
    "1",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999999",
    "0ms",
    "0s",
    "1h",
    "1m30s",
    "999999999h",
    "18446744073709551615ms",
    "forever",
    "{port}",
    "{index}",
    "{nope}",
    "{",
    "}",
    "{{",
    "}}",
    "\"",
    "\"unterminated",
    "\"\\",
    "\\",
    "#",
    "..",
    "=",
    ",",
    "é",
    "\u{0}",
    "\u{feff}",
    "日本",
    "\t",
    "\r\n",
    "\n",
    "500ms..30s",
    "30s..1s",
    "\"a{port\"",
    "\"{}\"",
    "\"\\q\"",
    "-1",
    "+1",
    "1.5s",
];

/// Split text into tokens, keeping whitespace runs as tokens so rejoining
/// preserves the layout. Strings, words and punctuation are tokens.
pub(crate) fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut i = 0;
    let b = text.as_bytes();
    while i < b.len() {
        let start = i;
        let c = b[i];
        if c.is_ascii_whitespace() {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b"_-.".contains(&b[i])) {
                i += 1;
            }
        } else {
            i += 1;
            while i < b.len() && !text.is_char_boundary(i) {
                i += 1;
            }
        }
        while i < b.len() && !text.is_char_boundary(i) {
            i += 1;
        }
        out.push(&text[start..i.min(b.len())]);
    }
    out
}

pub(crate) fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut toks: Vec<String> = tokens(text).into_iter().map(String::from).collect();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        if toks.is_empty() {
            toks.push(rng.pick(ODD).to_string());
            continue;
        }
        let i = rng.below(toks.len());
        match rng.below(7) {
            0 => {
                toks.remove(i);
            }
            1 => {
                let t = toks[i].clone();
                toks.insert(i, t);
            }
            2 => {
                let j = rng.below(toks.len());
                toks.swap(i, j);
            }
            3 => toks[i] = rng.pick(KEYWORDS).to_string(),
            4 => toks[i] = rng.pick(ODD).to_string(),
            5 => toks.insert(i, format!(" {} ", rng.pick(ODD))),
            _ => {
                // Duplicate a whole range: repeated settings, groups, handlers.
                let j = (i + 1 + rng.below(40)).min(toks.len());
                let range: Vec<String> = toks[i..j].to_vec();
                toks.splice(j..j, range);
            }
        }
    }
    toks.concat()
}

pub(crate) fn truncate(rng: &mut Rng, text: &str) -> String {
    let mut at = rng.below(text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text[..at].to_string()
}

fn random_bytes(rng: &mut Rng) -> String {
    let n = rng.below(300);
    let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub(crate) fn random_ascii(rng: &mut Rng) -> String {
    const ALPHABET: &[u8] = b"topologygrupnacesdwihfm{}\"\\ \n\t#0123456789.=,:SIGTERMR_-";
    let n = rng.below(300);
    let mut s: String = (0..n).map(|_| *rng.pick(ALPHABET) as char).collect();
    if rng.below(2) == 0 {
        s.insert_str(0, "topology t { ");
    }
    s
}

fn check_span(text: &str, span: Span, d: &Diagnostic) -> Result<(), String> {
    let ok = span.start <= span.end
        && span.end <= text.len()
        && text.is_char_boundary(span.start)
        && text.is_char_boundary(span.end);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid span {}..{} (len {}) in {} {}",
            span.start,
            span.end,
            text.len(),
            d.code,
            d.message
        ))
    }
}

/// The whole pipeline for one input; `Err` for an invalid span.
fn run_one(text: &str, host: Option<&HostLimits>) -> Result<(), String> {
    let compiled = compile(SourceFile::new("fuzz.pf", text), host);
    for d in &compiled.diagnostics {
        check_span(text, d.primary.span, d)?;
        for l in &d.related {
            check_span(text, l.span, d)?;
        }
    }
    if let Some(model) = &compiled.model {
        let p = plan::build(model, &Scale::new());
        let t = plan::text(&p, &compiled.source, &compiled.diagnostics);
        assert!(!t.is_empty());
        // Pretty JSON: the serialised plan, not the one-line error fallback.
        let j = plan::json(&p, &compiled.source, &compiled.diagnostics);
        assert!(j.starts_with("{\n  \"schema_version\": "), "{j}");
    }
    let h = render::human(&compiled.source, &compiled.diagnostics, 80, false);
    assert_eq!(h.is_empty(), compiled.diagnostics.is_empty());
    let j = render::json(std::slice::from_ref(&compiled));
    assert!(j.starts_with('['));
    Ok(())
}

/// Feed `count` inputs of one kind; panics (failing the test) with the
/// input, the seed and the reason on the first failure.
fn campaign(name: &str, count: usize, salt: u64, make: impl Fn(&mut Rng, &[String]) -> String) {
    let seed = seed();
    println!("{name}: seed {seed} (FLOWRUN_FUZZ_SEED={seed}), {count} inputs");
    let mut rng = Rng(seed ^ salt);
    let corpus = corpus();
    let host = HostLimits {
        cpus: 2,
        nofile_soft: 1024,
        nofile_hard: 4096,
        nproc_soft: 512,
    };
    let mut failure = None;
    for n in 0..count {
        let input = make(&mut rng, &corpus);
        let with_host = (n % 4 == 0).then_some(&host);
        match catch_unwind(AssertUnwindSafe(|| run_one(&input, with_host))) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                failure = Some(format!("{reason}\ninput #{n}: {input:?}"));
                break;
            }
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failure = Some(format!("panic: {msg}\ninput #{n}: {input:?}"));
                break;
            }
        }
    }
    if let Some(f) = failure {
        panic!("{name} (seed {seed}): {f}");
    }
}

// 100,000 inputs in all, split so the test harness runs them in parallel.

#[test]
fn random_bytes_and_ascii() {
    campaign("random", 20_000 * scale(), 1, |rng, _| {
        if rng.below(2) == 0 {
            random_bytes(rng)
        } else {
            random_ascii(rng)
        }
    });
}

#[test]
fn truncations() {
    campaign("truncations", 20_000 * scale(), 2, |rng, corpus| {
        let src = rng_pick(rng, corpus);
        truncate(rng, src)
    });
}

#[test]
fn token_mutations_a() {
    campaign("mutations-a", 30_000 * scale(), 3, |rng, corpus| {
        let src = rng_pick(rng, corpus);
        mutate(rng, src)
    });
}

#[test]
fn token_mutations_b() {
    campaign("mutations-b", 30_000 * scale(), 4, |rng, corpus| {
        let t = {
            let src = rng_pick(rng, corpus);
            mutate(rng, src)
        };
        if rng.below(3) == 0 {
            truncate(rng, &t)
        } else {
            t
        }
    });
}

/// Renderers on their own: random valid spans (empty, at the end, across
/// lines, on tabs and multi-byte characters) over random and mutated texts,
/// through every format. Independent of what the compiler reports.
#[test]
fn renderers_with_random_spans() {
    let seed = seed();
    let count = 5_000 * scale();
    println!("renderers: seed {seed} (FLOWRUN_FUZZ_SEED={seed}), {count} inputs");
    let mut rng = Rng(seed ^ 5);
    let corpus = corpus();
    let codes: Vec<&str> = flowrun::rules::RULES.iter().map(|r| r.code).collect();
    for n in 0..count {
        let mut text = match rng.below(3) {
            0 => random_bytes(&mut rng),
            1 => random_ascii(&mut rng).replace('e', "\té\r\n"),
            _ => {
                let src = rng_pick(&mut rng, &corpus);
                mutate(&mut rng, src)
            }
        };
        // Long lines: a run of 60,000 to 70,000 characters somewhere (past
        // the 65,535 columns a formatting width can take).
        if rng.below(20) == 0 {
            let at = random_span(&mut rng, &text).start;
            let fill = if rng.below(2) == 0 { "a" } else { "é" };
            text.insert_str(at, &fill.repeat(60_000 + rng.below(10_000)));
        }
        // Many labels on some findings.
        let related_max = if rng.below(10) == 0 { 200 } else { 3 };
        let mut diags = Vec::new();
        for _ in 0..rng.below(4) {
            let code = *rng.pick(&codes);
            let mut d = Diagnostic::new(
                code,
                "msg",
                flowrun::diagnostic::Label::new(random_span(&mut rng, &text), "here"),
            );
            for _ in 0..rng.below(related_max) {
                d = d.with_related(flowrun::diagnostic::Label::new(
                    random_span(&mut rng, &text),
                    "related",
                ));
            }
            if rng.below(2) == 0 {
                d = d.with_help("help text");
            }
            diags.push(d);
        }
        let source = SourceFile::new("r.pf", text.clone());
        let compiled = flowrun::Compiled {
            source: source.clone(),
            model: None,
            diagnostics: diags.clone(),
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            let width = 20 + rng_width(n);
            let h = render::human(&source, &diags, width, n % 2 == 0);
            assert_eq!(h.is_empty(), diags.is_empty());
            let files = std::slice::from_ref(&compiled);
            for out in [render::json(files), render::sarif(files, &[])] {
                serde_json::from_str::<serde_json::Value>(&out).expect("valid JSON");
            }
            assert!(render::github(files).lines().count() >= diags.len());
            assert_eq!(render::short(files).lines().count(), diags.len());
        }));
        if result.is_err() {
            panic!("renderers (seed {seed}) panicked on input #{n}: {text:?} with {diags:?}");
        }
    }
}

fn random_span(rng: &mut Rng, text: &str) -> Span {
    let mut a = rng.below(text.len() + 1);
    let reach = if rng.below(10) == 0 { 100_000 } else { 40 };
    let mut b = (a + rng.below(reach)).min(text.len());
    if rng.below(4) == 0 {
        b = a; // empty span
    }
    if rng.below(8) == 0 {
        a = text.len();
        b = a; // at the very end
    }
    while !text.is_char_boundary(a) {
        a -= 1;
    }
    while !text.is_char_boundary(b) {
        b -= 1;
    }
    Span::new(a, b.max(a))
}

fn rng_width(n: usize) -> usize {
    (n * 7919) % 200
}

fn rng_pick<'a>(rng: &mut Rng, corpus: &'a [String]) -> &'a str {
    &corpus[rng.below(corpus.len())]
}

/// Inputs that once panicked somewhere in the pipeline, found by this test.
#[test]
fn known_crashers() {
    let crashers = [
        // plan::build: 4 billion processes were expanded one by one (an
        // out-of-memory abort); now FR104 and a clamp in plan::build.
        "topology t {\n  group a {\n    run \"x\"\n    processes 4294967295\n  }\n}\n".to_string(),
        // resolve: `65_536 - processes` underflowed in the FR104 help text.
        "topology web {\n  group edge {\n    run \"envoy --port {port}\"\n    processes 4294967295\n    port 65534\n  }\n}\n".to_string(),
        // render::human: miette formats a label's column as a width, which
        // panics past 65,535; long lines are now cut down around labels.
        format!(
            "topology t {{\n  group api {{\n    run \"{} {{prot}}\"\n  }}\n}}\n",
            "a".repeat(65_530)
        ),
        // render::human: 20,000 labels on one finding took 32 s (quadratic).
        format!(
            "topology t {{\n  group a {{\n    run \"x{}\"\n  }}\n}}\n",
            " | y".repeat(20_000)
        ),
    ];
    for input in crashers {
        let started = std::time::Instant::now();
        match catch_unwind(AssertUnwindSafe(|| run_one(&input, None))) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => panic!("{reason}\ninput: {input:?}"),
            Err(_) => panic!("panicked on {input:?}"),
        }
        // Generous: a debug build on a loaded machine; quadratic was 30 s+.
        assert!(started.elapsed().as_secs() < 20, "slow on {input:.80?}");
    }
}

#[test]
fn tokens_rejoin_to_the_input() {
    for t in corpus() {
        assert_eq!(tokens(&t).concat(), t);
    }
    assert_eq!(tokens("a \"b\\\" c\" é{").concat(), "a \"b\\\" c\" é{");
}

#[test]
fn invalid_spans_are_caught() {
    let d = Diagnostic::new(
        "FR001",
        "x",
        flowrun::diagnostic::Label::new(Span::new(0, 2), ""),
    );
    assert!(check_span("é", Span::new(0, 2), &d).is_ok());
    assert!(check_span("é", Span::new(0, 1), &d).is_err());
    assert!(check_span("é", Span::new(2, 3), &d).is_err());
    assert!(check_span("ab", Span::new(2, 1), &d).is_err());
}
