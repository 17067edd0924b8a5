//! The enqueueing endpoint.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Queue, QueueError, millis, unix_millis};
use crate::clock::{Clock, SystemClock};
use crate::dedup::clamp;
use crate::event::Event;
use crate::receiver::age;
use crate::receiver::{Answer, Outcome};
use crate::signature::Verifier;

/// The default time limit of one enqueue: 2 s. Redis not answering in time is
/// answered 503, so NotMeta retries.
pub const DEFAULT_ENQUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// An endpoint that verifies each delivery and puts it on the [`Queue`], answering
/// 200 as soon as Redis has accepted it; [`Worker`](super::Worker)s run the handler
/// later.
///
/// | delivery | answer |
/// |---|---|
/// | signature missing, malformed or wrong; not a valid event | 400 (as [`Receiver`](crate::receiver::Receiver)) |
/// | body over the verifier's limit | 413 |
/// | `webhook.verified` challenge | 200 with the challenge, not queued |
/// | older than the maximum age | 400 `Event too old` |
/// | queued now | 200 `OK` ([`Outcome::Queued`]) |
/// | queued already (duplicate, also concurrent) | 200 `OK (duplicate)` |
/// | Redis unreachable or slower than the timeout | 503 ([`Outcome::StoreUnavailable`]) |
/// | the queue is at its maximum length | 503 `Busy, retry later` ([`Outcome::StoreFull`]) |
///
/// ```no_run
/// use notmeta_webhooks::queue::{Enqueuer, Queue};
/// use notmeta_webhooks::{sign, Verifier};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let queue = Queue::connect("redis://127.0.0.1:6379/").await?;
/// let enqueuer = Enqueuer::new(Verifier::new("whsec_abc123")?, queue)
///     .with_max_event_age(std::time::Duration::from_secs(2 * 60 * 60));
///
/// let body = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
/// let answer = enqueuer.receive(body, [sign(body, "whsec_abc123").as_bytes()]).await;
/// println!("{} {}", answer.status(), answer.body());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Enqueuer {
    verifier: Verifier,
    queue: Queue,
    clock: Arc<dyn Clock>,
    max_event_age: Option<Duration>,
    timeout: Duration,
    max_len: u64,
}

impl fmt::Debug for Enqueuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enqueuer")
            .field("verifier", &self.verifier)
            .field("queue", &self.queue)
            .field("max_event_age", &self.max_event_age)
            .field("timeout", &self.timeout)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl Enqueuer {
    /// An endpoint that verifies with `verifier` and enqueues on `queue`, with no
    /// maximum event age, no maximum length, and a
    /// [`DEFAULT_ENQUEUE_TIMEOUT`] of 2 s.
    #[must_use]
    pub fn new(verifier: Verifier, queue: Queue) -> Self {
        Self {
            verifier,
            queue,
            clock: Arc::new(SystemClock),
            max_event_age: None,
            timeout: DEFAULT_ENQUEUE_TIMEOUT,
            max_len: 0,
        }
    }

    /// The verifier (its [`Verifier::max_body_size`] is the limit to read bodies with).
    #[must_use]
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The queue.
    #[must_use]
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Refuses (400) events whose signed `created_at` is older than `age`, as
    /// [`Receiver::with_max_event_age`](crate::receiver::Receiver::with_max_event_age)
    /// does; the event id is then remembered for at least `age` plus
    /// [`MAX_CLOCK_SKEW`](crate::receiver::MAX_CLOCK_SKEW), so a replay within the age is a duplicate.
    #[must_use]
    pub fn with_max_event_age(mut self, age: Duration) -> Self {
        self.max_event_age = Some(clamp(age));
        self
    }

    /// The time limit of one enqueue (default 2 s); Redis slower than this is
    /// answered 503.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = clamp(timeout);
        self
    }

    /// Refuses new events (503, so NotMeta retries later) while a partition's stream
    /// holds `entries` or more (waiting or running): a bound on Redis memory when the
    /// workers stop. Default: no bound.
    #[must_use]
    pub fn with_max_len(mut self, entries: u64) -> Self {
        self.max_len = entries;
        self
    }

    /// Uses `clock` for the event age (for tests; the system clock by default).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Processes one delivery: `body` exactly as received (read with the verifier's
    /// body limit) and every value of the `X-NotMeta-Signature` header.
    ///
    /// Verification and parsing happen before the returned future is first polled;
    /// the future appends the entry and resolves once Redis has answered (or the
    /// timeout has passed).
    pub fn receive<'r, 'h, I>(
        &'r self,
        body: &'r [u8],
        signature_values: I,
    ) -> BoxFuture<'r, Answer>
    where
        I: IntoIterator<Item = &'h [u8]>,
    {
        let verified = self
            .verifier
            .verify_and_parse_indexed(body, signature_values);
        Box::pin(async move {
            let (event, secret_index) = match verified {
                Ok(verified) => verified,
                Err(error) => return report(Answer::rejected(&error)),
            };
            if let Some(challenge) = event.challenge() {
                return report(Answer::challenge(challenge));
            }
            if self.is_stale(&event) {
                return report(Outcome::Stale.into());
            }
            let enqueue = self.enqueue(&event, body, secret_index);
            let outcome = match tokio::time::timeout(self.timeout, enqueue).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) | Err(_) => Outcome::StoreUnavailable,
            };
            report(outcome.into())
        })
    }

    async fn enqueue(
        &self,
        event: &Event<'_>,
        body: &[u8],
        secret_index: usize,
    ) -> Result<Outcome, QueueError> {
        let id = event.id.as_str();
        let keys = self.queue.keys(self.queue.partition_of(id));
        let mut connection = self.queue.connection().clone();
        let state: String = self
            .queue
            .scripts()
            .enqueue
            .key(keys.state(id))
            .key(&keys.stream)
            .arg(millis(self.window_for(event)))
            .arg(self.max_len)
            .arg("id")
            .arg(id)
            .arg("type")
            .arg(event.type_str())
            .arg("body")
            .arg(body)
            .arg("received")
            .arg(unix_millis(self.clock.now()))
            .arg("secret")
            .arg(secret_index)
            .arg("attempt")
            .arg(0)
            .invoke_async(&mut connection)
            .await?;
        match state.as_str() {
            "queued" => Ok(Outcome::Queued),
            "duplicate" => Ok(Outcome::Duplicate),
            "full" => Ok(Outcome::StoreFull),
            other => Err(QueueError::new(format!(
                "unexpected enqueue reply {other:?}"
            ))),
        }
    }

    fn is_stale(&self, event: &Event<'_>) -> bool {
        age::is_stale(self.max_event_age, &*self.clock, event)
    }

    fn window_for(&self, event: &Event<'_>) -> Duration {
        let window = self.queue.dedup_window();
        age::window_for(window, self.max_event_age, &*self.clock, event)
    }
}

/// Counts the answer (feature `metrics`) and returns it.
fn report(answer: Answer) -> Answer {
    #[cfg(feature = "metrics")]
    metrics::counter!("notmeta_webhooks_enqueued_total", "outcome" => answer.outcome().as_str())
        .increment(1);
    answer
}

#[cfg(feature = "tower")]
impl crate::adapter::Endpoint for Enqueuer {
    fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    fn deliver(
        self: Arc<Self>,
        body: bytes::Bytes,
        signatures: [Option<http::HeaderValue>; 2],
    ) -> BoxFuture<'static, Answer> {
        Box::pin(async move {
            let values = signatures.iter().flatten().map(http::HeaderValue::as_bytes);
            self.receive(&body, values).await
        })
    }
}
