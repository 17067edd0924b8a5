//! The objects that event payloads carry: conversations, messages, users and
//! delivery errors.
//!
//! Every field is optional: NotMeta documents only some payloads, and a field that is
//! absent, `null` or of an unexpected JSON type reads as `None` instead of making the
//! whole event unreadable. Fields this version does not model are still
//! reachable through [`Event::data_as`](crate::Event::data_as).

use std::borrow::Cow;

use serde::Deserialize;

use super::lenient::{opt_string, opt_timestamp, own};
use super::shared::Owner;
use super::{
    ConversationId, ConversationStatus, MessageId, MessageType, Timestamp, UserId, UserRole,
};

/// A conversation between a customer and the business.
///
/// ```
/// use notmeta_webhooks::{Event, EventKind};
/// use notmeta_webhooks::event::ConversationStatus;
///
/// let body = br#"{"id":"evt_2","type":"conversation.closed","created_at":"2024-01-01T12:00:00Z",
///                "data":{"conversation":{"id":"conv_1","status":"closed","assigned_to":null}}}"#;
/// let event = Event::parse_unverified(body)?;
/// let EventKind::ConversationClosed(payload) = &event.kind else { unreachable!() };
/// let conversation = payload.conversation.as_ref().unwrap();
/// assert_eq!(conversation.status, Some(ConversationStatus::Closed));
/// assert_eq!(conversation.assigned_to, None);
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Conversation<'a> {
    /// The conversation's id (`conv_…`).
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub id: Option<ConversationId<'a>>,
    /// `open`, `assigned`, `closed`, or a value added later.
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub status: Option<ConversationStatus<'a>>,
    /// The user the conversation is assigned to; `None` when unassigned.
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub assigned_to: Option<UserId<'a>>,
    /// When the conversation was created.
    #[serde(default, deserialize_with = "opt_timestamp")]
    pub created_at: Option<Timestamp>,
    /// When the conversation was last assigned.
    #[serde(default, deserialize_with = "opt_timestamp")]
    pub assigned_at: Option<Timestamp>,
}

impl Conversation<'_> {
    /// A copy that owns its data, free of the body's lifetime.
    #[must_use]
    pub fn into_owned(self) -> Conversation<'static> {
        self.owned_in(&Owner::NONE)
    }

    /// A copy that owns its data, identifiers in `owner`'s shared body.
    pub(crate) fn owned_in(self, owner: &Owner) -> Conversation<'static> {
        Conversation {
            id: self.id.map(|v| v.owned_in(owner)),
            status: self.status.map(ConversationStatus::into_owned),
            assigned_to: self.assigned_to.map(|v| v.owned_in(owner)),
            created_at: self.created_at,
            assigned_at: self.assigned_at,
        }
    }
}

/// A message sent or received in a conversation.
///
/// ```
/// use notmeta_webhooks::{Event, EventKind};
/// use notmeta_webhooks::event::MessageType;
///
/// let body = br#"{"id":"evt_7","type":"message.sent","created_at":"2024-01-01T12:00:00Z",
///                "data":{"message":{"id":"msg_1","type":"image","from":"1234","url":"https://x"}}}"#;
/// let event = Event::parse_unverified(body)?;
/// let EventKind::MessageSent(payload) = &event.kind else { unreachable!() };
/// let message = payload.message.as_ref().unwrap();
/// assert_eq!(message.kind, Some(MessageType::Image));
/// assert_eq!(message.text, None);
/// assert_eq!(message.from.as_deref(), Some("1234"));
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Message<'a> {
    /// The message's id (`msg_…`).
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub id: Option<MessageId<'a>>,
    /// The conversation the message belongs to.
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub conversation_id: Option<ConversationId<'a>>,
    /// The sender (a phone number or account id, as NotMeta sends it).
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub from: Option<Cow<'a, str>>,
    /// The recipient.
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub to: Option<Cow<'a, str>>,
    /// The content type (JSON field `type`): `text`, `image`, … or a value added later.
    #[serde(default, borrow, rename = "type", deserialize_with = "opt_string")]
    pub kind: Option<MessageType<'a>>,
    /// The text, present for `text` messages.
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub text: Option<Cow<'a, str>>,
    /// When the message was sent or received.
    #[serde(default, deserialize_with = "opt_timestamp")]
    pub timestamp: Option<Timestamp>,
}

impl Message<'_> {
    /// A copy that owns its data, free of the body's lifetime.
    #[must_use]
    pub fn into_owned(self) -> Message<'static> {
        self.owned_in(&Owner::NONE)
    }

    /// A copy that owns its data, identifiers in `owner`'s shared body.
    pub(crate) fn owned_in(self, owner: &Owner) -> Message<'static> {
        Message {
            id: self.id.map(|v| v.owned_in(owner)),
            conversation_id: self.conversation_id.map(|v| v.owned_in(owner)),
            from: self.from.map(own),
            to: self.to.map(own),
            kind: self.kind.map(MessageType::into_owned),
            text: self.text.map(own),
            timestamp: self.timestamp,
        }
    }
}

/// A user of the business's NotMeta account, such as an agent.
///
/// ```
/// use notmeta_webhooks::{Event, EventKind};
/// use notmeta_webhooks::event::UserRole;
///
/// let body = br#"{"id":"evt_11","type":"user.created","created_at":"2024-01-01T12:00:00Z",
///                "data":{"user":{"id":"user_1","name":"Juan P\u00e9rez","role":"supervisor"}}}"#;
/// let event = Event::parse_unverified(body)?;
/// let EventKind::UserCreated(payload) = &event.kind else { unreachable!() };
/// let user = payload.user.as_ref().unwrap();
/// assert_eq!(user.name.as_deref(), Some("Juan Pérez"));
/// assert_eq!(user.role, Some(UserRole::Other("supervisor".into())));
/// assert_eq!(user.email, None);
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct User<'a> {
    /// The user's id (`user_…`).
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub id: Option<UserId<'a>>,
    /// The display name.
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub name: Option<Cow<'a, str>>,
    /// The e-mail address.
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub email: Option<Cow<'a, str>>,
    /// `agent`, or a role added later.
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub role: Option<UserRole<'a>>,
}

impl User<'_> {
    /// A copy that owns its data, free of the body's lifetime.
    #[must_use]
    pub fn into_owned(self) -> User<'static> {
        self.owned_in(&Owner::NONE)
    }

    /// A copy that owns its data, identifiers in `owner`'s shared body.
    pub(crate) fn owned_in(self, owner: &Owner) -> User<'static> {
        User {
            id: self.id.map(|v| v.owned_in(owner)),
            name: self.name.map(own),
            email: self.email.map(own),
            role: self.role.map(UserRole::into_owned),
        }
    }
}

/// Why a message or a webhook delivery failed.
///
/// `code` is kept as text even when NotMeta sends a number (`470` reads as `"470"`).
///
/// ```
/// use notmeta_webhooks::{Event, EventKind};
///
/// let body = br#"{"id":"evt_10","type":"message.failed","created_at":"2024-01-01T12:00:00Z",
///                "data":{"message":{"id":"msg_1"},"error":{"code":470,"message":"Outside the window"}}}"#;
/// let event = Event::parse_unverified(body)?;
/// let EventKind::MessageFailed(payload) = &event.kind else { unreachable!() };
/// let error = payload.error.as_ref().unwrap();
/// assert_eq!(error.code.as_deref(), Some("470"));
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ErrorInfo<'a> {
    /// A machine-readable code.
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub code: Option<Cow<'a, str>>,
    /// A human-readable description.
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub message: Option<Cow<'a, str>>,
}

impl ErrorInfo<'_> {
    /// A copy that owns its data, free of the body's lifetime.
    #[must_use]
    pub fn into_owned(self) -> ErrorInfo<'static> {
        ErrorInfo {
            code: self.code.map(own),
            message: self.message.map(own),
        }
    }
}
