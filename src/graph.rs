//! Dependency-graph algorithms over a resolved topology: start and stop
//! stages, cycles, and the worst-case shutdown path (FR203). No IO.
//!
//! # The graph
//!
//! Every `after G [state]` in group `D` is an edge `D → G`: "D waits for G".
//! Edges whose target id is out of range (a resolver substitute for an
//! unknown group) are ignored everywhere. Every function here is linear in
//! groups + edges, uses no recursion (a 50,000-group chain must not overflow
//! the stack) and terminates on any graph, cycles and self-edges included.
//!
//! # "Running together"
//!
//! At teardown, a dependent must stop before the groups it waits for, but
//! only when both can be running at the same moment. An edge `D → G` keeps
//! the two *running together* when its state is `started` or `ready`: G is
//! (still) running when D starts, so D's ladder runs first and G's after it.
//! A `succeeded` or `exited` edge breaks the chain: G has ended before D
//! starts, so G is not stopping when D is, and their drains never add up.
//!
//! Only the edge's state decides, not the kind of group. So:
//! - a `once` group that others wait on with `succeeded` (a migration) is
//!   never on a dependent's shutdown chain;
//! - a `once` group that others wait on with `started` (or `ready`, when it
//!   has a ready check) *is* on the chain: it may still be running when its
//!   dependents start, so it is stopped after them, and its ladder counts.
//!   This is the conservative choice; a `once` step that always finishes
//!   quickly should be waited on with `succeeded` instead.
//!
//! Edges inside a dependency cycle (FR201) are ignored for stopping and for
//! the shutdown path: a cyclic topology never runs, and ignoring them keeps
//! the rest of the analysis meaningful.

use crate::ast::{AfterState, Timeout};
use crate::model::{GroupId, Stop, Topology};
use crate::plan::ShutdownPath;
use std::time::Duration;

/// Whether an `after` edge with this state keeps both groups running at the
/// same time (see the module docs): `started` and `ready` do, `succeeded`
/// and `exited` do not.
pub fn running_together(state: AfterState) -> bool {
    matches!(state, AfterState::Started | AfterState::Ready)
}

/// `a + b`, where `forever` absorbs everything and finite sums saturate
/// instead of overflowing.
pub fn add_timeout(a: Timeout, b: Timeout) -> Timeout {
    match (a, b) {
        (Timeout::Finite(x), Timeout::Finite(y)) => Timeout::Finite(x.saturating_add(y)),
        _ => Timeout::Forever,
    }
}

/// The longest a group's stop ladder can take (see [`Stop::total`]).
pub fn ladder_total(stop: &Stop) -> Timeout {
    stop.total()
}

/// The in-range `after` targets of group `g`, with their states, in file order.
fn deps(t: &Topology, g: GroupId) -> impl Iterator<Item = (GroupId, AfterState)> + '_ {
    let n = t.groups.len();
    t.groups[g]
        .after
        .iter()
        .filter(move |a| a.group < n)
        .map(|a| (a.group, a.state))
}

/// Group ids into stages by level: `levels[g]` is the stage of `g`, or
/// `None` for a group that goes in the final (unordered) stage. Within a
/// stage, file order.
fn bucket(levels: &[Option<usize>]) -> Vec<Vec<GroupId>> {
    let max = levels.iter().flatten().copied().max();
    let mut stages: Vec<Vec<GroupId>> = vec![Vec::new(); max.map_or(0, |m| m + 1)];
    let mut rest = Vec::new();
    for (g, level) in levels.iter().enumerate() {
        match level {
            Some(l) => stages[*l].push(g),
            None => rest.push(g),
        }
    }
    stages.retain(|s| !s.is_empty());
    if !rest.is_empty() {
        stages.push(rest);
    }
    stages
}

/// Groups that can start together, in dependency order: a group's stage is
/// one more than the latest stage of the groups it waits for (over every
/// `after` edge, whatever its state). Groups in a cycle, and groups that
/// wait on one, cannot be ordered: they go in a final stage. Within a
/// stage, file order. An empty topology has no stages.
pub fn start_stages(t: &Topology) -> Vec<Vec<GroupId>> {
    let n = t.groups.len();
    let mut pending = vec![0usize; n];
    let mut dependents: Vec<Vec<GroupId>> = vec![Vec::new(); n];
    for (g, count) in pending.iter_mut().enumerate() {
        for (d, _) in deps(t, g) {
            *count += 1;
            dependents[d].push(g);
        }
    }
    let mut level: Vec<Option<usize>> = vec![None; n];
    let mut queue: Vec<GroupId> = (0..n).filter(|&g| pending[g] == 0).collect();
    for &g in &queue {
        level[g] = Some(0);
    }
    let mut head = 0;
    while head < queue.len() {
        let g = queue[head];
        head += 1;
        let next = level[g].unwrap_or(0) + 1;
        for &d in &dependents[g] {
            level[d] = Some(level[d].map_or(next, |l| l.max(next)));
            pending[d] -= 1;
            if pending[d] == 0 {
                queue.push(d);
            }
        }
    }
    // Groups never dequeued wait (transitively) on a cycle.
    let mut done = vec![false; n];
    for &g in &queue {
        done[g] = true;
    }
    for (l, done) in level.iter_mut().zip(done) {
        if !done {
            *l = None;
        }
    }
    bucket(&level)
}

/// The strongly connected component of every group over all `after` edges
/// (Tarjan's algorithm, iterative). Component ids are arbitrary but equal
/// for groups in the same component.
fn components(t: &Topology) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let n = t.groups.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut comp = vec![UNSEEN; n];
    let mut stack: Vec<GroupId> = Vec::new();
    // The explicit call stack: (group, position in its `after` list).
    let mut calls: Vec<(GroupId, usize)> = Vec::new();
    let mut next_index = 0;
    let mut next_comp = 0;
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        calls.push((root, 0));
        while let Some(&mut (v, ref mut pos)) = calls.last_mut() {
            let after = &t.groups[v].after;
            if *pos < after.len() {
                let w = after[*pos].group;
                *pos += 1;
                if w >= n {
                    continue;
                }
                if index[w] == UNSEEN {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(u, _)) = calls.last() {
                low[u] = low[u].min(low[v]);
            }
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp[w] = next_comp;
                    if w == v {
                        break;
                    }
                }
                next_comp += 1;
            }
        }
    }
    comp
}

/// One concrete cycle per strongly connected component that has more than
/// one group or a self-edge (`after` itself), in order of each cycle's
/// first group in the file.
///
/// A cycle is the list of groups around it in edge order: for `[a, b, c]`,
/// `a` has `after b`, `b` has `after c`, and `c` has `after a` (read it as
/// `a → b → c → a`). It starts at the component's first group in file order
/// and is a shortest cycle through that group; a self-edge gives `[a]`.
pub fn cycles(t: &Topology) -> Vec<Vec<GroupId>> {
    let n = t.groups.len();
    let comp = components(t);
    let mut comp_seen = vec![false; n];
    // BFS bookkeeping, shared by all components (each group is in one).
    let mut parent = vec![usize::MAX; n];
    let mut visited = vec![false; n];
    let mut out = Vec::new();
    for start in 0..n {
        let c = comp[start];
        if c >= n || comp_seen[c] {
            continue;
        }
        comp_seen[c] = true;
        // Breadth-first from `start` inside its component until an edge
        // leads back to `start`.
        let mut queue = vec![start];
        visited[start] = true;
        let mut head = 0;
        let mut closing = None;
        'search: while head < queue.len() {
            let v = queue[head];
            head += 1;
            for (w, _) in deps(t, v) {
                if comp[w] != c {
                    continue;
                }
                if w == start {
                    closing = Some(v);
                    break 'search;
                }
                if !visited[w] {
                    visited[w] = true;
                    parent[w] = v;
                    queue.push(w);
                }
            }
        }
        if let Some(last) = closing {
            let mut cycle = vec![last];
            let mut v = last;
            while v != start {
                v = parent[v];
                cycle.push(v);
            }
            cycle.reverse();
            out.push(cycle);
        }
    }
    out
}

/// The running-together edges that stopping must respect: `D → G` with a
/// `started`/`ready` state, not inside a cycle. For every group, its
/// targets in file order (duplicates kept).
fn stop_edges(t: &Topology) -> Vec<Vec<GroupId>> {
    let comp = components(t);
    (0..t.groups.len())
        .map(|g| {
            deps(t, g)
                .filter(|&(d, s)| running_together(s) && comp[d] != comp[g])
                .map(|(d, _)| d)
                .collect()
        })
        .collect()
}

/// A topological order of the stop edges with dependents before the groups
/// they wait for, and each group's stop level (0: nothing running depends
/// on it; else one more than the latest level of its dependents).
fn stop_order(edges: &[Vec<GroupId>]) -> (Vec<GroupId>, Vec<Option<usize>>) {
    let n = edges.len();
    let mut pending = vec![0usize; n];
    for targets in edges {
        for &d in targets {
            pending[d] += 1;
        }
    }
    let mut level: Vec<Option<usize>> = vec![None; n];
    let mut order: Vec<GroupId> = (0..n).filter(|&g| pending[g] == 0).collect();
    for &g in &order {
        level[g] = Some(0);
    }
    let mut head = 0;
    while head < order.len() {
        let g = order[head];
        head += 1;
        let next = level[g].unwrap_or(0) + 1;
        for &d in &edges[g] {
            level[d] = Some(level[d].map_or(next, |l| l.max(next)));
            pending[d] -= 1;
            if pending[d] == 0 {
                order.push(d);
            }
        }
    }
    (order, level)
}

/// For every group, the groups that must have stopped before it starts
/// stopping: its dependents over running-together edges (module docs), in
/// file order, without duplicates. This is the exact constraint behind
/// [`stop_stages`] and [`worst_shutdown_path`]: a runner that starts each
/// group's ladder as soon as these groups are gone never takes longer than
/// the worst-case path.
pub fn stop_waits_for(t: &Topology) -> Vec<Vec<GroupId>> {
    let edges = stop_edges(t);
    let mut waits: Vec<Vec<GroupId>> = vec![Vec::new(); edges.len()];
    for (g, targets) in edges.iter().enumerate() {
        for &d in targets {
            if waits[d].last() != Some(&g) {
                waits[d].push(g);
            }
        }
    }
    waits
}

/// Groups that stop together, dependents first: a group stops in the stage
/// after the last of the groups that run together with it and wait for it
/// (module docs); a group nothing running depends on stops in the first
/// stage, so independent groups stop in parallel. Within a stage, file
/// order. An empty topology has no stages.
pub fn stop_stages(t: &Topology) -> Vec<Vec<GroupId>> {
    let (_, level) = stop_order(&stop_edges(t));
    bucket(&level)
}

/// The largest sum of stop ladders along a reverse dependency chain of
/// groups that can be running together (FR203, docs/rules/FR203.md; module docs).
///
/// The weight of a group is its ladder total ([`ladder_total`]; `forever`
/// dominates every finite sum). The path is the heaviest chain over the
/// running-together edges outside cycles, found by dynamic programming in
/// topological order. `groups` runs from the group that stops first (the
/// dependent) to the one that stops last. On equal totals the chain with
/// more groups wins (so a `forever` path names everything stopping before
/// it), then the group, and the edge, that comes first in the file. An empty topology gives an empty
/// path with a zero total.
pub fn worst_shutdown_path(t: &Topology) -> ShutdownPath {
    let n = t.groups.len();
    let edges = stop_edges(t);
    let (order, _) = stop_order(&edges);
    // best[g]: the heaviest chain that starts at g and follows its edges,
    // as (total, groups on it): on equal totals the longer chain is the
    // more informative one (it names every group that stops in sequence).
    let mut best = vec![(Timeout::Finite(Duration::ZERO), 0usize); n];
    let mut next = vec![usize::MAX; n];
    // Reverse order: every group after the groups it waits for.
    for &g in order.iter().rev() {
        let mut tail = (Timeout::Finite(Duration::ZERO), 0usize);
        let mut via = usize::MAX;
        for &d in &edges[g] {
            if via == usize::MAX || best[d] > tail {
                tail = best[d];
                via = d;
            }
        }
        best[g] = (
            add_timeout(ladder_total(&t.groups[g].stop), tail.0),
            tail.1 + 1,
        );
        next[g] = via;
    }
    let Some(first) = (0..n).reduce(|a, b| if best[b] > best[a] { b } else { a }) else {
        return ShutdownPath::default();
    };
    let mut groups = vec![first];
    let mut g = first;
    while next[g] != usize::MAX && groups.len() <= n {
        g = next[g];
        groups.push(g);
    }
    ShutdownPath {
        groups,
        total: best[first].0,
    }
}
