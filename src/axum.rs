//! axum 0.8 integration (feature `axum`).
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
//! axum's `DefaultBodyLimit` does not apply to them.
//!
//! ```no_run
//! use axum::Router;
//! use notmeta_webhooks::receiver::{HandlerError, Receiver};
//! use notmeta_webhooks::{Event, EventKind, Verifier};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let receiver = Receiver::new(
//!     Verifier::new(std::env::var("NOTMETA_WEBHOOK_SECRET")?)?,
//!     |event: Event<'static>| async move {
//!         if let EventKind::MessageReceived(m) = &event.kind {
//!             println!("{}: {:?}", event.id, m.message.text);
//!         }
//!         Ok::<(), HandlerError>(())
//!     },
//! );
//! let app: Router = Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(receiver));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

use axum::extract::{FromRef, FromRequest, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use crate::adapter::body::{Declared, read_limited};
pub use crate::adapter::rejection::WebhookRejection;
use crate::dedup::IdempotencyStore;
use crate::event::Event;
use crate::receiver::{Answer, Handler, Receiver};
use crate::signature::Verifier;
use crate::tower::{WebhookService, response};

/// A ready-made `POST` route for `receiver`: mount it with
/// `Router::route("/webhooks", endpoint(receiver))`.
///
/// It answers `webhook.verified` challenges itself, hands every other event to the
/// handler, and answers as [`Outcome`](crate::receiver::Outcome) says. It is the
/// [`WebhookService`] of the `tower` entry point behind axum's `post_service`; mount
/// that service with `Router::route_service` to take every method.
pub fn endpoint<H, St, S>(receiver: Receiver<H, St>) -> MethodRouter<S>
where
    H: Handler,
    St: IdempotencyStore,
    S: Clone + Send + Sync + 'static,
{
    axum::routing::post_service(WebhookService::new(receiver))
}

/// A ready-made `POST` route that verifies each delivery and puts it on a queue
/// (feature `queue`), answering 200 once Redis has accepted it; mount it with
/// `Router::route("/webhooks", queue_endpoint(enqueuer))` and run
/// [`Worker`](crate::queue::Worker)s to handle the events.
///
/// ```no_run
/// use axum::Router;
/// use notmeta_webhooks::queue::{Enqueuer, Queue};
/// use notmeta_webhooks::Verifier;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let queue = Queue::connect("redis://127.0.0.1:6379/").await?;
/// let enqueuer = Enqueuer::new(Verifier::new("whsec_abc123")?, queue);
/// let app: Router = Router::new().route("/webhooks", notmeta_webhooks::axum::queue_endpoint(enqueuer));
/// # let _ = app;
/// # Ok(()) }
/// ```
#[cfg(feature = "queue")]
#[cfg_attr(docsrs, doc(cfg(feature = "queue")))]
pub fn queue_endpoint<S>(enqueuer: crate::queue::Enqueuer) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    axum::routing::post_service(WebhookService::from_queue(enqueuer))
}

/// An extractor for a verified, typed event.
///
/// The [`Verifier`] comes from the router's state (`Verifier: FromRef<S>`, so the
/// state can be the verifier itself or a struct with a verifier field). A request
/// that fails is rejected with [`WebhookRejection`] (400, 413 or 503) before your
/// handler runs. The challenge is yours to answer here
/// ([`Event::challenge_response`]); [`endpoint`] answers it for you.
///
/// ```
/// use axum::{Router, routing::post, response::{IntoResponse, Response}};
/// use notmeta_webhooks::axum::VerifiedEvent;
/// use notmeta_webhooks::Verifier;
///
/// async fn webhook(VerifiedEvent(event): VerifiedEvent) -> Response {
///     if let Some(answer) = event.challenge_response() {
///         return answer.into_response();
///     }
///     println!("{} {}", event.id, event.type_str());
///     "OK".into_response()
/// }
///
/// let app: Router = Router::new()
///     .route("/webhooks", post(webhook))
///     .with_state(Verifier::new("whsec_abc123")?);
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedEvent(pub Event<'static>);

impl<S> FromRequest<S> for VerifiedEvent
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = WebhookRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Verifier::from_ref(state);
        let (parts, body) = request.into_parts();
        let declared = Declared::from_headers(&parts.headers);
        let body = read_limited(
            body.into_data_stream(),
            declared,
            verifier.max_body_size(),
            verifier.body_read_timeout(),
        )
        .await?;
        let event = verifier.verify_headers(&body, &parts.headers)?.parse()?;
        Ok(Self(event.into_owned()))
    }
}

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        response(Answer::rejected(self.error())).into_response()
    }
}
