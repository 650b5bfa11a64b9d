//! The commands of one Redis store: connecting a slot, reads (plain and TTL-aware, single
//! and bulk), writes through the script, transactions, and the waits a strong write makes.

use super::*;

impl RedisStore {
    pub(super) fn new(shared: Arc<Shared>) -> RedisStore {
        RedisStore {
            shared,
            conn: Slot::new(),
            write_conn: Slot::new(),
            strong_conn: Slot::new(),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The connection slot commands of `kind` use.
    pub(super) fn slot(&self, kind: Kind) -> &Slot {
        match (&self.shared.mode, kind) {
            (Mode::Cluster { .. }, Kind::Write) => &self.write_conn,
            (Mode::Cluster { .. }, Kind::StrongWrite) => &self.strong_conn,
            _ => &self.conn,
        }
    }

    /// This instance's connection for `kind`, opened on first use. Concurrent callers share
    /// one connect (bounded by `dialTimeout`) instead of each opening their own or queueing.
    pub(super) async fn connection(&self, kind: Kind) -> Result<(u64, Conn), StoreError> {
        use futures::FutureExt;
        let slot = self.slot(kind);
        // The common case: a ready connection, read without a lock.
        if let Some(ready) = &*slot.ready.load() {
            return Ok((ready.0, ready.1.clone()));
        }
        let fut = {
            let mut state = slot.state.lock();
            match &*state {
                ConnSlot::Ready(g, c) => return Ok((*g, c.clone())),
                ConnSlot::Connecting(f) => f.clone(),
                ConnSlot::Empty => {
                    let dial = self.shared.settings.dial_timeout;
                    let shared = self.shared.clone();
                    let for_writes = !matches!(kind, Kind::Read);
                    let generation = self.generation.clone();
                    let f = async move {
                        let connect = shared.open(for_writes);
                        let conn = match tokio::time::timeout(dial, connect).await {
                            Ok(Ok(c)) => c,
                            Ok(Err(e)) => return Err(map_redis_error(&e, dial).before_sending()),
                            Err(_) => {
                                return Err(StoreError::NotSent(format!(
                                    "connect timed out after {}ms",
                                    dial.as_millis()
                                )));
                            }
                        };
                        let g = generation.fetch_add(1, Ordering::Relaxed) + 1;
                        // A new connection is a moment where the topology may have changed
                        // (a failover, a restart). Reading it must not fail the connect: a
                        // strong write reads it again if it is still unknown.
                        let mut probe = conn.clone();
                        if let Err(e) = shared.learn_topology(&mut probe).await {
                            tracing::debug!(error = %e, "redis: replication topology not read");
                        }
                        Ok((g, conn))
                    }
                    .boxed()
                    .shared();
                    slot.set(&mut state, ConnSlot::Connecting(f.clone()));
                    f
                }
            }
        };
        let result = fut.clone().await;
        let mut state = slot.state.lock();
        if matches!(&*state, ConnSlot::Connecting(f) if f.ptr_eq(&fut)) {
            let new = match &result {
                Ok((g, c)) => ConnSlot::Ready(*g, c.clone()),
                Err(_) => ConnSlot::Empty,
            };
            slot.set(&mut state, new);
        }
        result
    }

    /// Forgets connection `generation` so the next call opens a fresh one (on a cluster a
    /// fresh connection also reads the current topology from the seed nodes).
    pub(super) fn discard(&self, kind: Kind, generation: u64) {
        self.slot(kind).discard(Some(generation));
    }

    /// Runs `f` on this instance's connection within the kind's timeout, replacing a broken
    /// connection and retrying as the module doc describes.
    pub(super) async fn run<T, F, Fut>(&self, kind: Kind, f: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let s = &self.shared.settings;
        let timeout = match kind {
            Kind::Read => s.read_timeout,
            Kind::Write => s.write_timeout,
            Kind::StrongWrite => s.write_timeout + s.wait_timeout,
        };
        let started = Instant::now();
        // The whole call, reconnects included, stays within this budget, so a call never
        // takes longer than the timeout its error names.
        let budget = timeout.max(s.dial_timeout);
        let mut attempt = 0u32;
        loop {
            let failure = match self.connection(kind).await {
                Err(e) => Failure::Connect(e),
                Ok((generation, conn)) => {
                    let left = budget.saturating_sub(started.elapsed()).min(timeout);
                    if left.is_zero() {
                        return Err(StoreError::Timeout(started.elapsed()));
                    }
                    match tokio::time::timeout(left, f(conn)).await {
                        Ok(Ok(v)) => return Ok(v),
                        Ok(Err(e)) => {
                            if is_broken(&e) {
                                self.discard(kind, generation);
                            }
                            let err = map_redis_error(&e, timeout);
                            let again = not_executed(&e)
                                || (kind == Kind::Read && is_broken(&e) && !e.is_timeout());
                            if again {
                                Failure::Connect(err)
                            } else {
                                Failure::Command(err)
                            }
                        }
                        Err(_) => {
                            self.discard(kind, generation);
                            return Err(StoreError::Timeout(started.elapsed()));
                        }
                    }
                }
            };
            let err = match failure {
                Failure::Command(e) => return Err(e),
                Failure::Connect(e) => e,
            };
            let backoff = s
                .min_backoff
                .saturating_mul(1 << attempt.min(16))
                .min(s.max_backoff);
            if attempt >= s.max_retries
                || matches!(err, StoreError::Timeout(_))
                || started.elapsed() + backoff >= s.dial_timeout
            {
                return Err(err);
            }
            attempt += 1;
            tracing::debug!(attempt, error = %err, "redis: retrying a command that did not run");
            tokio::time::sleep(backoff).await;
        }
    }

    /// Reads `keys` (state keys), one result per key: in one round trip on a node; on a
    /// cluster in one `MULTI` block per hash slot, all sent at once.
    pub(super) async fn read(&self, keys: &[&str]) -> Result<Vec<BulkGetItem>, StoreError> {
        let keys: Vec<std::borrow::Cow<'_, str>> =
            keys.iter().map(|k| self.shared.redis_key(k)).collect();
        if !self.shared.settings.cluster || keys.len() == 1 {
            let refs: Vec<&str> = keys.iter().map(|k| k.as_ref()).collect();
            return self.read_slot(&refs).await;
        }
        let groups = group_by_slot(keys.iter().enumerate().map(|(i, k)| (i, k.as_ref())));
        let keys = &keys;
        let mut calls: Vec<futures::future::BoxFuture<'_, _>> = Vec::with_capacity(groups.len());
        for g in &groups {
            let refs: Vec<&str> = g.iter().map(|i| keys[*i].as_ref()).collect();
            calls.push(Box::pin(async move { self.read_slot(&refs).await }));
        }
        let replies: Vec<_> = futures::stream::iter(calls)
            .buffered(MAX_SLOT_CALLS)
            .collect()
            .await;
        let mut out: Vec<Option<BulkGetItem>> = keys.iter().map(|_| None).collect();
        for (g, reply) in groups.iter().zip(replies) {
            match reply {
                Ok(items) => {
                    for (i, item) in g.iter().zip(items) {
                        out[*i] = Some(item);
                    }
                }
                Err(e) => {
                    for i in g {
                        out[*i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.expect("every key is in one group"))
            .collect())
    }

    /// Reads Redis keys of one hash slot (any keys on one node) in one round trip
    /// ([`read_pipeline`]); keys written by Dapr, whose hash does not record their expiry,
    /// take a second one ([`ttl_read_pipeline`]).
    pub(super) async fn read_slot(&self, keys: &[&str]) -> Result<Vec<BulkGetItem>, StoreError> {
        let pipe = read_pipeline(keys);
        let pipe = &pipe;
        let reply: Vec<Value> = self
            .run(Kind::Read, |mut conn| async move {
                pipe.query_async(&mut conn).await
            })
            .await?;
        if reply.len() != keys.len() {
            return Err(StoreError::Internal(format!(
                "redis: a read answered {} replies for {} keys",
                reply.len(),
                keys.len()
            )));
        }
        let mut out = Vec::with_capacity(keys.len());
        let mut unknown = Vec::new();
        for (i, fields) in reply.into_iter().enumerate() {
            out.push(match read_result(fields) {
                Ok(Read::Missing) => Ok(None),
                Ok(Read::Entry(e)) => Ok(Some(e)),
                Ok(Read::UnknownExpiry) => {
                    unknown.push(i);
                    Ok(None)
                }
                Err(e) => Err(e),
            });
        }
        if unknown.is_empty() {
            return Ok(out);
        }
        let again: Vec<&str> = unknown.iter().map(|i| keys[*i]).collect();
        let pipe = ttl_read_pipeline(&again);
        let pipe = &pipe;
        let reply: Vec<Value> = self
            .run(Kind::Read, |mut conn| async move {
                pipe.query_async(&mut conn).await
            })
            .await?;
        if reply.len() != 2 * again.len() {
            return Err(StoreError::Internal(format!(
                "redis: a read answered {} replies for {} keys",
                reply.len(),
                again.len()
            )));
        }
        let mut reply = reply.into_iter();
        for i in unknown {
            let (Some(fields), Some(pttl)) = (reply.next(), reply.next()) else {
                unreachable!("checked length")
            };
            out[i] = ttl_read_result(fields, pttl);
        }
        Ok(out)
    }

    /// The version counter the write script uses for `ops` (all in one hash slot on a cluster).
    pub(super) fn counter_key(&self, ops: &[&WriteOp<'_>]) -> &'static str {
        match ops.first() {
            Some(op) if self.shared.settings.cluster => slot_counter_key(&op.key),
            _ => VERSION_COUNTER_KEY,
        }
    }

    /// Sends the write script over `ops` in `mode` (`each` or `all`) on `conn`.
    pub(super) async fn invoke_write<C: ConnectionLike>(
        &self,
        conn: &mut C,
        mode: &str,
        ops: &[&WriteOp<'_>],
    ) -> Result<Value, RedisError> {
        let mut inv = self.shared.write.prepare_invoke();
        inv.key(self.counter_key(ops)).arg(mode);
        for op in ops {
            inv.key(op.key.as_ref())
                .arg(if op.del { "del" } else { "set" })
                .arg(op.etag.as_deref().unwrap_or(""))
                .arg(if op.first_write { "1" } else { "0" })
                .arg(op.ttl_ms)
                .arg(op.data);
        }
        inv.invoke_async(conn).await
    }

    /// The write script as one `EVAL` command (for a pipeline, where `EVALSHA` cannot load
    /// the script after `NOSCRIPT`).
    pub(super) fn eval_write(&self, mode: &str, ops: &[&WriteOp<'_>]) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(WRITE_SCRIPT)
            .arg(ops.len() + 1)
            .arg(self.counter_key(ops));
        for op in ops {
            cmd.arg(op.key.as_ref());
        }
        cmd.arg(mode);
        for op in ops {
            cmd.arg(if op.del { "del" } else { "set" })
                .arg(op.etag.as_deref().unwrap_or(""))
                .arg(if op.first_write { "1" } else { "0" })
                .arg(op.ttl_ms)
                .arg(op.data);
        }
        cmd
    }

    /// Runs the write script over `ops` (on a cluster: all in one hash slot). With `strong`
    /// (and replicas to wait for) the script is followed by `WAIT` on the same connection,
    /// which fails the call when too few replicas acknowledge in time (the write itself
    /// stays applied on the primary): on one node over a pooled connection of its own, on a
    /// cluster in one pipeline to the slot's primary over a connection only strong writes use
    /// (`WAIT` then also waits for the other strong writes sent before it on that connection,
    /// which only makes it stricter; when replicas do not answer, strong writes queue behind
    /// each other's `WAIT`, while other calls are unaffected).
    pub(super) async fn write(
        &self,
        mode: &str,
        ops: &[&WriteOp<'_>],
        strong: bool,
    ) -> Result<Value, StoreError> {
        let s = &self.shared.settings;
        let required = if strong {
            self.replicas_to_wait_for(ops).await?
        } else {
            0
        };
        if required == 0 {
            return self
                .run(Kind::Write, |mut conn| async move {
                    self.invoke_write(&mut conn, mode, ops).await
                })
                .await;
        }
        let pool = match &self.shared.mode {
            Mode::Node { pool, .. } => pool,
            Mode::Cluster { .. } => {
                let (reply, acked): (Value, i64) = self
                    .run(Kind::StrongWrite, |mut conn| async move {
                        let mut pipe = redis::pipe();
                        pipe.add_command(self.eval_write(mode, ops))
                            .cmd("WAIT")
                            .arg(required)
                            .arg(millis(s.wait_timeout));
                        pipe.query_async(&mut conn).await
                    })
                    .await?;
                check_acked(acked, required, s)?;
                return Ok(reply);
            }
        };
        let deadline = s.pool_timeout + s.write_timeout + s.wait_timeout;
        let strong_write = async {
            let mut conn = pool.get().await.map_err(|e| match e {
                deadpool_redis::PoolError::Timeout(_) => StoreError::Timeout(s.pool_timeout),
                deadpool_redis::PoolError::Backend(e) => map_redis_error(&e, s.dial_timeout),
                other => StoreError::Unavailable(other.to_string()),
            })?;
            let reply = self
                .invoke_write(&mut conn, mode, ops)
                .await
                .map_err(|e| map_redis_error(&e, s.write_timeout))?;
            let acked: i64 = redis::cmd("WAIT")
                .arg(required)
                .arg(millis(s.wait_timeout))
                .query_async(&mut conn)
                .await
                .map_err(|e| map_redis_error(&e, s.wait_timeout))?;
            check_acked(acked, required, s)?;
            Ok(reply)
        };
        tokio::time::timeout(deadline, strong_write)
            .await
            .unwrap_or(Err(StoreError::Timeout(deadline)))
    }

    /// How many replicas a strong write of `ops` (on a cluster: all in one hash slot) waits
    /// for: `redisReplicas` when set, otherwise every replica seen behind the primary that
    /// serves them (see [`topology`]), read now if it was never read.
    pub(super) async fn replicas_to_wait_for(
        &self,
        ops: &[&WriteOp<'_>],
    ) -> Result<u32, StoreError> {
        let s = &self.shared.settings;
        if s.replicas > 0 {
            return Ok(s.replicas);
        }
        let slot = match (&self.shared.mode, ops.first()) {
            (Mode::Cluster { .. }, Some(op)) => Some(HashSlot::for_key(op.key.as_bytes())),
            _ => None,
        };
        if let Some(n) = self.shared.topology.required(slot) {
            return Ok(n);
        }
        let (_, mut conn) = self.connection(Kind::Read).await?;
        self.shared.learn_topology(&mut conn).await?;
        Ok(self.shared.topology.required(slot).unwrap_or(0))
    }

    pub(super) fn ttl_ms(&self, ttl: Option<Ttl>) -> i64 {
        match ttl.or(self.shared.settings.default_ttl.map(Ttl::Seconds)) {
            Some(Ttl::Seconds(s)) => i64::from(s) * 1000,
            Some(Ttl::Never) | None => -1,
        }
    }

    pub(super) fn set_op<'a>(&self, r: &'a SetRequest) -> Result<WriteOp<'a>, StoreError> {
        Ok(WriteOp {
            key: self.shared.redis_key(&r.key),
            del: false,
            etag: r.etag.as_deref().map(canonical_etag).transpose()?,
            first_write: r.options.concurrency == Concurrency::FirstWrite,
            ttl_ms: self.ttl_ms(r.ttl),
            data: &r.value,
        })
    }

    pub(super) fn delete_op<'a>(&self, r: &'a DeleteRequest) -> Result<WriteOp<'a>, StoreError> {
        Ok(WriteOp {
            key: self.shared.redis_key(&r.key),
            del: true,
            etag: r.etag.as_deref().map(canonical_etag).transpose()?,
            first_write: false,
            ttl_ms: -1,
            data: b"",
        })
    }

    /// Refuses a transaction whose keys are in more than one hash slot of the cluster: a
    /// script, the one way to make it atomic, runs on one node over keys of one slot. Checked
    /// before anything is sent, so nothing is written.
    pub(super) fn check_one_slot(
        &self,
        req: &TransactionRequest,
        ops: &[WriteOp<'_>],
    ) -> Result<(), StoreError> {
        let Some(first) = ops.first() else {
            return Ok(());
        };
        let slot = HashSlot::for_key(first.key.as_bytes());
        let Some(other) = ops
            .iter()
            .position(|o| HashSlot::for_key(o.key.as_bytes()) != slot)
        else {
            return Ok(());
        };
        let key = |i: usize| req.operations.get(i).map(TransactionOp::key).unwrap_or("?");
        Err(StoreError::InvalidRequest(format!(
            "transaction refused, nothing was written: keys '{}' and '{}' are in different hash slots of the Redis Cluster, and a transaction is atomic only within one slot; give keys that change together the same hash tag (only the part in braces is hashed, e.g. 'order{{42}}' and 'stock{{42}}'), or set clusterKeyPlacement: prefix on the component to keep all keys of an app in one slot",
            key(0),
            key(other)
        )))
    }

    /// Runs independent writes: one result per request, in order. On a node in one round
    /// trip; on a cluster in one script call per hash slot, all sent at once (at most
    /// 64 in flight). Requests that failed before reaching Redis (an invalid
    /// ETag) keep their error.
    pub(super) async fn write_each(
        &self,
        ops: Vec<Result<WriteOp<'_>, StoreError>>,
        strong: bool,
    ) -> Vec<Result<(), StoreError>> {
        let mut out: Vec<Option<Result<(), StoreError>>> = ops
            .iter()
            .map(|o| o.as_ref().err().map(|e| Err(e.clone())))
            .collect();
        let valid = ops
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.as_ref().ok().map(|o| (i, o)));
        let groups: Vec<Vec<(usize, &WriteOp<'_>)>> = if self.shared.settings.cluster {
            group_by_slot(valid.map(|(i, o)| ((i, o), o.key.as_ref())))
        } else {
            vec![valid.collect()]
        };
        let mut calls: Vec<futures::future::BoxFuture<'_, _>> = Vec::with_capacity(groups.len());
        for g in groups.iter().filter(|g| !g.is_empty()) {
            let refs: Vec<&WriteOp<'_>> = g.iter().map(|(_, o)| *o).collect();
            calls.push(Box::pin(async move {
                (g, self.write("each", &refs, strong).await)
            }));
        }
        let replies: Vec<_> = futures::stream::iter(calls)
            .buffered(MAX_SLOT_CALLS)
            .collect()
            .await;
        for (g, reply) in replies {
            match reply {
                Ok(Value::Array(codes)) if codes.len() == g.len() => {
                    for ((i, _), code) in g.iter().zip(codes.iter()) {
                        out[*i] = Some(write_result(code));
                    }
                }
                Ok(other) => {
                    let e = unexpected(&other);
                    for (i, _) in g {
                        out[*i] = Some(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for (i, _) in g {
                        out[*i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        out.into_iter()
            .map(|o| o.expect("one result per request"))
            .collect()
    }
}
