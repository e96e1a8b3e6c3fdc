//! The runner's signal rules, as pure functions of what happened and when:
//! the burst window, acknowledgement and escalation during a drain, the
//! terminal-hangup rule and handler coalescing. The [`Core`](super::Core)
//! decides through these, and so does `up` once the core is done
//! ([`Late`]), so the rules documented in docs/events.md live in one place.

use crate::ast::Escalate;
use crate::model::Sig;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Drain signals that arrive within this long of the first one are one
/// request (a burst: `timeout` signalling flowrun and its process group, a
/// script's back-to-back `kill`s). A later one is a person's second Ctrl+C.
pub const BURST: Duration = Duration::from_millis(100);

/// Why a whole-topology drain began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A drain signal (or a handler whose first step drains): a later drain
    /// signal outside the burst escalates.
    Signal,
    /// `finish`, a failed group, or a `drain`/`kill` step after other steps:
    /// the first drain signal is acknowledged; only a second one escalates.
    Topology,
}

/// A whole-topology drain in progress, as far as signals are concerned.
#[derive(Clone, Copy, Debug)]
pub struct Drain {
    cause: Cause,
    /// When the current burst began: the drain signal, or the acknowledged
    /// user signal.
    burst_from: Option<Instant>,
}

/// What a drain signal received during a drain does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Part of the burst that is already being handled, or not a drain
    /// signal: reported only.
    Same,
    /// The first user request during a drain the topology began: noted,
    /// changes nothing (the exit status stays the drain's).
    Acknowledged,
    /// Kill everything now.
    Escalate,
}

impl Drain {
    pub fn new(cause: Cause, at: Instant) -> Drain {
        Drain {
            cause,
            burst_from: (cause == Cause::Signal).then_some(at),
        }
    }

    pub fn cause(&self) -> Cause {
        self.cause
    }

    /// A signal arrived at `at` during this drain; `drains` says whether it
    /// is a drain signal (its handler drains or kills the topology).
    pub fn on_signal(&mut self, drains: bool, at: Instant, escalate: Escalate) -> Verdict {
        if !drains {
            return Verdict::Same;
        }
        match self.burst_from {
            None => {
                self.burst_from = Some(at);
                Verdict::Acknowledged
            }
            Some(t) if at.saturating_duration_since(t) < BURST => Verdict::Same,
            Some(_) if escalate == Escalate::Never => Verdict::Same,
            Some(_) => Verdict::Escalate,
        }
    }
}

/// Whether SIGHUP is a terminal hangup (drain, like a shell's job) rather
/// than the built-in `reload`: only when the runner has a controlling
/// terminal, SIGHUP was not ignored when it started (`nohup` ignores it),
/// and the topology does not handle SIGHUP explicitly.
pub fn hangup_drains(has_tty: bool, hup_ignored: bool, explicit_handler: bool) -> bool {
    has_tty && !hup_ignored && !explicit_handler
}

/// Queue a run of `sig`'s handler: while a run of it is pending, a further
/// one is dropped, so a storm of signals gives at most one queued run
/// behind the running one. Returns whether it was queued.
pub fn enqueue(queue: &mut VecDeque<Sig>, sig: Sig) -> bool {
    if queue.contains(&sig) {
        return false;
    }
    queue.push_back(sig);
    true
}

/// The signal rules that still apply once the topology is down and the
/// output is being flushed: the drain's burst window and escalation go on
/// until `up` returns (docs/events.md, "Ending").
pub struct Late {
    drain: Drain,
    drain_sigs: Vec<Sig>,
    escalate: Escalate,
}

impl Late {
    pub fn new(drain: Drain, drain_sigs: Vec<Sig>, escalate: Escalate) -> Late {
        Late {
            drain,
            drain_sigs,
            escalate,
        }
    }

    /// A signal arrived at `at` after the topology was down.
    pub fn on_signal(&mut self, sig: Sig, at: Instant) -> Verdict {
        self.drain
            .on_signal(self.drain_sigs.contains(&sig), at, self.escalate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_is_one_request_and_a_later_signal_escalates() {
        let t0 = Instant::now();
        let mut d = Drain::new(Cause::Signal, t0);
        assert_eq!(d.on_signal(true, t0, Escalate::OnRepeat), Verdict::Same);
        assert_eq!(
            d.on_signal(true, t0 + ms(99), Escalate::OnRepeat),
            Verdict::Same
        );
        assert_eq!(
            d.on_signal(false, t0 + ms(300), Escalate::OnRepeat),
            Verdict::Same
        );
        assert_eq!(
            d.on_signal(true, t0 + ms(300), Escalate::OnRepeat),
            Verdict::Escalate
        );
    }

    #[test]
    fn escalate_never_never_escalates() {
        let t0 = Instant::now();
        let mut d = Drain::new(Cause::Signal, t0);
        assert_eq!(
            d.on_signal(true, t0 + ms(500), Escalate::Never),
            Verdict::Same
        );
    }

    #[test]
    fn a_topology_drain_acknowledges_the_first_request() {
        let t0 = Instant::now();
        let mut d = Drain::new(Cause::Topology, t0);
        let t1 = t0 + ms(1000);
        assert_eq!(
            d.on_signal(true, t1, Escalate::OnRepeat),
            Verdict::Acknowledged
        );
        assert_eq!(
            d.on_signal(true, t1 + ms(50), Escalate::OnRepeat),
            Verdict::Same
        );
        assert_eq!(
            d.on_signal(true, t1 + ms(150), Escalate::OnRepeat),
            Verdict::Escalate
        );
    }

    #[test]
    fn hangup_rule() {
        assert!(hangup_drains(true, false, false));
        assert!(!hangup_drains(false, false, false), "no terminal: reload");
        assert!(!hangup_drains(true, true, false), "nohup: reload");
        assert!(!hangup_drains(true, false, true), "explicit handler wins");
    }

    #[test]
    fn at_most_one_queued_run_per_signal() {
        let mut q = VecDeque::new();
        assert!(enqueue(&mut q, Sig::HUP));
        for _ in 0..30 {
            enqueue(&mut q, Sig::HUP);
        }
        assert!(enqueue(&mut q, Sig::INT));
        assert_eq!(q.len(), 2);
    }
}
