//! Connecting, sending one request, and reading its answer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::error::{self, Redactor, seconds};
use crate::retry::{Retry, parse_retry_after};
use crate::url::next_link;
use crate::{Client, Error, ErrorKind, MAX_ANSWER};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The HTTPS connector under the connect timeout as a whole: DNS, TCP and the TLS
/// handshake. A failure here is a connect error to hyper, so the request is known
/// not to have been sent.
#[derive(Clone)]
pub(crate) struct ConnectWithin {
    pub(crate) connector: Connector,
    pub(crate) timeout: Duration,
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

/// What one public call carries through its requests: when it must end, and the
/// strings no error may show.
pub(crate) struct Call {
    /// `None`: a deadline too far to be reached, no deadline.
    pub(crate) until: Option<Instant>,
    pub(crate) sensitive: Redactor,
}

impl Call {
    /// What is left of the deadline.
    pub(crate) fn left(&self) -> Duration {
        self.until.map_or(Duration::MAX, |u| {
            u.saturating_duration_since(Instant::now())
        })
    }

    /// Whether a wait of `wait` ends before the deadline (and can be waited at all).
    pub(crate) fn can_wait(&self, wait: Duration) -> bool {
        match Instant::now().checked_add(wait) {
            None => false,
            Some(end) => self.until.is_none_or(|until| end < until),
        }
    }

    /// The one way out of a public call: every error it returns, whatever built it,
    /// is scrubbed here of the token and the secret sent.
    pub(crate) fn end<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        result.map_err(|e| e.redacted(&self.sensitive))
    }
}

/// One answer: its status, the `Retry-After` wait, and its body (for a status other
/// than 2xx, only its beginning: `complete` says whether it is all of it, `total` is
/// its length when known).
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    /// The `Link` header's `rel="next"` target, if any.
    pub(crate) next_link: Option<String>,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Bytes,
    pub(crate) complete: bool,
    pub(crate) total: Option<u64>,
}

impl Client {
    pub(crate) fn start(&self, secret: Option<&str>) -> Call {
        Call {
            until: Instant::now().checked_add(self.inner.settings.deadline),
            sensitive: Redactor::new(
                [Some(self.inner.token.as_str()), secret]
                    .into_iter()
                    .flatten(),
            ),
        }
    }

    /// One call with its retries, decoding a 2xx answer as `T`.
    pub(crate) async fn json<T: DeserializeOwned>(
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
        // Read as a JSON value first, as list items are, so that a key sent twice
        // keeps its last value in every answer alike.
        serde_json::from_slice::<serde_json::Value>(&answer.body)
            .and_then(T::deserialize)
            .map_err(|e| {
                Error::new(ErrorKind::Decode, format!("{endpoint}: {e}"))
                    .set_status(answer.status)
                    .with_attempts(attempts)
            })
    }

    /// One request under the request timeout, cut to what is left of the deadline.
    pub(crate) async fn attempt(
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
