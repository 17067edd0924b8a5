//! The error of verifying and parsing a request, and the HTTP status each answers.

use std::fmt;

use http::StatusCode;

/// What went wrong, as a closed set of kinds that callers can `match` on.
///
/// Every kind knows the HTTP status NotMeta must receive for it, so a receiver in
/// any framework answers correctly with [`ErrorKind::status`]: a 4xx tells NotMeta
/// the request can never succeed (it does not retry), a 5xx that the failure is
/// temporary (it retries). The [crate documentation](crate#errors-and-http-statuses)
/// has the table of kinds, statuses and retries.
///
/// Like [`std::io::ErrorKind`], this is a kind, not an error: `Display` gives its
/// description for logs, [`ErrorKind::response_text`] the short text to answer with.
///
/// ```
/// use notmeta_webhooks::{ErrorKind, Verifier};
///
/// let verifier = Verifier::new("whsec_abc123")?;
/// let err = verifier.verify(b"{}", ["sha256=nothex"]).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::MalformedSignature);
/// assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request carries no `X-NotMeta-Signature` header.
    MissingSignature,
    /// The header is present but is not exactly `sha256=` followed by 64 hex digits,
    /// or the request carries the header more than once.
    MalformedSignature,
    /// The header is well formed but its MAC matches none of the configured secrets.
    SignatureMismatch,
    /// The signature verified but the body is not a valid NotMeta event.
    InvalidEvent,
    /// The body is larger than the configured limit.
    BodyTooLarge,
    /// The body could not be read to its end: the connection failed, the client sent
    /// a broken chunked encoding, or a body middleware's stream failed (such as one
    /// that times a slow upload out). Answered 503, so NotMeta retries: the event
    /// itself may be fine. The connection is not reused.
    BodyRead,
    /// The body did not arrive within the read time limit (a client sending it too
    /// slowly). Answered 503, not 408: a 4xx would tell NotMeta to give up on the
    /// event, while a slow link deserves a retry. The connection is not reused.
    BodyTimeout,
    /// The receiver is misconfigured (for example, an empty secret).
    Config,
}

impl ErrorKind {
    /// The HTTP status a receiver answers for this kind of error: 400 for a request
    /// that can never succeed, 413 for a body over the limit, 503 for a body that
    /// could not be read or did not arrive in time, 500 for a misconfigured receiver
    /// (NotMeta retries the last two).
    ///
    /// ```
    /// use notmeta_webhooks::ErrorKind;
    /// assert_eq!(ErrorKind::BodyTooLarge.status().as_u16(), 413);
    /// assert_eq!(ErrorKind::SignatureMismatch.status().as_u16(), 400);
    /// ```
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            Self::MissingSignature
            | Self::MalformedSignature
            | Self::SignatureMismatch
            | Self::InvalidEvent => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyRead | Self::BodyTimeout => StatusCode::SERVICE_UNAVAILABLE,
            Self::Config => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether this is one of the three signature failures (missing, malformed,
    /// mismatched), which receivers usually answer with the vendor's
    /// `Invalid signature` text.
    ///
    /// ```
    /// use notmeta_webhooks::ErrorKind;
    /// assert!(ErrorKind::MissingSignature.is_signature());
    /// assert!(!ErrorKind::InvalidEvent.is_signature());
    /// ```
    #[must_use]
    pub const fn is_signature(self) -> bool {
        matches!(
            self,
            Self::MissingSignature | Self::MalformedSignature | Self::SignatureMismatch
        )
    }

    /// The short, fixed text a receiver sends back as the response body: safe to
    /// show the caller, and the same for the three signature failures
    /// (`Invalid signature`, as NotMeta's own examples answer).
    ///
    /// `Display` gives the longer description meant for logs.
    ///
    /// ```
    /// use notmeta_webhooks::ErrorKind;
    /// assert_eq!(ErrorKind::SignatureMismatch.response_text(), "Invalid signature");
    /// assert_eq!(ErrorKind::MissingSignature.response_text(), "Invalid signature");
    /// assert_eq!(ErrorKind::BodyTooLarge.response_text(), "Payload too large");
    /// ```
    #[must_use]
    pub const fn response_text(self) -> &'static str {
        match self {
            Self::MissingSignature | Self::MalformedSignature | Self::SignatureMismatch => {
                "Invalid signature"
            }
            Self::InvalidEvent => "Invalid event",
            Self::BodyRead => "Unreadable body, retry later",
            Self::BodyTimeout => "Body too slow, retry later",
            Self::BodyTooLarge => "Payload too large",
            Self::Config => "Webhook receiver misconfigured",
        }
    }
}

/// The description meant for logs, such as `signature does not match the body`.
///
/// ```
/// use notmeta_webhooks::ErrorKind;
/// assert_eq!(ErrorKind::MissingSignature.to_string(), "missing X-NotMeta-Signature header");
/// ```
impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingSignature => "missing X-NotMeta-Signature header",
            Self::MalformedSignature => "malformed X-NotMeta-Signature header",
            Self::SignatureMismatch => "signature does not match the body",
            Self::InvalidEvent => "body is not a valid NotMeta event",
            Self::BodyTooLarge => "body exceeds the configured size limit",
            Self::BodyRead => "the request body could not be read",
            Self::BodyTimeout => "the request body did not arrive in time",
            Self::Config => "invalid configuration",
        })
    }
}

/// Why a signature header is malformed or a body is refused; kept private so the
/// wording can improve without breaking anyone.
#[derive(Debug)]
pub(crate) enum Detail {
    None,
    Static(&'static str),
    TooLarge {
        limit: usize,
    },
    Json {
        path: Option<String>,
        source: serde_json::Error,
    },
    Message(String),
}

/// The error of verifying a request or parsing its body: it knows the HTTP status
/// to answer NotMeta with.
///
/// It is deliberately opaque: inspect it with [`Error::kind`] (to branch),
/// [`Error::status`] (to answer NotMeta) and [`Error::json_path`] (to log where a
/// body stopped being a valid event). Its messages never contain a secret, the
/// expected MAC or the received signature.
///
/// `Display` describes this error alone; when a body is not a valid event, the JSON
/// parser's message is the error's [`source`](std::error::Error::source), so print
/// the whole chain to see it (`{:#}` with `anyhow`, or any reporter that walks
/// `source()`).
///
/// ```
/// use notmeta_webhooks::{sign, ErrorKind, Verifier};
///
/// let verifier = Verifier::new("whsec_abc123")?;
/// let body = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{"user":{"id":"user_1"}}}"#;
/// let err = verifier.verify(body, [&sign(body, "another_secret")]).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
/// assert_eq!(err.to_string(), "signature does not match the body");
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    detail: Detail,
}

impl Error {
    pub(crate) const fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            detail: Detail::None,
        }
    }

    pub(crate) const fn with_static(kind: ErrorKind, detail: &'static str) -> Self {
        Self {
            kind,
            detail: Detail::Static(detail),
        }
    }

    pub(crate) fn invalid_event(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::InvalidEvent,
            detail: Detail::Message(message.into()),
        }
    }

    pub(crate) fn json(source: serde_json::Error, path: Option<String>) -> Self {
        Self {
            kind: ErrorKind::InvalidEvent,
            detail: Detail::Json { path, source },
        }
    }

    /// The error for a body longer than `limit` bytes (answered 413).
    ///
    /// Adapters for other frameworks use it when they cut a body off while reading.
    ///
    /// ```
    /// use notmeta_webhooks::{Error, ErrorKind};
    /// let err = Error::body_too_large(1024);
    /// assert_eq!(err.kind(), ErrorKind::BodyTooLarge);
    /// assert_eq!(err.status().as_u16(), 413);
    /// ```
    #[must_use]
    pub const fn body_too_large(limit: usize) -> Self {
        Self {
            kind: ErrorKind::BodyTooLarge,
            detail: Detail::TooLarge { limit },
        }
    }

    /// What kind of error this is.
    #[must_use]
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status to answer NotMeta with; same as `self.kind().status()`.
    #[must_use]
    pub const fn status(&self) -> http::StatusCode {
        self.kind.status()
    }

    /// For [`ErrorKind::InvalidEvent`], the JSON path where the body stopped being a
    /// valid event (for example `data.message`), when one is known.
    ///
    /// ```
    /// use notmeta_webhooks::Event;
    ///
    /// // message.received documents `message` as required.
    /// let body = br#"{"id":"evt_1","type":"message.received","created_at":"2024-01-01T12:00:00Z",
    ///                "data":{"message":"not an object","conversation":{"id":"conv_1"}}}"#;
    /// let err = Event::parse_unverified(body).unwrap_err();
    /// assert_eq!(err.json_path(), Some("data.message"));
    /// ```
    #[must_use]
    pub fn json_path(&self) -> Option<&str> {
        match &self.detail {
            Detail::Json { path, .. } => path.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)?;
        match &self.detail {
            Detail::None => Ok(()),
            Detail::Static(s) => write!(f, ": {s}"),
            Detail::TooLarge { limit } => write!(f, " of {limit} bytes"),
            Detail::Message(m) => write!(f, ": {m}"),
            // The parser's own message is the source, not part of this one.
            Detail::Json { path: Some(p), .. } => write!(f, " at `{p}`"),
            Detail::Json { path: None, .. } => Ok(()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.detail {
            Detail::Json { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

/// An error and its sources joined by ": ", as chain printers (anyhow's `{:#}`)
/// print them: for logs and dead letters.
#[cfg(any(test, feature = "queue"))]
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_the_spec_status() {
        let cases = [
            (ErrorKind::MissingSignature, 400),
            (ErrorKind::MalformedSignature, 400),
            (ErrorKind::SignatureMismatch, 400),
            (ErrorKind::InvalidEvent, 400),
            (ErrorKind::BodyTooLarge, 413),
            (ErrorKind::BodyRead, 503),
            (ErrorKind::BodyTimeout, 503),
            (ErrorKind::Config, 500),
        ];
        for (kind, status) in cases {
            assert_eq!(kind.status().as_u16(), status, "{kind:?}");
            assert_eq!(Error::new(kind).status().as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn the_parser_message_appears_once_in_the_chain() {
        let body = br#"{"id":"evt_1","type":"message.received","created_at":"2024-01-01T12:00:00Z",
                       "data":{"message":"not an object","conversation":{"id":"conv_1"}}}"#;
        let err = crate::Event::parse_unverified(body).unwrap_err();
        let cause = std::error::Error::source(&err)
            .expect("the parser's error")
            .to_string();
        assert!(cause.contains("expected"), "{cause}");
        let printed = chain(&err);
        assert_eq!(printed.matches(&cause).count(), 1, "{printed}");
        assert_eq!(
            err.to_string(),
            "body is not a valid NotMeta event at `data.message`"
        );
        assert!(printed.starts_with("body is not a valid NotMeta event at `data.message`: "));

        // Without a path, the same rule.
        let err = crate::Event::parse_unverified(b"{").unwrap_err();
        let printed = chain(&err);
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert_eq!(printed.matches(&cause).count(), 1, "{printed}");
    }

    #[test]
    fn display_includes_detail() {
        let e = Error::with_static(ErrorKind::MalformedSignature, "expected 64 hex digits");
        assert_eq!(
            e.to_string(),
            "malformed X-NotMeta-Signature header: expected 64 hex digits"
        );
        assert_eq!(
            Error::body_too_large(10).to_string(),
            "body exceeds the configured size limit of 10 bytes"
        );
    }
}
