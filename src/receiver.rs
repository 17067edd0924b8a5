//! A framework-neutral webhook endpoint: verify, parse, answer the challenge, run
//! your handler, and turn its outcome into the status NotMeta needs (SPEC §6).
//!
//! The axum and actix-web adapters are thin layers over [`Receiver`]; use it directly
//! with any other server library: read the body (with the limit of
//! [`Verifier::max_body_size`]), collect the `X-NotMeta-Signature` values, call
//! [`Receiver::receive`], and send the [`Answer`].
//!
//! | situation | status | retried by NotMeta |
//! |---|---|---|
//! | handler returned `Ok(())` | 200 | no |
//! | `webhook.verified` challenge (answered for you; the handler is not called) | 200, body = challenge | no |
//! | signature missing, malformed or wrong; body not an event | 400 | no |
//! | body over the limit | 413 | no |
//! | handler returned [`HandlerError::temporary`] | 503 | yes |
//! | handler returned [`HandlerError::permanent`] | 400 | no |
//! | handler panicked | 500 | yes |
//!
//! Events of a type this version does not know reach the handler as
//! [`EventKind::Unknown`](crate::EventKind::Unknown); a handler that answers them
//! `Ok(())` (a `_ => Ok(())` arm) keeps new event types from ever causing retries.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;
use http::{HeaderValue, StatusCode, header};

use crate::error::{Error, ErrorKind};
use crate::event::Event;
use crate::signature::Verifier;

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

    /// The answer for a request refused with `error` (its SPEC §6 status and a fixed,
    /// non-leaking text).
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
        Self::new(kind.status(), kind.as_str(), Outcome::Rejected(kind))
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
        HeaderValue::from_static("text/plain; charset=utf-8")
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

/// A ready-made webhook endpoint: a [`Verifier`] and your [`Handler`].
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
/// let answer = receiver.receive(b"{}", [header.as_bytes()]).await;
/// assert_eq!(answer.status(), 400);
/// # Ok(())
/// # }
/// ```
pub struct Receiver<H> {
    verifier: Verifier,
    handler: H,
}

impl<H> fmt::Debug for Receiver<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Receiver<H> {
    /// An endpoint that verifies with `verifier` and hands events to `handler`.
    pub fn new(verifier: Verifier, handler: H) -> Self {
        Self { verifier, handler }
    }

    /// The verifier (its [`Verifier::max_body_size`] is the limit to read bodies with).
    #[must_use]
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Processes one delivery: `body` exactly as received (read with the verifier's
    /// body limit) and every value of the `X-NotMeta-Signature` header.
    ///
    /// Verification and parsing happen before the returned future is first polled;
    /// the future then runs the handler, catching panics.
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
        async move {
            match parsed {
                Ok(event) => self.dispatch(event).await,
                Err(error) => Answer::rejected(&error),
            }
        }
    }

    async fn dispatch(&self, event: Event<'_>) -> Answer {
        if let Some(challenge) = event.challenge() {
            return Answer::new(StatusCode::OK, challenge.to_owned(), Outcome::Challenge);
        }
        let event = event.into_owned();
        // A panic while creating the future or while polling it answers 500.
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| self.handler.call(event))) {
            Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
            Err(panic) => Err(panic),
        };
        match result {
            Ok(Ok(())) => Answer::new(StatusCode::OK, "OK", Outcome::Handled),
            Ok(Err(e)) if e.is_temporary() => Answer::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporary failure, retry later",
                Outcome::TemporaryFailure,
            ),
            Ok(Err(_)) => Answer::new(
                StatusCode::BAD_REQUEST,
                "Event refused",
                Outcome::PermanentFailure,
            ),
            Err(_) => Answer::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                Outcome::Panicked,
            ),
        }
    }
}

/// Collects a body chunk by chunk, refusing it as soon as it exceeds the limit (so a
/// chunked body with no `Content-Length` is cut off too). Used by the adapters.
#[cfg(any(feature = "axum", feature = "actix"))]
pub(crate) struct LimitedBody {
    buf: Vec<u8>,
    limit: usize,
}

#[cfg(any(feature = "axum", feature = "actix"))]
impl LimitedBody {
    /// Starts a body; `content_length` (if sent) is checked up front.
    pub(crate) fn new(content_length: Option<&[u8]>, limit: usize) -> Result<Self, Error> {
        let declared = content_length
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(Error::body_too_large(limit));
        }
        let capacity = declared.map_or(0, |n| n as usize);
        Ok(Self {
            buf: Vec::with_capacity(capacity),
            limit,
        })
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if chunk.len() > self.limit - self.buf.len() {
            return Err(Error::body_too_large(self.limit));
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}
