//! What the management API sends and answers.
//!
//! The creation call is documented by NotMeta and [`Webhook`] reads its answer. The
//! list, logs and stats answers are not documented: their models read the fields
//! they name when present and of a fitting JSON type, and keep everything else in an
//! `extra` map, so nothing NotMeta sends is lost and no unexpected shape fails a call.

mod lenient;
mod page;

use std::collections::BTreeSet;
use std::fmt;

use notmeta_webhooks::event::Timestamp;
use notmeta_webhooks::{EventType, Secret, Verifier};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use lenient::Lenient;
pub(crate) use page::{Next, Page, Progress};

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
/// assert!(verifier.verify(b"{}", [&sign(b"{}", "whsec_abc123")]).is_ok());
/// assert!(!format!("{webhook:?} {webhook}").contains("whsec_abc123"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "WebhookFields")]
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

/// A webhook's fields as NotMeta answers its creation, each read by its rule.
#[derive(Deserialize)]
struct WebhookFields {
    #[serde(deserialize_with = "created_secret")]
    secret: SecretText,
    #[serde(deserialize_with = "lenient::text")]
    id: Lenient<String>,
    #[serde(deserialize_with = "lenient::text")]
    url: Lenient<String>,
    #[serde(default, deserialize_with = "lenient::names")]
    events: Lenient<Vec<String>>,
    #[serde(default, deserialize_with = "lenient::timestamp")]
    created_at: Lenient<Timestamp>,
    #[serde(default, deserialize_with = "lenient::text")]
    status: Lenient<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// The secret of a created webhook: a non-empty string, else the answer is refused.
fn created_secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretText, D::Error> {
    use serde::de::Error as _;
    match Value::deserialize(d)? {
        Value::String(s) if !s.is_empty() => Ok(SecretText(zeroize::Zeroizing::new(s))),
        _ => Err(D::Error::custom("`secret` is not a non-empty string")),
    }
}

impl TryFrom<WebhookFields> for Webhook {
    type Error = String;

    fn try_from(fields: WebhookFields) -> Result<Self, String> {
        let mut extra = fields.extra;
        let secret = Secret::new(fields.secret.0.as_str())
            .map_err(|_| "the webhook secret is empty".to_owned())?;
        let id = fields.id.or_keep("id", &mut extra);
        let url = fields.url.or_keep("url", &mut extra);
        Ok(Self {
            id: id.ok_or("missing field `id`")?,
            url: url.ok_or("missing field `url`")?,
            secret,
            events: fields
                .events
                .or_keep("events", &mut extra)
                .unwrap_or_default(),
            created_at: fields.created_at.or_keep("created_at", &mut extra),
            status: fields.status.or_keep("status", &mut extra),
            extra,
            secret_text: fields.secret,
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
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "SummaryFields")]
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
}

/// A listed webhook's fields, each read by its rule.
#[derive(Deserialize)]
struct SummaryFields {
    #[serde(default, deserialize_with = "lenient::text")]
    id: Lenient<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    url: Lenient<String>,
    #[serde(default, deserialize_with = "lenient::names")]
    events: Lenient<Vec<String>>,
    #[serde(default, deserialize_with = "lenient::text")]
    status: Lenient<String>,
    #[serde(default, deserialize_with = "lenient::timestamp")]
    created_at: Lenient<Timestamp>,
    #[serde(default, deserialize_with = "listed_secret")]
    secret: Option<(Secret, SecretText)>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// A listed secret, when it is a usable one; never kept in `extra`.
fn listed_secret<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<(Secret, SecretText)>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Secret::new(&s)
            .ok()
            .map(|secret| (secret, SecretText(zeroize::Zeroizing::new(s)))),
        _ => None,
    })
}

impl From<SummaryFields> for WebhookSummary {
    fn from(fields: SummaryFields) -> Self {
        let mut extra = fields.extra;
        let (secret, secret_text) = fields.secret.unzip();
        Self {
            id: fields.id.or_keep("id", &mut extra),
            url: fields.url.or_keep("url", &mut extra),
            events: fields.events.or_keep("events", &mut extra),
            status: fields.status.or_keep("status", &mut extra),
            created_at: fields.created_at.or_keep("created_at", &mut extra),
            secret,
            secret_text,
            extra,
        }
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "Value")]
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

impl TryFrom<Value> for WebhookList {
    type Error = String;

    fn try_from(answer: Value) -> Result<Self, String> {
        let page = Page::from_value(&answer, super::WEBHOOK_KEYS, "webhooks")?;
        Ok(Self {
            webhooks: page.items,
            extra: page.extra,
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
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "LogFields")]
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
}

/// A log entry's fields, each read by its rule.
#[derive(Deserialize)]
struct LogFields {
    #[serde(default, deserialize_with = "lenient::text")]
    id: Lenient<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    event_id: Lenient<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    event_type: Lenient<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    status: Lenient<String>,
    #[serde(default, deserialize_with = "lenient::status_code")]
    status_code: Lenient<u16>,
    #[serde(default, deserialize_with = "lenient::timestamp")]
    created_at: Lenient<Timestamp>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl From<LogFields> for LogEntry {
    fn from(fields: LogFields) -> Self {
        let mut extra = fields.extra;
        let created_at = fields
            .created_at
            .or_keep("created_at", &mut extra)
            .or_else(|| {
                // `timestamp` stands in for a missing `created_at`; it is taken from
                // `extra` only when it is a valid time.
                let t = extra.get("timestamp")?.as_str()?.parse().ok()?;
                extra.remove("timestamp");
                Some(t)
            });
        Self {
            id: fields.id.or_keep("id", &mut extra),
            event_id: fields.event_id.or_keep("event_id", &mut extra),
            event_type: fields.event_type.or_keep("event_type", &mut extra),
            status: fields.status.or_keep("status", &mut extra),
            status_code: fields.status_code.or_keep("status_code", &mut extra),
            created_at,
            extra,
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "Value")]
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

    pub(super) fn from_page(page: Page<LogEntry>) -> Self {
        Self {
            more_pages: !matches!(page.next, Next::None),
            entries: page.items,
            extra: page.extra,
        }
    }
}

impl TryFrom<Value> for WebhookLogs {
    type Error = String;

    fn try_from(answer: Value) -> Result<Self, String> {
        let page = Page::from_value(&answer, super::LOG_KEYS, "log entries")?;
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "Value")]
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

impl From<Value> for WebhookStats {
    fn from(answer: Value) -> Self {
        let mut fields = lenient::object(answer);
        if fields.len() == 1 && fields.get("data").is_some_and(Value::is_object) {
            fields = lenient::object(fields.remove("data").unwrap_or_default());
        }
        Self { fields }
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
    fn a_log_entry_reads_timestamp_for_a_missing_created_at_and_keeps_what_it_cannot_read() {
        let e: LogEntry = serde_json::from_str(
            r#"{"status_code":"200","created_at":null,"timestamp":"2024-01-01T00:00:00Z","status":true}"#,
        )
        .unwrap();
        assert_eq!(e.status_code, None);
        assert_eq!(e.status.as_deref(), Some("true"));
        assert_eq!(
            e.created_at.map(|t| t.to_string()).as_deref(),
            Some("2024-01-01T00:00:00Z")
        );
        assert_eq!(e.extra["status_code"], "200");
        assert_eq!(e.extra["created_at"], Value::Null);
        assert!(!e.extra.contains_key("timestamp"));

        let e: LogEntry = serde_json::from_str(
            r#"{"created_at":"2024-01-02T00:00:00Z","timestamp":"2024-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(
            e.created_at.map(|t| t.to_string()).as_deref(),
            Some("2024-01-02T00:00:00Z")
        );
        assert_eq!(e.extra["timestamp"], "2024-01-01T00:00:00Z");
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
