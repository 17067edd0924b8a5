//! Testing an app that uses the queue: an in-memory queue, its endpoint with a
//! known secret, signed sample events posted through it, and workers run until the
//! queue is idle.

use std::time::Duration;

use crate::queue::{Enqueuer, Queue, QueueError, Worker, WorkerStats};
use crate::receiver::{Answer, Handler};
use crate::signature::{Verifier, sign};

use super::Sample;

/// A queue for tests, its [`Enqueuer`] with a known secret ([`TestQueue::SECRET`]),
/// and workers set for tests (feature `queue` as well as `testing`).
///
/// [`TestQueue::new`] keeps the queue in memory ([`Queue::in_memory`]: nothing to
/// start, nothing durable); [`TestQueue::on`] takes any queue (Redis, PostgreSQL).
/// [`post`](Self::post) signs a [`Sample`] with the secret and sends it through the
/// endpoint, as NotMeta would, and answers what the endpoint answered;
/// [`run_until_idle`](Self::run_until_idle) runs a worker until the queue is
/// drained and returns what it did. Workers made by [`worker`](Self::worker) retry
/// at once (no backoff) and poll every 10 ms, so retries and dead letters take no
/// real time. Clones share the queue.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use notmeta_webhooks::receiver::HandlerError;
/// use notmeta_webhooks::testing::{TestQueue, sample};
/// use notmeta_webhooks::{Event, EventType};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let kit = TestQueue::new();
/// let event = sample(EventType::MessageReceived).text("hola");
/// assert_eq!(kit.post(&event).await.body(), "OK");
/// assert_eq!(kit.post(&event).await.body(), "OK (duplicate)");
///
/// // The app's handler: the CRM is down for the first attempt.
/// let calls = Arc::new(AtomicU32::new(0));
/// let counter = Arc::clone(&calls);
/// let handler = move |_: Event<'static>| {
///     let n = counter.fetch_add(1, Ordering::SeqCst);
///     async move {
///         if n == 0 { Err(HandlerError::temporary("CRM down")) } else { Ok(()) }
///     }
/// };
/// let stats = kit.run_until_idle(handler).await?;
/// assert_eq!((stats.retried, stats.handled), (1, 1));
/// assert_eq!(calls.load(Ordering::SeqCst), 2);
/// assert_eq!(kit.queue().counts().await?.dead_letters, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TestQueue {
    queue: Queue,
    enqueuer: Enqueuer,
}

impl Default for TestQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl TestQueue {
    /// The webhook secret the endpoint verifies with and [`post`](Self::post) signs
    /// with.
    pub const SECRET: &'static str = "whsec_test_queue";

    /// How long [`run_until_idle`](Self::run_until_idle) waits for the queue to be
    /// idle at most: 60 s.
    pub const IDLE_LIMIT: Duration = Duration::from_secs(60);

    /// A queue in memory ([`Queue::in_memory`]) and its endpoint.
    #[must_use]
    pub fn new() -> Self {
        Self::on(Queue::in_memory())
    }

    /// `queue` (in memory, on Redis or on PostgreSQL) and its endpoint.
    #[must_use]
    pub fn on(queue: Queue) -> Self {
        let verifier = Verifier::new(Self::SECRET).unwrap_or_else(|_| unreachable!());
        Self {
            enqueuer: Enqueuer::new(verifier, queue.clone()),
            queue,
        }
    }

    /// Changes the endpoint: `|e| e.with_max_len(2)`, `|e| e.with_max_event_age(…)`.
    ///
    /// ```
    /// use notmeta_webhooks::testing::{TestQueue, sample};
    /// use notmeta_webhooks::EventType;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let kit = TestQueue::new().with_enqueuer(|e| e.with_max_len(1));
    /// assert_eq!(kit.post(&sample(EventType::UserOnline)).await.status(), 200);
    /// assert_eq!(kit.post(&sample(EventType::UserOnline)).await.status(), 503);
    /// # }
    /// ```
    #[must_use]
    pub fn with_enqueuer(mut self, change: impl FnOnce(Enqueuer) -> Enqueuer) -> Self {
        self.enqueuer = change(self.enqueuer);
        self
    }

    /// The queue (its counts, dead letters, replays).
    #[must_use]
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The endpoint (mount it in the app under test, or call `receive`).
    #[must_use]
    pub fn enqueuer(&self) -> &Enqueuer {
        &self.enqueuer
    }

    /// Signs `sample`'s body with [`SECRET`](Self::SECRET) and sends it through the
    /// endpoint: its answer (`200 OK` once queued, `200 OK (duplicate)`, `503` when
    /// full, …).
    pub async fn post(&self, sample: &Sample) -> Answer {
        self.post_body(&sample.body()).await
    }

    /// Signs `body` with [`SECRET`](Self::SECRET) and sends it through the endpoint.
    pub async fn post_body(&self, body: &[u8]) -> Answer {
        let signature = sign(body, Self::SECRET);
        self.enqueuer.receive(body, [signature]).await
    }

    /// A worker on the queue running `handler`, set for tests: retries at once (no
    /// backoff) and a 10 ms poll interval; the rest as [`Worker::new`] (5 attempts,
    /// 8 handlers at once). Change any setting on what it returns.
    #[must_use]
    pub fn worker<H: Handler>(&self, handler: H) -> Worker<H> {
        Worker::new(self.queue.clone(), handler)
            .with_backoff(Duration::ZERO, Duration::ZERO)
            .with_poll_interval(Duration::from_millis(10))
    }

    /// Runs [`worker`](Self::worker)`(handler)` until the queue is idle (see
    /// [`Worker::run_until_idle`]), for at most [`IDLE_LIMIT`](Self::IDLE_LIMIT).
    ///
    /// # Errors
    ///
    /// [`QueueError::NotIdle`] when the queue was not idle within the limit (a
    /// handler that never returns); a store error at start (Redis, PostgreSQL).
    pub async fn run_until_idle<H: Handler>(&self, handler: H) -> Result<WorkerStats, QueueError> {
        self.worker(handler).run_until_idle(Self::IDLE_LIMIT).await
    }
}
