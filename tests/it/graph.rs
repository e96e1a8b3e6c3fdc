//! The dependency-graph algorithms (src/graph.rs) on topologies built
//! directly, without the parser: stages, cycles and the worst-case shutdown
//! path (FR203), including the near-misses and a 50,000-group chain, and
//! property tests against brute force on small random graphs.

// Index loops over small adjacency matrices read best as they are.
#![allow(clippy::needless_range_loop)]

use flowrun::ast::{AfterState, Escalate, ProcessGroupMode, RestartMode, StopTarget, Timeout};
use flowrun::graph;
use flowrun::model::{After, Command, Group, GroupId, LadderStep, Restart, Sig, Stop, Topology};
use flowrun::source::{Span, Spanned};
use std::time::Duration;

/// A small builder: groups in file order, each with a stop ladder and
/// `after` edges by name.
struct T {
    topo: Topology,
}

fn secs(s: u64) -> Timeout {
    Timeout::Finite(Duration::from_secs(s))
}

impl T {
    fn new() -> Self {
        T {
            topo: Topology {
                name: Spanned::new("t".into(), Span::default()),
                shutdown_within: secs(30),
                shutdown_span: None,
                finish: None,
                handlers: Vec::new(),
                escalate: Escalate::OnRepeat,
                escalate_span: None,
                groups: Vec::new(),
                allows: Vec::new(),
            },
        }
    }

    /// A service group whose ladder is `SIGTERM drain D` for each `drains`.
    fn group(mut self, name: &str, drains: &[Timeout]) -> Self {
        self.topo.groups.push(Group {
            name: Spanned::new(name.into(), Span::default()),
            span: Span::default(),
            command: Spanned::new(
                Command::Run {
                    argv: vec!["true".into()],
                },
                Span::default(),
            ),
            processes: 1,
            coroutines: 1,
            port: None,
            once: false,
            after: Vec::new(),
            ready: None,
            restart: Restart {
                mode: RestartMode::OnFailure,
                backoff_min: Duration::from_millis(100),
                backoff_max: Duration::from_secs(10),
                limit: None,
                span: None,
            },
            stop: Stop {
                steps: drains
                    .iter()
                    .map(|&drain| LadderStep {
                        signal: Sig::TERM,
                        drain,
                        span: Span::default(),
                    })
                    .collect(),
                target: StopTarget::Leader,
                span: None,
            },
            env: Vec::new(),
            env_files: Vec::new(),
            cwd: None,
            process_group: ProcessGroupMode::Own,
            process_group_span: None,
            die_with_parent: true,
            die_with_parent_span: None,
            log: None,
        });
        self
    }

    fn id(&self, name: &str) -> GroupId {
        self.topo.group_by_name(name).expect("group exists")
    }

    /// `dependent` gets `after target state`.
    fn after(mut self, dependent: &str, target: &str, state: AfterState) -> Self {
        let d = self.id(dependent);
        let group = self.id(target);
        self.topo.groups[d].after.push(After {
            group,
            state,
            span: Span::default(),
        });
        self
    }

    /// An edge to a group id that does not exist.
    fn after_id(mut self, dependent: &str, group: GroupId) -> Self {
        let d = self.id(dependent);
        self.topo.groups[d].after.push(After {
            group,
            state: Started,
            span: Span::default(),
        });
        self
    }

    fn names(&self, ids: &[GroupId]) -> Vec<String> {
        ids.iter()
            .map(|&g| self.topo.groups[g].name.node.clone())
            .collect()
    }

    fn stages(&self, stages: Vec<Vec<GroupId>>) -> Vec<Vec<String>> {
        stages.iter().map(|s| self.names(s)).collect()
    }

    fn start(&self) -> Vec<Vec<String>> {
        self.stages(graph::start_stages(&self.topo))
    }

    fn stop(&self) -> Vec<Vec<String>> {
        self.stages(graph::stop_stages(&self.topo))
    }

    fn cycles(&self) -> Vec<Vec<String>> {
        self.stages(graph::cycles(&self.topo))
    }

    fn worst(&self) -> (Vec<String>, Timeout) {
        let p = graph::worst_shutdown_path(&self.topo);
        (self.names(&p.groups), p.total)
    }
}

use AfterState::{Exited, Ready, Started, Succeeded};

fn v(stages: &[&[&str]]) -> Vec<Vec<String>> {
    stages
        .iter()
        .map(|s| s.iter().map(|x| x.to_string()).collect())
        .collect()
}

fn path(names: &[&str]) -> Vec<String> {
    names.iter().map(|x| x.to_string()).collect()
}

/// The `ingest` example's shape: migrate (once) → api → worker → tests.
fn ingest() -> T {
    T::new()
        .group("migrate", &[secs(10)])
        .group("api", &[secs(20)])
        .group("worker", &[secs(25), secs(5)])
        .group("tests", &[secs(10)])
        .after("api", "migrate", Succeeded)
        .after("worker", "api", Ready)
        .after("tests", "worker", Ready)
}

#[test]
fn empty_topology_has_no_stages_and_a_zero_path() {
    let t = T::new();
    assert!(t.start().is_empty());
    assert!(t.stop().is_empty());
    assert!(t.cycles().is_empty());
    assert_eq!(t.worst(), (Vec::new(), secs(0)));
}

#[test]
fn start_stages_follow_every_edge_in_file_order() {
    let t = ingest();
    assert_eq!(
        t.start(),
        v(&[&["migrate"], &["api"], &["worker"], &["tests"]])
    );
}

#[test]
fn start_stage_is_one_after_the_latest_dependency() {
    // d waits for a (stage 0) and c (stage 2): d is in stage 3, not 1.
    let t = T::new()
        .group("d", &[secs(1)])
        .group("c", &[secs(1)])
        .group("b", &[secs(1)])
        .group("a", &[secs(1)])
        .group("free", &[secs(1)])
        .after("d", "a", Started)
        .after("d", "c", Ready)
        .after("c", "b", Started)
        .after("b", "a", Exited);
    assert_eq!(t.start(), v(&[&["a", "free"], &["b"], &["c"], &["d"]]));
}

#[test]
fn stop_stages_put_dependents_first_and_independents_in_parallel() {
    let t = T::new()
        .group("db", &[secs(5)])
        .group("api", &[secs(5)])
        .group("worker", &[secs(5)])
        .group("metrics", &[secs(5)])
        .after("api", "db", Ready)
        .after("worker", "api", Started);
    assert_eq!(t.stop(), v(&[&["worker", "metrics"], &["api"], &["db"]]));
}

#[test]
fn succeeded_and_exited_edges_do_not_order_stopping() {
    // migrate has ended before api starts: nothing to wait for at teardown.
    let t = ingest();
    assert_eq!(t.stop(), v(&[&["migrate", "tests"], &["worker"], &["api"]]));
    let t = T::new()
        .group("a", &[secs(1)])
        .group("b", &[secs(1)])
        .after("b", "a", Exited);
    assert_eq!(t.stop(), v(&[&["a", "b"]]));
}

#[test]
fn stop_waits_for_lists_running_dependents() {
    let t = ingest();
    let waits = graph::stop_waits_for(&t.topo);
    let named: Vec<Vec<String>> = waits.iter().map(|w| t.names(w)).collect();
    assert_eq!(named, v(&[&[], &["worker"], &["tests"], &[]]));
}

#[test]
fn a_three_cycle_reports_its_three_groups_in_edge_order() {
    let t = T::new()
        .group("free", &[secs(1)])
        .group("a", &[secs(1)])
        .group("b", &[secs(1)])
        .group("c", &[secs(1)])
        .after("a", "b", Ready)
        .after("b", "c", Started)
        .after("c", "a", Succeeded)
        .after("free", "a", Started);
    assert_eq!(t.cycles(), v(&[&["a", "b", "c"]]));
    // Cycle groups and what waits on them go in a final start stage.
    assert_eq!(t.start(), v(&[&["free", "a", "b", "c"]]));
}

#[test]
fn cycles_follow_edges_not_file_order() {
    // a → c → b → a: the list is in edge order.
    let t = T::new()
        .group("a", &[secs(1)])
        .group("b", &[secs(1)])
        .group("c", &[secs(1)])
        .after("a", "c", Started)
        .after("c", "b", Started)
        .after("b", "a", Started);
    assert_eq!(t.cycles(), v(&[&["a", "c", "b"]]));
}

#[test]
fn one_cycle_per_component_and_self_edges() {
    let t = T::new()
        .group("x", &[secs(1)])
        .group("y", &[secs(1)])
        .group("solo", &[secs(1)])
        .group("ok", &[secs(1)])
        .group("p", &[secs(1)])
        .group("q", &[secs(1)])
        .after("x", "y", Started)
        .after("y", "x", Started)
        .after("solo", "solo", Ready)
        .after("ok", "x", Started)
        // p ⇄ q, plus a second cycle p → q → p through the same pair.
        .after("p", "q", Started)
        .after("q", "p", Started)
        .after("q", "p", Ready);
    assert_eq!(t.cycles(), v(&[&["x", "y"], &["solo"], &["p", "q"]]));
}

#[test]
fn a_component_yields_a_shortest_cycle_through_its_first_group() {
    // a → b → c → d → a and a shortcut c → a: reported as a → b → c.
    let t = T::new()
        .group("a", &[secs(1)])
        .group("b", &[secs(1)])
        .group("c", &[secs(1)])
        .group("d", &[secs(1)])
        .after("a", "b", Started)
        .after("b", "c", Started)
        .after("c", "d", Started)
        .after("d", "a", Started)
        .after("c", "a", Started);
    assert_eq!(t.cycles(), v(&[&["a", "b", "c"]]));
}

#[test]
fn acyclic_graphs_have_no_cycles() {
    assert!(ingest().cycles().is_empty());
    // A diamond is not a cycle.
    let t = T::new()
        .group("top", &[secs(1)])
        .group("l", &[secs(1)])
        .group("r", &[secs(1)])
        .group("bottom", &[secs(1)])
        .after("top", "l", Started)
        .after("top", "r", Started)
        .after("l", "bottom", Started)
        .after("r", "bottom", Started);
    assert!(t.cycles().is_empty());
    assert_eq!(t.start(), v(&[&["bottom"], &["l", "r"], &["top"]]));
    assert_eq!(t.stop(), v(&[&["top"], &["l", "r"], &["bottom"]]));
}

#[test]
fn out_of_range_edges_are_ignored() {
    let t = T::new()
        .group("a", &[secs(1)])
        .group("b", &[secs(2)])
        .after_id("a", 7)
        .after_id("b", usize::MAX)
        .after("b", "a", Started);
    assert_eq!(t.start(), v(&[&["a"], &["b"]]));
    assert_eq!(t.stop(), v(&[&["b"], &["a"]]));
    assert!(t.cycles().is_empty());
    assert_eq!(t.worst(), (path(&["b", "a"]), secs(3)));
}

#[test]
fn worst_path_sums_a_running_chain() {
    // tests (10) → worker (25 + 5) → api (20); migrate is not on it.
    assert_eq!(
        ingest().worst(),
        (path(&["tests", "worker", "api"]), secs(60))
    );
}

#[test]
fn near_miss_independent_drains_run_in_parallel() {
    // Three 25 s groups that do not depend on each other: 25 s, not 75 s.
    let t = T::new()
        .group("a", &[secs(25)])
        .group("b", &[secs(25)])
        .group("c", &[secs(25)]);
    assert_eq!(t.worst(), (path(&["a"]), secs(25)));
    // Two dependents of one group stop in parallel: max, not sum.
    let t = T::new()
        .group("db", &[secs(10)])
        .group("x", &[secs(20)])
        .group("y", &[secs(15)])
        .after("x", "db", Ready)
        .after("y", "db", Ready);
    assert_eq!(t.worst(), (path(&["x", "db"]), secs(30)));
}

#[test]
fn a_succeeded_edge_breaks_the_chain() {
    let t = T::new()
        .group("migrate", &[secs(50)])
        .group("api", &[secs(20)])
        .after("api", "migrate", Succeeded);
    assert_eq!(t.worst(), (path(&["migrate"]), secs(50)));
    let t = T::new()
        .group("a", &[secs(20)])
        .group("b", &[secs(20)])
        .group("c", &[secs(20)])
        .after("c", "b", Exited)
        .after("b", "a", Started);
    assert_eq!(t.worst(), (path(&["b", "a"]), secs(40)));
}

#[test]
fn a_started_edge_to_a_once_group_keeps_it_on_the_chain() {
    // The documented choice: only the edge state matters.
    let mut t = T::new()
        .group("loader", &[secs(30)])
        .group("consumer", &[secs(10)])
        .after("consumer", "loader", Started);
    t.topo.groups[0].once = true;
    assert_eq!(t.worst(), (path(&["consumer", "loader"]), secs(40)));
}

#[test]
fn the_heaviest_branch_wins_not_the_longest() {
    // a → b → c is 3 s; a → d is 100 s.
    let t = T::new()
        .group("a", &[secs(1)])
        .group("b", &[secs(1)])
        .group("c", &[secs(1)])
        .group("d", &[secs(99)])
        .after("a", "b", Started)
        .after("b", "c", Started)
        .after("a", "d", Started);
    assert_eq!(t.worst(), (path(&["a", "d"]), secs(100)));
}

#[test]
fn forever_dominates() {
    let t = T::new()
        .group("big", &[secs(3600), secs(3600)])
        .group("hang", &[secs(1), Timeout::Forever])
        .group("dep", &[secs(1)])
        .after("dep", "hang", Ready);
    assert_eq!(t.worst(), (path(&["dep", "hang"]), Timeout::Forever));
    assert_eq!(
        graph::add_timeout(secs(1), Timeout::Forever),
        Timeout::Forever
    );
}

#[test]
fn huge_drains_saturate_instead_of_overflowing() {
    let t = T::new()
        .group("a", &[Timeout::Finite(Duration::MAX)])
        .group("b", &[Timeout::Finite(Duration::MAX), secs(1)])
        .after("a", "b", Started);
    assert_eq!(t.worst().1, Timeout::Finite(Duration::MAX));
}

#[test]
fn edges_inside_cycles_do_not_loop_the_path() {
    let t = T::new()
        .group("a", &[secs(10)])
        .group("b", &[secs(10)])
        .group("c", &[secs(5)])
        .after("a", "b", Started)
        .after("b", "a", Started)
        .after("c", "a", Started);
    // Only c → a counts; a ⇄ b is FR201's business.
    assert_eq!(t.worst(), (path(&["c", "a"]), secs(15)));
    assert_eq!(t.stop(), v(&[&["b", "c"], &["a"]]));
}

#[test]
fn a_50000_group_chain_does_not_overflow_the_stack() {
    const N: usize = 50_000;
    let mut t = T::new();
    for i in 0..N {
        t = t.group(
            &format!("g{i}"),
            &[Timeout::Finite(Duration::from_millis(1))],
        );
    }
    // g(i) waits for g(i+1), and the last closes a cycle back to g0 only in
    // the second run below.
    for i in 0..N - 1 {
        t.topo.groups[i].after.push(After {
            group: i + 1,
            state: Ready,
            span: Span::default(),
        });
    }
    let start = graph::start_stages(&t.topo);
    assert_eq!(start.len(), N);
    assert_eq!(start[0], vec![N - 1]);
    let stop = graph::stop_stages(&t.topo);
    assert_eq!(stop.len(), N);
    assert_eq!(stop[0], vec![0]);
    assert!(graph::cycles(&t.topo).is_empty());
    let worst = graph::worst_shutdown_path(&t.topo);
    assert_eq!(worst.groups.len(), N);
    assert_eq!(worst.total, Timeout::Finite(Duration::from_secs(50)));

    t.topo.groups[N - 1].after.push(After {
        group: 0,
        state: Started,
        span: Span::default(),
    });
    let cycles = graph::cycles(&t.topo);
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].len(), N);
    assert_eq!(cycles[0][0], 0);
    assert_eq!(cycles[0][N - 1], N - 1);
    assert_eq!(graph::start_stages(&t.topo).len(), 1);
    // Every edge is inside the cycle: each group's ladder alone.
    assert_eq!(graph::worst_shutdown_path(&t.topo).groups.len(), 1);
}

/// A tiny deterministic PRNG (xorshift), so the property test below needs
/// no extra crate and always checks the same graphs.
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

/// The heaviest chain by brute force: every path over running-together
/// edges, enumerated.
fn brute_force_worst(t: &Topology) -> Timeout {
    fn walk(t: &Topology, g: GroupId) -> Timeout {
        let own = graph::ladder_total(&t.groups[g].stop);
        let mut best = Timeout::Finite(Duration::ZERO);
        for a in &t.groups[g].after {
            if graph::running_together(a.state) {
                best = best.max(walk(t, a.group));
            }
        }
        graph::add_timeout(own, best)
    }
    (0..t.groups.len())
        .map(|g| walk(t, g))
        .max()
        .unwrap_or(Timeout::Finite(Duration::ZERO))
}

#[test]
fn random_dags_agree_with_brute_force() {
    let states = [Started, Ready, Succeeded, Exited];
    let mut rng = Rng(0x5eed_f10e);
    for _ in 0..2_000 {
        let n = 1 + rng.below(8) as usize;
        let mut t = T::new();
        for i in 0..n {
            let steps = 1 + rng.below(2) as usize;
            let drains: Vec<Timeout> = (0..steps)
                .map(|_| match rng.below(20) {
                    0 => Timeout::Forever,
                    k => secs(k),
                })
                .collect();
            t = t.group(&format!("g{i}"), &drains);
        }
        // Edges only to lower ids: a DAG.
        for g in 1..n {
            for _ in 0..rng.below(3) {
                let d = rng.below(g as u64) as usize;
                let state = states[rng.below(4) as usize];
                t.topo.groups[g].after.push(After {
                    group: d,
                    state,
                    span: Span::default(),
                });
            }
        }
        let topo = &t.topo;
        assert!(graph::cycles(topo).is_empty());

        // The path is a real chain of running-together edges whose ladders
        // add up to its total, and no chain is heavier.
        let worst = graph::worst_shutdown_path(topo);
        assert_eq!(
            worst.total,
            brute_force_worst(topo),
            "{:?}",
            t.names(&worst.groups)
        );
        let mut sum = Timeout::Finite(Duration::ZERO);
        for (i, &g) in worst.groups.iter().enumerate() {
            sum = graph::add_timeout(sum, graph::ladder_total(&topo.groups[g].stop));
            if let Some(&next) = worst.groups.get(i + 1) {
                assert!(topo.groups[g]
                    .after
                    .iter()
                    .any(|a| a.group == next && graph::running_together(a.state)));
            }
        }
        assert_eq!(sum, worst.total);

        // Start stages: every group once; after every dependency; as early
        // as possible (a later stage is forced by some dependency).
        let start = graph::start_stages(topo);
        let mut stage_of = vec![usize::MAX; n];
        for (i, s) in start.iter().enumerate() {
            for &g in s {
                assert_eq!(stage_of[g], usize::MAX, "twice");
                stage_of[g] = i;
            }
            assert!(s.windows(2).all(|w| w[0] < w[1]), "file order");
        }
        for g in 0..n {
            let deps: Vec<usize> = topo.groups[g]
                .after
                .iter()
                .map(|a| stage_of[a.group])
                .collect();
            assert!(deps.iter().all(|&d| d < stage_of[g]));
            assert_eq!(stage_of[g], deps.iter().max().map_or(0, |d| d + 1));
        }

        // Stop stages: every group once; a dependent running together with
        // its dependency stops in an earlier stage; a group nothing running
        // waits for stops first.
        let stop = graph::stop_stages(topo);
        let mut stop_of = vec![usize::MAX; n];
        for (i, s) in stop.iter().enumerate() {
            for &g in s {
                assert_eq!(stop_of[g], usize::MAX, "twice");
                stop_of[g] = i;
            }
        }
        let waits = graph::stop_waits_for(topo);
        for g in 0..n {
            assert_ne!(stop_of[g], usize::MAX);
            for a in &topo.groups[g].after {
                if graph::running_together(a.state) {
                    assert!(stop_of[g] < stop_of[a.group]);
                    assert!(waits[a.group].contains(&g));
                }
            }
            assert_eq!(
                stop_of[g],
                waits[g].iter().map(|&d| stop_of[d] + 1).max().unwrap_or(0)
            );
        }
    }
}

#[test]
fn random_graphs_report_one_real_cycle_per_cyclic_component() {
    let mut rng = Rng(0x00c1_c1e5);
    for _ in 0..2_000 {
        let n = 1 + rng.below(7) as usize;
        let mut t = T::new();
        for i in 0..n {
            t = t.group(&format!("g{i}"), &[secs(1)]);
        }
        let mut edge = vec![vec![false; n]; n];
        for g in 0..n {
            for _ in 0..rng.below(3) {
                let d = rng.below(n as u64) as usize;
                edge[g][d] = true;
                t.topo.groups[g].after.push(After {
                    group: d,
                    state: Started,
                    span: Span::default(),
                });
            }
        }
        // Reachability by Floyd–Warshall (n ≤ 7).
        let mut reach = edge.clone();
        for k in 0..n {
            for i in 0..n {
                for j in 0..n {
                    reach[i][j] = reach[i][j] || (reach[i][k] && reach[k][j]);
                }
            }
        }
        // A group is on a cycle iff it reaches itself; its component is
        // the groups it reaches and that reach it.
        let mut expected_starts = Vec::new();
        for g in 0..n {
            let first_of_component = (0..g).all(|h| !(reach[g][h] && reach[h][g]));
            if reach[g][g] && first_of_component {
                expected_starts.push(g);
            }
        }
        let cycles = graph::cycles(&t.topo);
        let starts: Vec<usize> = cycles.iter().map(|c| c[0]).collect();
        assert_eq!(starts, expected_starts);
        for c in &cycles {
            for (i, &g) in c.iter().enumerate() {
                let next = c[(i + 1) % c.len()];
                assert!(edge[g][next], "{g} → {next} is not an edge in {c:?}");
            }
            let mut sorted = c.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), c.len(), "elementary: {c:?}");
        }
        // Never panics or loops on cyclic graphs.
        let start = graph::start_stages(&t.topo);
        assert_eq!(start.iter().map(Vec::len).sum::<usize>(), n);
        let stop = graph::stop_stages(&t.topo);
        assert_eq!(stop.iter().map(Vec::len).sum::<usize>(), n);
        let worst = graph::worst_shutdown_path(&t.topo);
        assert!(!worst.groups.is_empty() && worst.groups.len() <= n);
    }
}
