//! One Redis connection type for a single server and for a Redis Cluster.

use std::fmt;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A connection to one Redis server or to a Redis Cluster, re-established
/// automatically; cheap to clone (clones share the connection).
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
    /// Connects to the Redis server at `url` (`redis://host:port/db`).
    ///
    /// # Errors
    ///
    /// If `url` is not a Redis URL or the server cannot be reached.
    pub async fn connect(url: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        Ok(ConnectionManager::new(client).await?.into())
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
        let client = redis::cluster::ClusterClient::new(nodes.into_iter().collect::<Vec<_>>())?;
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
