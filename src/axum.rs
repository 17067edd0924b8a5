//! axum 0.8 integration (feature `axum`).
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

pub use crate::adapter::BodyReadTimeout;
use crate::adapter::body::{Declared, read_limited};
pub use crate::adapter::rejection::WebhookRejection;
use crate::event::Event;
#[cfg(doc)]
use crate::receiver::Receiver;
use crate::receiver::{Answer, Endpoint};
use crate::signature::{SIGNATURE_HEADER, Verifier};
use crate::tower::{WebhookService, response};

/// A ready-made `POST` route for `endpoint`: mount it with
/// `Router::route("/webhooks", endpoint(receiver))`.
///
/// For a [`Receiver`] it answers `webhook.verified` challenges itself, hands every
/// other event to the handler, and answers as [`Outcome`](crate::receiver::Outcome)
/// says. For the queue's `Enqueuer` (feature `queue`) it verifies each delivery and
/// puts it on the queue, answering 200 once Redis has accepted it; the queue's
/// `Worker`s handle the events. It is the [`WebhookService`] of the `tower` entry
/// point behind axum's `post_service`; mount that service with
/// `Router::route_service` to take every method.
///
/// ```no_run
/// # #[cfg(feature = "queue")] mod with_queue {
/// use axum::Router;
/// use notmeta_webhooks::queue::{Enqueuer, Queue};
/// use notmeta_webhooks::Verifier;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let queue = Queue::connect("redis://127.0.0.1:6379/").await?;
/// let enqueuer = Enqueuer::new(Verifier::new("whsec_abc123")?, queue);
/// let app: Router = Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(enqueuer));
/// # let _ = app;
/// # Ok(()) }
/// # }
/// ```
pub fn endpoint<S>(endpoint: impl Endpoint) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    axum::routing::post_service(WebhookService::new(endpoint))
}

/// An extractor for a verified, typed event.
///
/// The [`Verifier`] comes from the router's state (`Verifier: FromRef<S>`, so the
/// state can be the verifier itself or a struct with a verifier field), the body read
/// time limit from a [`BodyReadTimeout`] request extension (15 s without one). A
/// request that fails is rejected with [`WebhookRejection`] (400, 413 or 503) before
/// your handler runs. The challenge is yours to answer here
/// ([`Event::challenge_response`]); [`endpoint`] answers it for you.
///
/// ```
/// use axum::{Router, routing::post, response::{IntoResponse, Response}};
/// use notmeta_webhooks::axum::{BodyReadTimeout, VerifiedEvent};
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
///     .with_state(Verifier::new("whsec_abc123")?)
///     // Optional: the body read time limit (15 s by default).
///     .layer(axum::Extension(BodyReadTimeout(std::time::Duration::from_secs(5))));
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
        let time_limit = BodyReadTimeout::limit(parts.extensions.get());
        let body = read_limited(
            body.into_data_stream(),
            declared,
            verifier.max_body_size(),
            time_limit,
        )
        .await?;
        let signatures = parts.headers.get_all(SIGNATURE_HEADER);
        let event = verifier.verify(&body, signatures)?.parse()?;
        Ok(Self(event.into_owned()))
    }
}

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        response(Answer::rejected(self.error())).into_response()
    }
}
