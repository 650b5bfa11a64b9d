//! The one watcher of the files Mecha re-reads while it runs: the configuration files
//! (hot reload), the token files (`tokenFile`) and the TLS certificate and key.
//!
//! Each user subscribes a check and how often it runs ([`Watcher::subscribe`]); the check
//! itself decides whether its files changed (by content: a digest) and what to do then.
//! [`Watcher::run`] is one task that runs every check when it is due. Checks run
//! concurrently, so a slow one (a reload waiting for files to settle) never delays another,
//! and each runs at most once at a time: a check that took longer than its period runs again
//! as soon as it is done, then on its period from there.

use std::time::Duration;

use futures::StreamExt;
use futures::future::LocalBoxFuture;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

/// A check: called each time it is due, it returns the work to run.
type Check = Box<dyn FnMut() -> LocalBoxFuture<'static, ()>>;

struct Subscription {
    every: Duration,
    check: Check,
}

/// The checks to run and their periods.
#[derive(Default)]
pub struct Watcher {
    subscriptions: Vec<Subscription>,
}

impl Watcher {
    /// A watcher with no checks.
    pub fn new() -> Watcher {
        Watcher::default()
    }

    /// Runs `check` every `every`, the first time `every` after [`Watcher::run`] starts.
    /// A zero period subscribes nothing.
    pub fn subscribe<F>(&mut self, every: Duration, mut check: impl FnMut() -> F + 'static)
    where
        F: Future<Output = ()> + 'static,
    {
        if every.is_zero() {
            return;
        }
        self.subscriptions.push(Subscription {
            every,
            check: Box::new(move || Box::pin(check())),
        });
    }

    /// Whether no check is subscribed.
    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
    }

    /// Runs the checks forever (spawn it; abort to stop, which drops any check under way).
    pub async fn run(mut self) {
        let start = Instant::now();
        // When each check is next due; `None` while it runs.
        let mut due: Vec<Option<Instant>> = self
            .subscriptions
            .iter()
            .map(|s| Some(start + s.every))
            .collect();
        let mut last: Vec<Instant> = due.iter().map(|d| d.unwrap_or(start)).collect();
        let mut running = FuturesUnordered::new();
        loop {
            let next = due.iter().flatten().min().copied();
            tokio::select! {
                Some(i) = running.next(), if !running.is_empty() => {
                    let i: usize = i;
                    let now = Instant::now();
                    let again = last[i] + self.subscriptions[i].every;
                    due[i] = Some(if again <= now { now } else { again });
                }
                () = sleep_until(next) => {
                    let now = Instant::now();
                    for (i, sub) in self.subscriptions.iter_mut().enumerate() {
                        if due[i].is_some_and(|d| d <= now) {
                            due[i] = None;
                            last[i] = now;
                            let work = (sub.check)();
                            running.push(async move {
                                work.await;
                                i
                            });
                        }
                    }
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever when nothing is due.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// Runs `w` for `d` of real time on a local task set.
    async fn run_for(w: Watcher, d: Duration) {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let task = tokio::task::spawn_local(w.run());
                tokio::time::sleep(d).await;
                task.abort();
            })
            .await;
    }

    fn counter(w: &mut Watcher, every: Duration) -> Rc<Cell<u32>> {
        let n = Rc::new(Cell::new(0));
        let c = n.clone();
        w.subscribe(every, move || {
            c.set(c.get() + 1);
            async {}
        });
        n
    }

    #[tokio::test]
    async fn each_check_runs_on_its_own_period() {
        let mut w = Watcher::new();
        let fast = counter(&mut w, Duration::from_millis(20));
        let slow = counter(&mut w, Duration::from_millis(200));
        let never = counter(&mut w, Duration::ZERO);
        run_for(w, Duration::from_millis(500)).await;
        assert_eq!(never.get(), 0, "a zero period subscribes nothing");
        assert!(
            (1..=2).contains(&slow.get()),
            "slow ran {} times",
            slow.get()
        );
        assert!(
            fast.get() >= 8 && fast.get() <= 25,
            "fast ran {} times",
            fast.get()
        );
    }

    #[tokio::test]
    async fn a_slow_check_delays_neither_another_nor_overlaps_itself() {
        let mut w = Watcher::new();
        let fast = counter(&mut w, Duration::from_millis(20));
        let slow = Rc::new(Cell::new(0));
        let in_flight = Rc::new(Cell::new(0));
        let most = Rc::new(Cell::new(0));
        let (s, n, m) = (slow.clone(), in_flight.clone(), most.clone());
        w.subscribe(Duration::from_millis(20), move || {
            s.set(s.get() + 1);
            let (n, m) = (n.clone(), m.clone());
            async move {
                n.set(n.get() + 1);
                m.set(m.get().max(n.get()));
                tokio::time::sleep(Duration::from_millis(300)).await;
                n.set(n.get() - 1);
            }
        });
        run_for(w, Duration::from_millis(500)).await;
        // At 20 ms (until 320), then at once again (until 620).
        assert_eq!(slow.get(), 2);
        assert_eq!(most.get(), 1, "one run at a time");
        assert!(
            fast.get() >= 8,
            "fast ran {} times beside the slow check",
            fast.get()
        );
    }
}
