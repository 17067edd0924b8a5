//! Receive NotMeta webhooks safely: verify the signature over the raw body in
//! constant time, get a typed event, answer the verification challenge, and answer
//! NotMeta with the status that makes its retries do the right thing.
//!
//! # Quick start
//!
//! ```
//! use notmeta_webhooks::{verify_and_parse, EventKind};
//! # let secret = "whsec_abc123";
//! # let body: &[u8] = br#"{"id":"evt_1","type":"message.received","created_at":"2024-01-01T12:00:00Z","data":{"message":{"id":"msg_1","from":"1234567890","type":"text","text":"Hola"},"conversation":{"id":"conv_1","status":"open"}}}"#;
//! # let signature_header = notmeta_webhooks::sign(body, secret);
//!
//! // `body`: the request body exactly as received; `signature_header`: the value
//! // of `X-NotMeta-Signature`.
//! match verify_and_parse(body, &signature_header, secret) {
//!     Ok(event) => match &event.kind {
//!         EventKind::MessageReceived(m) => println!("{}: {:?}", event.id, m.message.text),
//!         EventKind::WebhookVerified(v) => { let _answer = v.response(); /* send it */ }
//!         _ => {} // every other type, including ones NotMeta adds later
//!     },
//!     Err(e) => { let _status = e.status(); /* 400 or 413: answer it, do not retry */ }
//! }
//! ```
//!
//! Build a [`Verifier`] once when you receive many requests: it keys the HMAC once,
//! holds several secrets during a rotation, and enforces a body limit.
//! [`Verifier::verify`] takes the body and the signature header's values (one
//! string, or every value in an `http::HeaderMap`); [`Verifier::verify_request`]
//! takes a whole `http::Request`.
//!
//! The [`guide`] is the manual: delivery and statuses, verification and secret
//! rotation, the idempotency stores, the queue, failover, limits, operations, the
//! test kit and the command-line tool.
//!
//! # The signature
//!
//! NotMeta sends `X-NotMeta-Signature: sha256=<hex(HMAC-SHA256(secret, raw_body))>`.
//!
//! - The key is the secret's UTF-8 bytes exactly as NotMeta shows it, prefix included.
//! - The MAC covers the body **byte for byte as received**. Never verify JSON you
//!   parsed and serialised again: key order and white space change and genuine
//!   requests fail (or, worse, code that "fixes" this stops checking what was sent).
//! - The header value is `sha256=` (lower case) and exactly 64 hex digits, either
//!   case; spaces or tabs around the value are ignored. Anything else, and a header
//!   sent twice, is [`ErrorKind::MalformedSignature`].
//! - MACs are compared in constant time; the body is parsed only after the
//!   signature verified.
//!
//! # Rotating secrets
//!
//! ```
//! use notmeta_webhooks::{sign, Verifier};
//!
//! let verifier = Verifier::builder()
//!     .secret("whsec_new") // tried first
//!     .secret("whsec_old") // still accepted until NotMeta stops using it
//!     .build()?;
//! let body = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
//! let payload = verifier.verify(body, [&sign(body, "whsec_old")])?;
//! assert_eq!(payload.secret_index(), 1); // log this to see when "old" can go
//! # Ok::<(), notmeta_webhooks::Error>(())
//! ```
//!
//! # The challenge
//!
//! A new webhook receives a signed `webhook.verified` event and must answer `200`
//! with the body being exactly its `challenge`. [`Event::challenge_response`] builds
//! that `http::Response`; [`Event::challenge`] gives the bare string.
//!
//! # Events
//!
//! [`Event`] holds the envelope (`id`, `created_at`) and an [`EventKind`] with one
//! variant per documented type. A type NotMeta adds later parses to
//! [`EventKind::Unknown`] with its name and raw `data`: never an error. Status, message
//! type and role values NotMeta adds later arrive as `Other(..)`. Payloads NotMeta does
//! not document are lenient: a missing, `null` or oddly typed field reads as `None`.
//! Fields this crate does not model stay reachable with [`Event::data_as`].
//!
//! Events borrow from the body; [`Event::into_owned`] detaches one.
//!
//! [`Event`], [`EventKind`] and [`EventType`] are at the crate root; the payload of
//! each variant, the objects inside it, the identifiers, [`event::Timestamp`] and the
//! open enums are in the [`event`] module.
//!
//! # Errors and HTTP statuses
//!
//! Verifying and parsing fail with an [`Error`]; its [`ErrorKind`] tells what went
//! wrong and [`Error::status`] what to answer. A 4xx tells NotMeta the request can
//! never succeed, so it does not retry; a 5xx or no answer in time is a temporary
//! failure, which it retries (after 1 min, 5 min, 15 min and 1 h).
//!
//! | situation | [`ErrorKind`] | status | NotMeta retries |
//! |---|---|---|---|
//! | no signature header | [`MissingSignature`](ErrorKind::MissingSignature) | 400 | no |
//! | header not `sha256=` + 64 hex digits, or sent twice | [`MalformedSignature`](ErrorKind::MalformedSignature) | 400 | no |
//! | MAC matches no secret | [`SignatureMismatch`](ErrorKind::SignatureMismatch) | 400 | no |
//! | verified body is not a valid event | [`InvalidEvent`](ErrorKind::InvalidEvent) | 400 | no |
//! | body over the limit (default 1 MiB) | [`BodyTooLarge`](ErrorKind::BodyTooLarge) | 413 | no |
//! | body not readable to its end (connection lost, broken chunked encoding, a body middleware's error; the connection is closed) | [`BodyRead`](ErrorKind::BodyRead) | 503 | yes |
//! | body slower to arrive than the read time limit (default 15 s; the connection is closed) | [`BodyTimeout`](ErrorKind::BodyTimeout) | 503 | yes |
//! | empty secret, or none configured; a receiver on a thread without a Tokio runtime with timers | [`Config`](ErrorKind::Config) | 500 | yes, until the configuration is fixed |
//!
//! Answer 5xx (503) yourself when *your* handling fails temporarily, so that NotMeta
//! retries. Reading event data into your own types ([`Event::data_as`],
//! [`event::RawJson::deserialize`]) and parsing a timestamp fail with
//! [`event::DataError`] and [`event::ParseTimestampError`] instead: those are faults on
//! the receiving side, so they carry no status; answering 400 for them would tell
//! NotMeta never to retry.
//!
//! # Frameworks and delivery guarantees (optional features)
//!
//! | feature | what it adds |
//! |---|---|
//! | `receiver` | `receiver::Receiver`: a framework-neutral endpoint that answers the challenge, runs your async handler under a time limit, catches its panics, de-duplicates on event id (`dedup::MemoryStore` by default) and maps every outcome to the status NotMeta's retries need |
//! | `tower` | `tower::WebhookService::new(endpoint)`: an endpoint (a `Receiver`, or the queue's `Enqueuer`) as a `tower::Service` for hyper, axum, tonic or `lambda_http` |
//! | `axum` | `axum::VerifiedEvent` (extractor) and `axum::endpoint(endpoint)` (ready-made route) |
//! | `actix` | `actix::VerifiedEvent` (extractor) and `actix::endpoint(endpoint)` (ready-made route) |
//! | `redis` | `dedup::RedisStore`, one idempotency store for several replicas |
//! | `queue` | `queue::Enqueuer` and `queue::Worker`: verify and enqueue in Redis Streams, answer 200 at once, and handle the events later (retries, dead letters, reclaim after a crash, Redis Cluster) |
//! | `tracing` | one span per delivery with event id, type and outcome; the queue's worker runs each handler in a span with the entry's stored W3C `traceparent` |
//! | `opentelemetry` | `queue::OpenTelemetry`: the request's trace context stored with each queued entry and the worker's span linked to it (through `tracing-opentelemetry`) |
//! | `metrics` | counters per outcome, store errors, lease renewals and losses, and a handler-duration histogram, through the `metrics` facade (their names: `receiver::metrics`) |
//! | `testing` | `testing`: a sample event of every documented type with a builder (fresh id, `created_at` now), signed requests, and `testing::Simulator`, NotMeta's retry schedule and duplicates played against a URL or a tower service (for your dev-dependencies) |
//!
//! # Crates of the same workspace
//!
//! - [`notmeta-webhooks-client`](https://docs.rs/notmeta-webhooks-client): a typed
//!   async client for NotMeta's management API (create, list, logs, stats, and an
//!   idempotent `ensure_webhook` for deploys) over rustls, with timeouts and retries.
//! - [`notmeta-webhooks-cli`](https://docs.rs/notmeta-webhooks-cli): the
//!   `notmeta-webhooks` command-line tool (`cargo install notmeta-webhooks-cli`):
//!   `send`, `sign`, `replay`, `simulate`, `verify` (explains why a signature fails),
//!   and `webhooks create`, `list`, `logs` and `stats`.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "actix")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub mod actix;
#[cfg(any(feature = "tower", feature = "actix"))]
mod adapter;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
#[cfg(feature = "receiver")]
#[cfg_attr(docsrs, doc(cfg(feature = "receiver")))]
pub mod clock;
#[cfg(feature = "receiver")]
#[cfg_attr(docsrs, doc(cfg(feature = "receiver")))]
pub mod dedup;
mod error;
pub mod event;
/// The manual: how the crate delivers, what it guarantees, and how to run it.
pub mod guide;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "queue")]
#[cfg_attr(docsrs, doc(cfg(feature = "queue")))]
pub mod queue;
mod random;
#[cfg(feature = "receiver")]
#[cfg_attr(docsrs, doc(cfg(feature = "receiver")))]
pub mod receiver;
mod signature;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

pub use error::{Error, ErrorKind};
pub use event::{Event, EventKind, EventType};
pub use signature::{
    DEFAULT_MAX_BODY_SIZE, SIGNATURE_HEADER, Secret, VerifiedPayload, Verifier, VerifierBuilder,
    sign, verify_and_parse,
};

/// Not part of the public API: what `notmeta-webhooks-client`, a crate of this
/// workspace, shares with this one. It may change or go in any release, whatever the
/// version number says; do not use it.
#[doc(hidden)]
pub mod __private {
    pub use crate::event::lenient::{opt_string, opt_timestamp};
    pub use crate::random::{jitter, random_fraction, random_u64};
}

#[cfg(all(
    doctest,
    feature = "axum",
    feature = "actix",
    feature = "testing",
    feature = "queue",
    feature = "postgres"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
