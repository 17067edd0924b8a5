//! What the management API sends and answers.
//!
//! The creation call is documented by NotMeta and [`Webhook`] reads its answer. The
//! list, logs and stats answers are not documented: their models read the fields
//! they name when present and of a fitting JSON type, and keep everything else in an
//! `extra` map, so nothing NotMeta sends is lost and no unexpected shape fails a call.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::event::Timestamp;
use crate::{EventType, Secret, Verifier};

/// The body of `POST /webhooks`: where to deliver, which events, and the secret you
/// ask NotMeta to sign with.
///
/// NotMeta answers with the secret it will actually sign with (`whsec_…`, in
/// [`Webhook::secret`]); configure your receiver with that one. `Debug` never prints
/// the secret.
///
/// ```
/// use notmeta_webhooks::client::CreateWebhook;
/// use notmeta_webhooks::EventType;
///
/// let request = CreateWebhook::new(
///     "https://example.com/webhook",
///     [EventType::MessageReceived, EventType::ConversationAssigned],
///     "my_secret",
/// );
/// assert_eq!(
///     serde_json::to_string(&request)?,
///     r#"{"url":"https://example.com/webhook","events":["message.received","conversation.assigned"],"secret":"my_secret"}"#
/// );
/// assert!(!format!("{request:?}").contains("my_secret"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Serialize)]
pub struct CreateWebhook {
    url: String,
    events: Vec<EventType>,
    secret: String,
}

impl CreateWebhook {
    /// A webhook for `url` receiving `events`, signed with `secret`.
    ///
    /// Events are sent in the order given, once each.
    pub fn new(
        url: impl Into<String>,
        events: impl IntoIterator<Item = EventType>,
        secret: impl Into<String>,
    ) -> Self {
        let mut seen = BTreeSet::new();
        Self {
            url: url.into(),
            events: events.into_iter().filter(|e| seen.insert(*e)).collect(),
            secret: secret.into(),
        }
    }

    /// The delivery URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The event types to subscribe to.
    #[must_use]
    pub fn events(&self) -> &[EventType] {
        &self.events
    }
}

impl fmt::Debug for CreateWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateWebhook")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A webhook as NotMeta answers its creation (documented shape):
/// `{id, url, events, secret, created_at, status}`.
///
/// `id`, `url` and a non-empty `secret` are required. `events` keeps the names
/// exactly as sent, so a type this version does not know is kept rather than failing
/// the call; [`Webhook::event_types`] gives the known ones. Fields NotMeta adds are in
/// `extra`. `Display` and `Debug` never print the secret.
///
/// ```
/// use notmeta_webhooks::client::Webhook;
/// use notmeta_webhooks::{sign, EventType};
///
/// let webhook: Webhook = serde_json::from_str(r#"{
///     "id": "wh_123456789", "url": "https://example.com/webhook",
///     "events": ["message.received", "call.started"], "secret": "whsec_abc123",
///     "created_at": "2024-01-01T00:00:00Z", "status": "active", "region": "eu"
/// }"#)?;
/// assert_eq!(webhook.id, "wh_123456789");
/// assert_eq!(webhook.event_types(), [EventType::MessageReceived]);
/// assert_eq!(webhook.unknown_events().collect::<Vec<_>>(), ["call.started"]);
/// assert!(webhook.is_active());
/// assert_eq!(webhook.extra["region"], "eu");
///
/// // The secret goes straight into a verifier.
/// let verifier = webhook.verifier()?;
/// assert!(verifier.verify(b"{}", &sign(b"{}", "whsec_abc123")).is_ok());
/// assert!(!format!("{webhook:?} {webhook}").contains("whsec_abc123"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Webhook {
    /// The webhook's id, such as `wh_123456789`.
    pub id: String,
    /// The delivery URL.
    pub url: String,
    /// The subscribed event type names, as NotMeta sent them.
    pub events: Vec<String>,
    /// The secret NotMeta signs this webhook's deliveries with.
    pub secret: Secret,
    /// When the webhook was created, when NotMeta sent a valid RFC 3339 time
    /// (otherwise the raw value stays in `extra`).
    pub created_at: Option<Timestamp>,
    /// The webhook's status, such as `active`.
    pub status: Option<String>,
    /// Every other field NotMeta sent.
    pub extra: Map<String, Value>,
    /// The secret's text, for [`Webhook::expose_secret`].
    secret_text: SecretText,
}

/// A secret's text: wiped when dropped, never printed by `Debug`.
#[derive(Clone)]
struct SecretText(zeroize::Zeroizing<String>);

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Webhook {
    /// The secret as NotMeta sent it (`whsec_…`), to store in your receiver's
    /// configuration: NotMeta documents no other way to read it again. The text is
    /// overwritten with zeros when the `Webhook` is dropped; `Debug` and `Display`
    /// never print it.
    ///
    /// ```
    /// use notmeta_webhooks::client::Webhook;
    ///
    /// let webhook: Webhook = serde_json::from_str(
    ///     r#"{"id":"wh_1","url":"https://example.com/webhook","secret":"whsec_abc123"}"#,
    /// )?;
    /// assert_eq!(webhook.expose_secret(), "whsec_abc123");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.secret_text.0
    }

    /// The subscribed event types this version knows, in NotMeta's order.
    #[must_use]
    pub fn event_types(&self) -> Vec<EventType> {
        known(&self.events)
    }

    /// The subscribed event type names this version does not know.
    pub fn unknown_events(&self) -> impl Iterator<Item = &str> {
        unknown(&self.events)
    }

    /// Whether the status is `active`.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.status.as_deref() == Some("active")
    }

    /// A [`Verifier`] for this webhook's deliveries, keyed with its secret.
    ///
    /// To accept an older secret too during a rotation, build one instead:
    /// `Verifier::builder().keyed_secret(webhook.secret.clone()).secret(old)`.
    pub fn verifier(&self) -> Result<Verifier, crate::Error> {
        Verifier::builder()
            .keyed_secret(self.secret.clone())
            .build()
    }
}

impl<'de> Deserialize<'de> for Webhook {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut map = Map::deserialize(d)?;
        let (secret, secret_text) = match map.remove("secret") {
            Some(Value::String(s)) if !s.is_empty() => {
                let text = SecretText(zeroize::Zeroizing::new(s));
                let keyed = Secret::new(text.0.as_str())
                    .map_err(|_| D::Error::custom("the webhook secret is empty"))?;
                (keyed, text)
            }
            Some(_) => return Err(D::Error::custom("`secret` is not a non-empty string")),
            None => return Err(D::Error::missing_field("secret")),
        };
        let id = text(&mut map, "id").ok_or_else(|| D::Error::missing_field("id"))?;
        let url = text(&mut map, "url").ok_or_else(|| D::Error::missing_field("url"))?;
        Ok(Self {
            id,
            url,
            secret,
            events: names(&mut map, "events").unwrap_or_default(),
            created_at: timestamp(&mut map, "created_at"),
            status: text(&mut map, "status"),
            extra: map,
            secret_text,
        })
    }
}

impl fmt::Display for Webhook {
    /// One line: id, status, URL and events.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        summary_line(
            f,
            Some(&self.id),
            self.status.as_deref(),
            Some(&self.url),
            Some(&self.events),
        )
    }
}

/// One webhook in the answer to `GET /webhooks` (shape not documented: every field
/// optional).
///
/// A field absent or of an unexpected JSON type reads as `None` and, when present,
/// stays in `extra`. A `secret`, if NotMeta lists one, is kept as a [`Secret`] and
/// never printed.
///
/// ```
/// use notmeta_webhooks::client::WebhookSummary;
///
/// let listed: WebhookSummary = serde_json::from_str(
///     r#"{"id":"wh_1","url":"https://example.com/webhook","status":"active","deliveries":42}"#,
/// )?;
/// assert_eq!(listed.id.as_deref(), Some("wh_1"));
/// assert_eq!(listed.events, None);
/// assert_eq!(listed.extra["deliveries"], 42);
/// assert_eq!(listed.to_string(), "wh_1  active  https://example.com/webhook  -");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebhookSummary {
    /// The webhook's id.
    pub id: Option<String>,
    /// The delivery URL.
    pub url: Option<String>,
    /// The subscribed event type names, as NotMeta sent them.
    pub events: Option<Vec<String>>,
    /// The webhook's status, such as `active`.
    pub status: Option<String>,
    /// When the webhook was created.
    pub created_at: Option<Timestamp>,
    /// The signing secret, if NotMeta lists it.
    pub secret: Option<Secret>,
    /// Every other field NotMeta sent.
    pub extra: Map<String, Value>,
}

impl WebhookSummary {
    /// The subscribed event types this version knows (none when `events` is absent).
    #[must_use]
    pub fn event_types(&self) -> Vec<EventType> {
        self.events.as_deref().map(known).unwrap_or_default()
    }

    /// The subscribed event type names this version does not know.
    pub fn unknown_events(&self) -> impl Iterator<Item = &str> {
        unknown(self.events.as_deref().unwrap_or_default())
    }

    /// Whether the status is `active`.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.status.as_deref() == Some("active")
    }

    fn from_map(mut map: Map<String, Value>) -> Self {
        Self {
            secret: match map.remove("secret") {
                Some(Value::String(s)) => Secret::new(s).ok(),
                _ => None,
            },
            id: text(&mut map, "id"),
            url: text(&mut map, "url"),
            events: names(&mut map, "events"),
            status: text(&mut map, "status"),
            created_at: timestamp(&mut map, "created_at"),
            extra: map,
        }
    }
}

impl<'de> Deserialize<'de> for WebhookSummary {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_map(object(Value::deserialize(d)?)))
    }
}

impl fmt::Display for WebhookSummary {
    /// One line: id, status, URL and events (`-` for what NotMeta did not say).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        summary_line(
            f,
            self.id.as_deref(),
            self.status.as_deref(),
            self.url.as_deref(),
            self.events.as_deref(),
        )
    }
}

/// The answer to `GET /webhooks` (shape not documented).
///
/// Both a bare array and an object wrapping it under `data` or `webhooks` are read;
/// the wrapper's other fields (pagination, say) are in `extra`.
///
/// ```
/// use notmeta_webhooks::client::WebhookList;
///
/// let bare: WebhookList = serde_json::from_str(r#"[{"id":"wh_1"},{"id":"wh_2"}]"#)?;
/// let wrapped: WebhookList =
///     serde_json::from_str(r#"{"data":[{"id":"wh_1"},{"id":"wh_2"}],"has_more":false}"#)?;
/// assert_eq!(bare.webhooks.len(), 2);
/// assert_eq!(wrapped.webhooks[1].id.as_deref(), Some("wh_2"));
/// assert_eq!(wrapped.extra["has_more"], false);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WebhookList {
    /// The webhooks, in NotMeta's order.
    pub webhooks: Vec<WebhookSummary>,
    /// The wrapping object's other fields, if the list came wrapped.
    pub extra: Map<String, Value>,
}

impl WebhookList {
    /// The first webhook whose URL is exactly `url`.
    ///
    /// ```
    /// use notmeta_webhooks::client::WebhookList;
    /// let list: WebhookList = serde_json::from_str(r#"[{"id":"wh_1","url":"https://a.example/h"}]"#)?;
    /// assert_eq!(list.find_by_url("https://a.example/h").and_then(|w| w.id.as_deref()), Some("wh_1"));
    /// assert!(list.find_by_url("https://a.example/h/").is_none());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    #[must_use]
    pub fn find_by_url(&self, url: &str) -> Option<&WebhookSummary> {
        self.webhooks.iter().find(|w| w.url.as_deref() == Some(url))
    }
}

impl<'de> Deserialize<'de> for WebhookList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (items, extra) = unwrap_list(Value::deserialize(d)?, &["data", "webhooks"]);
        Ok(Self {
            webhooks: items
                .into_iter()
                .map(|v| WebhookSummary::from_map(object(v)))
                .collect(),
            extra,
        })
    }
}

impl fmt::Display for WebhookList {
    /// One line per webhook.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for webhook in &self.webhooks {
            writeln!(f, "{webhook}")?;
        }
        Ok(())
    }
}

/// One delivery attempt in a webhook's logs (shape not documented: every field
/// optional, everything else in `extra`).
///
/// `status` keeps a number in its text form (`200` reads as `"200"`). `created_at`
/// is read from `created_at` or, failing that, `timestamp`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogEntry {
    /// The log entry's id.
    pub id: Option<String>,
    /// The delivered event's id.
    pub event_id: Option<String>,
    /// The delivered event's type name.
    pub event_type: Option<String>,
    /// The delivery's status, such as `success` or `200`.
    pub status: Option<String>,
    /// The HTTP status your endpoint answered, from `status_code`.
    pub status_code: Option<u16>,
    /// When the delivery happened.
    pub created_at: Option<Timestamp>,
    /// Every other field NotMeta sent.
    pub extra: Map<String, Value>,
}

impl LogEntry {
    /// The delivered event's type, when this version knows it.
    #[must_use]
    pub fn event_type(&self) -> Option<EventType> {
        self.event_type.as_deref()?.parse().ok()
    }

    fn from_map(mut map: Map<String, Value>) -> Self {
        Self {
            id: text(&mut map, "id"),
            event_id: text(&mut map, "event_id"),
            event_type: text(&mut map, "event_type"),
            status: text(&mut map, "status"),
            status_code: status_code(&mut map),
            created_at: timestamp(&mut map, "created_at")
                .or_else(|| timestamp(&mut map, "timestamp")),
            extra: map,
        }
    }
}

impl fmt::Display for LogEntry {
    /// One line: time, event type, event id, status, status code.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dash = |s: Option<&str>| s.unwrap_or("-").to_owned();
        write!(
            f,
            "{}  {}  {}  {}  {}",
            self.created_at
                .map_or_else(|| "-".to_owned(), |t| t.to_string()),
            dash(self.event_type.as_deref()),
            dash(self.event_id.as_deref()),
            dash(self.status.as_deref()),
            self.status_code
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
        )
    }
}

/// The answer to `GET /webhooks/{id}/logs` (shape not documented).
///
/// A bare array, or an object wrapping it under `data` or `logs`, is read into
/// `entries`; the wrapper's other fields are in `extra`.
///
/// ```
/// use notmeta_webhooks::client::WebhookLogs;
/// use notmeta_webhooks::EventType;
///
/// let logs: WebhookLogs = serde_json::from_str(r#"{"logs":[{"event_id":"evt_1",
///     "event_type":"message.received","status":"success","status_code":200,
///     "created_at":"2024-01-01T12:00:00Z","duration_ms":87}],"total":1}"#)?;
/// let entry = &logs.entries[0];
/// assert_eq!(entry.event_type(), Some(EventType::MessageReceived));
/// assert_eq!(entry.status_code, Some(200));
/// assert_eq!(entry.extra["duration_ms"], 87);
/// assert_eq!(logs.extra["total"], 1);
/// assert_eq!(entry.to_string(), "2024-01-01T12:00:00Z  message.received  evt_1  success  200");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WebhookLogs {
    /// The log entries, in NotMeta's order.
    pub entries: Vec<LogEntry>,
    /// The wrapping object's other fields, if the entries came wrapped.
    pub extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for WebhookLogs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (items, extra) = unwrap_list(Value::deserialize(d)?, &["data", "logs"]);
        Ok(Self {
            entries: items
                .into_iter()
                .map(|v| LogEntry::from_map(object(v)))
                .collect(),
            extra,
        })
    }
}

impl fmt::Display for WebhookLogs {
    /// One line per entry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            writeln!(f, "{entry}")?;
        }
        Ok(())
    }
}

/// The answer to `GET /webhooks/{id}/stats` (shape not documented): its fields as
/// sent, with typed readers.
///
/// An answer wrapped as `{"data":{...}}` is unwrapped. Anything other than an object
/// gives empty stats, with the value under the key `""` of `fields`.
///
/// ```
/// use notmeta_webhooks::client::WebhookStats;
///
/// let stats: WebhookStats = serde_json::from_str(
///     r#"{"total_deliveries":120,"failed_deliveries":3,"success_rate":0.975}"#,
/// )?;
/// assert_eq!(stats.count("total_deliveries"), Some(120));
/// assert_eq!(stats.number("success_rate"), Some(0.975));
/// assert_eq!(stats.count("missing"), None);
/// assert_eq!(stats.to_string(), "failed_deliveries: 3\nsuccess_rate: 0.975\ntotal_deliveries: 120\n");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WebhookStats {
    /// Every field NotMeta sent.
    pub fields: Map<String, Value>,
}

impl WebhookStats {
    /// The field `name` as a non-negative integer.
    #[must_use]
    pub fn count(&self, name: &str) -> Option<u64> {
        self.fields.get(name)?.as_u64()
    }

    /// The field `name` as a number.
    #[must_use]
    pub fn number(&self, name: &str) -> Option<f64> {
        self.fields.get(name)?.as_f64()
    }
}

impl<'de> Deserialize<'de> for WebhookStats {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut fields = object(Value::deserialize(d)?);
        if fields.len() == 1 && fields.get("data").is_some_and(Value::is_object) {
            fields = object(fields.remove("data").unwrap_or_default());
        }
        Ok(Self { fields })
    }
}

impl fmt::Display for WebhookStats {
    /// One `name: value` line per field, in name order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in &self.fields {
            match value {
                Value::String(s) => writeln!(f, "{name}: {s}")?,
                other => writeln!(f, "{name}: {other}")?,
            }
        }
        Ok(())
    }
}

/// What [`Client::ensure_webhook`](super::Client::ensure_webhook) found or did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Ensured {
    /// No webhook had the URL: this one was created. Keep its secret, NotMeta does not
    /// document another way to read it.
    Created(Webhook),
    /// A webhook with the URL exists; nothing was changed.
    Existing {
        /// The listed webhook.
        webhook: WebhookSummary,
        /// Requested event types the existing webhook is not subscribed to (all of
        /// them when the list gives no `events`).
        missing_events: Vec<EventType>,
        /// Subscribed event type names that were not requested.
        extra_events: Vec<String>,
    },
}

impl Ensured {
    /// The webhook's id, if known.
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Created(w) => Some(&w.id),
            Self::Existing { webhook, .. } => webhook.id.as_deref(),
        }
    }

    /// Whether the webhook was created by this call.
    #[must_use]
    pub fn was_created(&self) -> bool {
        matches!(self, Self::Created(_))
    }

    /// Whether the webhook is subscribed to exactly the requested event types.
    #[must_use]
    pub fn events_match(&self) -> bool {
        match self {
            Self::Created(_) => true,
            Self::Existing {
                missing_events,
                extra_events,
                ..
            } => missing_events.is_empty() && extra_events.is_empty(),
        }
    }

    /// The signing secret: always known for a created webhook, only if NotMeta listed
    /// it for an existing one.
    #[must_use]
    pub fn secret(&self) -> Option<&Secret> {
        match self {
            Self::Created(w) => Some(&w.secret),
            Self::Existing { webhook, .. } => webhook.secret.as_ref(),
        }
    }

    pub(super) fn existing(webhook: WebhookSummary, requested: &CreateWebhook) -> Self {
        let listed = webhook.events.as_deref().unwrap_or_default();
        let missing_events = requested
            .events()
            .iter()
            .copied()
            .filter(|e| !listed.iter().any(|l| l == e.as_str()))
            .collect();
        let extra_events = listed
            .iter()
            .filter(|l| !requested.events().iter().any(|e| e.as_str() == l.as_str()))
            .cloned()
            .collect();
        Self::Existing {
            webhook,
            missing_events,
            extra_events,
        }
    }
}

impl fmt::Display for Ensured {
    /// `created <webhook>` or `exists <webhook>`, with the event difference if any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Created(w) => write!(f, "created {w}"),
            Self::Existing {
                webhook,
                missing_events,
                extra_events,
            } => {
                write!(f, "exists {webhook}")?;
                if !missing_events.is_empty() {
                    let names: Vec<_> = missing_events.iter().map(|e| e.as_str()).collect();
                    write!(f, "  (missing: {})", names.join(","))?;
                }
                if !extra_events.is_empty() {
                    write!(f, "  (not requested: {})", extra_events.join(","))?;
                }
                Ok(())
            }
        }
    }
}

fn summary_line(
    f: &mut fmt::Formatter<'_>,
    id: Option<&str>,
    status: Option<&str>,
    url: Option<&str>,
    events: Option<&[String]>,
) -> fmt::Result {
    let events = match events {
        Some(e) if !e.is_empty() => e.join(","),
        _ => "-".to_owned(),
    };
    write!(
        f,
        "{}  {}  {}  {events}",
        id.unwrap_or("-"),
        status.unwrap_or("-"),
        url.unwrap_or("-"),
    )
}

fn known(names: &[String]) -> Vec<EventType> {
    names.iter().filter_map(|n| n.parse().ok()).collect()
}

fn unknown(names: &[String]) -> impl Iterator<Item = &str> {
    names
        .iter()
        .map(String::as_str)
        .filter(|n| n.parse::<EventType>().is_err())
}

/// An object's fields; any other value is kept under the key `""`.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => Map::from_iter([(String::new(), other)]),
    }
}

/// A list sent bare or wrapped in an object under one of `keys`.
fn unwrap_list(value: Value, keys: &[&str]) -> (Vec<Value>, Map<String, Value>) {
    match value {
        Value::Array(items) => (items, Map::new()),
        Value::Object(mut map) => {
            let key = keys
                .iter()
                .find(|k| map.get(**k).is_some_and(Value::is_array));
            match key.and_then(|k| map.remove(*k)) {
                Some(Value::Array(items)) => (items, map),
                _ => (Vec::new(), map),
            }
        }
        other => (Vec::new(), object(other)),
    }
}

/// Takes a string field (a number or boolean in its JSON text form); leaves any other
/// JSON type in the map.
fn text(map: &mut Map<String, Value>, key: &str) -> Option<String> {
    let s = match map.get(key)? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    map.remove(key);
    Some(s)
}

/// Takes an array of names (its string items; other items are dropped); leaves any
/// other JSON type in the map.
fn names(map: &mut Map<String, Value>, key: &str) -> Option<Vec<String>> {
    if !map.get(key)?.is_array() {
        return None;
    }
    let Some(Value::Array(items)) = map.remove(key) else {
        return None;
    };
    Some(
        items
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
    )
}

/// Takes `status_code` when it is an integer that fits an HTTP status.
fn status_code(map: &mut Map<String, Value>) -> Option<u16> {
    let code = u16::try_from(map.get("status_code")?.as_u64()?).ok()?;
    map.remove("status_code");
    Some(code)
}

/// Takes an RFC 3339 timestamp field; leaves anything else in the map.
fn timestamp(map: &mut Map<String, Value>, key: &str) -> Option<Timestamp> {
    let t = map.get(key)?.as_str()?.parse().ok()?;
    map.remove(key);
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_types_read_as_none_and_stay_in_extra() {
        let w: WebhookSummary = serde_json::from_str(
            r#"{"id":{"x":1},"url":null,"events":"message.received","created_at":"yesterday","status":3}"#,
        )
        .unwrap();
        assert_eq!((w.id, w.url, w.events), (None, None, None));
        assert_eq!(w.created_at, None);
        assert_eq!(w.status.as_deref(), Some("3"));
        assert_eq!(w.extra["created_at"], "yesterday");
        assert_eq!(w.extra["events"], "message.received");
    }

    #[test]
    fn a_created_webhook_needs_id_url_and_secret() {
        for body in [
            r#"{"url":"u","secret":"s"}"#,
            r#"{"id":"i","secret":"s"}"#,
            r#"{"id":"i","url":"u"}"#,
            r#"{"id":"i","url":"u","secret":""}"#,
            r#"{"id":"i","url":"u","secret":7}"#,
        ] {
            assert!(serde_json::from_str::<Webhook>(body).is_err(), "{body}");
        }
    }

    #[test]
    fn a_listed_secret_never_lands_in_extra() {
        let w: WebhookSummary = serde_json::from_str(r#"{"secret":"whsec_x"}"#).unwrap();
        assert!(w.secret.is_some() && w.extra.is_empty());
        assert!(!format!("{w:?}").contains("whsec_x"));
    }

    #[test]
    fn ensure_reports_the_event_difference() {
        let listed: WebhookSummary =
            serde_json::from_str(r#"{"id":"wh_1","events":["message.received","call.started"]}"#)
                .unwrap();
        let request = CreateWebhook::new(
            "u",
            [EventType::MessageReceived, EventType::UserOnline],
            "s",
        );
        let ensured = Ensured::existing(listed, &request);
        let Ensured::Existing {
            missing_events,
            extra_events,
            ..
        } = &ensured
        else {
            unreachable!()
        };
        assert_eq!(missing_events, &[EventType::UserOnline]);
        assert_eq!(extra_events, &["call.started"]);
        assert!(!ensured.events_match());
    }
}
