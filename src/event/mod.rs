//! Typed NotMeta events: the payloads and the values they carry.
//!
//! An [`Event`] is the envelope (`id`, `created_at`, the type) plus an [`EventKind`]:
//! one variant per event type NotMeta documents, grouped by family
//! (`Conversation*`, `Message*`, `User*`, `Webhook*`), and [`EventKind::Unknown`] for
//! types added after this version, so that a new event type never breaks a receiver.
//! `Event`, `EventKind` and `EventType` are also at the crate root; this module holds
//! everything they contain:
//!
//! - the payload of each variant ([`MessageReceived`], [`ConversationAssigned`],
//!   [`WebhookVerified`], …) and the objects inside them ([`Message`],
//!   [`Conversation`], [`User`], [`ErrorInfo`]);
//! - identifiers ([`EventId`], [`MessageId`], …), the [`Timestamp`] of RFC 3339
//!   dates, and [`RawJson`] for data kept unparsed;
//! - open enums ([`ConversationStatus`], [`MessageType`], [`UserRole`]) whose `Other`
//!   variant keeps values NotMeta adds later.
//!
//! Events borrow their strings from the verified body (no copies on the hot path);
//! [`Event::into_owned`] gives an `Event<'static>` to keep or send to another task.
//!
//! ```
//! use notmeta_webhooks::event::{ConversationStatus, MessageReceived};
//! use notmeta_webhooks::{Event, EventKind};
//!
//! fn on_message<'a>(m: &'a MessageReceived<'_>) -> Option<&'a str> {
//!     let open = m.conversation.status == Some(ConversationStatus::Open);
//!     open.then(|| m.message.text.as_deref()).flatten()
//! }
//!
//! let event = Event::parse_unverified(br#"{"id":"evt_1","type":"message.received","created_at":"2024-01-01T12:00:00Z",
//!   "data":{"message":{"id":"msg_1","type":"text","text":"Hola"},"conversation":{"id":"conv_1","status":"open"}}}"#)?;
//! if let EventKind::MessageReceived(m) = &event.kind {
//!     assert_eq!(on_message(m), Some("Hola"));
//! }
//! # Ok::<(), notmeta_webhooks::Error>(())
//! ```

use std::borrow::Cow;

use serde::Deserialize;

use crate::error::Error;

mod challenge;
mod conversation;
mod data;
mod envelope;
mod id;
mod kind;
pub(crate) mod lenient;
mod message;
mod objects;
mod open_enums;
mod raw;
mod timestamp;
mod user;
mod webhook;

#[cfg(feature = "receiver")]
pub(crate) use challenge::TEXT_PLAIN;
pub use conversation::{ConversationAssigned, ConversationPayload};
pub use data::DataError;
pub(crate) use envelope::parse;
pub use id::{ConversationId, EventId, MessageId, UserId, WebhookId};
pub use kind::{EventKind, EventType, UnknownEventType};
pub use message::{MessageFailed, MessagePayload, MessageReceived};
pub use objects::{Conversation, ErrorInfo, Message, User};
pub use open_enums::{ConversationStatus, MessageType, UserRole};
pub use raw::RawJson;
pub use timestamp::{ParseTimestampError, Timestamp};
pub use user::UserPayload;
pub use webhook::{WebhookFailed, WebhookVerified};

/// One verified NotMeta event: the envelope and its typed payload.
///
/// Obtain it from verified bytes ([`crate::verify_and_parse`],
/// [`crate::Verifier::verify_and_parse`], [`crate::VerifiedPayload::parse`], or an
/// adapter), or explicitly from unverified bytes with [`Event::parse_unverified`].
///
/// ```
/// use notmeta_webhooks::{sign, verify_and_parse, EventKind, EventType};
///
/// let body = br#"{"id":"evt_6","type":"message.received","created_at":"2024-01-01T12:00:00Z",
///   "data":{"message":{"id":"msg_1","conversation_id":"conv_1","from":"1234567890",
///                      "to":"0987654321","type":"text","text":"Hola, necesito ayuda",
///                      "timestamp":"2024-01-01T12:00:00Z"},
///           "conversation":{"id":"conv_1","status":"open","assigned_to":null}}}"#;
/// let event = verify_and_parse(body, &sign(body, "whsec_abc123"), "whsec_abc123")?;
///
/// assert_eq!(event.id, "evt_6");
/// assert_eq!(event.event_type(), Some(EventType::MessageReceived));
/// match &event.kind {
///     EventKind::MessageReceived(m) => {
///         assert_eq!(m.message.from.as_deref(), Some("1234567890"));
///         assert_eq!(m.message.text.as_deref(), Some("Hola, necesito ayuda"));
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event<'a> {
    /// The event id (`evt_…`); the same on every retry of one event.
    pub id: EventId<'a>,
    /// When NotMeta created the event (signed, so usable for a maximum age).
    pub created_at: Timestamp,
    /// The typed payload.
    pub kind: EventKind<'a>,
    raw: Cow<'a, [u8]>,
}

impl<'a> Event<'a> {
    /// Parses bytes **without verifying a signature**.
    ///
    /// For tests, fixtures, and payloads you verified earlier (for example, with
    /// [`crate::Verifier::verify`] before queueing them). Never call it on request
    /// bytes whose signature has not been checked.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidEvent`](crate::ErrorKind::InvalidEvent) for bytes that are
    /// not a valid event; [`Error::json_path`] says where they stopped being one.
    ///
    /// ```
    /// use notmeta_webhooks::{Event, ErrorKind};
    ///
    /// let event = Event::parse_unverified(
    ///     br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#,
    /// )?;
    /// assert_eq!(event.type_str(), "user.online");
    ///
    /// let err = Event::parse_unverified(br#"{"id":"evt_1"}"#).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidEvent);
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    pub fn parse_unverified(body: &'a [u8]) -> Result<Self, Error> {
        parse(body)
    }

    /// The event type, or `None` for a type this version does not know.
    #[must_use]
    pub fn event_type(&self) -> Option<EventType> {
        self.kind.event_type()
    }

    /// The event type exactly as sent, known or not (`"message.received"`, …).
    #[must_use]
    pub fn type_str(&self) -> &str {
        self.kind.type_str()
    }

    /// The body exactly as received and verified.
    #[must_use]
    pub fn raw_body(&self) -> &[u8] {
        &self.raw
    }

    /// Deserialises the `data` object into your own type: the way to reach fields
    /// NotMeta sends that this version does not model.
    ///
    /// # Errors
    ///
    /// [`DataError`] when `data` does not fit `T`. That is a fault in `T`, not in
    /// the request, so the error carries no HTTP status (see [`DataError`]).
    ///
    /// ```
    /// use notmeta_webhooks::Event;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Extra<'a> { #[serde(borrow)] message: Media<'a> }
    /// #[derive(serde::Deserialize)]
    /// struct Media<'a> { url: &'a str }
    ///
    /// let body = br#"{"id":"evt_7","type":"message.sent","created_at":"2024-01-01T12:00:00Z",
    ///                "data":{"message":{"id":"msg_1","type":"image","url":"https://cdn/x.png"}}}"#;
    /// let event = Event::parse_unverified(body)?;
    /// let extra: Extra = event.data_as()?;
    /// assert_eq!(extra.message.url, "https://cdn/x.png");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn data_as<'s, T: Deserialize<'s>>(&'s self) -> Result<T, DataError> {
        #[derive(Deserialize)]
        struct DataOnly<T> {
            data: T,
        }
        data::from_json::<DataOnly<T>>(&self.raw).map(|d| d.data)
    }

    /// The challenge string, if this is a `webhook.verified` event.
    ///
    /// ```
    /// use notmeta_webhooks::Event;
    /// let event = Event::parse_unverified(br#"{"id":"evt_verify_123","type":"webhook.verified",
    ///   "created_at":"2024-01-01T00:00:00Z","data":{"webhook_id":"wh_1","challenge":"abc"}}"#)?;
    /// assert_eq!(event.challenge(), Some("abc"));
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    #[must_use]
    pub fn challenge(&self) -> Option<&str> {
        match &self.kind {
            EventKind::WebhookVerified(v) => Some(&v.challenge),
            _ => None,
        }
    }

    /// A copy that owns all its data, free of the body's lifetime (copies the body and
    /// every borrowed string once).
    ///
    /// ```
    /// use notmeta_webhooks::Event;
    ///
    /// fn keep(body: Vec<u8>) -> Event<'static> {
    ///     Event::parse_unverified(&body).unwrap().into_owned()
    /// }
    /// let event = keep(br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#.to_vec());
    /// assert_eq!(event.id, "evt_1");
    /// ```
    #[must_use]
    pub fn into_owned(self) -> Event<'static> {
        Event {
            id: self.id.into_owned(),
            created_at: self.created_at,
            kind: self.kind.into_owned(),
            raw: Cow::Owned(self.raw.into_owned()),
        }
    }
}
