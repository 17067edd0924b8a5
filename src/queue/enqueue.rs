//! The enqueueing endpoint.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::memory::{Enqueued, MemQueue};
use super::protocol::{self, EntryRef, State};
use super::{Queue, QueueError, TraceContext, millis, trace_context, unix_millis};
use crate::clock::{Clock, SystemClock, clamp};
use crate::dedup::{StoreError, Write};
use crate::event::Event;
use crate::receiver::admit::{self, Admitted};
use crate::receiver::endpoint::sealed::Sealed;
use crate::receiver::report::{self, Hook};
use crate::receiver::{Answer, DEFAULT_BODY_READ_TIMEOUT, DeliveryReport, Endpoint, Outcome, age};
use crate::signature::Verifier;

/// The default time limit of one enqueue: 2 s. Redis not answering in time is
/// answered 503, so NotMeta retries.
pub const DEFAULT_ENQUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// An endpoint that verifies each delivery and puts it on the [`Queue`], answering
/// 200 as soon as Redis (or PostgreSQL, for `Queue::postgres`: one statement,
/// committed) has accepted it; [`Worker`](super::Worker)s run the handler
/// later. It is an [`Endpoint`]: mount it as a receiver is, with
/// `tower::WebhookService::new`, `axum::endpoint` or `actix::endpoint`.
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
/// | the queue in Redis has another number of partitions ([`QueueError::LayoutMismatch`], logged) | 503 ([`Outcome::StoreUnavailable`]) |
/// | the queue is at its maximum length | 503 `Busy, retry later` ([`Outcome::StoreFull`]) |
///
/// With a [`TracePropagation`](super::TracePropagation) on the queue
/// ([`Queue::with_trace_propagation`]), each entry carries the W3C trace context of
/// the span `receive` is called in (the request's), so that the worker's run can be
/// linked to it.
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
    body_read_timeout: Duration,
    max_len: u64,
    previous: Option<Queue>,
    hook: Option<Hook>,
    /// When the layout was last found right, in ms since [`epoch`] (0: never).
    layout_checked: Arc<AtomicU64>,
}

/// How often an endpoint checks the queue's layout in Redis again.
const LAYOUT_RECHECK: Duration = Duration::from_secs(1);

impl fmt::Debug for Enqueuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enqueuer")
            .field("verifier", &self.verifier)
            .field("queue", &self.queue)
            .field("max_event_age", &self.max_event_age)
            .field("timeout", &self.timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("max_len", &self.max_len)
            .field("previous", &self.previous)
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
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_len: 0,
            previous: None,
            hook: None,
            layout_checked: Arc::new(AtomicU64::new(0)),
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

    /// The time limit of one enqueue (default 2 s; at least 1 ms): the one in force,
    /// since the connection has no reply time limit of its own. Redis slower than
    /// this is answered 503, and NotMeta retries (the entry may have been appended
    /// all the same: the retry is then answered `OK (duplicate)`).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = clamp(timeout).max(Duration::from_millis(1));
        self
    }

    /// How long the framework entry points wait for a whole body to arrive (default
    /// [`DEFAULT_BODY_READ_TIMEOUT`], 15 s), as
    /// [`Receiver::with_body_read_timeout`](crate::receiver::Receiver::with_body_read_timeout).
    #[must_use]
    pub fn with_body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = clamp(timeout);
        self
    }

    /// How long the framework entry points wait for a whole body to arrive.
    #[must_use]
    pub fn body_read_timeout(&self) -> Duration {
        self.body_read_timeout
    }

    /// Refuses new events (503, so NotMeta retries later) while a partition's stream
    /// holds `entries` or more (waiting or running; with key limits, the entries
    /// waiting for their key's slot count too): a bound on Redis memory when the
    /// workers stop. Default: no bound. A queue in memory ([`Queue::in_memory`])
    /// counts its entries waiting or running the same way. A queue in PostgreSQL
    /// (`Queue::postgres`) is bounded by its disk, and ignores it.
    #[must_use]
    pub fn with_max_len(mut self, entries: u64) -> Self {
        self.max_len = entries;
        self
    }

    /// While the number of partitions changes (see the guide's [queue
    /// chapter](crate::guide::queue)): `previous` is the queue as laid out before, in
    /// another namespace. An event id that `previous` knows (queued, handled or
    /// given up there) is answered as a duplicate; any other is marked there as
    /// taken, then queued here, so that an endpoint still on the old layout answers
    /// it as a duplicate too. Each event is queued in exactly one of the two: until
    /// the newer queue has it, the old endpoints answer 503 `Being processed,
    /// retry later` ([`Outcome::InProgress`]), so an append that fails here loses
    /// nothing. Redis only: an endpoint on a queue in PostgreSQL
    /// (`Queue::postgres`) or in memory ([`Queue::in_memory`]) ignores it, and so
    /// does one given a previous queue in either (neither has partitions to change).
    #[must_use]
    pub fn with_previous_queue(mut self, previous: Queue) -> Self {
        self.previous = Some(previous);
        self
    }

    /// Calls `hook` once per delivery with what happened, as
    /// [`Receiver::on_outcome`](crate::receiver::Receiver::on_outcome) does (an
    /// enqueued event is [`Outcome::Queued`]). A panic in the hook is caught.
    #[must_use]
    pub fn on_outcome(
        mut self,
        hook: impl Fn(&DeliveryReport<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.hook = Some(Arc::new(hook));
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
    pub fn receive<'r, I>(&'r self, body: &'r [u8], signature_values: I) -> BoxFuture<'r, Answer>
    where
        I: IntoIterator<Item: AsRef<[u8]>>,
    {
        let verified = self
            .verifier
            .verify_and_parse_indexed(body, signature_values);
        self.deliver(body, verified)
    }

    /// Processes one delivery already verified and parsed (or refused) from `body`:
    /// what [`receive`](Self::receive) does after verifying.
    pub(crate) fn deliver<'r>(
        &'r self,
        body: &'r [u8],
        verified: Result<(Event<'r>, usize), crate::Error>,
    ) -> BoxFuture<'r, Answer> {
        // In the caller's span (the request's), before the first poll.
        let trace = match verified {
            Ok(_) => trace_context::current(self.queue.trace_propagation()),
            Err(_) => None,
        };
        Box::pin(async move {
            let (event, secret_index) = match verified {
                Ok(verified) => verified,
                Err(error) => {
                    let outcome = Outcome::Rejected(error.kind());
                    self.report(None, outcome, None);
                    return Answer::rejected(&error);
                }
            };
            if let Admitted::Answer(outcome) =
                admit::admit(&event, self.max_event_age, &*self.clock)
            {
                self.report(Some(&event), outcome, Some(secret_index));
                return admit::answer(&event, outcome);
            }
            // The key function is the application's code: a panic in it is answered
            // as one in a handler would be (500, delivered again later).
            let key = std::panic::AssertUnwindSafe(|| self.queue.order_key(&event));
            let Ok(key) = std::panic::catch_unwind(key) else {
                let outcome = Outcome::Panicked;
                self.report(Some(&event), outcome, Some(secret_index));
                return outcome.into();
            };
            let key = key.as_deref();
            let outcome = match self.enqueue(&event, body, secret_index, trace, key).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    report::store_failed("enqueue", &StoreError::new(error));
                    Outcome::StoreUnavailable
                }
            };
            self.report(Some(&event), outcome, Some(secret_index));
            outcome.into()
        })
    }

    fn report(&self, event: Option<&Event<'_>>, outcome: Outcome, secret_index: Option<usize>) {
        let report = DeliveryReport::before_handler(event, outcome, secret_index);
        report::enqueued(self.hook.as_ref(), &report);
    }

    /// Appends the event (within the time limit), after checking the layout and
    /// the previous queue.
    async fn enqueue(
        &self,
        event: &Event<'_>,
        body: &[u8],
        secret_index: usize,
        trace: Option<TraceContext>,
        key: Option<&str>,
    ) -> Result<Outcome, QueueError> {
        let limit = self.timeout;
        if let Some(memory) = self.queue.memory() {
            return Ok(self.enqueue_in_memory(memory, event, body, secret_index, trace, key));
        }
        let trace = trace.as_ref();
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.queue.pg() {
            let entry = self.entry(event, body, secret_index, trace, key);
            let queued = pg.enqueue(entry, self.window_for(event));
            return Ok(
                match protocol::bounded(limit, "the enqueue", queued).await? {
                    true => Outcome::Queued,
                    false => Outcome::Duplicate,
                },
            );
        }
        let work = async {
            self.check_layout().await?;
            // A previous queue in PostgreSQL or in memory has no layout to move from.
            let Some(previous) = self
                .previous
                .as_ref()
                .filter(|p| !p.is_postgres() && !p.is_in_memory())
            else {
                return self.append(event, body, secret_index, trace, key).await;
            };
            previous.verify_layout().await?;
            if !self.mark_moving(previous, event).await? {
                return Ok(Outcome::Duplicate);
            }
            // An append that fails without an answer (it may have been applied)
            // leaves the mark at `moving`: the previous layout's endpoints answer 503
            // until this one has queued it. One refused for sure takes it back.
            let outcome = self.append(event, body, secret_index, trace, key).await?;
            match outcome {
                Outcome::Queued | Outcome::Duplicate => {
                    self.mark_moved(previous, event, true).await?;
                }
                Outcome::StoreFull => self.mark_moved(previous, event, false).await?,
                _ => {}
            }
            Ok(outcome)
        };
        protocol::bounded(limit, "the enqueue", work).await
    }

    /// Checks the queue's layout in Redis, at most once per [`LAYOUT_RECHECK`].
    async fn check_layout(&self) -> Result<(), QueueError> {
        let now = epoch().elapsed().as_millis();
        let now = u64::try_from(now).unwrap_or(u64::MAX).max(1);
        let last = self.layout_checked.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < millis(LAYOUT_RECHECK) {
            return Ok(());
        }
        self.queue.check_layout().await?;
        self.layout_checked.store(now, Ordering::Relaxed);
        Ok(())
    }

    /// Marks the event as being taken in the previous layout; `false` if it was
    /// known there.
    async fn mark_moving(&self, previous: &Queue, event: &Event<'_>) -> Result<bool, QueueError> {
        let script = &previous.scripts().mark_moving;
        let state: String = self.mark(previous, event, script, None).await?;
        Ok(state == State::Moving.as_str())
    }

    /// Once the event is queued here (`queued`), the previous layout answers it as a
    /// duplicate; when this one refused it for sure (`false`), the mark is taken back.
    async fn mark_moved(
        &self,
        previous: &Queue,
        event: &Event<'_>,
        queued: bool,
    ) -> Result<(), QueueError> {
        let script = &previous.scripts().mark_moved;
        let how = if queued { "moved" } else { "free" };
        let _: i64 = self.mark(previous, event, script, Some(how)).await?;
        Ok(())
    }

    /// Runs a mark script on the event's state in the previous layout.
    async fn mark<T: redis::FromRedisValue>(
        &self,
        previous: &Queue,
        event: &Event<'_>,
        script: &redis::Script,
        how: Option<&str>,
    ) -> Result<T, QueueError> {
        let id = event.id.as_str();
        let key = previous.order_key(event);
        let keys = previous.keys(previous.partition_for(id, key.as_deref()));
        // The marks are acknowledged as this queue's writes are, whatever the
        // previous queue was configured with: they guard the same event.
        let replication = match self.queue.replication() {
            crate::dedup::Replication::Primary => previous.replication(),
            replicas => replicas,
        };
        let connection = previous.connection().clone().with_replication(replication);
        let mut invocation = script.prepare_invoke();
        invocation.key(keys.state(id));
        if let Some(how) = how {
            invocation.arg(how);
        }
        let window = millis(self.window_for(event));
        invocation.arg(window);
        let key = keys.state(id);
        Ok(connection
            .write(Write::Script(&invocation), key.as_bytes(), self.timeout)
            .await?)
    }

    async fn append(
        &self,
        event: &Event<'_>,
        body: &[u8],
        secret_index: usize,
        trace: Option<&TraceContext>,
        key: Option<&str>,
    ) -> Result<Outcome, QueueError> {
        let id = event.id.as_str();
        let keys = self.queue.keys(self.queue.partition_for(id, key));
        let connection = self.queue.connection();
        let entry = self.entry(event, body, secret_index, trace, key);
        let ordered = super::ordering::ordered_scripts(&self.queue, entry.key);
        let script = ordered.map_or(&self.queue.scripts().enqueue, |o| &o.enqueue);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(keys.state(id))
            .key(&keys.stream)
            .arg(millis(self.window_for(event)))
            .arg(self.max_len)
            .arg(self.queue.group())
            .arg(entry);
        if ordered.is_some() {
            super::ordering::tail(&self.queue, &keys, entry.key, &mut invocation);
        }
        let state: String = connection
            .write(
                Write::Script(&invocation),
                keys.stream.as_bytes(),
                self.timeout,
            )
            .await?;
        match state.as_str() {
            "queued" => Ok(Outcome::Queued),
            "duplicate" => Ok(Outcome::Duplicate),
            "full" => Ok(Outcome::StoreFull),
            // A newer layout is queueing it (`with_previous_queue`): retried later.
            "moving" => Ok(Outcome::InProgress),
            other => Err(QueueError::new(format!(
                "unexpected enqueue reply {other:?}"
            ))),
        }
    }

    /// The entry to append: received now, never run.
    fn entry<'a>(
        &self,
        event: &'a Event<'_>,
        body: &'a [u8],
        secret_index: usize,
        trace: Option<&'a TraceContext>,
        key: Option<&'a str>,
    ) -> EntryRef<'a> {
        EntryRef {
            event_id: event.id.as_str(),
            event_type: event.type_str(),
            body,
            received: unix_millis(self.clock.now()),
            secret: u64::try_from(secret_index).unwrap_or(u64::MAX),
            attempt: 0,
            trace,
            key,
        }
    }

    /// Queues the event in the queue in memory, within `with_max_len`.
    fn enqueue_in_memory(
        &self,
        memory: &MemQueue,
        event: &Event<'_>,
        body: &[u8],
        secret_index: usize,
        trace: Option<TraceContext>,
        key: Option<&str>,
    ) -> Outcome {
        let entry = protocol::Entry {
            event_id: event.id.as_str().to_owned(),
            event_type: event.type_str().to_owned(),
            body: body.to_vec(),
            received: unix_millis(self.clock.now()),
            secret: u64::try_from(secret_index).unwrap_or(u64::MAX),
            attempt: 0,
            trace,
            key: key.map(str::to_owned),
        };
        match memory.enqueue(entry, self.window_for(event), self.max_len) {
            Enqueued::Queued => Outcome::Queued,
            Enqueued::Duplicate => Outcome::Duplicate,
            Enqueued::Full => Outcome::StoreFull,
        }
    }

    fn window_for(&self, event: &Event<'_>) -> Duration {
        let window = self.queue.dedup_window();
        age::window_for(window, self.max_event_age, &*self.clock, event)
    }
}

/// A fixed instant for the layout checks' coarse clock.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Endpoint for Enqueuer {}

impl Sealed for Enqueuer {
    fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    fn body_read_timeout(&self) -> Duration {
        self.body_read_timeout
    }

    fn refuse(&self, error: &crate::Error) -> Answer {
        self.report(None, Outcome::Rejected(error.kind()), None);
        Answer::rejected(error)
    }

    fn serve<'r>(
        &'r self,
        body: &'r [u8],
        signatures: &mut dyn Iterator<Item = &[u8]>,
    ) -> BoxFuture<'r, Answer> {
        self.receive(body, signatures)
    }
}
