//! Shorter handlers: `?` with a retry decision, and closures without type
//! annotations. Re-exported from [`receiver`](crate::receiver).

use std::future::Future;

use crate::event::Event;
use crate::receiver::HandlerError;

/// Turns any error into a [`HandlerError`] with the retry decision, so that `?`
/// works in a handler: `.temporary()?` (503, NotMeta retries) or `.permanent()?`
/// (400, it does not).
///
/// Implemented for every `Result` whose error converts into `Box<dyn Error + Send +
/// Sync>`: error types, `String` and `&str`, so `Option::ok_or("…")` works too.
///
/// ```
/// use notmeta_webhooks::receiver::{HandlerError, ResultExt};
///
/// fn save(text: &str) -> Result<u64, std::io::Error> {
///     Err(std::io::Error::other(format!("database down, cannot save {text:?}")))
/// }
///
/// fn handle(text: Option<&str>) -> Result<(), HandlerError> {
///     let text = text.ok_or("a message without text").permanent()?; // 400: do not retry
///     let _row = save(text).temporary()?; // 503: NotMeta retries later
///     Ok(())
/// }
///
/// assert_eq!(handle(None).unwrap_err().status(), 400);
/// assert_eq!(handle(Some("hola")).unwrap_err().status(), 503);
/// ```
pub trait ResultExt<T> {
    /// The error as a temporary failure: answered 503, NotMeta retries the event.
    ///
    /// # Errors
    ///
    /// [`HandlerError::temporary`] of the error, if there is one.
    fn temporary(self) -> Result<T, HandlerError>;

    /// The error as a permanent failure: answered 400, NotMeta does not retry.
    ///
    /// # Errors
    ///
    /// [`HandlerError::permanent`] of the error, if there is one.
    fn permanent(self) -> Result<T, HandlerError>;
}

impl<T, E> ResultExt<T> for Result<T, E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn temporary(self) -> Result<T, HandlerError> {
        self.map_err(HandlerError::temporary)
    }

    fn permanent(self) -> Result<T, HandlerError> {
        self.map_err(HandlerError::permanent)
    }
}

/// Gives a closure the handler's signature, so that it needs no type annotations:
/// `handler_fn(|event| async move { … })` instead of `|event: Event<'static>| async
/// move { …; Ok::<(), HandlerError>(()) }`. Returns the closure itself.
///
/// Shared state (a database pool, a client) is cloned into each call's future: the
/// closure owns one handle (`move`), and clones it before its `async move` block,
/// which then owns the clone. A handler's future must be `'static` (it runs in a
/// task of its own), so it cannot borrow from the closure.
///
/// ```
/// use std::sync::Arc;
/// use notmeta_webhooks::receiver::{handler_fn, Receiver, ResultExt};
/// use notmeta_webhooks::{EventKind, Verifier};
///
/// struct Inbox; // stands for a database pool, an HTTP client, …
/// impl Inbox {
///     async fn store(&self, _text: &str) -> Result<(), std::io::Error> { Ok(()) }
/// }
///
/// # fn main() -> Result<(), notmeta_webhooks::Error> {
/// let inbox = Arc::new(Inbox);
/// let receiver = Receiver::new(
///     Verifier::new("whsec_abc123")?,
///     handler_fn(move |event| {
///         let inbox = Arc::clone(&inbox); // one handle per call, moved into the future
///         async move {
///             if let EventKind::MessageReceived(m) = &event.kind {
///                 inbox.store(m.message.text.as_deref().unwrap_or("")).await.temporary()?;
///             }
///             Ok(())
///         }
///     }),
/// );
/// # let _ = receiver;
/// # Ok(())
/// # }
/// ```
///
/// Without the clone, the future would borrow the closure's `inbox`, and the closure
/// would not be a handler:
///
/// ```compile_fail
/// use std::sync::Arc;
/// use notmeta_webhooks::receiver::handler_fn;
///
/// let inbox = Arc::new(Vec::<String>::new());
/// let handler = handler_fn(move |_event| async {
///     let _n = inbox.len(); // borrows the closure's `inbox`: the future is not 'static
///     Ok(())
/// });
/// ```
pub fn handler_fn<F, Fut>(handler: F) -> F
where
    F: Fn(Event<'static>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    handler
}
