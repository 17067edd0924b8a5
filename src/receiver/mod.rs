//! A framework-neutral webhook endpoint: verify, parse, answer the challenge, run
//! your handler once per event, and turn what happened into the status NotMeta needs.
//!
//! The axum, actix-web and tower entry points mount a [`Receiver`] (or the queue's
//! enqueuing endpoint) as an [`Endpoint`]; use it directly with any other server
//! library: read the body (with the limit of [`Verifier::max_body_size`] and within
//! [`Receiver::body_read_timeout`]), collect the `X-NotMeta-Signature` values, call
//! [`Receiver::receive`], and send the [`Answer`] as [`Answer::into_response`] builds
//! it. [`Outcome`] lists every answer with its status and text.
//!
//! # How a delivery flows
//!
//! 1. **Verify and parse** (synchronously, before the returned future is first
//!    polled). Refused: 400 or 413, the handler never runs.
//! 2. **Challenge**: a `webhook.verified` event is answered with its challenge.
//! 3. **Age**: with [`Receiver::with_max_event_age`], an older event is a replay (400).
//! 4. **Claim** the event id in the idempotency store (default: in memory). A
//!    duplicate is answered 200 (handled already) or 503 (still being handled).
//! 5. **Handle** in a task of its own: the handler runs under the time limit with
//!    panics caught, and its claim is held (renewed, for stores with leases) until it
//!    has really stopped. A client that disconnects does not cancel it. For a store
//!    with leases, the receiver's lease keeper (a thread of its own, started with the
//!    first such delivery and ended with the receiver) renews the claims of every
//!    delivery in flight in one store call per third of the lease (see
//!    [`Receiver::with_handler_isolation`]).
//! 6. **Settle**: done after success or a permanent failure, released otherwise,
//!    tried three times if the store fails. Then the answer is sent.
//!
//! Events of a type this version does not know reach the handler as
//! [`EventKind::Unknown`](crate::EventKind::Unknown); a handler that answers them
//! `Ok(())` (a `_ => Ok(())` arm) keeps new event types from ever causing retries.
//!
//! # Observability
//!
//! [`Receiver::on_outcome`] calls your hook once per delivery with a
//! [`DeliveryReport`] (event id and type, outcome, which secret matched, the
//! handler's error, its run time, a lost lease). With the `tracing` feature each
//! delivery is a span, and handler failures, lost leases and store errors are events;
//! with the `metrics` feature they are counted. Without either, nothing is logged: a
//! handler's error reaches you only through the hook.
//!
//! # Runtime
//!
//! A receiver runs on Tokio with timers (`#[tokio::main]`, or a runtime built with
//! `enable_time` or `enable_all`; axum and actix-web provide one). On a thread with
//! no Tokio runtime, or a runtime without timers, every delivery that would run the
//! handler is answered 500 (`Webhook receiver misconfigured`, retried by NotMeta)
//! before anything is claimed. Handlers must not block their thread (see
//! [`Handler`]).
//!
//! # Limits of the settings
//!
//! Every duration setting accepts any value: durations above 100 years
//! ([`clock::MAX_DURATION`](crate::clock::MAX_DURATION)) are treated as 100 years, and no setting can make an
//! addition overflow.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, Either};

use crate::breaker::CircuitBreaker;
use crate::clock::{Clock, SystemClock, clamp};
use crate::dedup::{Claim, DEFAULT_DEDUP_WINDOW, IdempotencyStore, MemoryStore};
use crate::error::ErrorKind;
use crate::event::Event;
use crate::signature::Verifier;

pub(crate) mod admit;
pub(crate) mod age;
pub(crate) mod delivery;
pub(crate) mod endpoint;
mod handler;
mod handler_ext;
pub(crate) mod keeper;
pub mod metrics;
mod outcome;
pub(crate) mod report;
#[cfg(feature = "tracing")]
mod trace;

pub use endpoint::{DEFAULT_BODY_READ_TIMEOUT, Endpoint};
#[doc(hidden)]
pub use handler::Claimed;
pub use handler::{Handler, HandlerError};
pub use handler_ext::{ResultExt, handler_fn};
pub use outcome::{Answer, Outcome};
pub use report::DeliveryReport;

use admit::Admitted;
use delivery::{Held, Task, bounded};

/// The default handler time limit: 25 s, safely under NotMeta's 30 s.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(25);

/// The default time limit of one idempotency store call: 1 s. A store that does not
/// answer in time counts as unavailable (503).
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(1);

/// How far NotMeta's clock and this host's may disagree; added to the maximum event
/// age when sizing the dedup window.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The receiver's time settings.
#[derive(Debug, Clone, Copy)]
struct Settings {
    handler_timeout: Duration,
    store_timeout: Duration,
    dedup_window: Duration,
    max_event_age: Option<Duration>,
    body_read_timeout: Duration,
    /// Whether a handler with a lease store runs on the blocking pool; `None`:
    /// only when the store has no lease keeper.
    isolate: Option<bool>,
}

/// A ready-made webhook endpoint, independent of any server library.
///
/// ```
/// use notmeta_webhooks::receiver::{HandlerError, Outcome, Receiver};
/// use notmeta_webhooks::{sign, Event, EventKind, Verifier};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), notmeta_webhooks::Error> {
/// let receiver = Receiver::new(Verifier::new("whsec_abc123")?, |event: Event<'static>| async move {
///     match &event.kind {
///         EventKind::MessageReceived(_) => { /* store it, notify someone, ... */ }
///         _ => {} // every other type, including ones NotMeta adds later
///     }
///     Ok::<(), HandlerError>(())
/// });
///
/// let body = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
/// let header = sign(body, "whsec_abc123");
/// let answer = receiver.receive(body, [header.as_bytes()]).await;
/// assert_eq!((answer.status(), answer.body()), (http::StatusCode::OK, "OK"));
///
/// // NotMeta delivers the same event again: answered 200, the handler does not run.
/// let answer = receiver.receive(body, [header.as_bytes()]).await;
/// assert_eq!(answer.outcome(), Outcome::Duplicate);
///
/// let answer = receiver.receive(b"{}", [header.as_bytes()]).await;
/// assert_eq!(answer.status(), 400);
/// # Ok(())
/// # }
/// ```
pub struct Receiver<H, S = MemoryStore> {
    verifier: Verifier,
    handler: Arc<H>,
    store: Option<Arc<S>>,
    clock: Arc<dyn Clock>,
    hook: Option<report::Hook>,
    breaker: Option<CircuitBreaker>,
    settings: Settings,
    /// The keeper of the store's leases, for a store with leases.
    keeper: Option<Arc<keeper::Slot>>,
}

/// Clones share the handler and the idempotency store: build one receiver and give
/// every server worker a clone (actix-web calls its app factory once per worker).
impl<H, S> Clone for Receiver<H, S> {
    fn clone(&self) -> Self {
        Self {
            verifier: self.verifier.clone(),
            handler: Arc::clone(&self.handler),
            store: self.store.clone(),
            clock: Arc::clone(&self.clock),
            hook: self.hook.clone(),
            breaker: self.breaker.clone(),
            settings: self.settings,
            keeper: self.keeper.clone(),
        }
    }
}

impl<H, S: fmt::Debug> fmt::Debug for Receiver<H, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("verifier", &self.verifier)
            .field("store", &self.store)
            .field("dedup_window", &self.effective_dedup_window())
            .field("max_event_age", &self.settings.max_event_age)
            .field("handler_timeout", &self.settings.handler_timeout)
            .field("store_timeout", &self.settings.store_timeout)
            .field("body_read_timeout", &self.settings.body_read_timeout)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Receiver<H> {
    /// An endpoint that verifies with `verifier` and hands events to `handler`, with
    /// in-memory dedup ([`MemoryStore`], [`DEFAULT_DEDUP_WINDOW`]), no maximum event
    /// age, and a [`DEFAULT_HANDLER_TIMEOUT`] of 25 s.
    pub fn new(verifier: Verifier, handler: H) -> Self {
        Self {
            verifier,
            handler: Arc::new(handler),
            store: Some(Arc::new(MemoryStore::new())),
            clock: Arc::new(SystemClock),
            hook: None,
            breaker: None,
            settings: Settings {
                handler_timeout: DEFAULT_HANDLER_TIMEOUT,
                store_timeout: DEFAULT_STORE_TIMEOUT,
                dedup_window: DEFAULT_DEDUP_WINDOW,
                max_event_age: None,
                body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
                isolate: None,
            },
            keeper: None,
        }
    }
}

impl<H, S> Receiver<H, S> {
    /// The verifier (its [`Verifier::max_body_size`] is the limit to read bodies with).
    #[must_use]
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The idempotency store, unless de-duplication is off.
    #[must_use]
    pub fn store(&self) -> Option<&S> {
        self.store.as_deref()
    }

    /// How long finished event ids are remembered at least: the configured window,
    /// or the maximum event age plus [`MAX_CLOCK_SKEW`] if that is longer, so that an
    /// event young enough to be accepted is always still remembered (no replay). An
    /// event dated in the future is remembered longer: until its `created_at` plus
    /// the maximum age and the skew.
    #[must_use]
    pub fn effective_dedup_window(&self) -> Duration {
        let window = self.settings.dedup_window;
        let window = match self.settings.max_event_age {
            Some(age) => window.max(age.saturating_add(MAX_CLOCK_SKEW)),
            None => window,
        };
        clamp(window)
    }

    /// The handler time limit.
    #[must_use]
    pub fn handler_timeout(&self) -> Duration {
        self.settings.handler_timeout
    }

    /// The maximum event age, if one is set.
    #[must_use]
    pub fn max_event_age(&self) -> Option<Duration> {
        self.settings.max_event_age
    }

    /// How long the framework entry points wait for a whole body to arrive.
    #[must_use]
    pub fn body_read_timeout(&self) -> Duration {
        self.settings.body_read_timeout
    }

    /// De-duplicates with `store` (share one store between replicas, such as a
    /// `RedisStore`). The store adopts the receiver's clock
    /// ([`IdempotencyStore::use_clock`]).
    #[must_use]
    pub fn with_store<T: IdempotencyStore>(self, mut store: T) -> Receiver<H, T> {
        store.use_clock(Arc::clone(&self.clock));
        let keeper = store.lease().map(|_| Arc::default());
        Receiver {
            verifier: self.verifier,
            handler: self.handler,
            store: Some(Arc::new(store)),
            clock: self.clock,
            hook: self.hook,
            breaker: self.breaker,
            settings: self.settings,
            keeper,
        }
    }

    /// Turns de-duplication off: every delivery runs the handler (at least once).
    #[must_use]
    pub fn without_dedup(mut self) -> Self {
        self.store = None;
        self.keeper = None;
        self
    }

    /// How long finished event ids are remembered (default 2 h, which covers NotMeta's
    /// 81-minute retry window with room for clock skew and delays).
    #[must_use]
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.settings.dedup_window = clamp(window);
        self
    }

    /// Refuses (400, not retried) events whose signed `created_at` is older than
    /// `age`, so a captured request cannot be replayed later. The dedup window grows to
    /// at least `age` plus [`MAX_CLOCK_SKEW`], so within the age a replay is a
    /// duplicate and after it a stale event: never handled twice.
    ///
    /// An event dated in the future (NotMeta's clock ahead of this host's) is
    /// accepted as usual, and its id is remembered until its `created_at` plus `age`
    /// and the skew, so that it cannot be replayed either: NotMeta sees no difference.
    ///
    /// NotMeta's own last retry comes about 81 minutes after the first attempt; an
    /// `age` below about 90 minutes refuses genuine late retries.
    #[must_use]
    pub fn with_max_event_age(mut self, age: Duration) -> Self {
        self.settings.max_event_age = Some(clamp(age));
        self
    }

    /// Cancels a handler after `timeout` (at its next `.await`) and answers 503 so
    /// NotMeta retries, instead of letting NotMeta's 30 s limit expire. Default 25 s.
    #[must_use]
    pub fn with_handler_timeout(mut self, timeout: Duration) -> Self {
        self.settings.handler_timeout = clamp(timeout);
        self
    }

    /// Whether, with a store whose claims have a lease (such as `RedisStore`), the
    /// handler runs on Tokio's blocking pool (`true`) or in the delivery's own task
    /// (`false`).
    ///
    /// **Default**: in the delivery's task for a store that has a lease keeper
    /// (`RedisStore` and `PostgresStore` have one, see
    /// [`IdempotencyStore::on_own_connection`]), on the blocking pool for one that
    /// has not. The keeper renews the claims of all the receiver's deliveries from
    /// a thread of its own, with its own Tokio runtime and its own store
    /// connection, so a handler that blocks its thread (synchronous I/O, a long
    /// computation, `std::thread::sleep`), even one that blocks every worker of the
    /// runtime, cannot stall the renewal of its claim. Without a keeper the claim
    /// is renewed from the delivery's task, and only the blocking pool keeps a
    /// blocking handler from stalling it.
    ///
    /// `true` runs the handler on the blocking pool all the same: a handler that
    /// blocks its thread then does not hold one of the runtime's workers (other
    /// requests, and the other tasks queued on that worker, go on), and its time
    /// limit can cut its delivery short (answered 503 once the limit passes) while
    /// it still runs. The hand-off to another thread costs CPU time and two context
    /// switches per delivery. Choose it if handlers block their thread for long.
    ///
    /// `false` keeps the handler in the delivery's task. With a store without a
    /// keeper, the claim is then renewed beside the handler in the same task: a
    /// handler that blocks its thread for longer than the lease stalls its renewal,
    /// and another replica may run a duplicate once the lease has lapsed.
    ///
    /// Stores without leases ([`MemoryStore`]) always run the handler in the
    /// delivery's task: their claims cannot lapse.
    ///
    /// An isolated handler can outlive its delivery (a blocking handler cannot be
    /// stopped): a delivery cut short keeps the claim while the handler runs, and the
    /// handler's task settles it when it ends; with a keeper, the claim is renewed
    /// until then. Without a keeper one limit remains: the lease is renewed from the
    /// delivery's task, so a runtime that shuts down while an isolated handler
    /// blocks its thread stops the renewal while Tokio waits for the handler; once
    /// the lease lapses, a retry on another replica can run the handler beside it.
    /// Shut down gracefully (stop taking requests and wait for the deliveries in
    /// flight before the runtime stops), and give the store a lease longer than the
    /// longest handler.
    ///
    /// ```
    /// use notmeta_webhooks::receiver::{HandlerError, Receiver};
    /// use notmeta_webhooks::{Event, Verifier};
    ///
    /// # fn main() -> Result<(), notmeta_webhooks::Error> {
    /// let receiver = Receiver::new(Verifier::new("whsec_abc123")?, |event: Event<'static>| async move {
    ///     // Blocks its thread for a long while: kept off the runtime's workers.
    ///     std::thread::sleep(std::time::Duration::from_secs(5));
    ///     Ok::<(), HandlerError>(())
    /// })
    /// .with_handler_isolation(true);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_handler_isolation(mut self, isolate: bool) -> Self {
        self.settings.isolate = Some(isolate);
        self
    }

    /// How long the framework entry points (tower, axum, actix-web) wait for a whole
    /// body to arrive (default [`DEFAULT_BODY_READ_TIMEOUT`], 15 s); a slower one is
    /// answered 503 ([`ErrorKind::BodyTimeout`]) and its connection closed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use notmeta_webhooks::receiver::{HandlerError, Receiver};
    /// use notmeta_webhooks::{Event, Verifier};
    ///
    /// let receiver = Receiver::new(Verifier::new("whsec_abc123")?, |_: Event<'static>| async {
    ///     Ok::<(), HandlerError>(())
    /// })
    /// .with_body_read_timeout(Duration::from_secs(5));
    /// assert_eq!(receiver.body_read_timeout(), Duration::from_secs(5));
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    #[must_use]
    pub fn with_body_read_timeout(mut self, timeout: Duration) -> Self {
        self.settings.body_read_timeout = clamp(timeout);
        self
    }

    /// The time limit of each idempotency store call (default 1 s): a claim that
    /// takes longer is answered 503, a completion that takes longer is tried again.
    #[must_use]
    pub fn with_store_timeout(mut self, timeout: Duration) -> Self {
        self.settings.store_timeout = clamp(timeout);
        self
    }

    /// Uses `clock` for the event age and, through
    /// [`IdempotencyStore::use_clock`], for the store's windows (for tests; the
    /// system clock by default). Set it before cloning the receiver.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self
    where
        S: IdempotencyStore,
    {
        self.clock = Arc::new(clock);
        if let Some(store) = self.store.as_mut().and_then(Arc::get_mut) {
            store.use_clock(Arc::clone(&self.clock));
        }
        self
    }

    /// Calls `hook` once per delivery with what happened (see [`DeliveryReport`]):
    /// to count outcomes or log handler errors your own way. For a delivery that ran
    /// the handler it is called from the delivery's task, once the outcome is
    /// recorded, even if the client has gone. A panic in the hook is caught.
    ///
    /// The ready-made endpoints (tower, axum, actix-web) report the requests they
    /// refuse while reading the body (too large, too slow to arrive, unreadable) the
    /// same way, as [`Outcome::Rejected`] without an event id: to this hook, the
    /// metrics (feature `metrics`) and a span (feature `tracing`).
    #[must_use]
    pub fn on_outcome(
        mut self,
        hook: impl Fn(&DeliveryReport<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Guards the handler's downstream with `breaker` (see [`crate::breaker`]):
    /// while it is open, a delivery is answered 503 with `Retry-After` at once
    /// ([`Outcome::CircuitOpen`], reported to the outcome hook), before anything
    /// is claimed, so NotMeta retries it later; once the cool-down has passed one
    /// delivery runs as the probe. Temporary failures, panics and time-outs count
    /// as failures; a challenge, a stale event or a duplicate never reach it.
    /// Clones of the receiver, and a queue worker given a clone of the same
    /// breaker, share its state.
    ///
    /// ```
    /// use std::time::Duration;
    /// use notmeta_webhooks::breaker::CircuitBreaker;
    /// use notmeta_webhooks::receiver::{HandlerError, Receiver};
    /// use notmeta_webhooks::{Event, Verifier};
    ///
    /// let receiver = Receiver::new(Verifier::new("whsec_abc123")?, |_: Event<'static>| async {
    ///     Ok::<(), HandlerError>(())
    /// })
    /// .with_circuit_breaker(CircuitBreaker::new(5, Duration::from_secs(30)).with_name("crm"));
    /// assert_eq!(receiver.circuit_breaker().map(|b| b.name()), Some("crm"));
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    #[must_use]
    pub fn with_circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// The circuit breaker, if one is set.
    #[must_use]
    pub fn circuit_breaker(&self) -> Option<&CircuitBreaker> {
        self.breaker.as_ref()
    }
}

impl<H: Handler, S: IdempotencyStore> Receiver<H, S> {
    /// Processes one delivery: `body` exactly as received (read with the verifier's
    /// body limit) and every value of the `X-NotMeta-Signature` header.
    ///
    /// Verification and parsing happen before the returned future is first polled;
    /// the future then claims the event, runs the handler in a task of its own and
    /// records the outcome. Dropping the future once the handler has started does not
    /// stop it.
    ///
    /// The future is boxed (one allocation): its type names neither the handler nor
    /// the store, so it can be spawned or stored whatever closure the handler is.
    pub fn receive<'r, I>(&'r self, body: &'r [u8], signature_values: I) -> BoxFuture<'r, Answer>
    where
        I: IntoIterator<Item: AsRef<[u8]>>,
    {
        let verified = self
            .verifier
            .verify_and_parse_indexed(body, signature_values);
        self.deliver(verified)
    }

    /// Processes one delivery already verified and parsed (or refused) with this
    /// receiver's verifier: what [`receive`](Self::receive) does after verifying.
    pub(crate) fn deliver<'r>(
        &'r self,
        verified: Result<(Event<'r>, usize), crate::Error>,
    ) -> BoxFuture<'r, Answer> {
        // The event moves straight into the delivery's future, which is not then
        // the size of two events.
        let delivery = match verified {
            Ok((event, secret_index)) => Either::Left(self.dispatch(event, secret_index)),
            Err(error) => {
                let kind = error.kind();
                Either::Right(async move { self.early(None, Outcome::Rejected(kind), None) })
            }
        };
        #[cfg(feature = "tracing")]
        let delivery = trace::delivery(delivery);
        Box::pin(delivery)
    }

    // A function returning an `async` block rather than an `async fn`: the block
    // holds the event once, where an `async fn` keeps a copy of each argument.
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` would store the event twice"
    )]
    fn dispatch<'a>(
        &'a self,
        event: Event<'a>,
        secret_index: usize,
    ) -> impl Future<Output = Answer> + Send + 'a {
        async move {
            #[cfg(feature = "tracing")]
            trace::record_event(&event);
            let max_age = self.settings.max_event_age;
            if let Admitted::Answer(outcome) = admit::admit(&event, max_age, &*self.clock) {
                self.early(Some(&event), outcome, Some(secret_index));
                return admit::answer(&event, outcome);
            }
            if !runtime_ready() {
                let outcome = Outcome::Rejected(ErrorKind::Config);
                return self.early(Some(&event), outcome, Some(secret_index));
            }
            let pass = match crate::breaker::enter(self.breaker.as_ref()) {
                Ok(pass) => pass,
                Err(wait) => {
                    let answer = self.early(Some(&event), Outcome::CircuitOpen, Some(secret_index));
                    return answer.with_retry_after(wait);
                }
            };
            let held = match &self.store {
                None => None,
                Some(store) => {
                    let limit = self.settings.store_timeout;
                    let outcome = match bounded(limit, pin!(store.claim(event.id.as_str()))).await {
                        Ok(Claim::Claimed(token)) => {
                            let window = self.window_for(&event);
                            Ok(Held { token, window })
                        }
                        Ok(Claim::Done) => Err(Outcome::Duplicate),
                        Ok(Claim::Full) => Err(Outcome::StoreFull),
                        Ok(_in_progress) => Err(Outcome::InProgress),
                        Err(error) => {
                            report::store_failed("claim", &error);
                            Err(Outcome::StoreUnavailable)
                        }
                    };
                    match outcome {
                        Ok(held) => Some(held),
                        Err(outcome) => {
                            return self.early(Some(&event), outcome, Some(secret_index));
                        }
                    }
                }
            };
            let task = Task {
                handler: Arc::clone(&self.handler),
                store: self.store.clone(),
                hook: self.hook.clone(),
                settings: self.settings,
                keeper: self.keeper.clone(),
            };
            let run = task.run(Box::new(event.into_owned()), held, secret_index);
            let run = crate::breaker::recorded(pass, run);
            #[cfg(feature = "tracing")]
            let run = tracing::Instrument::in_current_span(run);
            // A delivery that finishes at its first poll (a handler that never waits)
            // needs no task of its own; one that waits goes on in a spawned task, so
            // that dropping this future (a client gone) cannot cancel it halfway.
            let mut run = Box::pin(run);
            // The handler's panics are caught inside the delivery; a store's that
            // panics is caught here (and the delivery's guard settles the claim: see
            // `Unsettled`), as it is for a spawned task below.
            let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                futures_util::FutureExt::now_or_never(&mut run)
            }));
            match first {
                Ok(Some(outcome)) => return outcome.into(),
                Ok(None) => {}
                Err(_panic) => return Outcome::Panicked.into(),
            }
            // A panic (a store's: the handler's are caught inside the task) or a
            // runtime shutting down, which cancels the task, is answered like a
            // handler's panic; the delivery's guard settles the claim (`Unsettled`).
            match tokio::spawn(run).await {
                Ok(outcome) => outcome.into(),
                Err(_) => Outcome::Panicked.into(),
            }
        }
    }

    /// Reports and answers a request refused while its body was read (too large,
    /// too slow to arrive, unreadable): reported like every delivery (the outcome
    /// hook, the metrics, a span of its own).
    fn refuse(&self, error: &crate::Error) -> Answer {
        let refuse = || self.early(None, Outcome::Rejected(error.kind()), None);
        #[cfg(feature = "tracing")]
        let answer = trace::refused(refuse);
        #[cfg(not(feature = "tracing"))]
        let answer = refuse();
        answer
    }

    /// Reports and answers an outcome reached before the handler ran.
    pub(crate) fn early(
        &self,
        event: Option<&Event<'_>>,
        outcome: Outcome,
        secret_index: Option<usize>,
    ) -> Answer {
        let report = DeliveryReport::before_handler(event, outcome, secret_index);
        report::delivered(self.hook.as_ref(), &report);
        outcome.into()
    }

    fn window_for(&self, event: &Event<'_>) -> Duration {
        let (window, max_age) = (self.settings.dedup_window, self.settings.max_event_age);
        age::window_for(window, max_age, &*self.clock, event)
    }
}

/// Whether this thread runs in a Tokio runtime with timers. Creating a timer on a
/// runtime without them panics, so this asks before anything is claimed.
fn runtime_ready() -> bool {
    // Any instant will do (the timer is never polled); a fixed one saves reading the
    // clock.
    static ANCHOR: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let anchor = *ANCHOR.get_or_init(tokio::time::Instant::now);
    tokio::runtime::Handle::try_current().is_ok()
        && std::panic::catch_unwind(|| drop(tokio::time::sleep_until(anchor))).is_ok()
}
