//! Pure restart-policy arithmetic: exponential backoff and the
//! `limit N per D` window.

use crate::ast::RestartMode;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Delay before restart number `attempt` (1-based): `min` doubling each
/// attempt, capped at `max`.
pub fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let shift = attempt.saturating_sub(1).min(31);
    let d = min.saturating_mul(1u32 << shift);
    d.min(max.max(min))
}

/// The attempt number of the next restart of a process whose last restart
/// was attempt `prev` (0: never restarted) and whose incarnation ran for
/// `uptime`: a process that stayed up longer than `max(backoff max, 1 s)`
/// starts again from attempt 1 (the backoff minimum); otherwise the
/// count goes on.
pub fn next_attempt(prev: u32, uptime: Duration, max: Duration) -> u32 {
    if forgets(uptime, max) {
        1
    } else {
        prev.saturating_add(1)
    }
}

/// The attempt `ps` shows for a process whose last restart was attempt
/// `attempts` and whose incarnation has been up for `uptime` (`None`: not
/// running): 0 once it has stayed up long enough for its next failure to
/// start from the minimum again.
pub fn current_attempt(attempts: u32, uptime: Option<Duration>, max: Duration) -> u32 {
    match uptime {
        Some(up) if forgets(up, max) => 0,
        _ => attempts,
    }
}

fn forgets(uptime: Duration, max: Duration) -> bool {
    uptime > max.max(Duration::from_secs(1))
}

/// Whether a process that ended with `success` restarts under `mode`.
pub fn wants_restart(mode: RestartMode, success: bool) -> bool {
    match mode {
        RestartMode::Never => false,
        RestartMode::OnFailure => !success,
        RestartMode::Always => true,
    }
}

/// Restart times inside the sliding `per` window.
#[derive(Debug, Default)]
pub struct Window {
    times: VecDeque<Instant>,
}

impl Window {
    /// Record a restart at `now` if fewer than `count` happened within the
    /// last `per`; `false` means the limit is exceeded.
    pub fn admit(&mut self, now: Instant, count: u32, per: Duration) -> bool {
        while let Some(&t) = self.times.front() {
            if now.duration_since(t) >= per {
                self.times.pop_front();
            } else {
                break;
            }
        }
        if self.times.len() as u64 >= u64::from(count) {
            return false;
        }
        self.times.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_max() {
        let ms = Duration::from_millis;
        let got: Vec<_> = (1..=6).map(|a| backoff(ms(100), ms(1000), a)).collect();
        assert_eq!(
            got,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(backoff(ms(100), ms(1000), 1000), ms(1000));
        assert_eq!(backoff(ms(0), ms(0), 3), ms(0));
    }

    #[test]
    fn backoff_forgets_after_a_long_run() {
        let ms = Duration::from_millis;
        // Short runs keep counting, so the delay keeps doubling.
        assert_eq!(next_attempt(0, ms(10), ms(5000)), 1);
        assert_eq!(next_attempt(3, ms(10), ms(5000)), 4);
        assert_eq!(next_attempt(3, ms(5000), ms(5000)), 4);
        // Up longer than the maximum: back to the minimum.
        assert_eq!(next_attempt(7, ms(5001), ms(5000)), 1);
        assert_eq!(
            backoff(ms(100), ms(5000), next_attempt(7, ms(5001), ms(5000))),
            ms(100)
        );
        // A maximum under a second forgets only after a second.
        assert_eq!(next_attempt(2, ms(900), ms(200)), 3);
        assert_eq!(next_attempt(2, ms(1001), ms(200)), 1);
        assert_eq!(next_attempt(u32::MAX, ms(0), ms(0)), u32::MAX);
        // What `ps` shows.
        assert_eq!(current_attempt(4, None, ms(5000)), 4);
        assert_eq!(current_attempt(4, Some(ms(10)), ms(5000)), 4);
        assert_eq!(current_attempt(4, Some(ms(5001)), ms(5000)), 0);
    }

    #[test]
    fn restart_modes() {
        assert!(!wants_restart(RestartMode::Never, false));
        assert!(wants_restart(RestartMode::OnFailure, false));
        assert!(!wants_restart(RestartMode::OnFailure, true));
        assert!(wants_restart(RestartMode::Always, true));
    }

    #[test]
    fn window_limits_and_slides() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = Window::default();
        assert!(w.admit(t0, 2, s(10)));
        assert!(w.admit(t0 + s(1), 2, s(10)));
        assert!(!w.admit(t0 + s(2), 2, s(10)));
        assert!(w.admit(t0 + s(10), 2, s(10)));
    }
}
