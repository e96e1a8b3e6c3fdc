//! The parser's two paths agree: wherever the hand-written fast path
//! (`parse_fast`) returns an AST, the pest path (`parse_pest`, the
//! reference) returns the identical AST, spans included, and no
//! diagnostic; and the fast path reads every valid file of the repository
//! (else those files silently take the slow path), short of a statement it
//! does not know yet (a statement new to the grammar), which is printed.
//!
//! Inputs: every `.pf` of examples/, tests/fixtures/ and tests/corpus/,
//! edge cases of whitespace, comments and separators, and generated inputs
//! (the never-panic test's mutations and truncations, plus re-spacing of
//! valid files). `FLOWRUN_FUZZ_SEED` and `FLOWRUN_FUZZ_SCALE` work as there.

use crate::never_panics::{self, Rng};
use flowrun::parse::{parse, parse_fast, parse_pest, GaveUp};
use flowrun::source::SourceFile;
use std::path::{Path, PathBuf};

/// `Ok(true)`: the fast path read it and agrees; `Ok(false)`: it gave up;
/// `Err`: the two paths disagree.
fn agree(text: &str) -> Result<bool, String> {
    let src = SourceFile::new("t.pf", text);
    let Ok(fast) = parse_fast(&src) else {
        return Ok(false);
    };
    let (slow, diags) = parse_pest(&src);
    if !diags.is_empty() {
        return Err(format!(
            "the fast path accepted what pest rejects: {}\n{text:?}",
            diags[0].message
        ));
    }
    if let Some(slow) = slow.filter(|slow| *slow != fast) {
        // The first lines that differ, with the path to them.
        let (f, s) = (format!("{fast:#?}"), format!("{slow:#?}"));
        let at = f
            .lines()
            .zip(s.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        let around = |t: &str| {
            t.lines()
                .skip(at.saturating_sub(6))
                .take(9)
                .collect::<Vec<_>>()
                .join("\n")
        };
        return Err(format!(
            "the ASTs differ on {text:?}\nfast:\n{}\npest:\n{}",
            around(&f),
            around(&s)
        ));
    }
    Ok(true)
}

fn pf_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir)
        .expect("readable directory")
        .flatten()
    {
        let p = e.path();
        if p.is_dir() {
            pf_files_under(&p, out);
        } else if p.extension().is_some_and(|x| x == "pf") {
            out.push(p);
        }
    }
}

fn repository_files() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    for dir in ["examples", "tests/fixtures", "tests/corpus"] {
        pf_files_under(&root.join(dir), &mut paths);
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable file");
            (p, text)
        })
        .collect()
}

#[test]
fn every_repository_file_parses_the_same_on_both_paths() {
    let files = repository_files();
    assert!(files.len() > 100, "only {} files", files.len());
    let mut read = 0;
    for (path, text) in &files {
        let src = SourceFile::new("t.pf", text.as_str());
        let pest_ok = parse_pest(&src).0.is_some();
        let fast_ok = agree(text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if pest_ok && !fast_ok {
            match parse_fast(&src) {
                Err(GaveUp::UnknownStatement(at)) => {
                    let (line, _) = src.line_col(at);
                    println!(
                        "note: {}:{line}: a statement the fast path does not know; \
                         this file takes the pest path until src/parse/fast.rs learns it",
                        path.display()
                    );
                }
                other => panic!(
                    "{}: pest parses it but the fast path gives up ({other:?})",
                    path.display()
                ),
            }
        }
        read += usize::from(fast_ok);
        // `parse` itself: the AST of whichever path, the diagnostics of pest.
        assert_eq!(parse(&src), parse_pest(&src), "{}", path.display());
    }
    assert!(read > 50, "the fast path read only {read} files");
}

/// Whitespace, comments, separators and adjacency where pest's implicit
/// whitespace decides a span (a statement ending in an absent optional
/// part ends after the whitespace that follows it).
#[test]
fn edge_cases_parse_the_same_on_both_paths() {
    let cases = [
        "topology t {}",
        "topology t{}",
        "\u{FEFF}topology t {}\n",
        "\n\n  # c\n;;topology t { } ; \n# end",
        "topology t {\r\n  group a {\r\n    run \"x\"  # c\r\n  }\r\n}\r\n",
        "topology t { group a { run\"x\";once } }",
        "topology t { group a {} ; group b { } }",
        "topology t {\n on SIGINT drain   # trailing\n on SIGTERM drain a b  \n}",
        "topology t {\n on SIGUSR1 { drain ; restart a b ;reload;kill\n ignore }\n}",
        "topology t {\n on SIGUSR1 {\n\n restart a  # x\n restart a rolling # y\n }\n}",
        "topology t {\n on SIGUSR1 forward to a b\t\n on SIGUSR2 forward SIGTERM to a\n}",
        "topology t {\n on SIGHUP { wait a b  ; wait a within forever # w\n wait a within 1m30s }\n}",
        "topology t {\n shutdown within forever\n shutdown within 1h2m3s4ms\n}",
        "topology t {\n finish when api exits # f\n finish when api succeeds\n}",
        "topology t {\n escalate on   repeat ; escalate never\n}",
        "topology t {\n allow FR304   \n allow unbounded-drain because \"why\" # c\n}",
        "topology t {\n env-file \".env\"\n group a { env-file \"a.env\" }\n}",
        "topology t {\n group a {\n after b  # c\n after b ready  # c\n after b exited\n }\n}",
        "topology t {\n group a {\n ready when notify  # n\n ready when tcp \"x\" every 1s  # e\n }\n}",
        "topology t {\n group a {\n ready when http \"u\" within forever\n ready when exec \"e\" every 5ms within 1s\n ready when log \"l\"\n ready when file \"f\"\n }\n}",
        "topology t {\n group a {\n restart never  # r\n restart always backoff 1s .. 2s\n restart on-failure limit 5 per 60s # l\n restart always backoff 1s..2s limit 1 per 1m\n }\n}",
        "topology t {\n group a {\n stop SIGTERM drain 1s  # s\n stop SIGTERM drain 1s then SIGKILL  # k\n stop SIGKILL to group\n stop SIGINT drain forever then SIGQUIT drain 2s to leader # t\n }\n}",
        "topology t {\n group a {\n stop SIGTERM drain 1s then SIGKILL\n }\n}",
        "topology t {\n group a {\n env { A = \"1\", B_2=\"2\",\n\n _c = \"3\", }\n env {}\n env {\n}\n }\n}",
        "topology t {\n group a {\n run \"a \\\"q\\\" \\\\ \\n \\t é 日本 {port}\"\n sh \"\"\n cwd \"/\"\n }\n}",
        "topology t {\n group a {\n processes 4\n coroutines 0\n port 65535 ; once\n process-group own\n process-group shared # p\n die-with-parent yes\n die-with-parent no\n allow FR302\n }\n}",
        "topology t {\n group once { run \"x\" }\n group log-2_x { after once }\n}",
        "topology t {\n group a {\n run \"x\" # \u{0} é\n }\n}",
        "topology a-b_c9 {\n\t\tgroup a\t{\trun\t\"x\"\t}\n}",
    ];
    for text in cases {
        match agree(text) {
            Ok(true) => {}
            Ok(false) => panic!("the fast path gave up on {text:?}"),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Inputs the fast path must give up on (pest words the error), checked
/// against pest's verdict.
#[test]
fn errors_are_left_to_pest() {
    let cases = [
        "",
        "topology t {",
        "topology t { group a { processes 99999999999999999999 } }",
        "topology t { group a { stop SIGTERM drain 99999999999999999999h } }",
        "topology t { group a { run \"\\q\" } }",
        "topology t { group a { run \"x\n\" } }",
        "topology t { group a { stop SIGTERM } }",
        "topology t { group a { stop SIGKILL then SIGTERM drain 1s } }",
        "topology t { group restart { } }",
        "topology t { on SIGINT {} }",
        "topology t { on SIGINT drain restart }",
        "topology t { group a { run \"x\" once } }",
        "topology t { group a { runx \"x\" } }",
        "topology t { group a { env { A-B = \"x\" } } }",
        "topology t { allow FR_1 }",
        "topology t { group a { ready when tcp \"x\" every 1s every 2s } }",
        "topology t { on#x\n SIGINT drain }",
        "topology t {}\ntopology u {}",
        "topology t { group a { after b\r } }",
    ];
    for text in cases {
        let src = SourceFile::new("t.pf", text);
        assert!(parse_fast(&src).is_err(), "fast path read {text:?}");
        let (file, diags) = parse(&src);
        assert_eq!((file.is_none(), diags.len()), (true, 1), "{text:?}");
    }
    // Valid, but not in the fast path's subset (a space before the BOM):
    // pest reads it.
    let src = SourceFile::new("t.pf", " \u{FEFF}topology t {}");
    assert_eq!(parse_fast(&src).err(), Some(GaveUp::Other));
    assert!(parse(&src).0.is_some());
    // A statement the fast path does not know is told apart from errors.
    let src = SourceFile::new(
        "t.pf",
        "topology t {\n  group a {\n    proceses 4\n  }\n}\n",
    );
    assert_eq!(parse_fast(&src).err(), Some(GaveUp::UnknownStatement(29)));
    let src = SourceFile::new("t.pf", "topology t {\n  restart a\n}\n");
    assert_eq!(parse_fast(&src).err(), Some(GaveUp::UnknownStatement(15)));
    let src = SourceFile::new("t.pf", "topology t {\n  on SIGHUP { proceed }\n}\n");
    assert_eq!(parse_fast(&src).err(), Some(GaveUp::UnknownStatement(27)));
}

/// A valid file with its whitespace runs replaced at random: spaces, tabs,
/// comments, `;`, CRLF, blank lines. Most results still parse, which is
/// where the fast path's spans are tested hardest.
fn respace(rng: &mut Rng, text: &str) -> String {
    // A line break stays a separator and a space stays a space, so the
    // result mostly remains valid.
    const SPACES: &[&str] = &[" ", "  ", "\t", " \t "];
    const BREAKS: &[&str] = &[
        "\n", "\r\n", ";", " ; ", "\n\n", " # c\n", "\n # x\n", "#\n", "\t;\t", " # c\r\n",
    ];
    let mut out = String::with_capacity(text.len() * 2);
    for t in never_panics::tokens(text) {
        if t.bytes().all(|b| b.is_ascii_whitespace()) && rng.below(3) == 0 {
            let choices: &[&str] = if t.contains('\n') { BREAKS } else { SPACES };
            let chosen: &&str = rng.pick(choices);
            out.push_str(chosen);
        } else {
            out.push_str(t);
        }
    }
    out
}

/// `count` inputs from `make`; at least `min_read_percent` of them must be
/// valid (read by the fast path), so the comparison is not vacuous.
fn campaign(
    name: &str,
    count: usize,
    salt: u64,
    min_read_percent: usize,
    make: impl Fn(&mut Rng, &[String]) -> String,
) {
    let seed = never_panics::seed();
    let mut rng = Rng(seed ^ salt);
    let corpus: Vec<String> = never_panics::corpus()
        .into_iter()
        .chain(repository_files().into_iter().map(|(_, t)| t))
        .collect();
    let mut read = 0;
    for n in 0..count {
        let input = make(&mut rng, &corpus);
        match agree(&input) {
            Ok(r) => read += usize::from(r),
            Err(e) => panic!("{name} (FLOWRUN_FUZZ_SEED={seed}) input #{n}: {e}"),
        }
    }
    println!("{name}: seed {seed}, {count} inputs, the fast path read {read}");
    assert!(
        read * 100 >= count * min_read_percent,
        "{name}: the fast path read only {read} of {count}"
    );
}

#[test]
fn generated_inputs_parse_the_same_on_both_paths() {
    let scale = never_panics::scale();
    campaign("respaced", 5_000 * scale, 11, 50, |rng, corpus| {
        let src = &corpus[rng.below(corpus.len())];
        respace(rng, src)
    });
    campaign("mutations", 20_000 * scale, 12, 5, |rng, corpus| {
        let src = &corpus[rng.below(corpus.len())];
        let t = never_panics::mutate(rng, src);
        if rng.below(2) == 0 {
            respace(rng, &t)
        } else {
            t
        }
    });
    campaign("truncations", 5_000 * scale, 13, 0, |rng, corpus| {
        let src = &corpus[rng.below(corpus.len())];
        // Half are cut at a line end and closed with the `}`s still open,
        // so many are whole files again.
        let mut t = never_panics::truncate(rng, src);
        if rng.below(2) == 0 {
            t.truncate(t.rfind('\n').map_or(0, |i| i + 1));
            let open = t
                .matches('{')
                .count()
                .saturating_sub(t.matches('}').count());
            t.push_str(&"}\n".repeat(open));
        }
        t
    });
    campaign("random", 5_000 * scale, 14, 0, |rng, _| {
        let mut s = never_panics::random_ascii(rng);
        if rng.below(2) == 0 {
            s.push('}');
        }
        s
    });
}
