//! The management client's error: one opaque type with a closed set of kinds.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Map, Value};

/// The largest part of NotMeta's error body an [`Error`] keeps, in bytes.
pub(super) const MAX_KEPT_BODY: usize = 4 * 1024;

/// What a redacted string is replaced with.
const REDACTED: &str = "<redacted>";

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
    /// `http(s)` URL (or a plain `http://` one to a host other than this machine, or
    /// one with a user name or password), an empty or unusable token, an empty
    /// webhook id. Never retried.
    #[error("invalid client configuration")]
    Config,
    /// No connection could be made (DNS, TCP or TLS), within the connect timeout.
    /// The request was not sent.
    #[error("could not connect to NotMeta")]
    Connect,
    /// No complete answer arrived within the request timeout or the call's deadline.
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
    /// than 16 MiB), or with a list this client cannot read whole.
    #[error("NotMeta's answer could not be read")]
    Decode,
}

/// A failed management API call.
///
/// It carries the [`ErrorKind`], the HTTP status and NotMeta's answer body when there
/// was one (at most 4 KiB of it), and how many attempts were made. It never contains
/// the API token nor the webhook secret the call sent, in any form NotMeta may echo
/// them (as sent, JSON-escaped, percent-encoded): they are replaced by `<redacted>`.
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
    retry_after: Option<Duration>,
    may_have_created: bool,
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
            retry_after: None,
            may_have_created: false,
            source: None,
        }
    }

    pub(super) fn config(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, detail)
    }

    /// An answer with a status other than 2xx: `body` is what was read of it (at
    /// most a little more than [`MAX_KEPT_BODY`]; `complete` when it is all of it),
    /// `total` its full length when known. Every sensitive string is scrubbed before
    /// the body is cut.
    pub(super) fn status_answer(
        endpoint: &str,
        status: StatusCode,
        body: &[u8],
        complete: bool,
        total: Option<u64>,
        sensitive: &Redactor,
    ) -> Self {
        let body = kept_body(&sensitive.body(body, !complete), total, !complete);
        let mut message = format!("{}: {endpoint} answered {status}", ErrorKind::Status);
        if !body.is_empty() {
            message.push_str(": ");
            message.push_str(&body);
        }
        Self {
            message,
            status: Some(status),
            body: Some(body),
            ..Self::new(ErrorKind::Status, "")
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

    /// Records the wait NotMeta asked for with `Retry-After`.
    pub(super) fn set_retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// Records the wait NotMeta asked for, and why it was not waited.
    pub(super) fn with_retry_after(mut self, wait: Duration, why_not_waited: &str) -> Self {
        self.retry_after = Some(wait);
        self.message.push_str(&format!(
            " (NotMeta asked to retry in {}; not retried: {why_not_waited})",
            seconds(wait)
        ));
        self
    }

    /// Marks an error of a creation that may nevertheless have created the webhook.
    pub(super) fn creation_may_have_acted(mut self) -> Self {
        self.may_have_created = true;
        self
    }

    /// Scrubs every sensitive string from the message (a decoding error quotes the
    /// values it could not read).
    pub(super) fn redacted(mut self, sensitive: &Redactor) -> Self {
        self.message = sensitive.text(&self.message);
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
    /// most, with a note of the full size when longer. Only that much of the answer
    /// is read. A JSON body that echoed the token or the secret sent is shown
    /// re-serialised, with them replaced by `<redacted>`.
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

    /// The wait NotMeta asked for with `Retry-After` (429, 503) in the answer this
    /// error reports. A call does not wait one longer than
    /// [`max_backoff`](super::ClientBuilder::max_backoff), or ending past its
    /// [`deadline`](super::ClientBuilder::deadline): it fails at once, and the
    /// message says so. Try again after it.
    ///
    /// ```no_run
    /// # async fn run(client: notmeta_webhooks::client::Client) {
    /// if let Err(e) = client.list_webhooks().await {
    ///     if let Some(wait) = e.retry_after() {
    ///         eprintln!("NotMeta asks to wait {wait:?}");
    ///     }
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether this is the failure of a creation (`POST /webhooks`) that may
    /// nevertheless have created the webhook: a 5xx, a timeout or a connection lost
    /// after sending. List the webhooks before creating again;
    /// [`Client::ensure_webhook`](super::Client::ensure_webhook) does.
    ///
    /// ```
    /// # let e = notmeta_webhooks::client::Client::builder("").build().unwrap_err();
    /// assert!(!e.may_have_created());
    /// ```
    #[must_use]
    pub fn may_have_created(&self) -> bool {
        self.may_have_created
    }

    pub(super) fn set_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }
}

/// A duration as people write it: `30 s`, `1.5 s`, `250 ms`.
pub(super) fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The strings a call must never show (the token; the secret a creation sends), and
/// how to scrub them from what NotMeta answers.
#[derive(Clone, Default)]
pub(super) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Scrubs `secrets` (empty ones ignored), longest first.
    pub(super) fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    /// The longest form a secret may take in a body (all escaped as `\u00XX`).
    pub(super) fn longest_form(&self) -> usize {
        self.secrets.first().map_or(0, |s| 6 * s.len())
    }

    /// An answer body as text to show: a JSON body is parsed and every string (and
    /// key) scrubbed, so every escaped form JSON allows is covered; when that
    /// changed anything the body is shown re-serialised. Anything else (or a body
    /// `cut_short`, which does not parse) is scrubbed as text, its JSON string
    /// literals decoded.
    pub(super) fn body(&self, body: &[u8], cut_short: bool) -> String {
        if !cut_short && let Ok(value) = serde_json::from_slice::<Value>(body) {
            let scrubbed = self.value(value.clone());
            // Unchanged: no string holds a secret, and the body is shown as sent
            // (scrubbed as text all the same, for a number or a key).
            if scrubbed != value {
                return self.text(&serde_json::to_string(&scrubbed).unwrap_or_default());
            }
        }
        let text = String::from_utf8_lossy(body);
        self.text(&self.json_strings(&text))
    }

    /// `text` (not JSON as a whole: JSON cut short, several JSON documents, JSON in
    /// HTML) with every JSON string literal in it that decodes to something holding
    /// a secret written again, scrubbed: escapes of every kind are covered.
    fn json_strings(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('"') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let mut end = None;
            let mut escaped = false;
            for (i, b) in after.bytes().enumerate() {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let Some(end) = end else {
                rest = &rest[open..];
                break;
            };
            let literal = &rest[open..open + end + 2];
            let scrubbed = serde_json::from_str::<String>(literal)
                .ok()
                .map(|decoded| self.text(&decoded))
                .filter(|scrubbed| scrubbed.contains(REDACTED))
                .and_then(|scrubbed| serde_json::to_string(&scrubbed).ok());
            out.push_str(scrubbed.as_deref().unwrap_or(literal));
            rest = &rest[open + end + 2..];
        }
        out.push_str(rest);
        out
    }

    fn value(&self, value: Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.text(&s)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.value(v)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.text(&k), self.value(v)))
                    .collect::<Map<_, _>>(),
            ),
            other => other,
        }
    }

    /// `text` with every secret replaced, as sent and in the forms an echo takes:
    /// JSON-escaped (as serde_json writes it, with `\/`, and as `\u00XX`), and
    /// percent-encoded.
    pub(super) fn text(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            for form in forms(secret) {
                if text.contains(&form) {
                    text = text.replace(&form, REDACTED);
                }
            }
        }
        text
    }
}

/// The forms `secret` may take in a body that echoes it.
fn forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json[1..json.len() - 1].to_owned();
    let json_slash = json.replace('/', "\\/");
    let unicode = |upper: bool| {
        secret
            .chars()
            .map(|c| match c {
                c if c.is_ascii_alphanumeric() => c.to_string(),
                c => c
                    .encode_utf16(&mut [0; 2])
                    .iter()
                    .map(|u| {
                        if upper {
                            format!("\\u{u:04X}")
                        } else {
                            format!("\\u{u:04x}")
                        }
                    })
                    .collect(),
            })
            .collect::<String>()
    };
    let percent = |upper: bool| {
        secret
            .bytes()
            .map(|b| match b {
                b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => char::from(b).to_string(),
                b if upper => format!("%{b:02X}"),
                b => format!("%{b:02x}"),
            })
            .collect::<String>()
    };
    let mut all = vec![
        secret.to_owned(),
        json,
        json_slash,
        unicode(false),
        unicode(true),
        percent(true),
        percent(false),
        percent(true).replace("%20", "+"),
    ];
    all.sort();
    all.dedup();
    all.sort_by_key(|f| std::cmp::Reverse(f.len()));
    all
}

/// The body cut to [`MAX_KEPT_BODY`] bytes on a character boundary, with a note of
/// its full size when longer.
fn kept_body(text: &str, total: Option<u64>, cut_short: bool) -> String {
    let text = text.trim();
    if text.len() <= MAX_KEPT_BODY && !cut_short {
        return text.to_owned();
    }
    let mut end = MAX_KEPT_BODY.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match total {
        Some(total) => format!("{}… ({total} bytes in all)", &text[..end]),
        None => format!("{}… (cut)", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &[u8], secrets: &[&str]) -> Error {
        let total = Some(body.len() as u64);
        Error::status_answer(
            "GET /x",
            StatusCode::BAD_REQUEST,
            body,
            true,
            total,
            &Redactor::new(secrets.iter().copied()),
        )
    }

    #[test]
    fn the_body_is_cut_and_scrubbed() {
        let err = answer(br#"{"error":"bad token tok_secret"}"#, &["tok_secret"]);
        assert_eq!(err.body(), Some(r#"{"error":"bad token <redacted>"}"#));
        assert!(!err.to_string().contains("tok_secret"));

        let long = "é".repeat(5000);
        let err = answer(long.as_bytes(), &["t"]);
        let body = err.body().unwrap();
        assert!(body.len() < MAX_KEPT_BODY + 40);
        assert!(body.ends_with("… (10000 bytes in all)"));
    }

    #[test]
    fn every_escaped_form_is_scrubbed() {
        let secret = "a/b<c> \"d\"é";
        let json_forms = [
            r#"{"k":"a\/b<c> \"d\"é"}"#,
            r#"{"k":"a\u002fb\u003cc\u003e\u0020\u0022d\u0022\u00e9"}"#,
            r#"{"a\/b\u003Cc> \"d\"\u00E9":1}"#,
        ];
        for body in json_forms {
            let err = answer(body.as_bytes(), &[secret]);
            assert!(err.body().unwrap().contains(REDACTED), "{body}: {err}");
            assert!(!err.to_string().contains("b<c"), "{body}: {err}");
        }
        for text in [
            "plain a/b<c> \"d\"é,",
            r#"escaped a\/b<c> \"d\"é,"#,
            r#"json a/b<c> \"d\"é,"#,
            "percent a%2Fb%3Cc%3E%20%22d%22%C3%A9 a%2fb%3cc%3e%20%22d%22%c3%a9,",
            "form a%2Fb%3Cc%3E+%22d%22%C3%A9,",
            r#"unicode a\u002fb\u003cc\u003e\u0020\u0022d\u0022\u00e9 a\u002Fb\u003Cc\u003E\u0020\u0022d\u0022\u00E9"#,
        ] {
            let err = answer(text.as_bytes(), &[secret]);
            let body = err.body().unwrap();
            assert!(
                !body.contains("b<c")
                    && !body.contains("2Fb")
                    && !body.contains("2fb")
                    && !body.contains("u002"),
                "{text}: {body}"
            );
        }
    }

    #[test]
    fn a_decode_message_is_scrubbed() {
        let e = serde_json::from_str::<u8>(r#""whsec_sent""#).unwrap_err();
        let err =
            Error::new(ErrorKind::Decode, e.to_string()).redacted(&Redactor::new(["whsec_sent"]));
        assert!(!err.to_string().contains("whsec_sent"), "{err}");
    }
}
