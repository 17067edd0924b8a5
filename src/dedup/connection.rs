//! One Redis connection type for a single server and for a Redis Cluster.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, ScriptInvocation, Value};

/// When a write of this crate counts as made: once the primary has it (Redis's
/// own acknowledgement), or once replicas have it too.
///
/// Redis replicates asynchronously: a primary acknowledges a write, then sends it
/// to its replicas. A primary that dies (or stalls and is demoted) before a replica
/// has the write loses it when the replica is promoted. For a claim or a done mark
/// that means an event handled again after a failover; for the queue, an
/// acknowledged event lost or handled twice. With
/// [`Replication::Replicas`], every write that guards exactly-once is followed, on
/// the same connection to the same primary and in the same pipeline, by
/// `WAIT replicas timeout`, and counts only if at least `replicas` replicas
/// acknowledged it: otherwise the call fails as if Redis were unreachable (a claim
/// or an enqueue is answered 503 and NotMeta retries; a completion or a queue
/// settle is tried again).
///
/// Set it with [`RedisConnection::with_replication`],
/// [`RedisStore::with_replicas`](super::RedisStore::with_replicas) or
/// `Queue::with_replicas` (feature `queue`). The guide's [failover chapter](crate::guide::failover) says
/// which Redis settings go with it and what it does not cover.
///
/// ```
/// use std::time::Duration;
/// use notmeta_webhooks::dedup::Replication;
///
/// let replication = Replication::replicas(1, Duration::from_millis(250));
/// assert_eq!(replication.required(), 1);
/// assert_eq!(Replication::default(), Replication::Primary);
/// assert_eq!(Replication::default().required(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Replication {
    /// A write counts once the primary has acknowledged it (the default): a
    /// failover can lose it.
    #[default]
    Primary,
    /// A write counts once `replicas` replicas have it (`WAIT replicas timeout`
    /// after it, on the same connection). Built with [`Replication::replicas`],
    /// which keeps both values in range.
    #[non_exhaustive]
    Replicas {
        /// How many replicas must acknowledge each write (at least 1).
        replicas: u32,
        /// How long Redis waits for them (at least 1 ms). Each call's own time limit
        /// still bounds the whole call; the queue's calls ask Redis to wait at most
        /// half of theirs.
        timeout: Duration,
    },
}

impl Replication {
    /// [`Replication::Replicas`]: `replicas` (at least 1) must acknowledge each
    /// write within `timeout` (at least 1 ms, at most 1 h).
    #[must_use]
    pub fn replicas(replicas: u32, timeout: Duration) -> Self {
        Self::Replicas {
            replicas: replicas.max(1),
            timeout: timeout.clamp(Duration::from_millis(1), Duration::from_secs(3600)),
        }
    }

    /// How many replicas each write needs (0 for [`Replication::Primary`]).
    #[must_use]
    pub fn required(&self) -> u32 {
        match self {
            Self::Primary => 0,
            Self::Replicas { replicas, .. } => *replicas,
        }
    }
}

/// A write reached fewer replicas than [`Replication::Replicas`] asks for, within
/// the time allowed: it may be lost in a failover, so it does not count.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the write reached {acknowledged} of the {required} replicas required within {waited:?} \
     (WAIT): a failover could lose it"
)]
pub(crate) struct NotReplicated {
    pub(crate) required: u32,
    pub(crate) acknowledged: i64,
    pub(crate) waited: Duration,
    /// The write's own reply (it was applied on the primary).
    pub(crate) written: Value,
}

/// What a write made through [`RedisConnection::write`] failed with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    NotReplicated(#[from] NotReplicated),
}

/// One write: a script invocation or a command.
#[derive(Clone, Copy)]
pub(crate) enum Write<'a> {
    Script(&'a ScriptInvocation<'a>),
    Cmd(&'a Cmd),
}

/// A connection to one Redis server or to a Redis Cluster, re-established
/// automatically; cheap to clone (clones share the connection).
///
/// **Time limits.** The connection has no reply time limit of its own (redis-rs's
/// connection manager would otherwise cut every reply at 500 ms): each operation
/// of this crate is bounded by its own documented limit, which is so the one in
/// force (`Receiver::with_store_timeout`, `Enqueuer::with_timeout`,
/// `Queue::with_timeout`). Opening a TCP connection, at start and when it is
/// re-established, times out after [`CONNECT_TIMEOUT`](Self::CONNECT_TIMEOUT).
///
/// It implements `redis::aio::ConnectionLike`, so every `redis` command and script
/// runs over it. On a cluster each command goes to the shard that owns its keys:
/// [`RedisStore`](super::RedisStore) runs each script on one key, and the queue
/// (feature `queue`) hash-tags every key of one partition (`{…}`), so every script
/// touches a single slot.
///
/// ```no_run
/// use notmeta_webhooks::dedup::RedisConnection;
///
/// # async fn run() -> Result<(), redis::RedisError> {
/// let single = RedisConnection::connect("redis://127.0.0.1:6379/").await?;
/// let cluster = RedisConnection::connect_cluster([
///     "redis://10.0.0.1:7000/",
///     "redis://10.0.0.2:7000/",
///     "redis://10.0.0.3:7000/",
/// ])
/// .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisConnection {
    inner: Inner,
    replication: Replication,
    /// How it connected, so that a connection of its own can be opened again
    /// ([`reopen`](Self::reopen)); `None` when built from a bare connection. Shared
    /// by clones: a clone per call costs a reference count, not a copy of the client.
    origin: Option<Arc<Origin>>,
}

/// What a connection was opened from.
#[derive(Clone)]
enum Origin {
    Single(redis::Client),
    Cluster(Box<redis::cluster::ClusterClient>),
}

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.inner {
            Inner::Single(_) => "RedisConnection::Single",
            Inner::Cluster(_) => "RedisConnection::Cluster",
        })?;
        match self.replication {
            Replication::Primary => Ok(()),
            Replication::Replicas { replicas, timeout } => {
                write!(f, " (WAIT {replicas} replicas, {timeout:?})")
            }
        }
    }
}

impl RedisConnection {
    /// How long opening a connection may take: 1 s.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

    /// Connects to the Redis server at `url` (`redis://host:port/db`).
    ///
    /// # Errors
    ///
    /// If `url` is not a Redis URL or the server cannot be reached.
    pub async fn connect(url: &str) -> redis::RedisResult<Self> {
        Self::open(Arc::new(Origin::Single(redis::Client::open(url)?))).await
    }

    /// Opens a new connection from `origin`, remembered for [`reopen`](Self::reopen).
    async fn open(origin: Arc<Origin>) -> redis::RedisResult<Self> {
        let inner = match &*origin {
            Origin::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(None)
                    .set_connection_timeout(Some(Self::CONNECT_TIMEOUT));
                Inner::Single(ConnectionManager::new_with_config(client.clone(), config).await?)
            }
            Origin::Cluster(client) => Inner::Cluster(client.get_async_connection().await?),
        };
        Ok(Self {
            inner,
            replication: Replication::Primary,
            origin: Some(origin),
        })
    }

    /// A new connection of its own to the same server or cluster, with the same
    /// [`Replication`], opened on the runtime that polls the returned future; `None`
    /// for a connection built from a bare `ConnectionManager` or `ClusterConnection`,
    /// which does not say how to connect again.
    pub(crate) fn reopen(
        &self,
    ) -> Option<impl Future<Output = redis::RedisResult<Self>> + Send + 'static> {
        let (origin, replication) = (self.origin.clone()?, self.replication);
        Some(async move { Ok(Self::open(origin).await?.with_replication(replication)) })
    }

    /// Whether [`reopen`](Self::reopen) can open another connection like this one.
    #[cfg(feature = "queue")]
    pub(crate) fn can_reopen(&self) -> bool {
        self.origin.is_some()
    }

    /// Connects to a Redis Cluster through any of its `nodes` (the others are
    /// discovered).
    ///
    /// # Errors
    ///
    /// If a node URL is invalid or no node can be reached.
    pub async fn connect_cluster<'a>(
        nodes: impl IntoIterator<Item = &'a str>,
    ) -> redis::RedisResult<Self> {
        // No reply time limit (the builder's default), as for a single server.
        let client = redis::cluster::ClusterClient::builder(nodes.into_iter().collect::<Vec<_>>())
            .connection_timeout(Self::CONNECT_TIMEOUT)
            .build()?;
        Self::open(Arc::new(Origin::Cluster(Box::new(client)))).await
    }

    /// Whether this is a cluster connection.
    #[must_use]
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner, Inner::Cluster(_))
    }

    /// When this crate's writes over this connection count
    /// ([`Replication::Primary`] by default): see [`Replication`]. Clones made
    /// before this call keep their setting.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use notmeta_webhooks::dedup::{RedisConnection, Replication};
    ///
    /// # async fn run() -> Result<(), redis::RedisError> {
    /// let connection = RedisConnection::connect("redis://127.0.0.1:6379/")
    ///     .await?
    ///     .with_replication(Replication::replicas(1, Duration::from_millis(250)));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_replication(mut self, replication: Replication) -> Self {
        self.replication = replication;
        self
    }

    /// The [`Replication`] in force.
    #[must_use]
    pub fn replication(&self) -> Replication {
        self.replication
    }

    /// Runs `write` on `key`'s primary. With [`Replication::Replicas`], a `WAIT`
    /// follows it in one pipeline on the same connection (to the node that owns
    /// `key`'s slot on a cluster), so the `WAIT` counts exactly this connection's
    /// writes up to this one; fewer replicas than required is
    /// [`WriteError::NotReplicated`]. Redis waits at most the replication's
    /// timeout and at most half of `limit` (the caller's time limit for the call).
    ///
    /// A redirect (`MOVED`, `ASK`) or a lost connection makes redis-rs send the
    /// whole pipeline again, to the node that owns the slot then: the write and its
    /// `WAIT` always run together, on one node.
    pub(crate) async fn write<T: FromRedisValue>(
        &self,
        write: Write<'_>,
        key: &[u8],
        limit: Duration,
    ) -> Result<T, WriteError> {
        let Replication::Replicas { replicas, timeout } = self.replication else {
            let mut connection = self.clone();
            return Ok(match write {
                Write::Script(invocation) => invocation.invoke_async(&mut connection).await?,
                Write::Cmd(cmd) => cmd.query_async(&mut connection).await?,
            });
        };
        // Boxed: the pipeline's state would otherwise make every write's future (and
        // every future that holds one) several times larger.
        Box::pin(self.write_replicated(write, key, limit, replicas, timeout)).await
    }

    /// [`write`](Self::write) followed by `WAIT` for `replicas`.
    async fn write_replicated<T: FromRedisValue>(
        &self,
        write: Write<'_>,
        key: &[u8],
        limit: Duration,
        replicas: u32,
        timeout: Duration,
    ) -> Result<T, WriteError> {
        let mut connection = self.clone();
        let waited = timeout.min(limit / 2).max(Duration::from_millis(1));
        let wait_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
        let mut pipeline = redis::pipe();
        match write {
            Write::Script(invocation) => pipeline.invoke_script(invocation),
            Write::Cmd(cmd) => pipeline.add_command(cmd.clone()),
        };
        pipeline.cmd("WAIT").arg(replicas).arg(wait_ms);
        let mut loaded = false;
        loop {
            let mut reply = connection.routed(&pipeline, key).await?.into_iter();
            let (Some(written), Some(acknowledged)) = (reply.next(), reply.next()) else {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Parse,
                    "WAIT pipeline: fewer replies than commands",
                ))
                .into());
            };
            if let (Value::ServerError(error), Write::Script(invocation)) = (&written, write)
                && !loaded
                && error.code() == "NOSCRIPT"
            {
                // The script is not cached there yet (a new or restarted node).
                invocation.load_async(&mut connection).await?;
                loaded = true;
                continue;
            }
            let written = written.extract_error()?;
            let acknowledged = i64::from_redis_value(acknowledged.extract_error()?)
                .map_err(redis::RedisError::from)?;
            if acknowledged < i64::from(replicas) {
                return Err(NotReplicated {
                    required: replicas,
                    acknowledged,
                    waited,
                    written,
                }
                .into());
            }
            return Ok(T::from_redis_value(written).map_err(redis::RedisError::from)?);
        }
    }

    /// Sends `pipeline` to one node: a single server's connection, or the primary
    /// that owns `key`'s slot.
    async fn routed(&mut self, pipeline: &Pipeline, key: &[u8]) -> redis::RedisResult<Vec<Value>> {
        let count = pipeline.len();
        match &mut self.inner {
            Inner::Single(c) => c.req_packed_commands(pipeline, 0, count).await,
            Inner::Cluster(c) => {
                let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                c.route_pipeline(
                    pipeline.clone(),
                    0,
                    count,
                    SingleNodeRoutingInfo::SpecificNode(route),
                )
                .await
            }
        }
    }
}

impl From<ConnectionManager> for RedisConnection {
    fn from(connection: ConnectionManager) -> Self {
        Self {
            inner: Inner::Single(connection),
            replication: Replication::Primary,
            origin: None,
        }
    }
}

impl From<ClusterConnection> for RedisConnection {
    fn from(connection: ClusterConnection) -> Self {
        Self {
            inner: Inner::Cluster(connection),
            replication: Replication::Primary,
            origin: None,
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.inner {
            Inner::Single(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.inner {
            Inner::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Single(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}
