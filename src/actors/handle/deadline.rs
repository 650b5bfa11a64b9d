//! The time layer: one deadline per request, and the bound of each attempt within it.

use std::time::{Duration, Instant};

/// When a request's time (`timeout`, from its start) runs out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    at: Instant,
    timeout: Duration,
}

/// How long one attempt may take, and the limit a timeout of it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AttemptLimit {
    /// The attempt's bound: the per-attempt timeout, or what is left of the request's.
    pub within: Duration,
    /// The configured limit that bound is: a timeout error names it, not the remainder.
    pub named: Duration,
}

impl Deadline {
    pub fn start(timeout: Duration) -> Deadline {
        Deadline::starting_at(Instant::now(), timeout)
    }

    fn starting_at(now: Instant, timeout: Duration) -> Deadline {
        Deadline {
            at: now + timeout,
            timeout,
        }
    }

    /// The request's own timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The bound of an attempt starting now, given the per-attempt timeout if one is
    /// configured; `None` once the request's time is spent.
    pub fn attempt(&self, per_attempt: Option<Duration>) -> Option<AttemptLimit> {
        self.attempt_at(Instant::now(), per_attempt)
    }

    fn attempt_at(&self, now: Instant, per_attempt: Option<Duration>) -> Option<AttemptLimit> {
        let left = self.at.saturating_duration_since(now);
        if left.is_zero() {
            return None;
        }
        Some(match per_attempt {
            Some(t) if t < left => AttemptLimit {
                within: t,
                named: t,
            },
            _ => AttemptLimit {
                within: left,
                named: self.timeout,
            },
        })
    }

    /// Whether waiting `wait` from now still leaves time for another attempt.
    pub fn leaves_time_after(&self, wait: Duration) -> bool {
        Instant::now() + wait < self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_is_bound_by_the_smaller_limit_and_names_it() {
        let t0 = Instant::now();
        let d = Deadline::starting_at(t0, Duration::from_secs(5));
        let per = Some(Duration::from_secs(1));
        assert_eq!(
            d.attempt_at(t0, per),
            Some(AttemptLimit {
                within: Duration::from_secs(1),
                named: Duration::from_secs(1)
            })
        );
        // Less than the per-attempt timeout left: the remainder bounds it, the request's
        // timeout is named.
        let late = t0 + Duration::from_millis(4500);
        assert_eq!(
            d.attempt_at(late, per),
            Some(AttemptLimit {
                within: Duration::from_millis(500),
                named: Duration::from_secs(5)
            })
        );
        assert_eq!(
            d.attempt_at(t0, None).map(|l| l.named),
            Some(Duration::from_secs(5))
        );
        assert_eq!(d.attempt_at(t0 + Duration::from_secs(5), per), None);
    }
}
