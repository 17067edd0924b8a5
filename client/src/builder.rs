//! [`ClientBuilder`], the client's settings, and the checks of the base URL.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Uri};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::transport::ConnectWithin;
use crate::{Client, DEFAULT_BASE_URL, Error, Inner};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) deadline: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
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
    /// 10 s. A connection not made in time is [`ErrorKind::Connect`](crate::ErrorKind::Connect): the request was
    /// not sent, so even a creation is retried. A creation connects first, on a
    /// connection of its own, so that its connection failing or not made within the
    /// attempt's [`timeout`](Self::timeout) is [`ErrorKind::Connect`](crate::ErrorKind::Connect) too, never a
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
    /// disables retries). See the [module docs](crate) for which failures are retried.
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

    /// Builds the client. Fails with [`ErrorKind::Config`](crate::ErrorKind::Config) for a base URL that is not
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MAX_ANSWER, MAX_PAGES, error};

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
}
