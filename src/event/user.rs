//! Payload of the `user.*` events.

use serde::Deserialize;

use super::lenient::opt_object;
use super::objects::User;
use super::shared::Owner;

/// The payload of `user.created`, `user.updated`, `user.deleted`, `user.online` and
/// `user.offline`: the user concerned (optional: NotMeta's documentation shows no
/// example of these payloads).
///
/// ```
/// use notmeta_webhooks::{Event, EventKind};
///
/// let body = br#"{"id":"evt_14","type":"user.online","created_at":"2024-01-01T12:00:00Z",
///                "data":{"user":{"id":"user_1","name":"Ana"}}}"#;
/// let event = Event::parse_unverified(body)?;
/// let EventKind::UserOnline(payload) = &event.kind else { unreachable!() };
/// assert_eq!(payload.user.as_ref().and_then(|u| u.id.as_deref()), Some("user_1"));
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct UserPayload<'a> {
    /// The user.
    #[serde(default, borrow, deserialize_with = "opt_object")]
    pub user: Option<User<'a>>,
}

impl UserPayload<'_> {
    /// A copy that owns its data, free of the body's lifetime.
    #[must_use]
    pub fn into_owned(self) -> UserPayload<'static> {
        self.owned_in(&Owner::NONE)
    }

    /// A copy that owns its data, identifiers in `owner`'s shared body.
    pub(crate) fn owned_in(self, owner: &Owner) -> UserPayload<'static> {
        UserPayload {
            user: self.user.map(|v| v.owned_in(owner)),
        }
    }
}
