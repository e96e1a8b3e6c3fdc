//! A flood of malformed traffic for a control socket: the same one for
//! the stand-in runner (`control.rs`) and a real one (`control_up.rs`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Send the protocol's hello and read the answer.
pub fn hello(s: &mut UnixStream) -> BufReader<UnixStream> {
    s.write_all(b"{\"type\":\"hello\",\"protocol\":1}\n")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("\"hello\""), "{line}");
    r
}

/// The error codes of the next `n` answers (`reply` for a reply; streamed
/// log lines, events and gaps are skipped), fewer at EOF.
pub fn read_codes(r: &mut impl BufRead, n: usize) -> Vec<String> {
    let mut codes = Vec::new();
    let mut line = String::new();
    while codes.len() < n {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let v: serde_json::Value = serde_json::from_str(&line).expect("the server sends JSON");
        if matches!(v["type"].as_str(), Some("log" | "event" | "missed")) {
            continue;
        }
        codes.push(v["error"]["code"].as_str().unwrap_or("reply").to_string());
    }
    codes
}

/// A cheap deterministic generator (xorshift) for the fuzzed lines.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A malformed request line (no newline inside).
fn garbage(rng: &mut Rng) -> Vec<u8> {
    let fixed: &[&str] = &[
        "",
        "{",
        "null",
        "[]",
        "{}",
        "[1,2",
        r#"{"type":"request"}"#,
        r#"{"type":"request","id":1}"#,
        r#"{"type":"request","id":"x","request":{"cmd":"ps"}}"#,
        r#"{"type":"request","id":2,"request":{"cmd":"rm","rf":true}}"#,
        r#"{"type":"request","id":3,"request":{"cmd":"ps","extra":1}}"#,
        r#"{"type":"request","id":4,"request":{"cmd":"restart","targets":[]}}"#,
        r#"{"type":"request","id":5,"request":{"cmd":"scale","counts":[{"group":"api","count":0}]}}"#,
        r#"{"type":"request","id":6,"request":{"cmd":"signal","signal":"SIGNOPE","targets":[{"group":"api"}]}}"#,
        r#"{"type":"request","id":7,"request":{"cmd":"logs","tail":-1}}"#,
        r#"{"type":"request","id":8,"request":{"cmd":"down","now":true}}"#,
        r#"{"type":"request","id":18446744073709551616,"request":{"cmd":"ps"}}"#,
        r#"{"type":"hello","protocol":1}"#,
        r#"{"type":"bye"}"#,
        "\u{feff}{\"type\":\"request\"}",
    ];
    match rng.below(4) {
        0 => fixed[rng.below(fixed.len() as u64) as usize]
            .as_bytes()
            .to_vec(),
        1 => {
            // Random bytes, including invalid UTF-8, never a newline.
            let n = rng.below(300) as usize;
            (0..n)
                .map(|_| match rng.below(256) as u8 {
                    b'\n' => b' ',
                    b => b,
                })
                .collect()
        }
        2 => {
            // Deep nesting.
            let d = rng.below(5000) as usize;
            let mut v = "[".repeat(d).into_bytes();
            v.extend(std::iter::repeat(b']').take(d / 2));
            v
        }
        _ => {
            // A valid request with one byte changed (it may stay valid).
            let mut v = br#"{"type":"request","id":9,"request":{"cmd":"ps"}}"#.to_vec();
            let i = rng.below(v.len() as u64) as usize;
            v[i] = match rng.below(256) as u8 {
                b'\n' => b'x',
                b => b,
            };
            v
        }
    }
}

/// Malformed lines [`flood`] sends on handshaken connections, each of
/// which gets one answer.
pub const MALFORMED: usize = 4 * 47 * 50;
/// Oversized lines (70 KiB), each answered `too-large`.
pub const OVERSIZED: usize = 300;
/// Requests sent before the hello, each answered `handshake-required`.
pub const BEFORE_HELLO: usize = 100;
/// Lines never finished, each answered `timeout` after the send bound.
pub const UNFINISHED: usize = 100;
/// Connections that hang up mid-line (no answer).
pub const HUNG_UP: usize = 200;

/// Flood the socket at `sock`: [`MALFORMED`] malformed lines from 4
/// threads, [`OVERSIZED`] oversized lines, [`HUNG_UP`] connections that
/// hang up mid-line, [`BEFORE_HELLO`] requests before the hello and
/// [`UNFINISHED`] lines never finished, all open at once. Meanwhile
/// `serving` is called again and again: it must check that the server
/// still answers. Returns the answers by error code.
pub fn flood(sock: &Path, mut serving: impl FnMut()) -> BTreeMap<String, usize> {
    let tally = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let add = |tally: &Mutex<BTreeMap<String, usize>>, codes: Vec<String>| {
        let mut m = tally.lock().unwrap();
        for c in codes {
            *m.entry(c).or_insert(0) += 1;
        }
    };
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let (sock, tally) = (sock.to_path_buf(), tally.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ (t + 1));
            for _ in 0..47 {
                let mut s = UnixStream::connect(&sock).unwrap();
                let mut r = hello(&mut s);
                let mut batch = Vec::new();
                for _ in 0..50 {
                    batch.extend(garbage(&mut rng));
                    batch.push(b'\n');
                }
                s.write_all(&batch).unwrap();
                let got = read_codes(&mut r, 50);
                assert_eq!(got.len(), 50, "one answer per line");
                add(&tally, got);
            }
        }));
    }
    {
        let (sock, tally) = (sock.to_path_buf(), tally.clone());
        threads.push(std::thread::spawn(move || {
            let big = vec![b'{'; 70 * 1024];
            for _ in 0..OVERSIZED {
                let mut s = UnixStream::connect(&sock).unwrap();
                let mut r = hello(&mut s);
                // The server may close before reading it all.
                let _ = s.write_all(&big);
                let _ = s.write_all(b"\n");
                add(&tally, read_codes(&mut r, 1));
            }
            for i in 0..HUNG_UP {
                let mut s = UnixStream::connect(&sock).unwrap();
                if i % 2 == 0 {
                    let _ = s.write_all(b"{\"type\":\"he");
                } else {
                    let _ = hello(&mut s);
                    let _ = s.write_all(b"{\"type\":\"request\",\"id\":4,\"requ");
                }
            }
            for _ in 0..BEFORE_HELLO {
                let mut s = UnixStream::connect(&sock).unwrap();
                s.write_all(b"{\"type\":\"request\",\"id\":1,\"request\":{\"cmd\":\"ps\"}}\n")
                    .unwrap();
                add(&tally, read_codes(&mut BufReader::new(s), 1));
            }
        }));
    }
    {
        let (sock, tally) = (sock.to_path_buf(), tally.clone());
        threads.push(std::thread::spawn(move || {
            let conns: Vec<_> = (0..UNFINISHED)
                .map(|_| {
                    let mut s = UnixStream::connect(&sock).unwrap();
                    let r = hello(&mut s);
                    s.write_all(b"{\"type\":\"request\",\"id\":").unwrap();
                    (s, r)
                })
                .collect();
            for (_s, mut r) in conns {
                add(&tally, read_codes(&mut r, 1));
            }
        }));
    }
    let started = Instant::now();
    while threads.iter().any(|t| !t.is_finished()) {
        serving();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the flood hung"
        );
    }
    for t in threads {
        t.join().expect("a flood thread failed");
    }
    let tally = tally.lock().unwrap().clone();
    tally
}

/// The answers every flood must have got, whatever the server: one per
/// finished line, by the codes the bounds give.
pub fn assert_answered(tally: &BTreeMap<String, usize>) {
    assert_eq!(tally.get("too-large"), Some(&OVERSIZED), "{tally:?}");
    assert_eq!(tally.get("timeout"), Some(&UNFINISHED), "{tally:?}");
    assert_eq!(
        tally.get("handshake-required"),
        Some(&BEFORE_HELLO),
        "{tally:?}"
    );
    assert!(
        tally.get("bad-request").copied().unwrap_or(0) > MALFORMED * 9 / 10,
        "{tally:?}"
    );
    assert_eq!(
        tally.values().sum::<usize>(),
        MALFORMED + OVERSIZED + BEFORE_HELLO + UNFINISHED,
        "every finished line was answered: {tally:?}"
    );
}
