//! The error an adapter's extractor rejects a request with.

use std::fmt;

use crate::error::Error;

/// Why a `VerifiedEvent` extractor refused a request.
///
/// With the `axum` feature it implements `IntoResponse`; with the `actix` feature,
/// `ResponseError`. Either way it answers the status NotMeta must receive for it
/// (400 or 413, which NotMeta does not retry; 503 for a body that could not be read
/// or was too slow to arrive, which it retries) with a short `text/plain` body that
/// reveals nothing secret; a refused body closes the connection.
///
/// It is transparent: `Display` and `source()` are the underlying error's.
///
/// ```
/// # #[cfg(feature = "axum")]
/// use notmeta_webhooks::axum::WebhookRejection;
/// # #[cfg(not(feature = "axum"))]
/// # use notmeta_webhooks::actix::WebhookRejection;
/// use notmeta_webhooks::{Error, ErrorKind};
///
/// let rejection = WebhookRejection::from(Error::from(ErrorKind::SignatureMismatch));
/// assert_eq!(rejection.error().status(), 400);
/// assert_eq!(rejection.to_string(), "signature does not match the body");
/// ```
#[derive(Debug)]
pub struct WebhookRejection(pub(crate) Error);

impl WebhookRejection {
    /// The underlying error.
    #[must_use]
    pub fn error(&self) -> &Error {
        &self.0
    }

    /// Takes the underlying error.
    #[must_use]
    pub fn into_error(self) -> Error {
        self.0
    }
}

impl From<Error> for WebhookRejection {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

impl fmt::Display for WebhookRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for WebhookRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}
