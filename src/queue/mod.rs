//! Acknowledge fast, process later: a durable queue in Redis Streams (feature
//! `queue`), or in PostgreSQL (features `queue` and `postgres`: `Queue::postgres`),
//! and, for tests and single-process prototypes, one in the process's memory
//! ([`Queue::in_memory`]: not durable).
//!
//! NotMeta's guide for heavy work is to verify the signature, put the event on a
//! queue, answer 200 at once, and process it from the queue. This module does that:
//!
//! - an [`Enqueuer`] is the endpoint: it verifies the signature and the event
//!   inline (400 and 413 exactly as the inline [`Receiver`](crate::receiver::Receiver)),
//!   answers the challenge, refuses events older than the maximum age, and appends
//!   the raw body to a Redis stream **at most once per event id** (the dedup check
//!   and the append are one Lua script). It answers 200 only once Redis has accepted
//!   the entry, and 503 when Redis cannot be reached in time, so NotMeta retries.
//!   It is an [`Endpoint`](crate::receiver::Endpoint): mount it with
//!   `tower::WebhookService::new`, `axum::endpoint` or `actix::endpoint`, as a
//!   receiver is, or call [`Enqueuer::receive`] from any server;
//! - a [`Worker`] runs your [`Handler`](crate::receiver::Handler) on the queued
//!   events, with no time limit, N at a time, retrying temporary failures and
//!   panics with exponential backoff, and moving permanent failures, exhausted
//!   retries and bodies that no longer parse to a dead-letter stream;
//! - a [`Split`] is one endpoint that verifies each delivery once and then runs the
//!   handler inline or enqueues the event, by type or by a function you give;
//! - a [`Queue`] names the Redis keys and the consumer group both share, and gives
//!   the operations: [`Queue::counts`], [`Queue::dead_letters`],
//!   [`Queue::replay_dead_letters`], [`Queue::purge_dead_letters`],
//!   [`Queue::pause`] and [`Queue::resume`], [`Queue::check_layout`];
//! - trace continuity: with [`Queue::with_trace_propagation`] each entry carries the
//!   W3C trace context of the request that enqueued it, and a worker's run (feature
//!   `tracing`) records it and can link to it (`OpenTelemetry` with the
//!   `opentelemetry` feature; [`TracePropagation`] for any other source).
//!
//! # On PostgreSQL
//!
//! With the `postgres` feature as well, `Queue::postgres(pool, &tables)` puts the
//! queue in two tables of the database (the event ids in `<prefix>events`, shared
//! with the inline `PostgresStore`, and the entries in `<prefix>jobs`), and the same
//! [`Enqueuer`] and [`Worker`] run on it: the enqueue and its dedup are one
//! statement, workers take entries with `FOR UPDATE SKIP LOCKED` under a lease they
//! renew (all running entries in one statement), are woken by `LISTEN/NOTIFY` and
//! poll as a fallback, and a `Transactional` handler's writes commit with the
//! event's done mark. The guarantees below hold as stated with "PostgreSQL" for
//! "Redis", except what is about partitions, consumer groups, `XAUTOCLAIM` and
//! replicas; the [queue chapter](crate::guide::queue) says what differs.
//!
//! # In memory, for tests
//!
//! [`Queue::in_memory`] keeps the queue in the process: no Redis or database is
//! needed, and the same [`Enqueuer`] and [`Worker`] run on it with the same rules
//! (dedup, retries, dead letters, the operations). It is **not durable**: whatever
//! it holds is lost with the process. [`Worker::run_until_idle`] runs a worker
//! until the queue is drained, on every backend; the test kit's `TestQueue`
//! (feature `testing`) pairs both with signed sample events. The guide's
//! [queue chapter](crate::guide::queue) has an example.
//!
//! # Guarantees
//!
//! - **Nothing acknowledged is lost**, as long as Redis keeps what it acknowledged
//!   (`appendonly yes` with `appendfsync always`; see the guide's
//!   [queue chapter](crate::guide::queue)), and across a failover to a replica only with
//!   [`Queue::with_replicas`] (Redis replicates asynchronously: without it, the
//!   last writes before a failover can be lost, and events run twice).
//! - **At most one entry per event id** for the dedup window (2 h by default): a
//!   duplicate delivery, concurrent or not, is answered 200 and not queued again.
//! - **Each entry is handled once.** A worker marks the event done and acknowledges
//!   the entry in one script, and checks the mark (and that it still owns the
//!   entry) in one script before every run: new, retried, reclaimed or replayed.
//!   (On Redis, the runs of the new entries one read hands over start in one script
//!   together, and successes of entries without a key limit that end together are
//!   recorded in one script: each entry is checked and written as it would be
//!   alone, atomically.)
//!   "Done" always wins: it is recorded even by a worker that lost the entry to
//!   another meanwhile, and removes any retry or dead letter of the event; a stale
//!   worker's failure is not applied. The one window that remains: a worker that
//!   dies after the handler's side effects and before that script runs (a few
//!   milliseconds) leaves the entry unmarked, and it is handled again after the
//!   visibility timeout. A handler whose effects must never repeat records them
//!   idempotently (keyed on the event id) in its own store.
//! - **A running handler keeps its entry**: the worker renews every entry it still
//!   owns (one script per partition) every third of the visibility timeout, so a
//!   handler may run for hours. An entry whose worker died, or lost Redis for
//!   longer than the visibility timeout, is reclaimed by another (`XAUTOCLAIM`).
//! - **Bounded**: acknowledged entries are deleted from the stream (`XDEL`), so the
//!   stream holds only what is waiting or running; [`Enqueuer::with_max_len`] bounds
//!   it further (503 when full). A read hands out entry ids only: the start of each
//!   run fetches its one entry.
//! - **Explicit time limits**: the connection has no reply limit of its own; the
//!   endpoint's enqueue has [`Enqueuer::with_timeout`] (2 s), every call of a worker
//!   and of [`Queue`]'s operations [`Queue::with_timeout`] (5 s).
//! - **Self-healing**: a worker that finds its consumer group gone (Redis lost its
//!   data) creates it again. The number of partitions is recorded in Redis, and a
//!   process configured with another is refused ([`QueueError::LayoutMismatch`]).
//!
//! The [queue chapter](crate::guide::queue) of the guide says what holds when workers
//! die or stall, replies are lost, Redis restarts with or without persistence, or a
//! slot migrates.
//!
//! # Ordering
//!
//! None by default. Entries are handled concurrently, retries come back later, and
//! NotMeta itself delivers out of order; a handler that cares compares `created_at`
//! (or the object's own timestamps) with what it stored.
//!
//! With [`Queue::with_key_limit`] (a [`KeyLimit`]), events of one key (by default
//! their conversation, or their user for `user.*` events) run at most N at a time
//! (N = 1 by default), started in the order they were enqueued, on Redis, on
//! PostgreSQL and in memory:
//!
//! - a retry keeps its key's slot: the key's later events wait, up to the worker's
//!   maximum attempts; then the event goes to the dead letters and, by default
//!   ([`OnDeadLetter::Release`]), releases its slot so the rest go on. With
//!   [`OnDeadLetter::Hold`] the key stays blocked until the dead letter is replayed
//!   (it runs first) or purged;
//! - a worker that dies holding a key keeps it until its entry is reclaimed after
//!   the visibility timeout, so the order holds;
//! - a duplicate delivery never takes a second slot;
//! - enqueue order is not creation order (NotMeta delivers out of order and retries
//!   later): a handler that needs creation order still compares `created_at`.
//!
//! The [queue chapter](crate::guide::queue) has the details and the cost.
//!
//! # Scale-out on Redis Cluster
//!
//! A stream lives on one shard. [`Queue::with_partitions`] splits the queue into N
//! streams by a hash of the event id; each partition's keys share a hash tag
//! (`{namespace:p}`), so every script touches one slot, and workers read every
//! partition. Connect with [`Queue::connect_cluster`].
//!
//! ```no_run
//! use notmeta_webhooks::queue::{Enqueuer, Queue, Worker};
//! use notmeta_webhooks::receiver::HandlerError;
//! use notmeta_webhooks::{Event, Verifier};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let queue = Queue::connect("redis://127.0.0.1:6379/").await?;
//!
//! // In the web process: verify, enqueue, answer 200.
//! let enqueuer = Enqueuer::new(Verifier::new("whsec_abc123")?, queue.clone());
//! # let _ = enqueuer;
//!
//! // In the worker process: run the handler, as long as it takes.
//! let worker = Worker::new(queue, |event: Event<'static>| async move {
//!     println!("{} {}", event.id, event.type_str());
//!     Ok::<(), HandlerError>(())
//! })
//! .with_concurrency(8);
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! # drop(stop);
//! worker.run(async { let _ = stopped.await; }).await?;
//! # Ok(()) }
//! ```

use crate::dedup::{RedisConnection, Replication};
use redis::AsyncCommands as _;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::clamp;
use crate::dedup::DEFAULT_DEDUP_WINDOW;

mod age;
mod enqueue;
mod memory;
#[cfg(feature = "opentelemetry")]
mod opentelemetry;
mod ordering;
pub(crate) mod pause;
#[cfg(feature = "postgres")]
mod postgres;
mod protocol;
mod scripts;
mod split;
mod trace_context;
mod worker;

pub use enqueue::{DEFAULT_ENQUEUE_TIMEOUT, Enqueuer};
#[cfg(feature = "opentelemetry")]
pub use opentelemetry::OpenTelemetry;
pub use ordering::{KeyLimit, OnDeadLetter};
pub use split::{Route, Split};
pub use trace_context::{
    InvalidTraceContext, MAX_TRACESTATE_LEN, TRACEPARENT_LEN, TraceContext, TracePropagation,
};
pub use worker::{Worker, WorkerStats};

/// What went wrong with the queue's Redis.
///
/// `Display` says what; a Redis error is the [`source`](std::error::Error::source).
///
/// ```
/// use notmeta_webhooks::queue::QueueError;
/// let error = QueueError::LayoutMismatch { stored: 4, configured: 2 };
/// assert!(error.to_string().contains("4 partitions"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Redis could not be reached, or answered with an error or something
    /// unexpected.
    #[error("the queue's Redis failed")]
    Redis(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// PostgreSQL could not be reached, or refused a statement (a queue made by
    /// [`Queue::postgres`]; feature `postgres`). The `sqlx` error is the
    /// [`source`](std::error::Error::source).
    #[cfg(feature = "postgres")]
    #[error("the queue's PostgreSQL failed")]
    Postgres(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Redis (or, for a queue made by `Queue::postgres`, PostgreSQL) did not answer
    /// within the operation's time limit.
    #[error("the queue's store did not answer {operation} within {limit:?}")]
    TimedOut {
        /// What was asked.
        operation: &'static str,
        /// The time limit in force.
        limit: Duration,
    },
    /// [`Worker::run_until_idle`] did not find the queue idle within its limit: the
    /// worker was stopped as by a shutdown, and `left` is what the queue held then
    /// (waiting, running or waiting for a retry).
    #[error(
        "the queue was not idle within {limit:?}: {} waiting, {} running, {} waiting for a retry",
        left.pending, left.in_progress, left.retrying
    )]
    NotIdle {
        /// The limit given to `run_until_idle`.
        limit: Duration,
        /// The queue's counts when it gave up.
        left: QueueCounts,
    },
    /// The queue in Redis was laid out with another number of partitions than this
    /// process's [`Queue::with_partitions`]. Nothing is enqueued or read with a
    /// mismatched count; the [guide](crate::guide::queue) says how to change
    /// it.
    #[error(
        "the queue in Redis has {stored} partitions, this process is configured for \
         {configured}: every endpoint and worker must use the same count (see \
         \"Changing the number of partitions\")"
    )]
    LayoutMismatch {
        /// The count Redis holds.
        stored: u16,
        /// This process's count.
        configured: u16,
    },
}

impl QueueError {
    /// Wraps an underlying error as [`QueueError::Redis`].
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Redis(error.into())
    }

    pub(crate) fn timeout(operation: &'static str, limit: Duration) -> Self {
        Self::TimedOut { operation, limit }
    }

    /// The Redis error code (`NOGROUP`, `BUSYGROUP`, …), if Redis answered one.
    pub(crate) fn redis_code(&self) -> Option<&str> {
        match self {
            Self::Redis(source) => source
                .downcast_ref::<redis::RedisError>()
                .and_then(redis::RedisError::code),
            _ => None,
        }
    }

    /// The error with its sources, for the logs and the checks on error text.
    pub(crate) fn to_string_chain(&self) -> String {
        crate::error::chain(self)
    }
}

impl From<redis::RedisError> for QueueError {
    fn from(error: redis::RedisError) -> Self {
        Self::new(error)
    }
}

impl From<crate::dedup::WriteError> for QueueError {
    fn from(error: crate::dedup::WriteError) -> Self {
        match error {
            crate::dedup::WriteError::Redis(error) => error.into(),
            crate::dedup::WriteError::NotReplicated(error) => Self::new(error),
        }
    }
}

/// How many entries are where, summed over the partitions.
///
/// ```
/// use notmeta_webhooks::queue::QueueCounts;
/// let counts = QueueCounts::default();
/// assert_eq!(counts.pending + counts.in_progress + counts.retrying + counts.dead_letters, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueCounts {
    /// Waiting in the stream for a worker (with key limits, also those waiting for
    /// their key's slot).
    pub pending: u64,
    /// Delivered to a worker and not yet settled (running, or left by a worker that
    /// died and waiting to be reclaimed).
    pub in_progress: u64,
    /// Failed temporarily and waiting for their next attempt.
    pub retrying: u64,
    /// In the dead-letter stream.
    pub dead_letters: u64,
    /// Whether the queue is paused: workers take nothing ([`Queue::pause`]).
    pub paused: bool,
    /// How long the oldest entry waiting for a worker has waited (since the
    /// endpoint queued it, or since its retry came due and was queued again), by
    /// the store's clock; `None` when nothing waits. A backlog that grows old while
    /// workers run says they do not keep up.
    pub oldest_pending: Option<Duration>,
}

/// One entry of the dead-letter stream.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The dead letter's own entry id.
    pub entry_id: String,
    /// The event id.
    pub event_id: String,
    /// The event type as sent.
    pub event_type: String,
    /// Why it was given up: the handler's error (with its sources), a panic, or a
    /// body that does not parse.
    pub error: String,
    /// How many times the handler ran.
    pub attempts: u32,
    /// When the endpoint accepted it.
    pub received_at: SystemTime,
    /// The body exactly as received and verified.
    pub body: Vec<u8>,
}

/// The Redis keys and consumer group an [`Enqueuer`] and its [`Worker`]s share, and
/// the queue's operations.
///
/// Clones share the connection. Every setting must be the same in the endpoints and
/// the workers (the namespace, the number of partitions, the group, and the key
/// limit of [`Queue::with_key_limit`]).
///
/// ```no_run
/// use notmeta_webhooks::queue::Queue;
///
/// # async fn run() -> Result<(), notmeta_webhooks::queue::QueueError> {
/// let queue = Queue::connect("redis://127.0.0.1:6379/").await?.with_namespace("shop");
/// let counts = queue.counts().await?;
/// println!("{} waiting, {} dead", counts.pending, counts.dead_letters);
/// if counts.dead_letters > 0 {
///     for letter in queue.dead_letters(10).await? {
///         println!("{} {}: {}", letter.event_id, letter.event_type, letter.error);
///     }
///     // Once the cause is fixed: back into the queue.
///     queue.replay_dead_letters(usize::MAX).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Queue {
    backend: Backend,
    namespace: Arc<str>,
    group: Arc<str>,
    partitions: u16,
    window: Duration,
    scripts: Arc<protocol::Scripts>,
    /// How long each operation of [`Queue`] itself may wait for Redis.
    timeout: Duration,
    /// Where entries' trace context comes from (`Queue::with_trace_propagation`).
    trace: Option<Arc<dyn TracePropagation>>,
    /// Per-key ordering and cap ([`Queue::with_key_limit`]).
    key_limit: Option<KeyLimit>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("backend", &self.backend)
            .field("namespace", &self.namespace)
            .field("group", &self.group)
            .field("partitions", &self.partitions)
            .field("dedup_window", &self.window)
            .field("key_limit", &self.key_limit)
            .finish_non_exhaustive()
    }
}

/// Where the queue lives.
#[derive(Clone)]
enum Backend {
    Redis(RedisConnection),
    #[cfg(feature = "postgres")]
    Postgres(Arc<postgres::PgQueue>),
    Memory(Arc<memory::MemQueue>),
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis(connection) => f.debug_tuple("Redis").field(connection).finish(),
            #[cfg(feature = "postgres")]
            Self::Postgres(pg) => f.debug_tuple("Postgres").field(pg).finish(),
            Self::Memory(memory) => f.debug_tuple("Memory").field(memory).finish(),
        }
    }
}

/// The keys of one partition.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub(crate) stream: String,
    pub(crate) dead: String,
    pub(crate) retry: String,
    /// Followed by an event id: the retry hash.
    pub(crate) retry_prefix: String,
    /// Followed by an event id: the state key.
    pub(crate) state_prefix: String,
}

impl Keys {
    pub(crate) fn state(&self, event_id: &str) -> String {
        format!("{}{event_id}", self.state_prefix)
    }

    pub(crate) fn retry_hash(&self, event_id: &str) -> String {
        format!("{}{event_id}", self.retry_prefix)
    }
}

/// The default time limit of each Redis call of a worker and of [`Queue`]'s
/// operations: 5 s.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(5);

impl Queue {
    /// A queue on `backend` in `namespace`, with the defaults every backend starts
    /// from.
    fn with_backend(backend: Backend, namespace: &str) -> Self {
        Self {
            backend,
            namespace: Arc::from(namespace),
            group: Arc::from("workers"),
            partitions: 1,
            window: DEFAULT_DEDUP_WINDOW,
            scripts: Arc::new(protocol::Scripts::new()),
            timeout: DEFAULT_REDIS_TIMEOUT,
            trace: None,
            key_limit: None,
        }
    }

    /// A queue over `connection`, in the namespace `notmeta-webhooks`, with one
    /// partition, the consumer group `workers`, a 2 h dedup window and a
    /// [`DEFAULT_REDIS_TIMEOUT`] of 5 s.
    #[must_use]
    pub fn new(connection: impl Into<RedisConnection>) -> Self {
        Self::with_backend(Backend::Redis(connection.into()), "notmeta-webhooks")
    }

    /// A queue in PostgreSQL, on `pool`, in the tables `tables` names (created or
    /// upgraded first, with [`migrate`](crate::postgres::migrate)), with a 2 h dedup
    /// window and a [`DEFAULT_REDIS_TIMEOUT`] of 5 s per statement. The
    /// [`Enqueuer`] and the [`Worker`] work as on Redis; the guide's
    /// [queue chapter](crate::guide::queue) says what differs. The Redis settings
    /// ([`with_namespace`](Self::with_namespace), [`with_partitions`](Self::with_partitions),
    /// [`with_group`](Self::with_group), [`with_replicas`](Self::with_replicas))
    /// do not apply: the tables are the namespace, and PostgreSQL's own replication
    /// is the database's.
    ///
    /// ```no_run
    /// use notmeta_webhooks::postgres::Tables;
    /// use notmeta_webhooks::queue::Queue;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::PgPool::connect("postgres://app@127.0.0.1/app").await?;
    /// let queue = Queue::postgres(pool, &Tables::default()).await?;
    /// println!("{} waiting", queue.counts().await?.pending);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`QueueError::Postgres`] if the tables cannot be created or upgraded (see
    /// [`migrate`](crate::postgres::migrate)).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn postgres(
        pool: sqlx::PgPool,
        tables: &crate::postgres::Tables,
    ) -> Result<Self, QueueError> {
        crate::postgres::migrate(&pool, tables)
            .await
            .map_err(|e| QueueError::Postgres(Box::new(e)))?;
        let pg = postgres::PgQueue::new(pool, tables);
        Ok(Self::with_backend(
            Backend::Postgres(Arc::new(pg)),
            tables.prefix(),
        ))
    }

    /// A queue in this process's memory, for tests and single-process prototypes:
    /// **not durable** (everything it holds, waiting entries, dead letters and the
    /// event ids it remembers, is lost with the process), and shared only by the
    /// clones of this `Queue` (every [`Enqueuer`] and [`Worker`] made with a clone
    /// uses the same entries). No Redis or database is needed at run time.
    ///
    /// The same [`Enqueuer`] and [`Worker`] work on it, with the same rules: at most
    /// one entry per event id and duplicates answered `OK (duplicate)` for the dedup
    /// window (2 h; [`with_dedup_window`](Self::with_dedup_window)), retries after
    /// the worker's backoff up to its maximum attempts, dead letters,
    /// [`Enqueuer::with_max_len`] (503 while that many entries wait or run), and the
    /// operations ([`counts`](Self::counts), [`dead_letters`](Self::dead_letters),
    /// [`replay_dead_letters`](Self::replay_dead_letters),
    /// [`purge_dead_letters`](Self::purge_dead_letters); [`check_layout`](Self::check_layout)
    /// does nothing). Several workers on clones share the entries, each run under a
    /// lease of the worker's visibility timeout as on PostgreSQL; an idle worker is
    /// woken the moment an entry is queued, replayed or becomes due, without polling.
    /// The Redis settings (namespace, partitions, group, replicas, time limit) do not
    /// apply, and [`connection`](Self::connection) panics. Its times are Tokio's, so
    /// on a paused test clock backoffs and windows pass as the clock advances.
    ///
    /// ```
    /// use notmeta_webhooks::queue::{Enqueuer, Queue, Worker};
    /// use notmeta_webhooks::receiver::HandlerError;
    /// use notmeta_webhooks::{sign, Event, Verifier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let queue = Queue::in_memory();
    /// let enqueuer = Enqueuer::new(Verifier::new("whsec_abc123")?, queue.clone());
    /// let body = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
    /// let answer = enqueuer.receive(body, [sign(body, "whsec_abc123")]).await;
    /// assert_eq!((answer.status().as_u16(), answer.body()), (200, "OK"));
    /// assert_eq!(queue.counts().await?.pending, 1);
    ///
    /// let worker = Worker::new(queue.clone(), |event: Event<'static>| async move {
    ///     assert_eq!(event.id, "evt_1");
    ///     Ok::<(), HandlerError>(())
    /// });
    /// let stats = worker.run_until_idle(std::time::Duration::from_secs(10)).await?;
    /// assert_eq!(stats.handled, 1);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn in_memory() -> Self {
        Self::with_backend(Backend::Memory(Arc::new(memory::MemQueue::new())), "memory")
    }

    /// Connects to the Redis server at `url` (`redis://host:port/db`).
    ///
    /// # Errors
    ///
    /// If `url` is not a Redis URL or the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, QueueError> {
        Ok(Self::new(RedisConnection::connect(url).await?))
    }

    /// Connects to a Redis Cluster through any of its `nodes`.
    ///
    /// # Errors
    ///
    /// If a node URL is invalid or no node can be reached.
    pub async fn connect_cluster<'a>(
        nodes: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, QueueError> {
        Ok(Self::new(RedisConnection::connect_cluster(nodes).await?))
    }

    /// Prefixes every key with `namespace` (several queues can share one Redis).
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Arc::from(namespace.into());
        self
    }

    /// Splits the queue into `partitions` streams (at least 1; default 1), chosen by a
    /// hash of the event id. On a Redis Cluster each partition's keys share one slot,
    /// so partitions spread over the shards.
    ///
    /// The count is stored in Redis by the first worker or endpoint, and a process
    /// configured with another count is refused ([`QueueError::LayoutMismatch`]):
    /// the [guide](crate::guide::queue) says how to change it.
    #[must_use]
    pub fn with_partitions(mut self, partitions: u16) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// The consumer group the workers read with (default `workers`).
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Arc::from(group.into());
        self
    }

    /// How long an event id is remembered after it was queued and after it was
    /// handled (default 2 h, NotMeta's 81-minute retry window with room to spare).
    #[must_use]
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.window = clamp(window).max(Duration::from_secs(1));
        self
    }

    /// The time limit of each Redis call a [`Worker`] and this queue's operations
    /// make (default [`DEFAULT_REDIS_TIMEOUT`], 5 s; at least 1 ms). The connection
    /// itself has no reply time limit, so this is the one in force. The endpoint has
    /// its own ([`Enqueuer::with_timeout`]).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = clamp(timeout).max(Duration::from_millis(1));
        self
    }

    /// Makes the queue's writes that guard "nothing acknowledged is lost" and
    /// "each entry handled once" count only once `replicas` replicas have them:
    /// each is followed, in one pipeline on the same connection to its partition's
    /// primary, by `WAIT replicas timeout` (see [`Replication`]). Covered:
    ///
    /// - the **enqueue** (the endpoint answers 200 only once the replicas have the
    ///   entry and its dedup state, 503 otherwise, and NotMeta retries), and a
    ///   duplicate's answer (the state it rests on is acknowledged too);
    /// - the **start of a run** (the handler runs only once the replicas know this
    ///   worker owns the entry, so a failover cannot hand it to another worker
    ///   meanwhile; after a start they did not acknowledge, the worker asks again,
    ///   renewing the entry, until they do or the entry turns out lost);
    /// - the **settle** (the done mark, a retry, a dead letter: tried again until
    ///   acknowledged, as after any Redis error);
    /// - the marks of [`Enqueuer::with_previous_queue`].
    ///
    /// Not covered, because a lost one costs no exactly-once: reads and reclaims
    /// (an entry read but not started is read again), renewals (the next renewal
    /// comes within a third of the visibility timeout, before any reclaim), the
    /// promotion of due retries (it runs again), and the operations (replays,
    /// purges, layout checks: repeat them).
    ///
    /// Redis waits at most `timeout`, and at most half of the call's own limit
    /// ([`Enqueuer::with_timeout`], 2 s; [`Queue::with_timeout`], 5 s), which still
    /// bounds each call as a whole. The queue, its [`Enqueuer`]s and [`Worker`]s
    /// share the setting (and the connection). Off by default, for the reasons
    /// `RedisStore::with_replicas` gives; the guide's [failover chapter](crate::guide::failover)
    /// says what it covers and which Redis settings go with it.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use notmeta_webhooks::queue::Queue;
    ///
    /// # async fn run() -> Result<(), notmeta_webhooks::queue::QueueError> {
    /// let queue = Queue::connect_cluster(["redis://10.0.0.1:7000/"])
    ///     .await?
    ///     .with_partitions(6)
    ///     .with_replicas(1, Duration::from_millis(250));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        let replication = Replication::replicas(replicas, timeout);
        self.backend = match self.backend {
            Backend::Redis(connection) => Backend::Redis(connection.with_replication(replication)),
            #[cfg(feature = "postgres")]
            other @ Backend::Postgres(_) => other,
            other @ Backend::Memory(_) => other,
        };
        self
    }

    /// The [`Replication`] in force.
    #[must_use]
    pub fn replication(&self) -> Replication {
        match &self.backend {
            Backend::Redis(connection) => connection.replication(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => Replication::Primary,
            Backend::Memory(_) => Replication::Primary,
        }
    }

    /// The number of partitions.
    #[must_use]
    pub fn partitions(&self) -> u16 {
        self.partitions
    }

    /// The dedup window.
    #[must_use]
    pub fn dedup_window(&self) -> Duration {
        self.window
    }

    /// The time limit of each Redis call ([`with_timeout`](Self::with_timeout)).
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The Redis connection.
    ///
    /// # Panics
    ///
    /// On a queue in PostgreSQL (`Queue::postgres`) or in memory
    /// ([`Queue::in_memory`]), which have none: see [`Queue::is_postgres`] and
    /// [`Queue::is_in_memory`].
    #[must_use]
    pub fn connection(&self) -> &RedisConnection {
        match &self.backend {
            Backend::Redis(connection) => connection,
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => panic!("a queue in PostgreSQL has no Redis connection"),
            Backend::Memory(_) => panic!("a queue in memory has no Redis connection"),
        }
    }

    /// Whether the queue is in PostgreSQL (`Queue::postgres`) rather than Redis.
    #[must_use]
    pub fn is_postgres(&self) -> bool {
        match &self.backend {
            Backend::Redis(_) | Backend::Memory(_) => false,
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => true,
        }
    }

    /// Whether the queue is in this process's memory ([`Queue::in_memory`]).
    ///
    /// ```
    /// assert!(notmeta_webhooks::queue::Queue::in_memory().is_in_memory());
    /// ```
    #[must_use]
    pub fn is_in_memory(&self) -> bool {
        matches!(self.backend, Backend::Memory(_))
    }

    /// The in-memory backend, if the queue is in memory.
    pub(crate) fn memory(&self) -> Option<&Arc<memory::MemQueue>> {
        match &self.backend {
            Backend::Memory(memory) => Some(memory),
            _ => None,
        }
    }

    /// The PostgreSQL backend, if the queue is in PostgreSQL.
    #[cfg(feature = "postgres")]
    pub(crate) fn pg(&self) -> Option<&Arc<postgres::PgQueue>> {
        match &self.backend {
            Backend::Postgres(pg) => Some(pg),
            Backend::Redis(_) | Backend::Memory(_) => None,
        }
    }

    /// Replaces the PostgreSQL backend (its statements depend on the key limit).
    #[cfg(feature = "postgres")]
    pub(crate) fn set_pg(&mut self, pg: postgres::PgQueue) {
        self.backend = Backend::Postgres(Arc::new(pg));
    }

    /// The partition `event_id` belongs to (FNV-1a of the id, modulo the number of
    /// partitions: the same in every process).
    ///
    /// ```
    /// # async fn f(queue: notmeta_webhooks::queue::Queue) {
    /// let queue = queue.with_partitions(4);
    /// assert!(queue.partition_of("evt_1") < 4);
    /// # }
    /// ```
    #[must_use]
    pub fn partition_of(&self, event_id: &str) -> u16 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in event_id.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // The remainder is below `partitions`, a u16.
        u16::try_from(hash % u64::from(self.partitions)).unwrap_or(0)
    }

    /// The key names of partition `p`: `{namespace:p}:stream` and so on.
    pub(crate) fn keys(&self, p: u16) -> Keys {
        let tag = format!("{{{}:{p}}}", self.namespace);
        Keys {
            stream: format!("{tag}:stream"),
            dead: format!("{tag}:dead"),
            retry: format!("{tag}:retry"),
            retry_prefix: format!("{tag}:retry:"),
            state_prefix: format!("{tag}:event:"),
        }
    }

    pub(crate) fn group(&self) -> &str {
        &self.group
    }

    pub(crate) fn scripts(&self) -> &protocol::Scripts {
        &self.scripts
    }

    /// `{namespace}:layout`: the number of partitions the queue was laid out with.
    fn layout_key(&self) -> String {
        format!("{{{}}}:layout", self.namespace)
    }

    /// Records this process's partition count in Redis if none is, and checks that
    /// the count there is this one.
    ///
    /// # Errors
    ///
    /// [`QueueError::LayoutMismatch`] if Redis holds another count; a Redis error.
    pub async fn check_layout(&self) -> Result<(), QueueError> {
        if self.memory().is_some() {
            return Ok(());
        }
        #[cfg(feature = "postgres")]
        if self.pg().is_some() {
            return Ok(());
        }
        let mut connection = self.connection().clone();
        let key = self.layout_key();
        let check = async {
            let (stored,): (Option<String>,) = redis::pipe()
                .set_nx(&key, self.partitions)
                .ignore()
                .get(&key)
                .query_async(&mut connection)
                .await?;
            Ok::<_, QueueError>(stored)
        };
        let stored = protocol::bounded(self.timeout, "the layout check", check).await?;
        self.compare_layout(&key, stored.as_deref())
    }

    /// Checks, without writing anything, that the count Redis holds (if any) is
    /// this process's.
    pub(crate) async fn verify_layout(&self) -> Result<(), QueueError> {
        if self.memory().is_some() {
            return Ok(());
        }
        #[cfg(feature = "postgres")]
        if self.pg().is_some() {
            return Ok(());
        }
        let mut connection = self.connection().clone();
        let key = self.layout_key();
        let read = async {
            let stored: Option<String> = connection.get(&key).await?;
            Ok::<_, QueueError>(stored)
        };
        let stored = protocol::bounded(self.timeout, "the layout check", read).await?;
        self.compare_layout(&key, stored.as_deref())
    }

    fn compare_layout(&self, key: &str, stored: Option<&str>) -> Result<(), QueueError> {
        match stored.map(str::parse::<u16>) {
            Some(Ok(stored)) if stored != self.partitions => Err(QueueError::LayoutMismatch {
                stored,
                configured: self.partitions,
            }),
            Some(Err(_)) => Err(QueueError::new(format!(
                "{key} holds {stored:?}, not a partition count"
            ))),
            _ => Ok(()),
        }
    }

    /// Creates the consumer group on partition `p`'s stream (and the stream), if
    /// missing.
    pub(crate) async fn ensure_group(
        &self,
        connection: &mut RedisConnection,
        p: u16,
    ) -> Result<(), QueueError> {
        let created = async {
            let created: redis::RedisResult<()> = connection
                .xgroup_create_mkstream(self.keys(p).stream, &*self.group, "0")
                .await;
            match created {
                Ok(()) => Ok(()),
                Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
                Err(e) => Err(e.into()),
            }
        };
        protocol::bounded(self.timeout, "XGROUP CREATE", created).await
    }

    /// Checks the layout and creates every partition's consumer group if missing.
    pub(crate) async fn prepare(&self) -> Result<(), QueueError> {
        if self.memory().is_some() {
            return Ok(());
        }
        #[cfg(feature = "postgres")]
        if self.pg().is_some() {
            return Ok(());
        }
        self.check_layout().await?;
        let mut connection = self.connection().clone();
        for p in 0..self.partitions {
            self.ensure_group(&mut connection, p).await?;
        }
        Ok(())
    }

    /// How many entries wait, run, wait for a retry, and are dead letters, how long
    /// the oldest waiting entry has waited, and whether the queue is
    /// [paused](Self::pause). With the
    /// `metrics` feature the figures are also set as gauges
    /// ([`QUEUE_PENDING`](crate::receiver::metrics::QUEUE_PENDING) and the others of
    /// [`receiver::metrics`](crate::receiver::metrics)). It only reads: a missing stream or group counts as empty.
    ///
    /// # Errors
    ///
    /// If Redis fails, or [`QueueError::LayoutMismatch`].
    pub async fn counts(&self) -> Result<QueueCounts, QueueError> {
        if let Some(memory) = self.memory() {
            let counts = memory.counts();
            #[cfg(feature = "metrics")]
            report_counts(&counts);
            return Ok(counts);
        }
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            let mut counts = protocol::bounded(self.timeout, "the counts", pg.counts()).await?;
            counts.paused = self.is_paused().await?;
            counts.oldest_pending = self.oldest_pending().await?;
            #[cfg(feature = "metrics")]
            report_counts(&counts);
            return Ok(counts);
        }
        self.verify_layout().await?;
        let mut connection = self.connection().clone();
        let mut counts = QueueCounts::default();
        for p in 0..self.partitions {
            let keys = self.keys(p);
            let read = async {
                // Entries waiting for their key's slot (key limits) are pending too.
                let figures: (u64, u64, u64, u64) = self
                    .scripts
                    .counts
                    .key(&keys.stream)
                    .key(&keys.retry)
                    .key(&keys.dead)
                    .key(ordering::waiting_key(&keys))
                    .arg(&*self.group)
                    .invoke_async(&mut connection)
                    .await?;
                Ok(figures)
            };
            let (len, running, retrying, dead) =
                protocol::bounded(self.timeout, "the counts", read).await?;
            counts.pending += len.saturating_sub(running);
            counts.in_progress += running;
            counts.retrying += retrying;
            counts.dead_letters += dead;
        }
        counts.paused = self.is_paused().await?;
        counts.oldest_pending = self.oldest_pending().await?;
        #[cfg(feature = "metrics")]
        report_counts(&counts);
        Ok(counts)
    }

    /// Up to `limit` dead letters, oldest first, partition by partition.
    ///
    /// # Errors
    ///
    /// If Redis fails, or [`QueueError::LayoutMismatch`].
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        if let Some(memory) = self.memory() {
            return Ok(memory.dead_letters(limit));
        }
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            let read = pg.dead_letters(limit);
            return protocol::bounded(self.timeout, "the dead letters", read).await;
        }
        self.verify_layout().await?;
        let mut connection = self.connection().clone();
        let mut letters = Vec::new();
        for p in 0..self.partitions {
            let mut from = "-".to_owned();
            loop {
                let left = limit.saturating_sub(letters.len()).min(100);
                if left == 0 {
                    return Ok(letters);
                }
                let page = self.dead_page(&mut connection, p, &from, left).await?;
                letters.extend(page.iter().map(|(id, fields)| dead_letter(id, fields)));
                match page.last() {
                    Some((last, _)) if page.len() == left => from = format!("({last}"),
                    _ => break,
                }
            }
        }
        Ok(letters)
    }

    /// Up to `count` dead letters of partition `p` from `from` (an `XRANGE` bound):
    /// their ids and fields.
    async fn dead_page(
        &self,
        connection: &mut RedisConnection,
        p: u16,
        from: &str,
        count: usize,
    ) -> Result<Vec<DeadPage>, QueueError> {
        let read = async {
            let page: Vec<DeadPage> = connection
                .xrange_count(self.keys(p).dead, from, "+", count)
                .await?;
            Ok(page)
        };
        protocol::bounded(self.timeout, "XRANGE of the dead letters", read).await
    }

    /// Moves up to `limit` dead letters back into the queue, oldest first, with their
    /// attempts reset; returns how many moved. Each move is atomic. A dead letter
    /// whose event has been handled meanwhile (a run thought lost succeeded) or is
    /// queued again already is deleted instead of replayed, and not counted.
    ///
    /// # Errors
    ///
    /// If Redis fails (what was moved stays moved), or
    /// [`QueueError::LayoutMismatch`].
    pub async fn replay_dead_letters(&self, limit: usize) -> Result<usize, QueueError> {
        if let Some(memory) = self.memory() {
            return Ok(memory.replay(limit));
        }
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.replay(limit, self.timeout).await;
        }
        self.verify_layout().await?;
        let mut connection = self.connection().clone();
        let mut moved = 0;
        for p in 0..self.partitions {
            let keys = self.keys(p);
            let mut from = "-".to_owned();
            loop {
                let left = limit.saturating_sub(moved).min(100);
                if left == 0 {
                    return Ok(moved);
                }
                let page = self.dead_page(&mut connection, p, &from, left).await?;
                for (dead_id, fields) in &page {
                    let entry =
                        protocol::Entry::from_pairs(fields.iter().map(|(k, v)| (&k[..], &v[..])));
                    let one = protocol::replay_one(
                        self,
                        &mut connection,
                        &keys,
                        dead_id,
                        &entry.event_id,
                        entry.key.as_deref(),
                    );
                    if protocol::bounded(self.timeout, "a replay", one).await?
                        == protocol::Replayed::Queued
                    {
                        moved += 1;
                    }
                }
                match page.last() {
                    Some((last, _)) if page.len() == left => from = format!("({last}"),
                    _ => break,
                }
            }
        }
        Ok(moved)
    }

    /// Deletes the dead letters given up on at least `older_than` ago (by the Redis
    /// server's clock, in whole milliseconds rounded up), in every partition;
    /// returns how many. `Duration::ZERO` deletes them all. Dead letters are otherwise kept until replayed, so a
    /// receiver that gives up on events for good should call this from time to
    /// time (for example daily, with a retention of a few weeks).
    ///
    /// A purged event's id stays remembered as given up on for the rest of its
    /// dedup window: a redelivery within it is still answered as a duplicate.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use notmeta_webhooks::queue::Queue;
    ///
    /// # async fn run() -> Result<(), notmeta_webhooks::queue::QueueError> {
    /// let queue = Queue::connect("redis://127.0.0.1:6379/").await?;
    /// let purged = queue
    ///     .purge_dead_letters(Duration::from_secs(30 * 24 * 60 * 60))
    ///     .await?;
    /// println!("{purged} dead letters older than 30 days deleted");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// If Redis fails (partitions already purged stay purged), or
    /// [`QueueError::LayoutMismatch`].
    pub async fn purge_dead_letters(&self, older_than: Duration) -> Result<u64, QueueError> {
        if let Some(memory) = self.memory() {
            return Ok(memory.purge(older_than));
        }
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return protocol::bounded(self.timeout, "a purge", pg.purge(older_than)).await;
        }
        self.verify_layout().await?;
        let mut connection = self.connection().clone();
        // Whole milliseconds, rounded up: nothing younger than asked is deleted.
        let age =
            u64::try_from(clamp(older_than).as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        let mut purged = 0;
        for p in 0..self.partitions {
            // Also releases the key slots the purged dead letters hold (key limits),
            // whatever this process is configured with.
            purged += ordering::purge(self, &mut connection, p, age).await?;
        }
        Ok(purged)
    }
}

/// A dead letter as read: its id and its fields.
type DeadPage = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// Milliseconds for `PX`: at least 1.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(clamp(d).as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

pub(crate) fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn dead_letter(id: &str, fields: &[(Vec<u8>, Vec<u8>)]) -> DeadLetter {
    let entry = protocol::Entry::from_pairs(fields.iter().map(|(k, v)| (&k[..], &v[..])));
    let error = fields
        .iter()
        .find(|(k, _)| k == b"error")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    DeadLetter {
        entry_id: id.to_owned(),
        event_id: entry.event_id,
        event_type: entry.event_type,
        error,
        attempts: u32::try_from(entry.attempt).unwrap_or(u32::MAX),
        received_at: UNIX_EPOCH + Duration::from_millis(entry.received),
        body: entry.body,
    }
}

#[cfg(feature = "metrics")]
#[allow(clippy::cast_precision_loss)] // gauges are f64; counts far below 2^52
fn report_counts(counts: &QueueCounts) {
    ::metrics::gauge!(crate::receiver::metrics::QUEUE_PENDING).set(counts.pending as f64);
    ::metrics::gauge!(crate::receiver::metrics::QUEUE_IN_PROGRESS).set(counts.in_progress as f64);
    ::metrics::gauge!(crate::receiver::metrics::QUEUE_RETRYING).set(counts.retrying as f64);
    ::metrics::gauge!(crate::receiver::metrics::QUEUE_DEAD_LETTERS).set(counts.dead_letters as f64);
    ::metrics::gauge!(crate::receiver::metrics::QUEUE_PAUSED)
        .set(f64::from(u8::from(counts.paused)));
    let oldest = counts.oldest_pending.unwrap_or_default().as_secs_f64();
    ::metrics::gauge!(crate::receiver::metrics::QUEUE_OLDEST_PENDING_SECONDS).set(oldest);
}
