//! Event types: the [`EventType`] names and the typed [`EventKind`] payloads.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::conversation::{ConversationAssigned, ConversationPayload};
use super::lenient;
use super::message::{MessageFailed, MessagePayload, MessageReceived};
use super::objects::{Conversation, ErrorInfo, Message, User};
use super::raw::RawJson;
use super::shared::Owner;
use super::user::UserPayload;
use super::webhook::{WebhookFailed, WebhookVerified};

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
        /// # Ok::<(), notmeta_webhooks::event::UnknownEventType>(())
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum EventType {
            $( #[doc = concat!("`", $wire, "`")] $variant, )+
        }

        impl EventType {
            /// Every documented event type: conversation, message, user, then
            /// webhook events.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),+];

            /// The wire names of [`EventType::ALL`], for serde's error messages.
            const NAMES: &'static [&'static str] = &[$($wire),+];

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

        /// The typed payload of an [`Event`](super::Event), one variant per event type.
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
                self.owned_in(&Owner::NONE)
            }

            /// A copy that owns its data, identifiers in `owner`'s shared body.
            pub(crate) fn owned_in(self, owner: &Owner) -> EventKind<'static> {
                match self {
                    $( EventKind::$variant(p) => EventKind::$variant(p.owned_in(owner)), )+
                    EventKind::Unknown { event_type, data } => EventKind::Unknown {
                        event_type: lenient::own(event_type),
                        data: data.into_owned(),
                    },
                }
            }
        }

        pub(super) fn deserialize_kind<'de, D: Deserializer<'de>>(
            event_type: Cow<'de, str>,
            d: D,
        ) -> Result<EventKind<'de>, D::Error> {
            Ok(match EventType::from_wire(&event_type) {
                $( Some(EventType::$variant) => EventKind::$variant(d.deserialize_map(ObjectOnly(PhantomData))?), )+
                None => EventKind::Unknown {
                    data: RawJson(Cow::Borrowed(<&RawValue>::deserialize(d)?)),
                    event_type,
                },
            })
        }
    };
}

/// Deserialises a known type's payload from a JSON object only: serde's derived
/// structs also accept an array of their fields, and every payload field is optional,
/// so `[]` would otherwise read as a payload with nothing in it.
struct ObjectOnly<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> de::Visitor<'de> for ObjectOnly<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
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

impl<'a> EventKind<'a> {
    /// The event type exactly as sent, known or not.
    #[must_use]
    pub fn type_str(&self) -> &str {
        match self {
            EventKind::Unknown { event_type, .. } => event_type,
            known => known.event_type().map_or("", EventType::as_str),
        }
    }

    /// The message of any `message.*` event, the same way for all of them
    /// (`message.received` always has one; the others have one when NotMeta sends it).
    ///
    /// ```
    /// use notmeta_webhooks::Event;
    ///
    /// for body in [
    ///     &br#"{"id":"evt_1","type":"message.received","created_at":"2024-01-01T12:00:00Z",
    ///          "data":{"message":{"id":"msg_1","text":"Hola"},"conversation":{"id":"conv_1"}}}"#[..],
    ///     br#"{"id":"evt_2","type":"message.sent","created_at":"2024-01-01T12:00:00Z",
    ///          "data":{"message":{"id":"msg_1","text":"Hola"}}}"#,
    /// ] {
    ///     let event = Event::parse_unverified(body)?;
    ///     let message = event.kind.message().unwrap();
    ///     assert_eq!(message.text.as_deref(), Some("Hola"));
    /// }
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    #[must_use]
    pub fn message(&self) -> Option<&Message<'a>> {
        match self {
            EventKind::MessageReceived(p) => Some(&p.message),
            EventKind::MessageSent(p)
            | EventKind::MessageDelivered(p)
            | EventKind::MessageRead(p) => p.message.as_ref(),
            EventKind::MessageFailed(p) => p.message.as_ref(),
            _ => None,
        }
    }

    /// The conversation of any `conversation.*` or `message.*` event that carries one.
    ///
    /// ```
    /// use notmeta_webhooks::Event;
    ///
    /// let event = Event::parse_unverified(br#"{"id":"evt_1","type":"conversation.closed",
    ///   "created_at":"2024-01-01T12:00:00Z","data":{"conversation":{"id":"conv_1","status":"closed"}}}"#)?;
    /// assert_eq!(event.kind.conversation().and_then(|c| c.id.as_deref()), Some("conv_1"));
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    #[must_use]
    pub fn conversation(&self) -> Option<&Conversation<'a>> {
        match self {
            EventKind::ConversationAssigned(p) => Some(&p.conversation),
            EventKind::ConversationCreated(p)
            | EventKind::ConversationUnassigned(p)
            | EventKind::ConversationClosed(p)
            | EventKind::ConversationReopened(p) => p.conversation.as_ref(),
            EventKind::MessageReceived(p) => Some(&p.conversation),
            EventKind::MessageSent(p)
            | EventKind::MessageDelivered(p)
            | EventKind::MessageRead(p) => p.conversation.as_ref(),
            _ => None,
        }
    }

    /// The user of any `user.*` event, and the user a `conversation.*` event names
    /// (the assignee of `conversation.assigned`).
    ///
    /// ```
    /// use notmeta_webhooks::Event;
    ///
    /// let event = Event::parse_unverified(br#"{"id":"evt_1","type":"user.online",
    ///   "created_at":"2024-01-01T12:00:00Z","data":{"user":{"id":"user_1","name":"Ana"}}}"#)?;
    /// assert_eq!(event.kind.user().and_then(|u| u.name.as_deref()), Some("Ana"));
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    #[must_use]
    pub fn user(&self) -> Option<&User<'a>> {
        match self {
            EventKind::ConversationAssigned(p) => Some(&p.user),
            EventKind::ConversationCreated(p)
            | EventKind::ConversationUnassigned(p)
            | EventKind::ConversationClosed(p)
            | EventKind::ConversationReopened(p) => p.user.as_ref(),
            EventKind::UserCreated(p)
            | EventKind::UserUpdated(p)
            | EventKind::UserDeleted(p)
            | EventKind::UserOnline(p)
            | EventKind::UserOffline(p) => p.user.as_ref(),
            _ => None,
        }
    }

    /// Why a `message.failed` or `webhook.failed` event failed, when NotMeta says.
    #[must_use]
    pub fn error(&self) -> Option<&ErrorInfo<'a>> {
        match self {
            EventKind::MessageFailed(p) => p.error.as_ref(),
            EventKind::WebhookFailed(p) => p.error.as_ref(),
            _ => None,
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

/// Parses a wire name such as `"message.received"`.
///
/// # Errors
///
/// [`UnknownEventType`] for a name that is not one of the 17 documented types
/// (a type NotMeta added later is not an error in an event: it parses to
/// [`EventKind::Unknown`]).
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
        Self::from_wire(&s).ok_or_else(|| de::Error::unknown_variant(&s, Self::NAMES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_all() {
        assert_eq!(EventType::NAMES.len(), EventType::ALL.len());
        for (name, t) in EventType::NAMES.iter().zip(EventType::ALL) {
            assert_eq!(*name, t.as_str());
        }
    }

    #[test]
    fn an_unknown_name_is_answered_with_the_known_ones() {
        let err = serde_json::from_str::<EventType>("\"call.started\"").unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(
                "unknown variant `call.started`, expected one of `conversation.created`, \
                 `conversation.assigned`,"
            ),
            "{message}"
        );
        assert!(message.contains("`webhook.failed`"), "{message}");
        assert!(!message.contains("there are no variants"), "{message}");
    }
}
