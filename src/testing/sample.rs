//! Sample events of every documented type, and a builder to change them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::SignedRequest;
use crate::error::Error;
use crate::event::{ConversationStatus, Event, EventType, MessageType, Timestamp, UserRole};

/// The documented body of each event type, as in the repository's `data/events`.
fn documented_body(event_type: EventType) -> &'static str {
    macro_rules! events {
        ($($variant:ident => $file:literal,)+) => {
            match event_type {
                $(EventType::$variant => include_str!(concat!("../../data/events/", $file)),)+
            }
        };
    }
    events! {
        ConversationCreated => "evt_1.conversation.created.json",
        ConversationAssigned => "evt_2.conversation.assigned.json",
        ConversationUnassigned => "evt_3.conversation.unassigned.json",
        ConversationClosed => "evt_4.conversation.closed.json",
        ConversationReopened => "evt_5.conversation.reopened.json",
        MessageReceived => "evt_6.message.received.json",
        MessageSent => "evt_7.message.sent.json",
        MessageDelivered => "evt_8.message.delivered.json",
        MessageRead => "evt_9.message.read.json",
        MessageFailed => "evt_10.message.failed.json",
        UserCreated => "evt_11.user.created.json",
        UserUpdated => "evt_12.user.updated.json",
        UserDeleted => "evt_13.user.deleted.json",
        UserOnline => "evt_14.user.online.json",
        UserOffline => "evt_15.user.offline.json",
        WebhookVerified => "evt_verify_123.webhook.verified.json",
        WebhookFailed => "evt_17.webhook.failed.json",
    }
}

/// The documented body of `event_type`, exactly as NotMeta's documentation shows it
/// (dated 2024-01-01, pretty-printed): the text to paste into a test or a `curl`.
///
/// ```
/// use notmeta_webhooks::{Event, EventType};
/// use notmeta_webhooks::testing::documented;
///
/// let event = Event::parse_unverified(documented(EventType::MessageReceived).as_bytes())?;
/// assert_eq!(event.id, "evt_6");
/// assert_eq!(event.created_at.to_string(), "2024-01-01T12:00:00Z");
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[must_use]
pub fn documented(event_type: EventType) -> &'static str {
    documented_body(event_type)
}

/// A sample event of `event_type`: the documented body, with a fresh id and
/// `created_at` set to now (the dates inside the payload move with it). Change it
/// with the builder's methods, then take its [`body`](Sample::body), its
/// [`event`](Sample::event), or a signed [`request`](Sample::request).
///
/// ```
/// use notmeta_webhooks::{EventKind, EventType};
/// use notmeta_webhooks::testing::sample;
///
/// let event = sample(EventType::MessageReceived).id("evt_x").text("hola").event();
/// assert_eq!(event.id, "evt_x");
/// let EventKind::MessageReceived(m) = &event.kind else { unreachable!() };
/// assert_eq!(m.message.text.as_deref(), Some("hola"));
/// // Fresh: a receiver with a maximum event age accepts it.
/// let age = std::time::SystemTime::now().duration_since(event.created_at.to_system_time());
/// assert!(age.unwrap_or_default() < std::time::Duration::from_secs(5));
/// ```
#[must_use]
pub fn sample(event_type: EventType) -> Sample {
    Sample::from_body(documented_body(event_type).as_bytes())
        .unwrap_or_else(|e| unreachable!("the documented {event_type} body: {e}"))
        .id(fresh_id())
        .created_at(Timestamp::now().trunc_seconds())
}

/// A sample of every documented type, in [`EventType::ALL`]'s order.
///
/// ```
/// use notmeta_webhooks::testing::samples;
///
/// for sample in samples() {
///     let event = sample.event(); // every one parses to its own variant
///     assert_eq!(event.event_type(), sample.event_type().parse().ok());
/// }
/// ```
pub fn samples() -> impl Iterator<Item = Sample> {
    EventType::ALL.iter().map(|&t| sample(t))
}

/// A new event id, different from every other one this process makes:
/// `evt_test_` and 16 hex digits.
#[must_use]
pub fn fresh_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // A cheap mix of the time and the counter, so that two processes (a test and
    // the command-line tool, say) do not repeat each other's ids.
    let mixed = (nanos ^ (u64::from(std::process::id()) << 40))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(n);
    format!("evt_test_{mixed:016x}")
}

/// An event under construction: envelope and `data`, changed by its methods and
/// turned into bytes, an [`Event`], or a signed request at the end.
///
/// Setters that name an object's field (`text`, `status`, `user_name`, …) create the
/// object when the sample has none. [`set`](Sample::set) and
/// [`remove`](Sample::remove) reach any field of `data`, for what the named setters
/// do not cover (a field NotMeta added, a malformed value).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    id: String,
    event_type: String,
    created_at: Timestamp,
    data: Value,
}

/// The payload dates that follow `created_at` when it changes.
const NESTED_DATES: [&str; 3] = [
    "/message/timestamp",
    "/conversation/created_at",
    "/conversation/assigned_at",
];

impl Sample {
    /// A sample of any type, known or not, with `data` as given, a fresh id and
    /// `created_at` now. The type is an [`EventType`], or its wire name as text
    /// for a type this version does not know (anything that displays as the name).
    ///
    /// ```
    /// use notmeta_webhooks::{EventKind, EventType};
    /// use notmeta_webhooks::testing::Sample;
    ///
    /// let event = Sample::new("call.started", serde_json::json!({"call": {"id": "call_1"}})).event();
    /// assert!(matches!(event.kind, EventKind::Unknown { .. }));
    ///
    /// let empty = Sample::new(EventType::UserOnline, serde_json::json!({}));
    /// assert_eq!(empty.event_type(), "user.online");
    /// ```
    #[must_use]
    pub fn new(event_type: impl fmt::Display, data: Value) -> Self {
        Self {
            id: fresh_id(),
            event_type: event_type.to_string(),
            created_at: Timestamp::now().trunc_seconds(),
            data,
        }
    }

    /// A sample from a body (a captured request, a file): its id, type, `created_at`
    /// and `data`. Other envelope fields are dropped.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidEvent`](crate::ErrorKind::InvalidEvent) when the body is not
    /// a JSON object with a string `id` and `type`, an RFC 3339 `created_at` and a
    /// `data`.
    ///
    /// ```
    /// use notmeta_webhooks::testing::Sample;
    ///
    /// let captured = br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
    /// let again = Sample::from_body(captured)?.id("evt_2").created_at(std::time::SystemTime::now());
    /// assert_eq!(again.event().id, "evt_2");
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    pub fn from_body(body: &[u8]) -> Result<Self, Error> {
        let invalid = |what: &str| Error::invalid_event(format!("a sample body needs {what}"));
        let value: Value = serde_json::from_slice(body).map_err(|e| Error::json(e, None))?;
        let Value::Object(mut map) = value else {
            return Err(invalid("to be a JSON object"));
        };
        let mut text = |name: &str| match map.remove(name) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(invalid(&format!("a string `{name}`"))),
        };
        let id = text("id")?;
        let event_type = text("type")?;
        let created_at = text("created_at")?
            .parse()
            .map_err(|_| invalid("an RFC 3339 `created_at`"))?;
        let data = map.remove("data").ok_or_else(|| invalid("a `data`"))?;
        Ok(Self {
            id,
            event_type,
            created_at,
            data,
        })
    }

    /// The event type as it will be sent.
    #[must_use]
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The event id as it will be sent.
    #[must_use]
    pub fn event_id(&self) -> &str {
        &self.id
    }

    /// The `data` as it will be sent.
    #[must_use]
    pub fn data(&self) -> &Value {
        &self.data
    }

    /// Sets the event id (the key a receiver de-duplicates on).
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets `created_at` (a [`Timestamp`], a `SystemTime`, or `clock.now()` of a
    /// [`ManualClock`](crate::clock::ManualClock)); the dates inside the payload
    /// (`message.timestamp`, `conversation.created_at`, `conversation.assigned_at`)
    /// move by the same amount.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use notmeta_webhooks::EventType;
    /// use notmeta_webhooks::testing::sample;
    ///
    /// let three_hours_ago = SystemTime::now() - Duration::from_secs(3 * 3600);
    /// let event = sample(EventType::ConversationAssigned).created_at(three_hours_ago).event();
    /// let assigned_at = event.kind.conversation().unwrap().assigned_at.unwrap();
    /// assert!(assigned_at > event.created_at); // five minutes after, as documented
    /// ```
    #[must_use]
    pub fn created_at(mut self, at: impl Into<Timestamp>) -> Self {
        let at = at.into();
        let shift = at.to_offset_date_time() - self.created_at.to_offset_date_time();
        for pointer in NESTED_DATES {
            let Some(slot) = self.data.pointer_mut(pointer) else {
                continue;
            };
            let moved = slot
                .as_str()
                .and_then(|s| s.parse::<Timestamp>().ok())
                .and_then(|t| t.to_offset_date_time().checked_add(shift));
            if let Some(moved) = moved {
                *slot = Value::String(Timestamp::from(moved).to_string());
            }
        }
        self.created_at = at;
        self
    }

    /// Sets the message's `text` (and its `type` to `text`).
    #[must_use]
    pub fn text(self, text: &str) -> Self {
        self.set("/message/text", text).set("/message/type", "text")
    }

    /// Sets the message's content `type`: a [`MessageType`] (`MessageType::Image`),
    /// or its wire name (`"image"`, or one this version does not know).
    ///
    /// ```
    /// use notmeta_webhooks::EventType;
    /// use notmeta_webhooks::event::MessageType;
    /// use notmeta_webhooks::testing::sample;
    ///
    /// let event = sample(EventType::MessageSent).message_type(MessageType::Image).event();
    /// assert_eq!(event.kind.message().unwrap().kind, Some(MessageType::Image));
    /// let sticker = sample(EventType::MessageSent).message_type("sticker").event();
    /// assert_eq!(sticker.kind.message().unwrap().kind, Some(MessageType::from("sticker")));
    /// ```
    #[must_use]
    pub fn message_type<'t>(self, message_type: impl Into<MessageType<'t>>) -> Self {
        self.set("/message/type", message_type.into().as_str())
    }

    /// Sets the message's `id`.
    #[must_use]
    pub fn message_id(self, id: &str) -> Self {
        self.set("/message/id", id)
    }

    /// Sets the message's sender.
    #[must_use]
    pub fn from(self, from: &str) -> Self {
        self.set("/message/from", from)
    }

    /// Sets the message's recipient.
    #[must_use]
    pub fn to(self, to: &str) -> Self {
        self.set("/message/to", to)
    }

    /// Sets the conversation id wherever the sample carries one (the conversation's
    /// `id`, the message's `conversation_id`); creates the conversation if neither.
    #[must_use]
    pub fn conversation_id(mut self, id: &str) -> Self {
        let mut found = false;
        for pointer in ["/conversation/id", "/message/conversation_id"] {
            if let Some(slot) = self.data.pointer_mut(pointer) {
                *slot = Value::from(id);
                found = true;
            }
        }
        if found {
            self
        } else {
            self.set("/conversation/id", id)
        }
    }

    /// Sets the conversation's `status`: a [`ConversationStatus`]
    /// (`ConversationStatus::Closed`), or its wire name (`"closed"`, or one this
    /// version does not know).
    ///
    /// ```
    /// use notmeta_webhooks::EventType;
    /// use notmeta_webhooks::event::ConversationStatus;
    /// use notmeta_webhooks::testing::sample;
    ///
    /// let event = sample(EventType::ConversationClosed).status(ConversationStatus::Closed).event();
    /// assert_eq!(event.kind.conversation().unwrap().status, Some(ConversationStatus::Closed));
    /// let snoozed = sample(EventType::ConversationClosed).status("snoozed").event();
    /// assert_eq!(snoozed.kind.conversation().unwrap().status.as_ref().unwrap().as_str(), "snoozed");
    /// ```
    #[must_use]
    pub fn status<'s>(self, status: impl Into<ConversationStatus<'s>>) -> Self {
        self.set("/conversation/status", status.into().as_str())
    }

    /// Sets the conversation's `assigned_to` (`None` writes `null`).
    #[must_use]
    pub fn assigned_to(self, user_id: Option<&str>) -> Self {
        self.set("/conversation/assigned_to", user_id)
    }

    /// Sets the user's `id`.
    #[must_use]
    pub fn user_id(self, id: &str) -> Self {
        self.set("/user/id", id)
    }

    /// Sets the user's `name`.
    #[must_use]
    pub fn user_name(self, name: &str) -> Self {
        self.set("/user/name", name)
    }

    /// Sets the user's `email`.
    #[must_use]
    pub fn email(self, email: &str) -> Self {
        self.set("/user/email", email)
    }

    /// Sets the user's `role`: a [`UserRole`] (`UserRole::Agent`), or its wire name
    /// (`"agent"`, or one this version does not know).
    ///
    /// ```
    /// use notmeta_webhooks::EventType;
    /// use notmeta_webhooks::event::UserRole;
    /// use notmeta_webhooks::testing::sample;
    ///
    /// let event = sample(EventType::UserCreated).role("supervisor").event();
    /// assert_eq!(event.kind.user().unwrap().role, Some(UserRole::from("supervisor")));
    /// ```
    #[must_use]
    pub fn role<'r>(self, role: impl Into<UserRole<'r>>) -> Self {
        self.set("/user/role", role.into().as_str())
    }

    /// Sets the `webhook_id` (of `webhook.*` events).
    #[must_use]
    pub fn webhook_id(self, id: &str) -> Self {
        self.set("/webhook_id", id)
    }

    /// Sets the `challenge` (of `webhook.verified`).
    #[must_use]
    pub fn challenge(self, challenge: &str) -> Self {
        self.set("/challenge", challenge)
    }

    /// Sets the `error` object (of `message.failed` and `webhook.failed`).
    #[must_use]
    pub fn error(self, code: &str, message: &str) -> Self {
        self.set("/error/code", code).set("/error/message", message)
    }

    /// Sets any field of `data`, by JSON pointer (`/message/url`), creating the
    /// objects on the way.
    ///
    /// ```
    /// use notmeta_webhooks::EventType;
    /// use notmeta_webhooks::testing::sample;
    ///
    /// let event = sample(EventType::MessageSent).set("/message/url", "https://cdn/x.png").event();
    /// #[derive(serde::Deserialize)]
    /// struct Media<'a> { #[serde(borrow)] message: Url<'a> }
    /// #[derive(serde::Deserialize)]
    /// struct Url<'a> { url: &'a str }
    /// assert_eq!(event.data_as::<Media>()?.message.url, "https://cdn/x.png");
    /// # Ok::<(), notmeta_webhooks::event::DataError>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If `pointer` is not empty and does not start with `/`, or goes through a value
    /// that is neither an object nor absent (a bug in the test).
    #[must_use]
    pub fn set(mut self, pointer: &str, value: impl Into<Value>) -> Self {
        *slot(&mut self.data, pointer) = value.into();
        self
    }

    /// Removes a field of `data`, by JSON pointer (to test a payload without it).
    ///
    /// ```
    /// use notmeta_webhooks::{EventType, ErrorKind};
    /// use notmeta_webhooks::testing::sample;
    ///
    /// let sample = sample(EventType::MessageReceived).remove("/message");
    /// assert_eq!(sample.try_event().unwrap_err().kind(), ErrorKind::InvalidEvent);
    /// ```
    #[must_use]
    pub fn remove(mut self, pointer: &str) -> Self {
        if let Some((parent, key)) = pointer.rsplit_once('/') {
            let key = key.replace("~1", "/").replace("~0", "~");
            if let Some(Value::Object(map)) = self.data.pointer_mut(parent) {
                map.remove(&key);
            }
        }
        self
    }

    /// The body: compact JSON with NotMeta's field order (`id`, `type`, `created_at`,
    /// `data`).
    ///
    /// ```
    /// use notmeta_webhooks::EventType;
    /// use notmeta_webhooks::testing::sample;
    ///
    /// let body = sample(EventType::UserOnline).id("evt_1").created_at(std::time::UNIX_EPOCH).body();
    /// assert!(body.starts_with(br#"{"id":"evt_1","type":"user.online","created_at":"1970-01-01T00:00:00Z","data":{"#));
    /// ```
    #[must_use]
    pub fn body(&self) -> Vec<u8> {
        let mut envelope = Map::new();
        envelope.insert("id".into(), Value::from(self.id.as_str()));
        envelope.insert("type".into(), Value::from(self.event_type.as_str()));
        envelope.insert(
            "created_at".into(),
            Value::from(self.created_at.to_string()),
        );
        envelope.insert("data".into(), self.data.clone());
        // serde_json's map keeps keys sorted; write the envelope's in NotMeta's order.
        let mut body = b"{".to_vec();
        for (i, key) in ["id", "type", "created_at", "data"].into_iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend(serde_json::to_vec(key).unwrap_or_default());
            body.push(b':');
            body.extend(serde_json::to_vec(&envelope[key]).unwrap_or_default());
        }
        body.push(b'}');
        body
    }

    /// The event, parsed from [`body`](Sample::body): what a handler receives. For
    /// handler tests without JSON or HTTP.
    ///
    /// ```
    /// use notmeta_webhooks::{Event, EventKind, EventType};
    /// use notmeta_webhooks::testing::sample;
    ///
    /// fn greeting(event: &Event<'_>) -> Option<String> {
    ///     let EventKind::MessageReceived(m) = &event.kind else { return None };
    ///     Some(format!("{} said {}", m.message.from.as_deref()?, m.message.text.as_deref()?))
    /// }
    ///
    /// let event = sample(EventType::MessageReceived).from("+34600").text("hola").event();
    /// assert_eq!(greeting(&event).as_deref(), Some("+34600 said hola"));
    /// ```
    ///
    /// # Panics
    ///
    /// If the sample is not a valid event (a documented object removed, say); use
    /// [`try_event`](Sample::try_event) to test that.
    #[must_use]
    pub fn event(&self) -> Event<'static> {
        self.try_event()
            .unwrap_or_else(|e| panic!("sample {} is not a valid event: {e}", self.id))
    }

    /// The event, or the error a receiver would answer for this body.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidEvent`](crate::ErrorKind::InvalidEvent) when the sample
    /// is not a valid event.
    pub fn try_event(&self) -> Result<Event<'static>, Error> {
        let body = self.body();
        Event::parse_unverified(&body).map(Event::into_owned)
    }

    /// The body with its `X-NotMeta-Signature` for `secret`.
    #[must_use]
    pub fn signed(&self, secret: &str) -> SignedRequest {
        SignedRequest::new(self.body(), secret)
    }

    /// A signed `POST /webhooks` request, ready for `tower::ServiceExt::oneshot`, an
    /// axum `Router`, or [`Target::send`](super::Target::send).
    ///
    /// ```
    /// use notmeta_webhooks::{EventType, Verifier};
    /// use notmeta_webhooks::testing::sample;
    ///
    /// let sample = sample(EventType::MessageReceived);
    /// let request = sample.request("whsec_abc123");
    /// assert_eq!((request.method().as_str(), request.uri().path()), ("POST", "/webhooks"));
    /// let verifier = Verifier::new("whsec_abc123")?;
    /// verifier.verify(&sample.body(), request.headers().get_all(notmeta_webhooks::SIGNATURE_HEADER))?;
    /// # Ok::<(), notmeta_webhooks::Error>(())
    /// ```
    #[must_use]
    pub fn request(&self, secret: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
        self.signed(secret).request()
    }
}

/// The slot at `pointer` inside `value`, creating objects on the way.
fn slot<'v>(value: &'v mut Value, pointer: &str) -> &'v mut Value {
    if pointer.is_empty() {
        return value;
    }
    assert!(
        pointer.starts_with('/'),
        "a JSON pointer starts with `/`: {pointer:?}"
    );
    let mut at = value;
    for token in pointer[1..].split('/') {
        let key = token.replace("~1", "/").replace("~0", "~");
        if at.is_null() {
            *at = Value::Object(Map::new());
        }
        let Value::Object(map) = at else {
            panic!("{pointer:?} goes through a value that is not an object");
        };
        at = map.entry(key).or_insert(Value::Null);
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_parses_to_its_type_with_fresh_dates() {
        for &t in EventType::ALL {
            let event = sample(t).event();
            assert_eq!(event.event_type(), Some(t));
            assert!(event.id.as_str().starts_with("evt_test_"));
            let age = SystemTime::now().duration_since(event.created_at.to_system_time());
            assert!(age.unwrap_or_default().as_secs() < 5, "{t}");
        }
    }

    #[test]
    fn nested_dates_follow_created_at() {
        let at = Timestamp::from_unix_timestamp(1_704_110_400 + 86_400).unwrap();
        let event = sample(EventType::MessageReceived).created_at(at).event();
        let message = event.kind.message().unwrap();
        assert_eq!(
            message.timestamp.unwrap().to_string(),
            "2024-01-02T12:00:00Z"
        );
        let conversation = event.kind.conversation().unwrap();
        assert_eq!(
            conversation.created_at.unwrap().to_string(),
            "2024-01-02T11:55:00Z"
        );
    }

    #[test]
    fn ids_are_unique() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| fresh_id()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn set_creates_objects_and_remove_removes() {
        let s = Sample::new("x.y", Value::Null)
            .set("/a/b~1c", 1)
            .set("/a/d", 2);
        assert_eq!(s.data(), &serde_json::json!({"a": {"b/c": 1, "d": 2}}));
        let s = s.remove("/a/b~1c");
        assert_eq!(s.data(), &serde_json::json!({"a": {"d": 2}}));
    }
}
