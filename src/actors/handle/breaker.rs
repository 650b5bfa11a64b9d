//! The breaker layer: an open breaker answers at once; every admitted call's outcome is
//! recorded (Dapr's trip expressions are evaluated by [`Breaker`]).

use std::future::Future;
use std::time::Instant;

use crate::actors::store::StoreError;
use crate::resilience::{Breaker, Resilience};

/// Runs `call` through the store's breaker, if it has one. `answered` says whether an `Ok`
/// counts as a success (a bulk call's items may hold store failures).
pub(super) async fn guarded<R>(
    resilience: &Resilience,
    answered: fn(&R) -> bool,
    call: impl Future<Output = Result<R, StoreError>>,
) -> Result<R, StoreError> {
    let Some(breaker) = &resilience.breaker else {
        return call.await;
    };
    let ticket = breaker
        .admit(Instant::now())
        .map_err(StoreError::CircuitOpen)?;
    let result = call.await;
    let ok = match &result {
        Ok(r) => answered(r),
        Err(e) => !e.is_store_failure(),
    };
    if let Some(state) = breaker.record(ticket, ok, Instant::now()) {
        log_change(resilience, breaker, state);
    }
    result
}

fn log_change(resilience: &Resilience, breaker: &Breaker, state: crate::resilience::BreakerState) {
    tracing::warn!(
        store = %resilience.store,
        breaker = %breaker.settings().name,
        state = state.as_str(),
        "circuit breaker changed state"
    );
    resilience.target.breaker_state(state);
}
