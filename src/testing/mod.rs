//! A test kit for receivers (feature `testing`; add it to your dev-dependencies).
//!
//! - [`sample`]: a sample event of every documented type, with a fresh id and
//!   `created_at` set to now, and a builder ([`Sample`]) to change its id, dates,
//!   text, status, user, …; it gives a body, an [`Event`](crate::Event) for handler
//!   tests without JSON, or a signed `http::Request`.
//! - [`SignedRequest`]: any body with its `X-NotMeta-Signature`.
//! - [`Simulator`]: NotMeta's deliveries played against your receiver (a URL or an
//!   in-process tower service, [`Target`]): the retry schedule on a
//!   [`ManualClock`](crate::clock::ManualClock) or in compressed time (the answer
//!   time limit compressed too), duplicates and concurrent duplicates, each delivery
//!   retried on its own, and a [`Report`] of every attempt and answer. A [`Target`]
//!   reads at most [`MAX_REPLY_BODY`] of an answer.
//! - `TestQueue` (with the `queue` feature too): for an app that uses the
//!   [queue](crate::queue): a queue in memory, its endpoint with a known secret,
//!   signed samples posted through it, and a worker run until the queue is idle
//!   (`Worker::run_until_idle`), retrying at once.
//!
//! ```toml
//! [dev-dependencies]
//! notmeta-webhooks = { version = "0.1", features = ["testing"] }
//! ```
//!
//! Testing a handler directly:
//!
//! ```
//! use notmeta_webhooks::receiver::HandlerError;
//! use notmeta_webhooks::testing::sample;
//! use notmeta_webhooks::{Event, EventKind, EventType};
//!
//! async fn on_event(event: Event<'static>) -> Result<(), HandlerError> {
//!     match &event.kind {
//!         EventKind::MessageReceived(m) if m.message.text.is_none() => {
//!             Err(HandlerError::permanent("a message without text"))
//!         }
//!         _ => Ok(()),
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! assert!(on_event(sample(EventType::MessageReceived).text("hola").event()).await.is_ok());
//! let no_text = sample(EventType::MessageReceived).remove("/message/text").event();
//! assert_eq!(on_event(no_text).await.unwrap_err().status(), 400);
//! # }
//! ```
//!
//! The samples are the bodies NotMeta documents (`data/events` in the repository);
//! [`documented`] gives them unchanged.

#[cfg(feature = "queue")]
mod queue;
mod request;
mod sample;
mod simulator;
mod target;

#[cfg(feature = "queue")]
#[cfg_attr(docsrs, doc(cfg(feature = "queue")))]
pub use queue::TestQueue;
pub use request::SignedRequest;
pub use sample::{Sample, documented, fresh_id, sample, samples};
pub use simulator::{
    ANSWER_TIMEOUT, Answer, Attempt, Fate, Kind, RETRY_SCHEDULE, Report, Simulator,
};
pub use target::{MAX_REPLY_BODY, Reply, Target, TargetError};
