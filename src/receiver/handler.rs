//! Your code that acts on events, and how it says that it failed.

use std::fmt;
use std::future::Future;

use http::StatusCode;

use super::Outcome;
use crate::event::Event;

/// Why a handler could not process an event, and whether NotMeta should retry.
///
/// `Display` says which kind of failure it is; your error is its
/// [`source`](std::error::Error::source). Neither is ever sent to NotMeta: the
/// answer carries a fixed text.
///
/// ```
/// use notmeta_webhooks::receiver::HandlerError;
///
/// let retry = HandlerError::temporary("database unavailable");
/// assert_eq!(retry.status(), 503);
/// let give_up = HandlerError::permanent("conversation no longer exists");
/// assert_eq!(give_up.status(), 400);
/// assert_eq!(give_up.to_string(), "permanent handler failure");
/// ```
#[derive(Debug)]
pub struct HandlerError {
    temporary: bool,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl HandlerError {
    /// A failure that may pass (a database or downstream service is down): answered
    /// 503 so NotMeta retries the event (1 min, 5 min, 15 min, 1 h).
    pub fn temporary(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            temporary: true,
            source: error.into(),
        }
    }

    /// A failure that retrying cannot fix: answered 400 so NotMeta stops retrying.
    pub fn permanent(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            temporary: false,
            source: error.into(),
        }
    }

    /// Whether NotMeta should retry.
    #[must_use]
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// The outcome this failure gives the delivery.
    #[must_use]
    pub fn outcome(&self) -> Outcome {
        if self.temporary {
            Outcome::TemporaryFailure
        } else {
            Outcome::PermanentFailure
        }
    }

    /// The status answered: 503 for a temporary failure, 400 for a permanent one.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.outcome().status()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.temporary {
            "temporary handler failure"
        } else {
            "permanent handler failure"
        })
    }
}

impl std::error::Error for HandlerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Your code that acts on events.
///
/// Implemented for every `Fn(Event<'static>) -> impl Future<Output = Result<(),
/// HandlerError>>` that is `Send + Sync + 'static`, so an async closure is a handler.
///
/// A handler runs in a task of its own: once an event is claimed it runs to its end
/// (or to the time limit) whatever happens to the connection. It must not block its
/// thread: move blocking work to `tokio::task::spawn_blocking` and await it.
///
/// ```
/// use notmeta_webhooks::receiver::{Handler, HandlerError};
/// use notmeta_webhooks::{Event, EventKind};
///
/// fn assert_handler(_: impl Handler) {}
/// assert_handler(|event: Event<'static>| async move {
///     match &event.kind {
///         EventKind::MessageReceived(m) => println!("{:?}", m.message.text),
///         _ => {}
///     }
///     Ok::<(), HandlerError>(())
/// });
///
/// // Blocking work (a synchronous client, heavy CPU) goes to the blocking pool.
/// assert_handler(|event: Event<'static>| async move {
///     tokio::task::spawn_blocking(move || {
///         std::thread::sleep(std::time::Duration::from_millis(1)); // stands for the work
///         println!("{}", event.id);
///     })
///     .await
///     .map_err(HandlerError::temporary)
/// });
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a NotMeta webhook handler",
    label = "not a handler",
    note = "a handler is `Fn(Event<'static>) -> impl Future<Output = Result<(), HandlerError>> + Send + 'static`, and itself `Send + Sync + 'static`",
    note = "wrap the closure in `receiver::handler_fn(|event| async move {{ … }})` so it needs no type annotations; clone shared state before `async move`: the future must be `'static` and cannot borrow from the closure"
)]
pub trait Handler: Send + Sync + 'static {
    /// The future [`Handler::call`] returns.
    type Future: Future<Output = Result<(), HandlerError>> + Send + 'static;

    /// Handles one verified event.
    fn call(&self, event: Event<'static>) -> Self::Future;

    /// Handles one verified event whose id the delivery holds claimed in its
    /// idempotency store, for handlers that record the event as done themselves
    /// (the `postgres` feature's transactional handlers). The receiver calls this;
    /// by default it is [`call`](Self::call).
    #[doc(hidden)]
    fn call_claimed(&self, event: Event<'static>, claim: Option<Claimed>) -> Self::Future {
        let _ = claim;
        self.call(event)
    }
}

/// The claim a delivery holds while its handler runs: its token, and how long the
/// event must be remembered once done.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    /// The claim's token.
    pub token: crate::dedup::ClaimToken,
    /// The dedup window of a done mark.
    pub window: std::time::Duration,
}

impl<F, Fut> Handler for F
where
    F: Fn(Event<'static>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    type Future = Fut;

    fn call(&self, event: Event<'static>) -> Fut {
        self(event)
    }
}
