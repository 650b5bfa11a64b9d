//! Body memory budgets: the bytes of request bodies (HTTP) and messages (gRPC) held in
//! memory, per app (`quotas.maxBodyBytes`) and for all apps together
//! (`limits.maxBodyBytesInFlight`).
//!
//! A body is charged while it streams in, before its bytes are buffered: HTTP charges a
//! declared `Content-Length` whole before reading a byte, a chunked body chunk by chunk;
//! gRPC charges each DATA frame before tonic's decoder sees it. A charge that does not fit
//! waits (FIFO, tokio's fair semaphore) for at most `limits.bodyMemoryWait` in total for the
//! request, then the request is refused with 429 `ERR_TOO_MANY_REQUESTS` /
//! `RESOURCE_EXHAUSTED`. The charge is held until the request has been answered (its
//! decoded form lives that long), and given back when the [`BodyMeter`] is dropped.
//!
//! Budgets are counted in KiB units of a [`Semaphore`] (rounded up), so one budget can
//! describe up to 4 TiB.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::{Error, ErrorKind};
use crate::model::AppId;
use crate::model::Operation;

const UNIT: usize = 1024;

/// One budget: a capacity in bytes and a semaphore of as many KiB.
#[derive(Debug)]
pub struct Budget {
    bytes: usize,
    sem: Arc<Semaphore>,
}

impl Budget {
    /// A budget of `bytes` (rounded up to whole KiB); `None` for 0 (unlimited).
    pub fn new(bytes: usize) -> Option<Arc<Budget>> {
        if bytes == 0 {
            return None;
        }
        let units = bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        Some(Arc::new(Budget {
            bytes,
            sem: Arc::new(Semaphore::new(units)),
        }))
    }

    /// Capacity in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes charged now (whole KiB).
    pub fn in_use(&self) -> usize {
        let units = self.bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        (units - self.sem.available_permits()) * UNIT
    }
}

/// The charge of one request against its app's budget and the global one; grows as the
/// body arrives, released on drop.
pub struct BodyMeter {
    app_id: AppId,
    app: Option<Arc<Budget>>,
    global: Option<Arc<Budget>>,
    wait: Duration,
    deadline: Option<Instant>,
    held_app: Option<OwnedSemaphorePermit>,
    held_global: Option<OwnedSemaphorePermit>,
    units: usize,
    refused: bool,
}

impl std::fmt::Debug for BodyMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyMeter")
            .field("app", &self.app_id)
            .field("units", &self.units)
            .finish_non_exhaustive()
    }
}

impl BodyMeter {
    /// A meter charging `app` (its budget, if any) and `global` (if any), waiting at most
    /// `wait` in total for room.
    pub fn new(
        app_id: AppId,
        app: Option<Arc<Budget>>,
        global: Option<Arc<Budget>>,
        wait: Duration,
    ) -> BodyMeter {
        BodyMeter {
            app_id,
            app,
            global,
            wait,
            deadline: None,
            held_app: None,
            held_global: None,
            units: 0,
            refused: false,
        }
    }

    /// A meter that charges nothing (tests, internal requests).
    pub fn unlimited() -> BodyMeter {
        BodyMeter::new(AppId::from(""), None, None, Duration::ZERO)
    }

    /// Bytes charged so far (whole KiB).
    pub fn charged(&self) -> usize {
        self.units * UNIT
    }

    /// Whether a charge was refused (the body was not read to its end).
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// Makes the charge cover at least `total` bytes of this request's body, waiting for
    /// room until this request's deadline (`bodyMemoryWait` after its first wait).
    pub async fn reserve(&mut self, total: usize, op: Operation) -> Result<(), Error> {
        let want = total.div_ceil(UNIT);
        if want <= self.units {
            return Ok(());
        }
        let more = want - self.units;
        let app = self.app.clone();
        let global = self.global.clone();
        for (budget, is_app) in [(app, true), (global, false)] {
            let Some(budget) = budget else { continue };
            let cap = budget.bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
            if want > cap {
                // Never fits, even alone: refuse at once instead of waiting.
                return Err(self.refuse(op, is_app, &budget));
            }
            let n = u32::try_from(more).unwrap_or(u32::MAX);
            let permit = match budget.sem.clone().try_acquire_many_owned(n) {
                Ok(p) => p,
                Err(_) => {
                    let deadline = *self
                        .deadline
                        .get_or_insert_with(|| Instant::now() + self.wait);
                    let acquire = budget.sem.clone().acquire_many_owned(n);
                    match tokio::time::timeout_at(deadline, acquire).await {
                        Ok(Ok(p)) => p,
                        _ => return Err(self.refuse(op, is_app, &budget)),
                    }
                }
            };
            let held = if is_app {
                &mut self.held_app
            } else {
                &mut self.held_global
            };
            match held {
                Some(h) => h.merge(permit),
                None => *held = Some(permit),
            }
        }
        self.units = want;
        Ok(())
    }

    fn refuse(&mut self, op: Operation, is_app: bool, budget: &Budget) -> Error {
        self.refused = true;
        let whose = if is_app { "this app's" } else { "all apps'" };
        tracing::debug!(app = %self.app_id, budget = if is_app { "app" } else { "global" }, "body refused: memory budget in use");
        Error::new(
            ErrorKind::TooManyRequests {
                retry_after_secs: 1,
            },
            op,
        )
        .app(self.app_id.as_ref())
        .detail(format!(
            "request bodies in memory: {whose} budget of {} bytes is in use (waited {} ms)",
            budget.bytes,
            self.wait.as_millis()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(app: usize, global: usize, wait_ms: u64) -> (BodyMeter, Arc<Budget>, Arc<Budget>) {
        let a = Budget::new(app).unwrap();
        let g = Budget::new(global).unwrap();
        let m = BodyMeter::new(
            AppId::from("a"),
            Some(a.clone()),
            Some(g.clone()),
            Duration::from_millis(wait_ms),
        );
        (m, a, g)
    }

    #[tokio::test]
    async fn charges_grow_and_are_given_back_on_drop() {
        let (mut m, a, g) = meter(1 << 20, 2 << 20, 10);
        m.reserve(1000, Operation::Save).await.unwrap();
        assert_eq!(m.charged(), 1024);
        m.reserve(300_000, Operation::Save).await.unwrap();
        assert_eq!(a.in_use(), 293 * 1024);
        assert_eq!(g.in_use(), 293 * 1024);
        drop(m);
        assert_eq!((a.in_use(), g.in_use()), (0, 0));
    }

    #[tokio::test]
    async fn a_full_budget_refuses_after_the_wait_and_a_freed_one_admits() {
        let (mut first, a, g) = meter(1 << 20, 1 << 20, 50);
        first.reserve(1 << 20, Operation::Save).await.unwrap();
        let mut second = BodyMeter::new(
            AppId::from("a"),
            Some(a.clone()),
            Some(g.clone()),
            Duration::from_millis(50),
        );
        let t = std::time::Instant::now();
        let e = second.reserve(1, Operation::Save).await.unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(45));
        assert!(matches!(e.kind(), ErrorKind::TooManyRequests { .. }));
        assert!(second.refused());
        // A waiter is admitted as soon as the first request ends.
        let mut third = BodyMeter::new(AppId::from("a"), Some(a), Some(g), Duration::from_secs(5));
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(first);
        });
        third.reserve(4096, Operation::Save).await.unwrap();
        release.await.unwrap();
    }

    #[tokio::test]
    async fn a_body_larger_than_a_budget_is_refused_at_once() {
        let (mut m, _, _) = meter(64 * 1024, 1 << 20, 10_000);
        let t = std::time::Instant::now();
        assert!(m.reserve(65 * 1024, Operation::Save).await.is_err());
        assert!(t.elapsed() < Duration::from_secs(1));
        let mut free = BodyMeter::unlimited();
        free.reserve(usize::MAX / 2, Operation::Save).await.unwrap();
    }
}
