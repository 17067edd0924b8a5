//! Payloads of the `webhook.*` events.

use std::borrow::Cow;

use serde::Deserialize;

use super::WebhookId;
use super::lenient::{cow_str, opt_object, opt_string, own};
use super::objects::ErrorInfo;
use super::shared::Owner;

/// The payload of `webhook.verified` (documented): the challenge NotMeta sends when a
/// webhook is created. Answer it with [`WebhookVerified::response`] (or let an adapter
/// do it). Both fields are required strings.
///
/// ```
/// use notmeta_webhooks::{Event, EventKind};
///
/// let body = br#"{"id":"evt_verify_123","type":"webhook.verified","created_at":"2024-01-01T00:00:00Z",
///                "data":{"webhook_id":"wh_123456789","challenge":"challenge_string_123"}}"#;
/// let event = Event::parse_unverified(body)?;
/// let EventKind::WebhookVerified(payload) = &event.kind else { unreachable!() };
/// assert_eq!(payload.webhook_id, "wh_123456789");
/// assert_eq!(payload.challenge, "challenge_string_123");
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct WebhookVerified<'a> {
    /// The webhook being verified (`wh_…`).
    #[serde(borrow)]
    pub webhook_id: WebhookId<'a>,
    /// The string to echo back as the response body.
    #[serde(borrow, deserialize_with = "cow_str")]
    pub challenge: Cow<'a, str>,
}

impl WebhookVerified<'_> {
    /// A copy that owns its data, free of the body's lifetime.
    #[must_use]
    pub fn into_owned(self) -> WebhookVerified<'static> {
        self.owned_in(&Owner::NONE)
    }

    /// A copy that owns its data, identifiers in `owner`'s shared body.
    pub(crate) fn owned_in(self, owner: &Owner) -> WebhookVerified<'static> {
        WebhookVerified {
            webhook_id: self.webhook_id.owned_in(owner),
            challenge: own(self.challenge),
        }
    }
}

/// The payload of `webhook.failed`: NotMeta gave up delivering to this webhook.
///
/// ```
/// use notmeta_webhooks::{Event, EventKind};
///
/// let body = br#"{"id":"evt_17","type":"webhook.failed","created_at":"2024-01-01T12:00:00Z",
///                "data":{"webhook_id":"wh_1","error":{"code":"timeout"}}}"#;
/// let event = Event::parse_unverified(body)?;
/// let EventKind::WebhookFailed(payload) = &event.kind else { unreachable!() };
/// assert_eq!(payload.error.as_ref().and_then(|e| e.code.as_deref()), Some("timeout"));
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct WebhookFailed<'a> {
    /// The webhook whose deliveries failed.
    #[serde(default, borrow, deserialize_with = "opt_string")]
    pub webhook_id: Option<WebhookId<'a>>,
    /// Why, when NotMeta says.
    #[serde(default, borrow, deserialize_with = "opt_object")]
    pub error: Option<ErrorInfo<'a>>,
}

impl WebhookFailed<'_> {
    /// A copy that owns its data, free of the body's lifetime.
    #[must_use]
    pub fn into_owned(self) -> WebhookFailed<'static> {
        self.owned_in(&Owner::NONE)
    }

    /// A copy that owns its data, identifiers in `owner`'s shared body.
    pub(crate) fn owned_in(self, owner: &Owner) -> WebhookFailed<'static> {
        WebhookFailed {
            webhook_id: self.webhook_id.map(|v| v.owned_in(owner)),
            error: self.error.map(ErrorInfo::into_owned),
        }
    }
}
