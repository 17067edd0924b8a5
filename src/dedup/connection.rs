//! One Redis connection type for a single server and for a Redis Cluster.

use std::fmt;

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

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
pub struct RedisConnection(Inner);

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Inner::Single(_) => "RedisConnection::Single",
            Inner::Cluster(_) => "RedisConnection::Cluster",
        })
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
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(Self::CONNECT_TIMEOUT));
        Ok(ConnectionManager::new_with_config(client, config)
            .await?
            .into())
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
        Ok(client.get_async_connection().await?.into())
    }

    /// Whether this is a cluster connection.
    #[must_use]
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Inner::Cluster(_))
    }
}

impl From<ConnectionManager> for RedisConnection {
    fn from(connection: ConnectionManager) -> Self {
        Self(Inner::Single(connection))
    }
}

impl From<ClusterConnection> for RedisConnection {
    fn from(connection: ClusterConnection) -> Self {
        Self(Inner::Cluster(connection))
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
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
        match &mut self.0 {
            Inner::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Single(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}
