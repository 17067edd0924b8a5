//! A receiver (or the queue's enqueuer) with its handler and store types erased.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::HeaderValue;

use crate::dedup::IdempotencyStore;
use crate::receiver::{Answer, Handler, Receiver};
use crate::signature::Verifier;

/// A receiver with its handler and store types erased: what an entry point holds.
///
/// Entry points are then not generic over the handler, so a server's connection
/// future never has to prove the handler's bounds again (which the compiler cannot
/// always do for closures inside `async` blocks).
pub(crate) trait Endpoint: Send + Sync + 'static {
    fn verifier(&self) -> &Verifier;

    /// The answer to a request refused while its body was read, reported as the
    /// endpoint reports its deliveries.
    fn refuse(&self, error: &crate::Error) -> Answer;

    /// Processes a body read to its end, with the first two signature header values.
    fn deliver(
        self: Arc<Self>,
        body: Bytes,
        signatures: [Option<HeaderValue>; 2],
    ) -> BoxFuture<'static, Answer>;
}

impl<H: Handler, S: IdempotencyStore> Endpoint for Receiver<H, S> {
    fn verifier(&self) -> &Verifier {
        Receiver::verifier(self)
    }

    fn refuse(&self, error: &crate::Error) -> Answer {
        Receiver::refuse(self, error)
    }

    fn deliver(
        self: Arc<Self>,
        body: Bytes,
        signatures: [Option<HeaderValue>; 2],
    ) -> BoxFuture<'static, Answer> {
        Box::pin(async move {
            let values = signatures.iter().flatten().map(HeaderValue::as_bytes);
            self.receive(&body, values).await
        })
    }
}
