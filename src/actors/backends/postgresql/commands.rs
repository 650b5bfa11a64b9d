//! The statements of one PostgreSQL store: connections from the pool, prepared statements
//! per connection, reads, guarded writes, bulk rounds and transactions.

use super::*;

impl PgStore {
    /// Runs `fut` under the component's operation timeout.
    pub(super) async fn timed<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.settings.timeout, fut)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.settings.timeout)))
    }

    /// Runs `f` on a pooled connection (after making sure the schema exists) under the
    /// operation timeout. A connection whose operation timed out midway is closed rather than
    /// reused: its state (an unread response, an open transaction, a dead peer) is unknown.
    pub(super) async fn with_conn<T>(
        &self,
        f: impl AsyncFnOnce(&mut Object) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.timed(async {
            self.migrated.get_or_try_init(|| self.migrate()).await?;
            let mut conn = Conn(Some(self.pool.get().await.map_err(pool_err)?));
            let client = conn.0.as_mut().expect("set above");
            let result = f(client).await;
            conn.release();
            result
        })
        .await
    }

    /// Runs one statement of kind `stmt` through `f` on one of this instance's shared
    /// connections (round-robin), after making sure the schema exists, under the operation
    /// timeout. Concurrent calls pipeline on the connection instead of each holding one. A
    /// shared connection whose operation timed out is closed and replaced, since a frozen
    /// peer would otherwise hold every later call on it. With `pipelineConnections: 0` the
    /// statement runs on a pooled connection instead.
    pub(super) async fn single<T>(
        &self,
        stmt: Stmt,
        f: impl AsyncFnOnce(&tokio_postgres::Client, &Statement) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.pipe.is_empty() {
            return self
                .with_conn(async |client| {
                    let prepared = client
                        .prepare_cached(stmt.text(&self.sql))
                        .await
                        .map_err(db_err)?;
                    f(client, &prepared).await
                })
                .await;
        }
        let deadline = tokio::time::Instant::now() + self.settings.timeout;
        let timed_out = || StoreError::Timeout(self.settings.timeout);
        let conn = tokio::time::timeout_at(deadline, async {
            self.migrated.get_or_try_init(|| self.migrate()).await?;
            self.shared().await
        })
        .await
        .unwrap_or_else(|_| Err(timed_out()))?;
        let run = async {
            let prepared = conn.statement(stmt, &self.sql).await?;
            f(&conn.client, prepared).await
        };
        match tokio::time::timeout_at(deadline, run).await {
            Ok(result) => result,
            Err(_) => {
                conn.kill();
                Err(timed_out())
            }
        }
    }

    /// The next shared connection, connecting (or reconnecting a broken one) when needed.
    pub(super) async fn shared(&self) -> Result<Arc<Shared>, StoreError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pipe.len();
        let mut slot = self.pipe[i].lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| c.usable()) {
            return Ok(conn.clone());
        }
        *slot = None;
        let limit = DEFAULT_CONNECT_TIMEOUT.min(self.settings.timeout);
        let (client, connection) = tokio::time::timeout(limit, self.pg.connect(NoTls))
            .await
            .map_err(|_| StoreError::Unavailable("timed out connecting to PostgreSQL".into()))?
            .map_err(|e| pool_err(PoolError::Backend(e)))?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgresql: shared connection ended");
            }
        })
        .abort_handle();
        let conn = Arc::new(Shared {
            client,
            stmts: Default::default(),
            dead: AtomicBool::new(false),
            task,
        });
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Creates or upgrades the schema in one transaction under a database-wide advisory lock,
    /// checking that an existing table has the columns this code uses.
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = Conn(Some(self.pool.get().await.map_err(pool_err)?));
        let client = conn.0.as_mut().expect("set above");
        let key = format!("mecha-schema-version:{}", self.settings.table.plain());
        let tx = client.transaction().await.map_err(db_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&sql::MIGRATION_LOCK])
            .await
            .map_err(db_err)?;
        tx.batch_execute(&self.sql.create_metadata)
            .await
            .map_err(db_err)?;
        let current: i64 = match tx
            .query_opt(&self.sql.read_version, &[&key])
            .await
            .map_err(db_err)?
        {
            None => 0,
            Some(row) => {
                let v: String = row.get(0);
                v.trim().parse().map_err(|_| {
                    StoreError::Internal(format!(
                        "{} holds an unreadable schema version {v:?} for {}",
                        self.sql.metadata,
                        self.settings.table.plain()
                    ))
                })?
            }
        };
        if current > SCHEMA_VERSION {
            return Err(StoreError::Internal(format!(
                "table {} has schema version {current}, newer than this Mecha understands ({SCHEMA_VERSION})",
                self.settings.table.plain()
            )));
        }
        if current < 1 {
            tx.batch_execute(&self.sql.create_v1)
                .await
                .map_err(db_err)?;
        }
        // A table of the same name made by something else (Dapr's own layout, say) is refused
        // before anything is added to it.
        tx.batch_execute(&self.sql.check_layout)
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) => StoreError::Internal(format!(
                    "table {} exists but is not a Mecha state table: {}",
                    self.settings.table.plain(),
                    db.message()
                )),
                None => db_err(e),
            })?;
        if current < 1 {
            tx.batch_execute(&self.sql.create_v1_rest)
                .await
                .map_err(db_err)?;
        }
        // Later versions add their steps here, each guarded by `current < N`.
        if current < SCHEMA_VERSION {
            tx.execute(
                &self.sql.write_version,
                &[&key, &SCHEMA_VERSION.to_string()],
            )
            .await
            .map_err(db_err)?;
            tracing::info!(table = %self.settings.table.plain(), from = current, to = SCHEMA_VERSION, "postgresql schema migrated");
        }
        tx.commit().await.map_err(db_err)?;
        conn.release();
        Ok(())
    }

    /// Prepares (once per connection) the statement of one kind of write.
    pub(super) async fn prepare(
        &self,
        client: &impl GenericClient,
        kind: WriteKind,
    ) -> Result<Statement, StoreError> {
        client
            .prepare_cached(kind.text(&self.sql))
            .await
            .map_err(db_err)
    }

    /// One batched statement over items with distinct keys; per-item results.
    pub(super) async fn bulk_set_round(
        &self,
        client: &tokio_postgres::Client,
        stmt: &Statement,
        items: &[(usize, SetRequest, Option<i64>)],
    ) -> Result<HashSet<String>, StoreError> {
        let keys: Vec<&str> = items.iter().map(|(_, r, _)| r.key.as_str()).collect();
        let values: Vec<&[u8]> = items.iter().map(|(_, r, _)| &r.value[..]).collect();
        let jsons: Vec<Option<Json<Value>>> =
            items.iter().map(|(_, r, _)| json_of(&r.value)).collect();
        let ttls: Vec<Option<i32>> = items.iter().map(|(_, r, _)| ttl_param(r.ttl)).collect();
        let etags: Vec<Option<i64>> = items.iter().map(|(_, _, e)| *e).collect();
        let first: Vec<bool> = items
            .iter()
            .map(|(_, r, _)| r.options.concurrency == Concurrency::FirstWrite)
            .collect();
        let rows = client
            .query(stmt, &[&keys, &values, &jsons, &ttls, &etags, &first])
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    pub(super) async fn cleanup(&self, interval: Duration) -> Result<u64, StoreError> {
        self.with_conn(async |client| self.cleanup_on(client, interval).await)
            .await
    }

    pub(super) async fn cleanup_on(
        &self,
        client: &Object,
        interval: Duration,
    ) -> Result<u64, StoreError> {
        let key = format!("mecha-last-cleanup:{}", self.settings.table.plain());
        // Claim slightly early so a timer that fires a little before the interval is up still
        // finds its claim granted.
        let claim_ms = (interval.as_millis() * 9 / 10) as i64;
        let stmt = client
            .prepare_cached(&self.sql.cleanup_claim)
            .await
            .map_err(db_err)?;
        if client
            .execute(&stmt, &[&key, &claim_ms])
            .await
            .map_err(db_err)?
            == 0
        {
            return Ok(0);
        }
        let stmt = client
            .prepare_cached(&self.sql.cleanup_delete)
            .await
            .map_err(db_err)?;
        let mut total = 0;
        loop {
            let n = client.execute(&stmt, &[]).await.map_err(db_err)?;
            total += n;
            if n < sql::CLEANUP_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}
