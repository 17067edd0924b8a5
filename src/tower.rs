//! The ready-made endpoint as a `tower::Service` (feature `tower`).
//!
//! [`WebhookService`] serves `http::Request<B>` for any `http_body::Body` `B`, so
//! hyper alone, axum (`Router::route_service`), tonic and `lambda_http` share one
//! path: it reads the body with the verifier's limits, hands it to the
//! [`Receiver`], and answers as [`Outcome`](crate::receiver::Outcome) says. It never
//! fails (`Error = Infallible`) and is always ready.
//!
//! ```no_run
//! use hyper_util::rt::{TokioExecutor, TokioIo};
//! use hyper_util::server::conn::auto;
//! use hyper_util::service::TowerToHyperService;
//! use notmeta_webhooks::receiver::{HandlerError, Receiver};
//! use notmeta_webhooks::tower::WebhookService;
//! use notmeta_webhooks::{Event, Verifier};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let receiver = Receiver::new(Verifier::new("whsec_abc123")?, |event: Event<'static>| async move {
//!     println!("{} {}", event.id, event.type_str());
//!     Ok::<(), HandlerError>(())
//! });
//! let service = WebhookService::new(receiver);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! loop {
//!     let (socket, _) = listener.accept().await?;
//!     let service = TowerToHyperService::new(service.clone());
//!     tokio::spawn(async move {
//!         let _ = auto::Builder::new(TokioExecutor::new())
//!             .serve_connection(TokioIo::new(socket), service)
//!             .await;
//!     });
//! }
//! # }
//! ```

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes};
use futures_util::{FutureExt as _, StreamExt as _};
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt as _, Full};

use crate::adapter::body::{Declared, read_limited};
use crate::adapter::{Endpoint, closes_connection};
use crate::dedup::IdempotencyStore;
use crate::receiver::{Answer, Handler, Receiver};
use crate::signature::SIGNATURE_HEADER;

/// A `tower::Service` that receives NotMeta webhooks with a [`Receiver`].
///
/// It names neither the handler nor the store: build it from any receiver and keep
/// it as `WebhookService`. Cloning it is cheap, and clones share the receiver (its
/// handler and store).
#[derive(Clone)]
pub struct WebhookService {
    endpoint: Arc<dyn Endpoint>,
}

impl fmt::Debug for WebhookService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookService")
            .field("verifier", self.endpoint.verifier())
            .finish_non_exhaustive()
    }
}

impl WebhookService {
    /// A service over `receiver`.
    #[must_use]
    pub fn new<H: Handler, S: IdempotencyStore>(receiver: Receiver<H, S>) -> Self {
        Self {
            endpoint: Arc::new(receiver),
        }
    }

    /// A service that verifies each delivery and puts it on a queue (feature
    /// `queue`): 200 once Redis has accepted it, and
    /// [`Worker`](crate::queue::Worker)s run the handler later.
    ///
    /// ```no_run
    /// use notmeta_webhooks::queue::{Enqueuer, Queue};
    /// use notmeta_webhooks::tower::WebhookService;
    /// use notmeta_webhooks::Verifier;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let queue = Queue::connect("redis://127.0.0.1:6379/").await?;
    /// let service = WebhookService::from_queue(Enqueuer::new(Verifier::new("whsec_abc123")?, queue));
    /// # let _ = service;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "queue")]
    #[cfg_attr(docsrs, doc(cfg(feature = "queue")))]
    #[must_use]
    pub fn from_queue(enqueuer: crate::queue::Enqueuer) -> Self {
        Self {
            endpoint: Arc::new(enqueuer),
        }
    }
}

impl<B> tower_service::Service<Request<B>> for WebhookService
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let endpoint = Arc::clone(&self.endpoint);
        Box::pin(receive(endpoint, request).map(|answer| Ok(response(answer))))
    }
}

/// Reads the request's body with the verifier's limits and processes it.
///
/// A function returning an `async` block rather than an `async fn`, so that the
/// boxed future holds the request once (an `async fn` keeps a copy of each
/// argument).
fn receive<B>(endpoint: Arc<dyn Endpoint>, request: Request<B>) -> impl Future<Output = Answer>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    // What the headers say is taken now, and the future holds only that.
    let (parts, body) = request.into_parts();
    let declared = Declared::from_headers(&parts.headers);
    // The receiver needs no more than two values to tell one from several.
    let mut values = parts.headers.get_all(SIGNATURE_HEADER).iter().cloned();
    let signatures = [values.next(), values.next()];
    async move {
        let verifier = endpoint.verifier();
        let chunks = body
            .into_data_stream()
            .map(|chunk| chunk.map(|mut data| data.copy_to_bytes(data.remaining())));
        let body = read_limited(
            std::pin::pin!(chunks),
            declared,
            verifier.max_body_size(),
            verifier.body_read_timeout(),
        )
        .await;
        match body {
            Ok(body) => endpoint.deliver(body, signatures).await,
            Err(error) => endpoint.refuse(&error),
        }
    }
}

/// The `http` response for an answer.
pub(crate) fn response(answer: Answer) -> Response<Full<Bytes>> {
    let close = closes_connection(answer.outcome());
    let (status, body) = answer.into_parts();
    // A fixed text is sent without copying it.
    let body = match body {
        Cow::Borrowed(text) => Bytes::from_static(text.as_bytes()),
        Cow::Owned(text) => Bytes::from(text),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::event::TEXT_PLAIN),
    );
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
