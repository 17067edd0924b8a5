//! Payloads of the `message.*` events.

use serde::Deserialize;

use super::lenient::opt_object;
use super::objects::{Conversation, ErrorInfo, Message};
use super::shared::Owner;

/// The payload of `message.received` (documented): the incoming message and its
/// conversation. Both objects are required.
///
/// ```
/// use notmeta_webhooks::{Event, EventKind};
///
/// let body = br#"{"id":"evt_6","type":"message.received","created_at":"2024-01-01T12:00:00Z",
///                "data":{"message":{"id":"msg_1","from":"1234567890","type":"text","text":"Hola"},
///                        "conversation":{"id":"conv_1","status":"open"}}}"#;
/// let event = Event::parse_unverified(body)?;
/// let EventKind::MessageReceived(payload) = &event.kind else { unreachable!() };
/// assert_eq!(payload.message.text.as_deref(), Some("Hola"));
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct MessageReceived<'a> {
    /// The message.
    #[serde(borrow)]
    pub message: Message<'a>,
    /// The conversation it arrived in.
    #[serde(borrow)]
    pub conversation: Conversation<'a>,
}

impl MessageReceived<'_> {
    /// A copy that owns its data, free of the body's lifetime.
    #[must_use]
    pub fn into_owned(self) -> MessageReceived<'static> {
        self.owned_in(&Owner::NONE)
    }

    /// A copy that owns its data, identifiers in `owner`'s shared body.
    pub(crate) fn owned_in(self, owner: &Owner) -> MessageReceived<'static> {
        MessageReceived {
            message: self.message.owned_in(owner),
            conversation: self.conversation.owned_in(owner),
        }
    }
}

/// The payload of `message.sent`, `message.delivered` and `message.read`.
///
/// NotMeta's documentation shows no example of these payloads, so both objects are
/// optional, and a field that is missing, `null` or of another JSON type reads as
/// `None`.
///
/// ```
/// use notmeta_webhooks::{Event, EventKind};
///
/// let body = br#"{"id":"evt_9","type":"message.read","created_at":"2024-01-01T12:00:00Z",
///                "data":{"message":{"id":"msg_1"}}}"#;
/// let event = Event::parse_unverified(body)?;
/// let EventKind::MessageRead(payload) = &event.kind else { unreachable!() };
/// assert!(payload.conversation.is_none());
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct MessagePayload<'a> {
    /// The message.
    #[serde(default, borrow, deserialize_with = "opt_object")]
    pub message: Option<Message<'a>>,
    /// Its conversation, when NotMeta sends it.
    #[serde(default, borrow, deserialize_with = "opt_object")]
    pub conversation: Option<Conversation<'a>>,
}

impl MessagePayload<'_> {
    /// A copy that owns its data, free of the body's lifetime.
    #[must_use]
    pub fn into_owned(self) -> MessagePayload<'static> {
        self.owned_in(&Owner::NONE)
    }

    /// A copy that owns its data, identifiers in `owner`'s shared body.
    pub(crate) fn owned_in(self, owner: &Owner) -> MessagePayload<'static> {
        MessagePayload {
            message: self.message.map(|v| v.owned_in(owner)),
            conversation: self.conversation.map(|v| v.owned_in(owner)),
        }
    }
}

/// The payload of `message.failed`: the message that could not be sent and why.
///
/// ```
/// use notmeta_webhooks::{Event, EventKind};
///
/// let body = br#"{"id":"evt_10","type":"message.failed","created_at":"2024-01-01T12:00:00Z",
///                "data":{"message":{"id":"msg_1"},"error":{"code":"470","message":"Failed"}}}"#;
/// let event = Event::parse_unverified(body)?;
/// let EventKind::MessageFailed(payload) = &event.kind else { unreachable!() };
/// assert_eq!(payload.error.as_ref().and_then(|e| e.message.as_deref()), Some("Failed"));
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct MessageFailed<'a> {
    /// The message.
    #[serde(default, borrow, deserialize_with = "opt_object")]
    pub message: Option<Message<'a>>,
    /// Why it failed, when NotMeta says.
    #[serde(default, borrow, deserialize_with = "opt_object")]
    pub error: Option<ErrorInfo<'a>>,
}

impl MessageFailed<'_> {
    /// A copy that owns its data, free of the body's lifetime.
    #[must_use]
    pub fn into_owned(self) -> MessageFailed<'static> {
        self.owned_in(&Owner::NONE)
    }

    /// A copy that owns its data, identifiers in `owner`'s shared body.
    pub(crate) fn owned_in(self, owner: &Owner) -> MessageFailed<'static> {
        MessageFailed {
            message: self.message.map(|v| v.owned_in(owner)),
            error: self.error.map(ErrorInfo::into_owned),
        }
    }
}
