//! An idempotency store in Redis, for receivers with several replicas.

use std::fmt;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt as _};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands as _, Script};

use super::{Claim, ClaimToken, IdempotencyStore, StoreError};

/// Claims atomically: a missing key becomes `claim:<token>` with the lease as expiry.
const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'claim:' .. ARGV[1], 'PX', ARGV[2])
  return 'claimed'
elseif v == 'done' then
  return 'done'
else
  return 'busy'
end
";

/// Releases only the claim this token holds.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == 'claim:' .. ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// An idempotency store in Redis, shared by every replica of a receiver.
///
/// Each event id is one key, `<namespace>:event:<id>`, holding `claim:<token>` while
/// a delivery is being handled (expiring with the claim's lease) and `done` for the
/// dedup window. Claims are atomic (a Lua script), and expiry uses the Redis server's
/// clock, which all replicas share. Connections are re-established automatically.
///
/// ```no_run
/// use notmeta_webhooks::dedup::RedisStore;
/// use notmeta_webhooks::receiver::{HandlerError, Receiver};
/// use notmeta_webhooks::{Event, Verifier};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379/").await?.namespace("shop-webhooks");
/// let receiver = Receiver::new(Verifier::new("whsec_abc123")?, |event: Event<'static>| async move {
///     Ok::<(), HandlerError>(())
/// })
/// .with_store(store);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    namespace: String,
    claim: Script,
    release: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis server at `url` (`redis://host:port/db`).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(StoreError::new)?;
        let connection = ConnectionManager::new(client)
            .await
            .map_err(StoreError::new)?;
        Ok(Self::new(connection))
    }

    /// A store over an existing connection manager, in the namespace
    /// `notmeta-webhooks`.
    #[must_use]
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            namespace: "notmeta-webhooks".to_owned(),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
        }
    }

    /// Prefixes every key with `namespace` (so several receivers, or several
    /// environments, can share one Redis).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    fn key(&self, event_id: &str) -> String {
        format!("{}:event:{event_id}", self.namespace)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl IdempotencyStore for RedisStore {
    fn claim<'a>(
        &'a self,
        event_id: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        async move {
            let token = ClaimToken::new();
            let mut connection = self.connection.clone();
            let state: String = self
                .claim
                .key(self.key(event_id))
                .arg(token.to_string())
                .arg(millis(lease))
                .invoke_async(&mut connection)
                .await
                .map_err(StoreError::new)?;
            match state.as_str() {
                "claimed" => Ok(Claim::Claimed(token)),
                "done" => Ok(Claim::Done),
                "busy" => Ok(Claim::InProgress),
                other => Err(StoreError::new(format!("unexpected claim reply {other:?}"))),
            }
        }
        .boxed()
    }

    fn complete<'a>(
        &'a self,
        event_id: &'a str,
        _token: &'a ClaimToken,
        window: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut connection = self.connection.clone();
            connection
                .pset_ex::<_, _, ()>(self.key(event_id), "done", millis(window))
                .await
                .map_err(StoreError::new)
        }
        .boxed()
    }

    fn release<'a>(
        &'a self,
        event_id: &'a str,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut connection = self.connection.clone();
            self.release
                .key(self.key(event_id))
                .arg(token.to_string())
                .invoke_async::<i64>(&mut connection)
                .await
                .map(drop)
                .map_err(StoreError::new)
        }
        .boxed()
    }
}
