//! The management client's error: one opaque type with a closed set of kinds.

use http::StatusCode;

/// The largest part of NotMeta's error body an [`Error`] keeps, in bytes.
const MAX_KEPT_BODY: usize = 4 * 1024;

/// What went wrong with a management API call.
///
/// ```
/// use notmeta_webhooks::client::ErrorKind;
/// assert_eq!(ErrorKind::Status.to_string(), "NotMeta refused the request");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The client or the call is misconfigured: a base URL that is not an absolute
    /// `http(s)` URL, an empty or unusable token, an empty webhook id. Never retried.
    #[error("invalid client configuration")]
    Config,
    /// No connection could be made (DNS, TCP or TLS), within the connect timeout.
    /// The request was not sent.
    #[error("could not connect to NotMeta")]
    Connect,
    /// No complete answer arrived within the request timeout.
    #[error("NotMeta did not answer in time")]
    Timeout,
    /// The connection failed after the request was sent, or while reading the answer.
    #[error("the connection to NotMeta failed")]
    Transport,
    /// NotMeta answered with a status other than 2xx; [`Error::status`] and
    /// [`Error::body`] tell what it said.
    #[error("NotMeta refused the request")]
    Status,
    /// NotMeta answered 2xx, but not with the JSON this call expects (or with more
    /// than 16 MiB).
    #[error("NotMeta's answer could not be read")]
    Decode,
}

/// A failed management API call.
///
/// It carries the [`ErrorKind`], the HTTP status and NotMeta's answer body when there
/// was one (at most 4 KiB of it), and how many attempts were made. It never contains
/// the API token: should NotMeta echo it, it is replaced by `<redacted>`.
///
/// ```no_run
/// use notmeta_webhooks::client::{Client, ErrorKind};
///
/// # async fn run() -> Result<(), notmeta_webhooks::client::Error> {
/// let client = Client::new("token")?;
/// match client.webhook_stats("wh_123456789").await {
///     Ok(stats) => println!("{stats}"),
///     Err(e) if e.kind() == ErrorKind::Status => {
///         eprintln!("{:?}: {}", e.status(), e.body().unwrap_or_default());
///     }
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    status: Option<StatusCode>,
    body: Option<String>,
    attempts: u32,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(super) fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self {
            message: format!("{kind}: {detail}"),
            kind,
            status: None,
            body: None,
            attempts: 0,
            source: None,
        }
    }

    pub(super) fn config(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, detail)
    }

    /// An answer with a status other than 2xx. `token` is scrubbed from the body.
    pub(super) fn status_answer(
        endpoint: &str,
        status: StatusCode,
        body: &[u8],
        token: &str,
    ) -> Self {
        let body = kept_body(body, token);
        let mut message = format!("{}: {endpoint} answered {status}", ErrorKind::Status);
        if !body.is_empty() {
            message.push_str(": ");
            message.push_str(&body);
        }
        Self {
            kind: ErrorKind::Status,
            message,
            status: Some(status),
            body: Some(body),
            attempts: 0,
            source: None,
        }
    }

    pub(super) fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    pub(super) fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        if attempts > 1 {
            self.message
                .push_str(&format!(" (after {attempts} attempts)"));
        }
        self
    }

    /// What went wrong.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The status NotMeta answered with, for [`ErrorKind::Status`] (and for
    /// [`ErrorKind::Decode`] of a 2xx answer).
    #[must_use]
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// NotMeta's answer body for [`ErrorKind::Status`], as text: its first 4 KiB at
    /// most, with a note of the full size when longer.
    #[must_use]
    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }

    /// How many requests were sent or tried for this call (1 when it was not
    /// retried); 0 when the call failed before any request, such as for
    /// [`ErrorKind::Config`].
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub(super) fn set_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }
}

/// The body as text, without the token, cut to [`MAX_KEPT_BODY`] bytes on a character
/// boundary.
fn kept_body(body: &[u8], token: &str) -> String {
    let text = String::from_utf8_lossy(body);
    let text = if token.is_empty() {
        text.into_owned()
    } else {
        text.replace(token, "<redacted>")
    };
    let text = text.trim();
    if text.len() <= MAX_KEPT_BODY {
        return text.to_owned();
    }
    let mut end = MAX_KEPT_BODY;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_cut_and_scrubbed() {
        let err = Error::status_answer(
            "GET /webhooks",
            StatusCode::UNAUTHORIZED,
            br#"{"error":"bad token tok_secret"}"#,
            "tok_secret",
        );
        assert_eq!(err.body(), Some(r#"{"error":"bad token <redacted>"}"#));
        assert!(!err.to_string().contains("tok_secret"));

        let long = "é".repeat(5000);
        let err = Error::status_answer("GET /x", StatusCode::BAD_GATEWAY, long.as_bytes(), "t");
        let body = err.body().unwrap();
        assert!(body.len() < MAX_KEPT_BODY + 40);
        assert!(body.ends_with("… (10000 bytes in all)"));
    }
}
