//! A typed async client for NotMeta's management API: create webhooks,
//! list them, read their delivery logs and statistics.
//!
//! ```no_run
//! use notmeta_webhooks_client::{Client, CreateWebhook};
//! use notmeta_webhooks::EventType;
//!
//! # fn store_where_the_receiver_reads_it(_secret: &str) {}
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new(std::env::var("NOTMETA_API_TOKEN")?)?;
//! let ensured = client
//!     .ensure_webhook(&CreateWebhook::new(
//!         "https://example.com/webhook",
//!         [EventType::MessageReceived],
//!         std::env::var("NOTMETA_WEBHOOK_SECRET")?,
//!     ))
//!     .await?;
//! println!("{ensured}");
//! // Configure your receiver with the secret NotMeta answered, not the one sent.
//! if let Some(secret) = ensured.expose_secret() {
//!     store_where_the_receiver_reads_it(secret);
//! }
//! for webhook in client.list_webhooks().await?.webhooks {
//!     println!("{webhook}");
//! }
//! # Ok(()) }
//! ```
//!
//! # Two secrets: the one you send, the one NotMeta signs with
//!
//! [`CreateWebhook`] carries a secret you *ask* NotMeta to sign with. NotMeta answers
//! with the secret it *will* sign with (`whsec_…`), and that may differ from the one
//! you sent. Configure your receiver with the answered one:
//! [`Webhook::expose_secret`] (or [`Ensured::expose_secret`]), or build its verifier
//! straight from the answer with [`Webhook::verifier`]. NotMeta documents no call to
//! read a secret again later, so store it when the webhook is created.
//!
//! The API token is read from `NOTMETA_API_TOKEN` in these examples, as the
//! `notmeta-webhooks` command-line tool does.
//!
//! # Transport
//!
//! HTTP/1.1 over rustls (the `ring` provider, Mozilla's roots from `webpki-roots`: no
//! system OpenSSL, no platform certificate store). Calls must run inside a Tokio
//! runtime. A plain `http://` base URL is accepted only for this machine
//! (127.0.0.0/8, `::1`, `localhost`), for local testing, unless
//! [`allow_plain_http`](ClientBuilder::allow_plain_http) is set: the token then
//! travels in clear text. A base URL with a user name or password is refused.
//!
//! # On every deploy
//!
//! Creates the webhook only when no webhook has its URL, then reads what NotMeta
//! keeps about it:
//!
//! ```no_run
//! use notmeta_webhooks::EventType;
//! use notmeta_webhooks_client::{Client, CreateWebhook, Ensured};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = Client::new(std::env::var("NOTMETA_API_TOKEN")?)?;
//!     let request = CreateWebhook::new(
//!         "https://example.com/webhooks",
//!         [EventType::MessageReceived, EventType::ConversationAssigned],
//!         std::env::var("NOTMETA_WEBHOOK_SECRET")?, // the secret you choose (see "Two secrets")
//!     );
//!     // Safe on every deploy: creates the webhook only when no webhook has its URL.
//!     let ensured = client.ensure_webhook(&request).await?;
//!     if ensured.was_created() {
//!         // Created by this call, its answer received or lost: the secret to keep.
//!         // NotMeta documents no call to read it again.
//!         let _secret = ensured.expose_secret();
//!     }
//!     match &ensured {
//!         Ensured::Created(webhook) => println!("created {webhook}; store its secret now"),
//!         Ensured::CreatedAnswerLost { cause, .. } => {
//!             eprintln!("{ensured}: {cause}; check the first delivery verifies")
//!         }
//!         existing => println!("{existing}"), // tells when its events differ
//!     }
//!     print!("{}", client.list_webhooks().await?); // one line per webhook
//!     let logs = client.webhook_logs("wh_123456789").await?; // the first page
//!     for entry in &logs.entries {
//!         println!("{entry}");
//!     }
//!     if logs.more_pages() {
//!         println!("(more entries exist)");
//!     }
//!     println!("{}", client.webhook_stats("wh_123456789").await?);
//!     Ok(())
//! }
//! ```
//!
//! # Timeouts and retries
//!
//! | setting | default |
//! |---|---|
//! | [`deadline`](ClientBuilder::deadline) (one call: every attempt, every page, every wait) | 60 s |
//! | [`connect_timeout`](ClientBuilder::connect_timeout) (DNS, TCP and TLS) | 10 s |
//! | [`timeout`](ClientBuilder::timeout) (one attempt, until the whole answer is read; cut to what is left of the deadline) | 30 s |
//! | [`max_retries`](ClientBuilder::max_retries) | 3 |
//! | [`initial_backoff`](ClientBuilder::initial_backoff), doubled after each retry (each wait a random point between half and all of it) | 500 ms |
//! | [`max_backoff`](ClientBuilder::max_backoff): the longest wait; a longer `Retry-After` is not waited, the call fails at once | 30 s |
//!
//! | outcome | `GET` calls | `POST /webhooks` |
//! |---|---|---|
//! | 429 | retried after `Retry-After` (seconds or HTTP date), else the backoff | same |
//! | 5xx | retried (after `Retry-After` if sent) | **not retried** |
//! | no connection, TLS handshake included (request not sent; for a creation, whatever the attempt's time: it connects first, within the connect timeout and the attempt's time, then sends) | retried | retried |
//! | timeout, connection lost after sending | retried | **not retried** |
//! | other 4xx | not retried | not retried |
//!
//! A wait that would end past the deadline is not waited: the call fails at once
//! with the last error. A `Retry-After` the call does not wait is in
//! [`Error::retry_after`].
//!
//! Of an answer other than 2xx only the first 4 KiB (and a little more) are read,
//! then the connection is dropped; a 2xx answer is read up to 16 MiB.
//!
//! A `POST` that failed with a 5xx, a 3xx, a 2xx answer that cannot be read, a
//! timeout or a lost connection may have created the webhook
//! ([`Error::may_have_created`]): retrying it blindly could create a duplicate, so
//! [`Client::create_webhook`] leaves that decision to you.
//! [`Client::ensure_webhook`] is the safe path: it lists first, creates only when no
//! webhook has the URL, and after such a failure never creates again in the same
//! call: it reads the list again (a few times) to find the webhook.
//!
//! A deadline or a wait too long for the clock to represent (`Duration::MAX`)
//! means no deadline, or a wait not waited: the call never panics on it.
//!
//! # Lists
//!
//! [`Client::list_webhooks`] reads every page. A next page is found, in this order,
//! in the body's own fields and in those of each object among them (`pagination`,
//! `meta`, `paging`, `links`…): a next-page URL (`next`, `next_url`,
//! `next_page_url`, or an object's `href` under them) is followed, a cursor
//! (`next_cursor`, `next_page_token`) is asked for as `?cursor=…`; else a `Link:
//! <…>; rel="next"` header (RFC 8288) is followed. A URL is resolved against the
//! page that gave it (RFC 3986) and followed only on the base URL's origin, never
//! elsewhere. Any other sign of more pages (`has_more: true`, `next_page`,
//! `cursors.after` alone, a `total` / `total_count` above the items read so far, a
//! `total_pages` / `page_count` above the current `page`), or an answer whose list
//! cannot be found, is an [`ErrorKind::Decode`] error: a partial list is never
//! taken for the whole.
//!
//! The list is a bare array or an object's `data`, `webhooks`, `items` or
//! `results` (when several of those hold an array, the only non-empty one; two
//! non-empty ones are an error), or else its only array field. Each item must be a
//! JSON object, and at most 10,000 webhooks are read in all (at most 10,000 log
//! entries on a page): a longer list is an [`ErrorKind::Decode`] error, nothing is
//! decided from it. Items are read one by one from the answer (no tree of the
//! whole page is built first), so a hostile list costs a small multiple of its
//! size in memory.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod model;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

pub use error::{Error, ErrorKind, redact};
use error::{Redactor, seconds};
use model::Next;
pub use model::{
    CreateWebhook, Ensured, LogEntry, Webhook, WebhookList, WebhookLogs, WebhookStats,
    WebhookSummary,
};

/// NotMeta's management API, `https://api.notmeta.com/v1`.
pub const DEFAULT_BASE_URL: &str = "https://api.notmeta.com/v1";

/// The largest 2xx answer read, 16 MiB.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// The most pages [`Client::list_webhooks`] reads.
const MAX_PAGES: usize = 1000;

/// The most webhooks [`Client::list_webhooks`] reads in all (and log entries
/// [`Client::webhook_logs`] reads): a longer list is an error, never cut short.
const MAX_ITEMS: usize = 10_000;

/// Where the list of webhooks may be wrapped, and the logs.
const WEBHOOK_KEYS: &[&str] = &["data", "webhooks", "items", "results"];
const LOG_KEYS: &[&str] = &["data", "logs", "items", "results"];

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The HTTPS connector under the connect timeout as a whole: DNS, TCP and the TLS
/// handshake. A failure here is a connect error to hyper, so the request is known
/// not to have been sent.
#[derive(Clone)]
struct ConnectWithin {
    connector: Connector,
    timeout: Duration,
}

impl tower_service::Service<Uri> for ConnectWithin {
    type Response = <Connector as tower_service::Service<Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.connector.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.connector.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|_| BoxError::from(format!("no connection within {}", seconds(timeout))))?
        })
    }
}

/// A client for NotMeta's management API.
///
/// Cheap to clone (clones share one connection pool). `Debug` never prints the token.
///
/// ```
/// use notmeta_webhooks_client::Client;
///
/// let client = Client::new("tok_live_123")?;
/// assert_eq!(client.base_url(), "https://api.notmeta.com/v1");
/// assert!(!format!("{client:?}").contains("tok_live_123"));
/// # Ok::<(), notmeta_webhooks_client::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: HyperClient<ConnectWithin, Full<Bytes>>,
    /// For creations, which connect first on a connection of their own.
    connector: ConnectWithin,
    base_url: String,
    authorization: HeaderValue,
    token: String,
    settings: Settings,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    deadline: Duration,
    connect_timeout: Duration,
    timeout: Duration,
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    allow_plain_http: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            allow_plain_http: false,
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url)
            .field("token", &"<redacted>")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

/// Configures a [`Client`]: base URL, deadline, timeouts and retries.
///
/// ```
/// use std::time::Duration;
/// use notmeta_webhooks_client::Client;
///
/// let client = Client::builder("tok_live_123")
///     .base_url("http://127.0.0.1:8080/v1/")
///     .deadline(Duration::from_secs(20))
///     .connect_timeout(Duration::from_secs(2))
///     .timeout(Duration::from_secs(5))
///     .max_retries(5)
///     .build()?;
/// assert_eq!(client.base_url(), "http://127.0.0.1:8080/v1");
///
/// assert!(Client::builder("tok").base_url("api.notmeta.com").build().is_err());
/// assert!(Client::builder("tok").base_url("http://api.example/v1").build().is_err());
/// assert!(Client::builder("").build().is_err());
/// # Ok::<(), notmeta_webhooks_client::Error>(())
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
            .field("base_url", &without_userinfo(&self.base_url))
            .field("token", &"<redacted>")
            .field("settings", &self.settings)
            .finish()
    }
}

impl ClientBuilder {
    /// The API's base URL, default [`DEFAULT_BASE_URL`]. An absolute `https://` URL
    /// (`http://` only to this machine, or with
    /// [`allow_plain_http`](Self::allow_plain_http)), without a user name or
    /// password; a trailing `/` is ignored.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Accepts a plain `http://` base URL to any host, default `false` (only to
    /// 127.0.0.0/8, `::1` and `localhost`). The token then travels in clear text:
    /// for a trusted network only.
    ///
    /// ```
    /// use notmeta_webhooks_client::Client;
    /// let client = Client::builder("tok").base_url("http://notmeta.internal/v1");
    /// assert!(client.allow_plain_http(true).build().is_ok());
    /// ```
    pub fn allow_plain_http(mut self, allow: bool) -> Self {
        self.settings.allow_plain_http = allow;
        self
    }

    /// How long one call may take in all, default 60 s: every attempt, every
    /// backoff and `Retry-After` wait, and for [`Client::list_webhooks`] and
    /// [`Client::ensure_webhook`] every page and every step. Each attempt's
    /// [`timeout`](Self::timeout) is cut to what is left; a wait that would end
    /// past it is not waited, the call fails at once with the last error.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = notmeta_webhooks_client::Client::builder("tok").deadline(Duration::from_secs(10));
    /// assert!(format!("{builder:?}").contains("deadline: 10s"));
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.settings.deadline = deadline;
        self
    }

    /// How long to wait for a connection (DNS, TCP and the TLS handshake), default
    /// 10 s. A connection not made in time is [`ErrorKind::Connect`]: the request was
    /// not sent, so even a creation is retried. A creation connects first, on a
    /// connection of its own, so that its connection failing or not made within the
    /// attempt's [`timeout`](Self::timeout) is [`ErrorKind::Connect`] too, never a
    /// timeout that "may have created".
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// How long one attempt may take, from sending the request to reading the whole
    /// answer (connecting included), default 30 s; never more than what is left of
    /// the [`deadline`](Self::deadline).
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

    /// The longest wait between two attempts, default 30 s. When NotMeta asks with
    /// `Retry-After` for a longer one, the call does not retry early: it fails at
    /// once, the wait asked in [`Error::retry_after`].
    pub fn max_backoff(mut self, wait: Duration) -> Self {
        self.settings.max_backoff = wait;
        self
    }

    /// Builds the client. Fails with [`ErrorKind::Config`] for a base URL that is not
    /// an absolute `http(s)` URL without query, a plain `http://` one to another
    /// machine (see [`allow_plain_http`](Self::allow_plain_http)), one with a user
    /// name or password (never shown), or a token that is empty or not a valid
    /// header value (the error never shows the token).
    pub fn build(self) -> Result<Client, Error> {
        let base_url = parse_base_url(&self.base_url, self.settings.allow_plain_http)?;
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
        // Per address tried; `ConnectWithin` bounds the whole, TLS included.
        http.set_connect_timeout(Some(self.settings.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| Error::config("TLS setup failed").with_source(e))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let connector = ConnectWithin {
            connector,
            timeout: self.settings.connect_timeout,
        };
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector.clone());

        Ok(Client {
            inner: Arc::new(Inner {
                http,
                connector,
                base_url,
                authorization,
                token: token.to_owned(),
                settings: self.settings,
            }),
        })
    }
}

fn parse_base_url(url: &str, allow_plain_http: bool) -> Result<String, Error> {
    let bad = || Error::config("the base URL must be an absolute http(s) URL without a query");
    let trimmed = url.trim().trim_end_matches('/');
    let uri: Uri = trimmed.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("https" | "http"));
    let has_query = uri.query().is_some() || trimmed.ends_with('?');
    let Some(authority) = uri.authority().filter(|_| scheme_ok) else {
        return Err(bad());
    };
    if has_query || trimmed.contains('#') {
        return Err(bad());
    }
    if authority.as_str().contains('@') {
        return Err(Error::config(
            "the base URL must not carry a user name or password (the API token is the credential)",
        ));
    }
    if uri.scheme_str() == Some("http") && !allow_plain_http && !is_loopback(authority.host()) {
        return Err(Error::config(
            "a plain http:// base URL would send the API token in clear text: use https://, \
             or allow plain HTTP explicitly (it is accepted without asking only for \
             127.0.0.0/8, ::1 and localhost)",
        ));
    }
    Ok(trimmed.to_owned())
}

/// 127.0.0.0/8, `::1` or `localhost`.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `url` with a user name or password replaced, for `Debug`.
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Which failures a call may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: 429, 5xx, connection failures and timeouts.
    Idempotent,
    /// Creation: only 429 and failures to connect, where NotMeta cannot have acted.
    NotSent,
}

impl Retry {
    /// Whether an answer with `status` (not 2xx) is retried.
    fn after_status(self, status: StatusCode) -> bool {
        status == StatusCode::TOO_MANY_REQUESTS
            || (status.is_server_error() && self == Retry::Idempotent)
    }

    /// Whether a failure of `kind` (no answer) is retried.
    fn after_error(self, kind: ErrorKind) -> bool {
        kind == ErrorKind::Connect
            || (self == Retry::Idempotent
                && matches!(kind, ErrorKind::Timeout | ErrorKind::Transport))
    }
}

/// Why a retry is not waited for.
#[derive(Debug)]
enum NoWait {
    /// `Retry-After` asked this long, and why it is not waited.
    Asked(Duration, String),
    /// The backoff would end past the call's deadline.
    PastDeadline,
}

impl NoWait {
    /// The call's error: the last `failure`, with the wait not waited if one was asked.
    fn of(self, failure: Error) -> Error {
        match self {
            Self::Asked(asked, why) => failure.with_retry_after(asked, &why),
            Self::PastDeadline => failure,
        }
    }
}

/// What one public call carries through its requests: when it must end, and the
/// strings no error may show.
struct Call {
    /// `None`: a deadline too far to be reached, no deadline.
    until: Option<Instant>,
    sensitive: Redactor,
}

impl Call {
    /// What is left of the deadline.
    fn left(&self) -> Duration {
        self.until.map_or(Duration::MAX, |u| {
            u.saturating_duration_since(Instant::now())
        })
    }

    /// Whether a wait of `wait` ends before the deadline (and can be waited at all).
    fn can_wait(&self, wait: Duration) -> bool {
        match Instant::now().checked_add(wait) {
            None => false,
            Some(end) => self.until.is_none_or(|until| end < until),
        }
    }

    /// The one way out of a public call: every error it returns, whatever built it,
    /// is scrubbed here of the token and the secret sent.
    fn end<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        result.map_err(|e| e.redacted(&self.sensitive))
    }
}

/// One answer: its status, the `Retry-After` wait, and its body (for a status other
/// than 2xx, only its beginning: `complete` says whether it is all of it, `total` is
/// its length when known).
struct Answer {
    status: StatusCode,
    /// The `Link` header's `rel="next"` target, if any.
    next_link: Option<String>,
    retry_after: Option<Duration>,
    body: Bytes,
    complete: bool,
    total: Option<u64>,
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

    fn start(&self, secret: Option<&str>) -> Call {
        Call {
            until: Instant::now().checked_add(self.inner.settings.deadline),
            sensitive: Redactor::new(
                [Some(self.inner.token.as_str()), secret]
                    .into_iter()
                    .flatten(),
            ),
        }
    }

    /// `POST /webhooks`: creates a webhook, and answers it with the secret NotMeta
    /// signs its deliveries with.
    ///
    /// Retried only where NotMeta cannot have created it (429, no connection). After
    /// a 5xx, a 3xx, a 2xx answer that cannot be read, a timeout or a lost
    /// connection the webhook may exist
    /// ([`Error::may_have_created`]): list before trying again, or use
    /// [`Client::ensure_webhook`], which does. No error shows the secret sent.
    ///
    /// ```no_run
    /// use notmeta_webhooks_client::{Client, CreateWebhook};
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
        let call = self.start(Some(webhook.secret()));
        call.end(self.create(webhook, &call).await)
    }

    async fn create(&self, webhook: &CreateWebhook, call: &Call) -> Result<Webhook, Error> {
        let body = serde_json::to_vec(webhook)
            .map_err(|e| Error::config("the webhook could not be serialised").with_source(e))?;
        let uri = format!("{}/webhooks", self.inner.base_url);
        self.json(
            Method::POST,
            &uri,
            "POST /webhooks",
            body.into(),
            Retry::NotSent,
            call,
        )
        .await
        .map_err(|e| {
            if may_have_acted(&e) {
                e.creation_may_have_acted()
            } else {
                e
            }
        })
    }

    /// `GET /webhooks`: every webhook and its state, every page of the list read
    /// (see [Lists](self#lists)); within one [`deadline`](ClientBuilder::deadline).
    ///
    /// ```no_run
    /// # async fn run(client: notmeta_webhooks_client::Client) -> Result<(), notmeta_webhooks_client::Error> {
    /// for webhook in client.list_webhooks().await?.webhooks {
    ///     println!("{webhook}"); // id, status, URL, events
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_webhooks(&self) -> Result<WebhookList, Error> {
        let call = self.start(None);
        call.end(self.list_all(&call).await)
    }

    async fn list_all(&self, call: &Call) -> Result<WebhookList, Error> {
        let base = &self.inner.base_url;
        let mut uri = format!("{base}/webhooks");
        let mut endpoint = "GET /webhooks".to_owned();
        let mut read = HashSet::from([uri.clone()]);
        let mut list = WebhookList::default();
        for n in 0..MAX_PAGES {
            let before = model::Progress {
                items: list.webhooks.len(),
                pages: n,
            };
            let limit = MAX_ITEMS - list.webhooks.len();
            let page = self
                .page(
                    &uri,
                    &endpoint,
                    WEBHOOK_KEYS,
                    "webhooks",
                    limit,
                    before,
                    call,
                )
                .await?;
            if n == 0 {
                list.extra = page.extra;
            }
            list.webhooks.extend(page.items);
            uri = match page.next {
                Next::None => return Ok(list),
                Next::Url(next) => self
                    .same_origin(&uri, &next)
                    .map_err(|m| decode(&endpoint, &m))?,
                Next::Cursor(cursor) => format!("{base}/webhooks?cursor={}", percent(&cursor)),
                Next::Unfollowable(signal) => {
                    let m = format!(
                        "the list is incomplete: the answer signals more webhooks ({signal}) but \
                         gives no next URL or cursor this client can follow; nothing was decided from it"
                    );
                    return Err(decode(&endpoint, &m));
                }
            };
            if !read.insert(uri.clone()) {
                let m = "the answer points again to a page already read: the list does not end";
                return Err(decode(&endpoint, m));
            }
            endpoint = format!("GET {}", uri.strip_prefix(base.as_str()).unwrap_or(&uri));
        }
        let m = format!("the list has more than {MAX_PAGES} pages; nothing was decided from it");
        Err(decode(&endpoint, &m))
    }

    /// A next-page URL, resolved against the page that gave it (`page`, RFC 3986),
    /// if it is on the base URL's origin.
    fn same_origin(&self, page: &str, next: &str) -> Result<String, String> {
        let base: Uri = self
            .inner
            .base_url
            .parse()
            .map_err(|_| "invalid base URL")?;
        let scheme = base.scheme_str().unwrap_or("https");
        let origin = format!("{scheme}://{}", base.authority().map_or("", |a| a.as_str()));
        let absolute = resolve(page, next);
        let uri: Uri = absolute
            .parse()
            .map_err(|_| "the next page's URL is not a valid URL".to_owned())?;
        let same = uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
            && uri
                .authority()
                .zip(base.authority())
                .is_some_and(|(a, b)| a.as_str().eq_ignore_ascii_case(b.as_str()));
        if !same {
            return Err(format!(
                "the next page is on another origin ({}://{}); the token is sent only to {origin}",
                uri.scheme_str().unwrap_or("?"),
                uri.authority().map_or("?", |a| a.host()),
            ));
        }
        Ok(absolute)
    }

    /// `GET /webhooks/{id}/logs`: the webhook's delivery logs, the first page only:
    /// [`WebhookLogs::more_pages`] tells whether NotMeta has more.
    ///
    /// ```no_run
    /// # async fn run(client: notmeta_webhooks_client::Client) -> Result<(), notmeta_webhooks_client::Error> {
    /// let logs = client.webhook_logs("wh_123456789").await?;
    /// print!("{logs}");
    /// if logs.more_pages() {
    ///     println!("(more entries exist)");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn webhook_logs(&self, id: &str) -> Result<WebhookLogs, Error> {
        let call = self.start(None);
        call.end(self.logs(id, &call).await)
    }

    async fn logs(&self, id: &str, call: &Call) -> Result<WebhookLogs, Error> {
        let path = format!("/webhooks/{}/logs", path_segment(id)?);
        let endpoint = format!("GET {path}");
        let uri = format!("{}{path}", self.inner.base_url);
        let page = self
            .page(
                &uri,
                &endpoint,
                LOG_KEYS,
                "log entries",
                MAX_ITEMS,
                model::Progress::default(),
                call,
            )
            .await?;
        Ok(WebhookLogs::from_page(page))
    }

    /// `GET /webhooks/{id}/stats`: the webhook's delivery statistics.
    ///
    /// ```no_run
    /// # async fn run(client: notmeta_webhooks_client::Client) -> Result<(), notmeta_webhooks_client::Error> {
    /// let stats = client.webhook_stats("wh_123456789").await?;
    /// println!("{:?}", stats.count("total_deliveries"));
    /// # Ok(()) }
    /// ```
    pub async fn webhook_stats(&self, id: &str) -> Result<WebhookStats, Error> {
        let call = self.start(None);
        let path = match path_segment(id) {
            Ok(segment) => format!("/webhooks/{segment}/stats"),
            Err(e) => return call.end(Err(e)),
        };
        let uri = format!("{}{path}", self.inner.base_url);
        let stats = self
            .json(
                Method::GET,
                &uri,
                &format!("GET {path}"),
                Bytes::new(),
                Retry::Idempotent,
                &call,
            )
            .await;
        call.end(stats)
    }

    /// Makes sure a webhook exists for the request's URL: the call for deploy scripts,
    /// safe to run again and again.
    ///
    /// Lists the webhooks (every page); if one has exactly this URL it is returned as
    /// [`Ensured::Existing`], unchanged, with how its events differ from the requested
    /// ones (NotMeta documents no update call, so nothing is changed behind your
    /// back: check [`Ensured::events_match`]). Otherwise the webhook is created
    /// ([`Ensured::Created`]). When the creation fails in a way that may have created
    /// it anyway (a 5xx, a 3xx, a 2xx that cannot be read, a timeout, a lost
    /// connection), it is **never sent again in the same call**: the list is read
    /// again, up to 4 times over about 4 s (within the deadline), in case it shows
    /// the webhook late. If the webhook is there, it is [`Ensured::CreatedAnswerLost`],
    /// with the secret sent; if not, the creation's error, with
    /// [`Error::may_have_created`] true: keep the secret sent, and run the call again
    /// later (it lists first). This relies on the list showing a created webhook by
    /// the time the call runs again. Only failures where NotMeta cannot have acted
    /// (no connection, 429) are retried by creating again. A list that cannot be read
    /// whole, or that lists a webhook without a URL, is an error: nothing is created
    /// from it. All within one [`deadline`](ClientBuilder::deadline).
    ///
    /// Two runs at the same moment can still both create: run deploys one at a time.
    ///
    /// To store the secret of a webhook this call created, use
    /// [`Ensured::was_created`] and [`Ensured::expose_secret`], which cover a
    /// creation whose answer was lost too:
    ///
    /// ```no_run
    /// use notmeta_webhooks_client::{Client, CreateWebhook, Ensured};
    /// use notmeta_webhooks::EventType;
    ///
    /// # fn store(_: &str) {}
    /// # async fn run(client: Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let request = CreateWebhook::new("https://example.com/webhook", [EventType::MessageReceived], "my_secret");
    /// let ensured = client.ensure_webhook(&request).await?;
    /// if ensured.was_created() {
    ///     // Shown once: NotMeta documents no call to read it again.
    ///     store(ensured.expose_secret().expect("a created webhook has its secret"));
    /// }
    /// match &ensured {
    ///     Ensured::CreatedAnswerLost { cause, .. } => {
    ///         eprintln!("{ensured}: {cause}; check the first delivery verifies")
    ///     }
    ///     existing if !existing.events_match() => eprintln!("events differ: {existing}"),
    ///     other => println!("{other}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn ensure_webhook(&self, request: &CreateWebhook) -> Result<Ensured, Error> {
        let call = self.start(Some(request.secret()));
        call.end(self.ensure(request, &call).await)
    }

    async fn ensure(&self, request: &CreateWebhook, call: &Call) -> Result<Ensured, Error> {
        let list = self.list_all(call).await?;
        if let Some(found) = find(&list, request.url()).map_err(|m| decode("GET /webhooks", &m))? {
            return Ok(Ensured::existing(found.clone(), request));
        }
        let lost = match self.create(request, call).await {
            Ok(created) => return Ok(Ensured::Created(created)),
            Err(e) if e.may_have_created() => e,
            Err(e) => return Err(e),
        };
        // The creation may have acted: never POST again in this call (a list that
        // shows a creation late would make duplicates). Read the list again, a few
        // times, in case it shows the webhook a little after its creation.
        let mut relisted = 0;
        for wait in RELIST_WAITS {
            if !call.can_wait(wait) {
                break;
            }
            tokio::time::sleep(wait).await;
            let list = match self.list_all(call).await {
                Ok(list) => list,
                Err(e) => {
                    return Err(e.creation_may_have_acted().with_note(&format!(
                        "the webhook may have been created by the `POST /webhooks` that failed \
                         before ({lost}); check `GET /webhooks` before creating again"
                    )));
                }
            };
            relisted += 1;
            match find(&list, request.url()) {
                Ok(Some(found)) => {
                    let cause = lost.redacted(&call.sensitive).to_string();
                    return Ok(Ensured::answer_lost(found.clone(), request, cause));
                }
                Ok(None) => {}
                Err(m) => return Err(decode("GET /webhooks", &m).creation_may_have_acted()),
            }
        }
        Err(lost.with_note(&format!(
            "the webhook may have been created nonetheless; the list read {relisted} time(s) \
             after it does not show it: check the list before creating again"
        )))
    }

    /// One call with its retries, decoding a 2xx answer as `T`.
    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        uri: &str,
        endpoint: &str,
        body: Bytes,
        retry: Retry,
        call: &Call,
    ) -> Result<T, Error> {
        let (answer, attempts) = self
            .exchange(&method, uri, endpoint, &body, retry, call)
            .await?;
        serde_json::from_slice(&answer.body).map_err(|e| {
            Error::new(ErrorKind::Decode, format!("{endpoint}: {e}"))
                .set_status(answer.status)
                .with_attempts(attempts)
        })
    }

    /// One page of a list with its retries: its items (at most `limit`), the
    /// wrapper's fields, and its next page, from the body or a `Link` header.
    #[allow(clippy::too_many_arguments)]
    async fn page<T: DeserializeOwned>(
        &self,
        uri: &str,
        endpoint: &str,
        keys: &[&str],
        what: &str,
        limit: usize,
        before: model::Progress,
        call: &Call,
    ) -> Result<model::Page<T>, Error> {
        let (answer, attempts) = self
            .exchange(
                &Method::GET,
                uri,
                endpoint,
                &Bytes::new(),
                Retry::Idempotent,
                call,
            )
            .await?;
        let mut page =
            model::Page::parse(&answer.body, keys, what, limit, before).map_err(|m| {
                decode(endpoint, &m)
                    .set_status(answer.status)
                    .with_attempts(attempts)
            })?;
        // The body's own next URL or cursor first; else the `Link` header's.
        if let Some(link) = answer.next_link
            && matches!(page.next, Next::None | Next::Unfollowable(_))
        {
            page.next = Next::Url(link);
        }
        Ok(page)
    }

    /// One request with its retries: a 2xx answer's status, body and the attempts
    /// made, or the last failure.
    async fn exchange(
        &self,
        method: &Method,
        uri: &str,
        endpoint: &str,
        body: &Bytes,
        retry: Retry,
        call: &Call,
    ) -> Result<(Answer, u32), Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.attempt(method, uri, body, endpoint, call).await;
            let retryable = match &outcome {
                Ok(a) if a.status.is_success() => {
                    let Ok(a) = outcome else { unreachable!() };
                    return Ok((a, attempt));
                }
                Ok(a) => retry.after_status(a.status),
                Err(e) => retry.after_error(e.kind()),
            };
            let retry_after = outcome.as_ref().ok().and_then(|a| a.retry_after);
            let failure = match outcome {
                Ok(a) => Error::status_answer(
                    endpoint,
                    a.status,
                    &a.body,
                    a.complete,
                    a.total,
                    &call.sensitive,
                ),
                Err(e) => e,
            }
            .with_attempts(attempt)
            .set_retry_after(retry_after);
            if !retryable || attempt > self.inner.settings.max_retries {
                return Err(failure);
            }
            let wait = self.wait_before_retry(attempt, retry_after, call);
            tokio::time::sleep(wait.map_err(|why| why.of(failure))?).await;
        }
    }

    /// How long to wait before the retry after attempt `attempt`: what `Retry-After`
    /// asked, else the jittered backoff; why not to wait, when the wait is longer
    /// than the longest allowed or would end past the call's deadline.
    fn wait_before_retry(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        call: &Call,
    ) -> Result<Duration, NoWait> {
        let max_backoff = self.inner.settings.max_backoff;
        let wait = match retry_after {
            Some(asked) if asked > max_backoff => {
                let why = format!("longer than the longest wait, {}", seconds(max_backoff));
                return Err(NoWait::Asked(asked, why));
            }
            Some(asked) => asked,
            None => self.jittered_backoff(attempt - 1),
        };
        if call.can_wait(wait) {
            return Ok(wait);
        }
        Err(match retry_after {
            Some(asked) => NoWait::Asked(asked, "past the call's deadline".to_owned()),
            None => NoWait::PastDeadline,
        })
    }

    /// One request under the request timeout, cut to what is left of the deadline.
    async fn attempt(
        &self,
        method: &Method,
        uri: &str,
        body: &Bytes,
        endpoint: &str,
        call: &Call,
    ) -> Result<Answer, Error> {
        let (timeout, timed_out) = self.attempt_time(endpoint, call);
        if timeout.is_zero() {
            return Err(Error::new(ErrorKind::Timeout, timed_out));
        }
        let mut request = self.request(method, uri, body, endpoint)?;
        // A creation connects first, on a connection of its own, so that a
        // connection not made (TLS included) is known not to have sent it, whatever
        // the attempt's time; only then does the attempt's time run for the rest.
        let started = Instant::now();
        let fresh = if *method == Method::POST {
            Some(self.connect(&mut request, timeout, endpoint).await?)
        } else {
            None
        };
        let timeout = timeout.saturating_sub(started.elapsed());
        if timeout.is_zero() {
            return Err(Error::new(ErrorKind::Timeout, timed_out));
        }
        let exchange = async {
            let response = self.send(request, fresh, endpoint).await?;
            read_answer(response, endpoint, call).await
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::new(ErrorKind::Timeout, timed_out))?
    }

    /// The time one attempt may take (the request timeout, or what is left of the
    /// deadline when that is shorter), and the message if it runs out.
    fn attempt_time(&self, endpoint: &str, call: &Call) -> (Duration, String) {
        let settings = &self.inner.settings;
        let left = call.left();
        if left < settings.timeout {
            let m = format!(
                "{endpoint}: no answer in {} (the call's deadline)",
                seconds(settings.deadline)
            );
            (left, m)
        } else {
            let m = format!(
                "{endpoint}: no complete answer in {}",
                seconds(settings.timeout)
            );
            (settings.timeout, m)
        }
    }

    /// The request, with the JSON headers, the user agent and the token.
    fn request(
        &self,
        method: &Method,
        uri: &str,
        body: &Bytes,
        endpoint: &str,
    ) -> Result<Request<Full<Bytes>>, Error> {
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
        Ok(request)
    }

    /// Sends `request` on the `fresh` connection made for it, else on the pool's.
    async fn send(
        &self,
        request: Request<Full<Bytes>>,
        fresh: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
        endpoint: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, Error> {
        match fresh {
            Some(mut sender) => sender
                .send_request(request)
                .await
                .map_err(|e| Error::new(ErrorKind::Transport, endpoint.to_owned()).with_source(e)),
            None => self.inner.http.request(request).await.map_err(|e| {
                let kind = if e.is_connect() {
                    ErrorKind::Connect
                } else {
                    ErrorKind::Transport
                };
                Error::new(kind, endpoint.to_owned()).with_source(e)
            }),
        }
    }

    /// A connection of its own for `request` (DNS, TCP, TLS, the HTTP/1.1
    /// handshake), made within the connect timeout and `within`: any failure here,
    /// expiry included, is [`ErrorKind::Connect`], the request not sent. `request`
    /// is made origin-form, with its `Host`.
    async fn connect(
        &self,
        request: &mut Request<Full<Bytes>>,
        within: Duration,
        endpoint: &str,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, Error> {
        let target = request.uri().clone();
        let within = within.min(self.inner.settings.connect_timeout);
        let not_connected = |detail: String| Error::new(ErrorKind::Connect, detail);
        let mut connector = self.inner.connector.clone();
        let connecting = async {
            std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut connector, cx))
                .await?;
            let io = tower_service::Service::call(&mut connector, target.clone()).await?;
            let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(connection);
            Ok::<_, BoxError>(sender)
        };
        let sender = match tokio::time::timeout(within, connecting).await {
            Err(_) => {
                return Err(not_connected(format!(
                    "{endpoint}: no connection within {}",
                    seconds(within)
                )));
            }
            Ok(Err(e)) => return Err(not_connected(endpoint.to_owned()).with_source(e)),
            Ok(Ok(sender)) => sender,
        };
        if let Some(authority) = target.authority() {
            let host = HeaderValue::from_str(authority.as_str())
                .map_err(|e| not_connected(endpoint.to_owned()).with_source(e))?;
            request.headers_mut().insert(http::header::HOST, host);
        }
        let origin_form = target
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e: http::uri::InvalidUri| {
                not_connected(endpoint.to_owned()).with_source(e)
            })?;
        *request.uri_mut() = origin_form;
        Ok(sender)
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

/// The `rel="next"` target of the `Link` headers (RFC 8288): several headers,
/// several links in one, `rel` quoted or bare, holding several relation types.
fn next_link(headers: &http::HeaderMap) -> Option<String> {
    for value in headers.get_all(http::header::LINK) {
        let Ok(mut rest) = value.to_str() else {
            continue;
        };
        while let Some(open) = rest.find('<') {
            let close = open + rest[open..].find('>')?;
            let target = &rest[open + 1..close];
            rest = &rest[close + 1..];
            // The parameters run to the next link: a `<` outside quotes.
            let mut end = rest.len();
            let mut quoted = false;
            for (i, c) in rest.char_indices() {
                match c {
                    '"' => quoted = !quoted,
                    '<' if !quoted => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let params = &rest[..end];
            rest = &rest[end..];
            let mut split = Vec::new();
            let (mut from, mut quoted) = (0, false);
            for (i, c) in params.char_indices() {
                match c {
                    '"' => quoted = !quoted,
                    ';' if !quoted => {
                        split.push(&params[from..i]);
                        from = i + 1;
                    }
                    _ => {}
                }
            }
            split.push(&params[from..]);
            let is_next = split.iter().any(|param| {
                let Some((name, value)) = param.split_once('=') else {
                    return false;
                };
                name.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return Some(target.trim().to_owned());
            }
        }
    }
    None
}

/// `reference` resolved against the absolute URL `base` (RFC 3986, section 5.2):
/// absolute only when it starts with a scheme; a network-path (`//host…`), an
/// absolute path, a query alone, or a path relative to the base's directory
/// otherwise. The fragment is dropped.
fn resolve(base: &str, reference: &str) -> String {
    let reference = reference.trim();
    let reference = reference.split('#').next().unwrap_or_default();
    let has_scheme = reference.find(':').is_some_and(|colon| {
        let scheme = &reference[..colon];
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if has_scheme {
        return reference.to_owned();
    }
    let (scheme, after_scheme) = base.split_once("://").unwrap_or(("https", base));
    if let Some(rest) = reference.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    let authority_end = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let (authority, path_and_query) = after_scheme.split_at(authority_end);
    let base_path = path_and_query.split('?').next().unwrap_or_default();
    let origin = format!("{scheme}://{authority}");
    if reference.is_empty() {
        return base.split('#').next().unwrap_or_default().to_owned();
    }
    if reference.starts_with('?') {
        return format!("{origin}{base_path}{reference}");
    }
    let (path, query) = match reference.find('?') {
        Some(q) => reference.split_at(q),
        None => (reference, ""),
    };
    let merged = if path.starts_with('/') {
        path.to_owned()
    } else {
        let directory = base_path.rfind('/').map_or("/", |i| &base_path[..=i]);
        format!("{directory}{path}")
    };
    format!("{origin}{}{query}", remove_dot_segments(&merged))
}

/// A path without its `.` and `..` segments (RFC 3986, section 5.2.4).
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

/// The answer to a request: a 2xx one read whole (up to [`MAX_ANSWER`]), any other
/// only as far as an error shows.
async fn read_answer(
    response: http::Response<hyper::body::Incoming>,
    endpoint: &str,
    call: &Call,
) -> Result<Answer, Error> {
    let (parts, body) = response.into_parts();
    let retry_after = parts
        .headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let next_link = next_link(&parts.headers);
    let transport =
        |e: BoxError| Error::new(ErrorKind::Transport, endpoint.to_owned()).with_source(e);
    if !parts.status.is_success() {
        let total = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        // Only what an error can show: the connection is dropped after it.
        let keep = error::MAX_KEPT_BODY + call.sensitive.longest_form() + 64;
        let (body, complete) = read_at_most(body, keep)
            .await
            .map_err(|e| transport(e.into()))?;
        return Ok(Answer {
            status: parts.status,
            next_link,
            retry_after,
            total: total.or(complete.then_some(body.len() as u64)),
            body,
            complete,
        });
    }
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
                transport(e)
            }
        })?
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        next_link,
        retry_after,
        total: Some(bytes.len() as u64),
        body: bytes,
        complete: true,
    })
}

/// At most about `limit` bytes of `body` (whole frames), and whether that is all of it.
async fn read_at_most(
    mut body: hyper::body::Incoming,
    limit: usize,
) -> Result<(Bytes, bool), hyper::Error> {
    let mut kept = Vec::new();
    while kept.len() <= limit {
        match body.frame().await {
            None => return Ok((kept.into(), true)),
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    let room = limit + 1 - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
    }
    Ok((kept.into(), false))
}

/// The webhook listed with `url`, if any; an error when a listed webhook has no URL
/// (it might be this one).
fn find<'a>(list: &'a WebhookList, url: &str) -> Result<Option<&'a WebhookSummary>, String> {
    if let Some(found) = list.find_by_url(url) {
        return Ok(Some(found));
    }
    match list.webhooks.iter().find(|w| w.url.is_none()) {
        Some(w) => Err(format!(
            "a listed webhook ({}) has no `url`: cannot tell whether it is the one for {url}; \
             nothing was created",
            w.id.as_deref().unwrap_or("no id")
        )),
        None => Ok(None),
    }
}

fn decode(endpoint: &str, message: &str) -> Error {
    Error::new(ErrorKind::Decode, format!("{endpoint}: {message}"))
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
    (notmeta_webhooks::__private::random_u64(0) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a failed creation may nevertheless have created the webhook: a timeout
/// or a connection lost after sending; a 5xx; a 3xx (NotMeta acted and points
/// elsewhere); a 2xx that could not be read (NotMeta most likely created it).
fn may_have_acted(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::Timeout | ErrorKind::Transport | ErrorKind::Decode => true,
        ErrorKind::Status => e
            .status()
            .is_some_and(|s| s.is_server_error() || s.is_redirection()),
        _ => false,
    }
}

/// The waits before each reading of the list after a creation that may have acted
/// and whose webhook is not listed yet.
const RELIST_WAITS: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// `Retry-After` as a wait: delay-seconds or an HTTP date (a past date is no wait).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is "a very long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Percent-encoded except for unreserved characters.
fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A webhook id as one path segment: percent-encoded except for unreserved
/// characters; empty, `.` and `..` refused.
fn path_segment(id: &str) -> Result<String, Error> {
    if matches!(id, "" | "." | "..") {
        return Err(Error::config(format!("invalid webhook id {id:?}")));
    }
    Ok(percent(id))
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
    fn the_defaults_are_the_documented_ones() {
        let s = Settings::default();
        assert_eq!(s.deadline, Duration::from_secs(60));
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(s.max_retries, 3);
        assert_eq!(s.initial_backoff, Duration::from_millis(500));
        assert_eq!(s.max_backoff, Duration::from_secs(30));
        assert!(!s.allow_plain_http);
        assert_eq!(error::MAX_KEPT_BODY, 4 * 1024);
        assert_eq!((MAX_ANSWER, MAX_PAGES), (16 * 1024 * 1024, 1000));
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
            assert!(parse_base_url(good, false).is_ok(), "{good}");
        }
        for bad in [
            "api.notmeta.com/v1",
            "ftp://x.example",
            "https://x.example/v1?x=1",
            "/v1",
            "",
            "http://x.example/v1",
            "http://127.0.0.1.example/v1",
            "https://user:pw@x.example/v1",
        ] {
            assert!(parse_base_url(bad, false).is_err(), "{bad}");
        }
        assert!(parse_base_url("http://x.example/v1", true).is_ok());
        assert_eq!(
            without_userinfo("https://user:pw@x.example/v1?a=b@c"),
            "https://<redacted>@x.example/v1?a=b@c"
        );
    }

    #[test]
    fn references_resolve_as_rfc_3986_says() {
        let base = "https://api.example/v1/webhooks?cursor=1";
        for (reference, resolved) in [
            (
                "webhooks?c=2&r=https://x.example/",
                "https://api.example/v1/webhooks?c=2&r=https://x.example/",
            ),
            ("?c=3", "https://api.example/v1/webhooks?c=3"),
            ("/v2/w?c=4#f", "https://api.example/v2/w?c=4"),
            ("../v0/./w", "https://api.example/v0/w"),
            ("//other.example/w", "https://other.example/w"),
            ("HTTP+x://h/w", "HTTP+x://h/w"),
            ("a:b", "a:b"),
            ("./a:b", "https://api.example/v1/a:b"),
            ("", "https://api.example/v1/webhooks?cursor=1"),
        ] {
            assert_eq!(resolve(base, reference), resolved, "{reference}");
        }
    }

    #[test]
    fn link_headers_give_the_next_target() {
        let headers = |values: &[&str]| {
            let mut map = http::HeaderMap::new();
            for v in values {
                map.append(http::header::LINK, v.parse().unwrap());
            }
            map
        };
        for (values, next) in [
            (&["</p2>; rel=\"next\""][..], Some("/p2")),
            (&["</p2>; rel=next"], Some("/p2")),
            (
                &["</p1>; rel=prev, </p2>; rel=\"prefetch NEXT\""],
                Some("/p2"),
            ),
            (
                &[
                    "</p0>; rel=first",
                    "</p3>; title=\"a, <b>; rel=next\"; rel=last",
                    "</p4>;rel=next",
                ],
                Some("/p4"),
            ),
            (&["</p1>; rel=prev"], None),
            (&[], None),
        ] {
            assert_eq!(next_link(&headers(values)).as_deref(), next, "{values:?}");
        }
    }
}
