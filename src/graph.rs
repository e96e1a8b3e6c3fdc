//! Dependency-graph algorithms over a resolved topology: start and stop
//! stages, cycles, and the worst-case shutdown path (FR203). No IO.
//!
//! SKELETON: the bodies below are placeholders to be replaced (issue 2).

use crate::model::{GroupId, Topology};
use crate::plan::ShutdownPath;

/// Groups that can start together, in dependency order.
pub fn start_stages(t: &Topology) -> Vec<Vec<GroupId>> {
    vec![(0..t.groups.len()).collect()]
}

/// Groups that stop together: dependents first.
pub fn stop_stages(t: &Topology) -> Vec<Vec<GroupId>> {
    vec![(0..t.groups.len()).collect()]
}

/// Every elementary cycle of `after` edges that makes the graph cyclic, each
/// as the list of groups around it (at least one cycle per strongly
/// connected component).
pub fn cycles(_t: &Topology) -> Vec<Vec<GroupId>> {
    Vec::new()
}

/// The largest sum of stop ladders along a reverse dependency chain of
/// groups that can be running together.
pub fn worst_shutdown_path(_t: &Topology) -> ShutdownPath {
    ShutdownPath::default()
}
