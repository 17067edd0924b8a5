//! Where a simulated NotMeta delivers: a URL or a tower service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf as _, Bytes};
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};

type Sending = Pin<Box<dyn Future<Output = Result<Reply, TargetError>> + Send>>;
type Send_ = dyn Fn(Request<Full<Bytes>>) -> Sending + Send + Sync;

/// The most of an answer's body a [`Target`] reads: 64 KiB. What a receiver answers
/// NotMeta is a status and a short text; past this the body is not read further (the
/// connection is dropped) and [`Reply::truncated`] says so.
///
/// ```
/// assert_eq!(notmeta_webhooks::testing::MAX_REPLY_BODY, 64 * 1024);
/// ```
pub const MAX_REPLY_BODY: usize = 64 * 1024;

/// What a receiver answered: its status and body (as text, lossily), at most
/// [`MAX_REPLY_BODY`] bytes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The body, as text (invalid UTF-8 replaced), cut at [`MAX_REPLY_BODY`] bytes.
    pub body: String,
    /// Whether the body was longer than [`MAX_REPLY_BODY`]: only its start was read.
    pub truncated: bool,
}

/// A receiver to deliver to: a URL (plain HTTP) or an in-process tower service.
/// Cloning is cheap.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use notmeta_webhooks::receiver::{HandlerError, Receiver};
/// use notmeta_webhooks::testing::{sample, Target};
/// use notmeta_webhooks::tower::WebhookService;
/// use notmeta_webhooks::{Event, EventType, Verifier};
///
/// let receiver = Receiver::new(Verifier::new("whsec_abc123")?, |_: Event<'static>| async {
///     Ok::<(), HandlerError>(())
/// });
/// let target = Target::service(WebhookService::new(receiver));
/// let reply = target.send(sample(EventType::UserOnline).request("whsec_abc123")).await?;
/// assert_eq!(reply.status, 200);
///
/// assert!(Target::url("https://example.com/webhooks").is_err()); // plain HTTP only
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Target {
    name: String,
    send: Arc<Send_>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Target").field(&self.name).finish()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Why a [`Target`] cannot deliver: a URL it cannot deliver to
/// ([`Target::url`]), or a request that got no answer ([`Target::send`]: the
/// connection was refused or lost, the service failed). Neither its `Display` nor
/// its `Debug` shows what comes before an `@` in a URL (a user name and password).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use notmeta_webhooks::EventType;
/// use notmeta_webhooks::testing::{Target, sample};
///
/// let error = Target::url("http://ana:s3cret@127.0.0.1:3000/webhooks").unwrap_err();
/// assert!(error.is_url());
/// assert!(!error.to_string().contains("s3cret"));
/// assert!(!format!("{error:?}").contains("s3cret"));
///
/// // A port nothing listens on any more: no answer.
/// let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
/// let target = Target::url(&format!("http://127.0.0.1:{port}/webhooks")).unwrap();
/// let error = target.send(sample(EventType::UserOnline).request("whsec_abc123")).await.unwrap_err();
/// assert!(!error.is_url());
/// assert!(error.to_string().starts_with("cannot connect to 127.0.0.1:"));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct TargetError(Why);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Why {
    /// A URL a target cannot be made of; the URL without what comes before an `@`.
    #[error("cannot deliver to {url:?}: {reason}")]
    Url { url: String, reason: &'static str },
    /// No answer came.
    #[error("{0}")]
    NoAnswer(String),
}

impl TargetError {
    fn url(url: &str, reason: &'static str) -> Self {
        Self(Why::Url {
            url: without_userinfo(url),
            reason,
        })
    }

    fn no_answer(what: impl fmt::Display) -> Self {
        Self(Why::NoAnswer(what.to_string()))
    }

    /// Whether the error is a URL a target cannot be made of ([`Target::url`]),
    /// rather than a request that got no answer ([`Target::send`]).
    #[must_use]
    pub fn is_url(&self) -> bool {
        matches!(self.0, Why::Url { .. })
    }
}

/// `url` with everything between its scheme and its last `@` replaced by `…`: the
/// user name and password of `http://user:password@host/`, however malformed the
/// rest is (a password may hold `/`, `?` or `#`).
fn without_userinfo(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_owned();
    };
    let start = url.find("://").map_or(0, |i| i + 3).min(at);
    format!("{}…{}", &url[..start], &url[at..])
}

impl Target {
    /// A receiver at `url`, `http://host:port/path` (plain HTTP, one new connection
    /// per request, as NotMeta's deliveries come).
    ///
    /// # Errors
    ///
    /// [`TargetError`] when `url` is not an `http://` URL with a host, or holds a
    /// user name or password (`http://user:password@host/`, which NotMeta does not
    /// send and this would echo).
    pub fn url(url: &str) -> Result<Self, TargetError> {
        let error = |reason| TargetError::url(url, reason);
        let uri: Uri = url.parse().map_err(|_| error("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(error("only plain http:// URLs are supported"));
        }
        let authority = uri.authority().ok_or_else(|| error("no host"))?.clone();
        if authority.as_str().contains('@') {
            return Err(error(
                "a user name or password in the URL is not supported (user:password@)",
            ));
        }
        let after_host = authority.as_str().rsplit(']').next().unwrap_or_default();
        if after_host.contains(':') && authority.port().is_none() {
            return Err(error("the port is not a number"));
        }
        let address = if authority.port().is_some() {
            authority.to_string()
        } else {
            format!("{}:80", authority.host())
        };
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string);
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| error("bad host"))?;
        let send = move |mut request: Request<Full<Bytes>>| -> Sending {
            let address = address.clone();
            *request.uri_mut() = path.parse().unwrap_or_default();
            request.headers_mut().insert(header::HOST, host.clone());
            Box::pin(async move { post(&address, request).await })
        };
        Ok(Self {
            name: url.to_owned(),
            send: Arc::new(send),
        })
    }

    /// An in-process service, such as [`WebhookService`](crate::tower::WebhookService)
    /// or an axum `Router`: each request goes to a clone of it.
    pub fn service<S, B>(service: S) -> Self
    where
        S: tower_service::Service<Request<Full<Bytes>>, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send,
        S::Error: fmt::Display,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: fmt::Display,
    {
        let send = move |request: Request<Full<Bytes>>| -> Sending {
            let mut service = service.clone();
            Box::pin(async move {
                std::future::poll_fn(|cx| service.poll_ready(cx))
                    .await
                    .map_err(TargetError::no_answer)?;
                let response = service
                    .call(request)
                    .await
                    .map_err(TargetError::no_answer)?;
                reply(response).await
            })
        };
        Self {
            name: "service".to_owned(),
            send: Arc::new(send),
        }
    }

    /// Sends one request and reads the answer.
    ///
    /// # Errors
    ///
    /// [`TargetError`] when no answer came (connection refused or lost, the service
    /// failed); its text says what went wrong.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Reply, TargetError> {
        (self.send)(request).await
    }
}

/// Reads the status and at most [`MAX_REPLY_BODY`] bytes of the body; the rest is
/// never read (the body is dropped, and with it the connection).
async fn reply<B>(response: http::Response<B>) -> Result<Reply, TargetError>
where
    B: http_body::Body,
    B::Error: fmt::Display,
{
    let (parts, body) = response.into_parts();
    let mut body = std::pin::pin!(body);
    let mut kept = Vec::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let Ok(mut data) = frame.map_err(TargetError::no_answer)?.into_data() else {
            continue; // trailers
        };
        while data.has_remaining() && kept.len() < MAX_REPLY_BODY {
            let chunk = data.chunk();
            let n = chunk.len().min(MAX_REPLY_BODY - kept.len());
            kept.extend_from_slice(&chunk[..n]);
            data.advance(n);
        }
        if data.has_remaining() {
            truncated = true;
            break;
        }
    }
    // A character cut in two at the end is dropped, not replaced.
    if truncated
        && let Err(e) = std::str::from_utf8(&kept)
        && e.error_len().is_none()
    {
        kept.truncate(e.valid_up_to());
    }
    Ok(Reply {
        status: parts.status,
        body: String::from_utf8_lossy(&kept).into_owned(),
        truncated,
    })
}

async fn post(address: &str, request: Request<Full<Bytes>>) -> Result<Reply, TargetError> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| TargetError::no_answer(format_args!("cannot connect to {address}: {e}")))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(TargetError::no_answer)?;
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(TargetError::no_answer);
    let answer = match response {
        Ok(response) => reply(response).await,
        Err(e) => Err(e),
    };
    drop(sender);
    connection.abort();
    answer
}

#[cfg(test)]
mod tests {
    use super::without_userinfo;

    #[test]
    fn what_comes_before_an_at_sign_is_never_shown() {
        for (url, shown) in [
            ("http://ana:pw@host:3000/x", "http://…@host:3000/x"),
            ("http://ana:p/w?#@host/x", "http://…@host/x"),
            ("ana:pw@host", "…@host"),
            ("http://host:3000/x", "http://host:3000/x"),
            ("not a URL", "not a URL"),
        ] {
            assert_eq!(without_userinfo(url), shown, "{url}");
        }
    }
}
