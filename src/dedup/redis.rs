//! An idempotency store in Redis, for receivers with several replicas.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use redis::Script;

use super::{RedisConnection, Replication, Write};

use super::{Claim, ClaimToken, IdempotencyStore, Settled, StoreError};
use crate::clock::clamp;

/// How many times a claim is tried when the id frees up between the `SET` and the
/// `GET`.
const CLAIM_TRIES: usize = 3;

/// What a claimed key holds before its token.
const CLAIM_PREFIX: &str = "claim:";

/// Extends the lease of the claim this token holds.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == 'claim:' .. ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Extends the lease (`ARGV[1]`) of each claim `KEYS[i]` whose token is
/// `ARGV[i + 1]`: 1 for each renewed, 0 for each lost.
const RENEW_MANY: &str = r"
local renewed = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == 'claim:' .. ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    renewed[i] = 1
  else
    renewed[i] = 0
  end
end
return renewed
";

/// Records done if this token holds the claim or the id is free; never overwrites
/// another delivery's claim or result. The done mark names the token, so the same
/// completion sent again (its first reply lost) is recognised as applied.
const COMPLETE: &str = r"
local v = redis.call('GET', KEYS[1])
if v == 'done:' .. ARGV[1] then
  return 1
end
if (not v) or v == 'claim:' .. ARGV[1] then
  redis.call('SET', KEYS[1], 'done:' .. ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
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
/// a delivery is being handled and `done:<token>` for the dedup window (a completion
/// sent again after its reply was lost is so recognised as its own). A claim expires
/// after its lease (default 30 s) unless renewed; the receiver renews it every third
/// of the lease while the handler runs, so only the claim of a crashed or stalled
/// process expires, and NotMeta's next retry then reaches a live replica. A claim is
/// one plain `SET … NX PX` (a `GET` follows only for an id already taken); renewal,
/// completion and release are each one atomic Lua script that checks the claim's
/// token, so a delivery costs two round trips to Redis.
/// Expiry uses the Redis server's clock, which all replicas share. Connections are
/// re-established automatically.
///
/// **Replicas.** Every write goes to the primary, and `SET … NX` there decides which
/// delivery runs the handler. A cluster connection built to read from replicas may
/// send the claim's `GET` (made only for an id already taken) to a replica that
/// lags: a duplicate is then answered 503 (NotMeta retries) instead of 200, and
/// nothing runs twice.
///
/// **Failover.** Redis replicates asynchronously: a primary that acknowledges a claim
/// or a done mark and dies before its replica has it loses it when the replica is
/// promoted, and the event can be handled again. With
/// [`with_replicas`](Self::with_replicas) a claim and a completion count only once
/// that many replicas have them (`WAIT`, on the same connection, in the same
/// pipeline): a claim they do not acknowledge in time is answered 503 (NotMeta
/// retries), a completion is tried again. Off by default: see
/// [`with_replicas`](Self::with_replicas).
///
/// **Durability.** Exactly-once across a Redis restart needs every write on disk
/// before it is acknowledged: run Redis with `appendonly yes` and
/// `appendfsync always`. With `everysec`, a crash loses up to a second of claims and
/// completions, and events finished in that second can be handled again.
///
/// ```no_run
/// use notmeta_webhooks::dedup::RedisStore;
/// use notmeta_webhooks::receiver::{HandlerError, Receiver};
/// use notmeta_webhooks::{Event, Verifier};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379/")
///     .await?
///     .with_namespace("shop-webhooks");
/// let receiver = Receiver::new(Verifier::new("whsec_abc123")?, |event: Event<'static>| async move {
///     Ok::<(), HandlerError>(())
/// })
/// .with_store(store);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: RedisConnection,
    namespace: String,
    lease: Duration,
    renew: Script,
    renew_many: Script,
    complete: Script,
    release: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The default lease of a claim: 30 s, renewed every 10 s while the handler runs.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

    /// Connects to the Redis server at `url` (`redis://host:port/db`).
    ///
    /// # Errors
    ///
    /// If `url` is not a Redis URL or the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let connection = RedisConnection::connect(url)
            .await
            .map_err(StoreError::new)?;
        Ok(Self::new(connection))
    }

    /// Connects to a Redis Cluster through any of its `nodes`. Each call is one
    /// script on one key, so the store runs unchanged on a cluster.
    ///
    /// # Errors
    ///
    /// If a node URL is invalid or no node can be reached.
    pub async fn connect_cluster<'a>(
        nodes: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, StoreError> {
        let connection = RedisConnection::connect_cluster(nodes)
            .await
            .map_err(StoreError::new)?;
        Ok(Self::new(connection))
    }

    /// A store over an existing connection (a `redis::aio::ConnectionManager` converts into
    /// one), in the namespace `notmeta-webhooks`, with a
    /// [`DEFAULT_LEASE`](Self::DEFAULT_LEASE) of 30 s.
    #[must_use]
    pub fn new(connection: impl Into<RedisConnection>) -> Self {
        Self {
            connection: connection.into(),
            namespace: "notmeta-webhooks".to_owned(),
            lease: Self::DEFAULT_LEASE,
            renew: Script::new(RENEW),
            renew_many: Script::new(RENEW_MANY),
            complete: Script::new(COMPLETE),
            release: Script::new(RELEASE),
        }
    }

    /// Prefixes every key with `namespace` (so several receivers, or several
    /// environments, can share one Redis).
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long a claim lives without renewal (default 30 s; at least 1 s, at most
    /// [`MAX_DURATION`](crate::clock::MAX_DURATION)): how long NotMeta's retries of an
    /// event wait after the replica handling it crashed.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = clamp(lease).max(Duration::from_secs(1));
        self
    }

    /// Makes a claim and a completion count only once `replicas` replicas have
    /// them: each is followed, in one pipeline on the same connection to the key's
    /// primary, by `WAIT replicas timeout` (see [`Replication`]). A claim the
    /// replicas do not acknowledge is a store error, answered 503 (NotMeta retries;
    /// the unacknowledged claim lapses with its lease); a completion is tried again,
    /// as after any store error. What this covers, and which Redis settings go with
    /// it, is in the guide's [failover chapter](crate::guide::failover).
    ///
    /// `timeout` is how long Redis waits for the replicas, at most 500 ms: half the
    /// receiver's default store time limit (`Receiver::with_store_timeout`, 1 s),
    /// which still bounds each call as a whole. A few milliseconds is plenty while
    /// the replica is healthy; the wait runs to `timeout` only while it is not.
    ///
    /// Off by default: with it, a primary whose replicas are all down or lagging
    /// answers every claim 503 until one is back, so the receiver's availability
    /// depends on the replicas as well as the primary. That is a choice for the
    /// deployment, and it needs replicas to exist at all: a Redis without them
    /// would refuse every event.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use notmeta_webhooks::dedup::RedisStore;
    ///
    /// # async fn run() -> Result<(), notmeta_webhooks::dedup::StoreError> {
    /// let store = RedisStore::connect_cluster(["redis://10.0.0.1:7000/"])
    ///     .await?
    ///     .with_replicas(1, Duration::from_millis(250));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        let replication = Replication::replicas(replicas, timeout);
        self.connection = self.connection.with_replication(replication);
        self
    }

    /// The [`Replication`] in force ([`Replication::Primary`] unless
    /// [`with_replicas`](Self::with_replicas) was set, or the connection given to
    /// [`new`](Self::new) had it).
    #[must_use]
    pub fn replication(&self) -> Replication {
        self.connection.replication()
    }

    fn key(&self, event_id: &str) -> String {
        const MIDDLE: &str = ":event:";
        // Sized at once: `format!` would grow it, an allocation each time.
        let mut key = String::with_capacity(self.namespace.len() + MIDDLE.len() + event_id.len());
        key.push_str(&self.namespace);
        key.push_str(MIDDLE);
        key.push_str(event_id);
        key
    }

    /// The rest of [`claim`](IdempotencyStore::claim) once its `SET NX` was refused:
    /// a `GET` tells done from in progress. The key can vanish between the refused
    /// `SET` and the `GET` (a claim released or expired meanwhile): then claiming
    /// again is the right answer.
    async fn claim_taken(
        &self,
        event_id: &str,
        token: ClaimToken,
        key: &str,
        claim: &str,
        set: &redis::Cmd,
    ) -> Result<Claim, StoreError> {
        let mut connection = self.connection.clone();
        for tries in 0..CLAIM_TRIES {
            if tries > 0 {
                let set: redis::Value = self
                    .connection
                    .write(Write::Cmd(set), key.as_bytes(), CALL_LIMIT)
                    .await
                    .map_err(StoreError::new)?;
                if set != redis::Value::Nil {
                    return Ok(Claim::Claimed(token));
                }
            }
            let held: Option<String> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut connection)
                .await
                .map_err(StoreError::new)?;
            match held.as_deref() {
                None => continue,
                Some(v) if v == "done" || v.starts_with("done:") => return Ok(Claim::Done),
                // Its own claim: the SET was applied but its reply lost, and sent again.
                Some(v) if v == claim => {
                    // Acknowledged by the replicas, when asked, before it counts: the
                    // first SET's WAIT never answered. Extending the lease is a write,
                    // so its WAIT covers the SET too.
                    if self.replication() != Replication::Primary {
                        let lease = millis(self.lease);
                        let renewed = self
                            .flag(&self.renew, event_id, &token, lease, true)
                            .await?;
                        if renewed != Settled::Recorded {
                            continue;
                        }
                    }
                    return Ok(Claim::Claimed(token));
                }
                Some(v) if v.starts_with(CLAIM_PREFIX) => return Ok(Claim::InProgress),
                Some(other) => {
                    return Err(StoreError::new(format!(
                        "unexpected value {other:?} at {key}"
                    )));
                }
            }
        }
        // Claimed and freed again each time: another delivery is busy with it.
        Ok(Claim::InProgress)
    }

    /// Runs a token script; `acknowledged`: as a write the replicas acknowledge
    /// when asked ([`with_replicas`](Self::with_replicas)). 1 is
    /// [`Settled::Recorded`].
    async fn flag(
        &self,
        script: &Script,
        event_id: &str,
        token: &ClaimToken,
        ms: u64,
        acknowledged: bool,
    ) -> Result<Settled, StoreError> {
        let key = self.key(event_id);
        let mut invocation = script.key(&key);
        invocation.arg(&token.hex()[..]).arg(ms);
        let connection = if acknowledged {
            self.connection.clone()
        } else {
            self.connection
                .clone()
                .with_replication(Replication::Primary)
        };
        let flag: i64 = connection
            .write(Write::Script(&invocation), key.as_bytes(), CALL_LIMIT)
            .await
            .map_err(StoreError::new)?;
        Ok(settled(flag))
    }
}

/// A token script's answer: 1 is [`Settled::Recorded`].
fn settled(flag: i64) -> Settled {
    if flag == 1 {
        Settled::Recorded
    } else {
        Settled::LeaseLost
    }
}

/// The receiver's default store time limit: Redis is asked to wait for replicas at
/// most half of it.
const CALL_LIMIT: Duration = crate::receiver::DEFAULT_STORE_TIMEOUT;

/// Milliseconds for `PX`/`PEXPIRE`: at least 1, at most [`MAX_DURATION`](crate::clock::MAX_DURATION)
/// (Redis refuses expiry times that overflow).
fn millis(d: Duration) -> u64 {
    u64::try_from(clamp(d).as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl IdempotencyStore for RedisStore {
    fn lease(&self) -> Option<Duration> {
        Some(self.lease)
    }

    /// One plain `SET key claim:<token> NX PX <lease>`: the claim, atomic on the
    /// server. Only when the id is taken (a duplicate, rare) does a `GET` tell done
    /// from in progress.
    async fn claim(&self, event_id: &str) -> Result<Claim, StoreError> {
        let token = ClaimToken::new();
        let key = self.key(event_id);
        let mut claim = String::with_capacity(CLAIM_PREFIX.len() + 32);
        claim.push_str(CLAIM_PREFIX);
        claim.extend(token.hex().map(char::from));
        // `SET key claim:<token> NX PX <ms>`, sized at once.
        let mut set = redis::Cmd::with_capacity(6, key.len() + claim.len() + 32);
        set.arg("SET")
            .arg(&key)
            .arg(&claim)
            .arg("NX")
            .arg("PX")
            .arg(millis(self.lease));
        let first: redis::Value = self
            .connection
            .write(Write::Cmd(&set), key.as_bytes(), CALL_LIMIT)
            .await
            .map_err(StoreError::new)?;
        if first != redis::Value::Nil {
            return Ok(Claim::Claimed(token));
        }
        // Boxed: the rarer path's state stays out of every claim's future.
        Box::pin(self.claim_taken(event_id, token, &key, &claim, &set)).await
    }

    fn renew(
        &self,
        event_id: &str,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<Settled, StoreError>> + Send {
        // Acknowledged like the claim: a replica cut off from its primary would
        // otherwise keep only the claim's first lease, and a failover after it ran
        // out would let a duplicate in while a long handler still runs. A renewal
        // not acknowledged is a store failure (logged and counted, `renew`); the
        // handler goes on, and the guide says what is then not covered.
        self.flag(&self.renew, event_id, token, millis(self.lease), true)
    }

    /// On a single server, one script over every claim's key: one round trip
    /// (followed by `WAIT` in the same pipeline with
    /// [`with_replicas`](Self::with_replicas)). On a cluster, whose keys live on
    /// several nodes, one renewal script per claim, all sent at once over the
    /// cluster's multiplexed connections.
    async fn renew_many(&self, claims: &[(&str, &ClaimToken)]) -> Result<Vec<Settled>, StoreError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        if self.connection.is_cluster() {
            let renewals = claims.iter().map(|(id, token)| self.renew(id, token));
            return futures_util::future::join_all(renewals)
                .await
                .into_iter()
                .collect();
        }
        let keys: Vec<String> = claims.iter().map(|(id, _)| self.key(id)).collect();
        let mut invocation = self.renew_many.prepare_invoke();
        invocation.arg(millis(self.lease));
        for (key, (_, token)) in keys.iter().zip(claims) {
            invocation.key(key).arg(&token.hex()[..]);
        }
        let flags: Vec<i64> = self
            .connection
            .write(Write::Script(&invocation), keys[0].as_bytes(), CALL_LIMIT)
            .await
            .map_err(StoreError::new)?;
        if flags.len() != claims.len() {
            return Err(StoreError::new(format!(
                "{} renewals answered for {} claims",
                flags.len(),
                claims.len()
            )));
        }
        Ok(flags.into_iter().map(settled).collect())
    }

    /// A new connection to the same server or cluster, unless the store was built
    /// from a bare `ConnectionManager` or `ClusterConnection` (then `None`).
    fn on_own_connection(
        &self,
    ) -> Option<impl Future<Output = Result<Self, StoreError>> + Send + 'static> {
        let reopen = self.connection.reopen()?;
        let mut store = self.clone();
        Some(async move {
            store.connection = reopen.await.map_err(StoreError::new)?;
            Ok(store)
        })
    }

    fn complete(
        &self,
        event_id: &str,
        token: &ClaimToken,
        window: Duration,
    ) -> impl Future<Output = Result<Settled, StoreError>> + Send {
        self.flag(&self.complete, event_id, token, millis(window), true)
    }

    async fn release(&self, event_id: &str, token: &ClaimToken) -> Result<(), StoreError> {
        // Not acknowledged: a release a failover loses only keeps NotMeta's retry
        // waiting until the lease lapses.
        self.flag(&self.release, event_id, token, 0, false)
            .await
            .map(drop)
    }
}
