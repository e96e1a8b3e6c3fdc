//! The dependency-graph algorithms (src/graph.rs) on topologies built
//! directly, without the parser: stages, cycles and the worst-case shutdown
//! path (FR203), including the near-misses and a 50,000-group chain.

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
            cwd: None,
            process_group: ProcessGroupMode::Own,
            process_group_span: None,
            die_with_parent: true,
            die_with_parent_span: None,
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
            state: AfterState::Started,
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

/// The SPEC's `ingest` shape: migrate (once) → api → worker → tests.
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
