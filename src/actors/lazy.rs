//! A store connection opened on first use and shared by every shard of a store.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::StoreError;

/// A connection opened on first use. Concurrent callers wait for one connect instead of
/// each opening their own, and a failed connect is remembered for a while so calls fail fast
/// instead of queueing connect attempts behind one another.
pub struct LazyConnection<T> {
    /// The open connection; read without waiting on every call.
    ready: parking_lot::RwLock<Option<Arc<T>>>,
    /// Held while connecting; remembers the last failed connect.
    connecting: tokio::sync::Mutex<Option<(Instant, StoreError)>>,
}

impl<T> Default for LazyConnection<T> {
    fn default() -> Self {
        LazyConnection {
            ready: parking_lot::RwLock::new(None),
            connecting: tokio::sync::Mutex::new(None),
        }
    }
}

impl<T> LazyConnection<T> {
    /// The open connection, or a new one from `connect` (which must bound its own time).
    /// After a failed connect, calls within `retry_after` get the same error at once.
    pub async fn get<F, Fut>(&self, retry_after: Duration, connect: F) -> Result<Arc<T>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        if let Some(c) = self.ready.read().clone() {
            return Ok(c);
        }
        let mut failed = self.connecting.lock().await;
        if let Some(c) = self.ready.read().clone() {
            return Ok(c);
        }
        if let Some((at, e)) = &*failed
            && at.elapsed() < retry_after
        {
            return Err(e.clone());
        }
        match connect().await {
            Ok(c) => {
                let c = Arc::new(c);
                *self.ready.write() = Some(c.clone());
                *failed = None;
                Ok(c)
            }
            Err(e) => {
                *failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// Forgets the connection, so the next call opens a new one.
    pub fn forget(&self) {
        *self.ready.write() = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn one_connect_for_concurrent_callers_and_failures_are_remembered() {
        let lazy = LazyConnection::<usize>::default();
        let attempts = AtomicUsize::new(0);
        let connect = || async {
            attempts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(7)
        };
        let (a, b) = tokio::join!(
            lazy.get(Duration::ZERO, connect),
            lazy.get(Duration::ZERO, connect)
        );
        assert_eq!((*a.unwrap(), *b.unwrap()), (7, 7));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);

        lazy.forget();
        let down = || async { Err(StoreError::Unavailable("down".into())) };
        assert!(lazy.get(Duration::from_secs(60), down).await.is_err());
        // Within retry_after the remembered failure answers without a new attempt.
        let before = attempts.load(Ordering::SeqCst);
        assert!(lazy.get(Duration::from_secs(60), connect).await.is_err());
        assert_eq!(attempts.load(Ordering::SeqCst), before);
        // Past it, a new connect is made.
        assert_eq!(*lazy.get(Duration::ZERO, connect).await.unwrap(), 7);
    }
}
