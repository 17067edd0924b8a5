//! What happened to a delivery, and the answer NotMeta gets for it.
//!
//! [`Outcome`] is the one place that knows each outcome's status and response text;
//! [`Answer`] carries an outcome (and, for the challenge, its text) to the adapter.

use std::borrow::Cow;
use std::time::Duration;

use http::{HeaderValue, StatusCode, header};

use crate::error::ErrorKind;

/// What happened to one delivery; the reason behind an [`Answer`]'s status.
///
/// | outcome | status | text | retried by NotMeta |
/// |---|---|---|---|
/// | [`Handled`](Self::Handled) | 200 | `OK` | no |
/// | [`Queued`](Self::Queued) | 200 | `OK` | no |
/// | [`Duplicate`](Self::Duplicate) | 200 | `OK (duplicate)` | no |
/// | [`Challenge`](Self::Challenge) | 200 | the challenge | no |
/// | [`Rejected`](Self::Rejected) | the [`ErrorKind`]'s (400, 413, 500, 503) | the kind's text | per status |
/// | [`Stale`](Self::Stale) | 400 | `Event too old` | no |
/// | [`PermanentFailure`](Self::PermanentFailure) | 400 | `Event refused` | no |
/// | [`Panicked`](Self::Panicked) | 500 | `Internal error` | yes |
/// | [`TemporaryFailure`](Self::TemporaryFailure) | 503 | `Temporary failure, retry later` | yes |
/// | [`TimedOut`](Self::TimedOut) | 503 | `Handler timed out, retry later` | yes |
/// | [`InProgress`](Self::InProgress) | 503 | `Event in progress, retry later` | yes |
/// | [`StoreUnavailable`](Self::StoreUnavailable) | 503 | `Temporary failure, retry later` | yes |
/// | [`StoreFull`](Self::StoreFull) | 503 | `Busy, retry later` | yes |
/// | [`CircuitOpen`](Self::CircuitOpen) | 503 (with `Retry-After`) | `Temporarily unavailable, retry later` | yes |
///
/// ```
/// use notmeta_webhooks::receiver::Outcome;
///
/// assert_eq!(Outcome::Duplicate.status(), 200);
/// assert_eq!(Outcome::InProgress.status(), 503);
/// assert!(Outcome::TimedOut.is_retried());
/// assert_eq!(Outcome::StoreFull.as_str(), "store_full");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler processed the event.
    Handled,
    /// The event was put on a durable queue (the queue feature's `Enqueuer`); a
    /// worker runs the handler later.
    Queued,
    /// A `webhook.verified` challenge was answered (the handler is not called).
    Challenge,
    /// The request was refused before the handler ran: a bad signature, a body that
    /// is not an event, too large or unreadable, or a misconfigured receiver.
    Rejected(ErrorKind),
    /// The handler reported a temporary failure.
    TemporaryFailure,
    /// The handler reported a permanent failure.
    PermanentFailure,
    /// The handler panicked.
    Panicked,
    /// The handler ran past the time limit.
    TimedOut,
    /// A duplicate of an event already handled (the handler is not run).
    Duplicate,
    /// A duplicate of an event still being handled.
    InProgress,
    /// The event is older than the maximum event age: a replay.
    Stale,
    /// The idempotency store could not be reached.
    StoreUnavailable,
    /// The idempotency store is full of ids it must still remember.
    StoreFull,
    /// Refused before anything was claimed: the receiver's
    /// [circuit breaker](crate::breaker) is open (or its probe is running). The
    /// answer carries a `Retry-After` of the cool-down left.
    CircuitOpen,
}

impl Outcome {
    /// The HTTP status NotMeta receives.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::Handled | Self::Queued | Self::Challenge | Self::Duplicate => StatusCode::OK,
            Self::Rejected(kind) => kind.status(),
            Self::Stale | Self::PermanentFailure => StatusCode::BAD_REQUEST,
            Self::Panicked => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TemporaryFailure
            | Self::TimedOut
            | Self::InProgress
            | Self::StoreUnavailable
            | Self::StoreFull
            | Self::CircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The short fixed text sent as the body (for [`Challenge`](Self::Challenge),
    /// the answer carries the challenge instead).
    #[must_use]
    pub const fn response_text(self) -> &'static str {
        match self {
            Self::Handled | Self::Queued | Self::Challenge => "OK",
            Self::Duplicate => "OK (duplicate)",
            Self::Rejected(kind) => kind.response_text(),
            Self::Stale => "Event too old",
            Self::PermanentFailure => "Event refused",
            Self::Panicked => "Internal error",
            Self::TemporaryFailure | Self::StoreUnavailable => "Temporary failure, retry later",
            Self::TimedOut => "Handler timed out, retry later",
            Self::InProgress => "Event in progress, retry later",
            Self::StoreFull => "Busy, retry later",
            Self::CircuitOpen => "Temporarily unavailable, retry later",
        }
    }

    /// Whether the connection must not be reused after this answer: a refused body
    /// (too large, too slow, unreadable) may have left unread bytes on it.
    pub(crate) const fn closes_connection(self) -> bool {
        matches!(
            self,
            Self::Rejected(ErrorKind::BodyTooLarge | ErrorKind::BodyTimeout | ErrorKind::BodyRead)
        )
    }

    /// Whether NotMeta retries the delivery (the status is 5xx).
    #[must_use]
    pub const fn is_retried(self) -> bool {
        self.status().as_u16() >= 500
    }

    /// A stable lower-case name, for logs and metric labels (`"handled"`,
    /// `"duplicate"`, `"rejected"`, …).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Handled => "handled",
            Self::Queued => "queued",
            Self::Challenge => "challenge",
            Self::Rejected(_) => "rejected",
            Self::TemporaryFailure => "temporary_failure",
            Self::PermanentFailure => "permanent_failure",
            Self::Panicked => "panicked",
            Self::TimedOut => "timed_out",
            Self::Duplicate => "duplicate",
            Self::InProgress => "in_progress",
            Self::Stale => "stale",
            Self::StoreUnavailable => "store_unavailable",
            Self::StoreFull => "store_full",
            Self::CircuitOpen => "circuit_open",
        }
    }
}

/// The response to send NotMeta for one delivery: the [`Outcome`], its status, and a
/// short `text/plain` body.
///
/// Bodies never echo secrets, signatures or handler error messages.
///
/// ```
/// use notmeta_webhooks::receiver::{Answer, Outcome};
///
/// let answer = Answer::from(Outcome::InProgress);
/// assert_eq!(answer.status(), 503);
/// assert_eq!(answer.body(), "Event in progress, retry later");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    outcome: Outcome,
    body: Cow<'static, str>,
    retry_after: Option<Duration>,
}

impl From<Outcome> for Answer {
    fn from(outcome: Outcome) -> Self {
        Self {
            outcome,
            body: Cow::Borrowed(outcome.response_text()),
            retry_after: None,
        }
    }
}

impl Answer {
    /// The answer to a `webhook.verified` challenge: 200 with the challenge as body.
    pub(crate) fn challenge(challenge: &str) -> Self {
        Self {
            outcome: Outcome::Challenge,
            body: Cow::Owned(challenge.to_owned()),
            retry_after: None,
        }
    }

    /// This answer with a `Retry-After` of `wait` (whole seconds, rounded up).
    pub(crate) fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// How long the client should wait before it tries again, sent as
    /// `Retry-After` in whole seconds (rounded up, at least 1): set for
    /// [`Outcome::CircuitOpen`], the cool-down left.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The answer for a request refused with `error` (its status and a fixed,
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
    pub fn rejected(error: &crate::Error) -> Self {
        Outcome::Rejected(error.kind()).into()
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.outcome.status()
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

    /// The status and body, for adapters that build their own response (a fixed
    /// text stays borrowed).
    #[must_use]
    pub fn into_parts(self) -> (StatusCode, Cow<'static, str>) {
        (self.status(), self.body)
    }

    /// The answer as an `http::Response`: the status, `Content-Type` and the body,
    /// and `Connection: close` after a refused body (too large, too slow to arrive,
    /// unreadable), whatever was read of it: a body refused while it arrives leaves
    /// unread bytes that make the connection unusable, and the answer does not know
    /// whether that happened. The framework entry points send exactly this.
    ///
    /// ```
    /// use notmeta_webhooks::receiver::{Answer, Outcome};
    /// use notmeta_webhooks::{Error, ErrorKind};
    ///
    /// let response = Answer::from(Outcome::Handled).into_response();
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    /// assert_eq!(response.body(), "OK");
    /// assert!(response.headers().get("connection").is_none());
    ///
    /// let response = Answer::rejected(&Error::from(ErrorKind::BodyTimeout)).into_response();
    /// assert_eq!(response.status(), 503);
    /// assert_eq!(response.headers()["connection"], "close");
    /// ```
    #[must_use]
    pub fn into_response(self) -> http::Response<String> {
        self.into_http_response(Cow::into_owned)
    }

    /// The answer as an `http::Response` whose body `body` makes from the text (a
    /// fixed text stays borrowed): the one place that turns an answer into HTTP.
    pub(crate) fn into_http_response<B>(
        self,
        body: impl FnOnce(Cow<'static, str>) -> B,
    ) -> http::Response<B> {
        let close = self.outcome.closes_connection();
        let retry_after = self.retry_after.map(retry_after_seconds);
        let content_type = self.content_type();
        let (status, text) = self.into_parts();
        let mut response = http::Response::new(body(text));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, content_type);
        if close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// `Retry-After`'s whole seconds for `wait`: rounded up, at least 1.
fn retry_after_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_body_closes_the_connection_and_nothing_else_does() {
        let kinds = [
            ErrorKind::MissingSignature,
            ErrorKind::MalformedSignature,
            ErrorKind::SignatureMismatch,
            ErrorKind::InvalidEvent,
            ErrorKind::BodyTooLarge,
            ErrorKind::BodyRead,
            ErrorKind::BodyTimeout,
            ErrorKind::Config,
        ];
        let outcomes = kinds.into_iter().map(Outcome::Rejected).chain([
            Outcome::Handled,
            Outcome::Queued,
            Outcome::Duplicate,
            Outcome::Stale,
            Outcome::PermanentFailure,
            Outcome::Panicked,
            Outcome::TemporaryFailure,
            Outcome::TimedOut,
            Outcome::InProgress,
            Outcome::StoreUnavailable,
            Outcome::StoreFull,
            Outcome::CircuitOpen,
        ]);
        for outcome in outcomes {
            let response = Answer::from(outcome).into_response();
            let refused_body = matches!(
                outcome,
                Outcome::Rejected(
                    ErrorKind::BodyTooLarge | ErrorKind::BodyTimeout | ErrorKind::BodyRead
                )
            );
            assert!(response.headers().get(header::RETRY_AFTER).is_none());
            let close = response.headers().get(header::CONNECTION);
            assert_eq!(close.is_some(), refused_body, "{outcome:?}");
            if let Some(close) = close {
                assert_eq!(close, "close");
            }
            assert_eq!(response.status(), outcome.status(), "{outcome:?}");
            assert_eq!(response.body(), outcome.response_text(), "{outcome:?}");
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "text/plain; charset=utf-8"
            );
        }
        for (wait, header) in [(0, "1"), (1_000, "1"), (1_001, "2"), (30_000, "30")] {
            let answer = Answer::from(Outcome::CircuitOpen)
                .with_retry_after(Duration::from_millis(wait))
                .into_response();
            assert_eq!(answer.headers()[header::RETRY_AFTER], header, "{wait} ms");
            assert_eq!(answer.status(), 503);
        }
        let challenge = Answer::challenge("abc").into_response();
        assert_eq!(challenge.body(), "abc");
        assert!(challenge.headers().get(header::CONNECTION).is_none());
    }
}
