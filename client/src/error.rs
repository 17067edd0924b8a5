//! The management client's error: one opaque type with a closed set of kinds.

use std::time::Duration;

use http::StatusCode;
use std::borrow::Cow;

/// The largest part of NotMeta's error body an [`Error`] keeps, in bytes.
pub(super) const MAX_KEPT_BODY: usize = 4 * 1024;

/// What a redacted string is replaced with.
const REDACTED: &str = "<redacted>";

/// What went wrong with a management API call.
///
/// ```
/// use notmeta_webhooks_client::ErrorKind;
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
/// them (as sent, JSON-escaped, percent-encoded, or a mixture: see [`redact`]),
/// whether in NotMeta's body or in a URL NotMeta gave for a next page: they are
/// replaced by `<redacted>`.
///
/// ```no_run
/// use notmeta_webhooks_client::{Client, ErrorKind};
///
/// # async fn run() -> Result<(), notmeta_webhooks_client::Error> {
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
        let body = sensitive.body(body, total, !complete);
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

    /// Adds a sentence to the message.
    pub(super) fn with_note(mut self, note: &str) -> Self {
        self.message.push_str(&format!(" ({note})"));
        self
    }

    /// Marks an error of a creation that may nevertheless have created the webhook.
    pub(super) fn creation_may_have_acted(mut self) -> Self {
        self.may_have_created = true;
        self
    }

    /// Scrubs every sensitive string from the message, the body and the sources'
    /// messages: every error a call returns passes here (an endpoint may carry a
    /// next page's URL, a decoding error quotes what it could not read). A source
    /// whose messages held one is replaced by its scrubbed text.
    pub(super) fn redacted(mut self, sensitive: &Redactor) -> Self {
        self.message = sensitive.text(&self.message);
        self.body = self.body.map(|b| sensitive.text(&b));
        if let Some(source) = &self.source {
            let mut chain = Vec::new();
            let mut next: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
            while let Some(e) = next {
                chain.push(e.to_string());
                next = e.source();
            }
            let chain = chain.join(": ");
            let scrubbed = sensitive.text(&chain);
            if scrubbed != chain {
                self.source = Some(Box::new(Scrubbed(scrubbed)));
            }
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
    /// most, with a note of the full size when longer. Only that much of the answer
    /// is read. The token and the secret sent are replaced by `<redacted>` wherever
    /// NotMeta echoed them (see [`redact`]); the rest is shown as sent, and a body
    /// cut short never ends with the beginning of one of them.
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
    /// # async fn run(client: notmeta_webhooks_client::Client) {
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
    /// nevertheless have created the webhook: a 5xx, a 3xx, a 2xx answer that
    /// cannot be read (no secret, not JSON, empty), a timeout or a connection lost
    /// after sending. List the webhooks before creating again;
    /// [`Client::ensure_webhook`](super::Client::ensure_webhook) does.
    ///
    /// ```
    /// # let e = notmeta_webhooks_client::Client::builder("").build().unwrap_err();
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

/// A source error's messages, scrubbed.
#[derive(Debug)]
struct Scrubbed(String);

impl std::fmt::Display for Scrubbed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Scrubbed {}

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
    /// Scrubs `secrets` (empty ones ignored).
    pub(super) fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let secrets = secrets
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Self { secrets }
    }

    fn refs(&self) -> Vec<&str> {
        self.secrets.iter().map(String::as_str).collect()
    }

    /// The most bytes a secret may take in a body, every character written in its
    /// longest escaped form (`\uD83D\uDE00`, `%E2%82%AC`, `\u002f`).
    pub(super) fn longest_form(&self) -> usize {
        self.secrets
            .iter()
            .map(|s| {
                s.chars()
                    .map(|c| {
                        if c.len_utf8() == 4 {
                            12
                        } else {
                            6.max(3 * c.len_utf8())
                        }
                    })
                    .sum::<usize>()
            })
            .max()
            .unwrap_or(0)
    }

    /// `text` with every secret replaced by `<redacted>`, in whatever escaped form
    /// it takes (see [`redact`]).
    pub(super) fn text(&self, text: &str) -> String {
        redact(text, &self.refs()).into_owned()
    }

    /// What an error keeps of an answer body: the body as read (when `cut_short`,
    /// without its last [`longest_form`](Self::longest_form) bytes, where a secret
    /// may have been cut), scrubbed, then cut to [`MAX_KEPT_BODY`] bytes so that it
    /// never ends with the beginning of a secret.
    pub(super) fn body(&self, body: &[u8], total: Option<u64>, cut_short: bool) -> String {
        let read = if cut_short {
            &body[..body.len().saturating_sub(self.longest_form())]
        } else {
            body
        };
        let text = String::from_utf8_lossy(read);
        let text = redact(&text, &self.refs());
        let cut = cut_short || text.len() > MAX_KEPT_BODY;
        let mut end = MAX_KEPT_BODY.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let kept = if cut {
            safe_end(&text[..end], &self.refs())
        } else {
            &text[..]
        };
        let kept = kept.trim();
        if !cut {
            return kept.to_owned();
        }
        match total {
            Some(total) => format!("{kept}… ({total} bytes in all)"),
            None => format!("{kept}… (cut)"),
        }
    }
}

/// `text` with every occurrence of each `sensitive` string replaced by
/// `<redacted>`, as written and in every escaped form an echo may take, mixed as
/// it likes: JSON escapes (`\u00e9`, surrogate pairs, `\/`, `\"`, `\\`, `\n`…),
/// percent-encoding of UTF-8 bytes (either case, `+` for a space), or raw.
///
/// The text is decoded, each decoded character remembering the raw bytes it came
/// from, and decoded again up to three layers deep (an escape written inside
/// another: `%5Cu0041`, `%252F`); a sensitive string found in any layer has those
/// raw bytes replaced. Each layer is searched in linear time. Everything else is kept exactly as written,
/// JSON or not, string literals closed or not. Empty sensitive strings are
/// ignored; the text is borrowed back unchanged when nothing matched.
///
/// The management client's errors pass through it with the API token and the
/// secret a call sent; use it to show other text that came from NotMeta.
///
/// ```
/// use notmeta_webhooks_client::redact;
///
/// let sensitive = ["tok_live_1", "s/cr\"t"];
/// assert_eq!(redact(r#"{"auth":"Bearer tok_live_1"}"#, &sensitive), r#"{"auth":"Bearer <redacted>"}"#);
/// assert_eq!(redact(r#"echo: "s\/cr\u0022t""#, &sensitive), r#"echo: "<redacted>""#);
/// assert_eq!(redact("?secret=s%2Fcr%22t&x=1", &sensitive), "?secret=<redacted>&x=1");
/// assert_eq!(redact("nothing here", &sensitive), "nothing here");
/// ```
pub fn redact<'a>(text: &'a str, sensitive: &[&str]) -> Cow<'a, str> {
    let secrets: Vec<&str> = sensitive
        .iter()
        .copied()
        .filter(|s| !s.is_empty())
        .collect();
    if secrets.is_empty() || text.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for mode in MODES {
        for units in layers(text, mode) {
            find(&units, &secrets, &mut spans);
        }
    }
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    let mut current: Option<(usize, usize)> = None;
    for (start, end) in spans {
        match &mut current {
            Some((_, e)) if start <= *e => *e = (*e).max(end),
            _ => {
                if let Some((s, e)) = current.take() {
                    out.push_str(&text[done..s]);
                    out.push_str(REDACTED);
                    done = e;
                }
                current = Some((start, end));
            }
        }
    }
    if let Some((s, e)) = current {
        out.push_str(&text[done..s]);
        out.push_str(REDACTED);
        done = e;
    }
    out.push_str(&text[done..]);
    Cow::Owned(out)
}

/// Which escapes a scan decodes: JSON's, percent-encoding's, and `+` as a space.
/// Every combination is scanned, so that a secret written raw (with a `\n`, a `%41`
/// or a `+` of its own) is found as well as an escaped one.
type Mode = (bool, bool, bool);
const MODES: [Mode; 6] = [
    (true, true, true),
    (true, true, false),
    (true, false, false),
    (false, true, true),
    (false, true, false),
    (false, false, false),
];

/// How many times escapes are decoded again: an escape written inside another
/// (`%5Cu0041`, `\u0025` and hex, `%252F`) is read through this many layers.
const LAYERS: usize = 3;

/// One decoded character and the raw bytes `start..end` it came from.
#[derive(Debug, Clone, Copy)]
struct Unit {
    c: char,
    start: usize,
    end: usize,
}

/// `text` as characters, then decoded once, twice… up to [`LAYERS`] times in
/// `mode`, for as long as a layer decodes something.
fn layers(text: &str, mode: Mode) -> Vec<Vec<Unit>> {
    let raw: Vec<Unit> = text
        .char_indices()
        .map(|(start, c)| Unit {
            c,
            start,
            end: start + c.len_utf8(),
        })
        .collect();
    let mut all = vec![raw];
    for _ in 0..LAYERS {
        match decode(&all[all.len() - 1], mode) {
            Some(next) => all.push(next),
            None => break,
        }
    }
    all
}

/// The raw spans of every occurrence of a secret in `units`: a linear search of
/// their text (`str::match_indices`), each match mapped back to its raw bytes.
fn find(units: &[Unit], secrets: &[&str], spans: &mut Vec<(usize, usize)>) {
    let mut text = String::with_capacity(units.len());
    let mut unit_at = Vec::with_capacity(units.len());
    for (k, u) in units.iter().enumerate() {
        text.push(u.c);
        unit_at.extend(std::iter::repeat_n(k, u.c.len_utf8()));
    }
    for secret in secrets {
        for (at, _) in text.match_indices(secret) {
            let (first, last) = (unit_at[at], unit_at[at + secret.len() - 1]);
            spans.push((units[first].start, units[last].end));
        }
    }
}

/// `units` with the escapes of `mode` decoded, or `None` when there were none.
fn decode(units: &[Unit], (json, percent, plus): Mode) -> Option<Vec<Unit>> {
    let mut out = Vec::with_capacity(units.len());
    let mut changed = false;
    let mut i = 0;
    while i < units.len() {
        let escaped = json
            .then(|| json_escape(units, i))
            .flatten()
            .or_else(|| percent.then(|| percent_escape(units, i)).flatten())
            .or_else(|| (plus && units[i].c == '+').then_some((' ', 1)));
        match escaped {
            Some((c, len)) => {
                out.push(Unit {
                    c,
                    start: units[i].start,
                    end: units[i + len - 1].end,
                });
                changed = true;
                i += len;
            }
            None => {
                out.push(units[i]);
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

/// The value of `units[from..from + n]` as hex digits.
fn hex(units: &[Unit], from: usize, n: usize) -> Option<u32> {
    let digits = units.get(from..from + n)?;
    digits
        .iter()
        .try_fold(0, |value, u| Some(value * 16 + u.c.to_digit(16)?))
}

/// Whether `units[at]` is `c`.
fn is(units: &[Unit], at: usize, c: char) -> bool {
    units.get(at).is_some_and(|u| u.c == c)
}

/// The JSON escape at `i`, decoded, and how many units it takes.
fn json_escape(units: &[Unit], i: usize) -> Option<(char, usize)> {
    if !is(units, i, '\\') {
        return None;
    }
    let c = match units.get(i + 1)?.c {
        '"' => '"',
        '\\' => '\\',
        '/' => '/',
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'u' => {
            let high = hex(units, i + 2, 4)?;
            if !(0xD800..0xDC00).contains(&high) {
                return Some((char::from_u32(high)?, 6));
            }
            if !(is(units, i + 6, '\\') && is(units, i + 7, 'u')) {
                return None;
            }
            let low = hex(units, i + 8, 4)?;
            if !(0xDC00..0xE000).contains(&low) {
                return None;
            }
            let c = char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?;
            return Some((c, 12));
        }
        _ => return None,
    };
    Some((c, 2))
}

/// The percent-encoded UTF-8 character at `i`, decoded, and how many units it takes.
fn percent_escape(units: &[Unit], i: usize) -> Option<(char, usize)> {
    let byte = |at: usize| -> Option<u8> {
        if !is(units, at, '%') {
            return None;
        }
        u8::try_from(hex(units, at + 1, 2)?).ok()
    };
    let first = byte(i)?;
    let n = match first {
        0..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let mut bytes = [first, 0, 0, 0];
    for (k, slot) in bytes.iter_mut().enumerate().take(n).skip(1) {
        *slot = byte(i + 3 * k)?;
    }
    let c = std::str::from_utf8(&bytes[..n]).ok()?.chars().next()?;
    Some((c, 3 * n))
}

/// Whether `units` starts with `secret`, character for character.
fn starts_with(units: &[Unit], secret: &[char]) -> bool {
    secret.len() <= units.len() && secret.iter().zip(units).all(|(c, u)| u.c == *c)
}

/// `text` without an end that may be the beginning of a secret: an escape left
/// incomplete (`\u00`, `%C3`, a lone high surrogate), or the first 4 or more
/// characters of a sensitive string, in any form [`redact`] reads.
fn safe_end<'a>(text: &'a str, sensitive: &[&str]) -> &'a str {
    let secrets: Vec<Vec<char>> = sensitive.iter().map(|s| s.chars().collect()).collect();
    let mut text = text;
    loop {
        let before = text.len();
        for mode in MODES {
            let mut all = layers(text, mode);
            let units = all.pop().unwrap_or_default();
            // An escape character near the end that decoded to nothing: incomplete.
            if let Some(u) = units.iter().rev().take(12).find(|u| {
                let rest = &text.as_bytes()[u.start..];
                let escape_like =
                    |b: &u8| b.is_ascii_hexdigit() || matches!(b, b'\\' | b'u' | b'%');
                u.end - u.start == 1
                    && rest.len() < 12
                    && rest[1..].iter().all(escape_like)
                    && ((mode.0 && u.c == '\\') || (mode.1 && u.c == '%'))
            }) {
                text = &text[..u.start];
                break;
            }
            for secret in &secrets {
                let longest = (secret.len().saturating_sub(1)).min(units.len());
                if let Some(k) = (4..=longest)
                    .rev()
                    .find(|&k| starts_with(&units[units.len() - k..], &secret[..k]))
                {
                    text = &text[..units[units.len() - k].start];
                    break;
                }
            }
            if text.len() != before {
                break;
            }
        }
        if text.len() == before {
            return text;
        }
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

    /// A small deterministic generator, for the property-style loops below.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) as usize) % n
        }
    }

    /// `c` written in one of the forms its style allows, chosen by `rng`.
    fn escaped(c: char, json: bool, percent: bool, rng: &mut Lcg) -> String {
        let mut forms = Vec::new();
        let never_raw = (json && matches!(c, '\\' | '"')) || (percent && c == '%');
        if !never_raw {
            forms.push(c.to_string());
        }
        if json {
            let units: Vec<u16> = c.encode_utf16(&mut [0; 2]).to_vec();
            forms.push(units.iter().map(|u| format!("\\u{u:04x}")).collect());
            forms.push(units.iter().map(|u| format!("\\u{u:04X}")).collect());
            match c {
                '/' => forms.push("\\/".into()),
                '"' => forms.push("\\\"".into()),
                '\\' => forms.push("\\\\".into()),
                '\n' => forms.push("\\n".into()),
                _ => {}
            }
        }
        if percent {
            let mut buf = [0; 4];
            let bytes = c.encode_utf8(&mut buf).as_bytes();
            forms.push(bytes.iter().map(|b| format!("%{b:02X}")).collect());
            forms.push(bytes.iter().map(|b| format!("%{b:02x}")).collect());
            if c == ' ' {
                forms.push("+".into());
            }
        }
        forms.swap_remove(rng.next(forms.len()))
    }

    #[test]
    fn every_mixture_of_escapes_is_scrubbed_and_the_rest_kept() {
        let alphabet: Vec<char> = "/<>&\"é\\%ab1 😀\n".chars().collect();
        let mut rng = Lcg(7);
        for round in 0..4000 {
            let len = 4 + rng.next(12);
            let secret: String = (0..len)
                .map(|_| alphabet[rng.next(alphabet.len())])
                .collect();
            let (json, percent) = [(true, false), (false, true), (true, true)][round % 3];
            let written: String = secret
                .chars()
                .map(|c| escaped(c, json, percent, &mut rng))
                .collect();
            let before = ["{\"k\":\"", "x=", "<p>", ""][rng.next(4)];
            let after = ["\",\"n\":1}", "&y=2", "</p>", ""][rng.next(4)];
            let text = format!("{before}{written}{after}");
            let shown = redact(&text, &[&secret, "unrelated_token"]);
            assert_eq!(
                shown,
                format!("{before}<redacted>{after}"),
                "secret {secret:?} written {written:?}"
            );
        }
    }

    #[test]
    fn styles_seen_in_the_wild_are_scrubbed() {
        let secret = "s\"é/cret<&>";
        for text in [
            // Go's encoding/json: <, >, & escaped, / raw; the body cut short.
            r#"{"error":"bad","echo":"s\"\u00e9/cret\u003c\u0026\u003e","more":"#,
            // Python-style, not JSON.
            r#"echo=s\"\u00e9/cret<&> end"#,
            "q=s%22%C3%A9%2Fcret%3C%26%3E",
            "q=s%22%c3%a9/cret%3c&%3e",
        ] {
            let shown = redact(text, &[secret]);
            assert!(shown.contains(REDACTED), "{text}: {shown}");
            assert!(!shown.contains("cret"), "{text}: {shown}");
        }
        assert!(matches!(
            redact("plain", &["secret"]),
            Cow::Borrowed("plain")
        ));
        assert_eq!(redact("a+b c", &["a b"]), "<redacted> c");
        assert_eq!(redact("x", &[""]), "x");
    }

    #[test]
    fn an_escape_inside_another_is_read_through() {
        for (text, secret) in [
            ("%5Cu0041BCD", "ABCD"),
            ("\\u002541\\u002542\\u002543", "ABC"),
            ("a%5C%22b", "a\"b"),
            ("a%252Fb", "a/b"),
            ("a\\u005cu002fb", "a/b"),
            (
                "next=%2Flogin%3Ftoken%3Dtok%255Flive%255Fxyz",
                "tok_live_xyz",
            ),
            ("%5Cu0074ok_live_xyz", "tok_live_xyz"),
        ] {
            let shown = redact(text, &[secret]);
            assert!(shown.contains(REDACTED), "{text}: {shown}");
        }
    }

    #[test]
    fn a_secret_that_repeats_itself_is_found_once_and_whole() {
        // Text that almost matches everywhere (a search restarting at each position
        // would compare about 64 Ki × 2 Ki characters): one match, no partial one.
        let secret = format!("{}b", "a".repeat(2000));
        let text = "a".repeat(64 * 1024);
        assert_eq!(redact(&text, &[&secret]), text);
        let text = format!("{text}b{text}");
        let shown = redact(&text, &[&secret]);
        assert_eq!(shown.matches(REDACTED).count(), 1);
        assert!(!shown.contains(&secret));
    }

    #[test]
    fn a_body_cut_never_ends_with_the_beginning_of_a_secret() {
        let token = "tok_live_0123456789abcdef0123456789abcdef";
        let redactor = Redactor::new([token]);
        let mut rng = Lcg(11);
        for pad in (MAX_KEPT_BODY - 60..MAX_KEPT_BODY + 10)
            .step_by(7)
            .chain([10, 100])
        {
            for cut in 1..token.len() {
                let form: String = token
                    .chars()
                    .map(|c| escaped(c, true, true, &mut rng))
                    .collect();
                let full = format!("{}{form}", " ".repeat(pad));
                // Read cut inside the token, the kept part cut at 4 KiB.
                let read = &full.as_bytes()[..pad + cut.min(form.len() - 1)];
                let kept = redactor.body(read, None, true);
                let text = kept.trim_end_matches("… (cut)");
                for k in 4..token.len() {
                    assert!(
                        !redact(text, &[&token[..k]]).contains(REDACTED),
                        "pad {pad} cut {cut}: {text:?} holds {:?}",
                        &token[..k]
                    );
                }
                // Whole, within the limit: scrubbed.
                if pad < 100 {
                    let whole = redactor.body(full.as_bytes(), None, false);
                    assert_eq!(whole, "<redacted>");
                }
            }
        }
        // A cut that is not near a secret keeps the text as read, not trimmed first.
        let body = format!("{}x{}", " ".repeat(MAX_KEPT_BODY - 1), "y".repeat(200));
        let kept = redactor.body(body.as_bytes(), Some(9999), false);
        assert!(
            kept.starts_with('x') && kept.ends_with("… (9999 bytes in all)"),
            "{kept}"
        );
    }
}
