//! What the framework entry points serve: an [`Endpoint`].

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Answer, Handler, Receiver};
use crate::dedup::IdempotencyStore;
use crate::signature::Verifier;

/// How long the ready-made endpoints and the extractors wait, by default, for a whole
/// body to arrive: 15 s (a 1 MiB body over a 1 Mbit/s link takes about 8 s; NotMeta
/// gives up at 30 s). A slower body is answered 503
/// ([`ErrorKind::BodyTimeout`](crate::ErrorKind::BodyTimeout)) and its connection
/// closed.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// What a framework entry point serves: the inline [`Receiver`] (verify, de-duplicate,
/// run the handler, answer) or the queue's `queue::Enqueuer` (verify, enqueue, answer;
/// feature `queue`).
///
/// Each framework has one way to mount an endpoint: `axum::endpoint(e)`,
/// `actix::endpoint(e)` and `tower::WebhookService::new(e)`. Each reads the body with
/// the verifier's size limit and the endpoint's body read time limit, reports a body
/// it refuses as the endpoint reports its deliveries, and sends the endpoint's
/// [`Answer`] as [`Answer::into_response`] builds it.
///
/// The trait is sealed: only this crate's endpoints implement it.
///
/// ```
/// use notmeta_webhooks::receiver::{Endpoint, HandlerError, Receiver};
/// use notmeta_webhooks::{Event, Verifier};
///
/// fn mountable(_: &impl Endpoint) {}
///
/// let receiver = Receiver::new(Verifier::new("whsec_abc123")?, |_: Event<'static>| async {
///     Ok::<(), HandlerError>(())
/// });
/// mountable(&receiver);
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
pub trait Endpoint: sealed::Sealed {}

pub(crate) mod sealed {
    use super::{Answer, BoxFuture, Duration, Verifier};

    /// What the entry points call on an [`Endpoint`](super::Endpoint).
    pub trait Sealed: Send + Sync + 'static {
        /// The verifier (its body size limit is the one to read bodies with).
        fn verifier(&self) -> &Verifier;

        /// How long a whole body may take to arrive.
        fn body_read_timeout(&self) -> Duration;

        /// The answer to a request refused while its body was read (too large, too
        /// slow, unreadable), reported as the endpoint reports its deliveries.
        fn refuse(&self, error: &crate::Error) -> Answer;

        /// Processes a body read to its end, with the signature header's values.
        fn serve<'r>(
            &'r self,
            body: &'r [u8],
            signatures: &mut dyn Iterator<Item = &[u8]>,
        ) -> BoxFuture<'r, Answer>;
    }
}

impl<H: Handler, S: IdempotencyStore> Endpoint for Receiver<H, S> {}

impl<H: Handler, S: IdempotencyStore> sealed::Sealed for Receiver<H, S> {
    fn verifier(&self) -> &Verifier {
        Receiver::verifier(self)
    }

    fn body_read_timeout(&self) -> Duration {
        Receiver::body_read_timeout(self)
    }

    fn refuse(&self, error: &crate::Error) -> Answer {
        Receiver::refuse(self, error)
    }

    fn serve<'r>(
        &'r self,
        body: &'r [u8],
        signatures: &mut dyn Iterator<Item = &[u8]>,
    ) -> BoxFuture<'r, Answer> {
        self.receive(body, signatures)
    }
}
