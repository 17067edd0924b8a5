//! A framework-neutral webhook endpoint: verify, parse, answer the challenge, run
//! your handler, and turn its outcome into the status that makes NotMeta retry
//! exactly when it should.
//!
//! The axum and actix-web adapters are thin layers over [`Receiver`]; use it directly
//! with any other server library: read the body (with the limit of
//! [`Verifier::max_body_size`]), collect the `X-NotMeta-Signature` values, call
//! [`Receiver::receive`], and send the [`Answer`].
//!
//! | situation | status | retried by NotMeta |
//! |---|---|---|
//! | handler returned `Ok(())` | 200 | no |
//! | duplicate of an event already handled | 200 (handler not run) | no |
//! | `webhook.verified` challenge (answered for you; the handler is not called) | 200, body = challenge | no |
//! | signature missing, malformed or wrong; body not an event | 400 | no |
//! | event older than [`Receiver::with_max_event_age`] (a replay) | 400 | no |
//! | body over the limit | 413 | no |
//! | handler returned [`HandlerError::temporary`] | 503 | yes |
//! | handler ran past [`Receiver::with_handler_timeout`] (default 25 s) | 503 | yes |
//! | duplicate of an event still being handled | 503 | yes |
//! | idempotency store unreachable | 503 | yes |
//! | handler returned [`HandlerError::permanent`] | 400 | no |
//! | handler panicked | 500 | yes |
//!
//! By default a receiver de-duplicates on event id in memory ([`MemoryStore`]) for
//! [`DEFAULT_DEDUP_WINDOW`] (2 h); give several replicas one shared store
//! (`RedisStore`, feature `redis`) with [`Receiver::with_store`].
//!
//! Events of a type this version does not know reach the handler as
//! [`EventKind::Unknown`](crate::EventKind::Unknown); a handler that answers them
//! `Ok(())` (a `_ => Ok(())` arm) keeps new event types from ever causing retries.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use http::{HeaderValue, StatusCode, header};

use crate::clock::{Clock, SystemClock};
use crate::dedup::{Claim, ClaimToken, DEFAULT_DEDUP_WINDOW, IdempotencyStore, MemoryStore};
use crate::error::{Error, ErrorKind};
use crate::event::Event;
use crate::signature::Verifier;

/// The default handler time limit: 25 s, safely under NotMeta's 30 s.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(25);

/// How far NotMeta's clock and this host's may disagree; added to the maximum event
/// age when sizing the dedup window.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// How much longer than the handler time limit a claim lives, so that a live claim
/// never expires under a running handler.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

#[cfg(any(feature = "axum", feature = "actix"))]
pub use crate::rejection::WebhookRejection;

/// Why a handler could not process an event, and whether NotMeta should retry.
///
/// ```
/// use notmeta_webhooks::receiver::HandlerError;
///
/// let retry = HandlerError::temporary("database unavailable");
/// assert_eq!(retry.status(), 503);
/// let give_up = HandlerError::permanent("conversation no longer exists");
/// assert_eq!(give_up.status(), 400);
/// ```
#[derive(Debug)]
pub struct HandlerError {
    temporary: bool,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl HandlerError {
    /// A failure that may pass (a database or downstream service is down): answered
    /// 503 so NotMeta retries the event (1 min, 5 min, 15 min, 1 h).
    pub fn temporary(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            temporary: true,
            source: error.into(),
        }
    }

    /// A failure that retrying cannot fix: answered 400 so NotMeta stops retrying.
    pub fn permanent(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            temporary: false,
            source: error.into(),
        }
    }

    /// Whether NotMeta should retry.
    #[must_use]
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// 503 for a temporary failure, 400 for a permanent one.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        if self.temporary {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_REQUEST
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.temporary {
            "temporary"
        } else {
            "permanent"
        };
        write!(f, "{kind} handler failure: {}", self.source)
    }
}

impl std::error::Error for HandlerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Your code that acts on events.
///
/// Implemented for every `Fn(Event<'static>) -> impl Future<Output = Result<(),
/// HandlerError>>` that is `Send + Sync + 'static`, so an async closure is a handler:
///
/// ```
/// use notmeta_webhooks::receiver::{Handler, HandlerError};
/// use notmeta_webhooks::{Event, EventKind};
///
/// fn assert_handler(_: impl Handler) {}
/// assert_handler(|event: Event<'static>| async move {
///     match &event.kind {
///         EventKind::MessageReceived(m) => println!("{:?}", m.message.text),
///         _ => {}
///     }
///     Ok::<(), HandlerError>(())
/// });
/// ```
pub trait Handler: Send + Sync + 'static {
    /// The future [`Handler::call`] returns.
    type Future: Future<Output = Result<(), HandlerError>> + Send + 'static;

    /// Handles one verified event.
    fn call(&self, event: Event<'static>) -> Self::Future;
}

impl<F, Fut> Handler for F
where
    F: Fn(Event<'static>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    type Future = Fut;

    fn call(&self, event: Event<'static>) -> Fut {
        self(event)
    }
}

/// What happened to one delivery; the reason behind an [`Answer`]'s status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler processed the event (200).
    Handled,
    /// A `webhook.verified` challenge was answered (200).
    Challenge,
    /// The request was refused before the handler ran (400 or 413).
    Rejected(ErrorKind),
    /// The handler reported a temporary failure (503, retried).
    TemporaryFailure,
    /// The handler reported a permanent failure (400, not retried).
    PermanentFailure,
    /// The handler panicked (500, retried).
    Panicked,
    /// The handler ran past the time limit (503, retried).
    TimedOut,
    /// A duplicate of an event already handled (200, handler not run).
    Duplicate,
    /// A duplicate of an event still being handled (503, retried later).
    InProgress,
    /// The event is older than the maximum event age: a replay (400).
    Stale,
    /// The idempotency store could not be reached (503, retried).
    StoreUnavailable,
}

/// The response to send NotMeta for one delivery: status, a short `text/plain` body,
/// and the [`Outcome`] behind them.
///
/// Bodies never echo secrets, signatures or handler error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    status: StatusCode,
    body: Cow<'static, str>,
    outcome: Outcome,
}

impl Answer {
    fn new(status: StatusCode, body: impl Into<Cow<'static, str>>, outcome: Outcome) -> Self {
        Self {
            status,
            body: body.into(),
            outcome,
        }
    }

    /// The answer for a request refused with `error` (its status, which NotMeta does
    /// not retry, and a fixed, non-leaking text).
    ///
    /// ```
    /// use notmeta_webhooks::receiver::Answer;
    /// use notmeta_webhooks::Error;
    ///
    /// let answer = Answer::rejected(&Error::body_too_large(1024));
    /// assert_eq!(answer.status(), 413);
    /// assert_eq!(answer.body(), "Payload too large");
    /// ```
    #[must_use]
    pub fn rejected(error: &Error) -> Self {
        let kind = error.kind();
        Self::new(kind.status(), kind.response_text(), Outcome::Rejected(kind))
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response body (`text/plain`): the challenge, or a short fixed text.
    #[must_use]
    pub fn body(&self) -> &str {
        &self.body
    }

    /// What happened.
    #[must_use]
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The value of the `Content-Type` header to send with [`Answer::body`].
    #[must_use]
    pub fn content_type(&self) -> HeaderValue {
        HeaderValue::from_static(crate::event::TEXT_PLAIN)
    }

    /// Splits the answer into its status and body.
    #[must_use]
    pub fn into_parts(self) -> (StatusCode, Cow<'static, str>) {
        (self.status, self.body)
    }

    /// The answer as an `http::Response`.
    ///
    /// ```
    /// use notmeta_webhooks::receiver::Answer;
    /// use notmeta_webhooks::{Error, ErrorKind};
    ///
    /// let response = Answer::rejected(&Error::from(ErrorKind::MissingSignature)).into_response();
    /// assert_eq!(response.status(), 400);
    /// assert_eq!(response.body(), "Invalid signature");
    /// ```
    #[must_use]
    pub fn into_response(self) -> http::Response<String> {
        let content_type = self.content_type();
        let mut response = http::Response::new(self.body.into_owned());
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
        response
    }
}

/// The idempotency store of a receiver. The in-memory store, the default, is called
/// directly (it never waits), saving two boxed futures per delivery; any other store
/// goes through [`IdempotencyStore`].
#[derive(Clone)]
enum Store {
    Memory(MemoryStore),
    Shared(Arc<dyn IdempotencyStore>),
}

impl Store {
    fn new<S: IdempotencyStore>(store: S) -> Self {
        match (&store as &dyn std::any::Any).downcast_ref::<MemoryStore>() {
            Some(memory) => Self::Memory(memory.clone()),
            None => Self::Shared(Arc::new(store)),
        }
    }

    async fn claim(&self, id: &str, lease: Duration) -> Result<Claim, crate::dedup::StoreError> {
        match self {
            Self::Memory(memory) => memory.claim_now(id, lease),
            Self::Shared(store) => store.claim(id, lease).await,
        }
    }

    async fn complete(
        &self,
        id: &str,
        token: &ClaimToken,
        window: Duration,
    ) -> Result<(), crate::dedup::StoreError> {
        match self {
            Self::Memory(memory) => memory.complete_now(id, window),
            Self::Shared(store) => store.complete(id, token, window).await,
        }
    }

    async fn release(&self, id: &str, token: &ClaimToken) -> Result<(), crate::dedup::StoreError> {
        match self {
            Self::Memory(memory) => {
                memory.release_now(id, token);
                Ok(())
            }
            Self::Shared(store) => store.release(id, token).await,
        }
    }
}

/// A ready-made webhook endpoint: a [`Verifier`], your [`Handler`], and the delivery
/// guarantees around it (dedup, maximum event age, handler time limit).
///
/// ```
/// use notmeta_webhooks::receiver::{HandlerError, Outcome, Receiver};
/// use notmeta_webhooks::{sign, Event, Verifier};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), notmeta_webhooks::Error> {
/// let receiver = Receiver::new(
///     Verifier::new("whsec_abc123")?,
///     |event: Event<'static>| async move {
///         println!("{} {}", event.id, event.type_str());
///         Ok::<(), HandlerError>(())
///     },
/// );
///
/// let body = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
/// let header = sign(body, "whsec_abc123");
/// let answer = receiver.receive(body, [header.as_bytes()]).await;
/// assert_eq!(answer.status(), 200);
/// assert_eq!(answer.outcome(), Outcome::Handled);
///
/// // NotMeta delivers the same event again: answered 200, handler not run.
/// let answer = receiver.receive(body, [header.as_bytes()]).await;
/// assert_eq!(answer.outcome(), Outcome::Duplicate);
///
/// let answer = receiver.receive(b"{}", [header.as_bytes()]).await;
/// assert_eq!(answer.status(), 400);
/// # Ok(())
/// # }
/// ```
pub struct Receiver<H> {
    verifier: Verifier,
    handler: Arc<H>,
    store: Option<Store>,
    dedup_window: Duration,
    max_event_age: Option<Duration>,
    handler_timeout: Duration,
    clock: Arc<dyn Clock>,
}

/// Clones share the handler and the idempotency store: build one receiver and give
/// every server worker a clone (actix-web calls its app factory once per worker).
impl<H> Clone for Receiver<H> {
    fn clone(&self) -> Self {
        Self {
            verifier: self.verifier.clone(),
            handler: Arc::clone(&self.handler),
            store: self.store.clone(),
            dedup_window: self.dedup_window,
            max_event_age: self.max_event_age,
            handler_timeout: self.handler_timeout,
            clock: Arc::clone(&self.clock),
        }
    }
}

impl<H> fmt::Debug for Receiver<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("verifier", &self.verifier)
            .field("dedup", &self.store.is_some())
            .field("dedup_window", &self.effective_dedup_window())
            .field("max_event_age", &self.max_event_age)
            .field("handler_timeout", &self.handler_timeout)
            .finish_non_exhaustive()
    }
}

impl<H> Receiver<H> {
    /// The verifier (its [`Verifier::max_body_size`] is the limit to read bodies with).
    #[must_use]
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// How long finished event ids are remembered: the configured window, or the
    /// maximum event age plus [`MAX_CLOCK_SKEW`] if that is longer, so that an event
    /// young enough to be accepted is always still remembered (no replay).
    #[must_use]
    pub fn effective_dedup_window(&self) -> Duration {
        match self.max_event_age {
            Some(age) => self.dedup_window.max(age + MAX_CLOCK_SKEW),
            None => self.dedup_window,
        }
    }

    /// The handler time limit.
    #[must_use]
    pub fn handler_timeout(&self) -> Duration {
        self.handler_timeout
    }

    /// The maximum event age, if one is set.
    #[must_use]
    pub fn max_event_age(&self) -> Option<Duration> {
        self.max_event_age
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
            store: Some(Store::Memory(MemoryStore::new())),
            dedup_window: DEFAULT_DEDUP_WINDOW,
            max_event_age: None,
            handler_timeout: DEFAULT_HANDLER_TIMEOUT,
            clock: Arc::new(SystemClock),
        }
    }

    /// De-duplicates with `store` (share one store between replicas, such as a
    /// `RedisStore`).
    #[must_use]
    pub fn with_store(mut self, store: impl IdempotencyStore) -> Self {
        self.store = Some(Store::new(store));
        self
    }

    /// Turns de-duplication off: every delivery runs the handler (at least once).
    #[must_use]
    pub fn without_dedup(mut self) -> Self {
        self.store = None;
        self
    }

    /// How long finished event ids are remembered (default 2 h, which covers NotMeta's
    /// 81-minute retry window with room for clock skew and delays).
    #[must_use]
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window;
        self
    }

    /// Refuses (400, not retried) events whose signed `created_at` is older than
    /// `age`, so a captured request cannot be replayed later. The dedup window grows to
    /// at least `age` plus [`MAX_CLOCK_SKEW`], so within the age a replay is a
    /// duplicate and after it a stale event: never handled twice.
    ///
    /// NotMeta's own last retry comes about 81 minutes after the first attempt; an
    /// `age` below about 90 minutes refuses genuine late retries.
    #[must_use]
    pub fn with_max_event_age(mut self, age: Duration) -> Self {
        self.max_event_age = Some(age);
        self
    }

    /// Stops a handler after `timeout` and answers 503 so NotMeta retries, instead of
    /// letting NotMeta's 30 s limit expire. The handler's future is dropped at that
    /// point. Default 25 s.
    #[must_use]
    pub fn with_handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout;
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
    /// the future then claims the event, runs the handler (with the time limit,
    /// catching panics) and records the outcome.
    pub fn receive<'r, 'h, I>(
        &'r self,
        body: &'r [u8],
        signature_values: I,
    ) -> impl Future<Output = Answer> + Send + 'r
    where
        I: IntoIterator<Item = &'h [u8]>,
    {
        let parsed = self
            .verifier
            .verify_header_values(body, signature_values)
            .and_then(crate::VerifiedPayload::parse);
        let delivery = async move {
            match parsed {
                Ok(event) => self.dispatch(event).await,
                Err(error) => Answer::rejected(&error),
            }
        };
        #[cfg(feature = "tracing")]
        let delivery = trace::delivery(delivery);
        delivery
    }

    async fn dispatch(&self, event: Event<'_>) -> Answer {
        #[cfg(feature = "tracing")]
        trace::record_event(&event);
        if let Some(challenge) = event.challenge() {
            return Answer::new(StatusCode::OK, challenge.to_owned(), Outcome::Challenge);
        }
        if self.is_stale(&event) {
            return Answer::new(StatusCode::BAD_REQUEST, "Event too old", Outcome::Stale);
        }
        let Some(store) = &self.store else {
            return self.run_handler(event.into_owned()).await;
        };
        let lease = self.handler_timeout + LEASE_MARGIN;
        let token = match store.claim(event.id.as_str(), lease).await {
            Ok(Claim::Claimed(token)) => token,
            Ok(Claim::Done) => {
                return Answer::new(StatusCode::OK, "OK (duplicate)", Outcome::Duplicate);
            }
            Ok(Claim::InProgress) => {
                return Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Event in progress, retry later",
                    Outcome::InProgress,
                );
            }
            Err(_error) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(error = %_error, "cannot claim the event");
                return Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporary failure, retry later",
                    Outcome::StoreUnavailable,
                );
            }
        };
        // Still borrowed from the body (no copy) unless the id held an escape.
        let id = event.id.clone();
        let answer = self.run_handler(event.into_owned()).await;
        self.settle(store, id.as_str(), &token, answer.outcome)
            .await;
        answer
    }

    /// Records the outcome: done after success or a permanent failure, released after
    /// anything NotMeta will retry.
    async fn settle(&self, store: &Store, id: &str, token: &ClaimToken, outcome: Outcome) {
        let settled = match outcome {
            Outcome::Handled | Outcome::PermanentFailure => {
                store
                    .complete(id, token, self.effective_dedup_window())
                    .await
            }
            _ => store.release(id, token).await,
        };
        // The answer stands either way: the handler's work is done (or it failed and
        // the claim's lease will lapse before NotMeta's next retry).
        if let Err(_error) = settled {
            #[cfg(feature = "tracing")]
            tracing::warn!(error = %_error, "cannot record the event's outcome");
        }
    }

    fn is_stale(&self, event: &Event<'_>) -> bool {
        let Some(max_age) = self.max_event_age else {
            return false;
        };
        self.clock
            .now()
            .duration_since(event.created_at.to_system_time())
            .is_ok_and(|age| age > max_age)
    }

    async fn run_handler(&self, event: Event<'static>) -> Answer {
        // A panic while creating the future or while polling it answers 500.
        let run = async {
            match std::panic::catch_unwind(AssertUnwindSafe(|| self.handler.call(event))) {
                Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                Err(panic) => Err(panic),
            }
        };
        let Ok(result) = tokio::time::timeout(self.handler_timeout, run).await else {
            return Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Handler timed out, retry later",
                Outcome::TimedOut,
            );
        };
        match result {
            Ok(Ok(())) => Answer::new(StatusCode::OK, "OK", Outcome::Handled),
            Ok(Err(_error)) if _error.is_temporary() => {
                #[cfg(feature = "tracing")]
                tracing::warn!(error = %_error, "handler failed temporarily");
                Answer::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporary failure, retry later",
                    Outcome::TemporaryFailure,
                )
            }
            Ok(Err(_error)) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(error = %_error, "handler failed permanently");
                Answer::new(
                    StatusCode::BAD_REQUEST,
                    "Event refused",
                    Outcome::PermanentFailure,
                )
            }
            Err(_panic) => {
                #[cfg(feature = "tracing")]
                tracing::error!("handler panicked");
                Answer::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    Outcome::Panicked,
                )
            }
        }
    }
}

#[cfg(feature = "tracing")]
mod trace {
    //! One span per delivery: event id, type and outcome; never a secret or a
    //! signature. Refused requests are logged at `debug`, so forged traffic cannot
    //! flood the logs.

    use std::future::Future;

    use tracing::Instrument as _;
    use tracing::field::Empty;

    use super::Answer;
    use crate::event::Event;

    pub(super) async fn delivery(delivery: impl Future<Output = Answer>) -> Answer {
        let span = tracing::info_span!(
            "notmeta_webhook",
            event_id = Empty,
            event_type = Empty,
            outcome = Empty,
            status = Empty
        );
        let answer = delivery.instrument(span.clone()).await;
        span.record("outcome", tracing::field::debug(answer.outcome()));
        span.record("status", answer.status().as_u16());
        span.in_scope(|| match answer.outcome() {
            super::Outcome::Rejected(kind) => tracing::debug!(reason = %kind, "delivery refused"),
            outcome => tracing::debug!(?outcome, "delivery answered"),
        });
        answer
    }

    pub(super) fn record_event(event: &Event<'_>) {
        let span = tracing::Span::current();
        span.record("event_id", event.id.as_str());
        span.record("event_type", event.type_str());
    }
}

/// Reads a whole body from a stream of chunks, refusing it as soon as it exceeds
/// `limit` bytes: up front from `Content-Length`, or while reading (a chunked body
/// with no `Content-Length` is cut off too). Used by the adapters.
///
/// A refused body is still read and discarded up to `limit` more bytes before the
/// 413 is sent: closing a socket with unread data makes the kernel reset the
/// connection, and the client would see a reset instead of the 413 (and NotMeta
/// would retry). Anything larger than that is cut off.
#[cfg(any(feature = "axum", feature = "actix"))]
pub(crate) async fn read_limited<S, E>(
    mut stream: S,
    content_length: Option<&[u8]>,
    limit: usize,
) -> Result<bytes::Bytes, Error>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    use futures_util::StreamExt as _;

    let declared = content_length
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let too_large = Error::body_too_large(limit);
    if declared.is_some_and(|n| n > limit as u64) {
        drain(&mut stream, limit).await;
        return Err(too_large);
    }
    // A body that arrives in one chunk (the usual case) is kept as it is, without a
    // copy; a body in several chunks is gathered into one buffer.
    let mut first: Option<bytes::Bytes> = None;
    let mut gathered = bytes::BytesMut::new();
    let mut len = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Error::new(ErrorKind::BodyRead))?;
        if chunk.len() > limit - len {
            drain(&mut stream, limit).await;
            return Err(too_large);
        }
        len += chunk.len();
        match first.take() {
            None if gathered.is_empty() => first = Some(chunk),
            earlier => {
                if gathered.is_empty() {
                    // `declared` is at most `limit` here.
                    gathered.reserve(declared.map_or(len, |n| n as usize));
                }
                if let Some(earlier) = earlier {
                    gathered.extend_from_slice(&earlier);
                }
                gathered.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| gathered.freeze()))
}

/// Reads and discards up to `budget` bytes of what is left of a body.
#[cfg(any(feature = "axum", feature = "actix"))]
async fn drain<S, E>(stream: &mut S, mut budget: usize)
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    use futures_util::StreamExt as _;

    while let Some(Ok(chunk)) = stream.next().await {
        let Some(left) = budget.checked_sub(chunk.len()) else {
            return;
        };
        budget = left;
    }
}
