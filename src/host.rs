//! The host's limits that FR205 (capacity) checks against (`lint --host`).

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostLimits {
    pub cpus: u32,
    /// Soft and hard `RLIMIT_NOFILE`.
    pub nofile_soft: u64,
    pub nofile_hard: u64,
    /// Soft `RLIMIT_NPROC` (`u64::MAX` when unlimited).
    pub nproc_soft: u64,
}

impl HostLimits {
    /// Read this machine's limits.
    pub fn detect() -> HostLimits {
        use nix::sys::resource::{getrlimit, Resource};
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let (nofile_soft, nofile_hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
        let (nproc_soft, _) = getrlimit(Resource::RLIMIT_NPROC).unwrap_or((u64::MAX, u64::MAX));
        HostLimits {
            cpus,
            nofile_soft,
            nofile_hard,
            nproc_soft,
        }
    }
}
