//! Per-app quotas: requests in flight and request rate ([`QuotaSettings`]).
//!
//! Both doors call [`Quotas::admit`] right after authentication and hold the returned
//! [`Permit`] until the answer is written. Past a limit the request is refused (never
//! queued for service, so a flooding app cannot fill Mecha with waiting work) with 429
//! `ERR_TOO_MANY_REQUESTS` / `RESOURCE_EXHAUSTED` and a `Retry-After`, sent after the app's
//! `refusalDelay` (default 50 ms): a client that retries at once then gets at most one
//! refusal per connection (or stream) per delay, instead of costing Mecha a full request's
//! CPU at line rate. The rate limit is a
//! GCRA from the `governor` crate; the in-flight count is one atomic counter per app.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

use super::budget::{BodyMeter, Budget};
use crate::config::QuotaSettings;
use crate::error::{Error, ErrorKind};
use crate::model::AppId;
use crate::model::Operation;

struct AppQuota {
    settings: QuotaSettings,
    in_flight: AtomicUsize,
    limiter: Option<DefaultDirectRateLimiter>,
    /// `quotas.maxBodyBytes` of this app.
    bodies: Option<Arc<Budget>>,
}

/// The global body budget (`limits.maxBodyBytesInFlight`) and how long a body waits for
/// room (`limits.bodyMemoryWait`).
#[derive(Clone, Debug)]
pub struct BodyLimits {
    /// All apps' body bytes in memory at once (0 = unlimited).
    pub in_flight: usize,
    /// Longest wait for room.
    pub wait: Duration,
}

/// Every app's quota.
pub struct Quotas {
    by_app: HashMap<AppId, Arc<AppQuota>>,
    clock: DefaultClock,
    bodies: Option<Arc<Budget>>,
    body_wait: Duration,
}

/// Held while a request is served; releases its in-flight slot when dropped.
pub struct Permit(Option<Arc<AppQuota>>, Option<Arc<Budget>>, Duration);

impl Permit {
    /// A meter charging this request's body to its app's and the global budget.
    pub fn body_meter(&self, app: &AppId) -> BodyMeter {
        BodyMeter::new(
            app.clone(),
            self.0.as_ref().and_then(|q| q.bodies.clone()),
            self.1.clone(),
            self.2,
        )
    }
}

/// A refused request: the error to answer with, after `delay` (the app's `refusalDelay`).
#[derive(Debug)]
pub struct Refusal {
    /// The 429 / `RESOURCE_EXHAUSTED` error, with its `Retry-After`.
    pub error: Error,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(q) = &self.0 {
            q.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn too_many(app: &AppId, wait: Duration, why: String) -> Error {
    // Whole seconds, rounded up, at least one (HTTP's Retry-After has no fractions).
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Error::new(
        ErrorKind::TooManyRequests {
            retry_after_secs: secs.max(1),
        },
        Operation::Other,
    )
    .app(app.as_ref())
    .detail(why)
}

impl Quotas {
    /// Quotas for `apps`; an app not listed is not limited.
    pub fn new(apps: impl IntoIterator<Item = (AppId, QuotaSettings)>) -> Quotas {
        Quotas::carried(apps, None, None)
    }

    /// Quotas for `apps` after a reload: an app whose settings did not change keeps its
    /// budget (requests in flight, rate-limiter state) from `previous`.
    /// The global body budget is carried too while `bodies` did not change.
    pub fn carried(
        apps: impl IntoIterator<Item = (AppId, QuotaSettings)>,
        previous: Option<&Quotas>,
        bodies: Option<&BodyLimits>,
    ) -> Quotas {
        let by_app = apps
            .into_iter()
            .map(|(app, settings)| {
                if let Some(old) = previous
                    .and_then(|p| p.by_app.get(&app))
                    .filter(|q| q.settings == settings)
                {
                    return (app, old.clone());
                }
                let limiter = NonZeroU32::new(settings.requests_per_second).map(|rps| {
                    let burst = NonZeroU32::new(settings.burst).unwrap_or(rps);
                    governor::RateLimiter::direct(Quota::per_second(rps).allow_burst(burst))
                });
                let q = AppQuota {
                    settings,
                    in_flight: AtomicUsize::new(0),
                    limiter,
                    bodies: Budget::new(settings.max_body_bytes),
                };
                (app, Arc::new(q))
            })
            .collect();
        let in_flight = bodies.map_or(0, |b| b.in_flight);
        let global = match previous.and_then(|p| p.bodies.as_ref()) {
            Some(old) if old.bytes() == in_flight => Some(old.clone()),
            _ => Budget::new(in_flight),
        };
        Quotas {
            by_app,
            clock: DefaultClock::default(),
            bodies: global,
            body_wait: bodies.map_or(Duration::ZERO, |b| b.wait),
        }
    }

    /// Admits one request of `app`, or refuses it with [`ErrorKind::TooManyRequests`].
    pub fn admit(&self, app: &AppId) -> Result<Permit, Refusal> {
        let global = self.bodies.clone();
        let Some(q) = self.by_app.get(app) else {
            return Ok(Permit(None, global, self.body_wait));
        };
        let max = q.settings.max_concurrent;
        let before = q.in_flight.fetch_add(1, Ordering::AcqRel);
        // From here the permit owns the slot: dropping it (on any refusal) gives it back.
        let permit = Permit(Some(q.clone()), global, self.body_wait);
        let refuse = |error| Refusal {
            error,
            delay: q.settings.refusal_delay,
        };
        if max > 0 && before >= max {
            return Err(refuse(too_many(
                app,
                Duration::from_secs(1),
                format!("more than {max} requests in flight"),
            )));
        }
        if let Some(limiter) = &q.limiter
            && let Err(not_until) = limiter.check()
        {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(refuse(too_many(
                app,
                wait,
                format!(
                    "more than {} requests per second",
                    q.settings.requests_per_second
                ),
            )));
        }
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(max_concurrent: usize, rps: u32, burst: u32) -> (Quotas, AppId) {
        let app = AppId::from("a");
        let q = Quotas::new([(
            app.clone(),
            QuotaSettings {
                max_concurrent,
                requests_per_second: rps,
                burst,
                refusal_delay: Duration::ZERO,
                max_body_bytes: 0,
            },
        )]);
        (q, app)
    }

    #[test]
    fn in_flight_limit_refuses_then_frees() {
        let (q, app) = quotas(2, 0, 0);
        let a = q.admit(&app).unwrap();
        let _b = q.admit(&app).unwrap();
        let e = q.admit(&app).err().expect("third is refused").error;
        assert_eq!(e.retry_after(), Some(1));
        drop(a);
        assert!(q.admit(&app).is_ok(), "a finished request frees its slot");
        // Refusals gave their slots back too.
        assert!(q.admit(&app).is_ok());
    }

    #[test]
    fn rate_limit_refuses_past_the_burst_with_a_retry_after() {
        let (q, app) = quotas(0, 1, 3);
        for _ in 0..3 {
            drop(q.admit(&app).unwrap());
        }
        let e = q.admit(&app).err().expect("past the burst").error;
        assert!(matches!(e.kind(), ErrorKind::TooManyRequests { .. }));
        assert_eq!(e.retry_after(), Some(1));
    }

    #[test]
    fn other_apps_and_unlimited_apps_pass() {
        let (q, _) = quotas(1, 1, 1);
        for _ in 0..100 {
            assert!(q.admit(&AppId::from("other")).is_ok());
        }
        let (q, app) = quotas(0, 0, 0);
        let held: Vec<_> = (0..100).map(|_| q.admit(&app).unwrap()).collect();
        assert_eq!(held.len(), 100);
    }

    #[test]
    fn a_reload_keeps_the_budget_of_unchanged_apps_only() {
        let (q, app) = quotas(1, 0, 0);
        let _held = q.admit(&app).unwrap();
        let same = Quotas::carried(
            [(
                app.clone(),
                QuotaSettings {
                    max_concurrent: 1,
                    requests_per_second: 0,
                    burst: 0,
                    refusal_delay: Duration::ZERO,
                    max_body_bytes: 0,
                },
            )],
            Some(&q),
            None,
        );
        assert!(
            same.admit(&app).is_err(),
            "the request in flight still counts"
        );
        let changed = Quotas::carried(
            [(
                app.clone(),
                QuotaSettings {
                    max_concurrent: 2,
                    requests_per_second: 0,
                    burst: 0,
                    refusal_delay: Duration::ZERO,
                    max_body_bytes: 0,
                },
            )],
            Some(&q),
            None,
        );
        assert!(changed.admit(&app).is_ok(), "a changed quota starts afresh");
    }
}
