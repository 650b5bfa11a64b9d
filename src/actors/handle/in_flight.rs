//! The in-flight layer: at most `capacity` calls run on a shard at once; a call past it
//! waits for a slot within its attempt's bound.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::actors::store::StoreError;

pub(super) struct InFlight {
    slots: Arc<Semaphore>,
    capacity: usize,
}

impl InFlight {
    pub fn new(capacity: usize) -> InFlight {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        InFlight {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// A slot, at once when one is free (no timer), else within `within`. The permit
    /// travels with the call and is released when the store future ends, not when the
    /// caller gives up.
    pub async fn acquire(&self, within: Duration) -> Result<OwnedSemaphorePermit, StoreError> {
        let closed = || StoreError::NotSent("the store shard is closed".into());
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Ok(permit),
            Err(TryAcquireError::Closed) => Err(closed()),
            Err(TryAcquireError::NoPermits) => {
                match tokio::time::timeout(within, self.slots.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => Ok(permit),
                    Ok(Err(_)) => Err(closed()),
                    Err(_) => Err(StoreError::Busy(self.capacity)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_past_capacity_waits_then_is_busy() {
        let limit = InFlight::new(1);
        let held = limit.acquire(Duration::from_millis(10)).await.unwrap();
        let r = limit.acquire(Duration::from_millis(20)).await;
        assert!(matches!(r, Err(StoreError::Busy(1))), "{r:?}");
        assert!(r.unwrap_err().not_sent());
        drop(held);
        assert!(limit.acquire(Duration::from_millis(20)).await.is_ok());
    }
}
