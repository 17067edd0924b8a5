//! One endpoint, verified once: some events handled inline, the rest queued.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::Enqueuer;
use crate::dedup::{IdempotencyStore, MemoryStore};
use crate::event::{Event, EventType};
use crate::receiver::endpoint::sealed::Sealed;
use crate::receiver::{Answer, Endpoint, Handler, Outcome, Receiver};
use crate::signature::Verifier;

/// Where a [`Split`] endpoint sends an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Handled now by the [`Receiver`], answered once its handler has run.
    Inline,
    /// Put on the queue by the [`Enqueuer`], answered once the queue has it.
    Queue,
}

/// How a [`Split`] chooses.
#[derive(Clone)]
enum Rule {
    /// These types inline, every other (and unknown types) queued.
    Types(Vec<EventType>),
    /// The user's function.
    Function(Arc<dyn Fn(&Event<'_>) -> Route + Send + Sync>),
}

/// One endpoint that verifies each delivery **once**, then per event either runs
/// the handler inline (a [`Receiver`], with its store, time limit and answers) or
/// puts it on the queue (an [`Enqueuer`]), by event type or by a function you give.
///
/// Light events (a presence change, a read receipt) are answered as soon as their
/// handler has run; slow ones (a message to index, a conversation to sync) are
/// acknowledged once queued and run by a [`Worker`](super::Worker). Every answer and
/// guarantee is the one of the side that takes the event: the inline side's
/// exactly-once claim and statuses, the queue side's at-most-one entry per event
/// id and 200 only once the queue has it. The `webhook.verified` challenge is
/// answered whichever side it is routed to, and never reaches a handler.
///
/// It is an [`Endpoint`]: mount it with `axum::endpoint`, `actix::endpoint` or
/// `tower::WebhookService::new`, or call [`Split::receive`].
///
/// What the split takes from which side:
///
/// - the **receiver's** verifier (its secrets and body size limit) verifies every
///   delivery, and its body read time limit applies; the enqueuer's verifier is not
///   used (build both from the same [`Verifier`]);
/// - a request refused before routing (a bad signature, an unparsable body, a body
///   too large or too slow) is reported to the **receiver's** outcome hook, metrics
///   and span;
/// - an event routed to a side is reported by that side (its hook, its metrics:
///   `notmeta_webhooks_deliveries_total` or `notmeta_webhooks_enqueued_total`), and
///   that side's maximum event age and dedup window apply.
///
/// An event id always takes the same route as long as the rule depends on the event
/// alone (its type, its data), so NotMeta's retries of an event meet the same side's
/// de-duplication. Changing the rule while deliveries of an event may still come
/// (up to about 81 minutes of NotMeta's retries) can run an event once on each
/// side: keep the rule stable, or change it with both sides sharing nothing but a
/// short overlap you can tolerate.
///
/// ```
/// use notmeta_webhooks::queue::{Enqueuer, Queue, Route, Split};
/// use notmeta_webhooks::receiver::{HandlerError, Outcome, Receiver};
/// use notmeta_webhooks::{sign, Event, EventType, Verifier};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = Verifier::new("whsec_abc123")?;
/// let receiver = Receiver::new(verifier.clone(), |event: Event<'static>| async move {
///     println!("inline: {}", event.type_str());
///     Ok::<(), HandlerError>(())
/// });
/// let queue = Queue::in_memory();
/// let split = Split::new(receiver, Enqueuer::new(verifier, queue.clone()))
///     .inline([EventType::UserOnline, EventType::UserOffline]);
///
/// let online = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
/// let answer = split.receive(online, [sign(online, "whsec_abc123").as_bytes()]).await;
/// assert_eq!(answer.outcome(), Outcome::Handled);
///
/// let message = br#"{"id":"evt_2","type":"message.received","created_at":"2024-01-01T12:00:00Z","data":{"message":{"id":"msg_1"},"conversation":{"id":"conv_1"}}}"#;
/// let answer = split.receive(message, [sign(message, "whsec_abc123").as_bytes()]).await;
/// assert_eq!(answer.outcome(), Outcome::Queued);
/// assert_eq!(queue.counts().await?.pending, 1);
/// # Ok(()) }
/// ```
pub struct Split<H, S = MemoryStore> {
    receiver: Receiver<H, S>,
    enqueuer: Enqueuer,
    rule: Rule,
}

/// Clones share the receiver's handler and store and the enqueuer's queue.
impl<H, S> Clone for Split<H, S> {
    fn clone(&self) -> Self {
        Self {
            receiver: self.receiver.clone(),
            enqueuer: self.enqueuer.clone(),
            rule: self.rule.clone(),
        }
    }
}

impl<H, S: fmt::Debug> fmt::Debug for Split<H, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Split");
        d.field("receiver", &self.receiver)
            .field("enqueuer", &self.enqueuer);
        match &self.rule {
            Rule::Types(types) => d.field("inline", types),
            Rule::Function(_) => d.field("route", &"a function"),
        };
        d.finish()
    }
}

impl<H, S> Split<H, S> {
    /// An endpoint that verifies with `receiver`'s verifier and queues every event
    /// with `enqueuer`, until [`inline`](Self::inline) or
    /// [`route_with`](Self::route_with) says otherwise.
    pub fn new(receiver: Receiver<H, S>, enqueuer: Enqueuer) -> Self {
        Self {
            receiver,
            enqueuer,
            rule: Rule::Types(Vec::new()),
        }
    }

    /// Handles events of these types inline; every other type, and types this
    /// version does not know, are queued. Adds to the types given before, and
    /// replaces a [`route_with`](Self::route_with) function.
    ///
    /// ```
    /// use notmeta_webhooks::queue::{Enqueuer, Queue, Route, Split};
    /// use notmeta_webhooks::receiver::{HandlerError, Receiver};
    /// use notmeta_webhooks::{Event, EventType, Verifier};
    ///
    /// let verifier = Verifier::new("whsec_abc123")?;
    /// let receiver = Receiver::new(verifier.clone(), |_: Event<'static>| async {
    ///     Ok::<(), HandlerError>(())
    /// });
    /// let split = Split::new(receiver, Enqueuer::new(verifier, Queue::in_memory()))
    ///     .inline([EventType::UserOnline]);
    ///
    /// let event = Event::parse_unverified(
    ///     br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#,
    /// )?;
    /// assert_eq!(split.route_of(&event), Route::Inline);
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    #[must_use]
    pub fn inline(mut self, types: impl IntoIterator<Item = EventType>) -> Self {
        let mut inline = match self.rule {
            Rule::Types(types) => types,
            Rule::Function(_) => Vec::new(),
        };
        inline.extend(types);
        inline.sort_unstable();
        inline.dedup();
        self.rule = Rule::Types(inline);
        self
    }

    /// Routes each event with `route`, which sees the verified, parsed event (its
    /// type, id and data). It runs on every delivery before anything is claimed or
    /// queued: keep it fast, and make it depend on the event alone, so every
    /// delivery of an event takes the same route. A panic in it is answered 500
    /// (NotMeta retries) and reported as a panic.
    ///
    /// ```
    /// use notmeta_webhooks::queue::{Enqueuer, Queue, Route, Split};
    /// use notmeta_webhooks::receiver::{HandlerError, Receiver};
    /// use notmeta_webhooks::{Event, Verifier};
    ///
    /// let verifier = Verifier::new("whsec_abc123")?;
    /// let receiver = Receiver::new(verifier.clone(), |_: Event<'static>| async {
    ///     Ok::<(), HandlerError>(())
    /// });
    /// // Every `user.*` event inline, the rest queued.
    /// let split = Split::new(receiver, Enqueuer::new(verifier, Queue::in_memory()))
    ///     .route_with(|event: &Event<'_>| {
    ///         if event.type_str().starts_with("user.") { Route::Inline } else { Route::Queue }
    ///     });
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    #[must_use]
    pub fn route_with(
        mut self,
        route: impl Fn(&Event<'_>) -> Route + Send + Sync + 'static,
    ) -> Self {
        self.rule = Rule::Function(Arc::new(route));
        self
    }

    /// Where `event` goes.
    #[must_use]
    pub fn route_of(&self, event: &Event<'_>) -> Route {
        match &self.rule {
            Rule::Types(inline) => match event.event_type() {
                Some(t) if inline.binary_search(&t).is_ok() => Route::Inline,
                _ => Route::Queue,
            },
            Rule::Function(route) => route(event),
        }
    }

    /// The inline side.
    #[must_use]
    pub fn receiver(&self) -> &Receiver<H, S> {
        &self.receiver
    }

    /// The queue side.
    #[must_use]
    pub fn enqueuer(&self) -> &Enqueuer {
        &self.enqueuer
    }
}

impl<H: Handler, S: IdempotencyStore> Split<H, S> {
    /// Processes one delivery: `body` exactly as received (read with the receiver's
    /// verifier's body limit) and every value of the `X-NotMeta-Signature` header.
    /// Verification and parsing happen once, before the returned future is first
    /// polled; then the event goes to the side [`route_of`](Self::route_of) names.
    pub fn receive<'r, I>(&'r self, body: &'r [u8], signature_values: I) -> BoxFuture<'r, Answer>
    where
        I: IntoIterator<Item: AsRef<[u8]>>,
    {
        let verified = self
            .receiver
            .verifier()
            .verify_and_parse_indexed(body, signature_values);
        let route = match &verified {
            Ok((event, secret_index)) => {
                let routed =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.route_of(event)));
                match routed {
                    Ok(route) => route,
                    Err(_panic) => {
                        let outcome = Outcome::Panicked;
                        let answer = self
                            .receiver
                            .early(Some(event), outcome, Some(*secret_index));
                        return Box::pin(std::future::ready(answer));
                    }
                }
            }
            // Refused: reported by the receiver.
            Err(_) => Route::Inline,
        };
        match route {
            Route::Inline => self.receiver.deliver(verified),
            Route::Queue => self.enqueuer.deliver(body, verified),
        }
    }
}

impl<H: Handler, S: IdempotencyStore> Endpoint for Split<H, S> {}

impl<H: Handler, S: IdempotencyStore> Sealed for Split<H, S> {
    fn verifier(&self) -> &Verifier {
        self.receiver.verifier()
    }

    fn body_read_timeout(&self) -> Duration {
        self.receiver.body_read_timeout()
    }

    fn refuse(&self, error: &crate::Error) -> Answer {
        Sealed::refuse(&self.receiver, error)
    }

    fn serve<'r>(
        &'r self,
        body: &'r [u8],
        signatures: &mut dyn Iterator<Item = &[u8]>,
    ) -> BoxFuture<'r, Answer> {
        self.receive(body, signatures)
    }
}
