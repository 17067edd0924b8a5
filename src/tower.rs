//! The ready-made endpoint as a `tower::Service` (feature `tower`).
//!
//! [`WebhookService`] serves `http::Request<B>` for any `http_body::Body` `B`, so
//! hyper alone, axum (`Router::route_service`), tonic and `lambda_http` share one
//! path: it reads the body with the endpoint's limits, hands it to the
//! [`Endpoint`] (a [`Receiver`](crate::receiver::Receiver), or the queue's
//! `Enqueuer` with the `queue` feature), and answers as
//! [`Outcome`](crate::receiver::Outcome) says. It never fails (`Error = Infallible`)
//! and is always ready.
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

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes};
use futures_util::{FutureExt as _, StreamExt as _};
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt as _, Full};

use crate::adapter::body::{Declared, read_limited};
use crate::adapter::body_bytes;
use crate::receiver::{Answer, Endpoint};
use crate::signature::SIGNATURE_HEADER;

/// A `tower::Service` that receives NotMeta webhooks with an [`Endpoint`].
///
/// It names neither the endpoint nor its handler and store: build it from any
/// endpoint and keep it as `WebhookService`. Cloning it is cheap, and clones share the
/// endpoint (its handler and store, or its queue).
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
    /// A service over `endpoint`: a [`Receiver`](crate::receiver::Receiver), or the
    /// queue's `Enqueuer` (feature `queue`), which verifies each delivery and puts it
    /// on a queue (200 once Redis has accepted it) for the queue's `Worker`s to handle
    /// later.
    ///
    /// ```no_run
    /// # #[cfg(feature = "queue")] mod with_queue {
    /// use notmeta_webhooks::queue::{Enqueuer, Queue};
    /// use notmeta_webhooks::tower::WebhookService;
    /// use notmeta_webhooks::Verifier;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let queue = Queue::connect("redis://127.0.0.1:6379/").await?;
    /// let service = WebhookService::new(Enqueuer::new(Verifier::new("whsec_abc123")?, queue));
    /// # let _ = service;
    /// # Ok(()) }
    /// # }
    /// ```
    #[must_use]
    pub fn new(endpoint: impl Endpoint) -> Self {
        Self {
            endpoint: Arc::new(endpoint),
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

/// Reads the request's body with the endpoint's limits and processes it.
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
    // The endpoint needs no more than two values to tell one from several.
    let mut values = parts.headers.get_all(SIGNATURE_HEADER).iter().cloned();
    let signatures = [values.next(), values.next()];
    async move {
        let chunks = body
            .into_data_stream()
            .map(|chunk| chunk.map(|mut data| data.copy_to_bytes(data.remaining())));
        let body = read_limited(
            std::pin::pin!(chunks),
            declared,
            endpoint.verifier().max_body_size(),
            endpoint.body_read_timeout(),
        )
        .await;
        let body = match body {
            Ok(body) => body,
            Err(error) => return endpoint.refuse(&error),
        };
        let delivery = {
            let mut values = signatures.iter().flatten().map(HeaderValue::as_bytes);
            endpoint.serve(&body, &mut values)
        };
        delivery.await
    }
}

/// The `http` response for an answer (as [`Answer::into_response`] builds it).
pub(crate) fn response(answer: Answer) -> Response<Full<Bytes>> {
    answer.into_http_response(|text| Full::new(body_bytes(text)))
}
