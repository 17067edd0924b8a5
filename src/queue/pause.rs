//! Pausing a queue: a flag kept in the store, so that every worker process, on
//! every machine, sees it.
//!
//! - **Redis**: the key `{namespace}:paused` (the namespace's own hash tag, the
//!   slot of the layout key: one key for every partition), holding the Unix time in
//!   milliseconds the queue was paused at. Absent: running. A worker reads it
//!   (`EXISTS`) once per pass of its read loop, before it promotes retries,
//!   reclaims or reads. A pass that cannot read the flag (no answer within the
//!   queue's [time limit](super::Queue::with_timeout), or a server that refuses the
//!   key, such as an ACL that lets the workers reach only `{namespace:*}` keys)
//!   goes on as if the queue were running: let the workers' Redis user read
//!   `{namespace}:paused` too.
//! - **PostgreSQL**: the one row of `<prefix>queue_state` (schema version 4). The
//!   worker's take statement reads it itself: no statement is added.
//! - **In memory**: a flag beside the entries, read by every take; a resume wakes
//!   the idle workers.
//!
//! While paused, a worker takes nothing: no new entry, no due retry, no entry of a
//! dead worker. What runs goes on, is renewed and settles; retries stay scheduled;
//! the endpoint still enqueues and answers 200.

use redis::AsyncCommands as _;

use super::{Queue, QueueError, protocol};

impl Queue {
    /// Pauses the queue for every worker process: from the next pass of their read
    /// loops they take nothing new (no new entry, no due retry, no entry a dead
    /// worker left). Handlers already running go on to their end and settle; retries
    /// stay scheduled; the [`Enqueuer`](super::Enqueuer) still accepts events and
    /// answers 200. The flag is kept in the store (Redis: the key
    /// `{namespace}:paused`; PostgreSQL: the table `<prefix>queue_state`) until
    /// [`resume`](Self::resume), across restarts of the workers.
    ///
    /// How soon workers stop taking: on Redis, a worker checks the flag once per
    /// pass of its read loop, so each worker starts at most what one pass reads
    /// after this returns (up to its free handler slots; an idle worker passes every
    /// [poll interval](super::Worker::with_poll_interval), 100 ms by default). On
    /// PostgreSQL the take statement itself reads the flag: only a take already
    /// under way when this returns can still start entries.
    ///
    /// Pausing a paused queue changes nothing.
    ///
    /// ```no_run
    /// use notmeta_webhooks::queue::Queue;
    ///
    /// # async fn run() -> Result<(), notmeta_webhooks::queue::QueueError> {
    /// let queue = Queue::connect("redis://127.0.0.1:6379/").await?.with_namespace("shop");
    /// queue.pause().await?;
    /// assert!(queue.is_paused().await?);
    /// // … deploy a fixed handler, migrate what it writes to …
    /// queue.resume().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// If the store fails or does not answer within the queue's
    /// [time limit](Self::with_timeout).
    pub async fn pause(&self) -> Result<(), QueueError> {
        self.set_paused(true).await
    }

    /// Lets the workers take entries again (see [`pause`](Self::pause)). On
    /// PostgreSQL the workers are woken at once (`NOTIFY`); on Redis they take
    /// again at the next pass of their read loops (within a poll interval).
    /// Resuming a running queue changes nothing.
    ///
    /// ```no_run
    /// use notmeta_webhooks::queue::Queue;
    ///
    /// # async fn run() -> Result<(), notmeta_webhooks::queue::QueueError> {
    /// let queue = Queue::connect("redis://127.0.0.1:6379/").await?;
    /// queue.resume().await?;
    /// assert!(!queue.counts().await?.paused);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// If the store fails or does not answer within the queue's
    /// [time limit](Self::with_timeout).
    pub async fn resume(&self) -> Result<(), QueueError> {
        self.set_paused(false).await
    }

    /// Whether the queue is paused (see [`pause`](Self::pause)). Only reads.
    ///
    /// ```no_run
    /// use notmeta_webhooks::queue::Queue;
    ///
    /// # async fn run() -> Result<(), notmeta_webhooks::queue::QueueError> {
    /// let queue = Queue::connect("redis://127.0.0.1:6379/").await?;
    /// if queue.is_paused().await? {
    ///     println!("paused: workers take nothing");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// If the store fails or does not answer within the queue's
    /// [time limit](Self::with_timeout).
    pub async fn is_paused(&self) -> Result<bool, QueueError> {
        if let Some(memory) = self.memory() {
            return Ok(memory.is_paused());
        }
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return protocol::bounded(self.timeout, "the pause flag", pg.is_paused()).await;
        }
        let mut connection = self.connection().clone();
        let key = self.paused_key();
        let read = async {
            let paused: bool = connection.exists(&key).await?;
            Ok(paused)
        };
        protocol::bounded(self.timeout, "the pause flag", read).await
    }

    async fn set_paused(&self, paused: bool) -> Result<(), QueueError> {
        if let Some(memory) = self.memory() {
            memory.set_paused(paused);
            return Ok(());
        }
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            let set = pg.set_paused(paused);
            return protocol::bounded(self.timeout, "the pause flag", set).await;
        }
        let mut connection = self.connection().clone();
        let key = self.paused_key();
        let write = async {
            if paused {
                // When it was paused, for an operator who looks; kept if set already.
                let now = super::unix_millis(std::time::SystemTime::now());
                let _: bool = connection.set_nx(&key, now).await?;
            } else {
                let _: u64 = connection.del(&key).await?;
            }
            Ok(())
        };
        protocol::bounded(self.timeout, "the pause flag", write).await
    }

    /// `{namespace}:paused`: present while the queue is paused.
    fn paused_key(&self) -> String {
        format!("{{{}}}:paused", self.namespace)
    }
}

/// The worker's check, once per pass of its read loop on Redis: whether to take
/// nothing this pass. A failed read counts as not paused: the reads that follow
/// meet the same fault and report it.
pub(crate) async fn holds(queue: &Queue) -> bool {
    queue.is_paused().await.unwrap_or(false)
}

#[cfg(feature = "postgres")]
impl super::postgres::PgQueue {
    /// Whether the row of `<prefix>queue_state` says paused (no row: running).
    pub(crate) async fn is_paused(&self) -> Result<bool, QueueError> {
        let state = self.tables.queue_state();
        sqlx::query_scalar(&format!(
            "SELECT coalesce((SELECT paused FROM {state} WHERE singleton), false)"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| QueueError::Postgres(Box::new(e)))
    }

    /// Sets the flag; a resume wakes the listening workers.
    pub(crate) async fn set_paused(&self, paused: bool) -> Result<(), QueueError> {
        let state = self.tables.queue_state();
        sqlx::query(&format!(
            "WITH flag AS (
                INSERT INTO {state} AS s (paused) VALUES ($1)
                ON CONFLICT (singleton) DO UPDATE
                SET paused = EXCLUDED.paused,
                    updated_at = CASE WHEN s.paused = EXCLUDED.paused THEN s.updated_at ELSE now() END
                RETURNING paused
             )
             SELECT pg_notify($2, '') FROM flag WHERE NOT paused"
        ))
        .bind(paused)
        .bind(&self.channel)
        .execute(&self.pool)
        .await
        .map_err(|e| QueueError::Postgres(Box::new(e)))?;
        Ok(())
    }
}
