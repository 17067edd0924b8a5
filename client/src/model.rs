//! What the management API sends and answers.
//!
//! The creation call is documented by NotMeta and [`Webhook`] reads its answer. The
//! list, logs and stats answers are not documented: their models read the fields
//! they name when present and of a fitting JSON type, and keep everything else in an
//! `extra` map, so nothing NotMeta sends is lost and no unexpected shape fails a call.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use notmeta_webhooks::event::Timestamp;
use notmeta_webhooks::{EventType, Secret, Verifier};

/// The body of `POST /webhooks`: where to deliver, which events, and the secret you
/// ask NotMeta to sign with.
///
/// NotMeta answers with the secret it will actually sign with (`whsec_…`, in
/// [`Webhook::secret`]); configure your receiver with that one. `Debug` never prints
/// the secret.
///
/// ```
/// use notmeta_webhooks_client::CreateWebhook;
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

    /// The secret NotMeta is asked to sign with.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
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
/// use notmeta_webhooks_client::Webhook;
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
    /// use notmeta_webhooks_client::Webhook;
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

    /// The webhook as listed, with the listed secret, else `sent` (the one its
    /// creation asked for); `None` when neither is a usable secret.
    fn from_listed(listed: WebhookSummary, sent: &str) -> Option<Self> {
        let text = match listed.secret_text {
            Some(text) => text,
            None => SecretText(zeroize::Zeroizing::new(sent.to_owned())),
        };
        Some(Self {
            secret: Secret::new(text.0.as_str()).ok()?,
            id: listed.id.unwrap_or_default(),
            url: listed.url.unwrap_or_default(),
            events: listed.events.unwrap_or_default(),
            created_at: listed.created_at,
            status: listed.status,
            extra: listed.extra,
            secret_text: text,
        })
    }

    /// A [`Verifier`] for this webhook's deliveries, keyed with its secret.
    ///
    /// To accept an older secret too during a rotation, build one instead:
    /// `Verifier::builder().keyed_secret(webhook.secret.clone()).secret(old)`.
    pub fn verifier(&self) -> Result<Verifier, notmeta_webhooks::Error> {
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
/// use notmeta_webhooks_client::WebhookSummary;
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
    /// The listed secret's text, for [`WebhookSummary::expose_secret`].
    secret_text: Option<SecretText>,
}

impl WebhookSummary {
    /// The secret's text, if NotMeta lists it. `Debug` and `Display` never print it.
    ///
    /// ```
    /// use notmeta_webhooks_client::WebhookSummary;
    /// let listed: WebhookSummary = serde_json::from_str(r#"{"id":"wh_1","secret":"whsec_x"}"#)?;
    /// assert_eq!(listed.expose_secret(), Some("whsec_x"));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    #[must_use]
    pub fn expose_secret(&self) -> Option<&str> {
        self.secret_text.as_ref().map(|t| t.0.as_str())
    }

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

    pub(super) fn from_map(mut map: Map<String, Value>) -> Self {
        let (secret, secret_text) = match map.remove("secret") {
            Some(Value::String(s)) => match Secret::new(&s) {
                Ok(secret) => (Some(secret), Some(SecretText(zeroize::Zeroizing::new(s)))),
                Err(_) => (None, None),
            },
            _ => (None, None),
        };
        Self {
            secret,
            secret_text,
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
/// A bare array is read, and an object wrapping it under `data`, `webhooks`, `items`
/// or `results` (the only non-empty one when several hold an array), or else under
/// its only array field when that is not empty; each item must be an object. Any
/// other answer is an error (never an empty list). The wrapper's other fields
/// (pagination, say) are in `extra`, of the first page when
/// [`Client::list_webhooks`](super::Client::list_webhooks) read several; it reads
/// every page, where deserialising one answer reads that page only.
///
/// ```
/// use notmeta_webhooks_client::WebhookList;
///
/// let bare: WebhookList = serde_json::from_str(r#"[{"id":"wh_1"},{"id":"wh_2"}]"#)?;
/// let wrapped: WebhookList =
///     serde_json::from_str(r#"{"data":[{"id":"wh_1"},{"id":"wh_2"}],"has_more":false}"#)?;
/// assert_eq!(bare.webhooks.len(), 2);
/// assert_eq!(wrapped.webhooks[1].id.as_deref(), Some("wh_2"));
/// assert_eq!(wrapped.extra["has_more"], false);
/// let other_key: WebhookList = serde_json::from_str(r#"{"hooks":[{"id":"wh_1"}],"count":1}"#)?;
/// assert_eq!(other_key.webhooks.len(), 1);
/// assert!(serde_json::from_str::<WebhookList>(r#"{"hooks":[],"count":0}"#).is_err());
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
    /// use notmeta_webhooks_client::WebhookList;
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
        let page = Page::from_value(&Value::deserialize(d)?, super::WEBHOOK_KEYS, "webhooks")
            .map_err(serde::de::Error::custom)?;
        let (items, extra) = (page.items, page.extra);
        Ok(Self {
            webhooks: items.into_iter().map(WebhookSummary::from_map).collect(),
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
/// A bare array, or an object wrapping it under `data`, `logs`, `items` or
/// `results` (or else under its only array field when that holds objects), is read
/// into `entries`; any other answer is an error. The wrapper's other fields are in
/// `extra`. Only one page is read: [`WebhookLogs::more_pages`] tells whether NotMeta
/// signalled more.
///
/// ```
/// use notmeta_webhooks_client::WebhookLogs;
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
/// assert!(!logs.more_pages());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WebhookLogs {
    /// The log entries, in NotMeta's order.
    pub entries: Vec<LogEntry>,
    /// The wrapping object's other fields, if the entries came wrapped.
    pub extra: Map<String, Value>,
    more_pages: bool,
}

impl WebhookLogs {
    /// Whether NotMeta signalled more entries than this page holds (a next URL or
    /// cursor, `has_more`, `next_page`…). They are not read.
    ///
    /// ```
    /// use notmeta_webhooks_client::WebhookLogs;
    /// let logs: WebhookLogs = serde_json::from_str(r#"{"data":[{"event_id":"evt_1"}],"next_cursor":"c2"}"#)?;
    /// assert!(logs.more_pages());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    #[must_use]
    pub fn more_pages(&self) -> bool {
        self.more_pages
    }

    pub(super) fn from_page(page: Page) -> Self {
        Self {
            more_pages: !matches!(page.next, Next::None),
            entries: page.items.into_iter().map(LogEntry::from_map).collect(),
            extra: page.extra,
        }
    }
}

impl<'de> Deserialize<'de> for WebhookLogs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let page = Page::from_value(&Value::deserialize(d)?, super::LOG_KEYS, "log entries")
            .map_err(serde::de::Error::custom)?;
        Ok(Self::from_page(page))
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
/// use notmeta_webhooks_client::WebhookStats;
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
    /// The creation failed in a way that may have acted (a 5xx, a timeout, a lost
    /// connection), and the list read after it shows a webhook with the URL: most
    /// likely created by this call, its answer lost.
    ///
    /// `webhook` is the listed one, with the secret NotMeta listed if it lists one,
    /// else the secret that was sent. Store that secret as for [`Ensured::Created`]:
    /// NotMeta signs with the secret sent unless it chose its own, and documents no
    /// call to read a secret again. Check it on the first delivery, or on the
    /// `webhook.verified` challenge, with `notmeta-webhooks verify`.
    CreatedAnswerLost {
        /// The listed webhook, with the secret as described above.
        webhook: Webhook,
        /// Why the creation's answer was lost (the error, never showing a secret).
        cause: String,
    },
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
            Self::Created(w) | Self::CreatedAnswerLost { webhook: w, .. } => Some(&w.id),
            Self::Existing { webhook, .. } => webhook.id.as_deref(),
        }
    }

    /// Whether the webhook was created by this call ([`Ensured::Created`], and
    /// [`Ensured::CreatedAnswerLost`]): then store its [secret](Self::expose_secret).
    #[must_use]
    pub fn was_created(&self) -> bool {
        matches!(self, Self::Created(_) | Self::CreatedAnswerLost { .. })
    }

    /// The signing secret's text: for a webhook this call created, the one to store
    /// (NotMeta documents no other way to read it); for an existing one, only if
    /// NotMeta listed it. `Debug` and `Display` never print it.
    ///
    /// ```
    /// use notmeta_webhooks_client::{Ensured, Webhook};
    /// let webhook: Webhook = serde_json::from_str(
    ///     r#"{"id":"wh_1","url":"https://example.com/webhook","secret":"whsec_abc123"}"#,
    /// )?;
    /// let ensured = Ensured::Created(webhook);
    /// assert!(ensured.was_created());
    /// assert_eq!(ensured.expose_secret(), Some("whsec_abc123"));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    #[must_use]
    pub fn expose_secret(&self) -> Option<&str> {
        match self {
            Self::Created(w) | Self::CreatedAnswerLost { webhook: w, .. } => {
                Some(w.expose_secret())
            }
            Self::Existing { webhook, .. } => webhook.expose_secret(),
        }
    }

    /// Whether the webhook is subscribed to exactly the requested event types
    /// (always, for one this call created).
    #[must_use]
    pub fn events_match(&self) -> bool {
        match self {
            Self::Created(_) | Self::CreatedAnswerLost { .. } => true,
            Self::Existing {
                missing_events,
                extra_events,
                ..
            } => missing_events.is_empty() && extra_events.is_empty(),
        }
    }

    /// The signing secret: always known for a webhook this call created (for
    /// [`Ensured::CreatedAnswerLost`], as described there), only if NotMeta listed
    /// it for an existing one.
    #[must_use]
    pub fn secret(&self) -> Option<&Secret> {
        match self {
            Self::Created(w) | Self::CreatedAnswerLost { webhook: w, .. } => Some(&w.secret),
            Self::Existing { webhook, .. } => webhook.secret.as_ref(),
        }
    }

    /// A creation whose answer was lost, found in the list; [`Ensured::Existing`] in
    /// the unlikely case no usable secret is known.
    pub(super) fn answer_lost(
        listed: WebhookSummary,
        requested: &CreateWebhook,
        cause: String,
    ) -> Self {
        match Webhook::from_listed(listed.clone(), requested.secret()) {
            Some(webhook) => Self::CreatedAnswerLost { webhook, cause },
            None => Self::existing(listed, requested),
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
    /// `created <webhook>`, `created (NotMeta's answer was lost) <webhook>` or
    /// `exists <webhook>`, with the event difference if any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Created(w) => write!(f, "created {w}"),
            Self::CreatedAnswerLost { webhook, .. } => {
                write!(f, "created (NotMeta's answer was lost) {webhook}")
            }
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

/// One answer of a list call: its items, the wrapper's other fields, and what it
/// says of a next page.
#[derive(Debug)]
pub(super) struct Page {
    pub(super) items: Vec<Map<String, Value>>,
    pub(super) extra: Map<String, Value>,
    pub(super) next: Next,
}

/// What a list page says of the next one.
#[derive(Debug, PartialEq)]
pub(super) enum Next {
    /// Nothing: this is the last page.
    None,
    /// A next page's URL, as sent.
    Url(String),
    /// A cursor to ask for the next page with.
    Cursor(String),
    /// More pages, but nothing this client can follow: the sign seen.
    Unfollowable(String),
}

/// Fields saying whether more pages follow.
const MORE_FLAGS: &[&str] = &["has_more", "has_next", "has_next_page", "more"];
/// Fields holding the next page's URL.
const NEXT_URLS: &[&str] = &["next", "next_url", "next_page_url"];
/// Fields holding the next page's cursor.
const NEXT_CURSORS: &[&str] = &["next_cursor", "next_page_token"];
/// Fields holding how many items the whole list has.
const TOTALS: &[&str] = &["total", "total_count"];
/// Fields holding how many pages the whole list has.
const PAGE_COUNTS: &[&str] = &["total_pages", "page_count"];
/// Fields holding the current page's number.
const PAGE_NUMBERS: &[&str] = &["page", "current_page"];

/// Where the list reading is: items and pages read before this page.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Progress {
    pub(super) items: usize,
    pub(super) pages: usize,
}

impl Page {
    /// A list sent bare, or wrapped in an object under one of `keys` (when several
    /// hold an array, the only non-empty one), or else under the object's only
    /// array field when that is not empty. Each item must be an object, and there
    /// may be at most `limit` of them. Anything else is an error naming what was
    /// seen (`what`: the items' name). The items are read one by one from the bytes,
    /// never as one tree of the whole page.
    pub(super) fn parse(
        bytes: &[u8],
        keys: &[&str],
        what: &str,
        limit: usize,
        before: Progress,
    ) -> Result<Self, String> {
        let raw: &RawValue = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let items_of = |raw: &RawValue| -> Result<Vec<Map<String, Value>>, String> {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            Items { limit, what }
                .deserialize(&mut de)
                .map_err(|e| e.to_string())
        };
        let text = raw.get().trim_start();
        if text.starts_with('[') {
            let items = items_of(raw)?;
            return Ok(Self {
                items,
                extra: Map::new(),
                next: Next::None,
            });
        }
        if !text.starts_with('{') {
            let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            return Err(format!(
                "the answer is {}, not a list of {what}",
                json_type(&value)
            ));
        }
        let fields: Vec<(String, &RawValue)> =
            serde_json::from_str::<std::collections::BTreeMap<String, &RawValue>>(text)
                .map_err(|e| e.to_string())?
                .into_iter()
                .collect();
        let is_array = |raw: &RawValue| raw.get().trim_start().starts_with('[');
        let is_empty = |raw: &RawValue| {
            raw.get()
                .trim()
                .strip_prefix('[')
                .is_some_and(|r| r.trim_start().starts_with(']'))
        };
        let listed: Vec<&(String, &RawValue)> = fields
            .iter()
            .filter(|(k, v)| keys.contains(&k.as_str()) && is_array(v))
            .collect();
        let key = match listed.as_slice() {
            [] => {
                let arrays: Vec<_> = fields.iter().filter(|(_, v)| is_array(v)).collect();
                match arrays.as_slice() {
                    [(key, raw)] if !is_empty(raw) => Some(key.clone()),
                    _ => None,
                }
            }
            [(key, _)] => Some(key.clone()),
            several => {
                let full: Vec<&String> = several
                    .iter()
                    .filter(|(_, v)| !is_empty(v))
                    .map(|(k, _)| k)
                    .collect();
                match full.as_slice() {
                    [] => Some(several[0].0.clone()),
                    [key] => Some((*key).clone()),
                    keys => {
                        return Err(format!(
                            "the answer holds several lists ({}): cannot tell which one is \
                             the list of {what}",
                            keys.iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
            }
        };
        let mut items = None;
        let mut extra = Map::new();
        for (k, v) in &fields {
            if Some(k) == key.as_ref() {
                items = Some(items_of(v)?);
            } else {
                extra.insert(
                    k.clone(),
                    serde_json::from_str(v.get()).map_err(|e| e.to_string())?,
                );
            }
        }
        let Some(items) = items else {
            let fields: Vec<String> = extra
                .iter()
                .map(|(k, v)| format!("`{k}` ({})", json_type(v)))
                .collect();
            return Err(format!(
                "no list of {what} found in the answer (its fields: {}); expected an array, or \
                 one under {}",
                if fields.is_empty() {
                    "none".to_owned()
                } else {
                    fields.join(", ")
                },
                keys.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        };
        let progress = Progress {
            items: before.items + items.len(),
            pages: before.pages + 1,
        };
        let next = next_page(&extra, progress);
        Ok(Self { items, extra, next })
    }

    /// [`parse`](Self::parse) for a value already read (the models' `Deserialize`).
    pub(super) fn from_value(value: &Value, keys: &[&str], what: &str) -> Result<Self, String> {
        let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        Self::parse(&bytes, keys, what, usize::MAX, Progress::default())
    }
}

/// The items of a list, each an object, at most `limit` of them, read one at a time.
struct Items<'a> {
    limit: usize,
    what: &'a str,
}

impl<'de> DeserializeSeed<'de> for Items<'_> {
    type Value = Vec<Map<String, Value>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Items<'_> {
    type Value = Vec<Map<String, Value>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of {}", self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            let Value::Object(map) = item else {
                return Err(A::Error::custom(format!(
                    "item {} of the list of {} is {}, not an object",
                    items.len() + 1,
                    self.what,
                    json_type(&item)
                )));
            };
            if items.len() >= self.limit {
                return Err(A::Error::custom(format!(
                    "the list has more than {} {}; nothing was decided from it",
                    super::MAX_ITEMS,
                    self.what
                )));
            }
            items.push(map);
        }
        Ok(items)
    }
}

/// What the wrapper says of a next page: its own fields, and those of each object
/// among them (`pagination`, `meta`, `paging`, `links`…). `progress`: the items and
/// pages read so far, this page included, for a `total` or a `total_pages`.
fn next_page(map: &Map<String, Value>, progress: Progress) -> Next {
    let mut scopes: Vec<(String, &Map<String, Value>)> = vec![(String::new(), map)];
    scopes.extend(
        map.iter()
            .filter_map(|(k, v)| Some((format!("{k}."), v.as_object()?))),
    );
    let is_set = |v: &Value| !matches!(v, Value::Null | Value::Bool(false)) && v != "";
    // An explicit "no more" ends the list, whatever else is sent.
    if scopes.iter().any(|(_, m)| {
        MORE_FLAGS
            .iter()
            .any(|f| m.get(*f) == Some(&Value::Bool(false)))
    }) {
        return Next::None;
    }
    let mut url_fields: Vec<(String, &Value)> = Vec::new();
    let mut cursor_fields: Vec<(String, &Value)> = Vec::new();
    for (prefix, m) in &scopes {
        for key in NEXT_URLS {
            if let Some(v) = m.get(*key) {
                let href = v.as_object().and_then(|o| o.get("href")).unwrap_or(v);
                url_fields.push((format!("{prefix}{key}"), href));
            }
        }
        for key in NEXT_CURSORS {
            if let Some(v) = m.get(*key) {
                cursor_fields.push((format!("{prefix}{key}"), v));
            }
        }
    }
    if let Some(url) = url_fields
        .iter()
        .find_map(|(_, v)| v.as_str().filter(|s| !s.is_empty()))
    {
        return Next::Url(url.to_owned());
    }
    for (_, v) in &cursor_fields {
        match v {
            Value::String(s) if !s.is_empty() => return Next::Cursor(s.clone()),
            Value::Number(n) => return Next::Cursor(n.to_string()),
            _ => {}
        }
    }
    for (prefix, m) in &scopes {
        for flag in MORE_FLAGS.iter().chain(&["next_page"]) {
            if m.get(*flag).is_some_and(is_set) {
                return Next::Unfollowable(format!("`{prefix}{flag}` is {}", m[*flag]));
            }
        }
        if let Some(after) = m
            .get("cursors")
            .and_then(|c| c.get("after"))
            .filter(|v| is_set(v))
        {
            return Next::Unfollowable(format!("`{prefix}cursors.after` is {after}"));
        }
        for key in TOTALS {
            if let Some(total) = m.get(*key).and_then(Value::as_u64)
                && total > progress.items as u64
            {
                return Next::Unfollowable(format!(
                    "`{prefix}{key}` is {total}, {} read",
                    progress.items
                ));
            }
        }
        let page = PAGE_NUMBERS
            .iter()
            .find_map(|k| m.get(*k).and_then(Value::as_u64))
            .unwrap_or(progress.pages as u64);
        for key in PAGE_COUNTS {
            if let Some(pages) = m.get(*key).and_then(Value::as_u64)
                && pages > page
            {
                return Next::Unfollowable(format!("`{prefix}{key}` is {pages}, on page {page}"));
            }
        }
    }
    if let Some((name, _)) = url_fields
        .iter()
        .chain(&cursor_fields)
        .find(|(_, v)| is_set(v))
    {
        return Next::Unfollowable(format!("`{name}` is set"));
    }
    Next::None
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
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
