//! Typed NotMeta events (SPEC §3–4).
//!
//! An [`Event`] is the envelope (`id`, `created_at`, the type) plus an [`EventKind`]:
//! one variant per event type NotMeta documents, grouped by family
//! (`Conversation*`, `Message*`, `User*`, `Webhook*`), and [`EventKind::Unknown`] for
//! types added after this version, so that a new event type never breaks a receiver.
//!
//! Events borrow their strings from the verified body (no copies on the hot path);
//! [`Event::into_owned`] gives an `Event<'static>` to keep or send to another task.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::Error;

mod conversation;
pub(crate) mod lenient;
mod message;
mod objects;
pub(crate) mod types;
mod user;
mod webhook;

pub use conversation::{ConversationAssigned, ConversationPayload};
pub use message::{MessageFailed, MessagePayload, MessageReceived};
pub use objects::{Conversation, ErrorInfo, Message, User};
pub use types::{
    ConversationId, ConversationStatus, EventId, MessageId, MessageType, RawJson, Timestamp,
    UserId, UserRole, WebhookId,
};
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
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    pub fn data_as<'s, T: Deserialize<'s>>(&'s self) -> Result<T, Error> {
        #[derive(Deserialize)]
        struct DataOnly<T> {
            data: T,
        }
        serde_json::from_slice::<DataOnly<T>>(&self.raw)
            .map(|d| d.data)
            .map_err(|e| Error::json(e, None))
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

macro_rules! event_types {
    ($( $(#[$doc:meta])* $variant:ident($payload:ident) = $wire:literal, )+) => {
        /// The name of an event type NotMeta documents, for subscribing and matching.
        ///
        /// Parses from and prints as the wire name; serialises as it too.
        ///
        /// ```
        /// use notmeta_webhooks::EventType;
        ///
        /// let t: EventType = "message.received".parse()?;
        /// assert_eq!(t, EventType::MessageReceived);
        /// assert_eq!(t.as_str(), "message.received");
        /// assert_eq!(EventType::ALL.len(), 17);
        /// assert!("message.edited".parse::<EventType>().is_err());
        /// # Ok::<(), notmeta_webhooks::UnknownEventType>(())
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum EventType {
            $( #[doc = concat!("`", $wire, "`")] $variant, )+
        }

        impl EventType {
            /// Every documented event type, in SPEC order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),+];

            /// The wire name, such as `"message.received"`.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( EventType::$variant => $wire, )+
                }
            }

            fn from_wire(s: &str) -> Option<Self> {
                match s {
                    $( $wire => Some(EventType::$variant), )+
                    _ => None,
                }
            }
        }

        /// The typed payload of an [`Event`], one variant per event type.
        ///
        /// New event types arrive as [`EventKind::Unknown`]; match with a `_` arm (the
        /// enum is `#[non_exhaustive]`, since later versions add variants).
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum EventKind<'a> {
            $( $(#[$doc])* #[doc = concat!("`", $wire, "`")] $variant($payload<'a>), )+
            /// An event type this version does not know: its name and raw `data`.
            Unknown {
                /// The `type` exactly as sent.
                event_type: Cow<'a, str>,
                /// The `data` value, unparsed JSON.
                data: RawJson<'a>,
            },
        }

        impl<'a> EventKind<'a> {
            /// The event type, or `None` for [`EventKind::Unknown`].
            #[must_use]
            pub fn event_type(&self) -> Option<EventType> {
                match self {
                    $( EventKind::$variant(_) => Some(EventType::$variant), )+
                    EventKind::Unknown { .. } => None,
                }
            }

            /// A copy that owns its data, free of the body's lifetime.
            #[must_use]
            pub fn into_owned(self) -> EventKind<'static> {
                match self {
                    $( EventKind::$variant(p) => EventKind::$variant(p.into_owned()), )+
                    EventKind::Unknown { event_type, data } => EventKind::Unknown {
                        event_type: lenient::own(event_type),
                        data: data.into_owned(),
                    },
                }
            }
        }

        fn deserialize_kind<'de, D: Deserializer<'de>>(
            event_type: Cow<'de, str>,
            d: D,
        ) -> Result<EventKind<'de>, D::Error> {
            Ok(match EventType::from_wire(&event_type) {
                $( Some(EventType::$variant) => EventKind::$variant(Deserialize::deserialize(d)?), )+
                None => EventKind::Unknown {
                    data: RawJson(Cow::Borrowed(<&RawValue>::deserialize(d)?)),
                    event_type,
                },
            })
        }
    };
}

event_types! {
    ConversationCreated(ConversationPayload) = "conversation.created",
    ConversationAssigned(ConversationAssigned) = "conversation.assigned",
    ConversationUnassigned(ConversationPayload) = "conversation.unassigned",
    ConversationClosed(ConversationPayload) = "conversation.closed",
    ConversationReopened(ConversationPayload) = "conversation.reopened",
    MessageReceived(MessageReceived) = "message.received",
    MessageSent(MessagePayload) = "message.sent",
    MessageDelivered(MessagePayload) = "message.delivered",
    MessageRead(MessagePayload) = "message.read",
    MessageFailed(MessageFailed) = "message.failed",
    UserCreated(UserPayload) = "user.created",
    UserUpdated(UserPayload) = "user.updated",
    UserDeleted(UserPayload) = "user.deleted",
    UserOnline(UserPayload) = "user.online",
    UserOffline(UserPayload) = "user.offline",
    WebhookVerified(WebhookVerified) = "webhook.verified",
    WebhookFailed(WebhookFailed) = "webhook.failed",
}

impl EventKind<'_> {
    /// The event type exactly as sent, known or not.
    #[must_use]
    pub fn type_str(&self) -> &str {
        match self {
            EventKind::Unknown { event_type, .. } => event_type,
            known => known.event_type().map_or("", EventType::as_str),
        }
    }
}

/// The error of parsing a string that is not one of the 17 documented event types.
///
/// ```
/// use notmeta_webhooks::EventType;
/// let err = "message.edited".parse::<EventType>().unwrap_err();
/// assert_eq!(err.to_string(), "unknown NotMeta event type `message.edited`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown NotMeta event type `{0}`")]
pub struct UnknownEventType(String);

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_wire(s).ok_or_else(|| UnknownEventType(s.to_owned()))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = lenient::cow_str(d)?;
        Self::from_wire(&s).ok_or_else(|| {
            de::Error::unknown_variant(&s, &[] /* 17 names: see EventType::ALL */)
        })
    }
}

/// Parses a body into an event; the envelope is read in one pass, and `data` is
/// deserialised straight into the payload type when `type` comes before it (as
/// NotMeta sends it), or captured raw and parsed after the envelope otherwise.
///
/// JSON text is UTF-8 (RFC 8259 §8.1). serde_json checks the strings it reads but
/// not those it skips, so the whole body is checked once, first: a body is never an
/// event because its invalid bytes sit in a field this crate ignores. The checked
/// body is then read as a `str`, so serde_json borrows each string without checking
/// its UTF-8 again.
pub(crate) fn parse(body: &[u8]) -> Result<Event<'_>, Error> {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(utf8) => {
            // Cold path: where serde_json meets the bad bytes, it says where; bad
            // bytes only in a skipped field are refused all the same.
            return Err(
                match tracked(serde_json::Deserializer::from_slice(body), body) {
                    (Err(e), path) => Error::json(e, path),
                    (Ok(_), _) => Error::invalid_event(format!("the body is not UTF-8: {utf8}")),
                },
            );
        }
    };
    parse_from(serde_json::Deserializer::from_str(text), body).map_err(|e| {
        // Cold path: parse again, tracking where the error happened.
        let (_, path) = tracked(serde_json::Deserializer::from_str(text), body);
        Error::json(e, path)
    })
}

/// Parses while tracking the JSON path, for error reports.
fn tracked<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
    body: &'de [u8],
) -> (Result<Event<'de>, serde_json::Error>, Option<String>) {
    let mut track = serde_path_to_error::Track::new();
    let parsed = serde_path_to_error::Deserializer::new(&mut de, &mut track)
        .deserialize_map(EnvelopeVisitor { body })
        .and_then(|event| de.end().map(|()| event));
    let path = track.path().to_string();
    (parsed, (path != ".").then_some(path))
}

fn parse_from<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
    body: &'de [u8],
) -> Result<Event<'de>, serde_json::Error> {
    let event = de.deserialize_map(EnvelopeVisitor { body })?;
    de.end()?;
    Ok(event)
}

struct EnvelopeVisitor<'a> {
    body: &'a [u8],
}

enum Field {
    Id,
    Type,
    CreatedAt,
    Data,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "id" => Field::Id,
                    "type" => Field::Type,
                    "created_at" => Field::CreatedAt,
                    "data" => Field::Data,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// Deserialises `data` for an already known `type`.
struct KindSeed<'de>(Cow<'de, str>);

impl<'de> DeserializeSeed<'de> for KindSeed<'de> {
    type Value = EventKind<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        deserialize_kind(self.0, d)
    }
}

fn set_once<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(name));
    }
    Ok(())
}

impl<'de> Visitor<'de> for EnvelopeVisitor<'de> {
    type Value = Event<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a NotMeta event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event<'de>, A::Error> {
        let mut id = None;
        let mut event_type: Option<Cow<'de, str>> = None;
        let mut created_at = None;
        let mut kind = None;
        let mut raw_data: Option<&'de RawValue> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Id => set_once(&mut id, map.next_value::<EventId<'de>>()?, "id")?,
                Field::Type => {
                    let t = map.next_value_seed(CowStrSeed)?;
                    set_once(&mut event_type, t, "type")?;
                }
                Field::CreatedAt => {
                    set_once(
                        &mut created_at,
                        map.next_value::<Timestamp>()?,
                        "created_at",
                    )?;
                }
                Field::Data => {
                    if kind.is_some() || raw_data.is_some() {
                        return Err(de::Error::duplicate_field("data"));
                    }
                    match &event_type {
                        Some(t) => kind = Some(map.next_value_seed(KindSeed(t.clone()))?),
                        None => raw_data = Some(map.next_value()?),
                    }
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let id = id.ok_or_else(|| de::Error::missing_field("id"))?;
        let event_type = event_type.ok_or_else(|| de::Error::missing_field("type"))?;
        let created_at = created_at.ok_or_else(|| de::Error::missing_field("created_at"))?;
        let kind = match (kind, raw_data) {
            (Some(kind), _) => kind,
            (None, Some(raw)) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                deserialize_kind(event_type, &mut de).map_err(de::Error::custom)?
            }
            (None, None) => return Err(de::Error::missing_field("data")),
        };
        Ok(Event {
            id,
            created_at,
            kind,
            raw: Cow::Borrowed(self.body),
        })
    }
}

struct CowStrSeed;

impl<'de> DeserializeSeed<'de> for CowStrSeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        lenient::cow_str(d)
    }
}
