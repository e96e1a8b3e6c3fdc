//! `ps` round trip with 2,000 processes, against the control server and
//! TestCore (tests/it/control/responder.rs), the test stand-in for the
//! supervisor core: this measures the transport (socket, JSON both ways,
//! the boundary's channels), not a real supervisor's state walk.
//!
//!     cargo bench --bench control_ps            # 2,000 processes
//!     cargo bench --bench control_ps -- 500     # another count
//!
//! Three figures: a `ps` on an open connection; connect + hello + `ps`
//! (what the CLI does, minus starting a process); and the `flowrun ps
//! FILE --json` command end to end (process start included). Target for
//! the CLI: < 10 ms. The load average is printed with the figures: on a
//! shared, loaded machine they are upper bounds, not the tool's speed.

#[path = "../tests/it/control/responder.rs"]
mod responder;

use flowrun::control::client::Client;
use flowrun::control::protocol::{Reply, Request};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    println!(
        "{name:<34} n={:<4} median {:>8.3} ms   p90 {:>8.3} ms   max {:>8.3} ms",
        v.len(),
        q(0.5).as_secs_f64() * 1e3,
        q(0.9).as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3
    );
}

/// CPU time of the calling thread: unlike wall time, not inflated by
/// other processes on a loaded machine.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // too, without it: then a few iterations only, as a smoke test.
    let full = std::env::args().any(|a| a == "--bench");
    let reps = |k: usize| if full { k } else { 3 };
    let n: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let dir = std::env::temp_dir().join(format!("flowrun-bench-ctl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let xdg = dir.join("run");
    std::fs::create_dir_all(&xdg).unwrap();
    let file = dir.join("bench.pf");
    std::fs::write(&file, "group api { run \"true\" }\n").unwrap();
    let groups = 20;
    let fake = responder::Fake {
        groups: (0..groups)
            .map(|g| (format!("g{g}"), n / groups + u32::from(g < n % groups)))
            .collect(),
        ..Default::default()
    };
    let core = responder::TestCore::start(&xdg.join("flowrun"), &file, fake).unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    if !full {
        println!("smoke run (figures: cargo bench --bench control_ps)");
    }
    println!(
        "ps round trip, {n} processes; load average {} on {} CPUs",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );

    // The floor: the JSON work alone (encode the reply, decode it), no
    // socket and no thread switch.
    let reply = flowrun::control::protocol::ServerMsg::Reply {
        id: 1,
        reply: Reply::Ps(responder::fake_ps(&responder::Fake {
            groups: (0..groups)
                .map(|g| (format!("g{g}"), n / groups + u32::from(g < n % groups)))
                .collect(),
            ..Default::default()
        })),
    };
    let mut json = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..reps(100) {
        let (t, c) = (Instant::now(), thread_cpu());
        let line = serde_json::to_string(&reply).unwrap();
        let back: flowrun::control::protocol::ServerMsg = serde_json::from_str(&line).unwrap();
        json.push(t.elapsed());
        cpu.push(thread_cpu() - c);
        assert_eq!(back, reply);
    }
    stats("JSON encode + decode only (wall)", json);
    stats("JSON encode + decode only (CPU)", cpu);

    let (mut c, _) = Client::connect(&core.socket).unwrap();
    let mut bytes = 0;
    let mut open = Vec::new();
    for i in 0..reps(200) + 20 {
        let t = Instant::now();
        let r = c.call(Request::Ps {}).unwrap();
        let d = t.elapsed();
        match r {
            Ok(Reply::Ps(ps)) => assert_eq!(ps.processes.len(), n as usize),
            other => panic!("{other:?}"),
        }
        bytes = c.last_line.len();
        if i >= 20 {
            open.push(d);
        }
    }
    println!("reply size: {bytes} bytes");
    stats("ps on an open connection", open);

    let mut fresh = Vec::new();
    for _ in 0..reps(100) {
        let t = Instant::now();
        let (mut c, _) = Client::connect(&core.socket).unwrap();
        let r = c.call(Request::Ps {}).unwrap();
        fresh.push(t.elapsed());
        assert!(matches!(r, Ok(Reply::Ps(_))));
    }
    stats("connect + hello + ps", fresh);

    let exe = env!("CARGO_BIN_EXE_flowrun");
    let mut cli = Vec::new();
    for _ in 0..reps(30) {
        let t = Instant::now();
        let out = Command::new(exe)
            .args(["ps", file.to_str().unwrap(), "--json"])
            .env("XDG_RUNTIME_DIR", &xdg)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        cli.push(t.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stats("`flowrun ps FILE --json` (process)", cli);
    core.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
