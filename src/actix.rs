//! actix-web 4 integration (feature `actix`).
//!
//! Two ways in:
//!
//! - [`endpoint`]: a ready-made `POST` route for an [`Endpoint`] (a [`Receiver`], or
//!   the queue's `Enqueuer` with the `queue` feature) that verifies, answers the
//!   challenge by itself, runs your handler (or enqueues) and maps the outcome to the
//!   status NotMeta needs;
//! - [`VerifiedEvent`]: an extractor for your own handler, which rejects forged or
//!   invalid requests with the right status ([`WebhookRejection`]).
//!
//! Both read the body themselves with the verifier's limit
//! ([`Verifier::max_body_size`], 1 MiB by default), refusing a larger body with 413
//! as soon as it is seen: from `Content-Length`, or while reading a chunked body.
//! actix-web's `PayloadConfig` does not apply to them.
//!
//! A body refused for its size, for arriving too slowly or because it could not be
//! read (503, retried) is answered with `Connection: close`. Two things actix-web's
//! server does on its own:
//!
//! - it answers `Expect: 100-continue` with `100 Continue` before any route runs
//!   (`HttpServer` has no setting for it), so a client announcing a body over the
//!   limit is asked for it, then answered 413 without it being read;
//! - after an answer to a chunked body that was not read to its end, it reads the rest
//!   of that body, however slowly it comes, unless the payload is still held when the
//!   answer has been written. [`endpoint`] holds it, and the connection is closed
//!   after actix-web's client disconnect timeout (1 s by default); a
//!   [`VerifiedEvent`] rejection cannot, so there a client dripping a chunked body
//!   keeps its connection (not a worker) until it stops.
//!
//! actix-web 4 is built on `http` 0.2 while this crate's core uses `http` 1; the
//! adapter converts between them, and only actix-web types appear here.
//!
//! ```no_run
//! use actix_web::{App, HttpServer};
//! use notmeta_webhooks::receiver::{HandlerError, Receiver};
//! use notmeta_webhooks::{Event, Verifier};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::new(std::env::var("NOTMETA_WEBHOOK_SECRET")?)?;
//! // Build the receiver once, outside the app factory: its clones share the handler
//! // and the dedup store across actix-web's workers.
//! let receiver = Receiver::new(verifier, |event: Event<'static>| async move {
//!     println!("{} {}", event.id, event.type_str());
//!     Ok::<(), HandlerError>(())
//! });
//! HttpServer::new(move || {
//!     App::new().route("/webhooks", notmeta_webhooks::actix::endpoint(receiver.clone()))
//! })
//! .bind(("127.0.0.1", 3000))?
//! .run()
//! .await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_LENGTH, EXPECT};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, Route, web};
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;

pub use crate::adapter::BodyReadTimeout;
use crate::adapter::body::{Declared, read_limited};
use crate::adapter::body_bytes;
pub use crate::adapter::rejection::WebhookRejection;
use crate::error::{Error, ErrorKind};
use crate::event::Event;
#[cfg(doc)]
use crate::receiver::Receiver;
use crate::receiver::{Answer, Endpoint};
use crate::signature::{SIGNATURE_HEADER, Verifier};

/// A ready-made `POST` route for `endpoint`: mount it with
/// `App::route("/webhooks", endpoint(receiver.clone()))`.
///
/// For a [`Receiver`] it answers `webhook.verified` challenges itself, hands every
/// other event to the handler, and answers as [`Outcome`](crate::receiver::Outcome)
/// says. For the queue's `Enqueuer` (feature `queue`) it verifies each delivery and
/// puts it on the queue, answering 200 once Redis has accepted it; the queue's
/// `Worker`s handle the events.
///
/// actix-web calls the app factory once per worker: create the endpoint outside it
/// and pass a clone here, so that all workers share one dedup store.
///
/// ```no_run
/// # #[cfg(feature = "queue")] mod with_queue {
/// use actix_web::{App, HttpServer};
/// use notmeta_webhooks::queue::{Enqueuer, Queue};
/// use notmeta_webhooks::Verifier;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let queue = Queue::connect("redis://127.0.0.1:6379/").await?;
/// let enqueuer = Enqueuer::new(Verifier::new("whsec_abc123")?, queue);
/// HttpServer::new(move || {
///     App::new().route("/webhooks", notmeta_webhooks::actix::endpoint(enqueuer.clone()))
/// })
/// .bind(("127.0.0.1", 3000))?
/// .run()
/// .await?;
/// # Ok(()) }
/// # }
/// ```
pub fn endpoint<E: Endpoint>(endpoint: E) -> Route {
    let endpoint = Arc::new(endpoint);
    web::post().to(move |request: HttpRequest, payload: web::Payload| {
        let endpoint = Arc::clone(&endpoint);
        async move { receive(&*endpoint, &request, payload.into_inner()).await }
    })
}

async fn receive<E: Endpoint>(
    endpoint: &E,
    request: &HttpRequest,
    mut payload: Payload,
) -> HttpResponse {
    let limit = endpoint.verifier().max_body_size();
    let time_limit = endpoint.body_read_timeout();
    let body = match read_body(request, &mut payload, limit, time_limit).await {
        Ok(body) => body,
        // The refusal holds the unread payload (see `respond`).
        Err(error) => return respond(endpoint.refuse(&error), Some(payload)),
    };
    let mut signatures = signatures(request);
    respond(endpoint.serve(&body, &mut signatures).await, None)
}

/// The values of the signature header.
fn signatures(request: &HttpRequest) -> impl Iterator<Item = &[u8]> {
    request
        .headers()
        .get_all(SIGNATURE_HEADER.as_str())
        .map(|v| v.as_bytes())
}

/// The actix-web response for an answer: the `http` response
/// [`Answer::into_response`] builds, in actix-web's types.
///
/// For a request whose body was not read to its end, `unread` is its payload: when
/// the connection is to be closed, it is held until the answer has been written.
/// actix-http reads what is left of a chunked body whose payload was dropped, however
/// long that takes, to keep the connection; while the payload is still held when the
/// response ends, it closes the connection instead (after its client disconnect
/// timeout), so a client dripping a body cannot keep it open.
fn respond(answer: Answer, unread: Option<Payload>) -> HttpResponse {
    let (parts, text) = answer.into_http_response(body_bytes).into_parts();
    let mut response = HttpResponse::build(actix_status(parts.status));
    let mut close = false;
    for (name, value) in &parts.headers {
        if name == http::header::CONNECTION {
            // actix-http writes the `Connection` header from the response's
            // connection type and drops one set by hand: only `force_close` ends the
            // connection.
            close |= value == "close";
        } else {
            response.insert_header((name.as_str(), value.as_bytes()));
        }
    }
    if !close {
        return response.body(text);
    }
    response.force_close();
    match unread {
        Some(payload) => response.body(HoldingPayload {
            text: Some(text),
            _payload: payload,
        }),
        None => response.body(text),
    }
}

/// A fixed response body that keeps the request's payload alive until it is sent.
struct HoldingPayload {
    text: Option<Bytes>,
    _payload: Payload,
}

impl actix_web::body::MessageBody for HoldingPayload {
    type Error = std::convert::Infallible;

    fn size(&self) -> actix_web::body::BodySize {
        let len = self.text.as_ref().map_or(0, Bytes::len);
        actix_web::body::BodySize::Sized(u64::try_from(len).unwrap_or(u64::MAX))
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        std::task::Poll::Ready(self.get_mut().text.take().filter(|t| !t.is_empty()).map(Ok))
    }
}

/// Converts an `http` 1 status into actix-web's `http` 0.2 one.
fn actix_status(status: http::StatusCode) -> StatusCode {
    StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Reads the whole body, refusing one over `limit` bytes or slower than `time_limit`.
async fn read_body(
    request: &HttpRequest,
    payload: &mut Payload,
    limit: usize,
    time_limit: Duration,
) -> Result<Bytes, Error> {
    let headers = request.headers();
    let declared = Declared::new(
        headers.get(CONTENT_LENGTH).map(|v| v.as_bytes()),
        headers.get(EXPECT).map(|v| v.as_bytes()),
    );
    read_limited(payload, declared, limit, time_limit).await
}

/// An extractor for a verified, typed event.
///
/// The [`Verifier`] comes from app data: register it with
/// `App::app_data(web::Data::new(verifier))`; so does the body read time limit, a
/// [`BodyReadTimeout`], registered as `web::Data` or plainly
/// (`App::app_data(BodyReadTimeout(..))`; 15 s without one). A request that fails is rejected with
/// [`WebhookRejection`] (400, 413 or 503) before your handler runs. The challenge is
/// yours to answer here ([`Event::challenge`]); [`endpoint`] answers it for you.
///
/// ```
/// use actix_web::{web, App, HttpResponse};
/// use notmeta_webhooks::actix::{BodyReadTimeout, VerifiedEvent};
/// use notmeta_webhooks::Verifier;
///
/// async fn webhook(VerifiedEvent(event): VerifiedEvent) -> HttpResponse {
///     if let Some(challenge) = event.challenge() {
///         return HttpResponse::Ok().content_type("text/plain").body(challenge.to_owned());
///     }
///     println!("{} {}", event.id, event.type_str());
///     HttpResponse::Ok().finish()
/// }
///
/// let verifier = Verifier::new("whsec_abc123")?;
/// let app = App::new()
///     .app_data(web::Data::new(verifier))
///     // Optional: the body read time limit (15 s by default).
///     .app_data(web::Data::new(BodyReadTimeout(std::time::Duration::from_secs(5))))
///     .route("/webhooks", web::post().to(webhook));
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedEvent(pub Event<'static>);

impl FromRequest for VerifiedEvent {
    type Error = WebhookRejection;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let verifier = request
            .app_data::<web::Data<Verifier>>()
            .map(|data| Verifier::clone(data));
        let time_limit = BodyReadTimeout::limit(
            request
                .app_data::<web::Data<BodyReadTimeout>>()
                .map(|data| &***data)
                .or_else(|| request.app_data::<BodyReadTimeout>()),
        );
        let request = request.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let verifier = verifier.ok_or_else(|| {
                Error::with_static(
                    ErrorKind::Config,
                    "no web::Data<Verifier> registered with App::app_data",
                )
            })?;
            let limit = verifier.max_body_size();
            let body = read_body(&request, &mut payload, limit, time_limit).await?;
            let event = verifier.verify(&body, signatures(&request))?.parse()?;
            Ok(Self(event.into_owned()))
        })
    }
}

impl ResponseError for WebhookRejection {
    fn status_code(&self) -> StatusCode {
        actix_status(self.error().status())
    }

    fn error_response(&self) -> HttpResponse {
        respond(Answer::rejected(self.error()), None)
    }
}
