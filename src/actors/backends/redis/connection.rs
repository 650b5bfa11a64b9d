//! Connections to Redis: the deployment mode (one node or a cluster) with its clients and
//! pool, the connection a command goes over, and the per-shard slots that hold a ready
//! connection or the one connect every waiting call shares.

use super::*;

/// How a configured store reaches Redis.
// One per configured store, never moved in a hot path: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Mode {
    /// One node: a client for the multiplexed connections and a pool for `WAIT`.
    Node {
        client: Client,
        conn_config: AsyncConnectionConfig,
        pool: Pool,
    },
    /// Redis Cluster: one client whose connections retry (reads, `PING`) and one whose
    /// connections never re-send a command by themselves (writes; see [`Kind::Write`]).
    Cluster {
        reads: ClusterClient,
        writes: ClusterClient,
    },
}

/// What all instances of one configured store share.
pub(super) struct Shared {
    pub(super) mode: Mode,
    pub(super) settings: Settings,
    pub(super) write: Script,
    /// The replicas seen, which strong writes wait for.
    pub(super) topology: topology::Topology,
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Shared {
    pub(super) fn new(
        mut infos: Vec<ConnectionInfo>,
        settings: Settings,
    ) -> Result<Shared, String> {
        let response_timeout = settings.read_timeout.max(settings.write_timeout);
        let mode = if settings.cluster {
            let client = |retries: u32| {
                let first = infos[0].redis_settings().clone();
                let mut b = ClusterClientBuilder::new(infos.clone())
                    .connection_timeout(settings.dial_timeout)
                    .response_timeout(response_timeout)
                    .retries(retries)
                    .min_retry_wait(millis(settings.min_backoff).max(1))
                    .max_retry_wait(millis(settings.max_backoff).max(1));
                if let Some(u) = first.username() {
                    b = b.username(u);
                }
                if let Some(p) = first.password() {
                    b = b.password(p);
                }
                b.build().map_err(|e| e.to_string())
            };
            Mode::Cluster {
                reads: client(settings.max_retries)?,
                writes: client(0)?,
            }
        } else {
            let info = infos.remove(0);
            // No response timeout of the crate's: `RedisStore::run` bounds every call (and
            // replaces the connection when it fires), so a second timer per command would
            // only cost time.
            let conn_config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(settings.dial_timeout))
                .set_response_timeout(None);
            let client = Client::open(info.clone()).map_err(|e| e.to_string())?;
            // Pooled connections (strong writes) keep the crate's timeout per command.
            let pooled = conn_config
                .clone()
                .set_response_timeout(Some(response_timeout));
            let manager = Manager::new_with_config(info, pooled).map_err(|e| e.to_string())?;
            let pool = Pool::builder(manager)
                .max_size(settings.pool_size)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(settings.pool_timeout))
                .create_timeout(Some(settings.dial_timeout))
                .recycle_timeout(Some(settings.read_timeout))
                .build()
                .map_err(|e| e.to_string())?;
            Mode::Node {
                client,
                conn_config,
                pool,
            }
        };
        Ok(Shared {
            mode,
            settings,
            write: Script::new(WRITE_SCRIPT),
            topology: topology::Topology::default(),
        })
    }

    /// Reads the replication topology over `conn` (`INFO replication` on one node,
    /// `CLUSTER SLOTS` on a cluster) into [`Shared::topology`]. Not needed, and not sent,
    /// when `redisReplicas` fixes the count.
    pub(super) async fn learn_topology(&self, conn: &mut Conn) -> Result<(), StoreError> {
        if self.settings.replicas > 0 {
            return Ok(());
        }
        let timeout = self.settings.read_timeout;
        let unreadable = |e: String| {
            StoreError::Unavailable(format!("cannot read the replication topology: {e}"))
        };
        let read = async {
            match conn {
                Conn::Node(_) => {
                    let info: String = redis::cmd("INFO")
                        .arg("replication")
                        .query_async(conn)
                        .await
                        .map_err(|e| map_redis_error(&e, timeout))?;
                    self.topology.observe_info(&info).map_err(unreadable)
                }
                Conn::Cluster(_) => {
                    let slots: Value = redis::cmd("CLUSTER")
                        .arg("SLOTS")
                        .query_async(conn)
                        .await
                        .map_err(|e| map_redis_error(&e, timeout))?;
                    self.topology.observe_slots(&slots).map_err(unreadable)
                }
            }
        };
        tokio::time::timeout(timeout, read)
            .await
            .unwrap_or(Err(StoreError::Timeout(timeout)))
    }

    /// Opens a connection: for reads (`write == false`) or for writes.
    pub(super) async fn open(&self, write: bool) -> Result<Conn, RedisError> {
        match &self.mode {
            Mode::Node {
                client,
                conn_config,
                ..
            } => client
                .get_multiplexed_async_connection_with_config(conn_config)
                .await
                .map(Conn::Node),
            Mode::Cluster { reads, writes } => {
                let client = if write { writes } else { reads };
                client.get_async_connection().await.map(Conn::Cluster)
            }
        }
    }

    /// The Redis key a (prefixed) state key is stored under. With `clusterKeyPlacement:
    /// prefix`, the key prefix (the part before the first `||`) becomes the hash tag.
    pub(super) fn redis_key<'a>(&self, key: &'a str) -> std::borrow::Cow<'a, str> {
        if self.settings.place_by_prefix
            && let Some((prefix, rest)) = key.split_once("||")
        {
            return format!("{{{prefix}}}||{rest}").into();
        }
        key.into()
    }
}

/// A connection to one node or to a cluster.
#[derive(Clone)]
pub(super) enum Conn {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// One connection slot. A call reads the ready connection from `ready` without taking a
/// lock; `state` is locked only to change the slot (connect, discard), and every change
/// sets `ready` in the same critical section, so `ready` holds a connection exactly when
/// `state` is `Ready`.
pub(super) struct Slot {
    pub(super) ready: arc_swap::ArcSwapOption<(u64, Conn)>,
    pub(super) state: parking_lot::Mutex<ConnSlot>,
}

impl Slot {
    pub(super) fn new() -> Slot {
        Slot {
            ready: arc_swap::ArcSwapOption::empty(),
            state: parking_lot::Mutex::new(ConnSlot::Empty),
        }
    }

    /// Moves the slot to `new` (`state` is the locked state).
    pub(super) fn set(&self, state: &mut ConnSlot, new: ConnSlot) {
        self.ready.store(match &new {
            ConnSlot::Ready(g, c) => Some(Arc::new((*g, c.clone()))),
            _ => None,
        });
        *state = new;
    }

    /// Forgets the ready connection if it is `generation` (any ready one when `None`).
    pub(super) fn discard(&self, generation: Option<u64>) {
        let mut state = self.state.lock();
        if matches!(&*state, ConnSlot::Ready(g, _) if generation.is_none_or(|want| *g == want)) {
            self.set(&mut state, ConnSlot::Empty);
        }
    }
}

/// The connect every caller shares while it is in flight.
pub(super) type Connecting =
    futures::future::Shared<futures::future::BoxFuture<'static, Result<(u64, Conn), StoreError>>>;

/// This instance's connection. The lock is never held across an await: while a connect is
/// in flight every caller awaits the same one (within its own deadline), so reconnects
/// never queue requests behind one another, and a failed connect fails all of them at once.
pub(super) enum ConnSlot {
    Empty,
    Connecting(Connecting),
    Ready(u64, Conn),
}

/// Whether a failed command may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Reads: repeated after a broken connection (on a cluster the crate also follows
    /// `MOVED`/`ASK` and retries by itself).
    Read,
    /// Every write, guarded or not: repeated only when it provably did not run (the connect
    /// failed, or a cluster node answered `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`,
    /// `READONLY`, `LOADING`). After a broken connection or a timeout it may have been
    /// applied: a repeated guarded write would report a false ETag mismatch, and a repeated
    /// unguarded one could overwrite what another client wrote in between (and change the
    /// ETag that client holds), so the error is returned instead.
    Write,
    /// A `consistency: strong` write on a cluster: the script and `WAIT` in one pipeline.
    StrongWrite,
}

/// How a command failed.
pub(super) enum Failure {
    /// Nothing was sent (or the server refused to run it): it may be sent again.
    Connect(StoreError),
    /// The command failed.
    Command(StoreError),
}
