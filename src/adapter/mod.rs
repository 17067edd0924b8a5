//! What the entry points (tower, axum, actix-web) share: reading a body with the
//! endpoint's limits, the extractors' rejection and body read time limit, and the
//! response body of an answer.

use std::borrow::Cow;

use bytes::Bytes;

pub(crate) mod body;
#[cfg(any(feature = "axum", feature = "actix"))]
pub(crate) mod rejection;

/// The body of an answer's response: a fixed text is sent without copying it.
pub(crate) fn body_bytes(text: Cow<'static, str>) -> Bytes {
    match text {
        Cow::Borrowed(text) => Bytes::from_static(text.as_bytes()),
        Cow::Owned(text) => Bytes::from(text),
    }
}

/// How long a `VerifiedEvent` extractor waits for a whole body to arrive (default
/// [`DEFAULT_BODY_READ_TIMEOUT`](crate::receiver::DEFAULT_BODY_READ_TIMEOUT), 15 s);
/// a slower body is rejected with 503 ([`ErrorKind::BodyTimeout`](crate::ErrorKind::BodyTimeout))
/// and its connection closed. Durations above
/// [`MAX_DURATION`](crate::clock::MAX_DURATION) are treated as that.
///
/// The ready-made endpoints take theirs from the endpoint
/// ([`Receiver::with_body_read_timeout`](crate::receiver::Receiver::with_body_read_timeout));
/// an extractor finds this one in the request: with axum as a request extension
/// (`Router::layer(axum::Extension(BodyReadTimeout(…)))`), with actix-web as app
/// data (`App::app_data(web::Data::new(BodyReadTimeout(…)))`).
///
/// ```
/// # #[cfg(feature = "axum")]
/// use notmeta_webhooks::axum::BodyReadTimeout;
/// # #[cfg(not(feature = "axum"))]
/// # use notmeta_webhooks::actix::BodyReadTimeout;
/// use notmeta_webhooks::receiver::DEFAULT_BODY_READ_TIMEOUT;
///
/// assert_eq!(BodyReadTimeout::default(), BodyReadTimeout(DEFAULT_BODY_READ_TIMEOUT));
/// ```
#[cfg(any(feature = "axum", feature = "actix"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BodyReadTimeout(pub std::time::Duration);

#[cfg(any(feature = "axum", feature = "actix"))]
impl Default for BodyReadTimeout {
    fn default() -> Self {
        Self(crate::receiver::DEFAULT_BODY_READ_TIMEOUT)
    }
}

#[cfg(any(feature = "axum", feature = "actix"))]
impl BodyReadTimeout {
    /// The time limit in force: at most [`MAX_DURATION`](crate::clock::MAX_DURATION).
    pub(crate) fn limit(found: Option<&Self>) -> std::time::Duration {
        crate::clock::clamp(found.copied().unwrap_or_default().0)
    }
}
