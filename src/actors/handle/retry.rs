//! The retry layer: whether a failed attempt may run again, and when.

use std::future::Future;

use super::deadline::Deadline;
use crate::actors::store::StoreError;
use crate::resilience::RetryPolicy;

/// Whether a failed attempt may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repeat {
    /// Reads: repeating cannot change anything.
    Idempotent,
    /// Writes: repeated only when the store was certainly not reached.
    OnlyIfNotSent,
}

impl Repeat {
    /// Whether `err` allows another attempt. An open breaker never does (it answers for
    /// the store); otherwise only store failures are worth repeating, and for writes only
    /// those where the request certainly did not leave Mecha.
    pub fn allows(self, err: &StoreError) -> bool {
        match (self, err) {
            (_, StoreError::CircuitOpen(_)) => false,
            (Repeat::Idempotent, e) => e.is_store_failure(),
            (Repeat::OnlyIfNotSent, e) => e.is_store_failure() && e.not_sent(),
        }
    }
}

/// Runs `attempt` until it succeeds, `repeat` forbids another try, the policy's retries
/// are spent, or the next wait would not leave time for another attempt before `deadline`.
pub(super) async fn retrying<R, F, Fut>(
    policy: Option<&RetryPolicy>,
    repeat: Repeat,
    deadline: Deadline,
    target: &crate::metrics::ResiliencyTarget,
    mut attempt: F,
) -> Result<R, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, StoreError>>,
{
    let mut retry = 0u32;
    loop {
        let err = match attempt().await {
            Ok(r) => return Ok(r),
            Err(e) => e,
        };
        let Some(policy) = policy.filter(|_| repeat.allows(&err)) else {
            return Err(err);
        };
        retry += 1;
        let Some(wait) = policy.wait(retry, rand::random::<f64>()) else {
            return Err(err);
        };
        if !deadline.leaves_time_after(wait) {
            return Err(err);
        }
        if retry == 1 {
            // daprd counts one activation per call, when its first retry is scheduled.
            target.retry_scheduled();
        }
        tracing::debug!(retry, error = %err, wait_ms = wait.as_millis() as u64, "retrying a store call");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_repeat_only_what_never_left_mecha() {
        let lost = StoreError::Unavailable("connection reset".into());
        let refused = StoreError::NotSent("connection refused".into());
        let timeout = StoreError::Timeout(std::time::Duration::from_secs(1));
        assert!(Repeat::Idempotent.allows(&lost));
        assert!(Repeat::Idempotent.allows(&timeout));
        assert!(!Repeat::OnlyIfNotSent.allows(&lost));
        assert!(!Repeat::OnlyIfNotSent.allows(&timeout));
        assert!(Repeat::OnlyIfNotSent.allows(&refused));
        // Answers of the store are outcomes, not failures: never repeated.
        for answer in [
            StoreError::EtagMismatch(None),
            StoreError::InvalidRequest("bad".into()),
            StoreError::Busy(4),
        ] {
            assert!(!Repeat::Idempotent.allows(&answer), "{answer:?}");
            assert!(!Repeat::OnlyIfNotSent.allows(&answer), "{answer:?}");
        }
    }
}
