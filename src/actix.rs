//! actix-web 4 integration (feature `actix`).
//!
//! Two ways in:
//!
//! - [`endpoint`]: a ready-made `POST` route that verifies, answers the challenge by
//!   itself, runs your handler and maps its outcome to the status NotMeta needs;
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

use std::borrow::Cow;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, EXPECT};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, Route, web};
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;

use crate::adapter::body::{Declared, read_limited};
pub use crate::adapter::rejection::WebhookRejection;
use crate::dedup::IdempotencyStore;
use crate::error::{Error, ErrorKind};
use crate::event::Event;
use crate::receiver::{Answer, Handler, Receiver};
use crate::signature::{SIGNATURE_HEADER, Verifier};

/// A ready-made `POST` route for `receiver`: mount it with
/// `App::route("/webhooks", endpoint(receiver))`.
///
/// It answers `webhook.verified` challenges itself, hands every other event to the
/// handler, and answers as [`Outcome`](crate::receiver::Outcome) says.
///
/// actix-web calls the app factory once per worker: create the [`Receiver`] outside
/// it and pass a clone here, so that all workers share one dedup store.
pub fn endpoint<H: Handler, S: IdempotencyStore>(receiver: Receiver<H, S>) -> Route {
    let receiver = Arc::new(receiver);
    web::post().to(move |request: HttpRequest, payload: web::Payload| {
        let receiver = Arc::clone(&receiver);
        async move { receive(&receiver, &request, payload.into_inner()).await }
    })
}

async fn receive<H: Handler, S: IdempotencyStore>(
    receiver: &Receiver<H, S>,
    request: &HttpRequest,
    payload: Payload,
) -> HttpResponse {
    let refuse = |error: &Error| receiver.refuse(error);
    let body = match read_or_refuse(request, payload, receiver.verifier(), refuse).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    answer(receiver.receive(&body, signatures(request)).await)
}

/// Reads the whole body with the verifier's limits, or the refusal to send (the
/// answer `refuse` gives, which reports it).
async fn read_or_refuse(
    request: &HttpRequest,
    mut payload: Payload,
    verifier: &Verifier,
    refuse: impl FnOnce(&Error) -> Answer,
) -> Result<Bytes, HttpResponse> {
    match read_body(request, &mut payload, verifier).await {
        Ok(body) => Ok(body),
        Err(error) => Err(refusal(refuse(&error), payload)),
    }
}

/// The values of the signature header.
fn signatures(request: &HttpRequest) -> impl Iterator<Item = &[u8]> {
    request
        .headers()
        .get_all(SIGNATURE_HEADER.as_str())
        .map(|v| v.as_bytes())
}

/// A ready-made `POST` route that verifies each delivery and puts it on a queue
/// (feature `queue`), answering 200 once Redis has accepted it; mount it with
/// `App::route("/webhooks", queue_endpoint(enqueuer.clone()))` and run
/// [`Worker`](crate::queue::Worker)s to handle the events.
///
/// ```no_run
/// use actix_web::{App, HttpServer};
/// use notmeta_webhooks::queue::{Enqueuer, Queue};
/// use notmeta_webhooks::Verifier;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let queue = Queue::connect("redis://127.0.0.1:6379/").await?;
/// let enqueuer = Enqueuer::new(Verifier::new("whsec_abc123")?, queue);
/// HttpServer::new(move || {
///     App::new().route("/webhooks", notmeta_webhooks::actix::queue_endpoint(enqueuer.clone()))
/// })
/// .bind(("127.0.0.1", 3000))?
/// .run()
/// .await?;
/// # Ok(()) }
/// ```
#[cfg(feature = "queue")]
#[cfg_attr(docsrs, doc(cfg(feature = "queue")))]
pub fn queue_endpoint(enqueuer: crate::queue::Enqueuer) -> Route {
    let enqueuer = Arc::new(enqueuer);
    web::post().to(move |request: HttpRequest, payload: web::Payload| {
        let enqueuer = Arc::clone(&enqueuer);
        async move {
            let payload = payload.into_inner();
            let refuse = |error: &crate::Error| enqueuer.refuse(error);
            let body = match read_or_refuse(&request, payload, enqueuer.verifier(), refuse).await {
                Ok(body) => body,
                Err(refused) => return refused,
            };
            answer(enqueuer.receive(&body, signatures(&request)).await)
        }
    })
}

fn answer(answer: Answer) -> HttpResponse {
    respond(answer, None)
}

/// The answer to a request whose body was not read to its end: when the connection
/// is to be closed, the unread payload is held until the answer has been written.
///
/// actix-http reads what is left of a chunked body whose payload was dropped, however
/// long that takes, to keep the connection; while the payload is still held when the
/// response ends, it closes the connection instead (after its client disconnect
/// timeout), so a client dripping a body cannot keep it open.
fn refusal(answer: Answer, payload: Payload) -> HttpResponse {
    respond(answer, Some(payload))
}

fn respond(answer: Answer, unread: Option<Payload>) -> HttpResponse {
    let status = actix_status(answer.status());
    let close = crate::adapter::closes_connection(answer.outcome());
    let (_, body) = answer.into_parts();
    let mut response = HttpResponse::build(status);
    response.insert_header((CONTENT_TYPE, crate::event::TEXT_PLAIN));
    // A fixed text is sent without copying it.
    let text = match body {
        Cow::Borrowed(text) => Bytes::from_static(text.as_bytes()),
        Cow::Owned(text) => Bytes::from(text),
    };
    if !close {
        return response.body(text);
    }
    // actix-http writes the `Connection` header from the response's connection type
    // and drops one set by hand: only `force_close` ends the connection.
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

/// Reads the whole body with the verifier's limits.
async fn read_body(
    request: &HttpRequest,
    payload: &mut Payload,
    verifier: &Verifier,
) -> Result<actix_web::web::Bytes, Error> {
    let headers = request.headers();
    let declared = Declared::new(
        headers.get(CONTENT_LENGTH).map(|v| v.as_bytes()),
        headers.get(EXPECT).map(|v| v.as_bytes()),
    );
    read_limited(
        payload,
        declared,
        verifier.max_body_size(),
        verifier.body_read_timeout(),
    )
    .await
}

/// An extractor for a verified, typed event.
///
/// The [`Verifier`] comes from app data: register it with
/// `App::app_data(web::Data::new(verifier))`. A request that fails is rejected with
/// [`WebhookRejection`] (400, 413 or 503) before your handler runs. The challenge is
/// yours to answer here ([`Event::challenge`]); [`endpoint`] answers it for you.
///
/// ```
/// use actix_web::{web, App, HttpResponse};
/// use notmeta_webhooks::actix::VerifiedEvent;
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
        let request = request.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let verifier = verifier.ok_or_else(|| {
                Error::with_static(
                    ErrorKind::Config,
                    "no web::Data<Verifier> registered with App::app_data",
                )
            })?;
            let body = read_body(&request, &mut payload, &verifier).await?;
            let signatures = request
                .headers()
                .get_all(SIGNATURE_HEADER.as_str())
                .map(|v| v.as_bytes());
            let event = verifier.verify_header_values(&body, signatures)?.parse()?;
            Ok(Self(event.into_owned()))
        })
    }
}

impl ResponseError for WebhookRejection {
    fn status_code(&self) -> StatusCode {
        actix_status(self.error().status())
    }

    fn error_response(&self) -> HttpResponse {
        answer(Answer::rejected(self.error()))
    }
}
