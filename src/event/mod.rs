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
//! # Storing, queueing and replaying events
//!
//! The storage format of an event is its body: [`Event::raw_body`], the bytes exactly
//! as NotMeta signed them. Keep those (in a database, a queue, a file) and read them
//! back with [`Event::parse_unverified`], or keep the signature header too and verify
//! them again with [`crate::Verifier::verify`] before acting on them. The
//! typed view is computed from the body, so nothing is lost: fields this version does
//! not model come back as well.
//!
//! [`Event`] is also [`Serialize`]: it writes that same body as a JSON value, so an
//! event can be a field of a record you serialise with serde_json, and the JSON it
//! gives parses back to an equal event.
//!
//! ```
//! use notmeta_webhooks::Event;
//!
//! let body = br#"{"id":"evt_1","type":"message.received","created_at":"2024-01-01T12:00:00Z",
//!   "data":{"message":{"id":"msg_1","text":"Hola","x-extra":[1,2]},"conversation":{"id":"conv_1"}}}"#;
//! let event = Event::parse_unverified(body)?;
//!
//! let stored: Vec<u8> = event.raw_body().to_vec(); // or serde_json::to_vec(&event)
//! assert_eq!(serde_json::to_vec(&event).unwrap(), stored);
//! let back = Event::parse_unverified(&stored)?;
//! assert_eq!(back, event);
//! # Ok::<(), notmeta_webhooks::Error>(())
//! ```
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

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::error::Error;
use shared::Body;

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
mod shared;
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
/// [`crate::Verifier::verify`] then [`crate::VerifiedPayload::parse`], or an
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
    raw: Body<'a>,
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

    /// The body exactly as received and verified: the form to store an event in (see
    /// [Storing, queueing and replaying events](crate::event#storing-queueing-and-replaying-events)).
    #[must_use]
    pub fn raw_body(&self) -> &[u8] {
        self.raw.as_bytes()
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
        data::from_json::<DataOnly<T>>(self.raw.as_bytes()).map(|d| d.data)
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

    /// A copy that owns all its data, free of the body's lifetime.
    ///
    /// The body is copied once, into a shared allocation that the identifiers
    /// ([`EventId`] and the others) point into: cloning them then copies nothing.
    /// Other strings (texts, names, phone numbers, values of open enums that this
    /// version does not know) are copied one by one.
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
        let (raw, owner) = self.raw.into_owned();
        Event {
            id: self.id.owned_in(&owner),
            created_at: self.created_at,
            kind: self.kind.owned_in(&owner),
            raw,
        }
    }
}

/// Writes the body the event was parsed from ([`Event::raw_body`]), unchanged, as a
/// JSON value: `serde_json::to_vec(&event)` gives back the body (without white space
/// around it, if it had any), and an event nested in a record of yours is written as
/// that JSON object. Parse it back with [`Event::parse_unverified`].
///
/// ```
/// use notmeta_webhooks::Event;
///
/// #[derive(serde::Serialize)]
/// struct Job<'a> { attempts: u32, event: &'a Event<'a> }
///
/// let event = Event::parse_unverified(
///     br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#,
/// )?;
/// let job = serde_json::to_string(&Job { attempts: 0, event: &event }).unwrap();
/// assert_eq!(job, r#"{"attempts":0,"event":{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}}"#);
///
/// // Read it back byte for byte: the event as a `RawValue`, then parsed.
/// #[derive(serde::Deserialize)]
/// struct Stored<'a> { #[serde(borrow)] event: &'a serde_json::value::RawValue }
/// let stored: Stored = serde_json::from_str(&job).unwrap();
/// assert_eq!(Event::parse_unverified(stored.event.get().as_bytes())?, event);
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
impl Serialize for Event<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // An event's body was checked to be UTF-8 and one JSON object when it was
        // parsed, so neither step can fail; they are still reported, not unwrapped.
        let text = std::str::from_utf8(self.raw.as_bytes()).map_err(serde::ser::Error::custom)?;
        let raw: &RawValue = serde_json::from_str(text).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}
