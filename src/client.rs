//! A typed async client for NotMeta's management API: create webhooks,
//! list them, read their delivery logs and statistics.
//!
//! ```no_run
//! use notmeta_webhooks::client::{Client, CreateWebhook};
//! use notmeta_webhooks::EventType;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new(std::env::var("NOTMETA_TOKEN")?)?;
//! let ensured = client
//!     .ensure_webhook(&CreateWebhook::new(
//!         "https://example.com/webhook",
//!         [EventType::MessageReceived],
//!         std::env::var("NOTMETA_WEBHOOK_SECRET")?,
//!     ))
//!     .await?;
//! println!("{ensured}");
//! for webhook in client.list_webhooks().await?.webhooks {
//!     println!("{webhook}");
//! }
//! # Ok(()) }
//! ```
//!
//! # Transport
//!
//! HTTP/1.1 over rustls (the `ring` provider, Mozilla's roots from `webpki-roots`: no
//! system OpenSSL, no platform certificate store). Calls must run inside a Tokio
//! runtime. `http://` base URLs are accepted for local testing; the token then
//! travels in clear text.
//!
//! # Timeouts and retries
//!
//! | setting | default |
//! |---|---|
//! | [`connect_timeout`](ClientBuilder::connect_timeout) (DNS, TCP and TLS) | 10 s |
//! | [`timeout`](ClientBuilder::timeout) (one attempt, until the whole answer is read) | 30 s |
//! | [`max_retries`](ClientBuilder::max_retries) | 3 |
//! | [`initial_backoff`](ClientBuilder::initial_backoff), doubled after each retry (each wait a random point between half and all of it) | 500 ms |
//! | [`max_backoff`](ClientBuilder::max_backoff), also caps `Retry-After` | 30 s |
//!
//! | outcome | `GET` calls | `POST /webhooks` |
//! |---|---|---|
//! | 429 | retried after `Retry-After` (seconds or HTTP date), else the backoff | same |
//! | 5xx | retried (after `Retry-After` if sent) | **not retried** |
//! | no connection (request not sent) | retried | retried |
//! | timeout, connection lost after sending | retried | **not retried** |
//! | other 4xx | not retried | not retried |
//!
//! A `POST` that failed with a 5xx, a timeout or a lost connection may have created
//! the webhook: retrying it blindly could create a duplicate, so
//! [`Client::create_webhook`] leaves that decision to you. [`Client::ensure_webhook`]
//! is the safe path: it lists first, creates only when no webhook has the URL, and
//! after such a failure lists again before trying once more.

mod error;
mod model;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::de::DeserializeOwned;

pub use error::{Error, ErrorKind};
pub use model::{
    CreateWebhook, Ensured, LogEntry, Webhook, WebhookList, WebhookLogs, WebhookStats,
    WebhookSummary,
};

/// NotMeta's management API, `https://api.notmeta.com/v1`.
pub const DEFAULT_BASE_URL: &str = "https://api.notmeta.com/v1";

/// The largest answer read, 16 MiB.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client for NotMeta's management API.
///
/// Cheap to clone (clones share one connection pool). `Debug` never prints the token.
///
/// ```
/// use notmeta_webhooks::client::Client;
///
/// let client = Client::new("tok_live_123")?;
/// assert_eq!(client.base_url(), "https://api.notmeta.com/v1");
/// assert!(!format!("{client:?}").contains("tok_live_123"));
/// # Ok::<(), notmeta_webhooks::client::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: HyperClient<Connector, Full<Bytes>>,
    base_url: String,
    authorization: HeaderValue,
    token: String,
    settings: Settings,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    connect_timeout: Duration,
    timeout: Duration,
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.inner.settings;
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url)
            .field("token", &"<redacted>")
            .field("connect_timeout", &s.connect_timeout)
            .field("timeout", &s.timeout)
            .field("max_retries", &s.max_retries)
            .field("initial_backoff", &s.initial_backoff)
            .field("max_backoff", &s.max_backoff)
            .finish()
    }
}

/// Configures a [`Client`]: base URL, timeouts and retries.
///
/// ```
/// use std::time::Duration;
/// use notmeta_webhooks::client::Client;
///
/// let client = Client::builder("tok_live_123")
///     .base_url("http://127.0.0.1:8080/v1/")
///     .connect_timeout(Duration::from_secs(2))
///     .timeout(Duration::from_secs(5))
///     .max_retries(5)
///     .build()?;
/// assert_eq!(client.base_url(), "http://127.0.0.1:8080/v1");
///
/// assert!(Client::builder("tok").base_url("api.notmeta.com").build().is_err());
/// assert!(Client::builder("").build().is_err());
/// # Ok::<(), notmeta_webhooks::client::Error>(())
/// ```
#[must_use]
pub struct ClientBuilder {
    token: String,
    base_url: String,
    settings: Settings,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .field("settings", &self.settings)
            .finish()
    }
}

impl ClientBuilder {
    /// The API's base URL, default [`DEFAULT_BASE_URL`]. An absolute `https://` (or
    /// `http://`) URL; a trailing `/` is ignored.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// How long to wait for a connection (DNS, TCP and TLS), default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// How long one attempt may take, from sending the request to reading the whole
    /// answer (connecting included), default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// How many times a call is retried after its first attempt, default 3 (0
    /// disables retries). See the [module docs](self) for which failures are retried.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.settings.max_retries = retries;
        self
    }

    /// The wait before the first retry, doubled before each next one, default 500 ms.
    /// Each wait is a random point between half of it and all of it, so that
    /// clients that failed together do not retry together (a `Retry-After` is
    /// followed as sent).
    pub fn initial_backoff(mut self, wait: Duration) -> Self {
        self.settings.initial_backoff = wait;
        self
    }

    /// The longest wait between two attempts, default 30 s. A longer `Retry-After` is
    /// cut to this.
    pub fn max_backoff(mut self, wait: Duration) -> Self {
        self.settings.max_backoff = wait;
        self
    }

    /// Builds the client. Fails with [`ErrorKind::Config`] for a base URL that is not
    /// an absolute `http(s)` URL without query, or a token that is empty or not a
    /// valid header value (the error never shows the token).
    pub fn build(self) -> Result<Client, Error> {
        let base_url = parse_base_url(&self.base_url)?;
        let token = self.token.trim();
        if token.is_empty() {
            return Err(Error::config("the API token is empty"));
        }
        let mut authorization = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
            Error::config("the API token contains characters not allowed in a header")
        })?;
        authorization.set_sensitive(true);

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(self.settings.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| Error::config("TLS setup failed").with_source(e))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);

        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url,
                authorization,
                token: token.to_owned(),
                settings: self.settings,
            }),
        })
    }
}

fn parse_base_url(url: &str) -> Result<String, Error> {
    let bad = || Error::config("the base URL must be an absolute http(s) URL without a query");
    let trimmed = url.trim().trim_end_matches('/');
    let uri: Uri = trimmed.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("https" | "http"));
    let has_query = uri.query().is_some() || trimmed.ends_with('?');
    if !scheme_ok || uri.authority().is_none() || has_query || trimmed.contains('#') {
        return Err(bad());
    }
    Ok(trimmed.to_owned())
}

/// Which failures a call may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: 429, 5xx, connection failures and timeouts.
    Idempotent,
    /// Creation: only 429 and failures to connect, where NotMeta cannot have acted.
    NotSent,
}

impl Client {
    /// A client for NotMeta's API with `token` and the default settings.
    pub fn new(token: impl Into<String>) -> Result<Self, Error> {
        Self::builder(token).build()
    }

    /// Starts a [`ClientBuilder`] for `token`.
    pub fn builder(token: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            token: token.into(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            settings: Settings::default(),
        }
    }

    /// The base URL calls go to, without a trailing `/`.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// `POST /webhooks`: creates a webhook, and answers it with the secret NotMeta
    /// signs its deliveries with.
    ///
    /// Retried only where NotMeta cannot have created it (429, no connection). After
    /// a 5xx, a timeout or a lost connection the webhook may exist: list before
    /// trying again, or use [`Client::ensure_webhook`], which does.
    ///
    /// ```no_run
    /// use notmeta_webhooks::client::{Client, CreateWebhook};
    /// use notmeta_webhooks::EventType;
    ///
    /// # async fn run(client: Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let webhook = client
    ///     .create_webhook(&CreateWebhook::new(
    ///         "https://example.com/webhook",
    ///         [EventType::MessageReceived, EventType::ConversationAssigned],
    ///         "my_secret",
    ///     ))
    ///     .await?;
    /// let verifier = webhook.verifier()?; // keyed with NotMeta's `whsec_…` secret
    /// println!("created {webhook}");
    /// # Ok(()) }
    /// ```
    pub async fn create_webhook(&self, webhook: &CreateWebhook) -> Result<Webhook, Error> {
        let body = serde_json::to_vec(webhook)
            .map_err(|e| Error::config("the webhook could not be serialised").with_source(e))?;
        self.call(
            Method::POST,
            "/webhooks".to_owned(),
            Some(body),
            Retry::NotSent,
        )
        .await
    }

    /// `GET /webhooks`: every webhook and its state.
    ///
    /// ```no_run
    /// # async fn run(client: notmeta_webhooks::client::Client) -> Result<(), notmeta_webhooks::client::Error> {
    /// for webhook in client.list_webhooks().await?.webhooks {
    ///     println!("{webhook}"); // id, status, URL, events
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_webhooks(&self) -> Result<WebhookList, Error> {
        self.call(Method::GET, "/webhooks".to_owned(), None, Retry::Idempotent)
            .await
    }

    /// `GET /webhooks/{id}/logs`: the webhook's delivery logs.
    ///
    /// ```no_run
    /// # async fn run(client: notmeta_webhooks::client::Client) -> Result<(), notmeta_webhooks::client::Error> {
    /// print!("{}", client.webhook_logs("wh_123456789").await?);
    /// # Ok(()) }
    /// ```
    pub async fn webhook_logs(&self, id: &str) -> Result<WebhookLogs, Error> {
        let path = format!("/webhooks/{}/logs", path_segment(id)?);
        self.call(Method::GET, path, None, Retry::Idempotent).await
    }

    /// `GET /webhooks/{id}/stats`: the webhook's delivery statistics.
    ///
    /// ```no_run
    /// # async fn run(client: notmeta_webhooks::client::Client) -> Result<(), notmeta_webhooks::client::Error> {
    /// let stats = client.webhook_stats("wh_123456789").await?;
    /// println!("{:?}", stats.count("total_deliveries"));
    /// # Ok(()) }
    /// ```
    pub async fn webhook_stats(&self, id: &str) -> Result<WebhookStats, Error> {
        let path = format!("/webhooks/{}/stats", path_segment(id)?);
        self.call(Method::GET, path, None, Retry::Idempotent).await
    }

    /// Makes sure a webhook exists for the request's URL: the call for deploy scripts,
    /// safe to run again and again.
    ///
    /// Lists the webhooks; if one has exactly this URL it is returned as
    /// [`Ensured::Existing`], unchanged, with how its events differ from the requested
    /// ones (NotMeta documents no update call, so nothing is changed behind your
    /// back: check [`Ensured::events_match`]). Otherwise the webhook is created
    /// ([`Ensured::Created`]). When the creation fails in a way that may have created
    /// it anyway (5xx, timeout, lost connection), the list is read again before
    /// another try, within [`max_retries`](ClientBuilder::max_retries).
    ///
    /// Two runs at the same moment can still both create: run deploys one at a time.
    ///
    /// ```no_run
    /// use notmeta_webhooks::client::{Client, CreateWebhook, Ensured};
    /// use notmeta_webhooks::EventType;
    ///
    /// # async fn run(client: Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let request = CreateWebhook::new("https://example.com/webhook", [EventType::MessageReceived], "my_secret");
    /// match client.ensure_webhook(&request).await? {
    ///     Ensured::Created(webhook) => println!("store this secret: it is shown once ({})", webhook.id),
    ///     existing if !existing.events_match() => eprintln!("events differ: {existing}"),
    ///     existing => println!("{existing}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn ensure_webhook(&self, request: &CreateWebhook) -> Result<Ensured, Error> {
        let mut tries = 0;
        loop {
            let list = self.list_webhooks().await?;
            if let Some(found) = list.find_by_url(request.url()) {
                return Ok(Ensured::existing(found.clone(), request));
            }
            match self.create_webhook(request).await {
                Ok(created) => return Ok(Ensured::Created(created)),
                Err(e) if tries < self.inner.settings.max_retries && may_have_acted(&e) => {
                    tokio::time::sleep(self.jittered_backoff(tries)).await;
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One call with its retries, decoding a 2xx answer as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<Vec<u8>>,
        retry: Retry,
    ) -> Result<T, Error> {
        let endpoint = format!("{method} {path}");
        let uri = format!("{}{path}", self.inner.base_url);
        let body = Bytes::from(body.unwrap_or_default());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.attempt(&method, &uri, &body, &endpoint).await;
            // `Some(hint)` when this outcome may be retried, `hint` being `Retry-After`.
            let retry_after = match &outcome {
                Ok((status, _, _)) if status.is_success() => None,
                Ok((status, retry_after, _))
                    if *status == StatusCode::TOO_MANY_REQUESTS
                        || (status.is_server_error() && retry == Retry::Idempotent) =>
                {
                    Some(*retry_after)
                }
                Err(e) if e.kind() == ErrorKind::Connect => Some(None),
                Err(e)
                    if retry == Retry::Idempotent
                        && matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Transport) =>
                {
                    Some(None)
                }
                _ => None,
            };
            if let Some(retry_after) = retry_after
                && attempt <= self.inner.settings.max_retries
            {
                let wait = retry_after.map_or_else(
                    || self.jittered_backoff(attempt - 1),
                    |w| w.min(self.inner.settings.max_backoff),
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            return match outcome {
                Ok((status, _, bytes)) if status.is_success() => serde_json::from_slice(&bytes)
                    .map_err(|e| {
                        Error::new(ErrorKind::Decode, format!("{endpoint}: {e}"))
                            .set_status(status)
                            .with_attempts(attempt)
                    }),
                Ok((status, _, bytes)) => {
                    Err(
                        Error::status_answer(&endpoint, status, &bytes, &self.inner.token)
                            .with_attempts(attempt),
                    )
                }
                Err(e) => Err(e.with_attempts(attempt)),
            };
        }
    }

    /// One request under the request timeout: the status, the `Retry-After` wait and
    /// the whole body.
    async fn attempt(
        &self,
        method: &Method,
        uri: &str,
        body: &Bytes,
        endpoint: &str,
    ) -> Result<(StatusCode, Option<Duration>, Bytes), Error> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("notmeta-webhooks/", env!("CARGO_PKG_VERSION")),
            );
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let mut request = request
            .body(Full::new(body.clone()))
            .map_err(|e| Error::config(format!("{endpoint}: invalid request")).with_source(e))?;
        request
            .headers_mut()
            .insert(AUTHORIZATION, self.inner.authorization.clone());

        let exchange = async {
            let response = self.inner.http.request(request).await.map_err(|e| {
                let kind = if e.is_connect() {
                    ErrorKind::Connect
                } else {
                    ErrorKind::Transport
                };
                Error::new(kind, endpoint.to_owned()).with_source(e)
            })?;
            let (parts, body) = response.into_parts();
            let retry_after = parts
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let bytes = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        Error::new(
                            ErrorKind::Decode,
                            format!("{endpoint}: the answer is larger than 16 MiB"),
                        )
                        .set_status(parts.status)
                    } else {
                        Error::new(ErrorKind::Transport, endpoint.to_owned()).with_source(e)
                    }
                })?
                .to_bytes();
            Ok((parts.status, retry_after, bytes))
        };
        tokio::time::timeout(self.inner.settings.timeout, exchange)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{endpoint}: no complete answer within {:?}",
                        self.inner.settings.timeout
                    ),
                )
            })?
    }

    /// The longest wait before retry `retry` (from 0): the initial backoff doubled
    /// `retry` times, at most the maximum.
    fn backoff(&self, retry: u32) -> Duration {
        let s = &self.inner.settings;
        s.initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.min(31)))
            .min(s.max_backoff)
    }

    /// The wait before retry `retry`: a random point between half the
    /// [`backoff`](Self::backoff) and all of it, so that clients that failed
    /// together do not all retry at the same instant.
    fn jittered_backoff(&self, retry: u32) -> Duration {
        jitter(self.backoff(retry), random_fraction())
    }
}

/// `ceiling` scaled into `[ceiling / 2, ceiling]` by `fraction` (in `[0, 1)`).
fn jitter(ceiling: Duration, fraction: f64) -> Duration {
    let half = ceiling / 2;
    let spread = ceiling - half;
    let extra = Duration::try_from_secs_f64(spread.as_secs_f64() * fraction.clamp(0.0, 1.0))
        .unwrap_or(spread);
    half.saturating_add(extra).min(ceiling)
}

/// A random fraction in `[0, 1)`: the top 53 bits, exactly representable.
fn random_fraction() -> f64 {
    (crate::random::random_u64(0) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a failed creation may nevertheless have created the webhook.
fn may_have_acted(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::Timeout | ErrorKind::Transport => true,
        ErrorKind::Status => e.status().is_some_and(|s| s.is_server_error()),
        _ => false,
    }
}

/// `Retry-After` as a wait: delay-seconds or an HTTP date (a past date is no wait).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is "a very long time": the cap applies.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A webhook id as one path segment: percent-encoded except for unreserved
/// characters; empty, `.` and `..` refused.
fn path_segment(id: &str) -> Result<String, Error> {
    if matches!(id, "" | "." | "..") {
        return Err(Error::config(format!("invalid webhook id {id:?}")));
    }
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(path_segment("wh_123456789").unwrap(), "wh_123456789");
        assert_eq!(path_segment("a/b?c").unwrap(), "a%2Fb%3Fc");
        assert!(path_segment("..").is_err() && path_segment("").is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let client = Client::builder("t")
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_millis(350))
            .build()
            .unwrap();
        let waits: Vec<_> = (0..4).map(|r| client.backoff(r).as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
        assert_eq!(client.backoff(u32::MAX).as_millis(), 350);
    }

    #[test]
    fn each_wait_is_between_half_and_all_of_the_backoff() {
        let ceiling = Duration::from_millis(400);
        assert_eq!(jitter(ceiling, 0.0), Duration::from_millis(200));
        assert_eq!(jitter(ceiling, 0.5), Duration::from_millis(300));
        assert!(jitter(ceiling, 0.999_999) <= ceiling);
        assert_eq!(jitter(Duration::ZERO, 0.7), Duration::ZERO);
        assert_eq!(jitter(Duration::MAX, 1.0), Duration::MAX);
        let client = Client::builder("t")
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(1))
            .build()
            .unwrap();
        // Drawn for real: always in range, and spread over it (all 500 draws in one
        // half of the range has a chance of 2^-499).
        let waits: Vec<Duration> = (0..500).map(|_| client.jittered_backoff(2)).collect();
        assert!(
            waits
                .iter()
                .all(|w| (Duration::from_millis(200)..=Duration::from_millis(400)).contains(w))
        );
        assert!(waits.iter().any(|w| *w < Duration::from_millis(300)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(300)));
    }

    #[test]
    fn base_urls() {
        for good in [
            "https://api.notmeta.com/v1",
            "http://127.0.0.1:9/v1/",
            "https://x.example",
        ] {
            assert!(parse_base_url(good).is_ok(), "{good}");
        }
        for bad in [
            "api.notmeta.com/v1",
            "ftp://x.example",
            "https://x.example/v1?x=1",
            "/v1",
            "",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }
}
