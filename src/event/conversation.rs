//! Payloads of the `conversation.*` events.

use serde::Deserialize;

use super::lenient::opt_object;
use super::objects::{Conversation, User};
use super::shared::Owner;

/// The payload of `conversation.created`, `conversation.unassigned`,
/// `conversation.closed` and `conversation.reopened`.
///
/// NotMeta's documentation shows no example of these payloads, so both objects are
/// optional, and a field that is missing, `null` or of another JSON type reads as
/// `None`; `user` is sent with `conversation.unassigned` (the former assignee).
///
/// ```
/// use notmeta_webhooks::{Event, EventKind};
///
/// let body = br#"{"id":"evt_3","type":"conversation.unassigned","created_at":"2024-01-01T12:00:00Z",
///                "data":{"conversation":{"id":"conv_1","assigned_to":null},"user":{"id":"user_1"}}}"#;
/// let event = Event::parse_unverified(body)?;
/// let EventKind::ConversationUnassigned(payload) = &event.kind else { unreachable!() };
/// assert_eq!(payload.user.as_ref().and_then(|u| u.id.as_deref()), Some("user_1"));
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ConversationPayload<'a> {
    /// The conversation.
    #[serde(default, borrow, deserialize_with = "opt_object")]
    pub conversation: Option<Conversation<'a>>,
    /// The user involved, when NotMeta sends one.
    #[serde(default, borrow, deserialize_with = "opt_object")]
    pub user: Option<User<'a>>,
}

impl ConversationPayload<'_> {
    /// A copy that owns its data, free of the body's lifetime.
    #[must_use]
    pub fn into_owned(self) -> ConversationPayload<'static> {
        self.owned_in(&Owner::NONE)
    }

    /// A copy that owns its data, identifiers in `owner`'s shared body.
    pub(crate) fn owned_in(self, owner: &Owner) -> ConversationPayload<'static> {
        ConversationPayload {
            conversation: self.conversation.map(|v| v.owned_in(owner)),
            user: self.user.map(|v| v.owned_in(owner)),
        }
    }
}

/// The payload of `conversation.assigned` (documented): the conversation and the
/// user it is now assigned to. Both objects are required.
///
/// ```
/// use notmeta_webhooks::{Event, EventKind};
/// use notmeta_webhooks::event::ConversationStatus;
///
/// let body = br#"{"id":"evt_2","type":"conversation.assigned","created_at":"2024-01-01T12:00:00Z",
///                "data":{"conversation":{"id":"conv_1","status":"assigned","assigned_to":"user_1",
///                                        "assigned_at":"2024-01-01T12:05:00Z"},
///                        "user":{"id":"user_1","name":"Juan Perez","role":"agent"}}}"#;
/// let event = Event::parse_unverified(body)?;
/// let EventKind::ConversationAssigned(payload) = &event.kind else { unreachable!() };
/// assert_eq!(payload.conversation.status, Some(ConversationStatus::Assigned));
/// assert_eq!(payload.user.name.as_deref(), Some("Juan Perez"));
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ConversationAssigned<'a> {
    /// The conversation, with `status`, `assigned_to` and `assigned_at` set.
    #[serde(borrow)]
    pub conversation: Conversation<'a>,
    /// The assignee.
    #[serde(borrow)]
    pub user: User<'a>,
}

impl ConversationAssigned<'_> {
    /// A copy that owns its data, free of the body's lifetime.
    #[must_use]
    pub fn into_owned(self) -> ConversationAssigned<'static> {
        self.owned_in(&Owner::NONE)
    }

    /// A copy that owns its data, identifiers in `owner`'s shared body.
    pub(crate) fn owned_in(self, owner: &Owner) -> ConversationAssigned<'static> {
        ConversationAssigned {
            conversation: self.conversation.owned_in(owner),
            user: self.user.owned_in(owner),
        }
    }
}
